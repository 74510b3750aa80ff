//! The RAID5/6 scrub suite on five real loop devices (root only).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use btrfsqa_model::{ArtifactKind, Event, Verdict};
use btrfsqa_remote::LocalHost;
use btrfsqa_suites::raid56::{REQUIRED_TOOLS, SCENARIOS};
use btrfsqa_suites::{MachineDevices, Raid56Scrub, Raid56ScrubConfig, SuiteContext, TestSuite};

use crate::loopdevs::{LoopDevices, have, is_root};

/// Why the test cannot run here, if it cannot.
fn missing_preconditions() -> Option<String> {
    if !is_root() {
        return Some("needs root (loop devices, mkfs, mount)".into());
    }
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .chain(&["losetup", "blkid"])
        .copied()
        .filter(|t| !have(t))
        .collect();
    (!missing.is_empty()).then(|| format!("missing tools: {}", missing.join(", ")))
}

#[tokio::test]
async fn every_raid56_scenario_repairs_real_damage() {
    if let Some(why) = missing_preconditions() {
        eprintln!("skipped: {why}");
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-raid56-")
        .tempdir()
        .unwrap();
    let loops = LoopDevices::with_bytes(tmp.path(), 5, 512 << 20);
    let work_dir = tmp.path().join("work");
    let devices = MachineDevices {
        name: "local-0".into(),
        test_dev: String::new(),
        scratch_devs: loops.devices.clone(),
        work_dir: work_dir.to_string_lossy().into_owned(),
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

    let suite = Raid56Scrub::new(Raid56ScrubConfig::default());
    let started = Instant::now();
    suite.prepare(&ctx).await.expect("prepare");
    let report = suite.run(&ctx).await.expect("run");
    eprintln!("raid56-scrub took {:.1} s", started.elapsed().as_secs_f64());
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
    assert_eq!(names, SCENARIOS);
    for t in &report.tests {
        let log = t
            .artifacts
            .iter()
            .find(|a| a.kind == ArtifactKind::Log)
            .unwrap_or_else(|| panic!("{}: no command log", t.name));
        let log_text = std::fs::read_to_string(run_dir.join(&log.path)).unwrap();
        assert_eq!(
            t.verdict,
            Verdict::Pass,
            "{t:?}\n--- command log ---\n{log_text}"
        );
        assert!(log_text.contains("$ mkfs.btrfs"), "{}", t.name);
    }

    let events = events.lock().unwrap();
    let started_events = events
        .iter()
        .filter(|e| matches!(e, Event::TestStarted { .. }))
        .count();
    let finished_events = events
        .iter()
        .filter(|e| matches!(e, Event::TestFinished { .. }))
        .count();
    assert_eq!(
        (started_events, finished_events),
        (SCENARIOS.len(), SCENARIOS.len())
    );

    // Nothing is left mounted and no device carries a filesystem any more.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*work_dir.to_string_lossy()),
        "a mount was left behind"
    );
    for dev in &loops.devices {
        let out = std::process::Command::new("blkid")
            .args(["-p", "-o", "value", "-s", "TYPE"])
            .arg(dev)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "`{dev}` still has a filesystem signature"
        );
    }
}
