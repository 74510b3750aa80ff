//! btrfs-progs' own tests for real: needs root and a btrfs-progs git
//! repository named by `BTRFSQA_BTRFS_PROGS_GIT` (a path or `file://` URL;
//! `scripts/make-btrfs-progs-mirror.sh` makes one from Debian's source
//! package). Builds btrfs-progs (about a minute on two cores; the build is
//! kept in `BTRFSQA_BTRFS_PROGS_WORK` when set) and runs a handful of cases
//! that are safe on a shared host: not cli/017 (it renames device nodes in
//! /dev), nothing from mkfs (it needs null_blk).

use std::sync::{Arc, Mutex};

use btrfsqa_model::{ArtifactKind, Event, Verdict};
use btrfsqa_remote::LocalHost;
use btrfsqa_suites::{BtrfsProgsConfig, BtrfsProgsTests, MachineDevices, SuiteContext, TestSuite};

use crate::loopdevs::{have, is_root};

#[tokio::test]
async fn btrfs_progs_cases_run_one_by_one() {
    let Some(git) = std::env::var("BTRFSQA_BTRFS_PROGS_GIT")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "skipped: set BTRFSQA_BTRFS_PROGS_GIT to a btrfs-progs git repository \
             (scripts/make-btrfs-progs-mirror.sh makes one) to run btrfs-progs' tests for real"
        );
        return;
    };
    if !is_root() || !have("losetup") || !have("git") {
        eprintln!("skipped: needs root, losetup and git");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-progs-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let work = std::env::var("BTRFSQA_BTRFS_PROGS_WORK")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| tmp.path().join("work").to_string_lossy().into_owned());
    let config: BtrfsProgsConfig = serde_json::from_value(serde_json::json!({
        "git-url": git,
        "cache-dir": tmp.path().join("cache"),
        "suites": ["cli", "misc", "fsck"],
        "include": ["cli/001-*", "cli/003-*", "cli/005-*", "cli/008-*", "misc/015-*", "misc/047-*", "fsck/001-*", "fsck/012-*"],
        "case-timeout-secs": 300,
    }))
    .unwrap();
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let suite = BtrfsProgsTests::new(config);
    let devices = MachineDevices {
        name: "local-0".into(),
        work_dir: work,
        ..MachineDevices::default()
    };
    let run_dir = tmp.path().join("run");
    let mut ctx = SuiteContext::new(
        Arc::new(LocalHost::new("local-0")),
        devices,
        run_dir.clone(),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    ctx.events = Arc::new(move |e| sink.lock().unwrap().push(e));

    suite.prepare(&ctx).await.expect("prepare");
    let report = suite.run(&ctx).await.expect("run");
    for t in &report.tests {
        eprintln!(
            "{} {} {:.1}s {}",
            t.name,
            t.verdict,
            t.duration_secs.unwrap_or_default(),
            t.message.as_deref().unwrap_or("")
        );
    }
    assert_eq!(
        report
            .source
            .as_ref()
            .unwrap()
            .commit
            .as_ref()
            .unwrap()
            .len(),
        40
    );
    let names: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cli/001-btrfs",
            "cli/003-fi-resize-args",
            "cli/005-qgroup-show",
            "cli/008-subvolume-get-set-default",
            "misc/015-dump-super-garbage",
            "misc/047-raid5-convert",
            "fsck/001-bad-file-extent-bytenr",
            "fsck/012-leaf-corruption",
        ]
    );
    for t in &report.tests {
        // Every case ran (no harness error) and passed: each ran alone, after
        // the previous one's leftovers were cleaned.
        assert_eq!(t.verdict, Verdict::Pass, "{t:?}");
        let console = t
            .artifacts
            .iter()
            .find(|a| a.kind == ArtifactKind::Stdout)
            .expect("console");
        assert!(run_dir.join(&console.path).is_file());
        let log = t
            .artifacts
            .iter()
            .find(|a| a.kind == ArtifactKind::Log)
            .expect("results file");
        assert!(
            std::fs::read_to_string(run_dir.join(&log.path))
                .unwrap()
                .contains("=== START TEST")
        );
    }
    let finished = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::TestFinished { .. }))
        .count();
    assert_eq!(finished, report.tests.len());
    let loops = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&loops.stdout).contains("btrfsqa-src/btrfs-progs"),
        "a loop device was left behind"
    );
}
