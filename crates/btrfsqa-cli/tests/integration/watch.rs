//! `btrfsqa watch` against git repositories on disk, with real runs on the
//! local provider.

use std::process::Command;
use std::time::Duration;

use crate::runs::Area;
use crate::{btrfsqa, need_root, run, text};

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn runs(area: &Area) -> Vec<serde_json::Value> {
    let mut reports: Vec<serde_json::Value> = std::fs::read_dir(area.path("results"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read(e.path().join("report.json")).ok())
                .map(|b| serde_json::from_slice(&b).unwrap())
                .collect()
        })
        .unwrap_or_default();
    reports.sort_by_key(|r| r["run_id"].as_str().unwrap().to_owned());
    reports
}

/// A new commit on a watched branch starts exactly one run, which records
/// it; no new commit, no run; a second watcher of the store is refused;
/// `--once` polls once and exits (0 when nothing ran).
#[test]
fn a_moved_branch_starts_one_run_that_records_its_commit() {
    if !need_root("a_moved_branch_starts_one_run_that_records_its_commit") {
        return;
    }
    let area = Area::new();
    let repo = area.path("progs");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "devel"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
    area.scripts("quick", &[("001_ok", "true")]);
    let config = area.config(
        "\"quick\"",
        &format!(
            "\n[suites.scripts.quick]\ndir = \"quick\"\n\n[watch]\ninterval-secs = 1\n\
             [[watch.refs]]\nsource = \"btrfs-progs\"\nurl = \"{}\"\nref = \"devel\"\n",
            repo.display()
        ),
    );
    let once = || {
        let out = run(btrfsqa().args(["watch", "--once", "--config"]).arg(&config));
        let (stdout, stderr) = text(&out);
        (out.status.code(), format!("{stdout}{stderr}"))
    };
    // First start: the head is noted, nothing runs.
    let (code, said) = once();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("first start: btrfs-progs devel"), "{said}");
    assert!(runs(&area).is_empty());
    // Nothing moved: no run.
    let (code, said) = once();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("no watched ref moved"), "{said}");
    assert!(runs(&area).is_empty());
    // A new commit: exactly one run, which names it.
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "two"]);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let (code, said) = once();
    assert_eq!(code, Some(0), "{said}");
    let reports = runs(&area);
    assert_eq!(reports.len(), 1, "{said}");
    assert_eq!(
        reports[0]["labels"]["trigger"],
        format!("btrfs-progs devel {}", &head[..12])
    );
    let (_, said) = once();
    assert!(said.contains("no watched ref moved"), "{said}");
    assert_eq!(runs(&area).len(), 1);

    // A second watcher of the same store is refused, and the first one
    // stops cleanly on SIGTERM.
    let first = btrfsqa()
        .args(["watch", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (code, said) = once();
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("another `btrfsqa watch` watches"), "{said}");
    assert!(said.contains(&format!("pid {}", first.id())), "{said}");
    assert!(
        Command::new("kill")
            .args(["-TERM", &first.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out).1);
    assert_eq!(runs(&area).len(), 1, "no run without a new commit");
    area.assert_nothing_left();
}
