//! The dashboard's layout in a real browser, on a 390 px wide phone screen
//! and at 1280 px: headless Chromium lays out each kind of page, and the
//! test-only measuring script of `chromium.rs` (added to a copy of the page
//! by the test's server, never to the site) reports what a reader would
//! see: whether the page scrolls sideways, how many lines each test name
//! takes, what the matrix headers say, in what order a run page's sections
//! come and which rows the in-page filter shows.
//!
//! Screenshots of every page at both widths are kept as test artefacts in
//! `target/test-artifacts/dashboard/<page>-<width>.png`, beside the site
//! they show (`site/`).

use std::path::Path;

use btrfsqa_model::compare::{self, CompareOptions};
use btrfsqa_model::{
    KernelInfo, Provenance, ResultsStore, RunId, RunReport, RunStatus, SuiteReport, TestOutcome,
    Verdict,
};
use btrfsqa_publish::Dashboard;
use serde_json::Value;

use crate::chromium::{Server, artifacts_dir, measure, screenshot};

const WIDTHS: [u32; 2] = [390, 1280];

/// Two runs on 2026-11-24 (10:15 and 18:40, two kernels) after one the
/// day before, the newest compared with its baseline as the runner does.
const RUNS: [(&str, &str, &str); 3] = [
    ("20261123-080000-aa01", "2026-11-23T08:00:00Z", "6.18.0-rc2"),
    ("20261124-101500-aa02", "2026-11-24T10:15:00Z", "6.18.0-rc3"),
    (
        "20261124-184000-aa03",
        "2026-11-24T18:40:00Z",
        "6.18.0-rc3-btrfs-next+",
    ),
];

const LONG_DIFF: &str = "output mismatch (see /var/lib/xfstests/results/default/btrfs/011.out.bad)\n\
--- tests/btrfs/011.out\t2026-11-24 10:15:00.000000000 +0000\n\
+++ /var/lib/xfstests/results/default/btrfs/011.out.bad\t2026-11-24 10:31:12.123456789 +0000\n\
@@ -1,3 +1,5 @@\n QA output created by 011\n\
+ERROR: scrub failed: 524288 bytes of checksum errors at logical 30408704 on devid 3 (/dev/vdd), mirror 1, uncorrectable: the replaced device's copy differs too\n";

fn verdict_of(run: usize, name: &str) -> Verdict {
    match (name, run) {
        ("btrfs/012", _) => Verdict::Fail,
        ("btrfs/011", 2) => Verdict::Fail,
        ("generic/013", 0 | 1) => Verdict::Fail,
        ("btrfs/020", 0 | 2) => Verdict::Fail,
        ("btrfs/020", _) => Verdict::Pass,
        ("btrfs/026", _) => Verdict::Skip,
        _ => Verdict::Pass,
    }
}

fn report(i: usize) -> RunReport {
    let (id, started, kernel) = RUNS[i];
    let started = started.parse().unwrap();
    let provenance = Provenance {
        btrfsqa_version: "0.1.0".into(),
        provider: "aws".into(),
        kernel: KernelInfo {
            release: Some(kernel.into()),
            ..KernelInfo::default()
        },
        ..Provenance::default()
    };
    let mut report = RunReport::start(RunId::parse(id).unwrap(), started, provenance);
    let mut names: Vec<String> = (1..=30).map(|n| format!("btrfs/{n:03}")).collect();
    names.extend((1..=20).map(|n| format!("generic/{n:03}")));
    let mut fstests = SuiteReport::new("xfstests");
    for profile in ["default", "compress=zstd"] {
        for name in &names {
            let verdict = verdict_of(i, name);
            let mut test = TestOutcome::new("xfstests", name.as_str(), verdict);
            test.profile = Some(profile.into());
            test.duration_secs = Some(3.0 + name.len() as f64);
            test.machine = Some("m6i-large-0".into());
            match verdict {
                Verdict::Fail => {
                    test.message = Some(LONG_DIFF.replace("011", &name[name.len() - 3..]));
                    test.kernel_log = vec![
                        "BTRFS critical (device vdd): corrupt leaf: root=5 block=30408704 slot=7 ino=257, invalid inode generation: has 18446744073709551492 expect [0, 42]".into(),
                    ];
                }
                Verdict::Skip => test.message = Some("not run: zoned block device required".into()),
                _ => {}
            }
            fstests.tests.push(test);
        }
    }
    report.suites.push(fstests);
    let mut progs = SuiteReport::new("btrfs-progs");
    for name in [
        "cli/001-btrfs",
        "cli/019-subvolume-create-parents-and-long-names",
        "mkfs/025-zoned-parallel",
    ] {
        progs
            .tests
            .push(TestOutcome::new("btrfs-progs", name, Verdict::Pass).with_message("ok"));
    }
    report.suites.push(progs);
    report.labels.insert("profile".into(), "nightly".into());
    report.finish(RunStatus::Completed, started + chrono::Duration::hours(2));
    report
}

fn store(dir: &Path) -> ResultsStore {
    let mut reports: Vec<RunReport> = (0..RUNS.len()).map(report).collect();
    let history = reports.clone();
    let newest = reports.last_mut().unwrap();
    let baseline = compare::choose_baseline(newest, &history, None, Default::default());
    let comparison = compare::classify(newest, baseline, &history, &CompareOptions::default());
    newest.comparison = Some(comparison.summary(None));
    crate::store_with(dir, &reports)
}

fn names(measured: &Value) -> Vec<&str> {
    measured["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect()
}

/// Neither the page nor any test name on it is wider than the screen
/// allows: the page does not scroll sideways (wide tables scroll in their
/// own box) and no test name is broken over two lines.
fn assert_reads_well(page: &str, width: u32, measured: &Value) {
    assert_eq!(
        measured["client_width"], width,
        "{page}: the window is {width} px wide"
    );
    assert!(
        measured["scroll_width"].as_u64() <= measured["client_width"].as_u64(),
        "{page} at {width} px scrolls sideways: {measured}"
    );
    assert_eq!(
        measured["wrapped"],
        serde_json::json!([]),
        "{page} at {width} px wraps test names"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn pages_read_at_a_glance_on_a_phone_and_a_desktop() {
    let chromium = crate::require_chromium!();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(&tmp.path().join("results"));
    let site = tmp.path().join("site");
    Dashboard::new().render(&store, &site).unwrap();
    let server = Server::start(&site);
    let newest = RUNS[2].0;
    let pages = [
        ("index", "index.html".to_owned()),
        ("run", format!("runs/{newest}/index.html")),
        ("matrix", "matrix.html".to_owned()),
        ("test", "tests/xfstests/btrfs~011.html".to_owned()),
    ];
    let shots = artifacts_dir();
    copy_dir(&site, &shots.join("site"));
    for (name, path) in &pages {
        for width in WIDTHS {
            screenshot(
                &chromium,
                &server,
                path,
                width,
                &shots.join(format!("{name}-{width}.png")),
            );
            let measured = measure(&chromium, &server, path, width);
            assert_reads_well(name, width, &measured);
            if *name != "index" {
                assert!(
                    names(&measured).contains(&"btrfs/011"),
                    "{name} at {width} px shows its test names: {measured}"
                );
            }
            if *name == "run" {
                // What changed comes first, then what is not passing, then every test.
                let order: Vec<&str> = measured["order"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|entry| entry[0].as_str().unwrap())
                    .collect();
                assert_eq!(order, ["changes", "problems", "tests"], "{measured}");
                let tops: Vec<f64> = measured["order"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|entry| entry[1].as_f64().unwrap())
                    .collect();
                assert!(
                    tops.is_sorted(),
                    "run page sections out of order: {measured}"
                );
                assert!(measured["filter_shown"].as_bool().unwrap(), "{measured}");
                assert_eq!(measured["rows"], 103, "every test has a row");
            }
            if *name == "matrix" {
                assert_eq!(
                    measured["unreadable_cells"],
                    serde_json::json!([]),
                    "matrix cells whose letter has the colour of the cell"
                );
                let headers = measured["matrix_headers"].as_array().unwrap();
                assert_eq!(headers.len(), RUNS.len(), "{measured}");
                // Newest on the left; each header names the run by date,
                // time and kernel, and links to it.
                for (header, (id, started, kernel)) in headers.iter().zip(RUNS.iter().rev()) {
                    let text = header["text"].as_str().unwrap();
                    let (date, time) = (&started[..10], &started[11..16]);
                    assert!(
                        text.contains(date) && text.contains(time) && text.contains(kernel),
                        "matrix header `{text}` names {date} {time} {kernel}"
                    );
                    assert_eq!(
                        header["href"].as_str(),
                        Some(format!("runs/{id}/index.html").as_str())
                    );
                }
            }
        }
    }
    println!("screenshots in {}", shots.display());
}

#[test]
fn the_run_page_filters_by_name_and_verdict_in_the_page() {
    let chromium = crate::require_chromium!();
    let tmp = tempfile::tempdir().unwrap();
    let store = store(&tmp.path().join("results"));
    let site = tmp.path().join("site");
    Dashboard::new().render(&store, &site).unwrap();
    let server = Server::start(&site);
    let page = format!("runs/{}/index.html", RUNS[2].0);
    for (query, shown) in [
        // Every failing test of the newest run: btrfs/011, 012 and 020, twice.
        ("v=fail", 6),
        // By name, any verdict: btrfs/010 to btrfs/019 under both profiles.
        ("q=btrfs%2F01", 20),
        ("q=BTRFS%2F01&v=fail", 4),
        ("q=zoned", 1),
        ("v=skip", 2),
        ("q=no-such-test", 0),
    ] {
        let measured = measure(&chromium, &server, &format!("{page}?{query}"), 1280);
        assert_eq!(measured["rows"], 103, "{query}: {measured}");
        assert_eq!(measured["rows_shown"], shown, "{query}: {measured}");
    }
}
