//! The compact record of a run that the site's history pages are built from.
//!
//! A full report of a 1,200-test run is a few hundred kilobytes; the index,
//! the test pages and the matrix need only each test's verdict. Every run
//! directory of the site keeps `summary.json`, written with its page, so a
//! publish reads small summaries instead of every report, and a run whose
//! page was dropped by the retention setting still has its row in the index.
//!
//! Pure: reports in, summaries out, no I/O.

use std::collections::BTreeSet;

use btrfsqa_model::{Counts, RunId, RunReport, RunStatus, Verdict};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Bumped when the summary's shape changes: older summaries are rebuilt
/// from their reports (or ignored when only the summary is left).
pub(crate) const SUMMARY_FORMAT: u32 = 2;

/// The longest message kept per test in a summary (the run page has it whole).
const MESSAGE_CHARS: usize = 160;

/// One run, as the history pages see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunSummary {
    /// [`SUMMARY_FORMAT`].
    pub format: u32,
    pub run_id: RunId,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    #[serde(default)]
    pub kernel_release: Option<String>,
    /// The kernel commit, when btrfsqa built the kernel.
    #[serde(default)]
    pub kernel_commit: Option<String>,
    /// The kernel ref asked for (`for-next`).
    #[serde(default)]
    pub kernel_ref: Option<String>,
    #[serde(default)]
    pub provider: String,
    /// Instance types (or machine names when there are none), distinct.
    #[serde(default)]
    pub machines: Vec<String>,
    /// The run's profile label and the profiles (fstests sections) of its tests.
    #[serde(default)]
    pub profiles: Vec<String>,
    pub counts: Counts,
    /// New failures against the baseline, when the runner compared the run.
    #[serde(default)]
    pub new_failures: Option<u32>,
    /// The run the runner compared this one with.
    #[serde(default)]
    pub baseline: Option<RunId>,
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Whether the run's page is on the site (false once retention dropped it).
    #[serde(default = "yes")]
    pub has_page: bool,
    pub tests: Vec<TestEntry>,
}

fn yes() -> bool {
    true
}

/// One test of a run. Short field names: there are a million of these in a
/// large site's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TestEntry {
    /// Suite id.
    #[serde(rename = "s")]
    pub suite: String,
    /// Test name.
    #[serde(rename = "n")]
    pub name: String,
    /// Profile.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Verdict.
    #[serde(rename = "v")]
    pub verdict: Verdict,
    /// Duration in seconds.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// The first line of the message of a test that did not pass.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The test's anchor on its run page.
    #[serde(rename = "a")]
    pub anchor: String,
    /// `new-failure`, `fixed` or `flaky` when the runner's comparison said so.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// The anchor of test `j` of suite `i` on a run page.
pub(crate) fn test_anchor(suite: usize, test: usize) -> String {
    format!("t-{suite}-{test}")
}

impl RunSummary {
    /// The summary of `report`.
    pub fn of(report: &RunReport) -> Self {
        let provenance = &report.provenance;
        let kernel = &provenance.kernel;
        let release = kernel.release.clone().or_else(|| {
            provenance
                .machines
                .iter()
                .find_map(|m| m.kernel.release.clone())
        });
        let mut machines = Vec::new();
        for machine in &provenance.machines {
            let shown = machine
                .instance_type
                .clone()
                .unwrap_or_else(|| machine.name.clone());
            if !machines.contains(&shown) {
                machines.push(shown);
            }
        }
        let mut profiles = BTreeSet::new();
        if let Some(profile) = report.labels.get("profile") {
            profiles.insert(profile.clone());
        }
        let comparison = report.comparison.as_ref();
        let mut tests = Vec::new();
        for (i, suite) in report.suites.iter().enumerate() {
            for (j, test) in suite.tests.iter().enumerate() {
                if let Some(profile) = &test.profile {
                    profiles.insert(profile.clone());
                }
                let class = comparison.and_then(|c| {
                    c.regressions
                        .iter()
                        .chain(&c.notable)
                        .find(|t| {
                            t.suite == test.suite
                                && t.name == test.name
                                && t.profile == test.profile
                        })
                        .map(|t| t.class.as_str())
                        .filter(|class| matches!(*class, "new-failure" | "fixed" | "flaky"))
                        .map(str::to_owned)
                });
                tests.push(TestEntry {
                    suite: test.suite.clone(),
                    name: test.name.clone(),
                    profile: test.profile.clone(),
                    verdict: test.verdict,
                    duration_secs: test.duration_secs.filter(|d| d.is_finite()),
                    message: test
                        .message
                        .as_deref()
                        .filter(|_| test.verdict != Verdict::Pass)
                        .map(first_line),
                    anchor: test_anchor(i, j),
                    class,
                });
            }
        }
        RunSummary {
            format: SUMMARY_FORMAT,
            run_id: report.run_id.clone(),
            started_at: report.started_at,
            finished_at: report.finished_at,
            status: report.status,
            kernel_release: release,
            kernel_commit: kernel.source.as_ref().and_then(|s| s.commit.clone()),
            kernel_ref: kernel.source.as_ref().and_then(|s| s.git_ref.clone()),
            provider: provenance.provider.clone(),
            machines,
            profiles: profiles.into_iter().collect(),
            counts: Counts::of(report.outcomes()),
            new_failures: comparison.map(|c| c.counts.new_failure),
            baseline: comparison.and_then(|c| c.baseline.clone()),
            cost_usd: report.cost_usd,
            has_page: true,
            tests,
        }
    }

    /// Duration in seconds, once finished.
    pub fn duration_secs(&self) -> Option<f64> {
        self.finished_at
            .map(|end| (end - self.started_at).num_milliseconds() as f64 / 1000.0)
    }

    /// Display order: newest first, the id breaking ties.
    pub fn newest_first(a: &RunSummary, b: &RunSummary) -> std::cmp::Ordering {
        (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id))
    }
}

fn first_line(message: &str) -> String {
    let line = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut cut: String = line.chars().take(MESSAGE_CHARS).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    cut
}

/// Whether a verdict is a problem found by the test (as opposed to a pass,
/// a skip, or no verdict on btrfs).
pub(crate) fn is_failing(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Fail | Verdict::Hung | Verdict::Crashed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::{Provenance, SuiteReport, TestOutcome};

    #[test]
    fn summaries_keep_what_history_needs() {
        let mut report = RunReport::start(
            RunId::parse("r1").unwrap(),
            "2026-11-24T10:00:00Z".parse().unwrap(),
            Provenance::default(),
        );
        report.labels.insert("profile".into(), "nightly".into());
        let mut suite = SuiteReport::new("s");
        let mut failed = TestOutcome::new("s", "a", Verdict::Fail)
            .with_message(format!("\n{}\nsecond line", "x".repeat(500)));
        failed.profile = Some("zstd".into());
        suite.tests.push(failed);
        suite
            .tests
            .push(TestOutcome::new("s", "b", Verdict::Pass).with_message("fine"));
        report.suites.push(suite);
        let summary = RunSummary::of(&report);
        assert_eq!(summary.profiles, ["nightly", "zstd"]);
        assert_eq!(summary.tests[0].anchor, "t-0-0");
        let message = summary.tests[0].message.as_deref().unwrap();
        assert_eq!(message.chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(summary.tests[1].message, None, "a pass keeps no message");
        let json = serde_json::to_string(&summary).unwrap();
        assert!(
            json.contains(r#""s":"s","n":"a","p":"zstd","v":"fail""#),
            "{json}"
        );
        let back: RunSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, summary);
    }
}
