//! The run controller: the only owner of the run's report and of its
//! writes to the results store. Machine workers send it typed messages
//! ([`Message`]); it hands out batches of work (longest first, to whichever
//! machine asks), takes back what a lost machine did not finish, schedules
//! the reruns of new failures, and decides what the run left undone.

use std::collections::{HashMap, HashSet};

use btrfsqa_cloud::{Access, Machine};
use btrfsqa_model::EventSink;
use btrfsqa_model::compare::TestKey;
use btrfsqa_model::{Event, KernelInfo, ResultsStore, RunReport, SuiteReport, TestOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::events::warning;
use crate::history::{self, ExpectationsConfig, RerunPlan};
use crate::plan::RunPlan;
use crate::schedule::{Queue, WorkItem};

/// Work handed to one machine: items of one suite and profile, run by one
/// invocation of the suite.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    /// The suite's id.
    pub suite: String,
    /// The profile the items run under.
    pub profile: Option<String>,
    /// The items.
    pub items: Vec<WorkItem>,
    /// For a whole suite: the tests it already has verdicts for.
    pub skip: Vec<String>,
    /// These are reruns of new failures.
    pub rerun: bool,
}

impl Batch {
    /// The tests to put in `SuiteContext::only` (`None` for a whole suite).
    pub fn only(&self) -> Option<Vec<String>> {
        self.items
            .iter()
            .map(|item| item.test.clone())
            .collect::<Option<Vec<_>>>()
    }
}

/// What a machine did with a batch.
#[derive(Debug)]
pub(crate) struct BatchResult {
    /// The batch.
    pub batch: Batch,
    /// The outcomes (and the suite's error, artifacts...).
    pub part: SuiteReport,
    /// Items to hand out again (the rest of a batch stopped by a hang, a
    /// crash, a broken connection or a machine taken away).
    pub requeue: Vec<WorkItem>,
    /// `interrupted` outcomes of a machine taken away: kept only for tests
    /// no other machine runs.
    pub withdrawn: Vec<TestOutcome>,
    /// The suite could not be set up on this machine (why).
    pub setup_failed: Option<String>,
}

/// Why a worker stopped asking for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gone {
    /// No work was left.
    Done,
    /// The machine could not be made usable (unreachable, kernel stage).
    Failed(String),
    /// The machine could not be brought back after trouble.
    GivenUp(String),
    /// The machine is being taken away (a spot interruption notice).
    TakenAway(String),
}

/// What workers tell the controller.
#[derive(Debug)]
pub(crate) enum Message {
    /// The worker's machine exists.
    Provisioned { worker: usize, machine: Machine },
    /// It could not be made.
    ProvisionFailed { worker: usize, error: String },
    /// The machine runs the kernel under test and is ready for suites;
    /// `stage` holds what the kernel stage reported.
    Ready {
        worker: usize,
        kernel: KernelInfo,
        stage: Vec<SuiteReport>,
    },
    /// The worker wants a batch (`None`: no more work).
    Next {
        worker: usize,
        reply: oneshot::Sender<Option<Batch>>,
    },
    /// Items of a batch cut short by trouble, handed back before the
    /// machine is recovered so the other machines can take them at once.
    Requeue { items: Vec<WorkItem> },
    /// A batch ended.
    Finished { worker: usize, result: BatchResult },
    /// The worker stopped asking.
    Gone { worker: usize, why: Gone },
    /// A machine is torn down (`error`: what could not be removed).
    TornDown {
        cost_usd: Option<f64>,
        error: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Being provisioned or prepared.
    Starting,
    /// Between batches.
    Idle,
    /// Running a batch (exclusive: it needs the kernel to itself).
    Busy { exclusive: bool },
    /// Asked for work and waits for some.
    Waiting,
    /// Stopped asking.
    Gone,
}

#[derive(Debug)]
struct Worker {
    name: Option<String>,
    state: State,
    /// Its machine shares the controller's kernel (the local provider).
    shares_kernel: bool,
    /// Suites that could not be set up on it.
    unusable: HashSet<String>,
    reply: Option<oneshot::Sender<Option<Batch>>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// The plan's tests.
    Tests,
    /// Reruns of new failures.
    Reruns,
    /// Nothing more to hand out.
    Done,
}

/// What the run left when the controller stopped.
#[derive(Debug)]
pub(crate) struct Ended {
    /// The report, every outcome merged, not yet finished.
    pub report: RunReport,
    /// Why a machine was taken away while work was left (the run is
    /// interrupted, resumably).
    pub interruption: Option<String>,
    /// What teardown could not remove.
    pub teardown_errors: Vec<String>,
}

/// What the controller needs besides the plan.
pub(crate) struct Settings {
    /// How many machines (workers) the run has.
    pub machines: usize,
    /// The suites' ids in the configured order.
    pub suite_order: Vec<String>,
    pub expectations: ExpectationsConfig,
    /// The run's page on the dashboard (for the comparison summary).
    pub run_page: Option<String>,
}

/// The controller's state.
pub(crate) struct Controller {
    report: RunReport,
    /// `(suite, profile, test)` → (suite index, test index) in `report`.
    index: HashMap<TestKey, (usize, usize)>,
    store: ResultsStore,
    sink: EventSink,
    stop: CancellationToken,
    queue: Queue,
    workers: Vec<Worker>,
    phase: Phase,
    order: HashMap<String, HashMap<(Option<String>, String), usize>>,
    suite_order: Vec<String>,
    settings: Settings,
    reruns: Option<RerunPlan>,
    comparison: Option<btrfsqa_model::compare::Comparison>,
    withdrawn: HashMap<TestKey, TestOutcome>,
    setup_errors: HashMap<String, Vec<String>>,
    lost: Vec<String>,
    taken_away: Vec<String>,
    provision_errors: Vec<String>,
    teardown_errors: Vec<String>,
    cost_usd: Option<f64>,
    /// When the report was last written.
    saved: Option<std::time::Instant>,
}

/// How often, at most, a finished batch rewrites the report.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl Controller {
    /// A controller of `machines` workers for `plan`, continuing `report`.
    pub fn new(
        report: RunReport,
        store: ResultsStore,
        sink: EventSink,
        stop: CancellationToken,
        plan: RunPlan,
        mut settings: Settings,
    ) -> Controller {
        let machines = settings.machines;
        let suite_order = std::mem::take(&mut settings.suite_order);
        let mut controller = Controller {
            index: HashMap::new(),
            report,
            store,
            sink,
            stop,
            queue: Queue::new(plan.items),
            workers: (0..machines)
                .map(|_| Worker {
                    name: None,
                    state: State::Starting,
                    shares_kernel: false,
                    unusable: HashSet::new(),
                    reply: None,
                })
                .collect(),
            phase: Phase::Tests,
            order: plan.order,
            suite_order,
            settings,
            reruns: None,
            comparison: None,
            withdrawn: HashMap::new(),
            setup_errors: HashMap::new(),
            lost: Vec::new(),
            taken_away: Vec::new(),
            provision_errors: Vec::new(),
            teardown_errors: Vec::new(),
            cost_usd: None,
            saved: None,
        };
        for (suite, message) in plan.failures {
            let mut part = SuiteReport::new(&suite);
            part.error = Some(format!("cannot list its tests: {message}"));
            controller.merge(part);
        }
        controller.reindex();
        controller
    }

    /// Serves the workers until every one has torn its machine down.
    pub async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Message>) -> Ended {
        let stop = self.stop.clone();
        let mut stopped = false;
        loop {
            tokio::select! {
                message = inbox.recv() => match message {
                    Some(message) => self.handle(message),
                    None => break,
                },
                () = stop.cancelled(), if !stopped => {
                    stopped = true;
                    self.release_waiting();
                }
            }
        }
        self.finish()
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Provisioned { worker, machine } => {
                let _ =
                    crate::write_machine_record(&self.store.run_dir(&self.report.run_id), &machine);
                self.workers[worker].name = Some(machine.name.clone());
                self.workers[worker].shares_kernel = machine.access == Access::Local;
                self.report.provenance.machines.push(machine.info());
                self.save();
            }
            Message::ProvisionFailed { worker, error } => {
                self.workers[worker].state = State::Gone;
                self.provision_errors.push(error.clone());
                let up = self.workers.len() - self.provision_errors.len();
                if up > 0 {
                    self.emit(warning(
                        None,
                        format!(
                            "{} of {} machines could not be provisioned; going on with {up}: {error}",
                            self.provision_errors.len(),
                            self.workers.len(),
                        ),
                    ));
                }
            }
            Message::Ready {
                worker,
                kernel,
                stage,
            } => {
                let name = self.workers[worker].name.clone();
                if let Some(info) = self
                    .report
                    .provenance
                    .machines
                    .iter_mut()
                    .find(|m| Some(&m.name) == name.as_ref())
                {
                    info.kernel = kernel.clone();
                }
                if kernel.release.is_some() || self.report.provenance.kernel.release.is_none() {
                    self.report.provenance.kernel = kernel;
                }
                for part in stage {
                    self.merge(part);
                }
                crate::kernel::record_source(&mut self.report);
                self.workers[worker].state = State::Idle;
                self.save();
            }
            Message::Next { worker, reply } => {
                self.workers[worker].state = State::Waiting;
                self.workers[worker].reply = Some(reply);
            }
            Message::Requeue { items } => self.queue.push_back_first(items),
            Message::Finished { worker, result } => {
                self.workers[worker].state = State::Idle;
                self.take(worker, result);
                self.save_now_and_then();
            }
            Message::Gone { worker, why } => {
                let name = self.workers[worker]
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("#{worker}"));
                self.workers[worker].state = State::Gone;
                self.workers[worker].reply = None;
                match why {
                    Gone::Done => {}
                    Gone::Failed(message) | Gone::GivenUp(message) => {
                        self.emit(warning(Some(&name), message.clone()));
                        self.lost.push(message);
                    }
                    Gone::TakenAway(message) => self.taken_away.push(message),
                }
            }
            Message::TornDown { cost_usd, error } => {
                if let Some(cost) = cost_usd {
                    *self.cost_usd.get_or_insert(0.0) += cost;
                }
                self.teardown_errors.extend(error);
            }
        }
        self.settle();
    }

    /// Answers waiting workers while there is work for them, and moves on
    /// to the reruns (then to the end) once every machine left waits for
    /// work that is not coming.
    fn settle(&mut self) {
        if self.stop.is_cancelled() {
            self.release_waiting();
            return;
        }
        loop {
            self.serve_waiting();
            let active = self
                .workers
                .iter()
                .any(|w| matches!(w.state, State::Starting | State::Idle | State::Busy { .. }));
            if active {
                return;
            }
            self.drop_unrunnable();
            let waiting = self.waiting();
            match self.phase {
                Phase::Tests if waiting > 0 && self.queue.is_empty() => {
                    self.start_reruns();
                }
                // Every machine is gone: what is left stays without a verdict.
                Phase::Tests if waiting == 0 => return,
                // Work the machines left cannot take (cannot happen with
                // none busy, but a run must never wait on it).
                Phase::Tests => {
                    self.release_waiting();
                    return;
                }
                Phase::Reruns if waiting > 0 && !self.queue.is_empty() => {
                    self.release_waiting();
                    return;
                }
                Phase::Reruns => {
                    self.end_reruns();
                    self.release_waiting();
                    return;
                }
                Phase::Done => {
                    self.release_waiting();
                    return;
                }
            }
        }
    }

    /// Hands a batch to every waiting worker that can take one.
    fn serve_waiting(&mut self) {
        for worker in 0..self.workers.len() {
            if self.workers[worker].state != State::Waiting {
                continue;
            }
            let Some(batch) = self.batch_for(worker) else {
                continue;
            };
            let exclusive = batch.items.iter().any(|i| i.exclusive);
            match self.workers[worker]
                .reply
                .take()
                .map(|r| r.send(Some(batch)))
            {
                Some(Ok(())) => self.workers[worker].state = State::Busy { exclusive },
                // The worker stopped waiting (its machine is going away):
                // the batch goes back.
                Some(Err(Some(batch))) => {
                    self.workers[worker].state = State::Idle;
                    self.queue.push(batch.items);
                }
                _ => self.workers[worker].state = State::Idle,
            }
        }
    }

    fn waiting(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.state == State::Waiting)
            .count()
    }

    /// The next batch for `worker`, if any item may run there now.
    fn batch_for(&mut self, worker: usize) -> Option<Batch> {
        if self.phase == Phase::Done {
            return None;
        }
        let me = &self.workers[worker];
        let others_busy = |exclusive_only: bool| {
            self.workers.iter().enumerate().any(|(i, w)| {
                i != worker
                    && w.shares_kernel
                    && match w.state {
                        State::Busy { exclusive } => exclusive || !exclusive_only,
                        _ => false,
                    }
            })
        };
        // On a kernel shared with other machines, an exclusive test runs
        // alone, and nothing runs beside it.
        if me.shares_kernel && others_busy(true) {
            return None;
        }
        let alone = !me.shares_kernel || !others_busy(false);
        let unusable = me.unusable.clone();
        let machines = self
            .workers
            .iter()
            .filter(|w| w.state != State::Gone)
            .count();
        let items = self
            .queue
            .take_batch(machines, &crate::plan::setup_estimate, &|item| {
                !unusable.contains(&item.suite) && (!item.exclusive || alone)
            })?;
        let first = &items[0];
        let skip = match first.test {
            None => self
                .report
                .suites
                .iter()
                .filter(|s| s.id == first.suite)
                .flat_map(|s| s.tests.iter().map(|t| t.name.clone()))
                .collect(),
            Some(_) => Vec::new(),
        };
        Some(Batch {
            suite: first.suite.clone(),
            profile: first.profile.clone(),
            skip,
            rerun: self.phase == Phase::Reruns,
            items,
        })
    }

    fn take(&mut self, worker: usize, result: BatchResult) {
        let BatchResult {
            batch,
            part,
            requeue,
            withdrawn,
            setup_failed,
        } = result;
        let machine = self.workers[worker].name.clone().unwrap_or_default();
        if let Some(message) = setup_failed {
            self.workers[worker].unusable.insert(batch.suite.clone());
            self.setup_errors
                .entry(batch.suite.clone())
                .or_default()
                .push(format!("setup on `{machine}` failed: {message}"));
            self.queue.push(batch.items);
            return;
        }
        (self.sink)(Event::SuiteFinished {
            machine,
            suite: batch.suite.clone(),
            counts: part.counts(),
            error: part.error.clone(),
        });
        for outcome in withdrawn {
            self.withdrawn.insert(TestKey::of(&outcome), outcome);
        }
        if batch.rerun {
            if let Some(plan) = &self.reruns {
                history::record_reruns(&mut self.report, plan, part);
            }
            // A rerun cut short is not run again: the first verdict stands.
            return;
        }
        self.merge(part);
        self.queue.push_back_first(requeue);
    }

    /// Puts a suite's (partial) report into the run's report: outcomes
    /// replace earlier ones of the same test, in constant time each.
    fn merge(&mut self, part: SuiteReport) {
        let at = match self.report.suites.iter().position(|s| s.id == part.id) {
            Some(at) => at,
            None => {
                self.report.suites.push(SuiteReport::new(&part.id));
                self.report.suites.len() - 1
            }
        };
        let SuiteReport {
            tests,
            artifacts,
            duration_secs,
            error,
            source,
            ..
        } = part;
        let suite = &mut self.report.suites[at];
        suite.artifacts.extend(artifacts);
        suite.duration_secs = match (suite.duration_secs, duration_secs) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        if let Some(error) = error {
            suite.error = Some(match suite.error.take() {
                Some(previous) if !previous.contains(&error) => format!("{previous}; {error}"),
                Some(previous) => previous,
                None => error,
            });
        }
        if suite.source.is_none() {
            suite.source = source;
        }
        for outcome in tests {
            let key = TestKey::of(&outcome);
            self.withdrawn.remove(&key);
            match self.index.get(&key) {
                Some(&(s, t)) => self.report.suites[s].tests[t] = outcome,
                None => {
                    let tests = &mut self.report.suites[at].tests;
                    self.index.insert(key, (at, tests.len()));
                    tests.push(outcome);
                }
            }
        }
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (s, suite) in self.report.suites.iter().enumerate() {
            for (t, test) in suite.tests.iter().enumerate() {
                self.index.insert(TestKey::of(test), (s, t));
            }
        }
    }

    /// Items no machine left can run (their suite could not be set up on
    /// any of them) stay without a verdict; their suite says why.
    fn drop_unrunnable(&mut self) {
        let alive: Vec<&Worker> = self
            .workers
            .iter()
            .filter(|w| w.state != State::Gone)
            .collect();
        if alive.is_empty() {
            return;
        }
        let unusable: HashSet<String> = self
            .queue
            .items()
            .iter()
            .map(|i| i.suite.clone())
            .filter(|suite| alive.iter().all(|w| w.unusable.contains(suite)))
            .collect();
        if unusable.is_empty() {
            return;
        }
        self.queue
            .take_where(&|item| unusable.contains(&item.suite));
    }

    /// Compares the run with its baseline; new failures to rerun go to the
    /// queue when a machine is left to run them.
    fn start_reruns(&mut self) {
        if self.comparison.is_some() {
            return;
        }
        let past: Vec<RunReport> = self
            .store
            .load_all()
            .map(|(reports, _)| reports)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.run_id != self.report.run_id)
            .collect();
        self.report.recount();
        let comparison = history::compare_run(&self.report, &past, &self.settings.expectations);
        let plan = history::rerun_plan(&comparison, &self.settings.expectations);
        self.comparison = Some(comparison);
        let machines = self.waiting();
        if plan.is_empty() || machines == 0 || !self.queue.is_empty() {
            self.phase = Phase::Reruns;
            return;
        }
        self.emit(warning(
            None,
            format!(
                "rerunning {} new failure(s) {} time(s) to tell regressions from flakes",
                plan.tests.len(),
                plan.times
            ),
        ));
        let mut items = Vec::new();
        for _ in 0..plan.times {
            for key in &plan.tests {
                items.push(WorkItem {
                    suite: key.suite.clone(),
                    profile: key.profile.clone(),
                    test: Some(key.name.clone()),
                    estimate_secs: 1.0,
                    exclusive: false,
                });
            }
        }
        self.queue.push(items);
        self.reruns = Some(plan);
        self.phase = Phase::Reruns;
    }

    fn end_reruns(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        if let Some(comparison) = &mut self.comparison
            && self.reruns.is_some()
        {
            btrfsqa_model::compare::apply_reruns(comparison, &self.report);
        }
        self.phase = Phase::Done;
        self.save();
    }

    /// Tells every waiting worker there is no more work.
    fn release_waiting(&mut self) {
        for worker in &mut self.workers {
            if let Some(reply) = worker.reply.take() {
                let _ = reply.send(None);
            }
        }
    }

    fn emit(&self, event: Event) {
        (self.sink)(event);
    }

    /// Writes the report. A failure here is met again, fatally, at the end
    /// of the run.
    fn save(&mut self) {
        self.report.recount();
        let _ = self.store.write_report(&self.report);
        self.saved = Some(std::time::Instant::now());
    }

    /// Writes the report unless it was written moments ago. Every outcome
    /// is durable in the journal (synced before the next test starts), and
    /// a resumed run takes it from there; rewriting a report of thousands
    /// of tests after every batch would cost more than the tests.
    fn save_now_and_then(&mut self) {
        if self.saved.is_none_or(|at| at.elapsed() >= SAVE_EVERY) {
            self.save();
        }
    }

    fn finish(mut self) -> Ended {
        let mut setup_errors: Vec<(String, Vec<String>)> =
            std::mem::take(&mut self.setup_errors).into_iter().collect();
        setup_errors.sort();
        for (suite, errors) in setup_errors {
            let mut part = SuiteReport::new(&suite);
            part.error = Some(errors.join("; "));
            self.merge(part);
        }
        // Tests a machine taken away was running that nobody ran since.
        let left: HashSet<String> = self.queue.items().iter().map(WorkItem::label).collect();
        for (_, outcome) in std::mem::take(&mut self.withdrawn) {
            let mut part = SuiteReport::new(&outcome.suite);
            part.tests.push(outcome);
            self.merge(part);
        }
        // Tests in the order one machine would have run them, suites in the
        // configured order: a sharded report reads like an unsharded one.
        let order = std::mem::take(&mut self.order);
        for suite in &mut self.report.suites {
            if let Some(order) = order.get(&suite.id) {
                suite.tests.sort_by_key(|t| {
                    order
                        .get(&(t.profile.clone(), t.name.clone()))
                        .copied()
                        .unwrap_or(usize::MAX)
                });
            }
        }
        let suite_order = std::mem::take(&mut self.suite_order);
        self.report.suites.sort_by_key(|s| {
            suite_order
                .iter()
                .position(|id| *id == s.id)
                .unwrap_or(usize::MAX)
        });
        if self.comparison.is_none() && !self.stop.is_cancelled() {
            self.start_reruns();
        }
        if let Some(comparison) = &self.comparison {
            self.report.comparison = Some(history::summarize_for_report(
                comparison,
                self.settings.run_page.clone(),
            ));
        }
        self.report.cost_usd = self.cost_usd;
        self.report.recount();
        let up = self.workers.len() - self.provision_errors.len();
        let mut interruption = None;
        if up == 0 && !self.workers.is_empty() {
            self.report.error = Some(format!(
                "provisioning failed: {}",
                self.provision_errors.join("; ")
            ));
        } else if !left.is_empty() && !self.stop.is_cancelled() {
            let mut names: Vec<&String> = left.iter().collect();
            names.sort();
            let shown: Vec<&str> = names.iter().take(10).map(|s| s.as_str()).collect();
            let more = names.len().saturating_sub(shown.len());
            let what = format!(
                "{}{}",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
            if let Some(reason) = self.taken_away.first() {
                interruption = Some(reason.clone());
            } else {
                let mut why = self.lost.clone();
                why.push(format!(
                    "no machine was left to run {what}; `btrfsqa resume {}` runs them",
                    self.report.run_id
                ));
                self.report.error = Some(why.join("; "));
            }
        }
        self.save();
        Ended {
            report: self.report,
            interruption,
            teardown_errors: self.teardown_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::{Provenance, RunId, Verdict};

    fn controller(dir: &std::path::Path, tests: usize) -> Controller {
        let store = ResultsStore::new(dir);
        let run = RunId::parse("run-merge").unwrap();
        store.create_run(&run).unwrap();
        let report = RunReport::start(run, chrono::Utc::now(), Provenance::default());
        let items = (0..tests)
            .map(|i| WorkItem::test("xfstests", &format!("t/{i:05}"), 1.0))
            .collect();
        let plan = RunPlan {
            items,
            ..RunPlan::default()
        };
        Controller::new(
            report,
            store,
            std::sync::Arc::new(|_| {}),
            CancellationToken::new(),
            plan,
            Settings {
                machines: 1,
                suite_order: vec!["xfstests".into()],
                expectations: ExpectationsConfig::default(),
                run_page: None,
            },
        )
    }

    fn batch(from: usize, to: usize) -> BatchResult {
        let items: Vec<WorkItem> = (from..to)
            .map(|i| WorkItem::test("xfstests", &format!("t/{i:05}"), 1.0))
            .collect();
        let mut part = SuiteReport::new("xfstests");
        part.tests = (from..to)
            .map(|i| TestOutcome::new("xfstests", format!("t/{i:05}"), Verdict::Pass))
            .collect();
        BatchResult {
            batch: Batch {
                suite: "xfstests".into(),
                profile: None,
                items,
                skip: Vec::new(),
                rerun: false,
            },
            part,
            requeue: Vec::new(),
            withdrawn: Vec::new(),
            setup_failed: None,
        }
    }

    #[test]
    fn a_test_reported_again_replaces_its_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let mut controller = controller(dir.path(), 4);
        controller.workers[0].name = Some("m".into());
        controller.take(0, batch(0, 3));
        let mut again = batch(1, 2);
        again.part.tests[0].verdict = Verdict::Fail;
        controller.take(0, again);
        let ended = controller.finish();
        let verdicts: Vec<_> = ended
            .report
            .outcomes()
            .map(|t| (t.name.clone(), t.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("t/00000".into(), Verdict::Pass),
                ("t/00001".into(), Verdict::Fail),
                ("t/00002".into(), Verdict::Pass)
            ]
        );
    }

    /// Not a check: a measurement, printed for `bench/merge-scale.sh`.
    #[test]
    #[ignore = "a benchmark: bench/merge-scale.sh runs it"]
    fn merge_scale() {
        for (tests, per_batch) in [(1_000, 20), (10_000, 20), (10_000, 100)] {
            let dir = tempfile::tempdir().unwrap();
            let mut controller = controller(dir.path(), tests);
            controller.workers[0].name = Some("m".into());
            let started = std::time::Instant::now();
            let mut writes = std::time::Duration::ZERO;
            for from in (0..tests).step_by(per_batch) {
                controller.take(0, batch(from, (from + per_batch).min(tests)));
                let at = std::time::Instant::now();
                controller.save_now_and_then();
                writes += at.elapsed();
            }
            let ended = controller.finish();
            let total = started.elapsed();
            assert_eq!(ended.report.summary.total(), tests as u32);
            println!(
                "{tests} tests in batches of {per_batch}: merged and ordered in {:.3} s, \
                 plus {:.3} s writing report.json (at most every 2 s)",
                (total - writes).as_secs_f64(),
                writes.as_secs_f64()
            );
        }
    }
}
