//! Reading verdicts: which count as a verdict on btrfs, every attempt a
//! test got in a run, one verdict standing for several, and how often a
//! sequence of them flips between pass and fail.

use std::collections::BTreeMap;

use super::keys::TestKey;
use crate::{RunReport, TestOutcome, Verdict};

/// Whether a verdict says the test found a problem.
pub fn is_failing(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Fail | Verdict::Hung | Verdict::Crashed)
}

/// Whether a verdict is a verdict on btrfs (a pass or a failure), not a
/// skip, a harness error or an interruption.
pub(super) fn is_signal(verdict: Verdict) -> bool {
    verdict == Verdict::Pass || is_failing(verdict)
}

/// Every verdict a test got in one run: its first attempt, its reruns, and
/// any further outcomes with the same key (in report order).
pub(super) fn attempts_in(report: &RunReport) -> BTreeMap<TestKey, Vec<&TestOutcome>> {
    let mut map: BTreeMap<TestKey, Vec<&TestOutcome>> = BTreeMap::new();
    for outcome in report.outcomes() {
        map.entry(TestKey::of(outcome)).or_default().push(outcome);
    }
    map
}

pub(super) fn verdicts(outcomes: &[&TestOutcome]) -> Vec<Verdict> {
    outcomes
        .iter()
        .flat_map(|o| std::iter::once(o.verdict).chain(o.reruns.iter().map(|r| r.verdict)))
        .collect()
}

pub(super) fn verdicts_of(report: &RunReport, key: &TestKey) -> Vec<Verdict> {
    let outcomes: Vec<&TestOutcome> = report.outcomes().filter(|o| key.is(o)).collect();
    verdicts(&outcomes)
}

/// One verdict standing for several attempts: a pass if any attempt passed
/// (the kernel can pass it), else the first failure, else the first verdict.
pub(super) fn effective(attempts: &[Verdict]) -> Option<Verdict> {
    if attempts.contains(&Verdict::Pass) {
        Some(Verdict::Pass)
    } else {
        attempts
            .iter()
            .copied()
            .find(|v| is_failing(*v))
            .or(attempts.first().copied())
    }
}

/// `(passes, pass-or-fail verdicts, flips)` of a sequence of verdicts.
pub(super) fn flips(sequence: impl IntoIterator<Item = Verdict>) -> (u32, u32, u32) {
    let (mut passes, mut runs, mut flips) = (0, 0, 0);
    let mut last: Option<bool> = None;
    for verdict in sequence.into_iter().filter(|v| is_signal(*v)) {
        let passed = verdict == Verdict::Pass;
        passes += u32::from(passed);
        runs += 1;
        if last.is_some_and(|l| l != passed) {
            flips += 1;
        }
        last = Some(passed);
    }
    (passes, runs, flips)
}
