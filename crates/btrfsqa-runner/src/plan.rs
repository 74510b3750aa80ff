//! The plan of a run: a plain value computed from the suites' test lists
//! (each suite lists its tests from its configuration and pinned source)
//! and the durations in the results store, before any machine exists.
//!
//! The run controller executes it; [`forecast`] predicts how it would go
//! on a number of machines (`btrfsqa plan` prints that).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use btrfsqa_model::ResultsStore;
use btrfsqa_model::compare::TestKey;
use btrfsqa_suites::TestSuite;

use crate::error::{ErrorKind, RunError};
use crate::schedule::{self, History, Plan, WorkItem, simulate};
use crate::settings::Settings;

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
                    let setup_secs = list.batch_setup_ms as f64 / 1000.0;
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
                            setup_secs,
                            exclusive: test.exclusive,
                        });
                    }
                }
                Ok(None) => plan.items.push(WorkItem {
                    estimate_secs: history.suite_estimate(&id),
                    suite: id,
                    profile: None,
                    test: None,
                    setup_secs: DEFAULT_SETUP_SECS,
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

/// The set-up of a batch of a suite that cannot list its tests, seconds.
const DEFAULT_SETUP_SECS: f64 = btrfsqa_suites::DEFAULT_BATCH_SETUP_MS as f64 / 1000.0;

/// A batch's predicted set-up, in seconds: what one invocation of the
/// harness of `item`'s suite costs besides its tests, as the suite said
/// when it listed them ([`TestList::batch_setup_ms`](btrfsqa_suites::TestList::batch_setup_ms)).
pub fn setup_estimate(item: &WorkItem) -> f64 {
    item.setup_secs
}

/// Where the tests of a forecast come from.
#[derive(Debug, Clone)]
pub enum PlanSource {
    /// The configured suites' tests, with durations from the results store.
    Configured(Box<Settings>),
    /// Every test of fstests' `check.time` file, with its duration there.
    CheckTime(PathBuf),
}

/// A forecast to make.
#[derive(Debug, Clone)]
pub struct ForecastRequest {
    /// The tests.
    pub source: PlanSource,
    /// The machines they share.
    pub machines: NonZeroUsize,
    /// Each batch's set-up in seconds (finite, 0 or more); `None`: each
    /// suite's [`setup_estimate`].
    pub setup_secs: Option<f64>,
    /// Also schedule the tests the simple ways, to compare.
    pub compare: bool,
}

/// How a run of a plan would go.
#[derive(Debug, Clone)]
pub struct Forecast {
    /// What would run; its `failures` are suites that could not list their
    /// tests (they would not run).
    pub plan: RunPlan,
    /// No schedule on this many machines ends sooner: the total over the
    /// machines, or the longest test.
    pub lower_bound_secs: f64,
    /// Whether the lower bound is the longest test.
    pub bound_by_longest: bool,
    /// The schedule a run would follow.
    pub predicted: Plan,
    /// The simple schedules, when asked for.
    pub alternatives: Option<Alternatives>,
}

/// Simple ways to share the tests out, to compare a run's schedule with.
#[derive(Debug, Clone)]
pub struct Alternatives {
    /// The run's way, one test per batch (each paying its set-up).
    pub one_per_batch: Plan,
    /// Tests dealt out in turn.
    pub round_robin: Plan,
    /// Tests in order, to the first free machine.
    pub in_order: Plan,
}

/// Why a forecast could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The `check.time` file could not be read.
    // The cause is in the message (not a source): what users saw before
    // this error had a type.
    #[error("cannot read `{}`: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file names no test.
    #[error("`{}` holds no `TEST SECONDS` lines (fstests' check.time format)", path.display())]
    NoTests {
        /// The file.
        path: PathBuf,
    },
    /// The configured suites could not be made.
    #[error(transparent)]
    Suites(RunError),
}

impl PlanError {
    /// Each is the request's or the configuration's fault.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Usage
    }
}

/// The plan of the request's tests and how a run of it would go.
pub async fn forecast(request: &ForecastRequest) -> Result<Forecast, PlanError> {
    let plan = match &request.source {
        PlanSource::CheckTime(path) => check_time_plan(path)?,
        PlanSource::Configured(settings) => {
            let suites = crate::registry::suites(settings).map_err(PlanError::Suites)?;
            let history = History::from_store(&ResultsStore::new(settings.results_dir()));
            RunPlan::build(&suites, &history, &Default::default()).await
        }
    };
    let machines = request.machines.get();
    let setup = |item: &WorkItem| request.setup_secs.unwrap_or_else(|| setup_estimate(item));
    let items = &plan.items;
    let lower_bound_secs = schedule::lower_bound(items, machines);
    let longest = items.iter().map(|i| i.estimate_secs).fold(0.0, f64::max);
    let alternatives = request.compare.then(|| Alternatives {
        one_per_batch: schedule::simulate_unbatched(items, machines, &setup),
        round_robin: schedule::round_robin(items, machines),
        in_order: schedule::in_order(items, machines),
    });
    Ok(Forecast {
        predicted: plan.predict(machines, &setup),
        lower_bound_secs,
        bound_by_longest: (lower_bound_secs - longest).abs() < 1e-9,
        alternatives,
        plan,
    })
}

/// fstests' `check.time` (`TEST SECONDS` lines) as a plan of its tests.
fn check_time_plan(path: &Path) -> Result<RunPlan, PlanError> {
    use btrfsqa_suites::xfstests;
    let text = std::fs::read_to_string(path).map_err(|error| PlanError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let times = btrfsqa_suites::xfstests::parse::parse_check_time(&text);
    if times.is_empty() {
        return Err(PlanError::NoTests {
            path: path.to_path_buf(),
        });
    }
    Ok(RunPlan {
        items: times
            .into_iter()
            .map(|(test, secs)| WorkItem {
                setup_secs: xfstests::BATCH_SETUP_MS as f64 / 1000.0,
                ..WorkItem::test(xfstests::ID, &test, secs)
            })
            .collect(),
        ..RunPlan::default()
    })
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
                batch_setup_ms: if id == "xfstests" { 1500 } else { 500 },
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

    fn check_time_request(path: &Path, compare: bool) -> ForecastRequest {
        ForecastRequest {
            source: PlanSource::CheckTime(path.to_path_buf()),
            machines: NonZeroUsize::new(2).unwrap(),
            setup_secs: Some(0.0),
            compare,
        }
    }

    #[tokio::test]
    async fn a_check_time_file_is_forecast_with_its_durations() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("check.time");
        std::fs::write(&file, "btrfs/001 30\nbtrfs/002 10\ngeneric/001 10\n").unwrap();
        let forecast = forecast(&check_time_request(&file, true)).await.unwrap();
        assert_eq!(forecast.plan.items.len(), 3);
        assert_eq!(forecast.plan.total_secs(), 50.0);
        assert_eq!(forecast.lower_bound_secs, 30.0);
        assert!(forecast.bound_by_longest);
        assert_eq!(forecast.predicted.makespan(), 30.0);
        let alternatives = forecast.alternatives.unwrap();
        assert!(alternatives.in_order.makespan() >= 30.0);
        let forecast = forecast_of(&file).await;
        assert!(forecast.alternatives.is_none());
    }

    async fn forecast_of(file: &Path) -> Forecast {
        forecast(&check_time_request(file, false)).await.unwrap()
    }

    #[tokio::test]
    async fn an_unreadable_or_empty_check_time_is_the_requests_fault() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("check.time");
        let err = forecast(&check_time_request(&file, false))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read `{}`: ", file.display())),
            "{err}"
        );
        std::fs::write(&file, "not a duration\n").unwrap();
        let err = forecast(&check_time_request(&file, false))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` holds no `TEST SECONDS` lines (fstests' check.time format)",
                file.display()
            )
        );
        assert_eq!(err.kind(), ErrorKind::Usage);
    }
}
