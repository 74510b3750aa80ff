use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::RunId;
use crate::compare::ComparisonSummary;

/// The version of the `report.json` schema this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The verdict on one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The test ran and passed.
    Pass,
    /// The test ran and failed: a btrfs (or test) problem.
    Fail,
    /// The test did not run (fstests' "notrun", a missing feature); not a failure.
    #[serde(alias = "notrun")]
    Skip,
    /// The harness could not run the test (infrastructure, setup): not a verdict on btrfs.
    Error,
    /// The test did not finish within its timeout.
    Hung,
    /// The machine crashed (panic, oops, stopped answering) while the test ran.
    Crashed,
    /// The run was interrupted (signal, spot reclaim) while the test ran.
    Interrupted,
}

impl Verdict {
    /// Every verdict, in display order.
    pub const ALL: [Verdict; 7] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Skip,
        Verdict::Error,
        Verdict::Hung,
        Verdict::Crashed,
        Verdict::Interrupted,
    ];

    /// Whether a run with only this verdict counts as good (pass or skip).
    pub fn is_ok(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Skip)
    }

    /// The kebab-case name used in JSON and on the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
            Verdict::Error => "error",
            Verdict::Hung => "hung",
            Verdict::Crashed => "crashed",
            Verdict::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of file an [`Artifact`] is, so the dashboard can label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// Everything the test printed on standard output.
    Stdout,
    /// Everything the test printed on standard error.
    Stderr,
    /// A combined log written by the harness.
    Log,
    /// fstests' `.full` file.
    Full,
    /// fstests' `.out.bad` file (the diff against the golden output).
    OutBad,
    /// The kernel log captured for the test.
    Dmesg,
    /// The machine's serial console.
    Console,
    /// A kernel build log.
    BuildLog,
    /// An asciicast v2 terminal recording.
    Cast,
    /// Anything else.
    Other,
}

/// A file kept for a test or suite, relative to the run's directory in the results store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// What it is.
    pub kind: ArtifactKind,
    /// Path relative to the run directory, with `/` separators.
    pub path: String,
    /// Set when the file was cut to a size limit; the number of bytes left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_bytes: Option<u64>,
    /// For a [`ArtifactKind::Cast`] of a test: where the test starts in the
    /// recording, in seconds from its beginning, so a player can open there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_secs: Option<f64>,
}

impl Artifact {
    /// An artifact at `path` (relative to the run directory).
    pub fn new(kind: ArtifactKind, path: impl Into<String>) -> Self {
        Artifact {
            kind,
            path: path.into(),
            truncated_bytes: None,
            start_secs: None,
        }
    }

    /// Sets where a test starts in a recording ([`Artifact::start_secs`]).
    pub fn starting_at(mut self, secs: f64) -> Self {
        self.start_secs = Some(secs);
        self
    }
}

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestOutcome {
    /// The suite's id (`raid56-scrub`, `xfstests`, ...).
    pub suite: String,
    /// The test's name within its suite (`btrfs/011`, `raid5-data-repair`).
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The profile or fstests section it ran under, if the suite has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Wall-clock duration in seconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// Why it failed, was skipped or errored, in one or a few lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Files kept for this test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The machine that ran it (for sharded runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// Further runs of this test within the same run (a new failure is run
    /// again before it is called a regression), in order. The verdict above
    /// stays the first attempt's, so counts are one per test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reruns: Vec<Attempt>,
    /// What the kernel logged while the test ran that a btrfs developer
    /// must see (BUG, WARNING, Oops, KASAN, lockdep, btrfs critical), one
    /// line each; the whole excerpt is a [`ArtifactKind::Dmesg`] artifact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_log: Vec<String>,
}

/// One more run of a test within the same run: see [`TestOutcome::reruns`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The verdict of this attempt.
    pub verdict: Verdict,
    /// Wall-clock duration in seconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// Why it failed, was skipped or errored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Files kept for this attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

impl From<TestOutcome> for Attempt {
    fn from(outcome: TestOutcome) -> Self {
        Attempt {
            verdict: outcome.verdict,
            duration_secs: outcome.duration_secs,
            message: outcome.message,
            artifacts: outcome.artifacts,
            started_at: outcome.started_at,
        }
    }
}

impl TestOutcome {
    /// An outcome with only the required fields set.
    pub fn new(suite: impl Into<String>, name: impl Into<String>, verdict: Verdict) -> Self {
        TestOutcome {
            suite: suite.into(),
            name: name.into(),
            verdict,
            profile: None,
            duration_secs: None,
            message: None,
            artifacts: Vec::new(),
            machine: None,
            started_at: None,
            reruns: Vec::new(),
            kernel_log: Vec::new(),
        }
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the duration.
    pub fn with_duration(mut self, duration: std::time::Duration) -> Self {
        self.duration_secs = Some(duration.as_secs_f64());
        self
    }
}

/// Counts of outcomes by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Passed.
    pub pass: u32,
    /// Failed.
    pub fail: u32,
    /// Skipped / not run.
    pub skip: u32,
    /// Harness errors.
    pub error: u32,
    /// Timed out.
    pub hung: u32,
    /// Machine crashed.
    pub crashed: u32,
    /// Interrupted.
    pub interrupted: u32,
}

impl Counts {
    /// Counts the verdicts of `outcomes`.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a TestOutcome>) -> Self {
        let mut counts = Counts::default();
        for outcome in outcomes {
            counts.add(outcome.verdict);
        }
        counts
    }

    /// Adds one verdict.
    pub fn add(&mut self, verdict: Verdict) {
        *self.slot(verdict) += 1;
    }

    /// The count of one verdict.
    pub fn get(&self, verdict: Verdict) -> u32 {
        match verdict {
            Verdict::Pass => self.pass,
            Verdict::Fail => self.fail,
            Verdict::Skip => self.skip,
            Verdict::Error => self.error,
            Verdict::Hung => self.hung,
            Verdict::Crashed => self.crashed,
            Verdict::Interrupted => self.interrupted,
        }
    }

    fn slot(&mut self, verdict: Verdict) -> &mut u32 {
        match verdict {
            Verdict::Pass => &mut self.pass,
            Verdict::Fail => &mut self.fail,
            Verdict::Skip => &mut self.skip,
            Verdict::Error => &mut self.error,
            Verdict::Hung => &mut self.hung,
            Verdict::Crashed => &mut self.crashed,
            Verdict::Interrupted => &mut self.interrupted,
        }
    }

    /// All tests counted.
    pub fn total(&self) -> u32 {
        Verdict::ALL.iter().map(|v| self.get(*v)).sum()
    }

    /// Tests whose verdict is not pass or skip.
    pub fn bad(&self) -> u32 {
        self.total() - self.pass - self.skip
    }
}

/// Where a source tree came from, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// What it is (`fstests`, `btrfs-progs`, `kernel`).
    pub name: String,
    /// The git URL or path it was taken from.
    pub url: String,
    /// The ref asked for (`master`, `for-next`, a tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The exact commit used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// The kernel a run tested.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// `uname -r` on the test machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// `uname -v`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The kernel source, when btrfsqa built it; absent for the installed kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
}

/// A machine a run used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// Its name within the run.
    pub name: String,
    /// The provider that made it (`local`, `static`, `aws`, `qemu`).
    pub provider: String,
    /// How it was reached (`local`, `user@host:port`).
    pub address: String,
    /// Instance type or VM shape, when the provider has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// The test device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_dev: Option<String>,
    /// The scratch pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scratch_devs: Vec<String>,
    /// The kernel it ran.
    #[serde(default)]
    pub kernel: KernelInfo,
}

/// Everything needed to know exactly what a run tested and with what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The btrfsqa version that made the run.
    pub btrfsqa_version: String,
    /// SHA-256 of the resolved configuration.
    pub config_hash: String,
    /// The provider used.
    pub provider: String,
    /// The host name of the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The machines used.
    #[serde(default)]
    pub machines: Vec<MachineInfo>,
    /// The kernel tested (of the first machine; machines of one run share it).
    #[serde(default)]
    pub kernel: KernelInfo,
    /// Every pinned source.
    #[serde(default)]
    pub sources: Vec<SourceInfo>,
}

/// The result of one suite in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// The suite's id.
    pub id: String,
    /// One outcome per test.
    pub tests: Vec<TestOutcome>,
    /// Wall-clock duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// Set when the suite itself could not run or stopped early (build failure,
    /// lost machine); the tests it did report are still in `tests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files kept for the suite as a whole (raw output, build log).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Where the suite's source came from, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
}

impl SuiteReport {
    /// An empty report for suite `id`.
    pub fn new(id: impl Into<String>) -> Self {
        SuiteReport {
            id: id.into(),
            tests: Vec::new(),
            duration_secs: None,
            error: None,
            artifacts: Vec::new(),
            source: None,
        }
    }

    /// Counts of this suite's verdicts.
    pub fn counts(&self) -> Counts {
        Counts::of(&self.tests)
    }
}

/// How a run as a whole ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Still going (a report written while the run is under way).
    Running,
    /// Every planned suite ran (tests may still have failed).
    Completed,
    /// An infrastructure error stopped the run; see `error`.
    Errored,
    /// Stopped by a signal or a timeout before the end.
    Interrupted,
}

/// The whole record of one run: what `report.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// [`SCHEMA_VERSION`] at the time of writing.
    pub schema_version: u32,
    /// The run.
    pub run_id: RunId,
    /// How it ended.
    pub status: RunStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// What was tested, with what.
    pub provenance: Provenance,
    /// Per-suite results.
    pub suites: Vec<SuiteReport>,
    /// Counts over all suites (recomputed by [`RunReport::finish`]).
    #[serde(default)]
    pub summary: Counts,
    /// The error that stopped the run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Free-form labels (profile names, the trigger, a CI job URL).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What the machines cost, in US dollars, when the provider knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// How this run compares with its baseline (regressions, fixes, flaky
    /// tests), when the runner compared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonSummary>,
    /// Set when the run was made elsewhere and read by `btrfsqa import`:
    /// its start, end and provenance are then what the results say, and
    /// this says where, when and by whom they were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportOrigin>,
}

/// Where an imported run's results came from (see [`RunReport::import`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOrigin {
    /// The directory read, as an absolute path on the importing machine.
    pub source: String,
    /// What it held (`xfstests`, `btrfs-progs`).
    pub kind: String,
    /// The importing machine's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The user who ran `btrfsqa import`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When it was imported.
    pub imported_at: DateTime<Utc>,
}

impl RunReport {
    /// A report for a run that is just starting.
    pub fn start(run_id: RunId, started_at: DateTime<Utc>, provenance: Provenance) -> Self {
        RunReport {
            schema_version: SCHEMA_VERSION,
            run_id,
            status: RunStatus::Running,
            started_at,
            finished_at: None,
            provenance,
            suites: Vec::new(),
            summary: Counts::default(),
            error: None,
            labels: BTreeMap::new(),
            cost_usd: None,
            comparison: None,
            import: None,
        }
    }

    /// Every outcome of every suite.
    pub fn outcomes(&self) -> impl Iterator<Item = &TestOutcome> {
        self.suites.iter().flat_map(|suite| suite.tests.iter())
    }

    /// Recomputes the summary from the suites.
    pub fn recount(&mut self) {
        self.summary = Counts::of(self.outcomes());
    }

    /// Marks the run finished with `status` at `at` and recounts.
    pub fn finish(&mut self, status: RunStatus, at: DateTime<Utc>) {
        self.status = status;
        self.finished_at = Some(at);
        self.recount();
    }

    /// Duration in seconds, once finished.
    pub fn duration_secs(&self) -> Option<f64> {
        self.finished_at
            .map(|end| (end - self.started_at).num_milliseconds() as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_serialize_kebab_case_and_accept_notrun() {
        assert_eq!(
            serde_json::to_string(&Verdict::Interrupted).unwrap(),
            r#""interrupted""#
        );
        assert_eq!(
            serde_json::from_str::<Verdict>(r#""notrun""#).unwrap(),
            Verdict::Skip
        );
        for verdict in Verdict::ALL {
            let json = serde_json::to_string(&verdict).unwrap();
            assert_eq!(json, format!("\"{verdict}\""));
        }
    }

    #[test]
    fn counts_add_up() {
        let outcomes = [
            TestOutcome::new("s", "a", Verdict::Pass),
            TestOutcome::new("s", "b", Verdict::Fail),
            TestOutcome::new("s", "c", Verdict::Skip),
            TestOutcome::new("s", "d", Verdict::Hung),
        ];
        let counts = Counts::of(&outcomes);
        assert_eq!((counts.total(), counts.bad(), counts.pass), (4, 2, 1));
    }

    #[test]
    fn report_round_trips_and_keeps_the_contract_fields() {
        let id = RunId::parse("20261124-000000-abcd").unwrap();
        let mut report = RunReport::start(id, Utc::now(), Provenance::default());
        let mut suite = SuiteReport::new("raid56-scrub");
        suite.tests.push(TestOutcome::new(
            "raid56-scrub",
            "raid5-data",
            Verdict::Pass,
        ));
        report.suites.push(suite);
        report.finish(RunStatus::Completed, Utc::now());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["suites"][0]["tests"][0]["name"], "raid5-data");
        assert_eq!(json["suites"][0]["tests"][0]["verdict"], "pass");
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        let back: RunReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn an_import_origin_round_trips_and_older_reports_have_none() {
        let id = RunId::parse("20261124-000000-abcd").unwrap();
        let mut report = RunReport::start(id, Utc::now(), Provenance::default());
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("import").is_none(), "{json}");
        let back: RunReport = serde_json::from_value(json).unwrap();
        assert_eq!(back.import, None);
        report.import = Some(ImportOrigin {
            source: "/srv/results/fstests".into(),
            kind: "xfstests".into(),
            host: Some("lab1".into()),
            user: Some("dave".into()),
            imported_at: Utc::now(),
        });
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["import"]["source"], "/srv/results/fstests");
        let back: RunReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
