//! fstests for real: needs root, loop devices and an fstests git repository
//! named by `BTRFSQA_FSTESTS_GIT` (a path or URL; CI has none, so there this
//! skips). It installs fstests' packages, builds fstests (several minutes the
//! first time; the build is kept in the work directory named by
//! `BTRFSQA_FSTESTS_WORK`, default a fresh temporary one) and runs four
//! quick tests under two profiles.

use std::sync::{Arc, Mutex};

use btrfsqa_model::{ArtifactKind, Event, Verdict};
use btrfsqa_remote::LocalHost;
use btrfsqa_suites::{
    MachineDevices, SuiteContext, SuiteError, TestSuite, Xfstests, XfstestsConfig,
};

use std::path::Path;
use std::process::Command;

use crate::loopdevs::{LoopDevices, have, is_root};

/// The fstests tests share one work directory when `BTRFSQA_FSTESTS_WORK`
/// is set (to build fstests once): one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn fstests_runs_on_loop_devices() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(git) = std::env::var("BTRFSQA_FSTESTS_GIT")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "skipped: set BTRFSQA_FSTESTS_GIT to an fstests git repository to run fstests for real"
        );
        return;
    };
    if !is_root() || !have("losetup") || !have("mkfs.btrfs") {
        eprintln!("skipped: needs root, losetup and mkfs.btrfs");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-fstests-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let work = std::env::var("BTRFSQA_FSTESTS_WORK")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| tmp.path().join("work").to_string_lossy().into_owned());
    let loops = LoopDevices::new(tmp.path(), 6, 10);
    let devices = MachineDevices {
        name: "local-0".into(),
        test_dev: loops.devices[0].clone(),
        scratch_devs: loops.devices[1..].to_vec(),
        work_dir: work,
    };
    let config: XfstestsConfig = toml_like(&git);
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let suite = Xfstests::new(config);
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
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    keep_run(&run_dir, "fstests-sections");

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
    for profile in ["default", "compress"] {
        let of = |name: &str| {
            report
                .tests
                .iter()
                .find(|t| t.name == name && t.profile.as_deref() == Some(profile))
                .unwrap_or_else(|| panic!("no outcome for {name} in {profile}"))
        };
        for name in ["btrfs/001", "btrfs/002", "generic/001"] {
            let outcome = of(name);
            assert_eq!(outcome.verdict, Verdict::Pass, "{outcome:?}");
            assert!(outcome.duration_secs.is_some());
            let full = outcome
                .artifacts
                .iter()
                .find(|a| a.kind == ArtifactKind::Full)
                .expect("a .full");
            assert!(run_dir.join(&full.path).exists());
        }
        let notrun = of("generic/034");
        assert_eq!(notrun.verdict, Verdict::Skip, "{notrun:?}");
        assert!(notrun.message.is_some());
    }
    let events = events.lock().unwrap();
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::TestStarted { .. }))
        .count();
    assert_eq!(started, 8, "one start per test and profile");
    let mounts = std::process::Command::new("findmnt")
        .arg("-rn")
        .output()
        .unwrap();
    let mounts = String::from_utf8_lossy(&mounts.stdout);
    assert!(
        !mounts.contains(&loops.devices[0]),
        "the test device is still mounted"
    );
}

#[tokio::test]
async fn a_hung_fstests_test_is_stopped_and_the_suite_stops_after_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(git) = std::env::var("BTRFSQA_FSTESTS_GIT")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "skipped: set BTRFSQA_FSTESTS_GIT to an fstests git repository to run fstests for real"
        );
        return;
    };
    if !is_root() || !have("losetup") || !have("mkfs.btrfs") {
        eprintln!("skipped: needs root, losetup and mkfs.btrfs");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-fstests-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let work = std::env::var("BTRFSQA_FSTESTS_WORK")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| tmp.path().join("work").to_string_lossy().into_owned());
    let loops = LoopDevices::new(tmp.path(), 6, 10);
    let devices = MachineDevices {
        name: "local-0".into(),
        test_dev: loops.devices[0].clone(),
        scratch_devs: loops.devices[1..].to_vec(),
        work_dir: work,
    };
    // btrfs/002 takes 5 to 10 s here (snapshots, fsstress): given 1 s, it
    // hangs on any machine, while the others keep the default timeout.
    let config: XfstestsConfig = serde_json::from_value(serde_json::json!({
        "git-url": git,
        "tests": ["btrfs/001", "btrfs/002", "generic/001"],
    }))
    .unwrap();
    let suite = Xfstests::new(config);
    let run_dir = tmp.path().join("run");
    let mut ctx = SuiteContext::new(
        Arc::new(LocalHost::new("local-0")),
        devices,
        run_dir.clone(),
    );
    ctx.derived_timeouts.insert(
        "xfstests/btrfs/002".into(),
        std::time::Duration::from_secs(1),
    );
    suite.prepare(&ctx).await.expect("prepare");
    // The suite stops after the hung test: the runner resets the machine
    // and hands the rest of the batch out again.
    let Err(SuiteError::Hung { test, partial, .. }) = suite.run(&ctx).await else {
        panic!("the suite did not stop at the hung test");
    };
    keep_run(&run_dir, "fstests-hung");
    assert_eq!(test, "btrfs/002");
    let got: Vec<(&str, Verdict)> = partial
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    assert_eq!(
        got,
        [("btrfs/001", Verdict::Pass), ("btrfs/002", Verdict::Hung)],
        "{partial:#?}"
    );
    assert!(
        partial.tests[1]
            .message
            .as_deref()
            .unwrap()
            .contains("still running after 1 s")
    );
    assert!(
        partial.tests[1]
            .artifacts
            .iter()
            .any(|a| a.path.ends_with("hang-evidence.txt")),
        "the hung test keeps what the machine showed"
    );
    let mounts = std::process::Command::new("findmnt")
        .arg("-rn")
        .output()
        .unwrap();
    let mounts = String::from_utf8_lossy(&mounts.stdout);
    assert!(
        !mounts.contains(&loops.devices[0]),
        "the test device is still mounted"
    );
}

/// The tests each section lists on the controller are the tests the
/// section's `./check` selects (`./check -n`) on a machine with the same
/// tree: groups, `-x` groups, named tests, excluded tests and an exclusion
/// file, under three profiles.
#[tokio::test]
async fn the_listed_tests_are_what_check_would_run() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(git) = std::env::var("BTRFSQA_FSTESTS_GIT")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "skipped: set BTRFSQA_FSTESTS_GIT to an fstests git repository to run fstests for real"
        );
        return;
    };
    if !is_root() || !have("losetup") || !have("mkfs.btrfs") {
        eprintln!("skipped: needs root, losetup and mkfs.btrfs");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-fstests-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let exclusions = tmp.path().join("expunged");
    std::fs::write(
        &exclusions,
        "# known to fail here\nbtrfs/012 # convert\ngeneric/013\n",
    )
    .unwrap();
    let loops = LoopDevices::new(tmp.path(), 6, 10);
    let devices = MachineDevices {
        name: "local-0".into(),
        test_dev: loops.devices[0].clone(),
        scratch_devs: loops.devices[1..].to_vec(),
        work_dir: tmp.path().join("work").to_string_lossy().into_owned(),
    };
    let config: XfstestsConfig = serde_json::from_value(serde_json::json!({
        "git-url": git,
        "profiles": ["default", "raid"],
        "exclude-groups": ["dangerous"],
        "exclude-tests": ["btrfs/011"],
        "exclude-files": [exclusions],
        "sections": [{
            "name": "picked",
            "groups": ["btrfs/quick"],
            "exclude-groups": ["qgroup"],
        }],
    }))
    .unwrap();
    let config = XfstestsConfig {
        tests: vec!["generic/001".into(), "generic/013".into()],
        ..config
    };
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let sections = config.resolve().unwrap();
    let suite = Xfstests::new(config);
    let listed = suite.list_tests().await.expect("list").expect("a list");
    let ctx = SuiteContext::new(
        Arc::new(LocalHost::new("local-0")),
        devices.clone(),
        tmp.path().join("run"),
    );
    suite.prepare(&ctx).await.expect("prepare");
    let tree = std::fs::read_dir(tmp.path().join("work/btrfsqa-src"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("the placed tree");
    let layout = btrfsqa_suites::xfstests::MachineLayout::under(&devices.work_dir);
    for dir in [&layout.test_dir, &layout.scratch_mnt, &layout.result_base] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let local =
        btrfsqa_suites::xfstests::config::local_config(&sections, &devices, &layout).unwrap();
    std::fs::write(tree.join("local.config"), local).unwrap();
    assert!(
        Command::new("mkfs.btrfs")
            .args(["-f", "-q", &devices.test_dev])
            .status()
            .unwrap()
            .success()
    );
    let mut checked = 0;
    for section in &sections {
        let ours: Vec<&str> = listed
            .tests
            .iter()
            .filter(|t| t.profile.as_deref() == Some(section.name.as_str()))
            .map(|t| t.name.as_str())
            .collect();
        // What `./check` gets from the suite: its exclusions in one -E file.
        let excluded = tree.join(format!("exclude-{}", section.fstests_name));
        let mut entries = section.exclude_tests.join("\n");
        entries.push('\n');
        entries.push_str(&std::fs::read_to_string(&exclusions).unwrap());
        std::fs::write(&excluded, entries).unwrap();
        let args = btrfsqa_suites::xfstests::config::check_args(
            section,
            Some(&excluded.to_string_lossy()),
            None,
        );
        let out = Command::new("./check")
            .arg("-n")
            .args(&args)
            .current_dir(&tree)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let theirs: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("[expunged]"))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| btrfsqa_suites::xfstests::parse::is_test_name(w))
            .collect();
        assert!(!theirs.is_empty(), "`./check -n` listed nothing:\n{text}");
        assert_eq!(ours, theirs, "section `{}`", section.name);
        checked += ours.len();
    }
    eprintln!("{checked} tests listed as `./check -n` lists them");
    let _ = Command::new("umount").arg(&layout.test_dir).status();
}

/// The configuration, as a user would write it.
fn toml_like(git: &str) -> XfstestsConfig {
    let text = format!(
        r#"{{"git-url": {git:?}, "profiles": ["default", "compress"],
            "tests": ["btrfs/001", "btrfs/002", "generic/001", "generic/034"],
            "test-timeout-secs": 600}}"#
    );
    serde_json::from_str(&text).unwrap()
}

/// Copies a run directory to `$BTRFSQA_KEEP_RUN/<name>` when that is set,
/// to look at (or to capture fixtures from) what a real run left.
pub fn keep_run(run_dir: &Path, name: &str) {
    if let Some(keep) = std::env::var_os("BTRFSQA_KEEP_RUN") {
        let dest = Path::new(&keep).join(name);
        let _ = std::fs::create_dir_all(&dest);
        let _ = Command::new("cp")
            .arg("-a")
            .arg(run_dir)
            .arg(&dest)
            .status();
    }
}
