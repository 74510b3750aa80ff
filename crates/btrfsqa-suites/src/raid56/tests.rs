//! The suite against a scripted fake machine (a `MockRemoteHost` that answers
//! each btrfs-progs command with captured real output).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use btrfsqa_remote::{ExecOutput, MockRemoteHost, RemoteError};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::MachineDevices;

const GOOD: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const BAD: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/raid56/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ok(stdout: impl Into<String>) -> ExecOutput {
    ExecOutput {
        code: Some(0),
        timed_out: false,
        stdout: stdout.into().into_bytes(),
        stderr: Vec::new(),
        duration: Duration::from_millis(3),
    }
}

fn pool(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("/dev/sd{}", (b'a' + i as u8) as char))
        .collect()
}

/// A machine whose btrfs behaves as the knobs say.
struct Fake {
    pool: Vec<String>,
    /// Commands run, without the pidfile prefix.
    calls: Vec<String>,
    /// Damaged places: (device, 4 KiB block).
    damaged: BTreeSet<(String, u64)>,
    /// Tree blocks by place, for header reads.
    blocks: BTreeMap<(String, u64), u64>,
    /// Whether a device scrub rewrites the damage.
    repairs: bool,
    /// What a device scrub prints.
    device_scrub: String,
    /// What a scrub of the whole filesystem prints.
    fs_scrub: String,
    /// Whether `./data/f2` reads differently once damage was done.
    corrupt_file: bool,
    /// A command (prefix) and what it returns instead.
    fail: Option<(&'static str, ExecOutput)>,
    /// A command (prefix) that cancels this token when it runs.
    cancel_on: Option<(&'static str, CancellationToken)>,
}

impl Fake {
    fn new(devices: usize) -> Self {
        Fake {
            pool: pool(devices),
            calls: Vec::new(),
            damaged: BTreeSet::new(),
            blocks: BTreeMap::new(),
            repairs: true,
            device_scrub: fixture("scrub-start-BR-dev-corrected.stdout"),
            fs_scrub: fixture("scrub-start-BR-clean.txt"),
            corrupt_file: false,
            fail: None,
            cancel_on: None,
        }
    }

    fn respond(&mut self, command: &str) -> ExecOutput {
        let cmd = command
            .split_once(" || exit 125; ")
            .map_or(command, |(_, rest)| rest)
            .to_owned();
        if cmd.starts_with("dd if=/dev/kmsg") {
            // The kernel log: a record the cursor can start from, and a
            // harmless one logged during the scenario.
            return ok("6,100,5000000,-;BTRFS info (device sda): first mount\n");
        }
        self.calls.push(cmd.clone());
        if let Some((prefix, out)) = &self.fail
            && cmd.starts_with(prefix)
        {
            return out.clone();
        }
        if let Some((prefix, token)) = &self.cancel_on
            && cmd.starts_with(prefix)
        {
            token.cancel();
        }
        let words: Vec<&str> = cmd.split_whitespace().collect();
        // `-l 123` style and `of=/dev/x` style arguments.
        let arg = |flag: &str| -> Option<&str> {
            if flag.starts_with('-') {
                words.iter().position(|w| *w == flag).map(|i| words[i + 1])
            } else {
                words.iter().find_map(|w| w.strip_prefix(flag))
            }
        };
        if cmd.starts_with("cd ") && cmd.contains("sha256sum") {
            let damaged = self
                .calls
                .iter()
                .any(|c| c.starts_with("dd if=/dev/urandom"));
            let mut listing = String::new();
            for (i, name) in ["./data/f1", "./data/f2", "./data/f3", "./meta/s1"]
                .iter()
                .enumerate()
            {
                let digit = if damaged && self.corrupt_file && i == 1 {
                    'e'
                } else {
                    char::from(b'1' + i as u8)
                };
                listing.push_str(&format!("{}  {name}\n", digit.to_string().repeat(64)));
            }
            return ok(listing);
        }
        if cmd.starts_with("filefrag -v") {
            return ok(fixture("filefrag-v-raid6.txt"));
        }
        if cmd.starts_with("btrfs-map-logical") {
            let logical: u64 = arg("-l").unwrap().parse().unwrap();
            let stripe = logical / STRIPE;
            let data = &self.pool[stripe as usize % 3];
            let physical = stripe * STRIPE + logical % STRIPE;
            let parity = self.pool.last().unwrap();
            let parity_physical = stripe / 2 * STRIPE;
            self.blocks.insert((data.clone(), physical / 4096), logical);
            return ok(format!(
                "mirror 1 logical {logical} physical {physical} device {data}\n\
                 mirror 2 logical {logical} physical {parity_physical} device {parity}\n"
            ));
        }
        if cmd.starts_with("dd if=/dev/urandom") {
            let device = arg("of=").unwrap().to_owned();
            let block: u64 = arg("seek=").unwrap().parse().unwrap();
            self.damaged.insert((device, block));
            return ok("");
        }
        if cmd.starts_with("dd if=") {
            let source = arg("if=").unwrap().to_owned();
            let block: u64 = arg("skip=").unwrap().parse().unwrap();
            if cmd.contains("| od ") {
                return ok(format!("  {}\n", self.blocks[&(source, block)]));
            }
            let hash = if self.damaged.contains(&(source, block)) {
                BAD
            } else {
                GOOD
            };
            return ok(format!("{hash}  -\n"));
        }
        if cmd.starts_with("btrfs scrub start") {
            let target = words.last().unwrap().to_string();
            if self.pool.contains(&target) {
                if self.repairs {
                    self.damaged.retain(|(d, _)| *d != target);
                }
                return ok(self.device_scrub.clone());
            }
            return ok(self.fs_scrub.clone());
        }
        if cmd.starts_with("btrfs inspect-internal dump-tree") {
            return ok(fixture("dump-tree-fs-tree-level1.headers"));
        }
        if cmd.starts_with("btrfs replace status") {
            return ok(fixture("replace-status-finished.txt"));
        }
        if cmd.starts_with("btrfs filesystem show") {
            let spare = self.pool.last().unwrap();
            return ok(format!(
                "Label: none\n\tdevid    2 size 512.00MiB used 119.19MiB path {spare}\n"
            ));
        }
        ok("")
    }

    fn machine(self) -> (MockRemoteHost, Arc<Mutex<Fake>>) {
        let fake = Arc::new(Mutex::new(self));
        let shared = fake.clone();
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("m0".to_owned());
        host.expect_exec()
            .returning(move |req: ExecRequest, _| Ok(shared.lock().unwrap().respond(&req.command)));
        (host, fake)
    }
}

fn context(
    host: MockRemoteHost,
    devices: usize,
    run_dir: &std::path::Path,
) -> (SuiteContext, Arc<Mutex<Vec<Event>>>) {
    let machine = MachineDevices {
        name: "m0".into(),
        test_dev: "/dev/vdt".into(),
        scratch_devs: pool(devices),
        work_dir: "/var/tmp/bq".into(),
    };
    let mut ctx = SuiteContext::new(Arc::new(host), machine, run_dir.to_owned());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    ctx.events = Arc::new(move |e| sink.lock().unwrap().push(e));
    (ctx, events)
}

fn only(names: &[&str]) -> Raid56Scrub {
    Raid56Scrub::new(Raid56ScrubConfig {
        scenarios: Some(names.iter().map(|s| s.to_string()).collect()),
        ..Raid56ScrubConfig::default()
    })
}

fn verdicts(report: &SuiteReport) -> Vec<(&str, Verdict)> {
    report
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect()
}

#[test]
fn config_parses_and_validates() {
    let config: Raid56ScrubConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, Raid56ScrubConfig::default());
    assert!(config.validate().is_empty());
    let config: Raid56ScrubConfig = serde_json::from_str(
        r#"{"scenarios": ["raid5-data-repair", "raid6-nope"], "file-count": 0, "file-size-kib": 4,
            "metadata-files": 10, "timeout-secs": 0}"#,
    )
    .unwrap();
    let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "scenarios[1]",
            "file-count",
            "file-size-kib",
            "metadata-files",
            "timeout-secs"
        ]
    );
    let err = serde_json::from_str::<Raid56ScrubConfig>(r#"{"file_count": 3}"#).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `file_count`"),
        "{err}"
    );
    let empty = Raid56ScrubConfig {
        scenarios: Some(vec![]),
        ..Raid56ScrubConfig::default()
    };
    assert_eq!(empty.validate()[0].0, "scenarios");
}

#[tokio::test]
async fn invalid_config_is_a_config_error() {
    let (host, _) = Fake::new(5).machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let suite = Raid56Scrub::new(Raid56ScrubConfig {
        file_size_kib: 1,
        ..Raid56ScrubConfig::default()
    });
    let err = suite.run(&ctx).await.unwrap_err();
    assert!(err.to_string().contains("`file-size-kib`: is 1"), "{err}");
}

#[tokio::test]
async fn prepare_names_missing_tools() {
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m0".to_owned());
    host.expect_exec().returning(|req: ExecRequest, _| {
        assert!(
            req.command.contains("btrfs-map-logical")
                && req.command.contains("/var/tmp/bq/mnt/raid56-scrub")
        );
        Ok(ok("btrfs-map-logical\nfilefrag\n"))
    });
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let err = Raid56Scrub::default().prepare(&ctx).await.unwrap_err();
    let SuiteError::Setup { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("btrfs-map-logical, filefrag"), "{message}");
}

#[tokio::test]
async fn every_scenario_passes_on_a_machine_that_repairs() {
    let (host, fake) = Fake::new(5).machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, events) = context(host, 5, run.path());
    let report = Raid56Scrub::default().run(&ctx).await.unwrap();
    let expected: Vec<(&str, Verdict)> = SCENARIOS.iter().map(|s| (*s, Verdict::Pass)).collect();
    assert_eq!(verdicts(&report), expected, "{report:#?}");
    for t in &report.tests {
        assert_eq!(
            t.artifacts[0].path,
            format!("raid56-scrub/{}/commands.log", t.name)
        );
        assert!(run.path().join(&t.artifacts[0].path).exists());
    }
    let two = &report.tests[3];
    let message = two.message.as_deref().unwrap();
    // Two stripes of the same full stripe (same parity) on distinct devices.
    assert!(
        message.contains("on `/dev/sdb` and") && message.contains("on `/dev/sdc`"),
        "{message}"
    );
    let meta = report.tests[2].message.as_deref().unwrap();
    assert_eq!(meta.matches("fs-tree leaf").count(), 3, "{meta}");

    let calls = fake.lock().unwrap().calls.clone();
    let first_mkfs = calls
        .iter()
        .position(|c| c.starts_with("mkfs.btrfs"))
        .unwrap();
    assert!(
        calls[first_mkfs - 1].starts_with("if mountpoint -q"),
        "devices are cleaned first"
    );
    assert!(
        calls[first_mkfs]
            .contains("-d raid5 -m raid5 /dev/sda /dev/sdb /dev/sdc /dev/sdd /dev/sde")
    );
    // Damage happens unmounted; the device is scrubbed before the filesystem.
    let damage = calls
        .iter()
        .position(|c| c.starts_with("dd if=/dev/urandom"))
        .unwrap();
    let umount = calls[..damage]
        .iter()
        .rposition(|c| c.starts_with("umount"))
        .unwrap();
    let mount = calls[umount..damage].iter().any(|c| c.starts_with("mount"));
    assert!(
        !mount,
        "damage was done on a mounted filesystem: {calls:#?}"
    );
    let scrubs: Vec<&String> = calls[damage..]
        .iter()
        .filter(|c| c.starts_with("btrfs scrub"))
        .take(2)
        .collect();
    assert_eq!(scrubs[0], "btrfs scrub start -B -R /dev/sda");
    assert_eq!(
        scrubs[1],
        "btrfs scrub start -B -R /var/tmp/bq/mnt/raid56-scrub"
    );
    let degraded = calls
        .iter()
        .position(|c| c.starts_with("mount -o degraded"))
        .unwrap();
    assert!(
        calls[..degraded]
            .iter()
            .rev()
            .take(4)
            .any(|c| c == "wipefs -a /dev/sdb")
    );
    assert!(
        calls
            .iter()
            .any(|c| c == "btrfs replace start -B -f 2 /dev/sde /var/tmp/bq/mnt/raid56-scrub")
    );
    assert!(
        calls.last().unwrap().starts_with("if mountpoint -q"),
        "devices are cleaned last"
    );

    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2 * SCENARIOS.len());
}

#[tokio::test]
async fn a_scrub_that_corrects_nothing_fails_with_the_counts() {
    let mut fake = Fake::new(5);
    fake.repairs = false;
    fake.device_scrub = fixture("scrub-start-BR-clean.txt");
    let (host, _) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let report = only(&["raid5-data-repair"]).run(&ctx).await.unwrap();
    let t = &report.tests[0];
    assert_eq!(t.verdict, Verdict::Fail);
    let message = t.message.as_deref().unwrap();
    assert!(
        message.contains("reported corrected 0")
            && message.contains("expected corrected >= 1")
            && message.contains("16 KiB of `data/f1` at offset 0 on `/dev/sda`"),
        "{message}"
    );
}

#[tokio::test]
async fn uncorrectable_errors_fail() {
    let mut fake = Fake::new(5);
    fake.device_scrub = fixture("scrub-start-B-dev-uncorrectable.stdout");
    let (host, _) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let report = only(&["raid6-data-repair"]).run(&ctx).await.unwrap();
    let message = report.tests[0].message.as_deref().unwrap();
    assert_eq!(report.tests[0].verdict, Verdict::Fail);
    assert!(
        message.contains("uncorrectable 16") && message.contains("expected uncorrectable 0"),
        "{message}"
    );
}

#[tokio::test]
async fn damage_left_on_disk_after_scrub_fails() {
    let mut fake = Fake::new(5);
    fake.repairs = false;
    let (host, _) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let report = only(&["raid5-data-repair"]).run(&ctx).await.unwrap();
    let message = report.tests[0].message.as_deref().unwrap();
    assert_eq!(report.tests[0].verdict, Verdict::Fail);
    assert!(
        message.contains("was not rewritten by scrub") && message.contains(BAD),
        "{message}"
    );
}

#[tokio::test]
async fn errors_on_the_second_scrub_fail() {
    let mut fake = Fake::new(5);
    fake.fs_scrub = fixture("scrub-status-R-dev-corrected.txt");
    let (host, _) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let report = only(&["raid5-degraded-replace"]).run(&ctx).await.unwrap();
    let message = report.tests[0].message.as_deref().unwrap();
    assert_eq!(report.tests[0].verdict, Verdict::Fail);
    assert!(
        message.contains("second scrub") && message.contains("corrected 16"),
        "{message}"
    );
}

#[tokio::test]
async fn a_changed_file_is_named() {
    let mut fake = Fake::new(5);
    fake.corrupt_file = true;
    let (host, _) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let report = only(&["raid5-metadata-repair"]).run(&ctx).await.unwrap();
    let message = report.tests[0].message.as_deref().unwrap();
    assert_eq!(report.tests[0].verdict, Verdict::Fail);
    assert!(
        message.contains("file checksums changed after scrub: `./data/f2`: sha256 eeee")
            && message.contains("expected 2222"),
        "{message}"
    );
}

#[tokio::test]
async fn a_setup_failure_is_an_error_with_the_output_tail_and_devices_are_cleaned() {
    let mut fake = Fake::new(5);
    let busy = ExecOutput {
        code: Some(1),
        stderr: b"ERROR: unable to open /dev/sda: Device or resource busy\n".to_vec(),
        ..ok("")
    };
    fake.fail = Some(("mkfs.btrfs", busy));
    let (host, fake) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let report = only(&["raid5-data-repair", "raid6-data-repair"])
        .run(&ctx)
        .await
        .unwrap();
    assert_eq!(
        verdicts(&report),
        [
            ("raid5-data-repair", Verdict::Error),
            ("raid6-data-repair", Verdict::Error)
        ]
    );
    let message = report.tests[0].message.as_deref().unwrap();
    assert!(
        message.contains("`mkfs.btrfs -f --nodesize 16384 -d raid5 -m raid5")
            && message.contains("exited with code 1")
            && message.contains("Device or resource busy"),
        "{message}"
    );
    let log = std::fs::read_to_string(run.path().join(&report.tests[0].artifacts[0].path)).unwrap();
    assert!(log.contains("Device or resource busy\n[exit 1"), "{log}");
    let calls = fake.lock().unwrap().calls.clone();
    let cleanups = calls
        .iter()
        .filter(|c| c.starts_with("if mountpoint -q"))
        .count();
    assert_eq!(cleanups, 4, "before and after each scenario: {calls:#?}");
}

#[tokio::test]
async fn a_command_past_the_timeout_is_hung() {
    let mut fake = Fake::new(5);
    fake.fail = Some((
        "btrfs scrub start",
        ExecOutput {
            code: None,
            timed_out: true,
            ..ok("")
        },
    ));
    let (host, fake) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let suite = Raid56Scrub::new(Raid56ScrubConfig {
        scenarios: Some(vec!["raid5-data-repair".into()]),
        timeout_secs: Some(42),
        ..Raid56ScrubConfig::default()
    });
    let Err(SuiteError::Hung { test, partial, .. }) = suite.run(&ctx).await else {
        panic!("a hung scenario stops the suite");
    };
    assert_eq!(test, "raid5-data-repair");
    let report = *partial;
    let message = report.tests[0].message.as_deref().unwrap();
    assert_eq!(report.tests[0].verdict, Verdict::Hung);
    assert!(
        message.contains("timeout of 42 s") && message.contains("btrfs scrub start -B -R /dev/sda"),
        "{message}"
    );
    // The cleanup cancels the scrub the kernel may still be running.
    let calls = fake.lock().unwrap().calls.clone();
    assert!(calls.last().unwrap().contains("btrfs scrub cancel"));
}

#[tokio::test]
async fn scenarios_needing_more_devices_are_skipped() {
    let (host, _) = Fake::new(3).machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 3, run.path());
    let report = Raid56Scrub::default().run(&ctx).await.unwrap();
    assert_eq!(
        verdicts(&report),
        [
            ("raid5-data-repair", Verdict::Pass),
            ("raid6-data-repair", Verdict::Skip),
            ("raid5-metadata-repair", Verdict::Pass),
            ("raid6-two-devices-damaged", Verdict::Skip),
            ("raid5-degraded-replace", Verdict::Skip),
        ]
    );
    assert_eq!(
        report.tests[1].message.as_deref(),
        Some("needs 4 scratch devices, the machine has 3")
    );

    // With too few devices for anything, nothing touches the machine.
    let mut host = MockRemoteHost::new();
    host.expect_exec().never();
    let (ctx, _) = context(host, 2, run.path());
    let report = Raid56Scrub::default().run(&ctx).await.unwrap();
    assert!(report.tests.iter().all(|t| t.verdict == Verdict::Skip));
}

#[tokio::test]
async fn selection_by_config_and_by_context() {
    let (host, _) = Fake::new(5).machine();
    let run = tempfile::tempdir().unwrap();
    let (mut ctx, _) = context(host, 5, run.path());
    let report = only(&["raid6-data-repair", "raid5-data-repair"])
        .run(&ctx)
        .await
        .unwrap();
    let names: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["raid5-data-repair", "raid6-data-repair"],
        "run in the suite's order"
    );
    ctx.only = Some(vec!["raid6-data-repair".into()]);
    let report = only(&["raid6-data-repair", "raid5-data-repair"])
        .run(&ctx)
        .await
        .unwrap();
    assert_eq!(verdicts(&report), [("raid6-data-repair", Verdict::Pass)]);
}

#[tokio::test]
async fn cancel_during_a_scenario_cleans_up_and_returns_the_partial_report() {
    let token = CancellationToken::new();
    let mut fake = Fake::new(5);
    fake.cancel_on = Some(("btrfs scrub start", token.clone()));
    let (host, fake) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (mut ctx, events) = context(host, 5, run.path());
    ctx.cancel = token;
    let err = Raid56Scrub::default().run(&ctx).await.unwrap_err();
    let SuiteError::Cancelled { partial, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        verdicts(&partial),
        [("raid5-data-repair", Verdict::Interrupted)]
    );
    let calls = fake.lock().unwrap().calls.clone();
    let scrub = calls
        .iter()
        .position(|c| c.starts_with("btrfs scrub start"))
        .unwrap();
    // Nothing ran after the cancel but the cleanup.
    assert_eq!(calls.len(), scrub + 2, "{calls:#?}");
    assert!(calls[scrub + 1].starts_with("if mountpoint -q"));
    assert_eq!(events.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn cancel_between_scenarios_stops_before_the_next() {
    let token = CancellationToken::new();
    let mut fake = Fake::new(5);
    fake.cancel_on = Some(("btrfs check", token.clone()));
    let (host, _) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (mut ctx, _) = context(host, 5, run.path());
    ctx.cancel = token;
    let err = Raid56Scrub::default().run(&ctx).await.unwrap_err();
    let SuiteError::Cancelled { partial, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(verdicts(&partial), [("raid5-data-repair", Verdict::Pass)]);
}

#[tokio::test]
async fn a_machine_failure_stops_the_suite_with_balanced_events() {
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m0".to_owned());
    host.expect_exec().returning(|req: ExecRequest, _| {
        Err(RemoteError::Disconnected {
            host: "m0".into(),
            command: req.command,
            source: "gone".into(),
        })
    });
    let run = tempfile::tempdir().unwrap();
    let (ctx, events) = context(host, 5, run.path());
    let err = Raid56Scrub::default().run(&ctx).await.unwrap_err();
    assert!(matches!(err, SuiteError::Remote { .. }), "{err:?}");
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 2);
    let Event::TestFinished { outcome, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(outcome.verdict, Verdict::Error);
}

#[tokio::test]
async fn a_wrong_mapping_is_a_harness_error_not_a_btrfs_failure() {
    let mut fake = Fake::new(5);
    // The device holds something else than the file where the map points.
    fake.damaged.insert(("/dev/sda".into(), 220397568 / 4096));
    let (host, _) = fake.machine();
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, 5, run.path());
    let report = only(&["raid5-data-repair"]).run(&ctx).await.unwrap();
    let message = report.tests[0].message.as_deref().unwrap();
    assert_eq!(report.tests[0].verdict, Verdict::Error);
    assert!(
        message.contains("btrfs-map-logical placed") && message.contains("differ"),
        "{message}"
    );
}
