//! Defects of the review, each shown by the real binary: a run has one
//! owner at a time.

use std::process::Command;

use crate::runs::{Area, spawn_run, wait_for_journal};
use crate::{btrfsqa, need_root, run, text};

/// `btrfsqa resume` of a run whose controller still drives it is refused
/// (exit 2, the owner named); once the owner is gone it resumes.
#[test]
fn resuming_a_run_that_still_runs_is_refused() {
    if !need_root("resuming_a_run_that_still_runs_is_refused") {
        return;
    }
    let area = Area::new();
    let go = area.path("go");
    area.scripts(
        "steps",
        &[(
            "001_waits",
            &format!("[ -e {go} ] && exit 0; sleep 600", go = go.display()),
        )],
    );
    let config = area.config("\"steps\"", "\n[suites.scripts.steps]\ndir = \"steps\"\n");
    let child = spawn_run(&config);
    wait_for_journal(&area, "\"test\":\"001_waits\"");
    let run_id = area.report()["run_id"].as_str().unwrap().to_owned();
    let out = run(btrfsqa().args(["resume", &run_id, "--config"]).arg(&config));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is still being driven") && stderr.contains(&format!("pid {}", child.id())),
        "{stderr}"
    );
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    std::fs::write(&go, "").unwrap();
    let out = run(btrfsqa().args(["resume", &run_id, "--config"]).arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    area.assert_nothing_left();
}
