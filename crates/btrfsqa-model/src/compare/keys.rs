//! What a comparison compares: a test by its [`TestKey`], runs by their
//! [`ProfileKey`] and [`kernel_id`], and the labels that name a run's
//! profile, baseline name, kernel line and matrix.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{RunReport, TestOutcome};

/// The label that names a run's profile (`labels.profile`).
pub const PROFILE_LABEL: &str = "profile";

/// The label that gives a run a name it can be chosen by as a baseline.
pub const BASELINE_LABEL: &str = "baseline";

/// The label that names the kernel a run of a kernel matrix tested, as the
/// configuration names it (`for-next`, `stable`, `installed`): runs of
/// one kernel line compare with each other, never across lines.
pub const KERNEL_LABEL: &str = "kernel";

/// The label that ties the runs of one kernel matrix together (the same
/// value on each).
pub const MATRIX_LABEL: &str = "matrix";

/// Which test: suite, profile (fstests section) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TestKey {
    /// The suite's id.
    pub suite: String,
    /// The profile or fstests section, if the suite has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The test's name within its suite.
    pub name: String,
}

impl TestKey {
    /// The key of `outcome`.
    pub fn of(outcome: &TestOutcome) -> Self {
        TestKey {
            suite: outcome.suite.clone(),
            profile: outcome.profile.clone(),
            name: outcome.name.clone(),
        }
    }

    pub(super) fn is(&self, outcome: &TestOutcome) -> bool {
        self.suite == outcome.suite && self.name == outcome.name && self.profile == outcome.profile
    }
}

impl fmt::Display for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.suite, self.name)?;
        if let Some(profile) = &self.profile {
            write!(f, " [{profile}]")?;
        }
        Ok(())
    }
}

/// What makes two runs comparable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProfileKey {
    /// The provider (`local`, `aws`, ...): a test on a loop device and on
    /// EBS are not the same experiment.
    pub provider: String,
    /// `labels.profile`, when the run has one: the identity the user chose.
    pub profile: Option<String>,
    /// Without a profile label, the sorted suite ids the run reported.
    pub suites: Vec<String>,
    /// `labels.kernel`: the kernel line of a matrix run (`for-next` is
    /// compared with earlier `for-next` runs, not with `stable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

impl ProfileKey {
    /// The key of `report`.
    pub fn of(report: &RunReport) -> Self {
        let profile = report.labels.get(PROFILE_LABEL).cloned();
        let suites = if profile.is_some() {
            Vec::new()
        } else {
            report
                .suites
                .iter()
                .map(|s| s.id.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        ProfileKey {
            provider: report.provenance.provider.clone(),
            profile,
            suites,
            kernel: report.labels.get(KERNEL_LABEL).cloned(),
        }
    }
}

/// The kernel a run tested, as far as runs can be told apart: the built
/// commit when btrfsqa built it, else `uname -r`.
pub fn kernel_id(report: &RunReport) -> Option<&str> {
    let kernel = &report.provenance.kernel;
    kernel
        .source
        .as_ref()
        .and_then(|s| s.commit.as_deref())
        .or(kernel.release.as_deref())
}
