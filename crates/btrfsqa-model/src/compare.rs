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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{RunId, RunReport, RunStatus, TestOutcome, Verdict};

mod duration;
pub use duration::{Slowdown, slowdowns};

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

    fn is(&self, outcome: &TestOutcome) -> bool {
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
fn chronological(a: &RunReport, b: &RunReport) -> std::cmp::Ordering {
    (a.started_at, &a.run_id).cmp(&(b.started_at, &b.run_id))
}

fn is_before(candidate: &RunReport, run: &RunReport) -> bool {
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

/// Whether a verdict says the test found a problem.
pub fn is_failing(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Fail | Verdict::Hung | Verdict::Crashed)
}

/// Whether a verdict is a verdict on btrfs (a pass or a failure), not a
/// skip, a harness error or an interruption.
fn is_signal(verdict: Verdict) -> bool {
    verdict == Verdict::Pass || is_failing(verdict)
}

/// Every verdict a test got in one run: its first attempt, its reruns, and
/// any further outcomes with the same key (in report order).
fn attempts_in(report: &RunReport) -> BTreeMap<TestKey, Vec<&TestOutcome>> {
    let mut map: BTreeMap<TestKey, Vec<&TestOutcome>> = BTreeMap::new();
    for outcome in report.outcomes() {
        map.entry(TestKey::of(outcome)).or_default().push(outcome);
    }
    map
}

fn verdicts(outcomes: &[&TestOutcome]) -> Vec<Verdict> {
    outcomes
        .iter()
        .flat_map(|o| std::iter::once(o.verdict).chain(o.reruns.iter().map(|r| r.verdict)))
        .collect()
}

fn verdicts_of(report: &RunReport, key: &TestKey) -> Vec<Verdict> {
    let outcomes: Vec<&TestOutcome> = report.outcomes().filter(|o| key.is(o)).collect();
    verdicts(&outcomes)
}

/// One verdict standing for several attempts: a pass if any attempt passed
/// (the kernel can pass it), else the first failure, else the first verdict.
fn effective(attempts: &[Verdict]) -> Option<Verdict> {
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
    /// profile (see [`slowdowns`]).
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
            && let Err(message) = KernelRange::parse(range)
        {
            issues.push(("kernel".to_owned(), message));
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
    /// Parses `>=6.1,<6.9`; the message says what is wrong.
    pub fn parse(text: &str) -> Result<KernelRange, String> {
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
                    return Err(format!(
                        "`{part}` is not a kernel version comparison (expected e.g. `>=6.1,<6.9`)"
                    ));
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

/// `(passes, pass-or-fail verdicts, flips)` of a sequence of verdicts.
fn flips(sequence: impl IntoIterator<Item = Verdict>) -> (u32, u32, u32) {
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

/// Passes in a row of known failure `known`, newest first over `runs` (newest
/// last in the slice); a run where it applies to no test with a pass or
/// fail verdict does not break the streak.
fn passes_in_a_row(known: &KnownFailure, runs: &[&RunReport]) -> u32 {
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

#[cfg(test)]
mod tests;
