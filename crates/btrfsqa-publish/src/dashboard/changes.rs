//! What changed in a run, for the top of its page: new failures, fixes and
//! flaky tests.
//!
//! The runner's comparison with the baseline decides when the report has
//! one (it knows the baseline policy, known failures and reruns). Without
//! it, the dashboard's own reckoning compares each test with the last
//! earlier run that gave it a pass or a failure, as the matrix does: a run
//! page reckoned this way is written with the runs known when it was
//! written.
//!
//! Pure: a run's summary and the earlier summaries in, lists out.

use std::collections::HashMap;

use btrfsqa_model::Verdict;
use btrfsqa_model::compare::{Class, CompareOptions, ComparisonSummary};
use serde::Serialize;

use super::summary::{Anchor, RunSummary, TestEntry, is_failing};

/// One test in a list of changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Changed<'a> {
    pub suite: &'a str,
    pub name: &'a str,
    pub profile: Option<&'a str>,
    pub verdict: &'static str,
    /// Its row on the run page.
    pub anchor: Anchor,
    /// `2 of 5 passed` for a flaky test, when known.
    pub note: Option<String>,
}

/// What changed in a run.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Changes<'a> {
    /// `runner`: the runner's comparison with `baseline`; `history`: the
    /// dashboard's reckoning against earlier runs; `none`: nothing earlier.
    pub source: &'static str,
    pub baseline: Option<String>,
    pub new_failures: Vec<Changed<'a>>,
    pub fixed: Vec<Changed<'a>>,
    pub flaky: Vec<Changed<'a>>,
    /// Failing now and before: counted, not listed (the list below has them).
    pub still_failing: u32,
    /// Tests far slower than their history (the runner's comparison only).
    pub slower: Vec<Slower<'a>>,
}

/// A test far slower than it used to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Slower<'a> {
    pub suite: &'a str,
    pub name: &'a str,
    pub profile: Option<&'a str>,
    /// Its row on the run page.
    pub anchor: Anchor,
    /// `95 s, usually 30 s (median of 7)`.
    pub note: String,
}

impl Changes<'_> {
    /// Whether anything is listed.
    pub fn is_empty(&self) -> bool {
        self.new_failures.is_empty()
            && self.fixed.is_empty()
            && self.flaky.is_empty()
            && self.slower.is_empty()
    }
}

type Key<'a> = (&'a str, Option<&'a str>, &'a str);

fn key(test: &TestEntry) -> Key<'_> {
    (&*test.suite, test.profile.as_deref(), test.name.as_str())
}

fn changed<'a>(test: &'a TestEntry, note: Option<String>) -> Changed<'a> {
    Changed {
        suite: &test.suite,
        name: &test.name,
        profile: test.profile.as_deref(),
        verdict: test.verdict.as_str(),
        anchor: test.anchor,
        note,
    }
}

/// What changed in `run`: from `comparison` when the runner compared the
/// run, else against `earlier` (the runs that started before it, newest
/// first).
pub(crate) fn of<'a>(
    run: &'a RunSummary,
    comparison: Option<&ComparisonSummary>,
    earlier: &[&RunSummary],
) -> Changes<'a> {
    match comparison {
        Some(comparison) => from_comparison(run, comparison),
        None => reckoned(run, earlier),
    }
}

fn from_comparison<'a>(run: &'a RunSummary, comparison: &ComparisonSummary) -> Changes<'a> {
    let tests: HashMap<Key<'_>, &TestEntry> = run.tests.iter().rev().map(|t| (key(t), t)).collect();
    let mut changes = Changes {
        source: "runner",
        baseline: comparison.baseline.as_ref().map(|b| b.as_str().to_owned()),
        still_failing: comparison.counts.still_failing,
        ..Changes::default()
    };
    for compared in comparison.regressions.iter().chain(&comparison.notable) {
        let Some(test) = tests.get(&(
            compared.suite.as_str(),
            compared.profile.as_deref(),
            compared.name.as_str(),
        )) else {
            continue;
        };
        match &compared.class {
            Class::NewFailure => changes.new_failures.push(changed(test, None)),
            Class::Fixed => changes.fixed.push(changed(test, None)),
            Class::Flaky { passes, runs, .. } => changes
                .flaky
                .push(changed(test, Some(format!("{passes} of {runs} passed")))),
            _ => {}
        }
    }
    for slow in &comparison.slower {
        let Some(test) = tests.get(&(
            slow.suite.as_str(),
            slow.profile.as_deref(),
            slow.name.as_str(),
        )) else {
            continue;
        };
        changes.slower.push(Slower {
            suite: &test.suite,
            name: &test.name,
            profile: test.profile.as_deref(),
            anchor: test.anchor,
            note: format!(
                "{:.0} s, usually {:.0} s (median of {})",
                slow.secs, slow.median_secs, slow.samples
            ),
        });
    }
    changes
}

fn reckoned<'a>(run: &'a RunSummary, earlier: &[&RunSummary]) -> Changes<'a> {
    let mut changes = Changes {
        source: if earlier.is_empty() {
            "none"
        } else {
            "history"
        },
        baseline: earlier.first().map(|r| r.run_id.as_str().to_owned()),
        ..Changes::default()
    };
    let options = CompareOptions::default();
    // Each test's pass and fail verdicts in the window, newest first.
    let window = &earlier[..earlier.len().min(options.flaky_window)];
    let mut before: HashMap<Key<'_>, Vec<Verdict>> = HashMap::new();
    for past in window {
        for test in &past.tests {
            if test.verdict == Verdict::Pass || is_failing(test.verdict) {
                before.entry(key(test)).or_default().push(test.verdict);
            }
        }
    }
    for test in &run.tests {
        let now = test.verdict;
        if now != Verdict::Pass && !is_failing(now) {
            continue;
        }
        let past = before.get(&key(test)).map(Vec::as_slice).unwrap_or(&[]);
        let flips = std::iter::once(now)
            .chain(past.iter().copied())
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| (w[0] == Verdict::Pass) != (w[1] == Verdict::Pass))
            .count();
        let last = past.first().copied();
        if flips >= options.flaky_min_flips as usize {
            let runs = past.len() + 1;
            let passes = past.iter().filter(|v| **v == Verdict::Pass).count()
                + usize::from(now == Verdict::Pass);
            changes
                .flaky
                .push(changed(test, Some(format!("{passes} of {runs} passed"))));
        } else if is_failing(now) && last == Some(Verdict::Pass) {
            changes.new_failures.push(changed(test, None));
        } else if now == Verdict::Pass && last.is_some_and(is_failing) {
            changes.fixed.push(changed(test, None));
        } else if is_failing(now) && last.is_some_and(is_failing) {
            changes.still_failing += 1;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::compare::{ClassCounts, FlakySource, TestComparison};
    use btrfsqa_model::{Counts, RunId, RunStatus};

    fn run(id: &str, verdicts: &[(&str, Verdict)]) -> RunSummary {
        RunSummary {
            format: super::super::summary::SUMMARY_FORMAT,
            run_id: RunId::parse(id).unwrap(),
            started_at: "2026-11-24T10:00:00Z".parse().unwrap(),
            finished_at: None,
            status: RunStatus::Completed,
            kernel_release: None,
            kernel_commit: None,
            kernel_ref: None,
            kernel_name: None,
            matrix: None,
            provider: String::new(),
            machines: vec![],
            profiles: vec![],
            counts: Counts::default(),
            new_failures: None,
            baseline: None,
            cost_usd: None,
            has_page: true,
            tests_read: true,
            tests: verdicts
                .iter()
                .enumerate()
                .map(|(j, (name, verdict))| TestEntry {
                    suite: "s".into(),
                    name: (*name).into(),
                    profile: None,
                    verdict: *verdict,
                    duration_secs: None,
                    message: None,
                    anchor: Anchor(0, j),
                    class: None,
                })
                .collect(),
        }
    }

    fn names<'a>(list: &[Changed<'a>]) -> Vec<&'a str> {
        list.iter().map(|c| c.name).collect()
    }

    #[test]
    fn the_dashboard_reckons_changes_against_earlier_runs() {
        use Verdict::*;
        let oldest = run("r0", &[("broke", Pass), ("fixed", Pass), ("flaky", Pass)]);
        let older = run("r1", &[("broke", Pass), ("fixed", Fail), ("flaky", Fail)]);
        let previous = run(
            "r2",
            &[
                ("broke", Pass),
                ("fixed", Fail),
                ("flaky", Pass),
                ("still", Fail),
            ],
        );
        let now = run(
            "r3",
            &[
                ("broke", Fail),
                ("fixed", Pass),
                ("flaky", Fail),
                ("still", Fail),
                ("skipped", Skip),
            ],
        );
        let changes = of(&now, None, &[&previous, &older, &oldest]);
        assert_eq!(changes.source, "history");
        assert_eq!(changes.baseline.as_deref(), Some("r2"));
        assert_eq!(names(&changes.new_failures), ["broke"]);
        assert_eq!(changes.new_failures[0].anchor, Anchor(0, 0));
        assert_eq!(names(&changes.fixed), ["fixed"]);
        assert_eq!(names(&changes.flaky), ["flaky"]);
        assert_eq!(changes.flaky[0].note.as_deref(), Some("2 of 4 passed"));
        assert_eq!(changes.still_failing, 1);
        let first = of(&older, None, &[]);
        assert_eq!(first.source, "none");
        assert!(first.is_empty());
    }

    #[test]
    fn the_runners_comparison_decides_when_there_is_one() {
        use Verdict::*;
        let now = run("r3", &[("broke", Fail), ("fixed", Pass), ("flaky", Fail)]);
        let compared = |name: &str, class| TestComparison {
            suite: "s".into(),
            profile: None,
            name: name.into(),
            class,
            verdict: None,
            baseline_verdict: None,
            attempts: vec![],
            message: None,
        };
        let comparison = ComparisonSummary {
            run_id: now.run_id.clone(),
            baseline: Some(RunId::parse("base").unwrap()),
            counts: ClassCounts {
                still_failing: 3,
                ..ClassCounts::default()
            },
            regressions: vec![compared("broke", Class::NewFailure)],
            notable: vec![
                compared("fixed", Class::Fixed),
                compared(
                    "flaky",
                    Class::Flaky {
                        passes: 2,
                        runs: 3,
                        source: FlakySource::Reruns,
                    },
                ),
                compared("gone", Class::Gone),
            ],
            droppable: vec![],
            slower: vec![btrfsqa_model::compare::Slowdown {
                suite: "s".into(),
                profile: None,
                name: "fixed".into(),
                secs: 95.0,
                median_secs: 30.2,
                threshold_secs: 42.0,
                samples: 7,
            }],
            dashboard_url: None,
        };
        let changes = of(&now, Some(&comparison), &[]);
        assert_eq!(changes.slower[0].name, "fixed");
        assert_eq!(changes.slower[0].note, "95 s, usually 30 s (median of 7)");
        assert_eq!(changes.source, "runner");
        assert_eq!(changes.baseline.as_deref(), Some("base"));
        assert_eq!(names(&changes.new_failures), ["broke"]);
        assert_eq!(names(&changes.fixed), ["fixed"]);
        assert_eq!(changes.flaky[0].note.as_deref(), Some("2 of 3 passed"));
        assert_eq!(changes.still_failing, 3);
    }
}
