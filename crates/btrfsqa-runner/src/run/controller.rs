//! The run controller: the only owner of the run's report and of its
//! writes to the results store. Machine workers send it typed messages
//! ([`Message`]); it hands out batches of work (longest first, to whichever
//! machine asks), takes back what a lost machine did not finish, schedules
//! the reruns of new failures, and decides what the run left undone.

mod messages;
mod report;

use std::collections::{HashMap, HashSet};

use btrfsqa_cloud::Access;
use btrfsqa_model::EventSink;
use btrfsqa_model::compare::TestKey;
use btrfsqa_model::{Event, ResultsStore, RunReport, SuiteReport, TestOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub(crate) use messages::{Batch, BatchResult, Ended, Gone, Message, Settings};
use report::Index;

use super::events::warning;
use crate::history::{self, RerunPlan};
use crate::plan::RunPlan;
use crate::schedule::{Queue, WorkItem};

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

/// The controller's state.
pub(crate) struct Controller {
    report: RunReport,
    /// Where each test's outcome is in `report`.
    index: Index,
    store: ResultsStore,
    sink: EventSink,
    stop: CancellationToken,
    queue: Queue,
    workers: Vec<Worker>,
    phase: Phase,
    order: HashMap<String, HashMap<(Option<String>, String), usize>>,
    suite_order: Vec<String>,
    /// Each suite's batch set-up, seconds, as its first items said: reruns
    /// of its tests are batched alike.
    setup_secs: HashMap<String, f64>,
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
            setup_secs: plan
                .items
                .iter()
                .map(|item| (item.suite.clone(), item.setup_secs))
                .collect(),
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

    /// Puts a suite's (partial) report into the run's report.
    fn merge(&mut self, part: SuiteReport) {
        report::merge(&mut self.report, &mut self.index, &mut self.withdrawn, part);
    }

    fn reindex(&mut self) {
        self.index = report::index_of(&self.report);
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
                    setup_secs: self
                        .setup_secs
                        .get(&key.suite)
                        .copied()
                        .unwrap_or_else(|| WorkItem::test("", "", 0.0).setup_secs),
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
        let order = std::mem::take(&mut self.order);
        let suite_order = std::mem::take(&mut self.suite_order);
        report::put_in_order(&mut self.report, &order, &suite_order);
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
mod tests;
