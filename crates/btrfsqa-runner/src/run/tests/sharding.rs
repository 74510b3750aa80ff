//! Several machines: tests spread, one report, a machine taken away.

use std::time::Instant;

use super::*;

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

/// `t0..t7`, each 40 ms; `t2` is exclusive (it changes kernel-wide state).
/// Set-up fails on the machines named in `broken`; `panics_at` makes a
/// test panic. Every test's start and end is kept, per machine.
struct Timed {
    broken: &'static [&'static str],
    panics_at: Option<&'static str>,
    spans: Mutex<Vec<(String, String, Instant, Instant)>>,
}

impl Timed {
    fn new(broken: &'static [&'static str], panics_at: Option<&'static str>) -> Arc<Timed> {
        Arc::new(Timed {
            broken,
            panics_at,
            spans: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait::async_trait]
impl TestSuite for Timed {
    fn id(&self) -> &str {
        "timed"
    }
    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        let mut list = TestList::of((0..8).map(|i| format!("t{i}")));
        list.tests[2].exclusive = true;
        Ok(Some(list))
    }
    async fn prepare(&self, ctx: &SuiteContext) -> Result<(), SuiteError> {
        if self.broken.contains(&ctx.devices.name.as_str()) {
            return Err(SuiteError::Setup {
                suite: "timed".into(),
                step: "build".into(),
                message: format!("no compiler on {}", ctx.devices.name),
            });
        }
        Ok(())
    }
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new("timed");
        for test in (0..8).map(|i| format!("t{i}")).filter(|t| ctx.selected(t)) {
            ctx.test_started("timed", &test);
            assert_ne!(Some(test.as_str()), self.panics_at, "a bug in the suite");
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(40)).await;
            self.spans.lock().unwrap().push((
                test.clone(),
                ctx.devices.name.clone(),
                start,
                Instant::now(),
            ));
            report
                .tests
                .push(ctx.test_finished(TestOutcome::new("timed", test, Verdict::Pass)));
        }
        Ok(report)
    }
}

fn all_pass(report: &RunReport) {
    let mut got = verdicts(report);
    got.sort();
    assert_eq!(
        got,
        (0..8)
            .map(|i| (format!("t{i}"), Verdict::Pass))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_machines_sharing_a_kernel_an_exclusive_test_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let suite = Timed::new(&[], None);
    let runner = Runner::with_parts(
        settings(dir.path(), "shards = 3\n"),
        Arc::new(provider(3)),
        Arc::new(connector()),
        vec![suite.clone()],
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    all_pass(&outcome.report);
    let spans = suite.spans.lock().unwrap();
    let machines: std::collections::BTreeSet<&str> =
        spans.iter().map(|(_, m, _, _)| m.as_str()).collect();
    assert!(machines.len() > 1, "the work was spread: {machines:?}");
    let (_, _, start, end) = spans.iter().find(|(t, ..)| t == "t2").unwrap();
    for (test, _, s, e) in spans.iter().filter(|(t, ..)| t != "t2") {
        assert!(e <= start || s >= end, "{test} ran beside the exclusive t2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_that_cannot_be_provisioned_shrinks_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("mock".to_owned());
    provisions(&mut provider, |spec| {
        if spec.name.ends_with('1') {
            Err(ProvisionError::Config {
                provider: "mock".into(),
                message: "no capacity".into(),
            })
        } else {
            Ok(machine(spec))
        }
    });
    provider.expect_teardown().times(1).returning(|_| Ok(()));
    provider.expect_console().returning(|_| None);
    provider.expect_interruption_notice().returning(|_| None);
    let runner = Runner::with_parts(
        settings(dir.path(), "shards = 2\n"),
        Arc::new(provider),
        Arc::new(connector()),
        vec![Timed::new(&[], None)],
        None,
    );
    let (sink, events) = collect();
    let outcome = runner.run(sink, CancellationToken::new()).await.unwrap();
    assert_eq!(outcome.report.status, RunStatus::Completed);
    all_pass(&outcome.report);
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        Event::Warning { message, .. }
            if message.contains("1 of 2 machines could not be provisioned; going on with 1: ")
                && message.contains("no capacity")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_that_cannot_be_set_up_on_one_machine_runs_on_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::with_parts(
        settings(dir.path(), "shards = 2\n"),
        Arc::new(provider(2)),
        Arc::new(connector()),
        vec![Timed::new(&["mock-1"], None)],
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    all_pass(&outcome.report);
    assert!(
        outcome
            .report
            .outcomes()
            .all(|t| t.machine.as_deref() == Some("mock-0"))
    );
    let error = outcome.report.suites[0].error.as_deref().unwrap();
    assert!(
        error.contains("setup on `mock-1` failed") && error.contains("no compiler"),
        "{error}"
    );
    // Set up nowhere: the tests keep no verdict; the suite says why.
    let runner = Runner::with_parts(
        settings(dir.path(), "shards = 2\n"),
        Arc::new(provider(2)),
        Arc::new(connector()),
        vec![Timed::new(&["mock-0", "mock-1"], None)],
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.report.summary.total(), 0);
    assert_eq!(outcome.verdict(), RunVerdict::InfrastructureError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_suite_still_tears_the_machine_down() {
    let dir = tempfile::tempdir().unwrap();
    // The provider's teardown is expected once per machine (mockall checks).
    let runner = Runner::with_parts(
        settings(dir.path(), ""),
        Arc::new(provider(1)),
        Arc::new(connector()),
        vec![Timed::new(&[], Some("t3"))],
        None,
    );
    let outcome = runner
        .run(collect().0, CancellationToken::new())
        .await
        .unwrap();
    let report = &outcome.report;
    assert_eq!(report.status, RunStatus::Errored);
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("panicked") && error.contains("a bug in the suite"),
        "{error}"
    );
    // What the batch finished is kept; the test it panicked in is an error.
    let got: Vec<(String, Verdict)> = verdicts(report);
    assert_eq!(
        got,
        [
            ("t0".into(), Verdict::Pass),
            ("t1".into(), Verdict::Pass),
            ("t3".into(), Verdict::Error)
        ]
    );
}
