//! Hangs, crashes, broken connections and machines taken away, per test.

use super::*;

/// `trouble(name, attempt)` may stop it at a test (hung, machine lost).
struct Troubled {
    tests: usize,
    runs: Mutex<HashMap<String, usize>>,
    trouble: fn(&str, usize) -> Option<SuiteError>,
}

#[async_trait::async_trait]
impl TestSuite for Troubled {
    fn id(&self) -> &str {
        "troubled"
    }
    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        Ok(Some(TestList::of((0..self.tests).map(|i| format!("t{i}")))))
    }
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new("troubled");
        for i in 0..self.tests {
            let name = format!("t{i}");
            if !ctx.selected(&name) {
                continue;
            }
            ctx.test_started("troubled", &name);
            let attempt = {
                let mut runs = self.runs.lock().unwrap();
                let n = runs.entry(name.clone()).or_default();
                *n += 1;
                *n
            };
            match (self.trouble)(&name, attempt) {
                Some(SuiteError::Hung { test, .. }) => {
                    let outcome = TestOutcome::new("troubled", &test, Verdict::Hung)
                        .with_message("did not finish within its timeout of 1 s");
                    report.tests.push(ctx.test_finished(outcome));
                    return Err(SuiteError::Hung {
                        suite: "troubled".into(),
                        test,
                        partial: Box::new(report),
                    });
                }
                Some(err) => return Err(err),
                None => report.tests.push(ctx.test_finished(TestOutcome::new(
                    "troubled",
                    &name,
                    Verdict::Pass,
                ))),
            }
        }
        Ok(report)
    }
}

fn troubled(
    tests: usize,
    trouble: fn(&str, usize) -> Option<SuiteError>,
) -> Vec<Arc<dyn TestSuite>> {
    vec![Arc::new(Troubled {
        tests,
        runs: Mutex::default(),
        trouble,
    })]
}

fn hung(test: &str) -> SuiteError {
    SuiteError::Hung {
        suite: "troubled".into(),
        test: test.into(),
        partial: Box::new(SuiteReport::new("troubled")),
    }
}

fn lost() -> SuiteError {
    SuiteError::Remote {
        suite: "troubled".into(),
        source: btrfsqa_remote::RemoteError::Disconnected {
            host: "mock-0".into(),
            command: "./t1".into(),
            source: "connection closed by peer".into(),
        },
    }
}

/// A connector whose hosts answer (`alive`) or not after the first
/// connection, counting connections.
fn counting_connector(
    alive: bool,
    connections: Arc<std::sync::atomic::AtomicUsize>,
) -> MockConnector {
    let mut connector = MockConnector::new();
    connector.expect_connect().returning(move |_| {
        let n = connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("mock-0".to_owned());
        // The first host dies with the crash (when not `alive`); hosts
        // after a reset answer.
        let answers = alive || n > 0;
        host.expect_exec().returning(move |request, _| {
            if !answers && request.command == "true" {
                return Err(btrfsqa_remote::RemoteError::Disconnected {
                    host: "mock-0".into(),
                    command: "true".into(),
                    source: "no route to host".into(),
                });
            }
            let stdout = if request.command.starts_with("uname") {
                b"6.18.0-test\n#1 SMP\n".to_vec()
            } else if request.command.contains("sysrq") {
                b"task:btrfs state:D stack:0 pid:812\n".to_vec()
            } else {
                Vec::new()
            };
            Ok(ExecOutput {
                code: Some(0),
                stdout,
                ..Default::default()
            })
        });
        Ok(Arc::new(host) as Arc<dyn RemoteHost>)
    });
    connector
}

fn resettable_provider(resets: usize, console: &'static str) -> MockCloudProvider {
    let mut provider = base_provider(1);
    provider.expect_reset().times(resets).returning(|_| Ok(()));
    // Empty when the machine came up; the crash after.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    provider.expect_console().returning(move |_| {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (n > 0).then(|| console.to_owned())
    });
    provider.expect_interruption_notice().returning(|_| None);
    provider
}
#[tokio::test]
async fn a_hung_test_keeps_evidence_the_machine_is_reset_and_the_rest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(resettable_provider(1, "[ 1.0] booted\n")),
        Arc::new(counting_connector(true, connections.clone())),
        troubled(3, |name, _| (name == "t1").then(|| hung("t1"))),
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    let report = &outcome.report;
    assert_eq!(
        verdicts(report),
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Hung),
            ("t2".into(), Verdict::Pass)
        ]
    );
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    let hung = report.outcomes().find(|t| t.name == "t1").unwrap();
    let evidence = hung
        .artifacts
        .iter()
        .find(|a| a.path.ends_with("hang-evidence.txt"))
        .expect("evidence kept");
    let text = std::fs::read_to_string(outcome.run_dir.join(&evidence.path)).unwrap();
    assert!(text.contains("state:D"), "{text}");
}

#[tokio::test]
async fn a_kernel_crash_is_crashed_with_the_console_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(resettable_provider(
            1,
            "[ 9.0] sshd started\n[ 60.0] sysrq: Trigger a crash\n[ 60.1] Kernel panic - not syncing: sysrq triggered crash\n",
        )),
        Arc::new(counting_connector(false, connections.clone())),
        troubled(3, |name, _| (name == "t1").then(lost)),
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    let report = &outcome.report;
    assert_eq!(
        verdicts(report),
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Crashed),
            ("t2".into(), Verdict::Pass)
        ]
    );
    let crashed = report.outcomes().find(|t| t.name == "t1").unwrap();
    assert_eq!(
        crashed.message.as_deref(),
        Some("the kernel crashed: [ 60.0] sysrq: Trigger a crash")
    );
    let console = crashed
        .artifacts
        .iter()
        .find(|a| a.kind == btrfsqa_model::ArtifactKind::Console)
        .unwrap();
    let text = std::fs::read_to_string(outcome.run_dir.join(&console.path)).unwrap();
    assert!(text.contains("Kernel panic"));
    assert!(report.suites[0].error.is_none());
}

#[tokio::test]
async fn a_broken_connection_to_a_live_machine_runs_the_test_again_without_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(resettable_provider(0, "")),
        Arc::new(counting_connector(true, connections.clone())),
        troubled(3, |name, attempt| (name == "t1" && attempt == 1).then(lost)),
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        verdicts(&outcome.report),
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Pass),
            ("t2".into(), Verdict::Pass)
        ]
    );
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_machine_that_cannot_be_reset_stops_its_tests_and_is_still_torn_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = provider(1);
    // What a provider without resets (this machine, static hosts) answers.
    provider.expect_reset().times(1).returning(|m| {
        Err(ProvisionError::Unsupported {
            provider: m.provider.clone(),
            operation: "reset a machine".into(),
        })
    });
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(provider),
        Arc::new(counting_connector(false, connections)),
        troubled(3, |name, _| (name == "t1").then(lost)),
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    let report = &outcome.report;
    assert_eq!(
        verdicts(report),
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Crashed)
        ]
    );
    assert_eq!(report.status, RunStatus::Errored);
    assert!(
        report.error.as_deref().unwrap().contains("cannot reset it"),
        "{:?}",
        report.error
    );
}

#[tokio::test]
async fn a_spot_interruption_notice_interrupts_the_run_resumably() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = base_provider(1);
    provider.expect_console().returning(|_| None);
    provider
        .expect_interruption_notice()
        .returning(|_| Some("spot request `sir-1` is `marked-for-termination`".into()));
    let mut runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(provider),
        Arc::new(connector()),
        vec![Arc::new(WaitsForCancel)],
        None,
    );
    runner.notice_poll = Duration::from_millis(50);
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    let report = &outcome.report;
    assert_eq!(report.status, RunStatus::Interrupted);
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("marked-for-termination") && error.contains("btrfsqa resume"),
        "{error}"
    );
    assert_eq!(
        verdicts(report),
        [
            ("done-first".into(), Verdict::Pass),
            ("long".into(), Verdict::Interrupted)
        ]
    );
}

#[tokio::test]
async fn a_static_host_that_hung_a_test_is_rebooted_over_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("static".to_owned());
    provisions(&mut provider, |spec| {
        let mut machine = machine(spec);
        machine.access = Access::Ssh(btrfsqa_cloud::SshEndpoint {
            host: "192.0.2.10".into(),
            port: 22,
            user: "root".into(),
            identity_file: None,
            known_hosts_file: None,
        });
        Ok(machine)
    });
    provider.expect_teardown().times(1).returning(|_| Ok(()));
    provider.expect_console().returning(|_| None);
    provider.expect_interruption_notice().returning(|_| None);
    provider.expect_reset().times(1).returning(|m| {
        Err(ProvisionError::Unsupported {
            provider: m.provider.clone(),
            operation: "reset a machine".into(),
        })
    });
    let reboots = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reboots.clone();
    let mut connector = MockConnector::new();
    connector.expect_connect().times(1).returning(move |_| {
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("mock-0".to_owned());
        host.expect_exec().returning(|request, _| {
            let stdout = if request.command.starts_with("uname") {
                b"6.18.0-test\n#1 SMP\n".to_vec()
            } else {
                Vec::new()
            };
            Ok(ExecOutput {
                code: Some(0),
                stdout,
                ..Default::default()
            })
        });
        let counted = counted.clone();
        host.expect_reboot_and_wait().returning(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        Ok(Arc::new(host) as Arc<dyn RemoteHost>)
    });
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(provider),
        Arc::new(connector),
        troubled(3, |name, _| (name == "t1").then(|| hung("t1"))),
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        verdicts(&outcome.report),
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Hung),
            ("t2".into(), Verdict::Pass)
        ]
    );
    assert_eq!(reboots.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_shard_that_crashes_and_one_whose_connection_breaks_still_give_every_test_one_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = base_provider(2);
    provider.expect_reset().returning(|_| Ok(()));
    provider
        .expect_console()
        .returning(|_| Some("[ 1.0] booted\n".into()));
    provider.expect_interruption_notice().returning(|_| None);
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runner = Runner::with_parts(
        settings(dir.path(), "shards = 2\n"),
        Arc::new(provider),
        Arc::new(counting_connector(true, connections)),
        vec![Arc::new(Troubled {
            tests: 6,
            runs: Mutex::default(),
            // t1 hangs; t3's connection breaks once (its machine answers).
            trouble: |name, attempt| match name {
                "t1" => Some(hung("t1")),
                "t3" if attempt == 1 => Some(lost()),
                _ => None,
            },
        })],
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    let mut got = verdicts(&outcome.report);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Hung),
            ("t2".into(), Verdict::Pass),
            ("t3".into(), Verdict::Pass),
            ("t4".into(), Verdict::Pass),
            ("t5".into(), Verdict::Pass)
        ]
    );
    assert_eq!(outcome.report.status, RunStatus::Completed);
}

#[tokio::test]
async fn a_machine_back_from_its_reset_on_another_kernel_boots_the_kernel_under_test_again() {
    use crate::kernel::tests::{RELEASE, builder};
    let dir = tempfile::tempdir().unwrap();
    let mut provider = base_provider(1);
    provider.expect_console().returning(|_| None);
    provider.expect_interruption_notice().returning(|_| None);
    provider.expect_reset().times(1).returning(|_| Ok(()));
    // The first boot, and the boot after the reset.
    provider
        .expect_boot_kernel()
        .times(2)
        .returning(|_, _| Ok(()));
    // Connections: 0 before the stage (the old kernel), 1 after its boot
    // (the kernel under test; it crashes), 2 after the reset (the old
    // kernel again), 3 after the second boot.
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    let mut connector = MockConnector::new();
    connector.expect_connect().returning(move |_| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let release = if n % 2 == 1 { RELEASE } else { "6.1.0-old" };
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("mock-0".to_owned());
        host.expect_upload().returning(|_, _| Ok(()));
        host.expect_exec().returning(move |request, _| {
            let c = request.command.as_str();
            if c == "true" && n == 1 {
                return Err(btrfsqa_remote::RemoteError::Disconnected {
                    host: "mock-0".into(),
                    command: "true".into(),
                    source: "no route to host".into(),
                });
            }
            let stdout = if c.starts_with("uname -r; uname -v") {
                format!("{release}\n#1 SMP\n")
            } else if c.contains("uname -r") {
                format!("release={release}\nbtrfs=yes\n")
            } else if c.contains("boot_id") {
                format!("boot-{n}\n")
            } else {
                String::new()
            };
            Ok(ExecOutput {
                code: Some(0),
                stdout: stdout.into_bytes(),
                ..Default::default()
            })
        });
        Ok(Arc::new(host) as Arc<dyn RemoteHost>)
    });
    let mut runner = Runner::with_parts(
        settings(
            dir.path(),
            "[kernel]\nsource = \"/srv/linux\"\nref = \"main\"\n",
        ),
        Arc::new(provider),
        Arc::new(connector),
        troubled(3, |name, _| (name == "t1").then(lost)),
        None,
    );
    let builds = Arc::new(Mutex::new(0));
    runner.kernel_builder = Some(Arc::new(builder(builds.clone(), false)));
    let (sink, events) = collect();
    let outcome = runner.run(sink, CancellationToken::new()).await.unwrap();
    let report = &outcome.report;
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    assert_eq!(
        verdicts(report),
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Crashed),
            ("t2".into(), Verdict::Pass)
        ]
    );
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 4);
    assert_eq!(
        *builds.lock().unwrap(),
        1,
        "the second boot reuses the build"
    );
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        Event::Warning { message, .. }
            if message.contains("came back with kernel 6.1.0-old: booting 6.1.192 again")
    )));
}
