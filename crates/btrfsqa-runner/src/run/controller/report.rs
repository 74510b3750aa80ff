//! The run's report as the controller assembles it: each suite's partial
//! report merged in (an outcome replaces the earlier one of its test, found
//! through an index in constant time), and the final order of suites and
//! tests.

use std::collections::HashMap;

use btrfsqa_model::compare::TestKey;
use btrfsqa_model::{RunReport, SuiteReport, TestOutcome};

/// `(suite, profile, test)` → (suite index, test index) in the run's report.
pub(super) type Index = HashMap<TestKey, (usize, usize)>;

/// Where every outcome of `report` is.
pub(super) fn index_of(report: &RunReport) -> Index {
    let mut index = Index::new();
    for (s, suite) in report.suites.iter().enumerate() {
        for (t, test) in suite.tests.iter().enumerate() {
            index.insert(TestKey::of(test), (s, t));
        }
    }
    index
}

/// Puts a suite's (partial) report into the run's report: outcomes
/// replace earlier ones of the same test, in constant time each.
pub(super) fn merge(
    report: &mut RunReport,
    index: &mut Index,
    withdrawn: &mut HashMap<TestKey, TestOutcome>,
    part: SuiteReport,
) {
    let at = match report.suites.iter().position(|s| s.id == part.id) {
        Some(at) => at,
        None => {
            report.suites.push(SuiteReport::new(&part.id));
            report.suites.len() - 1
        }
    };
    let SuiteReport {
        tests,
        artifacts,
        duration_secs,
        error,
        source,
        ..
    } = part;
    let suite = &mut report.suites[at];
    suite.artifacts.extend(artifacts);
    suite.duration_secs = match (suite.duration_secs, duration_secs) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    if let Some(error) = error {
        suite.error = Some(match suite.error.take() {
            Some(previous) if !previous.contains(&error) => format!("{previous}; {error}"),
            Some(previous) => previous,
            None => error,
        });
    }
    if suite.source.is_none() {
        suite.source = source;
    }
    for outcome in tests {
        let key = TestKey::of(&outcome);
        withdrawn.remove(&key);
        match index.get(&key) {
            Some(&(s, t)) => report.suites[s].tests[t] = outcome,
            None => {
                let tests = &mut report.suites[at].tests;
                index.insert(key, (at, tests.len()));
                tests.push(outcome);
            }
        }
    }
}

/// Sorts the tests of each suite in the order one machine would have run
/// them (`order`: per suite, `(profile, test)` → position) and the suites
/// in the configured order: a sharded report reads like an unsharded one.
pub(super) fn put_in_order(
    report: &mut RunReport,
    order: &HashMap<String, HashMap<(Option<String>, String), usize>>,
    suite_order: &[String],
) {
    for suite in &mut report.suites {
        if let Some(order) = order.get(&suite.id) {
            suite.tests.sort_by_key(|t| {
                order
                    .get(&(t.profile.clone(), t.name.clone()))
                    .copied()
                    .unwrap_or(usize::MAX)
            });
        }
    }
    report.suites.sort_by_key(|s| {
        suite_order
            .iter()
            .position(|id| *id == s.id)
            .unwrap_or(usize::MAX)
    });
}
