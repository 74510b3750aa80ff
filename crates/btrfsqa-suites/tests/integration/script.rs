//! Script suites on this machine: the shipped smoke suite on real loop
//! devices (root only), and verdicts, timeouts and cancellation with
//! throwaway scripts (anyone).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use btrfsqa_model::{ArtifactKind, Event, Verdict};
use btrfsqa_remote::LocalHost;
use btrfsqa_suites::{
    MachineDevices, ScriptSuite, ScriptSuiteConfig, SuiteContext, SuiteError, TestSuite,
};

use crate::loopdevs::{LoopDevices, have, is_root};

fn smoke_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites/smoke")
}

fn context(devices: MachineDevices, run_dir: &Path) -> (SuiteContext, Arc<Mutex<Vec<Event>>>) {
    let mut ctx = SuiteContext::new(
        Arc::new(LocalHost::new("local-0")),
        devices,
        run_dir.to_owned(),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    ctx.events = Arc::new(move |e| sink.lock().unwrap().push(e));
    (ctx, events)
}

fn write_script(dir: &Path, name: &str, body: &str, executable: bool) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether process `pid` is gone (a zombie nobody reaped counts as gone).
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn wait_gone(pid: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test]
async fn smoke_suite_passes_on_six_loop_devices() {
    if !is_root() {
        eprintln!("skipped: needs root (loop devices, mkfs, mount)");
        return;
    }
    let missing: Vec<&str> = ["losetup", "mkfs.btrfs", "btrfs", "mountpoint"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: missing tools: {}", missing.join(", "));
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-smoke-")
        .tempdir()
        .unwrap();
    let loops = LoopDevices::with_bytes(tmp.path(), 6, 512 << 20);
    let work_dir = tmp.path().join("work");
    let devices = MachineDevices {
        name: "local-0".into(),
        test_dev: loops.devices[0].clone(),
        scratch_devs: loops.devices[1..].to_vec(),
        work_dir: work_dir.to_string_lossy().into_owned(),
    };
    let run_dir = tmp.path().join("run");
    let (ctx, events) = context(devices, &run_dir);
    let mut config = ScriptSuiteConfig::new(smoke_dir());
    config.timeout_secs = Some(60);
    let suite = ScriptSuite::new("smoke", config);

    suite.prepare(&ctx).await.expect("prepare");
    assert!(
        work_dir.join("scripts/smoke/README.md").exists(),
        "helpers are uploaded too"
    );
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
    let names: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "001_mkfs-mount",
            "002_scrub-clean",
            "003_raid1-balance",
            "004_zstd-compsize"
        ]
    );
    for t in &report.tests[..3] {
        assert_eq!(t.verdict, Verdict::Pass, "{t:?}");
    }
    let compsize = &report.tests[3];
    if have("compsize") {
        assert_eq!(compsize.verdict, Verdict::Pass, "{compsize:?}");
    } else {
        assert_eq!(compsize.verdict, Verdict::Skip, "{compsize:?}");
        assert_eq!(
            compsize.message.as_deref(),
            Some("compsize is not installed (Debian: btrfs-compsize)")
        );
    }
    let scrub = &report.tests[1];
    let stdout = scrub
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Stdout)
        .expect("stdout kept");
    let text = std::fs::read_to_string(run_dir.join(&stdout.path)).unwrap();
    assert!(text.contains("corrected_errors: 0"), "{text}");
    assert!(
        report
            .tests
            .iter()
            .all(|t| t.duration_secs.is_some() && t.started_at.is_some())
    );
    let events = events.lock().unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Warning { .. })),
        "the smoke scripts unmount what they mount: {events:?}"
    );
}

#[tokio::test]
async fn verdicts_timeouts_and_leftovers_with_real_processes() {
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-scripts-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join("scripts");
    std::fs::create_dir(&dir).unwrap();
    let work_dir = tmp.path().join("work");
    write_script(
        &dir,
        "001_hang",
        // A child in the background and a shell that never ends: both must go.
        "sleep 1000 &\necho $! > \"$BTRFSQA_WORK_DIR/sleeper.pid\"\necho waiting\nsleep 1000",
        true,
    );
    write_script(
        &dir,
        "002_fail",
        "echo some output\necho 'first problem' >&2\necho 'the real problem' >&2\n\
         echo \"btrfsqa kernel-log probe $BTRFSQA_TEST\" > /dev/kmsg 2>/dev/null\nexit 3",
        true,
    );
    write_script(
        &dir,
        "003_skip",
        "echo checking\necho 'needs a frobnicator' >&2\nexit 77",
        true,
    );
    write_script(
        &dir,
        "004_env",
        "[ \"$BTRFSQA_TEST\" = 004_env ] && [ \"$SCRATCH_DEV\" = /dev/fake1 ] && \
         [ \"$SCRATCH_DEV_POOL\" = '/dev/fake1 /dev/fake2' ] && [ \"$TEST_DEV\" = /dev/fake0 ] && \
         [ -d \"$TEST_DIR\" ] && [ -d \"$SCRATCH_MNT\" ] && [ \"$EXTRA\" = 'a b' ] && \
         [ \"$(pwd)\" = \"$BTRFSQA_SCRIPT_DIR\" ] && . ./helper.sh && [ \"$HELPER\" = yes ]",
        true,
    );
    write_script(&dir, "005_not-executable", "exit 0", false);
    // Mounting needs root; elsewhere this script skips.
    write_script(
        &dir,
        "006_leaves-a-mount",
        "mount -t tmpfs btrfsqa-test \"$SCRATCH_MNT\" 2>/dev/null || { echo 'cannot mount here'; exit 77; }",
        true,
    );
    std::fs::write(dir.join("helper.sh"), "HELPER=yes\n").unwrap();
    std::fs::write(dir.join("README"), "not a test\n").unwrap();

    let devices = MachineDevices {
        name: "local-0".into(),
        test_dev: "/dev/fake0".into(),
        scratch_devs: vec!["/dev/fake1".into(), "/dev/fake2".into()],
        work_dir: work_dir.to_string_lossy().into_owned(),
    };
    let run_dir = tmp.path().join("run");
    let (ctx, events) = context(devices, &run_dir);
    let mut config = ScriptSuiteConfig::new(&dir);
    config.timeouts = BTreeMap::from([("001_hang".to_owned(), 2)]);
    config.env = BTreeMap::from([("EXTRA".to_owned(), "a b".to_owned())]);
    let suite = ScriptSuite::new("mixed", config);
    suite.prepare(&ctx).await.expect("prepare");
    let started = Instant::now();
    // A hung script stops the suite (the runner resets the machine); the
    // rest runs when the suite is run again without the finished tests.
    let mut report = match suite.run(&ctx).await {
        Err(SuiteError::Hung { test, partial, .. }) => {
            assert_eq!(test, "001_hang");
            *partial
        }
        other => panic!("expected the hung script to stop the suite: {other:?}"),
    };
    let mut again = ctx.clone();
    again.skip = report.tests.iter().map(|t| t.name.clone()).collect();
    report
        .tests
        .extend(suite.run(&again).await.expect("run").tests);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the hung script stalled the suite"
    );

    let verdicts: Vec<(&str, Verdict)> = report
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    let leftover_verdict = if is_root() {
        Verdict::Pass
    } else {
        Verdict::Skip
    };
    assert_eq!(
        verdicts,
        [
            ("001_hang", Verdict::Hung),
            ("002_fail", Verdict::Fail),
            ("003_skip", Verdict::Skip),
            ("004_env", Verdict::Pass),
            ("005_not-executable", Verdict::Error),
            ("006_leaves-a-mount", leftover_verdict),
        ],
        "{report:#?}"
    );
    let by_name = |n: &str| report.tests.iter().find(|t| t.name == n).unwrap();
    let hung = by_name("001_hang");
    assert!(hung.message.as_deref().unwrap().contains("2 s"), "{hung:?}");
    let pid = std::fs::read_to_string(work_dir.join("sleeper.pid")).unwrap();
    assert!(
        wait_gone(pid.trim()),
        "the hung script's background child {pid} survived"
    );
    let out = hung
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Stdout)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(run_dir.join(&out.path)).unwrap(),
        "waiting\n"
    );

    let fail = by_name("002_fail").message.clone().unwrap();
    assert!(
        fail.contains("code 3") && fail.contains("the real problem"),
        "{fail}"
    );
    let failed = by_name("002_fail");
    let stderr = failed
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Stderr)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(run_dir.join(&stderr.path)).unwrap(),
        "first problem\nthe real problem\n",
        "the kernel log stays out of the test's stderr"
    );
    if is_root() {
        // What the kernel logged during the failing test is kept beside it.
        let dmesg = failed
            .artifacts
            .iter()
            .find(|a| a.kind == ArtifactKind::Dmesg)
            .expect("a dmesg artifact");
        let kept = std::fs::read_to_string(run_dir.join(&dmesg.path)).unwrap();
        assert!(kept.contains("btrfsqa kernel-log probe 002_fail"), "{kept}");
        assert!(failed.kernel_log.is_empty(), "{:?}", failed.kernel_log);
    }
    assert_eq!(
        by_name("003_skip").message.as_deref(),
        Some("needs a frobnicator")
    );
    assert!(
        by_name("005_not-executable")
            .message
            .as_deref()
            .unwrap()
            .contains("not executable")
    );

    if is_root() {
        let scratch = work_dir.join("mnt/scratch");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&*scratch.to_string_lossy()),
            "the tmpfs stayed mounted"
        );
        let events = events.lock().unwrap();
        assert!(
            events.iter().any(|e| matches!(e, Event::Warning { message, .. } if message.contains("006_leaves-a-mount"))),
            "no warning about the leftover mount"
        );
    }
}

#[tokio::test]
async fn cancel_kills_the_running_script_and_stops_the_suite() {
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-cancel-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join("scripts");
    std::fs::create_dir(&dir).unwrap();
    let work_dir = tmp.path().join("work");
    write_script(&dir, "001_quick", "exit 0", true);
    write_script(
        &dir,
        "002_long",
        "sleep 1000 &\necho $! > \"$BTRFSQA_WORK_DIR/child.pid\"\nsleep 1000",
        true,
    );
    write_script(&dir, "003_never", "touch \"$BTRFSQA_WORK_DIR/ran\"", true);
    let devices = MachineDevices {
        name: "local-0".into(),
        work_dir: work_dir.to_string_lossy().into_owned(),
        ..MachineDevices::default()
    };
    let (ctx, events) = context(devices, &tmp.path().join("run"));
    let suite = ScriptSuite::new("cancel", ScriptSuiteConfig::new(&dir));
    suite.prepare(&ctx).await.expect("prepare");

    let cancel = ctx.cancel.clone();
    let pidfile = work_dir.join("child.pid");
    let watcher = pidfile.clone();
    tokio::spawn(async move {
        while !watcher.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cancel.cancel();
    });
    let started = Instant::now();
    let err = suite.run(&ctx).await.expect_err("cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "cancel was not prompt"
    );
    let SuiteError::Cancelled { partial, .. } = err else {
        panic!("expected Cancelled, got {err:?}");
    };
    let verdicts: Vec<(&str, Verdict)> = partial
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("001_quick", Verdict::Pass),
            ("002_long", Verdict::Interrupted)
        ]
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(
        wait_gone(pid.trim()),
        "the cancelled script's child {pid} survived"
    );
    assert!(!work_dir.join("ran").exists(), "a script ran after cancel");
    let events = events.lock().unwrap();
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::TestFinished { .. }))
        .count();
    assert_eq!(finished, 2, "every started test is finished");
}
