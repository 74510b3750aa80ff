//! A run's per-machine timeline: which test ran where and when, so a
//! machine's idle time shows (plain HTML boxes placed in percent of the
//! run's span; no script).

use std::collections::BTreeMap;

use btrfsqa_model::RunReport;
use serde::Serialize;

use super::summary::test_anchor;

/// The timeline of a run whose tests say when and where they ran.
#[derive(Debug, Serialize)]
pub(crate) struct TimelineView {
    /// One lane per machine, in name order.
    pub lanes: Vec<LaneView>,
    /// How long the span drawn is, e.g. `3 min 20 s`.
    pub span: String,
}

/// One machine's lane.
#[derive(Debug, Serialize)]
pub(crate) struct LaneView {
    pub machine: String,
    /// Share of the span the machine ran tests, `87 %`.
    pub busy: String,
    pub tests: usize,
    pub bars: Vec<BarView>,
}

/// One test on a lane.
#[derive(Debug, Serialize)]
pub(crate) struct BarView {
    /// The test's row on the page.
    pub anchor: String,
    /// `suite/test [profile]: verdict, N s` (shown on hover).
    pub title: String,
    pub verdict: &'static str,
    /// Position and width in percent of the span (`12.500%`).
    pub left: String,
    pub width: String,
}

/// The timeline of `report`, or `None` when no test says both when it
/// started and on which machine it ran.
pub(crate) fn view(report: &RunReport) -> Option<TimelineView> {
    struct Run {
        anchor: String,
        title: String,
        verdict: &'static str,
        start: f64,
        secs: f64,
    }
    let mut lanes: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for (i, suite) in report.suites.iter().enumerate() {
        for (j, test) in suite.tests.iter().enumerate() {
            let (Some(machine), Some(started)) = (test.machine.as_deref(), test.started_at) else {
                continue;
            };
            let secs = test
                .duration_secs
                .filter(|d| d.is_finite() && *d >= 0.0)
                .unwrap_or(0.0);
            let start = (started - report.started_at).num_milliseconds() as f64 / 1000.0;
            if !start.is_finite() || start < 0.0 {
                continue;
            }
            let mut title = format!("{}/{}", suite.id, test.name);
            if let Some(profile) = &test.profile {
                title.push_str(&format!(" [{profile}]"));
            }
            title.push_str(&format!(": {}, {secs:.0} s", test.verdict.as_str()));
            lanes.entry(machine).or_default().push(Run {
                anchor: test_anchor(i, j),
                title,
                verdict: test.verdict.as_str(),
                start,
                secs,
            });
        }
    }
    let end = lanes
        .values()
        .flatten()
        .map(|r| r.start + r.secs)
        .fold(0.0, f64::max)
        .max(report.duration_secs().unwrap_or(0.0));
    if lanes.is_empty() || end <= 0.0 {
        return None;
    }
    let percent = |secs: f64| format!("{:.3}%", (secs / end * 100.0).clamp(0.0, 100.0));
    Some(TimelineView {
        span: super::format::human_duration(end).unwrap_or_else(|| format!("{end:.0} s")),
        lanes: lanes
            .into_iter()
            .map(|(machine, runs)| {
                let busy: f64 = runs.iter().map(|r| r.secs).sum();
                LaneView {
                    machine: machine.to_owned(),
                    busy: format!("{:.0} %", (busy / end * 100.0).min(100.0)),
                    tests: runs.len(),
                    bars: runs
                        .into_iter()
                        .map(|r| BarView {
                            left: percent(r.start),
                            // A test of no measurable length still shows.
                            width: percent(r.secs.max(end / 1000.0)),
                            anchor: r.anchor,
                            title: r.title,
                            verdict: r.verdict,
                        })
                        .collect(),
                }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::{Provenance, RunId, SuiteReport, TestOutcome, Verdict};
    use chrono::{Duration, TimeZone, Utc};

    #[test]
    fn each_machine_gets_a_lane_of_its_tests_placed_in_time() {
        let start = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap();
        let mut report =
            RunReport::start(RunId::parse("run-t").unwrap(), start, Provenance::default());
        let mut suite = SuiteReport::new("xfstests");
        for (name, machine, at, secs, verdict) in [
            ("btrfs/001", "local-0", 0, 50.0, Verdict::Pass),
            ("btrfs/002", "local-1", 10, 40.0, Verdict::Fail),
            ("btrfs/003", "local-0", 50, 50.0, Verdict::Pass),
        ] {
            let mut t = TestOutcome::new("xfstests", name, verdict);
            t.machine = Some(machine.into());
            t.started_at = Some(start + Duration::seconds(at));
            t.duration_secs = Some(secs);
            suite.tests.push(t);
        }
        // A test without a time is left out.
        suite
            .tests
            .push(TestOutcome::new("xfstests", "btrfs/004", Verdict::Skip));
        report.suites.push(suite);
        let view = view(&report).expect("a timeline");
        assert_eq!(view.lanes.len(), 2);
        let lane = &view.lanes[0];
        assert_eq!((lane.machine.as_str(), lane.tests), ("local-0", 2));
        assert_eq!(lane.busy, "100 %");
        assert_eq!(lane.bars[1].left, "50.000%");
        assert_eq!(lane.bars[1].width, "50.000%");
        assert_eq!(lane.bars[1].anchor, "t-0-2");
        let other = &view.lanes[1];
        assert_eq!(other.busy, "40 %");
        assert_eq!(other.bars[0].verdict, "fail");
        assert!(other.bars[0].title.starts_with("xfstests/btrfs/002: fail"));
        let mut empty = report.clone();
        empty.suites.clear();
        assert!(super::view(&empty).is_none());
    }
}
