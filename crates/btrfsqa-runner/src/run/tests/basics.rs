//! A run from start to end: verdicts, publishing, provisioning and
//! connection failures, new failures rerun, signals, the deadline and the
//! journal.

use super::*;

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
    provisions(&mut provider, |_| {
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
