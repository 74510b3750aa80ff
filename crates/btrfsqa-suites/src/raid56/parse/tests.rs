//! Tests of the raid56 parsers on captured btrfs-progs output (scrub,
//! map-logical, filefrag, sha256sum, tree blocks, replace), and on truncated
//! and garbage input.

use super::*;

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/raid56/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn clean_scrub_summaries_have_no_errors() {
    for name in [
        "scrub-start-B-clean.txt",
        "scrub-start-BR-clean.txt",
        "scrub-status-clean.txt",
        "scrub-status-R-clean.txt",
    ] {
        let report = parse_scrub(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(report.counters.is_clean(), "{name}: {report:?}");
        assert_eq!(report.state, Some(ScrubState::Finished), "{name}");
        assert_eq!(
            report.uuid.as_deref(),
            Some("a990d9e0-03ff-4d38-8928-724118da2ec0"),
            "{name}"
        );
    }
    let raw = parse_scrub(&fixture("scrub-start-BR-clean.txt")).unwrap();
    assert_eq!(raw.counters.data_bytes_scrubbed, Some(3145728));
    assert_eq!(raw.counters.tree_bytes_scrubbed, Some(147456));
}

#[test]
fn corrected_errors_are_counted_in_both_formats() {
    for name in [
        "scrub-start-B-dev-corrected.stdout",
        "scrub-start-BR-dev-corrected.stdout",
        "scrub-status-R-dev-corrected.txt",
        "scrub-status-corrected.txt",
    ] {
        let c = parse_scrub(&fixture(name)).unwrap().counters;
        assert_eq!(
            (c.csum_errors, c.corrected_errors, c.uncorrectable_errors),
            (16, 16, 0),
            "{name}"
        );
        assert!(!c.is_clean());
    }
}

#[test]
fn stderr_warnings_appended_are_ignored() {
    let text = fixture("scrub-start-B-dev-corrected.stdout")
        + &fixture("scrub-start-B-dev-corrected.stderr");
    assert_eq!(parse_scrub(&text).unwrap().counters.corrected_errors, 16);
}

#[test]
fn metadata_errors_are_verify_errors() {
    for name in [
        "scrub-start-B-dev-metadata.stdout",
        "scrub-start-BR-dev-metadata.stdout",
    ] {
        let c = parse_scrub(&fixture(name)).unwrap().counters;
        assert_eq!(
            (c.verify_errors, c.corrected_errors, c.csum_errors),
            (4, 4, 0),
            "{name}"
        );
    }
}

#[test]
fn uncorrectable_and_aborted_scrubs() {
    let c = parse_scrub(&fixture("scrub-start-B-dev-uncorrectable.stdout"))
        .unwrap()
        .counters;
    assert_eq!((c.corrected_errors, c.uncorrectable_errors), (0, 16));
    let aborted = parse_scrub(&fixture("scrub-start-BR-uncorrectable.stdout")).unwrap();
    assert_eq!(aborted.state, Some(ScrubState::Aborted));
    assert_eq!(aborted.counters.uncorrectable_errors, 16);
    let status = parse_scrub(&fixture("scrub-status-R-uncorrectable.txt")).unwrap();
    assert_eq!(status.counters.uncorrectable_errors, 16);
}

#[test]
fn per_device_sections_are_kept_and_summed() {
    let report = parse_scrub(&fixture("scrub-status-d-corrected.txt")).unwrap();
    assert_eq!(report.devices.len(), 4);
    let with_stats: Vec<_> = report
        .devices
        .iter()
        .filter(|d| d.counters.is_some())
        .collect();
    assert_eq!(with_stats.len(), 1);
    assert_eq!(
        (with_stats[0].path.as_str(), with_stats[0].devid),
        ("/dev/loop3", 3)
    );
    assert_eq!(report.counters.corrected_errors, 16);

    for name in ["scrub-status-d-clean.txt", "scrub-status-dR-clean.txt"] {
        let report = parse_scrub(&fixture(name)).unwrap();
        assert_eq!(report.devices.len(), 4, "{name}");
        assert!(
            report
                .devices
                .iter()
                .all(|d| d.state == Some(ScrubState::Finished))
        );
        assert!(report.counters.is_clean());
    }
    let raw = parse_scrub(&fixture("scrub-status-dR-clean.txt")).unwrap();
    assert_eq!(
        raw.devices[0].counters.unwrap().data_bytes_scrubbed,
        Some(786432)
    );
}

#[test]
fn never_scrubbed_status_parses() {
    let report = parse_scrub(&fixture("scrub-status-never.txt")).unwrap();
    assert!(report.counters.is_clean());
    assert_eq!(report.state, None);
}

#[test]
fn truncated_or_garbage_scrub_output_is_an_error() {
    let full = fixture("scrub-start-B-dev-corrected.stdout");
    // Cut before the `Corrected:` line: the summary has errors but no verdict.
    let cut = &full[..full.find("  Corrected").unwrap()];
    assert!(parse_scrub(cut).is_err());
    let raw = fixture("scrub-start-BR-dev-corrected.stdout");
    let cut = &raw[..raw.find("\tuncorrectable_errors").unwrap()];
    assert!(parse_scrub(cut).is_err());
    for garbage in [
        "",
        "ERROR: cannot access 'mnt': No such file or directory\n",
        "\u{0}\u{1}binary",
        "Error summary:    csum=lots\n",
        "\tcorrected_errors: -1\n\tuncorrectable_errors: 0\n",
    ] {
        assert!(parse_scrub(garbage).is_err(), "{garbage:?}");
    }
}

#[test]
fn map_logical_raid5_gives_data_and_parity() {
    let maps = parse_map_logical(&fixture("map-logical-raid5-64k.txt")).unwrap();
    assert_eq!(
        maps,
        vec![
            Mapping {
                mirror: 1,
                logical: 220397568,
                physical: 67174400,
                device: "/dev/loop3".into()
            },
            Mapping {
                mirror: 2,
                logical: 220397568,
                physical: 67174400,
                device: "/dev/loop2".into()
            },
        ]
    );
    let big = parse_map_logical(&fixture("map-logical-raid5-1m.txt")).unwrap();
    assert_eq!(big.len(), 32);
    assert_eq!(big.iter().filter(|m| m.mirror == 1).count(), 16);
}

#[test]
fn map_logical_raid6_has_p_and_q() {
    let maps = parse_map_logical(&fixture("map-logical-raid6-192k.txt")).unwrap();
    assert_eq!(maps.len(), 9);
    let data: Vec<_> = maps
        .iter()
        .filter(|m| m.mirror == 1)
        .map(|m| m.device.as_str())
        .collect();
    assert_eq!(data, ["/dev/loop5", "/dev/loop1", "/dev/loop2"]);
    assert!(
        maps.iter()
            .filter(|m| m.mirror == 3)
            .all(|m| m.device == "/dev/loop4")
    );
    let meta = parse_map_logical(&fixture("map-logical-raid6-metadata.txt")).unwrap();
    assert_eq!(
        (meta[0].physical, meta[0].device.as_str()),
        (25411584, "/dev/loop1")
    );
}

#[test]
fn map_logical_errors_are_errors() {
    for name in ["map-logical-unmapped.txt", "map-logical-no-extent.txt"] {
        let err = parse_map_logical(&fixture(name)).unwrap_err();
        assert!(err.message.contains("extent"), "{name}: {err}");
    }
    // A device it could not scan does not spoil the mapping.
    let noisy = format!(
        "ERROR: cannot scan /dev/loop11: Input/output error\n{}",
        fixture("map-logical-raid5-64k.txt")
    );
    assert_eq!(parse_map_logical(&noisy).unwrap().len(), 2);
    assert!(parse_map_logical("").is_err());
    assert!(parse_map_logical("mirror 1 logical 12 physical\n").is_err());
    assert!(parse_map_logical("mirror x logical 1 physical 2 device /dev/a\n").is_err());
}

#[test]
fn filefrag_extents() {
    let frag = parse_filefrag(&fixture("filefrag-v-raid6.txt")).unwrap();
    assert_eq!(frag.block_size, 4096);
    assert_eq!(
        frag.extents,
        vec![FileExtent {
            file_block: 0,
            physical_block: 53808,
            blocks: 256,
            flags: vec!["last".into(), "eof".into()],
        }]
    );
    assert!(frag.extents[0].is_located());
    let two = parse_filefrag(&fixture("filefrag-v-two-extents.txt")).unwrap();
    assert_eq!(two.extents.len(), 2);
    assert_eq!(
        (two.extents[1].file_block, two.extents[1].physical_block),
        (75, 27232)
    );
    assert!(two.extents[0].flags.is_empty());
    for name in ["filefrag-v-delalloc.txt", "filefrag-v-inline.txt"] {
        let frag = parse_filefrag(&fixture(name)).unwrap();
        assert!(!frag.extents[0].is_located(), "{name}");
    }
}

#[test]
fn filefrag_truncated_or_garbage() {
    let full = fixture("filefrag-v-two-extents.txt");
    assert!(parse_filefrag(&full[..full.find("mnt/a: 2").unwrap()]).is_err());
    assert!(parse_filefrag("").is_err());
    assert!(parse_filefrag("filefrag: Operation not supported\n").is_err());
    let broken = full.replace("27232..", "x..");
    assert!(parse_filefrag(&broken).is_err());
}

#[test]
fn sha256sum_lists() {
    let sums = parse_sha256sum(&fixture("sha256sum.txt")).unwrap();
    assert_eq!(sums.len(), 4);
    assert_eq!(
        sums["f1"],
        "e3439f3ba35588d4c6486c33599be61c5a1227d65c146fa0a143dce94d981293"
    );
    let mut changed = sums.clone();
    changed.insert("f2".into(), "0".repeat(64));
    changed.remove("f3");
    let diffs = diff_sums(&sums, &changed);
    assert_eq!(diffs.len(), 2);
    assert!(diffs[0].starts_with("`f2`: sha256 0000"), "{diffs:?}");
    assert!(diffs[1].contains("`f3`: missing"), "{diffs:?}");
    assert!(diff_sums(&sums, &sums).is_empty());
    assert!(parse_sha256sum("").is_err());
    assert!(parse_sha256sum("sha256sum: f1: Input/output error\n").is_err());
    assert!(parse_sha256sum("abc  f1\n").is_err());
}

#[test]
fn tree_block_headers() {
    let blocks = parse_tree_blocks(&fixture("dump-tree-fs-tree.txt")).unwrap();
    assert_eq!(
        blocks,
        vec![TreeBlock {
            bytenr: 32096256,
            level: 0,
            owner: "FS_TREE".into()
        }]
    );
    let deep = parse_tree_blocks(&fixture("dump-tree-fs-tree-level1.headers")).unwrap();
    assert_eq!(deep[0].level, 1);
    assert_eq!(deep.len(), 65);
    assert!(
        deep[1..]
            .iter()
            .all(|b| b.level == 0 && b.owner == "FS_TREE")
    );
    assert!(parse_tree_blocks("").is_err());
    assert!(parse_tree_blocks("node 12 items 3\n").is_err());
}

#[test]
fn replace_status() {
    let status = parse_replace_status(&fixture("replace-status-finished.txt")).unwrap();
    assert_eq!(
        status,
        ReplaceStatus {
            state: "finished".into(),
            write_errors: 0,
            uncorrectable_read_errors: 0
        }
    );
    let running = parse_replace_status("42.3% done, 0 write errs, 2 uncorr. read errs\n").unwrap();
    assert_eq!(
        (running.state.as_str(), running.uncorrectable_read_errors),
        ("running", 2)
    );
    assert_eq!(
        parse_replace_status("Never started\n").unwrap().state,
        "never started"
    );
    assert!(parse_replace_status("").is_err());
    assert!(parse_replace_status("Started on 24.Nov 15:46:18, finished on").is_err());
}
