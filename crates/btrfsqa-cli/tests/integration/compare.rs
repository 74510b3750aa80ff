//! `btrfsqa compare` and `btrfsqa history` on a results store made of
//! report.json files written here.

use std::path::Path;

use btrfsqa_model::{
    Attempt, Provenance, ResultsStore, RunId, RunReport, RunStatus, SuiteReport, TestOutcome,
    Verdict,
};

use crate::{btrfsqa, run, text};

use Verdict::{Fail, Pass, Skip};

/// A finished run of suite `smoke` on `kernel`, started on `day`.
fn report(id: &str, day: u32, kernel: &str, tests: &[(&str, Verdict)]) -> RunReport {
    let started = format!("2026-05-{day:02}T06:00:00Z").parse().unwrap();
    let mut report = RunReport::start(
        RunId::parse(id).unwrap(),
        started,
        Provenance {
            provider: "local".into(),
            ..Provenance::default()
        },
    );
    report.provenance.kernel.release = Some(kernel.into());
    let mut suite = SuiteReport::new("smoke");
    for (name, verdict) in tests {
        let mut outcome = TestOutcome::new("smoke", *name, *verdict)
            .with_duration(std::time::Duration::from_secs(3));
        if *verdict != Pass {
            outcome.message = Some(format!("{name}: output mismatch\nsecond line"));
        }
        suite.tests.push(outcome);
    }
    report.suites.push(suite);
    report.finish(RunStatus::Completed, started);
    report
}

/// r1 (6.1): a b c d pass; r2 (6.2): a fails, b passes, c fails then passes
/// on rerun, d skipped; r3 (6.3): a fails, b fails.
fn store(dir: &Path) -> ResultsStore {
    let store = ResultsStore::new(dir);
    let r1 = report(
        "20260501-060000-0001",
        1,
        "6.1.0",
        &[("a", Pass), ("b", Pass), ("c", Pass), ("d", Pass)],
    );
    let mut r2 = report(
        "20260502-060000-0002",
        2,
        "6.2.0",
        &[("a", Fail), ("b", Pass), ("c", Fail), ("d", Skip)],
    );
    r2.suites[0].tests[2]
        .reruns
        .push(Attempt::from(TestOutcome::new("smoke", "c", Pass)));
    let r3 = report(
        "20260503-060000-0003",
        3,
        "6.3.0",
        &[("a", Fail), ("b", Fail), ("c", Pass), ("d", Pass)],
    );
    for r in [&r1, &r2, &r3] {
        store.write_report(r).unwrap();
    }
    store
}

#[test]
fn compare_lists_new_failures_flaky_and_skipped_tests() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let out = run(btrfsqa()
        .args([
            "compare",
            "20260501-060000-0001",
            "20260502-060000-0002",
            "--results-dir",
        ])
        .arg(dir.path()));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with(
            "20260502-060000-0002 (6.2.0) compared with 20260501-060000-0001 (6.1.0)\n"
        ),
        "{stdout}"
    );
    let line = |test: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(test) || l.contains(&format!(" {test} ")))
            .unwrap_or_else(|| panic!("no line for {test}:\n{stdout}"))
            .to_owned()
    };
    let a = line("a");
    assert!(a.starts_with("new-failure"), "{a}");
    assert!(
        a.contains("a: output mismatch") && !a.contains("second line"),
        "{a}"
    );
    let c = line("c");
    assert!(c.starts_with("flaky (1/2 passed)"), "{c}");
    assert!(c.contains("fail,pass"), "{c}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("pass ")),
        "steady passes are left out without --all:\n{stdout}"
    );
    assert!(
        stdout.contains("1 new failure(s), 0 fixed, 0 still failing, 1 flaky, 0 expected, 1 pass, 0 new, 0 gone, 1 inconclusive"),
        "{stdout}"
    );

    let out = run(btrfsqa()
        .args([
            "compare",
            "20260501-060000-0001",
            "20260502-060000-0002",
            "--all",
            "--results-dir",
        ])
        .arg(dir.path()));
    assert!(
        text(&out).0.lines().any(|l| l.starts_with("pass ")),
        "{:?}",
        text(&out)
    );
}

#[test]
fn compare_json_is_the_whole_comparison() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let out = run(btrfsqa()
        .args([
            "compare",
            "20260502-060000-0002",
            "20260503-060000-0003",
            "--json",
            "--results-dir",
        ])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["run_id"], "20260503-060000-0003");
    assert_eq!(json["baseline"], "20260502-060000-0002");
    let class = |name: &str| {
        json["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["kind"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(class("a"), "still-failing");
    assert_eq!(class("b"), "new-failure");
    assert_eq!(
        class("c"),
        "pass",
        "a pass on rerun makes the baseline a pass"
    );
    assert_eq!(class("d"), "new", "skipped in the baseline");
    assert_eq!(json["counts"]["new_failure"], 1);
}

#[test]
fn compare_with_one_run_uses_the_automatic_baseline_and_known_failures() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let config = dir.path().join("btrfsqa.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nresults-dir = \"{}\"\n\n[[expectations.known-failures]]\ntest = \"b\"\nkernel = \">=6.3\"\nreason = \"bug 42\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = run(btrfsqa()
        .args(["compare", "20260503-060000-0003", "--config"])
        .arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("compared with 20260502-060000-0002"),
        "{stdout}"
    );
    let b = stdout
        .lines()
        .find(|l| l.starts_with("expected"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(b.contains("known: bug 42"), "{b}");
    assert!(stdout.contains("0 new failure(s)"), "{stdout}");

    // The oldest run has nothing to compare with: said on stderr, not an error.
    let out = run(btrfsqa()
        .args(["compare", "20260501-060000-0001", "--config"])
        .arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no earlier completed run"), "{stderr}");
    assert!(stdout.contains("without a baseline"), "{stdout}");
}

#[test]
fn compare_refuses_bad_and_unknown_run_ids() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let out = run(btrfsqa()
        .args(["compare", "../etc", "20260502-060000-0002", "--results-dir"])
        .arg(dir.path()));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("invalid run id `../etc`"), "{stderr}");

    let out = run(btrfsqa()
        .args(["compare", "20260501-060000-0001", "nope", "--results-dir"])
        .arg(dir.path()));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no run `nope`"), "{stderr}");
    assert!(stderr.contains("newest: 20260503-060000-0003"), "{stderr}");

    // A broken report is named, and does not stop comparing the others.
    std::fs::create_dir_all(dir.path().join("broken")).unwrap();
    std::fs::write(dir.path().join("broken/report.json"), "{").unwrap();
    let out = run(btrfsqa()
        .args(["compare", "broken", "20260502-060000-0002", "--results-dir"])
        .arg(dir.path()));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("broken/report.json` is not a valid report"),
        "{stderr}"
    );
    let out = run(btrfsqa()
        .args([
            "compare",
            "20260501-060000-0001",
            "20260502-060000-0002",
            "--results-dir",
        ])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("warning: skipping a run"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn history_shows_a_test_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let out = run(btrfsqa()
        .args(["history", "c", "--results-dir"])
        .arg(dir.path()));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "c: 3 run(s), 3 passed, 1 failed, 2 change(s) between pass and fail"
    );
    assert!(lines[2].starts_with("run "), "{stdout}");
    assert!(lines[3].starts_with("20260503-060000-0003"), "{stdout}");
    assert!(lines[4].starts_with("20260502-060000-0002"), "{stdout}");
    assert!(
        lines[4].contains("fail") && lines[4].contains("pass"),
        "{}",
        lines[4]
    );
    assert!(lines[4].contains("c: output mismatch"), "{}", lines[4]);
    assert!(lines[3].contains("6.3.0"), "{}", lines[3]);

    let out = run(btrfsqa()
        .args(["history", "a", "--limit", "1", "--json", "--results-dir"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["runs"], 3);
    assert_eq!(
        (json["passes"].clone(), json["failures"].clone()),
        (1.into(), 2.into())
    );
    assert_eq!(json["entries"].as_array().unwrap().len(), 1);
    assert_eq!(json["entries"][0]["run_id"], "20260503-060000-0003");
    assert_eq!(json["entries"][0]["verdict"], "fail");
}

#[test]
fn history_of_an_unknown_test_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let out = run(btrfsqa()
        .args(["history", "zz", "--results-dir"])
        .arg(dir.path()));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("no test `zz` in any of the 3 run(s)"),
        "{stderr}"
    );

    let out = run(btrfsqa()
        .args(["history", "a", "--suite", "xfstests", "--results-dir"])
        .arg(dir.path()));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("it ran in suite `smoke`"), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let out = run(btrfsqa()
        .args(["history", "a", "--results-dir"])
        .arg(empty.path()));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}
