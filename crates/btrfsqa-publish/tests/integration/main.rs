//! Integration tests of btrfsqa-publish against real git (a bare repository
//! on disk, pushed to with the `git` command), a real XML parser and a
//! real browser (headless Chromium).
//!
//! Tests that need git check for it and print why they skip.

mod browser;
mod chromium;
mod ecosystem;
mod git_publisher;
mod junit;
mod layout;

use std::path::Path;
use std::process::Command;

use btrfsqa_model::{
    Provenance, ResultsStore, RunId, RunReport, RunStatus, SuiteReport, TestOutcome, Verdict,
};

/// Whether the `git` command can be run.
pub fn git_available() -> bool {
    Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Returns early from a test, saying why, when git is missing.
#[macro_export]
macro_rules! require_git {
    () => {
        if !$crate::git_available() {
            eprintln!("skipping: the `git` command is not installed");
            return;
        }
    };
}

/// A finished run `id` with one suite holding `tests`.
pub fn report(id: &str, started: &str, tests: &[(&str, Verdict)]) -> RunReport {
    let started = started.parse().unwrap();
    let provenance = Provenance {
        btrfsqa_version: "0.1.0".into(),
        provider: "local".into(),
        ..Provenance::default()
    };
    let mut report = RunReport::start(RunId::parse(id).unwrap(), started, provenance);
    let mut suite = SuiteReport::new("raid56-scrub");
    for (name, verdict) in tests {
        suite.tests.push(
            TestOutcome::new("raid56-scrub", *name, *verdict)
                .with_message(format!("{name}: {verdict}")),
        );
    }
    report.suites.push(suite);
    report.finish(
        RunStatus::Completed,
        started + chrono::Duration::seconds(90),
    );
    report
}

/// A store at `dir` holding `reports`.
pub fn store_with(dir: &Path, reports: &[RunReport]) -> ResultsStore {
    let store = ResultsStore::new(dir);
    for report in reports {
        store.write_report(report).unwrap();
    }
    store
}

/// Runs `git -C dir args...` and returns its standard output; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
