//! The run's behaviour through its parts, with mock providers, hosts and
//! suites: verdicts, store-before-publish, hangs, crashes, broken
//! connections, notices, sharding and resumption.

// SuiteError carries RemoteError (the contract); mocks return it by value.
#![expect(clippy::result_large_err)]

use std::sync::Mutex;

use super::*;
use crate::config::ConfigSource;
use crate::connect::MockConnector;
use crate::settings::RunOverrides;
use btrfsqa_cloud::{Access, Machine, MockCloudProvider, ProvisionError};
use btrfsqa_publish::{MockPublisher, PublishError};
use btrfsqa_remote::{ExecOutput, MockRemoteHost};
use btrfsqa_suites::{MockTestSuite, SuiteContext, SuiteError, TestList};

fn settings(dir: &std::path::Path, extra: &str) -> Settings {
    let source = ConfigSource {
        name: "test.toml".into(),
        base_dir: dir.to_owned(),
        text: format!(
            "[run]\nresults-dir = \"{}\"\n{extra}",
            dir.join("results").display()
        ),
    };
    Settings::resolve(&source, RunOverrides::default()).unwrap()
}

fn machine(spec: &MachineSpec) -> Machine {
    Machine {
        run_id: spec.run_id.clone(),
        name: spec.name.clone(),
        provider: "mock".into(),
        provider_id: "m-1".into(),
        access: Access::Local,
        test_dev: "/dev/loop90".into(),
        scratch_devs: vec!["/dev/loop91".into(), "/dev/loop92".into()],
        work_dir: "/tmp/btrfsqa-test-work".into(),
        instance_type: None,
        state: serde_json::Value::Null,
    }
}

/// A provider of `machine`s, torn down `teardowns` times; console,
/// notices and resets are left to the test.
fn base_provider(teardowns: usize) -> MockCloudProvider {
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("mock".to_owned());
    provider
        .expect_provision()
        .returning(|spec| Ok(machine(spec)));
    provider
        .expect_teardown()
        .times(teardowns)
        .returning(|_| Ok(()));
    provider
}

fn provider(teardowns: usize) -> MockCloudProvider {
    let mut provider = base_provider(teardowns);
    provider.expect_console().returning(|_| None);
    provider.expect_interruption_notice().returning(|_| None);
    provider
}

fn connector() -> MockConnector {
    connector_with_kernel("6.18.0-test")
}

fn suite(id: &'static str, verdicts: &'static [Verdict]) -> Arc<dyn TestSuite> {
    let mut suite = MockTestSuite::new();
    suite.expect_id().return_const(id.to_owned());
    suite.expect_prepare().returning(|_| Ok(()));
    suite.expect_list_tests().returning(|| Ok(None));
    suite.expect_run().returning(move |ctx| {
        let mut report = SuiteReport::new(id);
        for (i, verdict) in verdicts.iter().enumerate() {
            let name = format!("t{i}");
            ctx.test_started(id, &name);
            report
                .tests
                .push(ctx.test_finished(TestOutcome::new(id, name, *verdict)));
        }
        Ok(report)
    });
    Arc::new(suite)
}

fn collect() -> (EventSink, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    (
        Arc::new(move |e| sink_events.lock().unwrap().push(e)),
        events,
    )
}

#[tokio::test]
async fn a_passing_run_is_stored_before_it_is_published_and_torn_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut publisher = MockPublisher::new();
    publisher.expect_publish().times(1).returning(|store, run| {
        let stored = store.read_report(run).expect("stored before publishing");
        assert_eq!(stored.status, RunStatus::Completed);
        assert_eq!(stored.summary.pass, 2);
        Ok(Published {
            location: "site".into(),
            commit: Some("abc".into()),
        })
    });
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(provider(1)),
        Arc::new(connector()),
        vec![
            suite("a", &[Verdict::Pass, Verdict::Skip]),
            suite("b", &[Verdict::Pass]),
        ],
        Some(Arc::new(publisher)),
    );
    let (sink, events) = collect();
    let outcome = runner.run(sink, CancellationToken::new()).await.unwrap();
    assert_eq!(outcome.verdict(), RunVerdict::Passed);
    assert_eq!(
        outcome.report.provenance.kernel.release.as_deref(),
        Some("6.18.0-test")
    );
    assert_eq!(outcome.report.suites.len(), 2);
    let journal = std::fs::read_to_string(outcome.run_dir.join("journal.jsonl")).unwrap();
    assert_eq!(journal.matches("\"test-finished\"").count(), 3);
    let events = events.lock().unwrap();
    assert!(matches!(events.last(), Some(Event::RunFinished { .. })));
}

#[tokio::test]
async fn failures_errors_and_publish_problems_map_to_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let run = |suites: Vec<Arc<dyn TestSuite>>, publisher: Option<Arc<dyn Publisher>>| {
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider(1)),
            Arc::new(connector()),
            suites,
            publisher,
        );
        async move {
            runner
                .run(collect().0, CancellationToken::new())
                .await
                .unwrap()
        }
    };
    let failed = run(vec![suite("a", &[Verdict::Pass, Verdict::Fail])], None).await;
    assert_eq!(failed.verdict(), RunVerdict::TestsFailed);
    let hung = run(vec![suite("a", &[Verdict::Hung])], None).await;
    assert_eq!(hung.verdict(), RunVerdict::TestsFailed);

    let mut broken = MockTestSuite::new();
    broken.expect_id().return_const("broken".to_owned());
    broken.expect_list_tests().returning(|| Ok(None));
    broken.expect_prepare().returning(|_| {
        Err(SuiteError::Setup {
            suite: "broken".into(),
            step: "build".into(),
            message: "make: *** Error 2".into(),
        })
    });
    let errored = run(vec![Arc::new(broken), suite("b", &[Verdict::Pass])], None).await;
    assert_eq!(errored.verdict(), RunVerdict::InfrastructureError);
    assert!(
        errored.report.suites[0]
            .error
            .as_ref()
            .unwrap()
            .contains("make: *** Error 2")
    );
    assert_eq!(
        errored.report.suites[1].tests.len(),
        1,
        "one broken suite must not stop the next"
    );

    let mut publisher = MockPublisher::new();
    publisher.expect_publish().returning(|_, _| {
        Err(PublishError::PushRetriesExhausted {
            repo: "site.git".into(),
            attempts: 3,
        })
    });
    let unpublished = run(
        vec![suite("a", &[Verdict::Pass])],
        Some(Arc::new(publisher)),
    )
    .await;
    assert_eq!(unpublished.verdict(), RunVerdict::PublishFailed);
    assert!(unpublished.run_dir.join("report.json").is_file());
}

#[tokio::test]
async fn a_failed_provision_is_reported_and_needs_no_teardown() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("mock".to_owned());
    provider.expect_provision().returning(|_| {
        Err(ProvisionError::Config {
            provider: "mock".into(),
            message: "needs root".into(),
        })
    });
    provider.expect_teardown().never();
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(provider),
        Arc::new(MockConnector::new()),
        vec![suite("a", &[Verdict::Pass])],
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.report.status, RunStatus::Errored);
    assert!(
        outcome
            .report
            .error
            .as_ref()
            .unwrap()
            .contains("needs root")
    );
    assert_eq!(outcome.verdict(), RunVerdict::InfrastructureError);
}

#[tokio::test]
async fn an_unreachable_machine_is_still_torn_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut connector = MockConnector::new();
    connector.expect_connect().returning(|_| {
        Err(btrfsqa_remote::RemoteError::Connect {
            host: "m".into(),
            source: "refused".into(),
        })
    });
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(provider(1)),
        Arc::new(connector),
        vec![suite("a", &[Verdict::Pass])],
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.report.status, RunStatus::Errored);
    assert!(outcome.report.error.as_ref().unwrap().contains("refused"));
}

/// Lists six tests and runs whichever `ctx.only` names, slowly enough
/// that two machines both get work.
struct Listed;

#[async_trait::async_trait]
impl TestSuite for Listed {
    fn id(&self) -> &str {
        "listed"
    }
    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        Ok(Some(TestList::of((0..6).map(|i| format!("t{i}")))))
    }
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new("listed");
        for test in (0..6).map(|i| format!("t{i}")).filter(|t| ctx.selected(t)) {
            ctx.test_started("listed", &test);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let verdict = if test == "t3" {
                Verdict::Fail
            } else {
                Verdict::Pass
            };
            report
                .tests
                .push(ctx.test_finished(TestOutcome::new("listed", test, verdict)));
        }
        Ok(report)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_run_spreads_tests_and_merges_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::with_parts(
        settings(dir.path(), "shards = 2\n"),
        Arc::new(provider(2)),
        Arc::new(connector()),
        vec![Arc::new(Listed), suite("whole", &[Verdict::Pass])],
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), RunVerdict::TestsFailed);
    let report = &outcome.report;
    assert_eq!(report.provenance.machines.len(), 2);
    assert_eq!(
        report
            .suites
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["listed", "whole"]
    );
    let names: Vec<&str> = report.suites[0]
        .tests
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["t0", "t1", "t2", "t3", "t4", "t5"],
        "one machine's order"
    );
    let machines: std::collections::BTreeSet<_> = report.suites[0]
        .tests
        .iter()
        .map(|t| t.machine.clone().unwrap())
        .collect();
    assert_eq!(machines.len(), 2, "both machines pulled work: {machines:?}");
    assert_eq!(report.summary.total(), 7);
}

/// `good` always passes; `broken` fails on every attempt; `flaky` fails
/// on its first attempt of the run and passes on reruns.
struct Regressing {
    fail: bool,
    attempts: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl TestSuite for Regressing {
    fn id(&self) -> &str {
        "reg"
    }
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new("reg");
        for test in ["good", "broken", "flaky"]
            .into_iter()
            .filter(|t| ctx.selected(t))
        {
            let verdict = match test {
                "broken" if self.fail => Verdict::Fail,
                "flaky" if self.fail => {
                    let n = self
                        .attempts
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n == 0 { Verdict::Fail } else { Verdict::Pass }
                }
                _ => Verdict::Pass,
            };
            report
                .tests
                .push(ctx.test_finished(TestOutcome::new("reg", test, verdict)));
        }
        Ok(report)
    }
}

fn connector_with_kernel(release: &'static str) -> MockConnector {
    let mut connector = MockConnector::new();
    connector.expect_connect().returning(move |_| {
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("mock-0".to_owned());
        host.expect_exec().returning(move |request, _| {
            let stdout = if request.command.starts_with("uname") {
                format!("{release}\n#1 SMP\n").into_bytes()
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

#[tokio::test]
async fn new_failures_are_rerun_and_told_from_flakes() {
    let dir = tempfile::tempdir().unwrap();
    for (release, fail) in [("6.17.0", false), ("6.18.0", true)] {
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider(1)),
            Arc::new(connector_with_kernel(release)),
            vec![Arc::new(Regressing {
                fail,
                attempts: Default::default(),
            })],
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        if !fail {
            continue;
        }
        let summary = outcome
            .report
            .comparison
            .clone()
            .expect("compared with the baseline");
        assert!(summary.baseline.is_some());
        assert_eq!(summary.counts.new_failure, 1, "{summary:?}");
        assert_eq!(summary.counts.flaky, 1, "{summary:?}");
        assert_eq!(summary.regressions[0].key().name, "broken");
        let flaky = outcome
            .report
            .outcomes()
            .find(|o| o.name == "flaky")
            .unwrap();
        assert!(!flaky.reruns.is_empty(), "the rerun is kept with the test");
    }
}

/// Starts a test, then waits for cancellation like a real long test.
struct WaitsForCancel;

#[async_trait::async_trait]
impl TestSuite for WaitsForCancel {
    fn id(&self) -> &str {
        "slow"
    }
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new("slow");
        ctx.test_started("slow", "done-first");
        report
            .tests
            .push(ctx.test_finished(TestOutcome::new("slow", "done-first", Verdict::Pass)));
        ctx.test_started("slow", "long");
        ctx.cancel.cancelled().await;
        Err(SuiteError::Cancelled {
            suite: "slow".into(),
            partial: Box::new(report),
        })
    }
}

#[tokio::test]
async fn a_signal_interrupts_the_running_test_keeps_the_rest_and_tears_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut publisher = MockPublisher::new();
    publisher.expect_publish().never();
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(provider(1)),
        Arc::new(connector()),
        vec![Arc::new(WaitsForCancel), suite("never", &[Verdict::Pass])],
        Some(Arc::new(publisher)),
    );
    let cancel = CancellationToken::new();
    let (sink, events) = collect();
    let trigger = cancel.clone();
    let watcher = events.clone();
    tokio::spawn(async move {
        loop {
            let started = watcher
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::TestStarted { test, .. } if test == "long"));
            if started {
                trigger.cancel();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let outcome = runner.run(sink, cancel).await.unwrap();
    assert_eq!(outcome.verdict(), RunVerdict::Interrupted);
    let verdicts: Vec<_> = outcome
        .report
        .outcomes()
        .map(|o| (o.name.as_str(), o.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("done-first", Verdict::Pass),
            ("long", Verdict::Interrupted)
        ]
    );
    let stored = ResultsStore::new(dir.path().join("results"))
        .read_report(&outcome.report.run_id)
        .unwrap();
    assert_eq!(stored.status, RunStatus::Interrupted);
}

#[tokio::test]
async fn the_run_deadline_stops_a_hanging_suite() {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = Runner::with_parts(
        settings(dir.path(), "timeout-minutes = 1\n"),
        Arc::new(provider(1)),
        Arc::new(connector()),
        vec![Arc::new(WaitsForCancel)],
        None,
    );
    runner.deadline = Some(Duration::from_millis(200));
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.report.status, RunStatus::Interrupted);
    assert!(
        outcome
            .report
            .error
            .as_ref()
            .unwrap()
            .contains("run.timeout-minutes")
    );
}

/// A suite of `t0..tN` that runs them in order, skipping finished ones;
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

fn verdicts(report: &RunReport) -> Vec<(String, Verdict)> {
    report
        .outcomes()
        .map(|t| (t.name.clone(), t.verdict))
        .collect()
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

#[test]
fn journaled_outcomes_missing_from_the_report_are_recovered_once() {
    let mut report = RunReport::start(
        RunId::parse("run-j").unwrap(),
        Utc::now(),
        Provenance::default(),
    );
    let mut suite = SuiteReport::new("a");
    suite.tests.push(TestOutcome::new("a", "t0", Verdict::Pass));
    report.suites.push(suite);
    recover_journaled(
        &mut report,
        vec![
            TestOutcome::new("a", "t0", Verdict::Fail),
            TestOutcome::new("a", "t1", Verdict::Fail),
            TestOutcome::new("a", "t1", Verdict::Pass),
            TestOutcome::new("b", "x", Verdict::Skip),
        ],
    );
    assert_eq!(
        verdicts(&report),
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Pass),
            ("x".into(), Verdict::Skip)
        ]
    );
    assert_eq!(report.summary.pass, 2);
}

#[tokio::test]
async fn a_static_host_that_hung_a_test_is_rebooted_over_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("static".to_owned());
    provider.expect_provision().returning(|spec| {
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

/// `t0..t5`, each taking 150 ms unless the run or machine stops.
struct Slow;

#[async_trait::async_trait]
impl TestSuite for Slow {
    fn id(&self) -> &str {
        "slow6"
    }
    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        Ok(Some(TestList::of((0..6).map(|i| format!("t{i}")))))
    }
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new("slow6");
        for i in 0..6 {
            let name = format!("t{i}");
            if !ctx.selected(&name) {
                continue;
            }
            ctx.test_started("slow6", &name);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(150)) => {}
                () = ctx.cancel.cancelled() => {
                    return Err(SuiteError::Cancelled {
                        suite: "slow6".into(),
                        partial: Box::new(report),
                    });
                }
            }
            report
                .tests
                .push(ctx.test_finished(TestOutcome::new("slow6", &name, Verdict::Pass)));
        }
        Ok(report)
    }
}

#[tokio::test]
async fn a_shard_taken_away_hands_its_tests_to_the_other_machines() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = base_provider(2);
    provider.expect_console().returning(|_| None);
    provider.expect_interruption_notice().returning(|m| {
        m.name
            .ends_with('1')
            .then(|| "spot request `sir-9` is `marked-for-termination`".to_owned())
    });
    let mut runner = Runner::with_parts(
        settings(dir.path(), "shards = 2\n"),
        Arc::new(provider),
        Arc::new(connector()),
        vec![Arc::new(Slow)],
        None,
    );
    runner.notice_poll = Duration::from_millis(50);
    let (sink, events) = collect();
    let outcome = runner.run(sink, CancellationToken::new()).await.unwrap();
    let report = &outcome.report;
    let mut got = verdicts(report);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        (0..6)
            .map(|i| (format!("t{i}"), Verdict::Pass))
            .collect::<Vec<_>>()
    );
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    assert!(
        report
            .outcomes()
            .all(|t| t.machine.as_deref().is_some_and(|m| !m.ends_with('1'))),
        "every verdict comes from the machine that stayed"
    );
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        Event::Warning { message, .. } if message.contains("marked-for-termination")
    )));
}
