//! Handing tests out to machines.
//!
//! A run pulls work: whenever a machine is free it takes the next batch from
//! a [`Queue`] sorted longest-first by recorded duration (the LPT rule), so
//! one slow machine or one long test cannot hold the run. A batch is the
//! head of the queue plus the next items of the same suite and profile, up
//! to a share of the predicted time left ([`batch_target`]): large batches
//! early pay a suite's per-invocation set-up once for many tests, small ones
//! late keep the tail short. [`simulate`] plays the same queue out on
//! estimated durations to predict the makespan (what `btrfsqa plan` prints
//! and the benchmark measures); [`round_robin`] and [`in_order`] are the
//! naive strategies the benchmark compares against.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use btrfsqa_model::{ResultsStore, TestOutcome};

/// How many batches per machine the time left is split into: a batch is at
/// most `1 / (BATCH_SPREAD x machines)` of the predicted time left.
pub const BATCH_SPREAD: f64 = 2.0;

/// One unit of work: a test under a profile, or a whole suite that cannot
/// list its tests.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    /// The suite's id.
    pub suite: String,
    /// The profile (fstests section), for suites with profiles.
    pub profile: Option<String>,
    /// The test; `None` for the whole suite.
    pub test: Option<String>,
    /// Estimated duration in seconds.
    pub estimate_secs: f64,
    /// What a batch holding it costs once besides its tests, in seconds
    /// (its suite's [`TestList::batch_setup_ms`](btrfsqa_suites::TestList::batch_setup_ms)).
    pub setup_secs: f64,
    /// It changes state the whole kernel shares: on machines that share one
    /// kernel it runs while nothing else runs.
    pub exclusive: bool,
}

impl WorkItem {
    /// A test of `suite` without a profile.
    pub fn test(suite: &str, test: &str, estimate_secs: f64) -> Self {
        WorkItem {
            suite: suite.to_owned(),
            profile: None,
            test: Some(test.to_owned()),
            estimate_secs,
            setup_secs: btrfsqa_suites::DEFAULT_BATCH_SETUP_MS as f64 / 1000.0,
            exclusive: false,
        }
    }

    /// `suite/test [profile]`, or `suite (whole suite)`.
    pub fn label(&self) -> String {
        let mut label = match &self.test {
            Some(test) => format!("{}/{test}", self.suite),
            None => format!("{} (whole suite)", self.suite),
        };
        if let Some(profile) = &self.profile {
            label.push_str(&format!(" [{profile}]"));
        }
        label
    }

    /// Whether `other` can run in the same suite invocation as this one.
    pub fn batches_with(&self, other: &WorkItem) -> bool {
        self.suite == other.suite
            && self.profile == other.profile
            && self.test.is_some()
            && other.test.is_some()
            && self.exclusive == other.exclusive
    }
}

/// Who runs what, and when it is predicted to end.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Per machine, the items in the order it runs them.
    pub machines: Vec<Vec<WorkItem>>,
    /// Per machine, its predicted busy time (set-up included).
    pub busy_secs: Vec<f64>,
    /// Per machine, how many batches it runs.
    pub batches: Vec<usize>,
}

impl Plan {
    fn empty(shards: usize) -> Plan {
        Plan {
            machines: vec![Vec::new(); shards],
            busy_secs: vec![0.0; shards],
            batches: vec![0; shards],
        }
    }

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

/// A batch is at least this many times its suite's set-up, so set-up
/// stays a small share of a machine's time.
pub const MIN_BATCH_SETUPS: f64 = 5.0;

/// The predicted time one batch should take when `machines` machines pull
/// from a queue of `remaining_secs`, for a suite whose every invocation
/// costs `setup_secs`: a share of the time left, so the tail is short, but
/// never so small that set-up dominates. One machine takes all at once.
pub fn batch_target(remaining_secs: f64, machines: usize, setup_secs: f64) -> f64 {
    if machines <= 1 {
        return f64::INFINITY;
    }
    (remaining_secs / (BATCH_SPREAD * machines as f64)).max(MIN_BATCH_SETUPS * setup_secs)
}

/// The work not yet handed out, longest first.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    items: Vec<WorkItem>,
}

impl Queue {
    /// A queue of `items`, longest first (ties in the order given: the
    /// suites' own order).
    pub fn new(items: Vec<WorkItem>) -> Queue {
        let mut queue = Queue { items: Vec::new() };
        queue.push(items);
        queue
    }

    /// Puts items (back) in their place.
    pub fn push(&mut self, items: Vec<WorkItem>) {
        self.items.extend(items);
        // Stable: equal estimates keep their order.
        self.items
            .sort_by(|a, b| b.estimate_secs.total_cmp(&a.estimate_secs));
    }

    /// Puts items handed out before back, ahead of the items of equal
    /// estimates that were never handed out: they were due first.
    pub fn push_back_first(&mut self, mut items: Vec<WorkItem>) {
        items.append(&mut self.items);
        self.items = items;
        self.items
            .sort_by(|a, b| b.estimate_secs.total_cmp(&a.estimate_secs));
    }

    /// How many items are left.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items left, longest first.
    pub fn items(&self) -> &[WorkItem] {
        &self.items
    }

    /// The predicted time of everything left.
    pub fn remaining_secs(&self) -> f64 {
        self.items.iter().map(|i| i.estimate_secs).sum()
    }

    /// The next batch for a machine that may run the items `eligible`
    /// accepts, with `machines` machines pulling and each invocation of a
    /// suite costing `setup_secs` of its first item: the longest eligible
    /// item, then the next ones that batch with it while the batch stays
    /// within [`batch_target`]. `None` when nothing is eligible.
    pub fn take_batch(
        &mut self,
        machines: usize,
        setup_secs: &dyn Fn(&WorkItem) -> f64,
        eligible: &dyn Fn(&WorkItem) -> bool,
    ) -> Option<Vec<WorkItem>> {
        let head = self.items.iter().position(eligible)?;
        let target = batch_target(
            self.remaining_secs(),
            machines,
            setup_secs(&self.items[head]),
        );
        let first = self.items.remove(head);
        let mut total = first.estimate_secs;
        let mut batch = vec![first];
        let mut i = head;
        while i < self.items.len() && total < target {
            let item = &self.items[i];
            if batch[0].batches_with(item) && eligible(item) && total + item.estimate_secs <= target
            {
                total += item.estimate_secs;
                batch.push(self.items.remove(i));
            } else {
                i += 1;
            }
        }
        Some(batch)
    }

    /// Takes out every item `which` accepts.
    pub fn take_where(&mut self, which: &dyn Fn(&WorkItem) -> bool) -> Vec<WorkItem> {
        let (taken, kept) = std::mem::take(&mut self.items)
            .into_iter()
            .partition(|item| which(item));
        self.items = kept;
        taken
    }
}

/// Plays a run out on estimates: `shards` machines pull batches from a
/// [`Queue`] of `items` as a real run does, each batch costing
/// `setup_secs(first item)` on top of its items.
pub fn simulate(items: &[WorkItem], shards: usize, setup_secs: &dyn Fn(&WorkItem) -> f64) -> Plan {
    let shards = shards.max(1);
    let mut plan = Plan::empty(shards);
    let mut queue = Queue::new(items.to_vec());
    // Min-heap on (time the machine becomes free, machine index).
    let mut free: BinaryHeap<Reverse<(OrderedSecs, usize)>> = (0..shards)
        .map(|m| Reverse((OrderedSecs(0.0), m)))
        .collect();
    while let Some(batch) = queue.take_batch(shards, setup_secs, &|_| true) {
        let Reverse((OrderedSecs(at), machine)) = free.pop().expect("at least one machine");
        let done = at + setup_secs(&batch[0]) + batch.iter().map(|i| i.estimate_secs).sum::<f64>();
        plan.busy_secs[machine] = done;
        plan.batches[machine] += 1;
        plan.machines[machine].extend(batch);
        free.push(Reverse((OrderedSecs(done), machine)));
    }
    plan
}

/// Longest first like [`simulate`], but one test per batch: every test pays
/// its suite's set-up (what a run without batches would do).
pub fn simulate_unbatched(
    items: &[WorkItem],
    shards: usize,
    setup_secs: &dyn Fn(&WorkItem) -> f64,
) -> Plan {
    let mut sorted = items.to_vec();
    sorted.sort_by(|a, b| b.estimate_secs.total_cmp(&a.estimate_secs));
    let with_setup: Vec<WorkItem> = sorted
        .into_iter()
        .map(|mut item| {
            item.estimate_secs += setup_secs(&item);
            item
        })
        .collect();
    pull(&with_setup, shards)
}

/// One item at a time in the given order (fstests' own, alphabetical),
/// pulled by whichever machine is free first, without set-up costs.
pub fn in_order(items: &[WorkItem], shards: usize) -> Plan {
    pull(items, shards)
}

/// Item `i` to machine `i % shards`, decided up front.
pub fn round_robin(items: &[WorkItem], shards: usize) -> Plan {
    let shards = shards.max(1);
    let mut plan = Plan::empty(shards);
    for (i, item) in items.iter().enumerate() {
        plan.machines[i % shards].push(item.clone());
        plan.busy_secs[i % shards] += item.estimate_secs;
        plan.batches[i % shards] += 1;
    }
    plan
}

fn pull(queue: &[WorkItem], shards: usize) -> Plan {
    let shards = shards.max(1);
    let mut plan = Plan::empty(shards);
    let mut free: BinaryHeap<Reverse<(OrderedSecs, usize)>> = (0..shards)
        .map(|m| Reverse((OrderedSecs(0.0), m)))
        .collect();
    for item in queue {
        let Reverse((OrderedSecs(at), machine)) = free.pop().expect("at least one machine");
        let done = at + item.estimate_secs;
        plan.machines[machine].push(item.clone());
        plan.busy_secs[machine] = done;
        plan.batches[machine] += 1;
        free.push(Reverse((OrderedSecs(done), machine)));
    }
    plan
}

/// Test durations recorded in the results store, newest first, and the
/// estimates made from them.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// `(suite, profile, test)` → the newest duration.
    exact: HashMap<(String, Option<String>, String), f64>,
    /// `(suite, test)` → the newest duration under any profile.
    by_name: HashMap<(String, String), f64>,
    /// Per suite, the median of its known durations.
    suite_median: HashMap<String, f64>,
    /// Per suite, the sum of its known durations under each name.
    suite_total: HashMap<String, f64>,
    /// The median of every known duration.
    median: Option<f64>,
}

/// The most a harness spends between two tests of one batch (checks,
/// clean-up): a longer gap between starts is not the first test's cost.
const HARNESS_GAP_SECS: f64 = 10.0;

/// What any test costs at least (a harness starts it, mounts, checks):
/// a test recorded at "0 s" is not free to add to a batch.
pub const MIN_ESTIMATE_SECS: f64 = 1.0;

/// An estimate when nothing at all is known.
pub const DEFAULT_ESTIMATE_SECS: f64 = 60.0;

impl History {
    /// The durations of every stored run's outcomes.
    pub fn from_store(store: &ResultsStore) -> History {
        let reports = store.load_all().map(|(r, _)| r).unwrap_or_default();
        // Oldest first, so newer durations overwrite older ones.
        History::from_outcomes(reports.iter().flat_map(|r| r.outcomes()))
    }

    /// The durations of `outcomes`, later ones winning. A test's duration
    /// is what it cost its machine: when the next test on the same machine
    /// started soon after it (in the same batch), the time to that start,
    /// which includes what the harness does around each test (fstests
    /// checks both filesystems after every test, and reports whole seconds).
    pub fn from_outcomes<'a>(outcomes: impl Iterator<Item = &'a TestOutcome>) -> History {
        let outcomes: Vec<&TestOutcome> = outcomes.collect();
        let mut next_start: HashMap<usize, f64> = HashMap::new();
        let mut by_machine: HashMap<&str, Vec<(usize, chrono::DateTime<chrono::Utc>)>> =
            HashMap::new();
        for (i, outcome) in outcomes.iter().enumerate() {
            if let (Some(machine), Some(at)) = (outcome.machine.as_deref(), outcome.started_at) {
                by_machine.entry(machine).or_default().push((i, at));
            }
        }
        for starts in by_machine.values_mut() {
            starts.sort_by_key(|(_, at)| *at);
            for pair in starts.windows(2) {
                let gap = (pair[1].1 - pair[0].1).num_milliseconds() as f64 / 1000.0;
                next_start.insert(pair[0].0, gap);
            }
        }
        let mut history = History::default();
        for (i, outcome) in outcomes.iter().enumerate() {
            let Some(mut secs) = outcome.duration_secs.filter(|d| d.is_finite() && *d >= 0.0)
            else {
                continue;
            };
            // Within a batch the next test starts within seconds of the end
            // of this one; a longer gap is a new batch or another run.
            if let Some(gap) = next_start.get(&i)
                && *gap >= secs
                && *gap <= secs + HARNESS_GAP_SECS
            {
                secs = *gap;
            }
            history.exact.insert(
                (
                    outcome.suite.clone(),
                    outcome.profile.clone(),
                    outcome.name.clone(),
                ),
                secs,
            );
            history
                .by_name
                .insert((outcome.suite.clone(), outcome.name.clone()), secs);
        }
        let mut per_suite: HashMap<String, Vec<f64>> = HashMap::new();
        for ((suite, _), secs) in &history.by_name {
            per_suite.entry(suite.clone()).or_default().push(*secs);
        }
        let mut all: Vec<f64> = Vec::new();
        for (suite, mut durations) in per_suite {
            history
                .suite_total
                .insert(suite.clone(), durations.iter().sum());
            history.suite_median.insert(suite, median(&mut durations));
            all.extend(durations);
        }
        history.median = (!all.is_empty()).then(|| median(&mut all));
        history
    }

    /// A test's estimate: its newest duration under this profile, else
    /// under any, else the median of its suite's tests, else of all tests;
    /// never under [`MIN_ESTIMATE_SECS`].
    pub fn estimate(&self, suite: &str, profile: Option<&str>, test: &str) -> f64 {
        self.estimate_raw(suite, profile, test)
            .max(MIN_ESTIMATE_SECS)
    }

    fn estimate_raw(&self, suite: &str, profile: Option<&str>, test: &str) -> f64 {
        let key = (
            suite.to_owned(),
            profile.map(str::to_owned),
            test.to_owned(),
        );
        self.exact
            .get(&key)
            .or_else(|| self.by_name.get(&(suite.to_owned(), test.to_owned())))
            .or_else(|| self.suite_median.get(suite))
            .copied()
            .or(self.median)
            .unwrap_or(DEFAULT_ESTIMATE_SECS)
    }

    /// A whole suite's estimate: the sum of its known tests (an hour when
    /// none is known).
    pub fn suite_estimate(&self, suite: &str) -> f64 {
        self.suite_total
            .get(suite)
            .copied()
            .filter(|t| *t > 0.0)
            .unwrap_or(3600.0)
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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
            .map(|(i, d)| WorkItem::test("s", &format!("t{i:03}"), *d))
            .collect()
    }

    fn no_setup(_: &WorkItem) -> f64 {
        0.0
    }

    fn ids(plan: &Plan) -> Vec<String> {
        let mut ids: Vec<String> = plan
            .machines
            .iter()
            .flatten()
            .map(WorkItem::label)
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn every_item_runs_exactly_once() {
        let work = items(&[5.0, 1.0, 9.0, 3.0, 3.0, 7.0, 2.0]);
        for shards in 1..=9 {
            for plan in [
                simulate(&work, shards, &no_setup),
                round_robin(&work, shards),
                in_order(&work, shards),
            ] {
                let mut got = ids(&plan);
                assert_eq!(got.len(), work.len());
                got.dedup();
                assert_eq!(got.len(), work.len());
            }
        }
    }

    #[test]
    fn longest_first_beats_naive_orders_on_a_skewed_list() {
        // One long test at the end of the alphabet: the classic trap.
        let mut durations = vec![10.0; 20];
        durations.push(100.0);
        let work = items(&durations);
        let lpt = simulate(&work, 3, &no_setup).makespan();
        assert!(lpt <= lower_bound(&work, 3) * 1.10, "{lpt}");
        assert!(in_order(&work, 3).makespan() > lpt);
        assert!(round_robin(&work, 3).makespan() > lpt);
    }

    #[test]
    fn one_shard_is_the_sum_and_many_shards_the_longest() {
        let work = items(&[4.0, 6.0, 1.0]);
        assert_eq!(simulate(&work, 1, &no_setup).makespan(), 11.0);
        assert_eq!(simulate(&work, 10, &no_setup).makespan(), 6.0);
        assert_eq!(lower_bound(&work, 10), 6.0);
    }

    #[test]
    fn batches_shrink_with_the_time_left_and_keep_to_one_suite_and_profile() {
        let mut work = items(&[1.0; 40]);
        let mut other = WorkItem::test("s", "x", 1.0);
        other.profile = Some("compress".into());
        work.push(other);
        let mut queue = Queue::new(work);
        let first = queue.take_batch(2, &no_setup, &|_| true).unwrap();
        // 41 s left over 2 machines: at most 41 / 4 s per batch.
        assert_eq!(first.len(), 10);
        assert!(first.iter().all(|i| i.profile.is_none()));
        let mut sizes = vec![first.len()];
        while let Some(batch) = queue.take_batch(2, &no_setup, &|_| true) {
            let group = (&batch[0].suite, &batch[0].profile);
            assert!(batch.iter().all(|i| (&i.suite, &i.profile) == group));
            sizes.push(batch.len());
        }
        assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        assert_eq!(sizes.last(), Some(&1), "the tail is one test at a time");
        assert_eq!(sizes.iter().sum::<usize>(), 41);
    }

    #[test]
    fn set_up_per_batch_costs_little_against_the_lower_bound() {
        // 300 tests of 1 to 60 s, 2 s of set-up per batch.
        let durations: Vec<f64> = (0..300).map(|i| 1.0 + f64::from(i * 37 % 60)).collect();
        let work = items(&durations);
        for shards in [2, 4, 8, 16] {
            let plan = simulate(&work, shards, &|_| 2.0);
            let ratio = plan.makespan() / lower_bound(&work, shards);
            assert!(ratio < 1.10, "{shards} machines: {ratio}");
        }
    }

    #[test]
    fn ineligible_items_are_left_for_other_machines() {
        let mut work = items(&[9.0, 1.0]);
        work[0].exclusive = true;
        let mut queue = Queue::new(work);
        let batch = queue.take_batch(2, &no_setup, &|i| !i.exclusive).unwrap();
        assert_eq!(batch[0].test.as_deref(), Some("t001"));
        assert!(queue.take_batch(2, &no_setup, &|i| !i.exclusive).is_none());
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn unknown_tests_get_the_median_of_their_suite() {
        let outcome = |suite: &str, name: &str, secs: f64| {
            let mut o = TestOutcome::new(suite, name, btrfsqa_model::Verdict::Pass);
            o.duration_secs = Some(secs);
            o
        };
        let outcomes = [
            outcome("a", "x", 1.0),
            outcome("a", "y", 5.0),
            outcome("a", "z", 9.0),
            outcome("b", "q", 100.0),
        ];
        let history = History::from_outcomes(outcomes.iter());
        assert_eq!(history.estimate("a", None, "x"), 1.0);
        assert_eq!(history.estimate("a", Some("compress"), "x"), 1.0);
        assert_eq!(history.estimate("a", None, "new"), 5.0);
        assert_eq!(history.estimate("b", None, "new"), 100.0);
        assert_eq!(history.estimate("c", None, "new"), 9.0);
        assert_eq!(history.suite_estimate("a"), 15.0);
        assert_eq!(
            History::default().estimate("a", None, "x"),
            DEFAULT_ESTIMATE_SECS
        );
    }

    #[test]
    fn a_test_costs_its_machine_the_time_until_the_next_one_started() {
        let start = chrono::Utc::now();
        let at = |machine: &str, name: &str, secs_in: i64, duration: f64| {
            let mut o = TestOutcome::new("xfstests", name, btrfsqa_model::Verdict::Pass);
            o.machine = Some(machine.into());
            o.started_at = Some(start + chrono::Duration::seconds(secs_in));
            o.duration_secs = Some(duration);
            o
        };
        let outcomes = [
            // fstests says 0 s; the next test started 2 s later.
            at("m0", "btrfs/001", 0, 0.0),
            at("m0", "btrfs/002", 2, 10.0),
            // A new batch 60 s later: not 002's cost.
            at("m0", "btrfs/003", 72, 1.0),
            at("m1", "btrfs/004", 1, 3.0),
        ];
        let history = History::from_outcomes(outcomes.iter());
        assert_eq!(history.estimate("xfstests", None, "btrfs/001"), 2.0);
        assert_eq!(history.estimate("xfstests", None, "btrfs/002"), 10.0);
        assert_eq!(history.estimate("xfstests", None, "btrfs/003"), 1.0);
        assert_eq!(history.estimate("xfstests", None, "btrfs/004"), 3.0);
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
