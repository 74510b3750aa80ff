//! What a comparison says: each test's [`Class`], the counts per class,
//! the [`Comparison`] of a run with its baseline and the
//! [`ComparisonSummary`] kept in the report.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::duration::Slowdown;
use super::keys::TestKey;
use crate::{RunId, RunReport, Verdict};

/// Where a flaky judgement comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlakySource {
    /// The test both passed and failed within this run (reruns).
    Reruns,
    /// The test flipped between pass and fail in the recent runs of its profile.
    History,
}

/// What a test's result means against the baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Class {
    /// Passed in the baseline, fails now, and neither reruns nor history
    /// make it flaky: a regression.
    NewFailure,
    /// Failed in the baseline, passes now.
    Fixed,
    /// Failed in the baseline and fails now.
    StillFailing,
    /// Both passes and fails: `passes` of `runs` attempts passed.
    Flaky {
        /// Attempts (or runs) that passed.
        passes: u32,
        /// Attempts (or runs) with a pass or fail verdict.
        runs: u32,
        /// Reruns in this run, or the profile's history.
        source: FlakySource,
    },
    /// Passed in the baseline and passes now.
    Pass,
    /// No verdict in the baseline (absent, skipped or errored there, or no baseline).
    New,
    /// In the baseline, not in this run.
    Gone,
    /// Failed as a known failure says it does.
    Expected {
        /// The known failure's reason.
        reason: String,
    },
    /// No verdict on btrfs this time: skipped, a harness error, interrupted.
    Inconclusive,
}

impl Class {
    /// The kebab-case name (`new-failure`, `flaky`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Class::NewFailure => "new-failure",
            Class::Fixed => "fixed",
            Class::StillFailing => "still-failing",
            Class::Flaky { .. } => "flaky",
            Class::Pass => "pass",
            Class::New => "new",
            Class::Gone => "gone",
            Class::Expected { .. } => "expected",
            Class::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Class::Flaky { passes, runs, .. } => write!(f, "flaky ({passes}/{runs} passed)"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// How many tests fell in each class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Regressions.
    pub new_failure: u32,
    /// Fixed.
    pub fixed: u32,
    /// Still failing.
    pub still_failing: u32,
    /// Flaky.
    pub flaky: u32,
    /// Still passing.
    pub pass: u32,
    /// Without a baseline verdict.
    pub new: u32,
    /// No longer run.
    pub gone: u32,
    /// Known failures that failed.
    pub expected: u32,
    /// Skipped, errored or interrupted.
    pub inconclusive: u32,
}

impl ClassCounts {
    /// Counts one class.
    pub fn add(&mut self, class: &Class) {
        let slot = match class {
            Class::NewFailure => &mut self.new_failure,
            Class::Fixed => &mut self.fixed,
            Class::StillFailing => &mut self.still_failing,
            Class::Flaky { .. } => &mut self.flaky,
            Class::Pass => &mut self.pass,
            Class::New => &mut self.new,
            Class::Gone => &mut self.gone,
            Class::Expected { .. } => &mut self.expected,
            Class::Inconclusive => &mut self.inconclusive,
        };
        *slot += 1;
    }
}

/// One test's comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestComparison {
    /// The suite's id.
    pub suite: String,
    /// The profile or fstests section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The test's name.
    pub name: String,
    /// What it means.
    #[serde(flatten)]
    pub class: Class,
    /// Its verdict in this run (the first attempt's); absent when gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Its verdict in the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_verdict: Option<Verdict>,
    /// Every verdict in this run when there was more than one attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Verdict>,
    /// The first attempt's message (why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl TestComparison {
    /// The test's key.
    pub fn key(&self) -> TestKey {
        TestKey {
            suite: self.suite.clone(),
            profile: self.profile.clone(),
            name: self.name.clone(),
        }
    }

    /// Whether a reader of a summary wants to see this test: anything but a
    /// steady pass, a new passing test or a skip.
    pub fn is_notable(&self) -> bool {
        match &self.class {
            Class::Pass => false,
            Class::New => self.verdict.is_some_and(|v| !v.is_ok()),
            Class::Inconclusive => self.verdict != Some(Verdict::Skip),
            _ => true,
        }
    }
}

/// A known failure that kept passing: remove it from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppableKnownFailure {
    /// Its position in the known-failures list (`expectations.known-failures[INDEX]`).
    pub index: usize,
    /// The test it names.
    pub test: String,
    /// Its reason.
    pub reason: String,
    /// Passes in a row, newest first, including this run.
    pub passes_in_a_row: u32,
    /// Already no longer applied to this run (it had passed often enough before).
    pub dropped: bool,
}

/// A run compared with its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The run.
    pub run_id: RunId,
    /// What it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<RunId>,
    /// Every test of the run and of the baseline, by key.
    pub tests: Vec<TestComparison>,
    /// Tests per class.
    pub counts: ClassCounts,
    /// Known failures that can be removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub droppable: Vec<DroppableKnownFailure>,
    /// Performance regressions: tests far slower than their history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slower: Vec<Slowdown>,
}

impl Comparison {
    /// The regressions: new failures.
    pub fn regressions(&self) -> impl Iterator<Item = &TestComparison> {
        self.tests.iter().filter(|t| t.class == Class::NewFailure)
    }

    /// Whether there is at least one regression.
    pub fn has_regressions(&self) -> bool {
        self.counts.new_failure > 0
    }

    /// Recomputes [`Comparison::counts`] from the tests.
    pub fn recount(&mut self) {
        let mut counts = ClassCounts::default();
        for test in &self.tests {
            counts.add(&test.class);
        }
        self.counts = counts;
    }

    /// The compact form kept in the report and sent to notification hooks.
    pub fn summary(&self, dashboard_url: Option<String>) -> ComparisonSummary {
        ComparisonSummary {
            run_id: self.run_id.clone(),
            baseline: self.baseline.clone(),
            counts: self.counts,
            regressions: self.regressions().cloned().collect(),
            notable: self
                .tests
                .iter()
                .filter(|t| t.class != Class::NewFailure && t.is_notable())
                .cloned()
                .collect(),
            droppable: self.droppable.clone(),
            slower: self.slower.clone(),
            dashboard_url,
        }
    }
}

/// [`Comparison`] without the steady tests: what `report.json` keeps under
/// `comparison` and what a notification hook receives as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonSummary {
    /// The run.
    pub run_id: RunId,
    /// What it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<RunId>,
    /// Tests per class.
    pub counts: ClassCounts,
    /// The new failures, with their messages.
    #[serde(default)]
    pub regressions: Vec<TestComparison>,
    /// Every other test worth a look (see [`TestComparison::is_notable`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notable: Vec<TestComparison>,
    /// Known failures that can be removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub droppable: Vec<DroppableKnownFailure>,
    /// Performance regressions: tests far slower than their history on the
    /// profile (see [`slowdowns`](super::slowdowns)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slower: Vec<Slowdown>,
    /// The run's dashboard page, when it was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
}

impl ComparisonSummary {
    /// The class of one test of the run, for marking it on a page: from the
    /// lists, else [`Class::Pass`] when the run has it (steady tests are not
    /// listed), else `None`.
    pub fn class_of(&self, report: &RunReport, key: &TestKey) -> Option<Class> {
        if let Some(test) = self
            .regressions
            .iter()
            .chain(&self.notable)
            .find(|t| t.suite == key.suite && t.name == key.name && t.profile == key.profile)
        {
            return Some(test.class.clone());
        }
        report.outcomes().any(|o| key.is(o)).then_some(Class::Pass)
    }
}
