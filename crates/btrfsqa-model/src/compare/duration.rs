//! Performance regressions: tests that took far longer than their history
//! on the same profile says they take.
//!
//! For each test the newest [`WINDOW`] durations of its earlier runs on the
//! run's profile are summarised robustly, by their median and their median
//! absolute deviation (MAD, scaled by 1.4826 to estimate a standard
//! deviation), so one slow outlier in the history neither hides a slowdown
//! nor causes one. A test is slower when it took more than
//! `median + max(4 × σ, 25 % of the median, 5 s)` with at least
//! [`MIN_SAMPLES`] earlier durations: never from one previous run alone, and
//! never for a second's jitter of a short test.

use serde::{Deserialize, Serialize};

use super::keys::TestKey;
use super::verdicts::attempts_in;
use crate::{RunReport, TestOutcome, Verdict};

/// How many earlier durations count.
pub const WINDOW: usize = 10;
/// How many are needed before a test can be called slower.
pub const MIN_SAMPLES: usize = 5;
/// The smallest slowdown worth a report, in seconds.
pub const MIN_SLOWDOWN_SECS: f64 = 5.0;

/// A test that took much longer than it used to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slowdown {
    /// The suite's id.
    pub suite: String,
    /// The profile, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The test.
    pub name: String,
    /// How long it took in this run, in seconds.
    pub secs: f64,
    /// The median of its earlier durations.
    pub median_secs: f64,
    /// Above this it counts as slower.
    pub threshold_secs: f64,
    /// How many earlier durations the median is of.
    pub samples: usize,
}

/// The tests of `run` that took far longer than in `earlier` (the earlier
/// runs of its profile, oldest first).
pub fn slowdowns(run: &RunReport, earlier: &[&RunReport]) -> Vec<Slowdown> {
    let histories: Vec<_> = earlier.iter().map(|r| attempts_in(r)).collect();
    let mut slower = Vec::new();
    for (key, outcomes) in attempts_in(run) {
        let Some(secs) = finished_secs(outcomes[0]) else {
            continue;
        };
        let mut past: Vec<f64> = histories
            .iter()
            .rev()
            .filter_map(|h| h.get(&key).and_then(|o| finished_secs(o[0])))
            .take(WINDOW)
            .collect();
        if past.len() < MIN_SAMPLES {
            continue;
        }
        let median = median(&mut past);
        let mut deviations: Vec<f64> = past.iter().map(|d| (d - median).abs()).collect();
        let sigma = 1.4826 * self::median(&mut deviations);
        let threshold = median + (4.0 * sigma).max(0.25 * median).max(MIN_SLOWDOWN_SECS);
        if secs > threshold {
            let TestKey {
                suite,
                profile,
                name,
            } = key;
            slower.push(Slowdown {
                suite,
                profile,
                name,
                secs,
                median_secs: median,
                threshold_secs: threshold,
                samples: past.len(),
            });
        }
    }
    slower
}

/// A duration that says how long the test takes: of a test that ran to its
/// end (a hung test's is its timeout).
fn finished_secs(outcome: &TestOutcome) -> Option<f64> {
    matches!(outcome.verdict, Verdict::Pass | Verdict::Fail)
        .then_some(outcome.duration_secs)
        .flatten()
        .filter(|d| d.is_finite() && *d >= 0.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Provenance, RunId, SuiteReport};

    fn run(id: &str, tests: &[(&str, f64)]) -> RunReport {
        let mut report = RunReport::start(
            RunId::parse(id).unwrap(),
            chrono::Utc::now(),
            Provenance::default(),
        );
        let mut suite = SuiteReport::new("xfstests");
        for (name, secs) in tests {
            let mut t = TestOutcome::new("xfstests", *name, Verdict::Pass);
            t.duration_secs = Some(*secs);
            suite.tests.push(t);
        }
        report.suites.push(suite);
        report
    }

    #[test]
    fn only_a_clear_slowdown_against_a_robust_history_counts() {
        // A noisy history with one outlier (300 s) the median ignores.
        let history: Vec<RunReport> = [60.0, 62.0, 58.0, 300.0, 61.0, 59.0]
            .iter()
            .enumerate()
            .map(|(i, secs)| {
                run(
                    &format!("r{i}"),
                    &[("btrfs/011", *secs), ("btrfs/001", 1.0)],
                )
            })
            .collect();
        let earlier: Vec<&RunReport> = history.iter().collect();
        // 75 s: within 25 % of the median; 2 s for a 1 s test: under 5 s.
        let now = run("now", &[("btrfs/011", 75.0), ("btrfs/001", 2.0)]);
        assert!(slowdowns(&now, &earlier).is_empty());
        let now = run("now", &[("btrfs/011", 180.0), ("btrfs/001", 9.0)]);
        let slower = slowdowns(&now, &earlier);
        let names: Vec<&str> = slower.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["btrfs/001", "btrfs/011"]);
        assert_eq!(slower[1].median_secs, 60.5);
        assert_eq!(slower[1].samples, 6);
        // Too little history: nothing is called slower.
        assert!(slowdowns(&now, &earlier[..4]).is_empty());
    }
}
