//! Comparing runs: baselines, regressions, fixes, flaky tests, known failures.
//!
//! Everything here is pure: it takes reports (a run, its history as read
//! from the results store) and returns values, so the runner (at the end of
//! a run), the CLI (`btrfsqa compare`, `btrfsqa history`) and the dashboard
//! all judge a run the same way.
//!
//! - A test is identified by its [`TestKey`]: suite, profile (fstests
//!   section) and name.
//! - Runs are comparable when they share a [`ProfileKey`]: the provider and
//!   either the `profile` label or, without one, the set of suites run.
//! - [`choose_baseline`] picks what a run is compared with: a named run, or
//!   the newest earlier completed run of the same profile on another kernel.
//! - [`classify`] gives every test a [`Class`]; a test that flips between
//!   pass and fail in the recent history of its profile, or within the run
//!   (reruns), is [`Class::Flaky`] rather than a regression.
//! - [`KnownFailure`]s are expectations: a failure they describe is
//!   [`Class::Expected`], and one that keeps passing is reported as droppable.
//!
//! ```
//! use btrfsqa_model::compare::{self, CompareOptions, Class};
//! use btrfsqa_model::{RunId, RunReport, Provenance, SuiteReport, TestOutcome, Verdict, RunStatus};
//!
//! fn run(id: &str, kernel: &str, verdict: Verdict) -> RunReport {
//!     let started = format!("2026-01-{:02}T00:00:00Z", id.len()).parse().unwrap();
//!     let mut report = RunReport::start(RunId::parse(id).unwrap(), started, Provenance::default());
//!     report.provenance.kernel.release = Some(kernel.into());
//!     let mut suite = SuiteReport::new("smoke");
//!     suite.tests.push(TestOutcome::new("smoke", "001_mount", verdict));
//!     report.suites.push(suite);
//!     report.finish(RunStatus::Completed, started);
//!     report
//! }
//! let history = vec![run("a", "6.1.0", Verdict::Pass), run("bb", "6.2.0", Verdict::Fail)];
//! let baseline = compare::choose_baseline(&history[1], &history, None, Default::default());
//! let comparison = compare::classify(&history[1], baseline, &history, &CompareOptions::default());
//! assert_eq!(comparison.tests[0].class, Class::NewFailure);
//! assert_eq!(comparison.counts.new_failure, 1);
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::{RunReport, Verdict};

mod baseline;
mod classes;
mod duration;
mod history;
mod keys;
mod known;
mod verdicts;

pub use baseline::{BaselinePolicy, choose_baseline};
use baseline::{chronological, is_before};
pub use classes::{
    Class, ClassCounts, Comparison, ComparisonSummary, DroppableKnownFailure, FlakySource,
    TestComparison,
};
pub use duration::{Slowdown, slowdowns};
pub use history::{HistoryEntry, TestFilter, history_stats, test_history};
pub use keys::{
    BASELINE_LABEL, KERNEL_LABEL, MATRIX_LABEL, PROFILE_LABEL, ProfileKey, TestKey, kernel_id,
};
use known::passes_in_a_row;
pub use known::{KernelRange, KnownFailure};
pub use verdicts::is_failing;
use verdicts::{attempts_in, effective, flips, is_signal, verdicts, verdicts_of};

/// How [`classify`] judges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompareOptions {
    /// Expected failures.
    pub known_failures: Vec<KnownFailure>,
    /// How many earlier runs of the profile are searched for flakiness.
    pub flaky_window: usize,
    /// A test is flaky when its pass/fail verdicts, oldest first over the
    /// window and this run, change at least this often (3: fail, pass, fail
    /// again; a regression that was later fixed changes only twice).
    pub flaky_min_flips: u32,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            known_failures: Vec::new(),
            flaky_window: 10,
            flaky_min_flips: 3,
        }
    }
}

/// The earlier runs of `run`'s profile, oldest first.
fn profile_history<'a>(run: &RunReport, history: &'a [RunReport]) -> Vec<&'a RunReport> {
    let profile = ProfileKey::of(run);
    let mut runs: Vec<&RunReport> = history
        .iter()
        .filter(|r| r.run_id != run.run_id && is_before(r, run))
        .filter(|r| ProfileKey::of(r) == profile)
        .collect();
    runs.sort_by(|a, b| chronological(a, b));
    runs
}

/// Compares `run` with `baseline` and classifies every test of both.
///
/// `history` is every run known (the results store; `run` and `baseline`
/// may be in it): the runs of the same profile that started before `run`
/// give flakiness (the last [`CompareOptions::flaky_window`]) and known
/// failures' pass streaks. Rules, in order, for a test of `run`:
///
/// 1. a first verdict that is not a pass or a failure: [`Class::Inconclusive`];
/// 2. passed and failed within the run (reruns): [`Class::Flaky`];
/// 3. failed and a known failure that is still in force applies: [`Class::Expected`];
/// 4. against the baseline's verdict (a pass if any attempt there passed):
///    fail/fail [`Class::StillFailing`], pass/fail [`Class::NewFailure`],
///    fail/pass [`Class::Fixed`], pass/pass [`Class::Pass`], anything
///    without a baseline verdict [`Class::New`] — except that a change
///    (new failure or fix) in a test whose verdicts flip at least
///    [`CompareOptions::flaky_min_flips`] times over the window is [`Class::Flaky`].
///
/// A test of the baseline missing from `run` is [`Class::Gone`].
pub fn classify(
    run: &RunReport,
    baseline: Option<&RunReport>,
    history: &[RunReport],
    options: &CompareOptions,
) -> Comparison {
    let earlier = profile_history(run, history);
    let window = &earlier[earlier.len().saturating_sub(options.flaky_window)..];
    let window_maps: Vec<HashMap<TestKey, Vec<Verdict>>> = window
        .iter()
        .map(|r| {
            attempts_in(r)
                .into_iter()
                .map(|(k, o)| (k, verdicts(&o)))
                .collect()
        })
        .collect();

    // Expectations in force: those that had not yet passed often enough.
    let streaks_before: Vec<u32> = options
        .known_failures
        .iter()
        .map(|k| passes_in_a_row(k, &earlier))
        .collect();
    let in_force = |index: usize| {
        let known = &options.known_failures[index];
        known.drop_after_passes == 0 || streaks_before[index] < known.drop_after_passes
    };

    let current = attempts_in(run);
    let baseline_map: BTreeMap<TestKey, Vec<Verdict>> = baseline
        .map(|b| {
            attempts_in(b)
                .into_iter()
                .map(|(k, o)| (k, verdicts(&o)))
                .collect()
        })
        .unwrap_or_default();

    let mut tests = Vec::new();
    for (key, outcomes) in &current {
        let attempts = verdicts(outcomes);
        let first = attempts[0];
        let baseline_attempts = baseline_map.get(key);
        let baseline_verdict = baseline_attempts.and_then(|a| effective(a));
        let baseline_signal = baseline_verdict.filter(|v| is_signal(*v));
        let history_flaky = || {
            let sequence = window_maps
                .iter()
                .filter_map(|m| m.get(key))
                .flatten()
                .copied()
                .chain(attempts.iter().copied());
            let (passes, runs, flips) = flips(sequence);
            (flips >= options.flaky_min_flips).then_some(Class::Flaky {
                passes,
                runs,
                source: FlakySource::History,
            })
        };
        let (in_run_passes, in_run_runs, _) = flips(attempts.iter().copied());
        let class = if !is_signal(first) {
            Class::Inconclusive
        } else if in_run_passes > 0 && in_run_passes < in_run_runs {
            Class::Flaky {
                passes: in_run_passes,
                runs: in_run_runs,
                source: FlakySource::Reruns,
            }
        } else if let Some(known) = is_failing(first)
            .then(|| {
                options
                    .known_failures
                    .iter()
                    .enumerate()
                    .find(|(i, k)| in_force(*i) && k.applies(key, run))
            })
            .flatten()
        {
            Class::Expected {
                reason: known.1.reason.clone(),
            }
        } else {
            match (is_failing(first), baseline_signal) {
                (_, None) => Class::New,
                (true, Some(b)) if is_failing(b) => Class::StillFailing,
                (false, Some(b)) if !is_failing(b) => Class::Pass,
                (true, Some(_)) => history_flaky().unwrap_or(Class::NewFailure),
                (false, Some(_)) => history_flaky().unwrap_or(Class::Fixed),
            }
        };
        tests.push(TestComparison {
            suite: key.suite.clone(),
            profile: key.profile.clone(),
            name: key.name.clone(),
            class,
            verdict: Some(first),
            baseline_verdict,
            attempts: if attempts.len() > 1 {
                attempts
            } else {
                Vec::new()
            },
            message: outcomes[0].message.clone(),
        });
    }
    for (key, attempts) in &baseline_map {
        if !current.contains_key(key) {
            tests.push(TestComparison {
                suite: key.suite.clone(),
                profile: key.profile.clone(),
                name: key.name.clone(),
                class: Class::Gone,
                verdict: None,
                baseline_verdict: effective(attempts),
                attempts: Vec::new(),
                message: None,
            });
        }
    }
    tests.sort_by_key(|t| t.key());

    let mut with_run = earlier.clone();
    with_run.push(run);
    let droppable = options
        .known_failures
        .iter()
        .enumerate()
        .filter(|(_, k)| k.drop_after_passes > 0)
        .filter_map(|(index, known)| {
            let streak = passes_in_a_row(known, &with_run);
            (streak >= known.drop_after_passes).then(|| DroppableKnownFailure {
                index,
                test: known.test.clone(),
                reason: known.reason.clone(),
                passes_in_a_row: streak,
                dropped: !in_force(index),
            })
        })
        .collect();

    let mut comparison = Comparison {
        run_id: run.run_id.clone(),
        baseline: baseline.map(|b| b.run_id.clone()),
        tests,
        counts: ClassCounts::default(),
        droppable,
        slower: slowdowns(run, &earlier),
    };
    comparison.recount();
    comparison
}

/// Folds the reruns now recorded in `run` into `comparison` (made by
/// [`classify`] before the reruns): a new failure that passed on a rerun
/// becomes [`Class::Flaky`] with its ratio; one that failed every time stays
/// a [`Class::NewFailure`], now with its attempts.
pub fn apply_reruns(comparison: &mut Comparison, run: &RunReport) {
    for test in &mut comparison.tests {
        if test.class != Class::NewFailure {
            continue;
        }
        let attempts = verdicts_of(run, &test.key());
        if attempts.len() <= 1 {
            continue;
        }
        let (passes, runs, _) = flips(attempts.iter().copied());
        if passes > 0 && passes < runs {
            test.class = Class::Flaky {
                passes,
                runs,
                source: FlakySource::Reruns,
            };
        }
        test.attempts = attempts;
    }
    comparison.recount();
}

#[cfg(test)]
mod tests;
