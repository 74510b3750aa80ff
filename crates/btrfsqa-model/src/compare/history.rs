//! One test's history across runs, as `btrfsqa history` and the dashboard
//! list it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::baseline::chronological;
use super::keys::{PROFILE_LABEL, kernel_id};
use super::verdicts::flips;
use crate::{RunId, RunReport, TestOutcome, Verdict};

/// Which tests [`test_history`] looks for (`btrfsqa history`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestFilter {
    /// The test's name (exact).
    pub name: String,
    /// Only this suite.
    pub suite: Option<String>,
    /// Only this profile: the test's fstests section or the run's `profile` label.
    pub profile: Option<String>,
}

impl TestFilter {
    fn matches(&self, outcome: &TestOutcome, run: &RunReport) -> bool {
        outcome.name == self.name
            && self.suite.as_ref().is_none_or(|s| *s == outcome.suite)
            && self.profile.as_ref().is_none_or(|p| {
                outcome.profile.as_ref() == Some(p) || run.labels.get(PROFILE_LABEL) == Some(p)
            })
    }
}

/// One run of a test, as `btrfsqa history` and the dashboard list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The run.
    pub run_id: RunId,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// The run's kernel ([`kernel_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The run's provider.
    pub provider: String,
    /// The run's `profile` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_profile: Option<String>,
    /// The suite.
    pub suite: String,
    /// The test's profile (fstests section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The test's name.
    pub name: String,
    /// The first attempt's verdict.
    pub verdict: Verdict,
    /// The verdicts of the reruns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reruns: Vec<Verdict>,
    /// The first attempt's duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// The first attempt's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Every outcome matching `filter` in `history`, oldest run first.
pub fn test_history(history: &[RunReport], filter: &TestFilter) -> Vec<HistoryEntry> {
    let mut runs: Vec<&RunReport> = history.iter().collect();
    runs.sort_by(|a, b| chronological(a, b));
    let mut entries = Vec::new();
    for run in runs {
        for outcome in run.outcomes().filter(|o| filter.matches(o, run)) {
            entries.push(HistoryEntry {
                run_id: run.run_id.clone(),
                started_at: run.started_at,
                kernel: kernel_id(run).map(str::to_owned),
                provider: run.provenance.provider.clone(),
                run_profile: run.labels.get(PROFILE_LABEL).cloned(),
                suite: outcome.suite.clone(),
                profile: outcome.profile.clone(),
                name: outcome.name.clone(),
                verdict: outcome.verdict,
                reruns: outcome.reruns.iter().map(|r| r.verdict).collect(),
                duration_secs: outcome.duration_secs,
                message: outcome.message.clone(),
            });
        }
    }
    entries
}

/// Pass/fail tallies of a history: `(passes, failures, flips)` over the
/// entries' verdicts and reruns, oldest first.
pub fn history_stats(entries: &[HistoryEntry]) -> (u32, u32, u32) {
    let (passes, runs, flips) = flips(
        entries
            .iter()
            .flat_map(|e| std::iter::once(e.verdict).chain(e.reruns.iter().copied())),
    );
    (passes, runs - passes, flips)
}
