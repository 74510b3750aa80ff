//! Choosing the run another is compared with, and the order runs are in.

use serde::{Deserialize, Serialize};

use super::keys::{BASELINE_LABEL, ProfileKey, kernel_id};
use crate::{RunReport, RunStatus};

/// Which earlier runs may serve as an automatic baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselinePolicy {
    /// The newest earlier run on a different kernel: what changed is the
    /// kernel, so a new failure is the kernel's regression.
    #[default]
    OtherKernel,
    /// The newest earlier run, whatever its kernel (a fixed kernel tested
    /// repeatedly: a new failure there points at the tests or the machine).
    PreviousRun,
}

/// Runs in the order they started (id breaks ties).
pub(super) fn chronological(a: &RunReport, b: &RunReport) -> std::cmp::Ordering {
    (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id))
}

pub(super) fn is_before(candidate: &RunReport, run: &RunReport) -> bool {
    chronological(candidate, run).is_lt()
}

/// The run `run` is compared with.
///
/// `named` wins: the run with that id, or else the newest run labelled
/// `baseline = NAME` (other than `run`); `None` when no run has that name.
/// Otherwise the newest run that started before `run`, completed, has the
/// same [`ProfileKey`] and reported at least one test; under
/// [`BaselinePolicy::OtherKernel`] its [`kernel_id`] must also differ from
/// the run's (an unknown kernel differs from every kernel).
pub fn choose_baseline<'a>(
    run: &RunReport,
    history: &'a [RunReport],
    named: Option<&str>,
    policy: BaselinePolicy,
) -> Option<&'a RunReport> {
    if let Some(name) = named {
        return history
            .iter()
            .find(|r| r.run_id.as_str() == name)
            .or_else(|| {
                history
                    .iter()
                    .filter(|r| r.run_id != run.run_id)
                    .filter(|r| r.labels.get(BASELINE_LABEL).map(String::as_str) == Some(name))
                    .max_by(|a, b| chronological(a, b))
            });
    }
    let profile = ProfileKey::of(run);
    let kernel = kernel_id(run);
    history
        .iter()
        .filter(|r| r.run_id != run.run_id && is_before(r, run))
        .filter(|r| r.status == RunStatus::Completed && r.outcomes().next().is_some())
        .filter(|r| ProfileKey::of(r) == profile)
        .filter(|r| match policy {
            BaselinePolicy::PreviousRun => true,
            BaselinePolicy::OtherKernel => match (kernel_id(r), kernel) {
                (Some(a), Some(b)) => a != b,
                _ => true,
            },
        })
        .max_by(|a, b| chronological(a, b))
}
