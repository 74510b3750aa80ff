//! Known failures: tests expected to fail (on a profile, on a range of
//! kernels), and how many times in a row one has passed since.

use serde::{Deserialize, Serialize};

use super::keys::{PROFILE_LABEL, TestKey};
use super::verdicts::is_signal;
use crate::{RunReport, Verdict};

/// A test expected to fail: `[[expectations.known-failures]]` in btrfsqa.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KnownFailure {
    /// The test's name (`btrfs/012`, `003_raid1-balance`).
    pub test: String,
    /// Only in this suite (default: any suite with a test of that name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Only under this profile: the run's `profile` label or the test's
    /// fstests section (default: every profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Only on kernels whose `uname -r` is in this range, e.g. `>=6.1,<6.9`
    /// (default: every kernel). A run whose kernel is unknown is not in any range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Why it fails (a bug link, a patch under review).
    pub reason: String,
    /// After this many passes in a row (in runs it applies to) the
    /// expectation stops applying and is reported as droppable; 0: never.
    #[serde(default = "default_drop_after_passes")]
    pub drop_after_passes: u32,
}

fn default_drop_after_passes() -> u32 {
    5
}

impl KnownFailure {
    /// A known failure of `test` for every profile and kernel.
    pub fn new(test: impl Into<String>, reason: impl Into<String>) -> Self {
        KnownFailure {
            test: test.into(),
            suite: None,
            profile: None,
            kernel: None,
            reason: reason.into(),
            drop_after_passes: default_drop_after_passes(),
        }
    }

    /// Problems with the fields as `(field, message)` pairs (the kernel range).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.test.trim().is_empty() {
            issues.push(("test".to_owned(), "must not be empty".to_owned()));
        }
        if let Some(range) = &self.kernel
            && let Err(err) = KernelRange::parse(range)
        {
            issues.push(("kernel".to_owned(), err.to_string()));
        }
        issues
    }

    /// Whether it describes test `key` in `run` (name, suite, profile, kernel).
    pub fn applies(&self, key: &TestKey, run: &RunReport) -> bool {
        if self.test != key.name || self.suite.as_ref().is_some_and(|s| *s != key.suite) {
            return false;
        }
        if let Some(profile) = &self.profile {
            let run_profile = run.labels.get(PROFILE_LABEL);
            if key.profile.as_ref() != Some(profile) && run_profile != Some(profile) {
                return false;
            }
        }
        match &self.kernel {
            None => true,
            Some(range) => match (
                KernelRange::parse(range),
                run.provenance.kernel.release.as_deref(),
            ) {
                (Ok(range), Some(release)) => range.contains(release),
                _ => false,
            },
        }
    }
}

/// A range of kernel versions: comma-separated comparisons, all of which
/// must hold (`>=6.1,<6.9`, `=6.6`, `<5.15.100`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRange {
    bounds: Vec<(Cmp, Vec<u64>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl KernelRange {
    /// Parses `>=6.1,<6.9`; the error names the part that is wrong.
    pub fn parse(text: &str) -> Result<KernelRange, crate::ModelError> {
        let mut bounds = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (cmp, rest) = [
                (">=", Cmp::Ge),
                ("<=", Cmp::Le),
                ("==", Cmp::Eq),
                (">", Cmp::Gt),
                ("<", Cmp::Lt),
                ("=", Cmp::Eq),
            ]
            .iter()
            .find_map(|(op, cmp)| part.strip_prefix(op).map(|rest| (*cmp, rest.trim())))
            .unwrap_or((Cmp::Eq, part));
            let version = rest
                .split('.')
                .map(|n| n.parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= 4);
            match version {
                Some(version) => bounds.push((cmp, version)),
                None => {
                    return Err(crate::ModelError::NotAKernelRange {
                        part: part.to_owned(),
                    });
                }
            }
        }
        Ok(KernelRange { bounds })
    }

    /// Whether a `uname -r` release (`6.1.0-13-amd64`, `6.9.0-rc1`) is in
    /// the range, comparing its leading numbers (missing ones count as 0).
    pub fn contains(&self, release: &str) -> bool {
        let Some(version) = release_numbers(release) else {
            return false;
        };
        self.bounds.iter().all(|(cmp, bound)| {
            let order = compare_versions(&version, bound);
            match cmp {
                Cmp::Lt => order.is_lt(),
                Cmp::Le => order.is_le(),
                Cmp::Gt => order.is_gt(),
                Cmp::Ge => order.is_ge(),
                Cmp::Eq => order.is_eq(),
            }
        })
    }
}

/// `6.1.0-13-amd64` → `[6, 1, 0]`.
fn release_numbers(release: &str) -> Option<Vec<u64>> {
    let end = release
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(release.len());
    let numbers: Vec<u64> = release[..end]
        .split('.')
        .map_while(|n| n.parse().ok())
        .collect();
    (!numbers.is_empty()).then_some(numbers)
}

fn compare_versions(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Passes in a row of known failure `known`, newest first over `runs` (newest
/// last in the slice); a run where it applies to no test with a pass or
/// fail verdict does not break the streak.
pub(super) fn passes_in_a_row(known: &KnownFailure, runs: &[&RunReport]) -> u32 {
    let mut streak = 0;
    for run in runs.iter().rev() {
        // By name first: a store of many runs times many known failures
        // must not build a key for every outcome.
        let verdicts: Vec<Verdict> = run
            .outcomes()
            .filter(|o| o.name == known.test && known.applies(&TestKey::of(o), run))
            .flat_map(|o| std::iter::once(o.verdict).chain(o.reruns.iter().map(|r| r.verdict)))
            .filter(|v| is_signal(*v))
            .collect();
        if verdicts.is_empty() {
            continue;
        }
        if verdicts.iter().all(|v| *v == Verdict::Pass) {
            streak += 1;
        } else {
            break;
        }
    }
    streak
}
