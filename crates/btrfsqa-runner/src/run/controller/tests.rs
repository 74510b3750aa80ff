//! The controller's merging of batches, on its own (no workers).

use btrfsqa_model::{Provenance, RunId, Verdict};

use super::*;
use crate::history::ExpectationsConfig;

fn controller(dir: &std::path::Path, tests: usize) -> Controller {
    let store = ResultsStore::new(dir);
    let run = RunId::parse("run-merge").unwrap();
    store.create_run(&run).unwrap();
    let report = RunReport::start(run, chrono::Utc::now(), Provenance::default());
    let items = (0..tests)
        .map(|i| WorkItem::test("xfstests", &format!("t/{i:05}"), 1.0))
        .collect();
    let plan = RunPlan {
        items,
        ..RunPlan::default()
    };
    Controller::new(
        report,
        store,
        std::sync::Arc::new(|_| {}),
        CancellationToken::new(),
        plan,
        Settings {
            machines: 1,
            suite_order: vec!["xfstests".into()],
            expectations: ExpectationsConfig::default(),
            run_page: None,
        },
    )
}

fn batch(from: usize, to: usize) -> BatchResult {
    let items: Vec<WorkItem> = (from..to)
        .map(|i| WorkItem::test("xfstests", &format!("t/{i:05}"), 1.0))
        .collect();
    let mut part = SuiteReport::new("xfstests");
    part.tests = (from..to)
        .map(|i| TestOutcome::new("xfstests", format!("t/{i:05}"), Verdict::Pass))
        .collect();
    BatchResult {
        batch: Batch {
            suite: "xfstests".into(),
            profile: None,
            items,
            skip: Vec::new(),
            rerun: false,
        },
        part,
        requeue: Vec::new(),
        withdrawn: Vec::new(),
        setup_failed: None,
    }
}

#[test]
fn a_test_reported_again_replaces_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let mut controller = controller(dir.path(), 4);
    controller.workers[0].name = Some("m".into());
    controller.take(0, batch(0, 3));
    let mut again = batch(1, 2);
    again.part.tests[0].verdict = Verdict::Fail;
    controller.take(0, again);
    let ended = controller.finish();
    let verdicts: Vec<_> = ended
        .report
        .outcomes()
        .map(|t| (t.name.clone(), t.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("t/00000".into(), Verdict::Pass),
            ("t/00001".into(), Verdict::Fail),
            ("t/00002".into(), Verdict::Pass)
        ]
    );
}

/// Not a check: a measurement, printed for `bench/merge-scale.sh`.
#[test]
#[ignore = "a benchmark: bench/merge-scale.sh runs it"]
fn merge_scale() {
    for (tests, per_batch) in [(1_000, 20), (10_000, 20), (10_000, 100)] {
        let dir = tempfile::tempdir().unwrap();
        let mut controller = controller(dir.path(), tests);
        controller.workers[0].name = Some("m".into());
        let started = std::time::Instant::now();
        let mut writes = std::time::Duration::ZERO;
        for from in (0..tests).step_by(per_batch) {
            controller.take(0, batch(from, (from + per_batch).min(tests)));
            let at = std::time::Instant::now();
            controller.save_now_and_then();
            writes += at.elapsed();
        }
        let ended = controller.finish();
        let total = started.elapsed();
        assert_eq!(ended.report.summary.total(), tests as u32);
        println!(
            "{tests} tests in batches of {per_batch}: merged and ordered in {:.3} s, \
             plus {:.3} s writing report.json (at most every 2 s)",
            (total - writes).as_secs_f64(),
            writes.as_secs_f64()
        );
    }
}
