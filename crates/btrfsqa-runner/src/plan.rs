//! The plan of a run: a plain value computed from the suites' test lists
//! (each suite lists its tests from its configuration and pinned source)
//! and the durations in the results store, before any machine exists.
//!
//! `btrfsqa plan` prints it; the run controller executes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use btrfsqa_model::compare::TestKey;
use btrfsqa_suites::TestSuite;

use crate::schedule::{History, Plan, WorkItem, simulate};

/// What a run will do.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    /// Every test to run (one item per test and profile; one per suite
    /// that cannot list its tests), longest first.
    pub items: Vec<WorkItem>,
    /// Per suite, the position of each `(profile, test)` in the suite's own
    /// order: a report lists tests this way, whichever machine ran them.
    pub order: HashMap<String, HashMap<(Option<String>, String), usize>>,
    /// Suites that could not list their tests, with why: they do not run.
    pub failures: Vec<(String, String)>,
    /// What a user should know (a configured test the source lacks).
    pub warnings: Vec<String>,
}

impl RunPlan {
    /// Lists the tests of `suites` (less those in `finished`, the tests a
    /// resumed run already has verdicts for) with their estimates from
    /// `history`.
    pub async fn build(
        suites: &[Arc<dyn TestSuite>],
        history: &History,
        finished: &HashSet<TestKey>,
    ) -> RunPlan {
        let mut plan = RunPlan::default();
        for suite in suites {
            let id = suite.id().to_owned();
            match suite.list_tests().await {
                Ok(Some(list)) => {
                    plan.warnings.extend(list.warnings);
                    let order = plan.order.entry(id.clone()).or_default();
                    for test in list.tests {
                        let key = TestKey {
                            suite: id.clone(),
                            profile: test.profile.clone(),
                            name: test.name.clone(),
                        };
                        let next = order.len();
                        order
                            .entry((test.profile.clone(), test.name.clone()))
                            .or_insert(next);
                        if finished.contains(&key) {
                            continue;
                        }
                        plan.items.push(WorkItem {
                            estimate_secs: history.estimate(
                                &id,
                                test.profile.as_deref(),
                                &test.name,
                            ),
                            suite: id.clone(),
                            profile: test.profile,
                            test: Some(test.name),
                            exclusive: test.exclusive,
                        });
                    }
                }
                Ok(None) => plan.items.push(WorkItem {
                    estimate_secs: history.suite_estimate(&id),
                    suite: id,
                    profile: None,
                    test: None,
                    exclusive: false,
                }),
                Err(err) => plan.failures.push((id, crate::error::error_chain(&err))),
            }
        }
        // Longest first; equal estimates in the suites' own order.
        plan.items
            .sort_by(|a, b| b.estimate_secs.total_cmp(&a.estimate_secs));
        plan
    }

    /// Keeps only the items of `tests` (a key without a profile stands for
    /// the test under every profile). A suite that cannot list its tests
    /// runs just those of its tests.
    pub fn keep_only(&mut self, tests: &[TestKey]) {
        let wanted = |item: &WorkItem| {
            tests.iter().any(|key| {
                key.suite == item.suite
                    && item.test.as_deref().is_none_or(|t| t == key.name)
                    && (key.profile.is_none() || key.profile == item.profile)
            })
        };
        let mut kept: Vec<WorkItem> = Vec::new();
        for item in std::mem::take(&mut self.items) {
            if !wanted(&item) {
                continue;
            }
            match item.test {
                Some(_) => kept.push(item),
                // A whole suite becomes the wanted tests of it.
                None => {
                    kept.extend(
                        tests
                            .iter()
                            .filter(|k| k.suite == item.suite)
                            .map(|k| WorkItem {
                                test: Some(k.name.clone()),
                                profile: k.profile.clone(),
                                ..item.clone()
                            }),
                    )
                }
            }
        }
        self.items = kept;
    }

    /// The predicted schedule on `machines` machines, each batch costing
    /// `setup_secs` of its suite's set-up.
    pub fn predict(&self, machines: usize, setup_secs: &dyn Fn(&WorkItem) -> f64) -> Plan {
        simulate(&self.items, machines, setup_secs)
    }

    /// The total predicted test time.
    pub fn total_secs(&self) -> f64 {
        self.items.iter().map(|i| i.estimate_secs).sum()
    }
}

/// A suite's predicted set-up per batch, in seconds: what one invocation of
/// its harness costs besides its tests (fstests: a fresh filesystem on the
/// test device, `./check` starting, the results collected). Measured by
/// `bench/shard-live.sh` on loop devices (about a second), with room for a
/// machine reached over SSH.
pub fn setup_estimate(item: &WorkItem) -> f64 {
    match item.suite.as_str() {
        "xfstests" => 1.5,
        _ => 0.5,
    }
}

#[cfg(test)]
mod tests {
    // SuiteError carries RemoteError (the contract); mocks return it by value.
    #![expect(clippy::result_large_err)]

    use super::*;
    use btrfsqa_suites::{ListedTest, MockTestSuite, SuiteError, TestList};

    fn listed(
        id: &'static str,
        tests: &'static [(&'static str, Option<&'static str>)],
    ) -> MockTestSuite {
        let mut suite = MockTestSuite::new();
        suite.expect_id().return_const(id.to_owned());
        suite.expect_list_tests().returning(move || {
            Ok(Some(TestList {
                tests: tests
                    .iter()
                    .map(|(name, profile)| ListedTest {
                        profile: profile.map(str::to_owned),
                        name: (*name).to_owned(),
                        exclusive: false,
                    })
                    .collect(),
                warnings: vec![format!("{id} warns")],
            }))
        });
        suite
    }

    #[tokio::test]
    async fn every_listed_test_under_each_profile_is_an_item_less_the_finished_ones() {
        let mut whole = MockTestSuite::new();
        whole.expect_id().return_const("whole".to_owned());
        whole.expect_list_tests().returning(|| Ok(None));
        let mut broken = MockTestSuite::new();
        broken.expect_id().return_const("broken".to_owned());
        broken.expect_list_tests().returning(|| {
            Err(SuiteError::Config {
                suite: "broken".into(),
                message: "no such repository".into(),
            })
        });
        let suites: Vec<Arc<dyn TestSuite>> = vec![
            Arc::new(listed(
                "xfstests",
                &[
                    ("btrfs/001", Some("default")),
                    ("btrfs/001", Some("compress")),
                    ("btrfs/002", Some("default")),
                ],
            )),
            Arc::new(whole),
            Arc::new(broken),
        ];
        let finished = HashSet::from([TestKey {
            suite: "xfstests".into(),
            profile: Some("default".into()),
            name: "btrfs/002".into(),
        }]);
        let plan = RunPlan::build(&suites, &History::default(), &finished).await;
        let labels: Vec<String> = plan.items.iter().map(WorkItem::label).collect();
        assert_eq!(
            labels,
            [
                "whole (whole suite)",
                "xfstests/btrfs/001 [default]",
                "xfstests/btrfs/001 [compress]",
            ]
        );
        assert_eq!(
            plan.order["xfstests"][&(Some("default".into()), "btrfs/002".into())],
            2
        );
        assert_eq!(plan.failures.len(), 1);
        assert!(plan.failures[0].1.contains("no such repository"));
        assert_eq!(plan.warnings, ["xfstests warns"]);
        let predicted = plan.predict(2, &|_| 0.0);
        assert_eq!(predicted.machines.iter().flatten().count(), 3);
    }
}
