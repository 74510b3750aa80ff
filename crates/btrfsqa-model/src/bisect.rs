//! A bisection's journal (`RESULTS/.bisect/<id>/bisect.json`): written by
//! the runner's `bisect` step by step, read by the dashboard for its page.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Verdict;

/// What a tested commit showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mark {
    /// The test passed every time.
    Good,
    /// The test failed as on the bad commit.
    Bad,
    /// It cannot say: it did not build or boot, or the test did not run,
    /// or it failed otherwise.
    Skip,
}

/// One tested commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// The commit.
    pub commit: String,
    /// Why it was tested: `bad` (the bad commit), `search`, `culprit`
    /// (confirming the commit found), `parent` (confirming its parent).
    pub purpose: String,
    /// The test's verdict in each run (`None`: it did not run).
    pub verdicts: Vec<Option<Verdict>>,
    /// The runs, in the results store.
    pub runs: Vec<String>,
    /// What the step showed.
    pub mark: Mark,
    /// Why it was skipped, when it was.
    pub note: Option<String>,
    /// When it ended.
    pub at: DateTime<Utc>,
}

/// How a bisection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// The first bad commit, confirmed.
    Found {
        /// The commit.
        commit: String,
        /// Its subject line.
        subject: String,
    },
    /// It cannot be decided.
    Undecided {
        /// Why.
        why: String,
        /// The commits it could be (oldest first), when known.
        commits: Vec<String>,
    },
}

/// The bisection's journal (`bisect.json`): the page and the JSON of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bisection {
    /// Its id (from the test, the source and the two commits).
    pub id: String,
    /// `suite/test`.
    pub test: String,
    /// The profile.
    pub profile: Option<String>,
    /// The source bisected: `kernel`, `xfstests` or `btrfs-progs`.
    pub source: String,
    /// Its repository (no credentials).
    pub url: String,
    /// The good commit.
    pub good: String,
    /// The bad commit.
    pub bad: String,
    /// The commits after the good one up to the bad one, oldest first, as
    /// `id subject`.
    pub commits: Vec<String>,
    /// Runs per step.
    pub runs: u32,
    /// The verdict the bad commit failed with.
    pub failure: Option<Verdict>,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The end, once there is one.
    pub outcome: Option<Outcome>,
}

impl Bisection {
    /// How many times the test ran.
    pub fn test_runs(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.verdicts)
            .filter(|v| v.is_some())
            .count()
    }
}
