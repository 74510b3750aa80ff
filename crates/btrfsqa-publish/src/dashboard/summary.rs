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
use std::fmt;
use std::sync::Arc;

use btrfsqa_model::compare::{KERNEL_LABEL, MATRIX_LABEL};
use btrfsqa_model::{Counts, RunId, RunReport, RunStatus, Verdict};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Bumped when the summary's shape changes: older summaries are rebuilt
/// from their reports (or ignored when only the summary is left).
/// 3: tests as compact rows (see [`compact`]). 4: a kernel matrix's
/// labels (`kernel_name`, `matrix`).
pub(crate) const SUMMARY_FORMAT: u32 = 4;

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
    /// The kernel's name in a kernel matrix (its `kernel` label).
    #[serde(default)]
    pub kernel_name: Option<String>,
    /// The kernel matrix the run is part of (its `matrix` label).
    #[serde(default)]
    pub matrix: Option<String>,
    #[serde(default)]
    pub provider: String,
    /// Instance types (or machine names when there are none), distinct.
    #[serde(default)]
    pub machines: Vec<String>,
    /// The run's profile label and the profiles (fstests sections) of its tests.
    #[serde(default)]
    pub profiles: Vec<String>,
    pub counts: Counts,
    /// New failures: against the baseline when the runner compared the
    /// run, else by the dashboard's reckoning when the run's page was
    /// written (see `changes`).
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
    #[serde(with = "compact")]
    pub tests: Vec<TestEntry>,
    /// False for a summary read without its tests ([`RunSummary::head`]).
    #[serde(skip, default = "yes")]
    pub tests_read: bool,
}

fn yes() -> bool {
    true
}

/// A summary's run without its tests: what the index and the archive need
/// of a run, read in a fraction of the time of the whole summary.
#[derive(Deserialize)]
struct Head {
    format: u32,
    run_id: RunId,
    started_at: DateTime<Utc>,
    #[serde(default)]
    finished_at: Option<DateTime<Utc>>,
    status: RunStatus,
    #[serde(default)]
    kernel_release: Option<String>,
    #[serde(default)]
    kernel_commit: Option<String>,
    #[serde(default)]
    kernel_ref: Option<String>,
    #[serde(default)]
    kernel_name: Option<String>,
    #[serde(default)]
    matrix: Option<String>,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    machines: Vec<String>,
    #[serde(default)]
    profiles: Vec<String>,
    counts: Counts,
    #[serde(default)]
    new_failures: Option<u32>,
    #[serde(default)]
    baseline: Option<RunId>,
    #[serde(default)]
    cost_usd: Option<f64>,
    #[serde(default = "yes")]
    has_page: bool,
    #[expect(dead_code, reason = "read past, not kept")]
    tests: serde::de::IgnoredAny,
}

/// One test of a run; a summary holds them as compact rows ([`compact`]).
/// A site's history holds a million of these: the suite and profile are
/// shared with the other tests of the run, the anchor is two numbers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TestEntry {
    /// Suite id.
    pub suite: Arc<str>,
    /// Test name.
    pub name: String,
    /// Profile.
    pub profile: Option<Arc<str>>,
    /// Verdict.
    pub verdict: Verdict,
    /// Duration in seconds, to a tenth.
    pub duration_secs: Option<f64>,
    /// The first line of the message of a test that did not pass.
    pub message: Option<String>,
    /// The test's row on its run page.
    pub anchor: Anchor,
    /// `new-failure`, `fixed` or `flaky` when the runner's comparison said so.
    pub class: Option<String>,
}

/// The anchor of test `j` of suite `i` on a run page.
pub(crate) fn test_anchor(suite: usize, test: usize) -> String {
    Anchor(suite, test).to_string()
}

/// Where a test is on its run page: test `.1` of suite `.0`, `t-<i>-<j>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Anchor(pub usize, pub usize);

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t-{}-{}", self.0, self.1)
    }
}

impl Serialize for Anchor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
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
        let mut shared: Vec<Arc<str>> = Vec::new();
        let mut share = |text: &str| -> Arc<str> {
            match shared.iter().find(|s| ***s == *text) {
                Some(s) => s.clone(),
                None => {
                    shared.push(Arc::from(text));
                    shared[shared.len() - 1].clone()
                }
            }
        };
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
                    suite: share(&test.suite),
                    name: test.name.clone(),
                    profile: test.profile.as_deref().map(&mut share),
                    verdict: test.verdict,
                    duration_secs: test
                        .duration_secs
                        .filter(|d| d.is_finite())
                        .map(|d| (d * 10.0).round() / 10.0),
                    message: test
                        .message
                        .as_deref()
                        .filter(|_| test.verdict != Verdict::Pass)
                        .map(first_line),
                    anchor: Anchor(i, j),
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
            kernel_name: report.labels.get(KERNEL_LABEL).cloned(),
            matrix: report.labels.get(MATRIX_LABEL).cloned(),
            provider: provenance.provider.clone(),
            machines,
            profiles: profiles.into_iter().collect(),
            counts: Counts::of(report.outcomes()),
            new_failures: comparison.map(|c| c.counts.new_failure),
            baseline: comparison.and_then(|c| c.baseline.clone()),
            cost_usd: report.cost_usd,
            has_page: true,
            tests,
            tests_read: true,
        }
    }

    /// The summary in `json` without its tests (`tests_read` false).
    pub fn head(json: &[u8]) -> serde_json::Result<RunSummary> {
        let head: Head = serde_json::from_slice(json)?;
        Ok(RunSummary {
            format: head.format,
            run_id: head.run_id,
            started_at: head.started_at,
            finished_at: head.finished_at,
            status: head.status,
            kernel_release: head.kernel_release,
            kernel_commit: head.kernel_commit,
            kernel_ref: head.kernel_ref,
            kernel_name: head.kernel_name,
            matrix: head.matrix,
            provider: head.provider,
            machines: head.machines,
            profiles: head.profiles,
            counts: head.counts,
            new_failures: head.new_failures,
            baseline: head.baseline,
            cost_usd: head.cost_usd,
            has_page: head.has_page,
            tests: Vec::new(),
            tests_read: false,
        })
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

/// The tests of a summary as compact rows: a table of suite ids and one of
/// profiles, then per test `[suite, position, name, profile, verdict,
/// duration, message, class]` with the suite and profile as indexes into
/// the tables and absent values at the end left out. A site of 1,000 runs
/// of 1,200 tests reads 1.2 million of these on every publish.
mod compact {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use std::sync::Arc;

    use super::{Anchor, TestEntry};
    use btrfsqa_model::Verdict;

    #[derive(Serialize, Deserialize)]
    struct Tests {
        suites: Vec<String>,
        profiles: Vec<String>,
        rows: Vec<Row>,
    }

    /// `[suite, i, j, name, profile, verdict, duration, message, class]`:
    /// `suite` and `profile` index the tables, `i` and `j` place the test
    /// on its run page (`t-i-j`).
    struct Row {
        suite: usize,
        i: usize,
        j: usize,
        name: String,
        profile: Option<usize>,
        verdict: Verdict,
        duration: Option<f64>,
        message: Option<String>,
        class: Option<String>,
    }

    impl Serialize for Row {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let tail = [
                self.duration.is_some(),
                self.message.is_some(),
                self.class.is_some(),
            ];
            let len = 6 + tail
                .iter()
                .rposition(|present| *present)
                .map_or(0, |k| k + 1);
            let mut seq = serializer.serialize_seq(Some(len))?;
            seq.serialize_element(&self.suite)?;
            seq.serialize_element(&self.i)?;
            seq.serialize_element(&self.j)?;
            seq.serialize_element(&self.name)?;
            seq.serialize_element(&self.profile)?;
            seq.serialize_element(&self.verdict)?;
            if len > 6 {
                seq.serialize_element(&self.duration)?;
            }
            if len > 7 {
                seq.serialize_element(&self.message)?;
            }
            if len > 8 {
                seq.serialize_element(&self.class)?;
            }
            seq.end()
        }
    }

    impl<'de> Deserialize<'de> for Row {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct RowVisitor;
            impl<'de> Visitor<'de> for RowVisitor {
                type Value = Row;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a test row")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
                    let missing = |n| de::Error::invalid_length(n, &"at least 6 elements");
                    Ok(Row {
                        suite: seq.next_element()?.ok_or_else(|| missing(0))?,
                        i: seq.next_element()?.ok_or_else(|| missing(1))?,
                        j: seq.next_element()?.ok_or_else(|| missing(2))?,
                        name: seq.next_element()?.ok_or_else(|| missing(3))?,
                        profile: seq.next_element()?.ok_or_else(|| missing(4))?,
                        verdict: seq.next_element()?.ok_or_else(|| missing(5))?,
                        duration: seq.next_element()?.flatten(),
                        message: seq.next_element()?.flatten(),
                        class: seq.next_element()?.flatten(),
                    })
                }
            }
            deserializer.deserialize_seq(RowVisitor)
        }
    }

    fn index_of(table: &mut Vec<String>, value: &str) -> usize {
        table.iter().position(|v| v == value).unwrap_or_else(|| {
            table.push(value.to_owned());
            table.len() - 1
        })
    }

    pub fn serialize<S: Serializer>(tests: &[TestEntry], serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = Tests {
            suites: Vec::new(),
            profiles: Vec::new(),
            rows: Vec::with_capacity(tests.len()),
        };
        for test in tests {
            let Anchor(i, j) = test.anchor;
            out.rows.push(Row {
                suite: index_of(&mut out.suites, &test.suite),
                i,
                j,
                name: test.name.clone(),
                profile: test
                    .profile
                    .as_deref()
                    .map(|p| index_of(&mut out.profiles, p)),
                verdict: test.verdict,
                duration: test.duration_secs,
                message: test.message.clone(),
                class: test.class.clone(),
            });
        }
        out.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<TestEntry>, D::Error> {
        let tests = Tests::deserialize(deserializer)?;
        let suites: Vec<Arc<str>> = tests.suites.iter().map(|s| Arc::from(s.as_str())).collect();
        let profiles: Vec<Arc<str>> = tests
            .profiles
            .iter()
            .map(|s| Arc::from(s.as_str()))
            .collect();
        let lookup = |table: &[Arc<str>], k: usize| {
            table
                .get(k)
                .cloned()
                .ok_or_else(|| de::Error::custom(format!("no entry {k} in a summary's table")))
        };
        tests
            .rows
            .into_iter()
            .map(|row| {
                Ok(TestEntry {
                    suite: lookup(&suites, row.suite)?,
                    name: row.name,
                    profile: row.profile.map(|p| lookup(&profiles, p)).transpose()?,
                    verdict: row.verdict,
                    duration_secs: row.duration,
                    message: row.message,
                    anchor: Anchor(row.i, row.j),
                    class: row.class,
                })
            })
            .collect()
    }
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
        assert_eq!(summary.tests[0].anchor.to_string(), "t-0-0");
        let message = summary.tests[0].message.as_deref().unwrap();
        assert_eq!(message.chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(summary.tests[1].message, None, "a pass keeps no message");
        let json = serde_json::to_string(&summary).unwrap();
        assert!(
            json.contains(r#""suites":["s"],"profiles":["zstd"],"rows":[[0,0,0,"a",0,"fail","#),
            "{json}"
        );
        assert!(json.contains(r#"[0,0,1,"b",null,"pass"]"#), "{json}");
        let back: RunSummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, summary);
    }
}
