//! Handing tests out to machines.
//!
//! A sharded run pulls work: whenever a machine is idle it takes the next
//! test from a queue sorted longest-first by recorded duration (the LPT rule),
//! so one slow machine or one long test cannot hold the run. [`simulate`]
//! plays that out on estimated durations to predict the makespan (what
//! `btrfsqa plan` prints); [`round_robin`] and [`in_order`] are the naive
//! strategies the benchmark compares against.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// One unit of work: a test under a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    /// `suite/profile/test` or any unique name.
    pub id: String,
    /// Estimated duration in seconds.
    pub estimate_secs: f64,
}

/// Who runs what, and when it is predicted to end.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Per machine, the items in the order it runs them.
    pub machines: Vec<Vec<WorkItem>>,
    /// Per machine, its predicted busy time.
    pub busy_secs: Vec<f64>,
}

impl Plan {
    /// The predicted end of the run: the busiest machine's time.
    pub fn makespan(&self) -> f64 {
        self.busy_secs.iter().copied().fold(0.0, f64::max)
    }
}

/// `max(longest item, total / shards)`: no schedule can beat it.
pub fn lower_bound(items: &[WorkItem], shards: usize) -> f64 {
    let total: f64 = items.iter().map(|i| i.estimate_secs).sum();
    let longest = items.iter().map(|i| i.estimate_secs).fold(0.0, f64::max);
    longest.max(total / shards.max(1) as f64)
}

/// Estimates for `tests`: the recorded duration where there is one, else the
/// median of the recorded ones (or `default_secs` with no history at all).
pub fn estimate(
    tests: &[String],
    history: &BTreeMap<String, f64>,
    default_secs: f64,
) -> Vec<WorkItem> {
    let mut known: Vec<f64> = history
        .values()
        .copied()
        .filter(|d| d.is_finite())
        .collect();
    known.sort_by(f64::total_cmp);
    let fallback = known.get(known.len() / 2).copied().unwrap_or(default_secs);
    tests
        .iter()
        .map(|test| WorkItem {
            id: test.clone(),
            estimate_secs: history.get(test).copied().unwrap_or(fallback),
        })
        .collect()
}

/// Longest-first, pulled by whichever machine is idle first.
pub fn longest_first(items: &[WorkItem], shards: usize) -> Plan {
    let mut sorted = items.to_vec();
    // Ties broken by name so a plan is reproducible.
    sorted.sort_by(|a, b| {
        b.estimate_secs
            .total_cmp(&a.estimate_secs)
            .then_with(|| a.id.cmp(&b.id))
    });
    pull(&sorted, shards)
}

/// The queue in the given order (fstests' own, alphabetical), pulled by
/// whichever machine is idle first.
pub fn in_order(items: &[WorkItem], shards: usize) -> Plan {
    pull(items, shards)
}

/// Item `i` to machine `i % shards`, decided up front.
pub fn round_robin(items: &[WorkItem], shards: usize) -> Plan {
    let shards = shards.max(1);
    let mut plan = Plan {
        machines: vec![Vec::new(); shards],
        busy_secs: vec![0.0; shards],
    };
    for (i, item) in items.iter().enumerate() {
        plan.machines[i % shards].push(item.clone());
        plan.busy_secs[i % shards] += item.estimate_secs;
    }
    plan
}

/// Simulates idle machines pulling from `queue`.
fn pull(queue: &[WorkItem], shards: usize) -> Plan {
    let shards = shards.max(1);
    let mut plan = Plan {
        machines: vec![Vec::new(); shards],
        busy_secs: vec![0.0; shards],
    };
    // Min-heap on (time the machine becomes idle, machine index).
    let mut idle: BinaryHeap<Reverse<(OrderedSecs, usize)>> = (0..shards)
        .map(|m| Reverse((OrderedSecs(0.0), m)))
        .collect();
    for item in queue {
        let Reverse((OrderedSecs(free_at), machine)) = idle.pop().expect("at least one machine");
        let done = free_at + item.estimate_secs;
        plan.machines[machine].push(item.clone());
        plan.busy_secs[machine] = done;
        idle.push(Reverse((OrderedSecs(done), machine)));
    }
    plan
}

/// `suite/test` → the duration of its newest recorded outcome in `store`.
pub fn history_durations(store: &btrfsqa_model::ResultsStore) -> BTreeMap<String, f64> {
    let mut durations = BTreeMap::new();
    if let Ok((reports, _)) = store.load_all() {
        // Oldest first, so newer durations overwrite older ones.
        for report in &reports {
            for outcome in report.outcomes() {
                if let Some(secs) = outcome.duration_secs {
                    durations.insert(format!("{}/{}", outcome.suite, outcome.name), secs);
                }
            }
        }
    }
    durations
}

/// How much longer than its last run a test may take before it counts as
/// hung, when its suite configures no timeout.
pub const DERIVED_TIMEOUT_FACTOR: f64 = 10.0;
/// The shortest timeout derived from history.
pub const DERIVED_TIMEOUT_MIN: std::time::Duration = std::time::Duration::from_secs(300);

/// `suite/test` → a timeout from its history: ten times the duration of its
/// newest outcome that finished on its own (pass, fail, skip), at least five
/// minutes. Hung and crashed attempts do not count: their durations are the
/// timeouts themselves.
pub fn derived_timeouts(
    store: &btrfsqa_model::ResultsStore,
) -> std::collections::HashMap<String, std::time::Duration> {
    use btrfsqa_model::Verdict;
    let mut timeouts = std::collections::HashMap::new();
    if let Ok((reports, _)) = store.load_all() {
        for report in &reports {
            for outcome in report.outcomes() {
                if let (Some(secs), Verdict::Pass | Verdict::Fail | Verdict::Skip) =
                    (outcome.duration_secs, outcome.verdict)
                    && secs.is_finite()
                    && secs >= 0.0
                {
                    let derived = std::time::Duration::from_secs_f64(
                        (secs * DERIVED_TIMEOUT_FACTOR).min(1e9),
                    )
                    .max(DERIVED_TIMEOUT_MIN);
                    timeouts.insert(format!("{}/{}", outcome.suite, outcome.name), derived);
                }
            }
        }
    }
    timeouts
}

/// One unit of a sharded run: a test of suite `suite` (an index into the
/// run's suites), or the whole suite when it cannot list its tests.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteWork {
    /// Index of the suite in the run's suite list.
    pub suite: usize,
    /// The test, or `None` for the whole suite.
    pub test: Option<String>,
    /// Estimated duration in seconds.
    pub estimate_secs: f64,
}

/// The work list of a sharded run, longest first: every test of the suites
/// that list theirs (less those `finished` names for that suite id), with
/// its recorded duration or the median; one item per suite that cannot list
/// its tests, estimated as the sum of its recorded tests (an hour if none).
pub fn suite_work(
    suites: &[std::sync::Arc<dyn btrfsqa_suites::TestSuite>],
    history: &BTreeMap<String, f64>,
    finished: &dyn Fn(&str) -> Vec<String>,
) -> Vec<SuiteWork> {
    let mut items = Vec::new();
    for (index, suite) in suites.iter().enumerate() {
        let id = suite.id();
        match suite.tests() {
            Some(tests) => {
                let done = finished(id);
                let tests: Vec<String> = tests.into_iter().filter(|t| !done.contains(t)).collect();
                let keys: Vec<String> = tests.iter().map(|t| format!("{id}/{t}")).collect();
                for (test, estimate) in tests.into_iter().zip(estimate(&keys, history, 60.0)) {
                    items.push(SuiteWork {
                        suite: index,
                        test: Some(test),
                        estimate_secs: estimate.estimate_secs,
                    });
                }
            }
            None => {
                let prefix = format!("{id}/");
                let total: f64 = history
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, d)| d)
                    .sum();
                items.push(SuiteWork {
                    suite: index,
                    test: None,
                    estimate_secs: if total > 0.0 { total } else { 3600.0 },
                });
            }
        }
    }
    items.sort_by(|a, b| b.estimate_secs.total_cmp(&a.estimate_secs));
    items
}

/// Simulates the strategy a real run uses: [`longest_first`].
pub fn simulate(items: &[WorkItem], shards: usize) -> Plan {
    longest_first(items, shards)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct OrderedSecs(f64);

impl Eq for OrderedSecs {}

impl PartialOrd for OrderedSecs {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedSecs {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(durations: &[f64]) -> Vec<WorkItem> {
        durations
            .iter()
            .enumerate()
            .map(|(i, d)| WorkItem {
                id: format!("t{i:03}"),
                estimate_secs: *d,
            })
            .collect()
    }

    #[test]
    fn every_item_runs_exactly_once() {
        let work = items(&[5.0, 1.0, 9.0, 3.0, 3.0, 7.0, 2.0]);
        for shards in 1..=9 {
            for plan in [
                longest_first(&work, shards),
                round_robin(&work, shards),
                in_order(&work, shards),
            ] {
                let mut ids: Vec<_> = plan
                    .machines
                    .iter()
                    .flatten()
                    .map(|i| i.id.clone())
                    .collect();
                ids.sort();
                assert_eq!(ids.len(), work.len());
                ids.dedup();
                assert_eq!(ids.len(), work.len());
            }
        }
    }

    #[test]
    fn longest_first_beats_naive_orders_on_a_skewed_list() {
        // One long test at the end of the alphabet: the classic trap.
        let mut durations = vec![10.0; 20];
        durations.push(100.0);
        let work = items(&durations);
        let lpt = longest_first(&work, 3).makespan();
        assert!(lpt <= lower_bound(&work, 3) * 1.10, "{lpt}");
        assert!(in_order(&work, 3).makespan() > lpt);
        assert!(round_robin(&work, 3).makespan() > lpt);
    }

    #[test]
    fn one_shard_is_the_sum_and_many_shards_the_longest() {
        let work = items(&[4.0, 6.0, 1.0]);
        assert_eq!(longest_first(&work, 1).makespan(), 11.0);
        assert_eq!(longest_first(&work, 10).makespan(), 6.0);
        assert_eq!(lower_bound(&work, 10), 6.0);
    }

    #[test]
    fn unknown_tests_get_the_median_estimate() {
        let history = BTreeMap::from([
            ("a".to_owned(), 1.0),
            ("b".to_owned(), 5.0),
            ("c".to_owned(), 9.0),
        ]);
        let est = estimate(&["a".into(), "new".into()], &history, 60.0);
        assert_eq!(est[0].estimate_secs, 1.0);
        assert_eq!(est[1].estimate_secs, 5.0);
        assert_eq!(
            estimate(&["x".into()], &BTreeMap::new(), 60.0)[0].estimate_secs,
            60.0
        );
    }
}

#[cfg(test)]
mod derived_timeout_tests {
    use super::*;
    use btrfsqa_model::{
        Provenance, ResultsStore, RunId, RunReport, SuiteReport, TestOutcome, Verdict,
    };
    use std::time::Duration;

    fn store_run(store: &ResultsStore, id: &str, minute: u32, tests: &[(&str, Verdict, f64)]) {
        let started =
            chrono::DateTime::parse_from_rfc3339(&format!("2026-11-20T10:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&chrono::Utc);
        let run_id = RunId::parse(id).unwrap();
        store.create_run(&run_id).unwrap();
        let mut report = RunReport::start(run_id, started, Provenance::default());
        let mut suite = SuiteReport::new("smoke");
        for (name, verdict, secs) in tests {
            let mut outcome = TestOutcome::new("smoke", *name, *verdict);
            outcome.duration_secs = Some(*secs);
            suite.tests.push(outcome);
        }
        report.suites.push(suite);
        store.write_report(&report).unwrap();
    }

    #[test]
    fn ten_times_the_last_finished_duration_and_at_least_five_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultsStore::new(dir.path());
        store_run(
            &store,
            "run-a",
            0,
            &[
                ("001_long", Verdict::Pass, 100.0),
                ("002_short", Verdict::Pass, 2.0),
            ],
        );
        // The newer run: 001_long got faster; 002_short hung (its duration
        // is the old timeout and must not count); 003_new only now.
        store_run(
            &store,
            "run-b",
            5,
            &[
                ("001_long", Verdict::Fail, 60.0),
                ("002_short", Verdict::Hung, 300.0),
                ("003_new", Verdict::Skip, 0.1),
            ],
        );
        let timeouts = derived_timeouts(&store);
        assert_eq!(timeouts["smoke/001_long"], Duration::from_secs(600));
        assert_eq!(timeouts["smoke/002_short"], DERIVED_TIMEOUT_MIN);
        assert_eq!(timeouts["smoke/003_new"], DERIVED_TIMEOUT_MIN);
        assert!(!timeouts.contains_key("smoke/004_never"));
    }
}
