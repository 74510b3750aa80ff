//! Baselines, regressions and flaky tests at the end of a run.
//!
//! The judging itself is pure and lives in [`btrfsqa_model::compare`] (so the
//! dashboard, which cannot depend on the runner, judges the same way); this
//! module adds what belongs to a run: the `[expectations]` configuration,
//! which new failures to run again, and folding those reruns in.
//!
//! What the pipeline does after the suites (and before teardown, while the
//! machine is still there):
//!
//! ```no_run
//! # use btrfsqa_model::{ResultsStore, RunReport, SuiteReport};
//! # use btrfsqa_runner::history::{self, ExpectationsConfig};
//! # fn rerun(suite: &str, tests: Vec<String>) -> SuiteReport { unimplemented!() }
//! # fn demo(store: &ResultsStore, report: &mut RunReport, config: &ExpectationsConfig) {
//! let (past, _unreadable) = store.load_all().unwrap_or_default();
//! let mut comparison = history::compare_run(report, &past, config);
//! let plan = history::rerun_plan(&comparison, config);
//! for _ in 0..plan.times {
//!     for (suite, tests) in plan.by_suite() {
//!         // SuiteContext { only: Some(tests), .. } and suite.run(&ctx)
//!         let rerun: SuiteReport = rerun(&suite, tests);
//!         history::record_reruns(report, &plan, rerun);
//!     }
//! }
//! history::apply_reruns(&mut comparison, report);
//! report.comparison = Some(history::summarize_for_report(&comparison, None));
//! # }
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use btrfsqa_model::{Attempt, RunReport, SuiteReport};

pub use btrfsqa_model::compare::{
    BaselinePolicy, Class, ClassCounts, CompareOptions, Comparison, ComparisonSummary,
    DroppableKnownFailure, FlakySource, HistoryEntry, KernelRange, KnownFailure, ProfileKey,
    TestComparison, TestFilter, TestKey, apply_reruns, choose_baseline, classify, history_stats,
    kernel_id, test_history,
};

/// `[expectations]`: known failures, reruns of new failures, flakiness and
/// the baseline.
///
/// ```toml
/// [expectations]
/// rerun-new-failures = 2
/// baseline = "20261124-101500-ab12"   # a run id or a `baseline` label; default: automatic
///
/// [[expectations.known-failures]]
/// test = "btrfs/012"
/// profile = "default"
/// kernel = ">=6.1,<6.9"
/// reason = "convert from ext4 loses xattrs, bug 1234"
/// drop-after-passes = 5
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExpectationsConfig {
    /// `[[expectations.known-failures]]`.
    #[serde(default)]
    pub known_failures: Vec<KnownFailure>,
    /// How many more times each new failure runs before it is called a
    /// regression (0: never rerun).
    #[serde(default = "default_rerun_new_failures")]
    pub rerun_new_failures: u32,
    /// At most this many new failures are rerun: a kernel that breaks
    /// everything should not make the run take three times as long.
    #[serde(default = "default_rerun_max_tests")]
    pub rerun_max_tests: u32,
    /// How many earlier runs of the profile are searched for flakiness.
    #[serde(default = "default_flaky_window")]
    pub flaky_window: usize,
    /// Pass/fail changes within the window that make a test flaky.
    #[serde(default = "default_flaky_min_flips")]
    pub flaky_min_flips: u32,
    /// A named baseline: a run id, or the value of a run's `baseline` label.
    #[serde(default)]
    pub baseline: Option<String>,
    /// Which runs an automatic baseline comes from: `other-kernel` (default)
    /// or `previous-run`.
    #[serde(default)]
    pub baseline_policy: BaselinePolicy,
}

fn default_rerun_new_failures() -> u32 {
    2
}
fn default_rerun_max_tests() -> u32 {
    20
}
fn default_flaky_window() -> usize {
    10
}
fn default_flaky_min_flips() -> u32 {
    3
}

impl Default for ExpectationsConfig {
    fn default() -> Self {
        ExpectationsConfig {
            known_failures: Vec::new(),
            rerun_new_failures: default_rerun_new_failures(),
            rerun_max_tests: default_rerun_max_tests(),
            flaky_window: default_flaky_window(),
            flaky_min_flips: default_flaky_min_flips(),
            baseline: None,
            baseline_policy: BaselinePolicy::default(),
        }
    }
}

impl ExpectationsConfig {
    /// Problems as `(key under [expectations], message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        for (i, known) in self.known_failures.iter().enumerate() {
            for (key, message) in known.validate() {
                issues.push((format!("known-failures[{i}].{key}"), message));
            }
        }
        if self.rerun_new_failures > 10 {
            issues.push((
                "rerun-new-failures".to_owned(),
                format!("{} is too many: at most 10", self.rerun_new_failures),
            ));
        }
        if self.flaky_min_flips == 0 {
            issues.push((
                "flaky-min-flips".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if let Some(name) = &self.baseline
            && name.trim().is_empty()
        {
            issues.push(("baseline".to_owned(), "must not be empty".to_owned()));
        }
        issues
    }

    /// The options [`classify`] takes.
    pub fn compare_options(&self) -> CompareOptions {
        CompareOptions {
            known_failures: self.known_failures.clone(),
            flaky_window: self.flaky_window,
            flaky_min_flips: self.flaky_min_flips,
        }
    }
}

/// Chooses `run`'s baseline from `history` (the results store's reports) as
/// `config` says and classifies every test.
///
/// A named baseline that is not in `history` gives a comparison without a
/// baseline (every test [`Class::New`]); check [`Comparison::baseline`].
pub fn compare_run(
    run: &RunReport,
    history: &[RunReport],
    config: &ExpectationsConfig,
) -> Comparison {
    let baseline = choose_baseline(
        run,
        history,
        config.baseline.as_deref(),
        config.baseline_policy,
    );
    classify(run, baseline, history, &config.compare_options())
}

/// Which new failures to run again, and how often.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RerunPlan {
    /// Each test runs this many more times (`rerun-new-failures`).
    pub times: u32,
    /// The tests, in key order.
    pub tests: Vec<TestKey>,
    /// New failures left out by `rerun-max-tests`: they stay unconfirmed
    /// new failures.
    pub left_out: usize,
}

impl RerunPlan {
    /// Whether there is nothing to rerun.
    pub fn is_empty(&self) -> bool {
        self.times == 0 || self.tests.is_empty()
    }

    /// Per suite id, the test names to put in `SuiteContext::only`. A test
    /// with the same name under several profiles is listed once.
    pub fn by_suite(&self) -> BTreeMap<String, Vec<String>> {
        let mut suites: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in &self.tests {
            let names = suites.entry(key.suite.clone()).or_default();
            if !names.contains(&key.name) {
                names.push(key.name.clone());
            }
        }
        suites
    }
}

/// The new failures of `comparison` that have not been rerun yet, at most
/// `rerun-max-tests` of them, each to run `rerun-new-failures` more times.
/// Known failures, flaky and still-failing tests are never rerun.
pub fn rerun_plan(comparison: &Comparison, config: &ExpectationsConfig) -> RerunPlan {
    if config.rerun_new_failures == 0 {
        return RerunPlan::default();
    }
    let candidates: Vec<TestKey> = comparison
        .regressions()
        .filter(|t| t.attempts.len() <= 1)
        .map(TestComparison::key)
        .collect();
    let max = config.rerun_max_tests as usize;
    RerunPlan {
        times: config.rerun_new_failures,
        left_out: candidates.len().saturating_sub(max),
        tests: candidates.into_iter().take(max).collect(),
    }
}

/// Adds the outcomes of a rerun (a suite run with `only` set) to the tests
/// of `report` they rerun, as [`Attempt`]s in [`btrfsqa_model::TestOutcome::reruns`].
/// Only tests in `plan` are touched (a suite may run a name under every
/// profile); returns how many attempts were recorded.
pub fn record_reruns(report: &mut RunReport, plan: &RerunPlan, rerun: SuiteReport) -> usize {
    let mut recorded = 0;
    for outcome in rerun.tests {
        let key = TestKey::of(&outcome);
        if !plan.tests.contains(&key) {
            continue;
        }
        let original = report
            .suites
            .iter_mut()
            .filter(|s| s.id == key.suite)
            .flat_map(|s| s.tests.iter_mut())
            .find(|t| TestKey::of(t) == key);
        if let Some(original) = original {
            original.reruns.push(Attempt::from(outcome));
            recorded += 1;
        }
    }
    recorded
}

/// What the report keeps under `comparison`, with the run's dashboard page
/// when it is known (see [`crate::notify::run_page_url`]).
pub fn summarize_for_report(
    comparison: &Comparison,
    dashboard_url: Option<String>,
) -> ComparisonSummary {
    comparison.summary(dashboard_url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::{Provenance, RunId, RunStatus, TestOutcome, Verdict};

    fn report(id: &str, day: u32, kernel: &str, tests: &[(&str, Verdict)]) -> RunReport {
        let started = format!("2026-04-{day:02}T08:00:00Z").parse().unwrap();
        let mut report = RunReport::start(
            RunId::parse(id).unwrap(),
            started,
            Provenance {
                provider: "local".into(),
                ..Provenance::default()
            },
        );
        report.provenance.kernel.release = Some(kernel.into());
        let mut suite = SuiteReport::new("smoke");
        for (name, verdict) in tests {
            suite.tests.push(TestOutcome::new("smoke", *name, *verdict));
        }
        report.suites.push(suite);
        report.finish(RunStatus::Completed, started);
        report
    }

    #[test]
    fn new_failures_are_rerun_and_folded_into_flaky_or_confirmed() {
        let old = report(
            "old",
            1,
            "6.1.0",
            &[
                ("a", Verdict::Pass),
                ("b", Verdict::Pass),
                ("c", Verdict::Fail),
                ("d", Verdict::Pass),
            ],
        );
        let mut new = report(
            "new",
            2,
            "6.2.0",
            &[
                ("a", Verdict::Fail),
                ("b", Verdict::Hung),
                ("c", Verdict::Fail),
                ("d", Verdict::Pass),
            ],
        );
        let history = vec![old, new.clone()];
        let config = ExpectationsConfig::default();
        let mut comparison = compare_run(&new, &history, &config);
        assert_eq!(comparison.counts.new_failure, 2);

        let plan = rerun_plan(&comparison, &config);
        assert_eq!(plan.times, 2);
        assert_eq!(
            plan.by_suite(),
            BTreeMap::from([("smoke".to_owned(), vec!["a".to_owned(), "b".to_owned()])])
        );
        // Two reruns: `a` passes once, `b` hangs both times. A test the
        // suite ran besides (`d`) is not recorded.
        for verdict_a in [Verdict::Pass, Verdict::Fail] {
            let mut rerun = SuiteReport::new("smoke");
            rerun.tests.push(TestOutcome::new("smoke", "a", verdict_a));
            rerun
                .tests
                .push(TestOutcome::new("smoke", "b", Verdict::Hung));
            rerun
                .tests
                .push(TestOutcome::new("smoke", "d", Verdict::Pass));
            assert_eq!(record_reruns(&mut new, &plan, rerun), 2);
        }
        apply_reruns(&mut comparison, &new);
        let class = |name: &str| {
            comparison
                .tests
                .iter()
                .find(|t| t.name == name)
                .unwrap()
                .class
                .clone()
        };
        assert_eq!(
            class("a"),
            Class::Flaky {
                passes: 1,
                runs: 3,
                source: FlakySource::Reruns
            }
        );
        assert_eq!(class("b"), Class::NewFailure);
        assert_eq!(class("c"), Class::StillFailing);
        // Counts stay one per test: the reruns live inside the outcome.
        new.recount();
        assert_eq!(new.summary.total(), 4);
        assert_eq!(new.suites[0].tests[0].reruns.len(), 2);
        assert!(new.suites[0].tests[3].reruns.is_empty());

        // Already rerun: nothing more to do.
        assert!(rerun_plan(&comparison, &config).is_empty());

        let summary = summarize_for_report(&comparison, Some("https://x/runs/new/".into()));
        assert_eq!(summary.regressions.len(), 1);
        assert_eq!(summary.regressions[0].attempts, [Verdict::Hung; 3]);
        assert_eq!(summary.counts.flaky, 1);
    }

    #[test]
    fn reruns_can_be_off_or_capped() {
        let tests: Vec<(String, Verdict)> =
            (0..5).map(|i| (format!("t{i}"), Verdict::Pass)).collect();
        let refs = |v: Verdict| -> Vec<(&str, Verdict)> {
            tests.iter().map(|(n, _)| (n.as_str(), v)).collect()
        };
        let history = vec![
            report("a", 1, "6.1", &refs(Verdict::Pass)),
            report("b", 2, "6.2", &refs(Verdict::Fail)),
        ];
        let capped = ExpectationsConfig {
            rerun_max_tests: 3,
            ..ExpectationsConfig::default()
        };
        let comparison = compare_run(&history[1], &history, &capped);
        let plan = rerun_plan(&comparison, &capped);
        assert_eq!((plan.tests.len(), plan.left_out), (3, 2));
        let off = ExpectationsConfig {
            rerun_new_failures: 0,
            ..ExpectationsConfig::default()
        };
        assert!(rerun_plan(&comparison, &off).is_empty());
    }

    #[test]
    fn a_named_baseline_from_the_config_is_used() {
        let history = vec![
            report("golden", 1, "6.1", &[("a", Verdict::Fail)]),
            report("mid", 2, "6.2", &[("a", Verdict::Pass)]),
            report("now", 3, "6.3", &[("a", Verdict::Pass)]),
        ];
        let config = ExpectationsConfig {
            baseline: Some("golden".into()),
            ..ExpectationsConfig::default()
        };
        let comparison = compare_run(&history[2], &history, &config);
        assert_eq!(comparison.baseline.as_ref().unwrap().as_str(), "golden");
        assert_eq!(comparison.counts.fixed, 1);
        let automatic = compare_run(&history[2], &history, &ExpectationsConfig::default());
        assert_eq!(automatic.baseline.as_ref().unwrap().as_str(), "mid");
    }

    #[test]
    fn config_errors_in_the_sections_name_file_line_and_key() {
        let source = crate::ConfigSource {
            name: "btrfsqa.toml".into(),
            base_dir: "/etc/btrfsqa".into(),
            text: "[expectations]\n\n[[expectations.known-failures]]\ntest = \"btrfs/012\"\n\
                   kernel = \">=6.1,<six\"\nreason = \"r\"\n\n[notify]\n\
                   webhook = \"https://hooks.example.org/T/secret\"\n"
                .into(),
        };
        let err = source.parse().unwrap_err().to_string();
        assert!(
            err.contains("btrfsqa.toml:5: `expectations.known-failures[0].kernel`: `<six`"),
            "{err}"
        );
        assert!(
            err.contains("btrfsqa.toml:9: `notify.webhook`: https webhooks"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        let config = crate::ConfigSource::embedded_default().parse().unwrap();
        assert_eq!(config.expectations.rerun_new_failures, 2);
        assert!(!config.notify.is_configured());
    }

    #[test]
    fn the_config_section_parses_and_validates() {
        let config: ExpectationsConfig = toml::from_str(
            r#"
rerun-new-failures = 3
baseline-policy = "previous-run"
[[known-failures]]
test = "btrfs/012"
profile = "default"
kernel = ">=6.1,<6.9"
reason = "bug 1234"
drop-after-passes = 5
[[known-failures]]
test = "btrfs/013"
kernel = "six"
reason = "r"
"#,
        )
        .unwrap();
        assert_eq!(config.rerun_new_failures, 3);
        assert_eq!(config.baseline_policy, BaselinePolicy::PreviousRun);
        assert_eq!(config.known_failures[0].drop_after_passes, 5);
        assert_eq!(config.known_failures[1].drop_after_passes, 5, "default");
        let issues = config.validate();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].0, "known-failures[1].kernel");
        assert!(issues[0].1.contains("`six`"), "{}", issues[0].1);
        assert!(
            toml::from_str::<ExpectationsConfig>("[[known-failures]]\ntest = \"x\"\n").is_err(),
            "a known failure needs a reason"
        );
    }
}
