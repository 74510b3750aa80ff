//! Classification on constructed histories.

use chrono::{DateTime, Utc};

use super::*;
use crate::{Attempt, Provenance, RunId, RunStatus, SuiteReport, TestOutcome};

/// A run builder: `run(n, kernel)` starts on day `n`, provider `local`,
/// one suite `s`.
struct Run(RunReport);

fn run(day: u32, kernel: &str) -> Run {
    let started: DateTime<Utc> = format!("2026-03-{day:02}T12:00:00Z").parse().unwrap();
    let mut report = RunReport::start(
        RunId::parse(&format!("r{day:02}")).unwrap(),
        started,
        Provenance {
            provider: "local".into(),
            ..Provenance::default()
        },
    );
    report.provenance.kernel.release = Some(kernel.into());
    report.suites.push(SuiteReport::new("s"));
    report.status = RunStatus::Completed;
    Run(report)
}

impl Run {
    fn test(mut self, name: &str, verdict: Verdict) -> Self {
        self.0.suites[0]
            .tests
            .push(TestOutcome::new("s", name, verdict).with_message(format!("{name} said so")));
        self
    }

    fn reruns(mut self, name: &str, verdicts: &[Verdict]) -> Self {
        let outcome = self.0.suites[0]
            .tests
            .iter_mut()
            .find(|t| t.name == name)
            .unwrap();
        outcome.reruns.extend(
            verdicts
                .iter()
                .map(|v| Attempt::from(TestOutcome::new("s", name, *v))),
        );
        self
    }

    fn label(mut self, key: &str, value: &str) -> Self {
        self.0.labels.insert(key.into(), value.into());
        self
    }

    fn status(mut self, status: RunStatus) -> Self {
        self.0.status = status;
        self
    }

    fn provider(mut self, provider: &str) -> Self {
        self.0.provenance.provider = provider.into();
        self
    }

    fn done(mut self) -> RunReport {
        self.0.recount();
        self.0
    }
}

use Verdict::{Fail, Hung, Pass, Skip};

fn class_of<'a>(comparison: &'a Comparison, name: &str) -> &'a Class {
    &comparison
        .tests
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no test {name} in {comparison:#?}"))
        .class
}

/// Chooses the baseline automatically and classifies the last run of `history`.
fn judge(history: &[RunReport], options: &CompareOptions) -> Comparison {
    let current = history.last().unwrap();
    let baseline = choose_baseline(current, history, None, BaselinePolicy::OtherKernel);
    classify(current, baseline, history, options)
}

#[test]
fn a_test_that_passed_on_the_old_kernel_and_fails_on_the_new_is_a_new_failure() {
    let history = [
        run(1, "6.1.0").test("a", Pass).test("b", Pass).done(),
        run(2, "6.2.0").test("a", Fail).test("b", Pass).done(),
    ];
    let comparison = judge(&history, &CompareOptions::default());
    assert_eq!(comparison.baseline.as_ref().unwrap().as_str(), "r01");
    assert_eq!(*class_of(&comparison, "a"), Class::NewFailure);
    assert_eq!(*class_of(&comparison, "b"), Class::Pass);
    assert_eq!(comparison.counts.new_failure, 1);
    assert_eq!(comparison.counts.pass, 1);
    let regression = comparison.regressions().next().unwrap();
    assert_eq!(regression.message.as_deref(), Some("a said so"));
    assert_eq!(regression.baseline_verdict, Some(Pass));
    assert!(comparison.has_regressions());
}

#[test]
fn fixed_still_failing_new_gone_and_inconclusive() {
    let history = [
        run(1, "6.1.0")
            .test("fixed", Fail)
            .test("broken", Hung)
            .test("gone", Pass)
            .test("skipped", Pass)
            .test("was-skipped", Skip)
            .done(),
        run(2, "6.2.0")
            .test("fixed", Pass)
            .test("broken", Fail)
            .test("brand-new", Fail)
            .test("skipped", Skip)
            .test("was-skipped", Fail)
            .done(),
    ];
    let comparison = judge(&history, &CompareOptions::default());
    assert_eq!(*class_of(&comparison, "fixed"), Class::Fixed);
    assert_eq!(*class_of(&comparison, "broken"), Class::StillFailing);
    assert_eq!(*class_of(&comparison, "brand-new"), Class::New);
    assert_eq!(*class_of(&comparison, "was-skipped"), Class::New);
    assert_eq!(*class_of(&comparison, "skipped"), Class::Inconclusive);
    assert_eq!(*class_of(&comparison, "gone"), Class::Gone);
    let gone = comparison.tests.iter().find(|t| t.name == "gone").unwrap();
    assert_eq!((gone.verdict, gone.baseline_verdict), (None, Some(Pass)));
    let counts = comparison.counts;
    assert_eq!(
        (
            counts.fixed,
            counts.still_failing,
            counts.new,
            counts.gone,
            counts.inconclusive,
            counts.new_failure
        ),
        (1, 1, 2, 1, 1, 0)
    );
}

#[test]
fn a_test_flipping_in_the_profiles_history_is_flaky_not_a_regression() {
    let history = [
        run(1, "6.1.0").test("a", Pass).test("steady", Pass).done(),
        run(2, "6.2.0").test("a", Fail).test("steady", Pass).done(),
        run(3, "6.3.0").test("a", Pass).test("steady", Pass).done(),
        run(4, "6.4.0").test("a", Fail).test("steady", Fail).done(),
    ];
    let comparison = judge(&history, &CompareOptions::default());
    assert_eq!(
        *class_of(&comparison, "a"),
        Class::Flaky {
            passes: 2,
            runs: 4,
            source: FlakySource::History
        }
    );
    assert_eq!(*class_of(&comparison, "steady"), Class::NewFailure);

    // A window too short to see the earlier flips: a regression again.
    let options = CompareOptions {
        flaky_window: 1,
        ..CompareOptions::default()
    };
    assert_eq!(
        *class_of(&judge(&history, &options), "a"),
        Class::NewFailure
    );
}

#[test]
fn a_regression_that_was_fixed_is_fixed_not_flaky() {
    let history = [
        run(1, "6.1.0").test("a", Pass).done(),
        run(2, "6.2.0").test("a", Fail).done(),
        run(3, "6.3.0").test("a", Fail).done(),
        run(4, "6.4.0").test("a", Pass).done(),
    ];
    assert_eq!(
        *class_of(&judge(&history, &CompareOptions::default()), "a"),
        Class::Fixed
    );
}

#[test]
fn a_regression_seen_again_on_the_same_kernel_stays_a_regression() {
    // r02 and r03 test the same kernel: both compare with r01.
    let history = [
        run(1, "6.1.0").test("a", Pass).done(),
        run(2, "6.2.0").test("a", Fail).done(),
        run(3, "6.2.0").test("a", Fail).done(),
    ];
    let comparison = judge(&history, &CompareOptions::default());
    assert_eq!(comparison.baseline.as_ref().unwrap().as_str(), "r01");
    assert_eq!(*class_of(&comparison, "a"), Class::NewFailure);
}

#[test]
fn a_new_failure_that_passes_on_rerun_is_flaky_with_its_ratio() {
    let before = [
        run(1, "6.1.0").test("a", Pass).test("b", Pass).done(),
        run(2, "6.2.0").test("a", Fail).test("b", Fail).done(),
    ];
    let mut comparison = judge(&before, &CompareOptions::default());
    assert_eq!(comparison.counts.new_failure, 2);

    // The runner reran both twice: `a` passed once, `b` never.
    let after = run(2, "6.2.0")
        .test("a", Fail)
        .test("b", Fail)
        .reruns("a", &[Pass, Fail])
        .reruns("b", &[Fail, Fail])
        .done();
    apply_reruns(&mut comparison, &after);
    assert_eq!(
        *class_of(&comparison, "a"),
        Class::Flaky {
            passes: 1,
            runs: 3,
            source: FlakySource::Reruns
        }
    );
    assert_eq!(*class_of(&comparison, "b"), Class::NewFailure);
    let b = comparison.tests.iter().find(|t| t.name == "b").unwrap();
    assert_eq!(b.attempts, [Fail, Fail, Fail]);
    assert_eq!(
        (comparison.counts.new_failure, comparison.counts.flaky),
        (1, 1)
    );

    // classify on the report with reruns says the same thing directly.
    let history = [before[0].clone(), after];
    let direct = judge(&history, &CompareOptions::default());
    assert_eq!(direct.tests, comparison.tests);
}

#[test]
fn duplicate_outcomes_of_one_test_count_as_attempts() {
    let history = [
        run(1, "6.1.0").test("a", Pass).done(),
        run(2, "6.2.0").test("a", Fail).test("a", Pass).done(),
    ];
    assert_eq!(
        *class_of(&judge(&history, &CompareOptions::default()), "a"),
        Class::Flaky {
            passes: 1,
            runs: 2,
            source: FlakySource::Reruns
        }
    );
}

#[test]
fn the_baseline_moves_to_the_newest_run_on_another_kernel() {
    let history = [
        run(1, "6.1.0").test("a", Pass).done(),
        run(2, "6.2.0").test("a", Pass).done(),
        run(3, "6.2.0").test("a", Pass).done(),
        // Not comparable or not usable: another provider, another profile,
        // errored, no tests, and a later run.
        run(4, "6.1.9").provider("aws").test("a", Pass).done(),
        run(5, "6.1.8")
            .label("profile", "raid")
            .test("a", Pass)
            .done(),
        run(6, "6.1.7")
            .status(RunStatus::Errored)
            .test("a", Pass)
            .done(),
        run(7, "6.1.6").done(),
        run(8, "6.3.0").test("a", Pass).done(),
        run(9, "6.1.5").test("a", Pass).done(),
    ];
    let baseline_of = |i: usize| {
        choose_baseline(&history[i], &history, None, BaselinePolicy::OtherKernel)
            .map(|b| b.run_id.as_str().to_owned())
    };
    assert_eq!(baseline_of(0), None);
    assert_eq!(baseline_of(1).as_deref(), Some("r01"));
    assert_eq!(baseline_of(2).as_deref(), Some("r01"), "same kernel as r02");
    assert_eq!(baseline_of(7).as_deref(), Some("r03"), "moved to 6.2");
    assert_eq!(baseline_of(8).as_deref(), Some("r08"));
    // The same kernel tested again, by the other policy: the previous run.
    let previous = choose_baseline(&history[2], &history, None, BaselinePolicy::PreviousRun);
    assert_eq!(previous.unwrap().run_id.as_str(), "r02");
    // A built kernel is told apart by its commit, not its release.
    let mut a = run(20, "6.2.0").test("a", Pass).done();
    let mut b = run(21, "6.2.0").test("a", Pass).done();
    for (report, commit) in [(&mut a, "aaaa"), (&mut b, "bbbb")] {
        report.provenance.kernel.source = Some(crate::SourceInfo {
            name: "kernel".into(),
            url: "x".into(),
            git_ref: None,
            commit: Some(commit.into()),
        });
    }
    let pair = [a, b];
    assert_eq!(
        choose_baseline(&pair[1], &pair, None, BaselinePolicy::OtherKernel)
            .unwrap()
            .run_id
            .as_str(),
        "r20"
    );
}

#[test]
fn runs_of_a_kernel_matrix_compare_within_their_kernel_line() {
    // Two matrices, each of for-next and stable, one day apart.
    let history = [
        run(1, "6.18.0")
            .label("kernel", "for-next")
            .test("a", Pass)
            .done(),
        run(1, "6.12.9")
            .label("kernel", "stable")
            .test("a", Fail)
            .done(),
        run(2, "6.18.1")
            .label("kernel", "for-next")
            .test("a", Fail)
            .done(),
        run(2, "6.12.10")
            .label("kernel", "stable")
            .test("a", Fail)
            .done(),
    ];
    let baseline_of = |i: usize| {
        choose_baseline(&history[i], &history, None, BaselinePolicy::OtherKernel)
            .map(|b| b.provenance.kernel.release.clone().unwrap())
    };
    assert_eq!(
        baseline_of(2).as_deref(),
        Some("6.18.0"),
        "for-next against for-next"
    );
    assert_eq!(
        baseline_of(3).as_deref(),
        Some("6.12.9"),
        "stable against stable"
    );
    let comparison = classify(
        &history[3],
        choose_baseline(&history[3], &history, None, BaselinePolicy::OtherKernel),
        &history,
        &CompareOptions::default(),
    );
    assert_eq!(
        *class_of(&comparison, "a"),
        Class::StillFailing,
        "stable's failure is not new because for-next passed"
    );
}

#[test]
fn a_named_baseline_wins_by_id_or_by_label() {
    let history = [
        run(1, "6.1.0")
            .test("a", Fail)
            .label("baseline", "golden")
            .done(),
        run(2, "6.2.0").test("a", Pass).done(),
        run(3, "6.3.0").test("a", Pass).done(),
    ];
    let current = &history[2];
    let by_id = choose_baseline(current, &history, Some("r01"), BaselinePolicy::OtherKernel);
    assert_eq!(by_id.unwrap().run_id.as_str(), "r01");
    let by_label = choose_baseline(
        current,
        &history,
        Some("golden"),
        BaselinePolicy::OtherKernel,
    );
    assert_eq!(by_label.unwrap().run_id.as_str(), "r01");
    assert!(
        choose_baseline(current, &history, Some("nope"), BaselinePolicy::OtherKernel).is_none()
    );
    let comparison = classify(current, by_id, &history, &CompareOptions::default());
    assert_eq!(*class_of(&comparison, "a"), Class::Fixed);
}

#[test]
fn known_failures_are_expected_until_they_keep_passing() {
    let known = KnownFailure {
        kernel: Some(">=6.1,<6.9".into()),
        drop_after_passes: 3,
        ..KnownFailure::new("a", "bug 123")
    };
    let options = CompareOptions {
        known_failures: vec![known],
        ..CompareOptions::default()
    };
    // Failing as described: expected, not a regression.
    let history = [
        run(1, "6.1.0").test("a", Pass).done(),
        run(2, "6.2.0").test("a", Fail).done(),
    ];
    let comparison = judge(&history, &options);
    assert_eq!(
        *class_of(&comparison, "a"),
        Class::Expected {
            reason: "bug 123".into()
        }
    );
    assert_eq!(comparison.counts.expected, 1);
    assert!(!comparison.has_regressions());
    assert!(comparison.droppable.is_empty());

    // Outside the kernel range the expectation does not apply.
    let history = [
        run(1, "6.8.0").test("a", Pass).done(),
        run(2, "6.9.0-rc1").test("a", Fail).done(),
    ];
    assert_eq!(
        *class_of(&judge(&history, &options), "a"),
        Class::NewFailure
    );

    // Three passes in a row including this run: can be dropped, still in force.
    let history = [
        run(1, "6.1.0").test("a", Fail).done(),
        run(2, "6.2.0").test("a", Pass).done(),
        run(3, "6.3.0").test("a", Skip).done(),
        run(4, "6.4.0").test("a", Pass).done(),
        run(5, "6.5.0").test("a", Pass).done(),
    ];
    let comparison = judge(&history, &options);
    assert_eq!(
        comparison.droppable,
        [DroppableKnownFailure {
            index: 0,
            test: "a".into(),
            reason: "bug 123".into(),
            passes_in_a_row: 3,
            dropped: false,
        }]
    );

    // Having passed three times before, it no longer excuses a failure.
    let mut history = history.to_vec();
    history.push(run(6, "6.6.0").test("a", Fail).done());
    let comparison = judge(&history, &options);
    assert_eq!(*class_of(&comparison, "a"), Class::NewFailure);
    assert!(comparison.droppable.is_empty(), "the streak is broken now");
    // ... and with the next pass it is droppable and already dropped.
    history.pop();
    history.push(run(6, "6.6.0").test("a", Pass).done());
    let comparison = judge(&history, &options);
    assert!(comparison.droppable[0].dropped);
    assert_eq!(comparison.droppable[0].passes_in_a_row, 4);
}

#[test]
fn known_failures_match_suite_and_profile() {
    let report = run(1, "6.1.0").label("profile", "raid").done();
    let key = |suite: &str, profile: Option<&str>| TestKey {
        suite: suite.into(),
        profile: profile.map(Into::into),
        name: "btrfs/012".into(),
    };
    let mut known = KnownFailure::new("btrfs/012", "r");
    assert!(known.applies(&key("xfstests", None), &report));
    known.suite = Some("xfstests".into());
    assert!(!known.applies(&key("other", None), &report));
    known.profile = Some("compress".into());
    assert!(!known.applies(&key("xfstests", None), &report));
    assert!(known.applies(&key("xfstests", Some("compress")), &report));
    known.profile = Some("raid".into());
    assert!(
        known.applies(&key("xfstests", None), &report),
        "the run's profile label"
    );
    let mut unknown_kernel = report.clone();
    unknown_kernel.provenance.kernel.release = None;
    known.kernel = Some(">=6".into());
    assert!(known.applies(&key("xfstests", None), &report));
    assert!(!known.applies(&key("xfstests", None), &unknown_kernel));
}

#[test]
fn kernel_ranges_compare_release_numbers() {
    let range = KernelRange::parse(">=6.1, <6.9").unwrap();
    for (release, inside) in [
        ("6.1.0-13-amd64", true),
        ("6.1", true),
        ("6.8.12", true),
        ("6.0.19", false),
        ("6.9.0-rc1", false),
        ("6.10.0", false),
        ("5.15.0", false),
        ("garbage", false),
    ] {
        assert_eq!(range.contains(release), inside, "{release}");
    }
    assert!(KernelRange::parse("=6.6").unwrap().contains("6.6.0-test"));
    assert!(KernelRange::parse("6.6.30").unwrap().contains("6.6.30"));
    assert!(!KernelRange::parse("==6.6").unwrap().contains("6.6.1"));
    assert!(KernelRange::parse("<=6.6").unwrap().contains("6.6.0"));
    assert!(KernelRange::parse(">6.6").unwrap().contains("6.6.1"));
    assert!(
        KernelRange::parse("<5.15.100")
            .unwrap()
            .contains("5.15.99-x")
    );
    for bad in ["", ">=six", ">=6.1,", "~6.1", "6..1", "1.2.3.4.5"] {
        assert!(KernelRange::parse(bad).is_err(), "{bad:?} parsed");
    }
    let mut known = KnownFailure::new("a", "r");
    known.kernel = Some(">=6.x".into());
    assert_eq!(known.validate()[0].0, "kernel");
}

#[test]
fn profile_keys_use_the_label_or_the_suites() {
    let plain = run(1, "6.1").done();
    let labelled = run(2, "6.1").label("profile", "nightly").done();
    let mut two_suites = run(3, "6.1").done();
    two_suites.suites.insert(0, SuiteReport::new("t"));
    assert_eq!(ProfileKey::of(&plain).suites, ["s"]);
    assert_eq!(ProfileKey::of(&two_suites).suites, ["s", "t"]);
    assert_ne!(ProfileKey::of(&plain), ProfileKey::of(&two_suites));
    assert_eq!(
        ProfileKey::of(&labelled).profile.as_deref(),
        Some("nightly")
    );
    assert!(ProfileKey::of(&labelled).suites.is_empty());
}

#[test]
fn summaries_keep_what_matters_and_round_trip_in_the_report() {
    let history = [
        run(1, "6.1.0")
            .test("a", Pass)
            .test("b", Fail)
            .test("c", Pass)
            .done(),
        run(2, "6.2.0")
            .test("a", Fail)
            .test("b", Pass)
            .test("c", Pass)
            .test("d", Skip)
            .test("e", Pass)
            .done(),
    ];
    let comparison = judge(&history, &CompareOptions::default());
    let summary = comparison.summary(Some("https://example.org/runs/r02/".into()));
    assert_eq!(summary.regressions.len(), 1);
    let notable: Vec<&str> = summary.notable.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        notable,
        ["b"],
        "steady, new passing and skipped tests are left out"
    );

    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["run_id"], "r02");
    assert_eq!(json["baseline"], "r01");
    assert_eq!(json["counts"]["new_failure"], 1);
    assert_eq!(json["regressions"][0]["name"], "a");
    assert_eq!(json["regressions"][0]["kind"], "new-failure");
    assert_eq!(json["regressions"][0]["message"], "a said so");
    assert_eq!(json["dashboard_url"], "https://example.org/runs/r02/");

    let mut report = history[1].clone();
    report.comparison = Some(summary.clone());
    let back: RunReport = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(back.comparison.as_ref(), Some(&summary));
    let key = |name: &str| TestKey {
        suite: "s".into(),
        profile: None,
        name: name.into(),
    };
    assert_eq!(
        summary.class_of(&report, &key("a")),
        Some(Class::NewFailure)
    );
    assert_eq!(summary.class_of(&report, &key("c")), Some(Class::Pass));
    assert_eq!(summary.class_of(&report, &key("zz")), None);

    // A flaky class keeps its ratio through JSON.
    let flaky = TestComparison {
        class: Class::Flaky {
            passes: 1,
            runs: 3,
            source: FlakySource::Reruns,
        },
        ..summary.regressions[0].clone()
    };
    let json = serde_json::to_value(&flaky).unwrap();
    assert_eq!(
        (&json["kind"], &json["passes"], &json["source"]),
        (&"flaky".into(), &1.into(), &"reruns".into())
    );
    assert_eq!(
        serde_json::from_value::<TestComparison>(json).unwrap(),
        flaky
    );
}

#[test]
fn a_report_without_the_new_fields_still_reads() {
    let report = run(1, "6.1.0").test("a", Pass).done();
    let json = serde_json::to_string(&report).unwrap();
    assert!(
        !json.contains("reruns") && !json.contains("comparison"),
        "{json}"
    );
    let back: RunReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn test_history_lists_every_run_oldest_first() {
    let history = [
        run(3, "6.3.0").test("a", Fail).reruns("a", &[Pass]).done(),
        run(1, "6.1.0").test("a", Pass).test("b", Pass).done(),
        run(2, "6.2.0")
            .label("profile", "raid")
            .test("a", Fail)
            .done(),
    ];
    let filter = TestFilter {
        name: "a".into(),
        ..TestFilter::default()
    };
    let entries = test_history(&history, &filter);
    let ids: Vec<&str> = entries.iter().map(|e| e.run_id.as_str()).collect();
    assert_eq!(ids, ["r01", "r02", "r03"]);
    assert_eq!(entries[2].reruns, [Pass]);
    assert_eq!(entries[0].kernel.as_deref(), Some("6.1.0"));
    // pass | fail | fail, pass
    assert_eq!(history_stats(&entries), (2, 2, 2));
    let raid = TestFilter {
        profile: Some("raid".into()),
        ..filter.clone()
    };
    assert_eq!(test_history(&history, &raid).len(), 1);
    let other_suite = TestFilter {
        suite: Some("t".into()),
        ..filter
    };
    assert!(test_history(&history, &other_suite).is_empty());
}
