//! Artifacts on the site: paths checked, large files and recordings trimmed.

use super::*;

#[test]
fn large_artifacts_keep_head_and_tail_with_a_note() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = fixed_store(store_dir.path());
    let big: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    write_artifact(&store, RUN, "xfstests/btrfs/011.full", &big);
    let dashboard = Dashboard::with_settings(DashboardSettings {
        max_artifact_bytes: 1000,
        ..DashboardSettings::default()
    });
    let stats = dashboard.render(&store, site.path()).unwrap();
    assert_eq!(stats.artifacts_trimmed, 1);

    let run_dir = site.path().join("runs").join(RUN);
    let copy = fs::read(run_dir.join("files/xfstests/btrfs/011.full")).unwrap();
    assert_eq!(&copy[..500], &big[..500]);
    assert_eq!(&copy[copy.len() - 500..], &big[big.len() - 500..]);
    let note = String::from_utf8_lossy(&copy[500..copy.len() - 500]).into_owned();
    assert!(
        note.contains("9000 bytes (8.8 KiB) left out here"),
        "{note}"
    );
    assert!(
        note.contains(&format!("results store: {RUN}/xfstests/btrfs/011.full")),
        "{note}"
    );
    let page = read(run_dir.join("index.html"));
    assert!(page.contains(
        "trimmed: 9000 bytes (8.8 KiB) left out here; the full file is in the results store"
    ));
    // Small files are copied whole.
    assert_eq!(
        read(run_dir.join("files/xfstests/check.log")),
        "btrfs/001 3s\nbtrfs/011 - output mismatch\n"
    );
}

#[test]
fn artifact_paths_are_checked() {
    assert_eq!(relative_components("a/./b//c").unwrap(), ["a", "b", "c"]);
    for bad in [
        "",
        "/",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a\\b",
        ".git/config",
        "a/.GIT/x",
        "a/git~1/x",
        ".",
    ] {
        assert!(relative_components(bad).is_err(), "{bad:?} was accepted");
    }
    assert!(
        is_active_content("x.HTML")
            && is_active_content("a.svg")
            && !is_active_content("011.out.bad")
    );
    assert_eq!(percent_encode("a b#?%/.x~"), "a%20b%23%3F%25%2F.x~");
}

#[test]
fn large_recordings_are_trimmed_into_recordings_that_still_play() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = fixed_store(store_dir.path());
    let mut cast = String::from(CAST.lines().next().unwrap());
    cast.push('\n');
    for i in 0..2000 {
        cast.push_str(
            &serde_json::to_string(&(
                i as f64 / 10.0,
                "o",
                format!("line {i} {}\r\n", "x".repeat(40)),
            ))
            .unwrap(),
        );
        cast.push('\n');
        if i == 1000 {
            cast.push_str(r#"[100.05,"m","xfstests: btrfs/011"]"#);
            cast.push('\n');
        }
    }
    write_artifact(&store, RUN, "casts/qemu-0.cast", cast.as_bytes());
    let dashboard = Dashboard::with_settings(DashboardSettings {
        max_cast_bytes: 20_000,
        ..DashboardSettings::default()
    });
    let stats = dashboard.render(&store, site.path()).unwrap();
    assert_eq!(stats.artifacts_trimmed, 1);
    let copy = read(
        site.path()
            .join("runs")
            .join(RUN)
            .join("files/casts/qemu-0.cast"),
    );
    assert!(copy.len() < 22_000, "{}", copy.len());
    let mut lines = copy.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let events: Vec<(f64, String, String)> =
        lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        events.windows(2).all(|w| w[0].0 <= w[1].0),
        "times stay in order"
    );
    assert!(
        events
            .iter()
            .any(|e| e.1 == "m" && e.2 == "xfstests: btrfs/011"),
        "markers stay"
    );
    assert!(
        events.iter().any(|e| e.2.contains("left out here")),
        "a note says so"
    );
    assert_eq!(
        events.first().unwrap().2,
        format!("line 0 {}\r\n", "x".repeat(40))
    );
    assert_eq!(
        events.last().unwrap().2,
        format!("line 1999 {}\r\n", "x".repeat(40))
    );
    let page = read(site.path().join("runs").join(RUN).join("index.html"));
    assert!(
        page.contains("trimmed:"),
        "the page says the recording was trimmed"
    );
}
