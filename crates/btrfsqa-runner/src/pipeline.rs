//! The pipeline: provision, prepare, suites, collect, publish, and teardown
//! on every path.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use btrfsqa_cloud::{CloudProvider, Machine, MachineSpec};
use btrfsqa_model::{
    Event, KernelInfo, Provenance, ResultsStore, RunId, RunReport, RunStatus, Stage, SuiteReport,
    TestOutcome, Verdict,
};
use btrfsqa_publish::{Published, Publisher};
use btrfsqa_remote::{ExecRequest, RemoteHost, shell_quote};
use btrfsqa_suites::{EventSink, MachineDevices, SuiteContext, SuiteError, TestSuite};

use crate::RunError;
use crate::connect::Connector;
use crate::journal::Journal;
use crate::recover::{self, Trouble};
use crate::schedule::SuiteWork as ShardItem;
use crate::settings::Settings;

/// How long a suite gets to stop by itself after cancellation before its
/// future is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// How long a static host rebooted after a hang or crash may take to answer.
const REBOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// How a finished run should be judged (the CLI maps this to an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunVerdict {
    /// Every test passed or was skipped, and publishing (if any) worked.
    Passed,
    /// At least one test failed, hung or crashed.
    TestsFailed,
    /// The run could not do its work: a machine, a suite's setup, teardown.
    InfrastructureError,
    /// Stopped by a signal or the run's deadline.
    Interrupted,
    /// Tests were fine but the results could not be published (they are in the store).
    PublishFailed,
}

/// The result of [`Runner::run`].
#[derive(Debug)]
pub struct RunOutcome {
    /// The final report, as written to the store.
    pub report: RunReport,
    /// The run's directory in the results store.
    pub run_dir: PathBuf,
    /// Where it was published, if it was.
    pub published: Option<Published>,
    /// Why publishing failed, if it did.
    pub publish_error: Option<String>,
    /// What teardown could not remove.
    pub teardown_errors: Vec<String>,
}

impl RunOutcome {
    /// The overall judgement, most severe first: interrupted, infrastructure,
    /// test failures, publishing.
    pub fn verdict(&self) -> RunVerdict {
        let summary = self.report.summary;
        if self.report.status == RunStatus::Interrupted {
            RunVerdict::Interrupted
        } else if self.report.status == RunStatus::Errored
            || summary.error > 0
            || !self.teardown_errors.is_empty()
            || self.report.suites.iter().any(|s| s.error.is_some())
        {
            RunVerdict::InfrastructureError
        } else if summary.fail + summary.hung + summary.crashed > 0 {
            RunVerdict::TestsFailed
        } else if self.publish_error.is_some() {
            RunVerdict::PublishFailed
        } else {
            RunVerdict::Passed
        }
    }
}

/// Runs the pipeline. Build it with [`Runner::from_settings`] (the real
/// providers, suites and publisher) or [`Runner::with_parts`] (your own).
pub struct Runner {
    settings: Settings,
    provider: Arc<dyn CloudProvider>,
    connector: Arc<dyn Connector>,
    suites: Vec<Arc<dyn TestSuite>>,
    publisher: Option<Arc<dyn Publisher>>,
    /// Replaces `run.timeout-minutes` (tests: a deadline shorter than a minute).
    deadline: Option<Duration>,
    /// How often providers are asked for interruption notices.
    notice_poll: Duration,
    /// Replaces the kernel stage's builder (tests).
    kernel_builder: Option<Arc<dyn RemoteHost>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("provider", &self.provider.id())
            .field(
                "suites",
                &self
                    .suites
                    .iter()
                    .map(|s| s.id().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Tracks the test each machine is running, so an interruption can give it
/// a verdict, and what each suite pass finished, so a suite that fails
/// midway loses none of its finished tests.
#[derive(Default)]
struct Running {
    tests: Mutex<HashMap<(String, String), String>>,
    /// The last test each machine started in each suite (kept after it ends).
    last_started: Mutex<HashMap<(String, String), String>>,
    /// The outcomes each machine finished in the current pass of each suite.
    finished: Mutex<HashMap<(String, String), Vec<TestOutcome>>>,
    /// Why the run's machine is being taken away (a spot interruption
    /// notice); a sharded run's machines each have their own.
    interruption: Arc<Mutex<Option<String>>>,
}

impl Runner {
    /// A runner with the given parts.
    pub fn with_parts(
        settings: Settings,
        provider: Arc<dyn CloudProvider>,
        connector: Arc<dyn Connector>,
        suites: Vec<Arc<dyn TestSuite>>,
        publisher: Option<Arc<dyn Publisher>>,
    ) -> Self {
        Runner {
            settings,
            provider,
            connector,
            suites,
            publisher,
            deadline: None,
            notice_poll: recover::NOTICE_POLL,
            kernel_builder: None,
        }
    }

    /// A runner with the providers, suites and publisher the settings name.
    pub async fn from_settings(settings: Settings) -> Result<Self, RunError> {
        let provider = crate::registry::provider(&settings).await?;
        let suites = crate::registry::suites(&settings)?;
        let publisher = crate::registry::publisher(&settings);
        Ok(Runner::with_parts(
            settings,
            provider,
            Arc::new(crate::connect::DefaultConnector::default()),
            suites,
            publisher,
        ))
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs once. `cancel` stops the run (a signal); it still tears down,
    /// records the running test as interrupted and writes the report. Returns
    /// `Err` only when the results store cannot be written.
    pub async fn run(
        &self,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, RunError> {
        let run_id = RunId::generate(Utc::now());
        self.execute(run_id, None, events, cancel).await
    }

    /// Continues a stored run that was interrupted (or errored): on a new
    /// machine, the tests that have no verdict yet run, and their outcomes
    /// join the run's report. Tests recorded as `interrupted` run again.
    pub async fn resume(
        &self,
        run_id: &RunId,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, RunError> {
        let store = ResultsStore::new(self.settings.results_dir());
        let previous = store.read_report(run_id)?;
        self.execute(run_id.clone(), Some(previous), events, cancel)
            .await
    }

    async fn execute(
        &self,
        run_id: RunId,
        previous: Option<RunReport>,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, RunError> {
        let started_at = Utc::now();
        let store = ResultsStore::new(self.settings.results_dir());
        let run_dir = store.create_run(&run_id)?;
        // Outcomes a killed controller journaled but never put in the report.
        let journaled = match &previous {
            Some(_) => crate::journal::finished_outcomes(&run_dir.join("journal.jsonl")),
            None => Vec::new(),
        };
        let journal = Journal::open(&run_dir.join("journal.jsonl"))?;
        let running = Arc::new(Running::default());
        let sink = journaled_sink(events, journal, running.clone());

        let config = &self.settings.config;
        let provenance = Provenance {
            btrfsqa_version: env!("CARGO_PKG_VERSION").to_owned(),
            config_hash: self.settings.config_hash.clone(),
            provider: self.provider.id().to_owned(),
            controller: hostname(),
            ..Provenance::default()
        };
        let mut report = match previous {
            Some(previous) => {
                if previous.provenance.config_hash != provenance.config_hash {
                    sink(Event::Warning {
                        machine: None,
                        message: format!(
                            "resuming {run_id} with a configuration that differs from the one it started with"
                        ),
                    });
                }
                let mut report = previous;
                recover_journaled(&mut report, journaled);
                resumable(report)
            }
            None => {
                let mut report = RunReport::start(run_id.clone(), started_at, provenance);
                report.labels = config.run.labels.clone();
                report
            }
        };
        store.write_report(&report)?;
        sink(Event::RunStarted {
            run_id: run_id.clone(),
            provider: self.provider.id().to_owned(),
            suites: self.suites.iter().map(|s| s.id().to_owned()).collect(),
        });

        // The deadline is a cancellation like a signal, told apart afterwards.
        let stop = cancel.child_token();
        let deadline = self.deadline.unwrap_or(Duration::from_secs(
            config.run.timeout_minutes.saturating_mul(60),
        ));
        let timer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                stop.cancel();
            })
        };

        let mut teardown_errors = Vec::new();
        let machines = self
            .provision_all(&run_id, &run_dir, &mut report, &sink)
            .await;
        if !machines.is_empty() {
            report
                .provenance
                .machines
                .extend(machines.iter().map(Machine::info));
            store.write_report(&report)?;
            let outcome = if machines.len() == 1 {
                self.use_machine(
                    &machines[0],
                    &run_dir,
                    &store,
                    &mut report,
                    &sink,
                    &stop,
                    &running,
                )
                .await
            } else {
                // (Reruns of new failures need one machine that stays up:
                // a sharded run classifies without them.)
                self.run_sharded(
                    &machines,
                    &run_dir,
                    &store,
                    &mut report,
                    &sink,
                    &stop,
                    &running,
                )
                .await
            };
            if let Err(message) = outcome {
                report.error.get_or_insert(message);
            }
            let sink_ref = &sink;
            let teardowns = machines.iter().map(|machine| async move {
                sink_ref(Event::StageStarted {
                    machine: Some(machine.name.clone()),
                    stage: Stage::Teardown,
                });
                let result = self.provider.teardown(machine).await;
                (machine, result)
            });
            let mut cost: Option<f64> = None;
            for (machine, result) in futures_util::future::join_all(teardowns).await {
                match result {
                    Ok(()) => {
                        sink(stage_done(&machine.name, Stage::Teardown, None));
                        if machine.provider == "aws"
                            && let Some(c) =
                                btrfsqa_cloud::AwsProvider::cost_estimate(machine, Utc::now())
                        {
                            *cost.get_or_insert(0.0) += c;
                        }
                    }
                    Err(err) => {
                        let message = error_chain(&err);
                        sink(stage_done(
                            &machine.name,
                            Stage::Teardown,
                            Some(message.clone()),
                        ));
                        teardown_errors.push(message);
                    }
                }
            }
            report.cost_usd = cost;
        }
        timer.abort();

        let status = if cancel.is_cancelled() {
            report
                .error
                .get_or_insert_with(|| "interrupted by a signal".to_owned());
            RunStatus::Interrupted
        } else if let Some(reason) = running.interruption.lock().expect("not poisoned").clone() {
            report.error = Some(format!(
                "{reason}; `btrfsqa resume {run_id}` runs the tests that have no verdict"
            ));
            RunStatus::Interrupted
        } else if stop.is_cancelled() {
            report.error = Some(format!(
                "the run exceeded `run.timeout-minutes` ({} min)",
                config.run.timeout_minutes
            ));
            RunStatus::Interrupted
        } else if report.error.is_some() {
            RunStatus::Errored
        } else {
            RunStatus::Completed
        };
        report.finish(status, Utc::now());
        // The report reaches the store before anything is published.
        store.write_report(&report)?;

        let (mut published, mut publish_error) = (None, None);
        if let Some(publisher) = &self.publisher
            && !cancel.is_cancelled()
        {
            sink(Event::StageStarted {
                machine: None,
                stage: Stage::Publish,
            });
            match publisher.publish(&store, &run_id).await {
                Ok(done) => {
                    sink(Event::StageFinished {
                        machine: None,
                        stage: Stage::Publish,
                        ok: true,
                        message: Some(done.location.clone()),
                    });
                    published = Some(done);
                }
                Err(err) => {
                    let message = error_chain(&err);
                    sink(Event::StageFinished {
                        machine: None,
                        stage: Stage::Publish,
                        ok: false,
                        message: Some(message.clone()),
                    });
                    publish_error = Some(message);
                }
            }
        }
        if !cancel.is_cancelled()
            && let Some(summary) = &report.comparison
            && config.notify.should_notify(summary)
        {
            let notified = crate::notify::send(&config.notify, summary).await;
            for error in notified.errors {
                sink(Event::Warning {
                    machine: None,
                    message: format!("notification failed: {}", error_chain(&error)),
                });
            }
        }
        sink(Event::RunFinished {
            run_id,
            status: report.status,
            summary: report.summary,
            results_dir: run_dir.display().to_string(),
        });
        Ok(RunOutcome {
            report,
            run_dir,
            published,
            publish_error,
            teardown_errors,
        })
    }

    /// Classifies every test against the run's baseline from the store (new
    /// failure, fixed, flaky, expected...) into `report.comparison`. With a
    /// machine (`ctx`), new failures are first rerun (`rerun-new-failures`
    /// times) so a test that passes on rerun is called flaky, not a regression.
    async fn compare_with_baseline(
        &self,
        ctx: Option<&SuiteContext>,
        store: &ResultsStore,
        report: &mut RunReport,
        running: &Arc<Running>,
    ) {
        let config = &self.settings.config;
        let past: Vec<RunReport> = store
            .load_all()
            .map(|(reports, _)| reports)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.run_id != report.run_id)
            .collect();
        let mut comparison = crate::history::compare_run(report, &past, &config.expectations);
        if let Some(ctx) = ctx {
            let plan = crate::history::rerun_plan(&comparison, &config.expectations);
            if !plan.tests.is_empty() && !ctx.cancel.is_cancelled() {
                ctx.emit(Event::Warning {
                    machine: Some(ctx.devices.name.clone()),
                    message: format!(
                        "rerunning {} new failure(s) {} time(s) to tell regressions from flakes",
                        plan.tests.len(),
                        plan.times
                    ),
                });
                for _ in 0..plan.times {
                    for (suite_id, names) in plan.by_suite() {
                        let Some(suite) = self.suites.iter().find(|s| s.id() == suite_id) else {
                            continue;
                        };
                        let mut rerun_ctx = ctx.clone();
                        rerun_ctx.only = Some(names);
                        let (rerun, _) = self
                            .run_suite_with(suite.as_ref(), &rerun_ctx, running, false)
                            .await;
                        crate::history::record_reruns(report, &plan, rerun);
                    }
                }
                btrfsqa_model::compare::apply_reruns(&mut comparison, report);
            }
        }
        report.comparison = Some(crate::history::summarize_for_report(
            &comparison,
            config.notify.run_page(&report.run_id),
        ));
        let _ = store.write_report(report);
    }

    /// Provisions `run.shards` machines at once. Machines that could not be
    /// made are reported; the run goes on with the others (none: an error).
    async fn provision_all(
        &self,
        run_id: &RunId,
        run_dir: &std::path::Path,
        report: &mut RunReport,
        sink: &EventSink,
    ) -> Vec<Machine> {
        let config = &self.settings.config;
        let specs: Vec<MachineSpec> = (0..config.run.shards.max(1))
            .map(|i| MachineSpec {
                run_id: run_id.clone(),
                name: format!("{}-{i}", self.provider.id()),
                data_devices: config.machine.data_devices,
                device_size: config.machine.device_size_gib << 30,
            })
            .collect();
        // Provisioning is not raced against cancellation: a half-made machine
        // is harder to clean than a whole one, so it finishes and is torn down.
        let provisions = specs.iter().map(|spec| async move {
            sink(Event::StageStarted {
                machine: Some(spec.name.clone()),
                stage: Stage::Provision,
            });
            (spec, self.provider.provision(spec).await)
        });
        let mut machines = Vec::new();
        let mut failures = Vec::new();
        for (spec, result) in futures_util::future::join_all(provisions).await {
            match result {
                Ok(machine) => {
                    sink(stage_done(&spec.name, Stage::Provision, None));
                    let _ = write_machine_record(run_dir, &machine);
                    machines.push(machine);
                }
                Err(err) => {
                    let message = error_chain(&err);
                    sink(stage_done(
                        &spec.name,
                        Stage::Provision,
                        Some(message.clone()),
                    ));
                    failures.push(message);
                }
            }
        }
        if machines.is_empty() {
            report.error = Some(format!("provisioning failed: {}", failures.join("; ")));
        } else if !failures.is_empty() {
            sink(Event::Warning {
                machine: None,
                message: format!(
                    "{} of {} machines could not be provisioned; going on with {}: {}",
                    failures.len(),
                    specs.len(),
                    machines.len(),
                    failures.join("; ")
                ),
            });
        }
        machines
    }

    /// Spreads the suites' tests over `machines`: an idle machine pulls the
    /// longest remaining test (durations from the store's history), so a slow
    /// machine or a long test cannot hold the run. Suites that cannot list
    /// their tests run whole, on whichever machine takes them.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, all of it run state"
    )]
    async fn run_sharded(
        &self,
        machines: &[Machine],
        run_dir: &std::path::Path,
        store: &ResultsStore,
        report: &mut RunReport,
        sink: &EventSink,
        stop: &CancellationToken,
        running: &Arc<Running>,
    ) -> Result<(), String> {
        let queue = Mutex::new(std::collections::VecDeque::from(
            self.work_list(store, report),
        ));
        let shared = tokio::sync::Mutex::new(report.clone());
        let workers = machines.iter().map(|machine| {
            self.shard_worker(
                machine, run_dir, store, &shared, sink, stop, running, &queue,
            )
        });
        let results = futures_util::future::join_all(workers).await;
        *report = shared.into_inner();
        // Work a machine gave back after the others had finished.
        let left: Vec<String> = queue
            .into_inner()
            .expect("not poisoned")
            .iter()
            .map(|item| {
                let suite = self.suites[item.suite].id();
                match &item.test {
                    Some(test) => format!("{suite}/{test}"),
                    None => suite.to_owned(),
                }
            })
            .collect();
        if !left.is_empty() && !stop.is_cancelled() {
            report.error.get_or_insert(format!(
                "no machine was left to run {}; `btrfsqa resume {}` runs them",
                left.join(", "),
                report.run_id
            ));
        }
        // Tests in the order one machine would have run them, so a sharded
        // report reads (and compares) like an unsharded one.
        for suite_report in &mut report.suites {
            if let Some(order) = self
                .suites
                .iter()
                .find(|s| s.id() == suite_report.id)
                .and_then(|s| s.tests())
            {
                suite_report.tests.sort_by_key(|t| {
                    order
                        .iter()
                        .position(|n| *n == t.name)
                        .unwrap_or(usize::MAX)
                });
            }
        }
        report
            .suites
            .sort_by_key(|r| self.suites.iter().position(|s| s.id() == r.id));
        report.recount();
        self.compare_with_baseline(None, store, report, running)
            .await;
        let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if errors.len() == machines.len() {
            Err(errors.join("; "))
        } else {
            for error in errors {
                sink(Event::Warning {
                    machine: None,
                    message: error,
                });
            }
            Ok(())
        }
    }

    /// The queue of a sharded run, longest first.
    fn work_list(&self, store: &ResultsStore, report: &RunReport) -> Vec<ShardItem> {
        crate::schedule::suite_work(
            &self.suites,
            &crate::schedule::history_durations(store),
            &|suite| finished_tests(report, suite),
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, all of it run state"
    )]
    async fn shard_worker(
        &self,
        machine: &Machine,
        run_dir: &std::path::Path,
        store: &ResultsStore,
        report: &tokio::sync::Mutex<RunReport>,
        sink: &EventSink,
        stop: &CancellationToken,
        running: &Arc<Running>,
        queue: &Mutex<std::collections::VecDeque<ShardItem>>,
    ) -> Result<(), String> {
        let name = machine.name.clone();
        // A machine taken away (a spot interruption) stops alone; the other
        // machines take its tests.
        let machine_stop = stop.child_token();
        let notice = Arc::new(Mutex::new(None));
        let mut session = {
            let mut report = report.lock().await;
            self.open_session(machine, run_dir, store, &mut report, sink, &machine_stop)
                .await?
        };
        let _watch = self.watch_notices(machine, &machine_stop, notice.clone(), sink);
        let mut recovery = Recovery::default();
        let mut given_up = None;
        let mut prepared: HashMap<usize, Result<(), String>> = HashMap::new();
        loop {
            if machine_stop.is_cancelled() {
                break;
            }
            let Some(item) = queue.lock().expect("not poisoned").pop_front() else {
                break;
            };
            let suite = self.suites[item.suite].as_ref();
            if let std::collections::hash_map::Entry::Vacant(slot) = prepared.entry(item.suite) {
                let result = suite
                    .prepare(&session.ctx)
                    .await
                    .map_err(|e| error_chain(&e));
                slot.insert(result);
            }
            let mut ctx = session.ctx.clone();
            ctx.only = item.test.clone().map(|t| vec![t]);
            if item.test.is_none() {
                ctx.skip = finished_tests(&*report.lock().await, suite.id());
            }
            let mut part = match &prepared[&item.suite] {
                Ok(()) => {
                    let (mut part, trouble) =
                        self.run_suite_with(suite, &ctx, running, false).await;
                    if let Some(trouble) = trouble
                        && !stop.is_cancelled()
                    {
                        let result = self
                            .recover(
                                machine,
                                &mut session,
                                &mut part,
                                trouble,
                                &mut recovery,
                                sink,
                                stop,
                            )
                            .await;
                        // A whole suite goes on where it stopped; a test whose
                        // connection broke (it has no verdict now) runs again.
                        let again = match &item.test {
                            None => true,
                            Some(test) => !part.tests.iter().any(|t| &t.name == test),
                        };
                        if again {
                            queue.lock().expect("not poisoned").push_front(item.clone());
                        }
                        // The machine may have been reset: set up again.
                        prepared.clear();
                        if let Err(message) = result {
                            given_up = Some(message);
                        }
                    }
                    part
                }
                Err(message) => {
                    let mut part = SuiteReport::new(suite.id());
                    part.error = Some(format!("setup on `{name}` failed: {message}"));
                    if let Some(test) = &item.test {
                        let mut outcome = TestOutcome::new(suite.id(), test, Verdict::Error)
                            .with_message(format!(
                                "the suite could not be set up on `{name}`: {message}"
                            ));
                        outcome.machine = Some(name.clone());
                        part.tests.push(ctx.test_finished(outcome));
                    }
                    part
                }
            };
            let taken_away = machine_stop.is_cancelled() && !stop.is_cancelled();
            if taken_away {
                // What it was running gets a verdict on another machine.
                part.tests.retain(|t| t.verdict != Verdict::Interrupted);
                part.error = None;
                queue.lock().expect("not poisoned").push_front(item.clone());
                let reason = notice.lock().expect("not poisoned").clone();
                given_up = Some(format!(
                    "{}; its tests go to the other machines",
                    reason.unwrap_or_else(|| format!("machine `{name}` was taken away"))
                ));
            }
            crate::recording::attach(session.recording.as_ref(), &mut part);
            let mut report = report.lock().await;
            merge_suite_report(&mut report, part);
            report.recount();
            // Each finished test is durable before the machine pulls the next.
            let _ = store.write_report(&report);
            if let Some(message) = given_up {
                // The other machines take the rest of the queue.
                sink(stage_done(&name, Stage::Suites, Some(message.clone())));
                return Err(message);
            }
        }
        sink(stage_done(&name, Stage::Suites, None));
        sink(Event::StageStarted {
            machine: Some(name.clone()),
            stage: Stage::Collect,
        });
        let cleanup = release_devices(session.host.as_ref(), machine).await;
        sink(stage_done(&name, Stage::Collect, cleanup.clone().err()));
        cleanup.map_err(|message| format!("cleaning up `{name}`: {message}"))
    }

    /// What the kernel stage needs from this runner.
    fn kernel_env<'a>(
        &'a self,
        run_dir: &'a std::path::Path,
        sink: &'a EventSink,
        stop: &'a CancellationToken,
    ) -> crate::kernel::StageEnv<'a> {
        crate::kernel::StageEnv {
            settings: &self.settings,
            provider: &self.provider,
            connector: &self.connector,
            run_dir,
            sink,
            stop,
            builder: self.kernel_builder.clone(),
        }
    }

    /// Connects to a machine, runs the kernel stage, starts recording and
    /// records its kernel: everything a machine needs before its suites.
    async fn open_session(
        &self,
        machine: &Machine,
        run_dir: &std::path::Path,
        store: &ResultsStore,
        report: &mut RunReport,
        sink: &EventSink,
        stop: &CancellationToken,
    ) -> Result<Session, String> {
        let name = machine.name.clone();
        sink(Event::StageStarted {
            machine: Some(name.clone()),
            stage: Stage::Prepare,
        });
        let host = tokio::select! {
            host = self.connector.connect(machine) => host.map_err(|err| {
                let message = error_chain(&err);
                sink(stage_done(&name, Stage::Prepare, Some(message.clone())));
                format!("cannot reach machine `{name}`: {message}")
            })?,
            () = stop.cancelled() => return Err("stopped before the machine was reachable".into()),
        };
        // The kernel stage (nothing for the installed kernel) may boot the
        // machine into a built kernel: what follows uses the host it returns.
        let kernel_env = self.kernel_env(run_dir, sink, stop);
        let host = match crate::kernel::run_stage(&kernel_env, machine, host, report).await {
            Ok(host) => host,
            Err(message) => {
                sink(stage_done(&name, Stage::Prepare, Some(message.clone())));
                let _ = store.write_report(report);
                return Err(message);
            }
        };
        // Everything run on the machine from here on is recorded (redacted).
        let (host, recording) = crate::recording::record(run_dir, &name, host, sink);
        let kernel = kernel_info(host.as_ref()).await;
        if let Some(info) = report
            .provenance
            .machines
            .iter_mut()
            .find(|m| m.name == name)
        {
            info.kernel = kernel.clone();
        }
        report.provenance.kernel = kernel;
        crate::kernel::record_source(report);
        let _ = store.write_report(report);
        sink(stage_done(&name, Stage::Prepare, None));
        sink(Event::MachineReady {
            machine: report
                .provenance
                .machines
                .iter()
                .find(|m| m.name == name)
                .cloned()
                .unwrap_or_else(|| machine.info()),
        });

        let ctx = SuiteContext {
            host: host.clone(),
            devices: MachineDevices {
                name: name.clone(),
                test_dev: machine.test_dev.clone(),
                scratch_devs: machine.scratch_devs.clone(),
                work_dir: machine.work_dir.clone(),
            },
            run_dir: run_dir.to_owned(),
            events: crate::recording::marking_sink(recording.as_ref(), sink),
            cancel: stop.clone(),
            only: None,
            skip: Vec::new(),
            derived_timeouts: crate::schedule::derived_timeouts(store),
        };
        sink(Event::StageStarted {
            machine: Some(name.clone()),
            stage: Stage::Suites,
        });
        let console_mark = self.provider.console(machine).await.map_or(0, |c| c.len());
        Ok(Session {
            host,
            recording,
            ctx,
            kernel_release: report
                .provenance
                .machines
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| m.kernel.release.clone()),
            console_mark,
        })
    }

    /// Everything between provisioning and teardown. An `Err` is the message
    /// for the report; teardown happens in the caller whatever this returns.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, all of it run state"
    )]
    async fn use_machine(
        &self,
        machine: &Machine,
        run_dir: &std::path::Path,
        store: &ResultsStore,
        report: &mut RunReport,
        sink: &EventSink,
        stop: &CancellationToken,
        running: &Arc<Running>,
    ) -> Result<(), String> {
        let name = machine.name.clone();
        let mut session = self
            .open_session(machine, run_dir, store, report, sink, stop)
            .await?;
        let _watch = self.watch_notices(machine, stop, running.interruption.clone(), sink);
        let mut recovery = Recovery::default();
        for suite in &self.suites {
            // A suite stopped by a hang or a lost machine runs again, after
            // the machine is recovered, without its finished tests.
            loop {
                if stop.is_cancelled() {
                    break;
                }
                let mut suite_ctx = session.ctx.clone();
                suite_ctx.skip = finished_tests(report, suite.id());
                let (mut suite_report, trouble) = self
                    .run_suite_with(suite.as_ref(), &suite_ctx, running, true)
                    .await;
                let recovered = match trouble {
                    Some(trouble) if !stop.is_cancelled() => Some(
                        self.recover(
                            machine,
                            &mut session,
                            &mut suite_report,
                            trouble,
                            &mut recovery,
                            sink,
                            stop,
                        )
                        .await,
                    ),
                    _ => None,
                };
                crate::recording::attach(session.recording.as_ref(), &mut suite_report);
                sink(Event::SuiteFinished {
                    machine: name.clone(),
                    suite: suite_report.id.clone(),
                    counts: suite_report.counts(),
                    error: suite_report.error.clone(),
                });
                merge_suite_report(report, suite_report);
                report.recount();
                // Each finished suite is durable before the next one starts.
                let _ = store.write_report(report);
                match recovered {
                    None => break,
                    Some(Ok(())) => continue,
                    Some(Err(message)) => {
                        sink(stage_done(&name, Stage::Suites, Some(message.clone())));
                        return Err(message);
                    }
                }
            }
        }
        // New failures are rerun while the machine is still up.
        self.compare_with_baseline(Some(&session.ctx), store, report, running)
            .await;
        sink(stage_done(&name, Stage::Suites, None));
        let host = session.host.clone();

        // Leave the devices unmounted whatever the suites did; providers that
        // delete the devices do this too, static hosts rely on it.
        sink(Event::StageStarted {
            machine: Some(name.clone()),
            stage: Stage::Collect,
        });
        let cleanup = release_devices(host.as_ref(), machine).await;
        sink(stage_done(&name, Stage::Collect, cleanup.clone().err()));
        cleanup.map_err(|message| format!("cleaning up `{name}`: {message}"))
    }

    /// Polls the provider for a notice that `machine` is being taken away
    /// (a spot interruption); on one, puts why in `notice` and cancels
    /// `stop` (the run's, or one machine's in a sharded run). Stops polling
    /// when the returned guard is dropped.
    fn watch_notices(
        &self,
        machine: &Machine,
        stop: &CancellationToken,
        notice: Arc<Mutex<Option<String>>>,
        sink: &EventSink,
    ) -> AbortOnDrop {
        let provider = self.provider.clone();
        let machine = machine.clone();
        let stop = stop.clone();
        let sink = sink.clone();
        let every = self.notice_poll;
        AbortOnDrop(Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.cancelled() => return,
                }
                if let Some(reason) = provider.interruption_notice(&machine).await {
                    let message =
                        format!("machine `{}` is being taken away: {reason}", machine.name);
                    sink(Event::Warning {
                        machine: Some(machine.name.clone()),
                        message: message.clone(),
                    });
                    notice.lock().expect("not poisoned").get_or_insert(message);
                    stop.cancel();
                    return;
                }
            }
        })))
    }

    /// After a suite stopped on `trouble`: keeps the evidence with the test,
    /// gives it its verdict in `part` (`hung`, `crashed`, or no verdict when
    /// only the connection broke and the test should run again), and makes
    /// the machine usable again (a reset and a new connection, or a clean-up
    /// where the provider cannot reset). `Err` when the machine cannot be
    /// used any more: its remaining tests keep no verdict (resumable).
    #[expect(
        clippy::too_many_arguments,
        reason = "two call sites, all of it run state"
    )]
    async fn recover(
        &self,
        machine: &Machine,
        session: &mut Session,
        part: &mut SuiteReport,
        trouble: Trouble,
        recovery: &mut Recovery,
        sink: &EventSink,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        let name = machine.name.clone();
        let suite = part.id.clone();
        let host = session.host.clone();
        let alive = recover::answers(host.as_ref(), Duration::from_secs(30)).await;
        let console = self.provider.console(machine).await;
        let this_boot = console
            .as_deref()
            .map(|c| recover::text_after(c, session.console_mark))
            .unwrap_or_default();
        let crash = recover::console_crash(this_boot);
        let ctx = &session.ctx;
        let outcome_of = |part: &mut SuiteReport, test: &str| -> usize {
            match part.tests.iter().rposition(|t| t.name == test) {
                Some(at) => at,
                None => {
                    let mut outcome = TestOutcome::new(&suite, test, Verdict::Error);
                    outcome.machine = Some(name.clone());
                    part.tests.push(outcome);
                    part.tests.len() - 1
                }
            }
        };
        let reason = match &trouble {
            Trouble::Hung { test } => {
                let mut evidence = match alive {
                    true => recover::hang_evidence(host.as_ref())
                        .await
                        .unwrap_or_else(|| "(the evidence command did not finish)\n".into()),
                    false => "(the machine does not answer: no kernel log)\n".into(),
                };
                if !this_boot.is_empty() {
                    evidence.push_str("\n== btrfsqa: console (last 200 lines) ==\n");
                    evidence.push_str(&recover::tail(this_boot, 200));
                }
                let at = outcome_of(part, test);
                if let Ok(artifact) = ctx.write_artifact(
                    &suite,
                    test,
                    "hang-evidence.txt",
                    btrfsqa_model::ArtifactKind::Log,
                    evidence.as_bytes(),
                ) {
                    part.tests[at].artifacts.push(artifact);
                }
                if let Some((headline, _)) = &crash {
                    let outcome = &mut part.tests[at];
                    outcome.message = Some(format!(
                        "{}\nthe console shows: {headline}",
                        outcome.message.as_deref().unwrap_or("hung")
                    ));
                }
                format!("`{suite}/{test}` hung")
            }
            Trouble::Lost { test, error } => {
                if alive && crash.is_none() {
                    // The connection broke; the machine did not.
                    if let Some(test) = test {
                        let key = format!("{suite}/{test}");
                        if recovery.retried.insert(key) {
                            part.tests.retain(|t| &t.name != test);
                            sink(Event::Warning {
                                machine: Some(name.clone()),
                                message: format!(
                                    "the connection to `{name}` broke during `{suite}/{test}` ({error}); the machine answers: running the test again"
                                ),
                            });
                        } else {
                            let at = outcome_of(part, test);
                            let outcome = &mut part.tests[at];
                            outcome.verdict = Verdict::Error;
                            outcome.message = Some(format!(
                                "the connection to `{name}` broke twice during this test (the machine answers): {error}"
                            ));
                        }
                    } else {
                        part.error = Some(format!("the connection to `{name}` broke: {error}"));
                    }
                    return release_devices(host.as_ref(), machine).await.map_err(|m| {
                        format!("cleaning up `{name}` after a broken connection: {m}")
                    });
                }
                if let Some(test) = test {
                    let at = outcome_of(part, test);
                    let kept = match &crash {
                        Some((_, excerpt)) => Some(excerpt.clone()),
                        None if !this_boot.is_empty() => Some(recover::tail(this_boot, 200)),
                        None => None,
                    };
                    if let Some(kept) = kept
                        && let Ok(artifact) = ctx.write_artifact(
                            &suite,
                            test,
                            "console.txt",
                            btrfsqa_model::ArtifactKind::Console,
                            kept.as_bytes(),
                        )
                    {
                        part.tests[at].artifacts.push(artifact);
                    }
                    let outcome = &mut part.tests[at];
                    outcome.verdict = Verdict::Crashed;
                    outcome.message = Some(match &crash {
                        Some((headline, _)) => format!("the kernel crashed: {headline}"),
                        None => format!(
                            "the machine stopped answering while this test ran (no panic on the console): {error}"
                        ),
                    });
                    // The journal's last word on the test is its verdict.
                    sink(Event::TestFinished {
                        machine: name.clone(),
                        outcome: outcome.clone(),
                    });
                }
                match test {
                    Some(test) => format!("`{suite}/{test}` crashed it"),
                    None => format!("it stopped answering during `{suite}`"),
                }
            }
        };
        part.error = None;

        if recovery.resets >= recover::MAX_RESETS {
            return Err(format!(
                "machine `{name}` needed more than {} resets ({reason}); its remaining tests were not run (`btrfsqa resume` runs them)",
                recover::MAX_RESETS
            ));
        }
        recovery.resets += 1;
        sink(Event::Warning {
            machine: Some(name.clone()),
            message: format!("recovering machine `{name}`: {reason}"),
        });
        let host = match self.provider.reset(machine).await {
            Ok(()) => {
                let host = tokio::select! {
                    host = self.connector.connect(machine) => host.map_err(|err| format!(
                        "machine `{name}` did not come back after its reset: {}",
                        error_chain(&err)
                    ))?,
                    () = stop.cancelled() => return Err("stopped while the machine was being reset".into()),
                };
                crate::recording::rewrap(session.recording.as_ref(), host)
            }
            // A static host that still answers: rebooted over SSH (the same
            // connection object comes back connected to the new boot).
            Err(btrfsqa_cloud::ProvisionError::Unsupported { .. })
                if alive && matches!(machine.access, btrfsqa_cloud::Access::Ssh(_)) =>
            {
                sink(Event::Warning {
                    machine: Some(name.clone()),
                    message: format!(
                        "provider `{}` cannot reset `{name}`: rebooting it over SSH",
                        self.provider.id()
                    ),
                });
                tokio::select! {
                    rebooted = host.reboot_and_wait(REBOOT_TIMEOUT) => rebooted.map_err(|err| format!(
                        "machine `{name}` did not come back from its reboot ({reason}): {}",
                        error_chain(&err)
                    ))?,
                    () = stop.cancelled() => return Err("stopped while the machine was rebooting".into()),
                }
                host.clone()
            }
            Err(btrfsqa_cloud::ProvisionError::Unsupported { .. }) => {
                // This machine (or a static host that no longer answers).
                if !alive {
                    return Err(format!(
                        "machine `{name}` does not answer and provider `{}` cannot reset it ({reason})",
                        self.provider.id()
                    ));
                }
                release_devices(host.as_ref(), machine)
                    .await
                    .map_err(|m| format!("cleaning up `{name}` after {reason}: {m}"))?;
                sink(Event::Warning {
                    machine: Some(name.clone()),
                    message: format!(
                        "provider `{}` cannot reset `{name}`: its devices were cleaned up instead; going on",
                        self.provider.id()
                    ),
                });
                return Ok(());
            }
            Err(err) => {
                return Err(format!(
                    "resetting machine `{name}` failed ({reason}): {}",
                    error_chain(&err)
                ));
            }
        };
        let mut host = host;
        let kernel = kernel_info(host.as_ref()).await;
        if let (Some(want), Some(got)) = (&session.kernel_release, &kernel.release)
            && want != got
        {
            // A machine that boots its own kernel after a reset (an EC2
            // reboot, a static host) gets the kernel under test again; the
            // build is in the results store, so this is an install and boot.
            if self.settings.config.kernel.git_source().is_none() {
                return Err(format!(
                    "machine `{name}` came back from its reset with kernel {got}, not {want}"
                ));
            }
            sink(Event::Warning {
                machine: Some(name.clone()),
                message: format!(
                    "machine `{name}` came back with kernel {got}: booting {want} again"
                ),
            });
            let env = self.kernel_env(&session.ctx.run_dir, sink, stop);
            // The stage's own record of this boot is not kept: the run's
            // report has the first one.
            let mut scratch =
                RunReport::start(machine.run_id.clone(), Utc::now(), Provenance::default());
            scratch.provenance.machines.push(machine.info());
            host = crate::kernel::run_stage(&env, machine, host, &mut scratch)
                .await
                .map_err(|m| {
                    format!("booting the kernel under test on `{name}` after its reset failed: {m}")
                })?;
            host = crate::recording::rewrap(session.recording.as_ref(), host);
            let again = kernel_info(host.as_ref()).await;
            if again.release.as_ref() != Some(want) {
                return Err(format!(
                    "machine `{name}` runs kernel {} after its reset, not {want}",
                    again.release.as_deref().unwrap_or("(unknown)")
                ));
            }
        }
        session.console_mark = self.provider.console(machine).await.map_or(0, |c| c.len());
        session.host = host.clone();
        session.ctx.host = host;
        sink(Event::Warning {
            machine: Some(name),
            message: "machine is back after its reset; going on with the tests not yet run".into(),
        });
        Ok(())
    }

    /// Runs one suite (preparing it first when `prepare`) and always returns
    /// a report: errors and cancellation become its `error`. A test that
    /// hung or a machine that stopped answering is the [`Trouble`] returned
    /// beside it, for [`Runner::recover`].
    async fn run_suite_with(
        &self,
        suite: &dyn TestSuite,
        ctx: &SuiteContext,
        running: &Arc<Running>,
        prepare: bool,
    ) -> (SuiteReport, Option<Trouble>) {
        let id = suite.id().to_owned();
        let machine = ctx.devices.name.clone();
        let key = (machine.clone(), id.clone());
        running.finished.lock().expect("not poisoned").remove(&key);
        running
            .last_started
            .lock()
            .expect("not poisoned")
            .remove(&key);
        // What the suite finished before an error, as its events told it.
        let finished_so_far = || {
            running
                .finished
                .lock()
                .expect("not poisoned")
                .remove(&key)
                .unwrap_or_default()
        };
        let mut trouble = None;
        ctx.emit(Event::SuiteStarted {
            machine: machine.clone(),
            suite: id.clone(),
            planned: None,
        });
        let started = Instant::now();
        let work = async {
            if prepare {
                suite.prepare(ctx).await?;
            }
            suite.run(ctx).await
        };
        let result = tokio::select! {
            result = work => Some(result),
            () = async {
                ctx.cancel.cancelled().await;
                tokio::time::sleep(CANCEL_GRACE).await;
            } => None,
        };
        let mut report = match result {
            Some(Ok(report)) => report,
            Some(Err(SuiteError::Cancelled { partial, .. })) => {
                let mut partial = *partial;
                partial
                    .error
                    .get_or_insert_with(|| "stopped before the end".to_owned());
                partial
            }
            Some(Err(SuiteError::Hung { test, partial, .. })) => {
                trouble = Some(Trouble::Hung { test });
                *partial
            }
            Some(Err(err @ SuiteError::Remote { .. })) if !ctx.cancel.is_cancelled() => {
                let mut report = SuiteReport::new(&id);
                report.tests = finished_so_far();
                trouble = Some(Trouble::Lost {
                    test: running
                        .last_started
                        .lock()
                        .expect("not poisoned")
                        .get(&key)
                        .cloned(),
                    error: error_chain(&err),
                });
                report
            }
            Some(Err(err)) => {
                let mut report = SuiteReport::new(&id);
                report.tests = finished_so_far();
                report.error = Some(error_chain(&err));
                report
            }
            None => {
                let mut report = SuiteReport::new(&id);
                report.error =
                    Some("did not stop within the grace period after cancellation".into());
                report
            }
        };
        // A test that started and never got a verdict was cut off.
        // Taken out in its own statement: the guard must be gone before
        // test_finished re-enters the sink, which locks the same map.
        let cut_off = running.tests.lock().expect("not poisoned").remove(&key);
        if let Some(test) = cut_off
            && !report.tests.iter().any(|t| t.name == test)
        {
            let verdict = if ctx.cancel.is_cancelled() {
                Verdict::Interrupted
            } else {
                Verdict::Error
            };
            let mut outcome = TestOutcome::new(&id, &test, verdict)
                .with_message("the run stopped while this test was running");
            outcome.machine = Some(machine.clone());
            report.tests.push(ctx.test_finished(outcome));
        }
        report
            .duration_secs
            .get_or_insert(started.elapsed().as_secs_f64());
        report.id = id;
        running.finished.lock().expect("not poisoned").remove(&key);
        (report, trouble)
    }
}

fn stage_done(machine: &str, stage: Stage, error: Option<String>) -> Event {
    Event::StageFinished {
        machine: Some(machine.to_owned()),
        stage,
        ok: error.is_none(),
        message: error,
    }
}

/// Wraps the user's sink: every event is journaled first and the running
/// test of each machine is tracked.
fn journaled_sink(user: EventSink, journal: Journal, running: Arc<Running>) -> EventSink {
    let journal = Mutex::new(journal);
    Arc::new(move |event: Event| {
        match &event {
            Event::TestStarted {
                machine,
                suite,
                test,
            } => {
                let key = (machine.clone(), suite.clone());
                running
                    .tests
                    .lock()
                    .expect("not poisoned")
                    .insert(key.clone(), test.clone());
                running
                    .last_started
                    .lock()
                    .expect("not poisoned")
                    .insert(key, test.clone());
            }
            Event::TestFinished { machine, outcome } => {
                let key = (machine.clone(), outcome.suite.clone());
                running.tests.lock().expect("not poisoned").remove(&key);
                running
                    .finished
                    .lock()
                    .expect("not poisoned")
                    .entry(key)
                    .or_default()
                    .push(outcome.clone());
            }
            _ => {}
        }
        if let Ok(mut journal) = journal.lock() {
            journal.append(&event);
        }
        user(event);
    })
}

/// An error with the full chain of its causes, `a: b: c`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

async fn kernel_info(host: &dyn RemoteHost) -> KernelInfo {
    let request = ExecRequest::new("uname -r; uname -v").timeout(Duration::from_secs(30));
    match host.exec(request, None).await {
        Ok(out) if out.success() => {
            let text = out.stdout_text();
            let mut lines = text.lines();
            KernelInfo {
                release: lines.next().map(str::to_owned),
                version: lines.next().map(str::to_owned),
                source: None,
            }
        }
        _ => KernelInfo::default(),
    }
}

/// Unmounts everything on the machine's devices or under its work directory.
async fn release_devices(host: &dyn RemoteHost, machine: &Machine) -> Result<(), String> {
    let mut devices: Vec<String> = vec![machine.test_dev.clone()];
    devices.extend(machine.scratch_devs.iter().cloned());
    let device_list = devices
        .iter()
        .map(|d| shell_quote(d))
        .collect::<Vec<_>>()
        .join(" ");
    // Deepest mount points first; a multi-device btrfs lists only one of its
    // devices in /proc/mounts, so mounts under the work dir are found by path.
    let script = format!(
        r#"work={work}
for dev in {device_list}; do
  real=$(readlink -f "$dev")
  awk -v d="$real" -v e="$dev" '$1 == d || $1 == e {{ print $2 }}' /proc/self/mounts
done | sort -ru | while read -r target; do umount "$target" 2>/dev/null || umount -l "$target"; done
awk -v w="$work/" 'index($2, w) == 1 {{ print $2 }}' /proc/self/mounts | sort -r | while read -r target; do umount "$target" 2>/dev/null || umount -l "$target"; done
if command -v btrfs >/dev/null; then for dev in {device_list}; do btrfs device scan --forget "$dev" 2>/dev/null; done; fi
left=$(for dev in {device_list}; do real=$(readlink -f "$dev"); awk -v d="$real" '$1 == d {{ print $2 }}' /proc/self/mounts; done)
[ -z "$left" ] || {{ echo "still mounted: $left"; exit 1; }}
"#,
        work = shell_quote(&machine.work_dir),
    );
    match host
        .exec(
            ExecRequest::new(script).timeout(Duration::from_secs(120)),
            None,
        )
        .await
    {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(format!(
            "{}{}",
            out.stdout_text().trim(),
            out.stderr_text().trim()
        )),
        Err(err) => Err(error_chain(&err)),
    }
}

/// Keeps what teardown and `btrfsqa teardown RUN_ID` need to find the
/// machine, in the run's directory. The provider's own tags and state files
/// are what `reap` relies on; this is the quick way back to a machine.
pub fn write_machine_record(run_dir: &std::path::Path, machine: &Machine) -> std::io::Result<()> {
    let path = run_dir.join(format!(
        "machine-{}.json",
        btrfsqa_model::safe_file_name(&machine.name)
    ));
    let json = serde_json::to_vec_pretty(machine).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

/// The machines recorded in a run's directory (unreadable records are skipped).
pub fn read_machine_records(run_dir: &std::path::Path) -> Vec<Machine> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    let mut machines: Vec<Machine> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("machine-") && name.ends_with(".json")
        })
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    machines.sort_by(|a, b| a.name.cmp(&b.name));
    machines
}

/// A machine ready for suites.
struct Session {
    host: Arc<dyn RemoteHost>,
    recording: Option<Arc<crate::recording::MachineRecording>>,
    ctx: SuiteContext,
    /// The kernel release the machine runs (a reset must come back to it).
    kernel_release: Option<String>,
    /// How long the console was when the machine last came up: a crash
    /// after it is this boot's.
    console_mark: usize,
}

/// What [`Runner::recover`] keeps across one machine's recoveries.
#[derive(Default)]
struct Recovery {
    resets: usize,
    /// `suite/test` run again after a broken connection (once each).
    retried: std::collections::HashSet<String>,
}

/// Stops the notice watcher with the machine's work.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Adds a (partial) suite report to the run's report, merging with what
/// other machines reported for the same suite.
fn merge_suite_report(report: &mut RunReport, part: SuiteReport) {
    match report.suites.iter_mut().find(|s| s.id == part.id) {
        Some(existing) => {
            existing.tests.extend(part.tests);
            existing.artifacts.extend(part.artifacts);
            existing.duration_secs = match (existing.duration_secs, part.duration_secs) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            if let Some(error) = part.error {
                existing.error = Some(match existing.error.take() {
                    Some(previous) if previous != error => format!("{previous}; {error}"),
                    _ => error,
                });
            }
            if existing.source.is_none() {
                existing.source = part.source;
            }
        }
        None => report.suites.push(part),
    }
}

/// The tests of suite `suite` that already have a verdict in `report`.
fn finished_tests(report: &RunReport, suite: &str) -> Vec<String> {
    report
        .suites
        .iter()
        .filter(|s| s.id == suite)
        .flat_map(|s| s.tests.iter().map(|t| t.name.clone()))
        .collect()
}

/// Adds to `report` the journaled outcomes it lacks (the controller was
/// killed between a test's end and the next write of the report). The
/// journal's last word on a test counts; reruns of new failures are not
/// separate tests and are left out.
fn recover_journaled(report: &mut RunReport, journaled: Vec<TestOutcome>) {
    let mut latest: Vec<TestOutcome> = Vec::new();
    for outcome in journaled {
        latest.retain(|o| {
            !(o.suite == outcome.suite && o.name == outcome.name && o.profile == outcome.profile)
        });
        latest.push(outcome);
    }
    for outcome in latest {
        let known = report.suites.iter().any(|s| {
            s.id == outcome.suite
                && s.tests
                    .iter()
                    .any(|t| t.name == outcome.name && t.profile == outcome.profile)
        });
        if known {
            continue;
        }
        match report.suites.iter_mut().find(|s| s.id == outcome.suite) {
            Some(suite) => suite.tests.push(outcome),
            None => {
                let mut suite = SuiteReport::new(&outcome.suite);
                suite.tests.push(outcome);
                report.suites.push(suite);
            }
        }
    }
    report.recount();
}

/// A stored report made ready to continue: running again, without the
/// verdicts that only say the run stopped.
fn resumable(mut report: RunReport) -> RunReport {
    report.status = RunStatus::Running;
    report.finished_at = None;
    report.error = None;
    for suite in &mut report.suites {
        suite.tests.retain(|t| t.verdict != Verdict::Interrupted);
        suite.error = None;
    }
    report.recount();
    report
}

#[cfg(test)]
mod tests {
    // SuiteError carries RemoteError (the contract); mocks return it by value.
    #![expect(clippy::result_large_err)]

    use super::*;
    use crate::config::ConfigSource;
    use crate::connect::MockConnector;
    use crate::settings::RunOverrides;
    use btrfsqa_cloud::{Access, MockCloudProvider, ProvisionError};
    use btrfsqa_publish::{MockPublisher, PublishError};
    use btrfsqa_remote::{ExecOutput, MockRemoteHost};
    use btrfsqa_suites::MockTestSuite;

    fn settings(dir: &std::path::Path, extra: &str) -> Settings {
        let source = ConfigSource {
            name: "test.toml".into(),
            base_dir: dir.to_owned(),
            text: format!(
                "[run]\nresults-dir = \"{}\"\n{extra}",
                dir.join("results").display()
            ),
        };
        Settings::resolve(&source, RunOverrides::default()).unwrap()
    }

    fn machine(spec: &MachineSpec) -> Machine {
        Machine {
            run_id: spec.run_id.clone(),
            name: spec.name.clone(),
            provider: "mock".into(),
            provider_id: "m-1".into(),
            access: Access::Local,
            test_dev: "/dev/loop90".into(),
            scratch_devs: vec!["/dev/loop91".into(), "/dev/loop92".into()],
            work_dir: "/tmp/btrfsqa-test-work".into(),
            instance_type: None,
            state: serde_json::Value::Null,
        }
    }

    /// A provider of `machine`s, torn down `teardowns` times; console,
    /// notices and resets are left to the test.
    fn base_provider(teardowns: usize) -> MockCloudProvider {
        let mut provider = MockCloudProvider::new();
        provider.expect_id().return_const("mock".to_owned());
        provider
            .expect_provision()
            .returning(|spec| Ok(machine(spec)));
        provider
            .expect_teardown()
            .times(teardowns)
            .returning(|_| Ok(()));
        provider
    }

    fn provider(teardowns: usize) -> MockCloudProvider {
        let mut provider = base_provider(teardowns);
        provider.expect_console().returning(|_| None);
        provider.expect_interruption_notice().returning(|_| None);
        provider
    }

    fn connector() -> MockConnector {
        connector_with_kernel("6.18.0-test")
    }

    fn suite(id: &'static str, verdicts: &'static [Verdict]) -> Arc<dyn TestSuite> {
        let mut suite = MockTestSuite::new();
        suite.expect_id().return_const(id.to_owned());
        suite.expect_prepare().returning(|_| Ok(()));
        suite.expect_tests().returning(|| None);
        suite.expect_run().returning(move |ctx| {
            let mut report = SuiteReport::new(id);
            for (i, verdict) in verdicts.iter().enumerate() {
                let name = format!("t{i}");
                ctx.test_started(id, &name);
                report
                    .tests
                    .push(ctx.test_finished(TestOutcome::new(id, name, *verdict)));
            }
            Ok(report)
        });
        Arc::new(suite)
    }

    fn collect() -> (EventSink, Arc<Mutex<Vec<Event>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink_events = events.clone();
        (
            Arc::new(move |e| sink_events.lock().unwrap().push(e)),
            events,
        )
    }

    #[tokio::test]
    async fn a_passing_run_is_stored_before_it_is_published_and_torn_down() {
        let dir = tempfile::tempdir().unwrap();
        let mut publisher = MockPublisher::new();
        publisher.expect_publish().times(1).returning(|store, run| {
            let stored = store.read_report(run).expect("stored before publishing");
            assert_eq!(stored.status, RunStatus::Completed);
            assert_eq!(stored.summary.pass, 2);
            Ok(Published {
                location: "site".into(),
                commit: Some("abc".into()),
            })
        });
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider(1)),
            Arc::new(connector()),
            vec![
                suite("a", &[Verdict::Pass, Verdict::Skip]),
                suite("b", &[Verdict::Pass]),
            ],
            Some(Arc::new(publisher)),
        );
        let (sink, events) = collect();
        let outcome = runner.run(sink, CancellationToken::new()).await.unwrap();
        assert_eq!(outcome.verdict(), RunVerdict::Passed);
        assert_eq!(
            outcome.report.provenance.kernel.release.as_deref(),
            Some("6.18.0-test")
        );
        assert_eq!(outcome.report.suites.len(), 2);
        let journal = std::fs::read_to_string(outcome.run_dir.join("journal.jsonl")).unwrap();
        assert_eq!(journal.matches("\"test-finished\"").count(), 3);
        let events = events.lock().unwrap();
        assert!(matches!(events.last(), Some(Event::RunFinished { .. })));
    }

    #[tokio::test]
    async fn failures_errors_and_publish_problems_map_to_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let run = |suites: Vec<Arc<dyn TestSuite>>, publisher: Option<Arc<dyn Publisher>>| {
            let runner = Runner::with_parts(
                settings(dir.path(), ""),
                Arc::new(provider(1)),
                Arc::new(connector()),
                suites,
                publisher,
            );
            async move {
                runner
                    .run(collect().0, CancellationToken::new())
                    .await
                    .unwrap()
            }
        };
        let failed = run(vec![suite("a", &[Verdict::Pass, Verdict::Fail])], None).await;
        assert_eq!(failed.verdict(), RunVerdict::TestsFailed);
        let hung = run(vec![suite("a", &[Verdict::Hung])], None).await;
        assert_eq!(hung.verdict(), RunVerdict::TestsFailed);

        let mut broken = MockTestSuite::new();
        broken.expect_id().return_const("broken".to_owned());
        broken.expect_prepare().returning(|_| {
            Err(SuiteError::Setup {
                suite: "broken".into(),
                step: "build".into(),
                message: "make: *** Error 2".into(),
            })
        });
        let errored = run(vec![Arc::new(broken), suite("b", &[Verdict::Pass])], None).await;
        assert_eq!(errored.verdict(), RunVerdict::InfrastructureError);
        assert!(
            errored.report.suites[0]
                .error
                .as_ref()
                .unwrap()
                .contains("make: *** Error 2")
        );
        assert_eq!(
            errored.report.suites[1].tests.len(),
            1,
            "one broken suite must not stop the next"
        );

        let mut publisher = MockPublisher::new();
        publisher.expect_publish().returning(|_, _| {
            Err(PublishError::PushRetriesExhausted {
                repo: "site.git".into(),
                attempts: 3,
            })
        });
        let unpublished = run(
            vec![suite("a", &[Verdict::Pass])],
            Some(Arc::new(publisher)),
        )
        .await;
        assert_eq!(unpublished.verdict(), RunVerdict::PublishFailed);
        assert!(unpublished.run_dir.join("report.json").is_file());
    }

    #[tokio::test]
    async fn a_failed_provision_is_reported_and_needs_no_teardown() {
        let dir = tempfile::tempdir().unwrap();
        let mut provider = MockCloudProvider::new();
        provider.expect_id().return_const("mock".to_owned());
        provider.expect_provision().returning(|_| {
            Err(ProvisionError::Config {
                provider: "mock".into(),
                message: "needs root".into(),
            })
        });
        provider.expect_teardown().never();
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider),
            Arc::new(MockConnector::new()),
            vec![suite("a", &[Verdict::Pass])],
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(outcome.report.status, RunStatus::Errored);
        assert!(
            outcome
                .report
                .error
                .as_ref()
                .unwrap()
                .contains("needs root")
        );
        assert_eq!(outcome.verdict(), RunVerdict::InfrastructureError);
    }

    #[tokio::test]
    async fn an_unreachable_machine_is_still_torn_down() {
        let dir = tempfile::tempdir().unwrap();
        let mut connector = MockConnector::new();
        connector.expect_connect().returning(|_| {
            Err(btrfsqa_remote::RemoteError::Connect {
                host: "m".into(),
                source: "refused".into(),
            })
        });
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider(1)),
            Arc::new(connector),
            vec![suite("a", &[Verdict::Pass])],
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(outcome.report.status, RunStatus::Errored);
        assert!(outcome.report.error.as_ref().unwrap().contains("refused"));
    }

    /// Lists six tests and runs whichever `ctx.only` names, slowly enough
    /// that two machines both get work.
    struct Listed;

    #[async_trait::async_trait]
    impl TestSuite for Listed {
        fn id(&self) -> &str {
            "listed"
        }
        fn tests(&self) -> Option<Vec<String>> {
            Some((0..6).map(|i| format!("t{i}")).collect())
        }
        async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
            let mut report = SuiteReport::new("listed");
            for test in self
                .tests()
                .unwrap()
                .into_iter()
                .filter(|t| ctx.selected(t))
            {
                ctx.test_started("listed", &test);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let verdict = if test == "t3" {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                };
                report
                    .tests
                    .push(ctx.test_finished(TestOutcome::new("listed", test, verdict)));
            }
            Ok(report)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sharded_run_spreads_tests_and_merges_one_report() {
        let dir = tempfile::tempdir().unwrap();
        let runner = Runner::with_parts(
            settings(dir.path(), "shards = 2\n"),
            Arc::new(provider(2)),
            Arc::new(connector()),
            vec![Arc::new(Listed), suite("whole", &[Verdict::Pass])],
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(outcome.verdict(), RunVerdict::TestsFailed);
        let report = &outcome.report;
        assert_eq!(report.provenance.machines.len(), 2);
        assert_eq!(
            report
                .suites
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            ["listed", "whole"]
        );
        let names: Vec<&str> = report.suites[0]
            .tests
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["t0", "t1", "t2", "t3", "t4", "t5"],
            "one machine's order"
        );
        let machines: std::collections::BTreeSet<_> = report.suites[0]
            .tests
            .iter()
            .map(|t| t.machine.clone().unwrap())
            .collect();
        assert_eq!(machines.len(), 2, "both machines pulled work: {machines:?}");
        assert_eq!(report.summary.total(), 7);
    }

    /// `good` always passes; `broken` fails on every attempt; `flaky` fails
    /// on its first attempt of the run and passes on reruns.
    struct Regressing {
        fail: bool,
        attempts: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl TestSuite for Regressing {
        fn id(&self) -> &str {
            "reg"
        }
        async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
            let mut report = SuiteReport::new("reg");
            for test in ["good", "broken", "flaky"]
                .into_iter()
                .filter(|t| ctx.selected(t))
            {
                let verdict = match test {
                    "broken" if self.fail => Verdict::Fail,
                    "flaky" if self.fail => {
                        let n = self
                            .attempts
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if n == 0 { Verdict::Fail } else { Verdict::Pass }
                    }
                    _ => Verdict::Pass,
                };
                report
                    .tests
                    .push(ctx.test_finished(TestOutcome::new("reg", test, verdict)));
            }
            Ok(report)
        }
    }

    fn connector_with_kernel(release: &'static str) -> MockConnector {
        let mut connector = MockConnector::new();
        connector.expect_connect().returning(move |_| {
            let mut host = MockRemoteHost::new();
            host.expect_name().return_const("mock-0".to_owned());
            host.expect_exec().returning(move |request, _| {
                let stdout = if request.command.starts_with("uname") {
                    format!("{release}\n#1 SMP\n").into_bytes()
                } else {
                    Vec::new()
                };
                Ok(ExecOutput {
                    code: Some(0),
                    stdout,
                    ..Default::default()
                })
            });
            Ok(Arc::new(host) as Arc<dyn RemoteHost>)
        });
        connector
    }

    #[tokio::test]
    async fn new_failures_are_rerun_and_told_from_flakes() {
        let dir = tempfile::tempdir().unwrap();
        for (release, fail) in [("6.17.0", false), ("6.18.0", true)] {
            let runner = Runner::with_parts(
                settings(dir.path(), ""),
                Arc::new(provider(1)),
                Arc::new(connector_with_kernel(release)),
                vec![Arc::new(Regressing {
                    fail,
                    attempts: Default::default(),
                })],
                None,
            );
            let outcome = runner
                .run(collect().0, CancellationToken::new())
                .await
                .unwrap();
            if !fail {
                continue;
            }
            let summary = outcome
                .report
                .comparison
                .clone()
                .expect("compared with the baseline");
            assert!(summary.baseline.is_some());
            assert_eq!(summary.counts.new_failure, 1, "{summary:?}");
            assert_eq!(summary.counts.flaky, 1, "{summary:?}");
            assert_eq!(summary.regressions[0].key().name, "broken");
            let flaky = outcome
                .report
                .outcomes()
                .find(|o| o.name == "flaky")
                .unwrap();
            assert!(!flaky.reruns.is_empty(), "the rerun is kept with the test");
        }
    }

    /// Starts a test, then waits for cancellation like a real long test.
    struct WaitsForCancel;

    #[async_trait::async_trait]
    impl TestSuite for WaitsForCancel {
        fn id(&self) -> &str {
            "slow"
        }
        async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
            let mut report = SuiteReport::new("slow");
            ctx.test_started("slow", "done-first");
            report.tests.push(ctx.test_finished(TestOutcome::new(
                "slow",
                "done-first",
                Verdict::Pass,
            )));
            ctx.test_started("slow", "long");
            ctx.cancel.cancelled().await;
            Err(SuiteError::Cancelled {
                suite: "slow".into(),
                partial: Box::new(report),
            })
        }
    }

    #[tokio::test]
    async fn a_signal_interrupts_the_running_test_keeps_the_rest_and_tears_down() {
        let dir = tempfile::tempdir().unwrap();
        let mut publisher = MockPublisher::new();
        publisher.expect_publish().never();
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider(1)),
            Arc::new(connector()),
            vec![Arc::new(WaitsForCancel), suite("never", &[Verdict::Pass])],
            Some(Arc::new(publisher)),
        );
        let cancel = CancellationToken::new();
        let (sink, events) = collect();
        let trigger = cancel.clone();
        let watcher = events.clone();
        tokio::spawn(async move {
            loop {
                let started = watcher
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|e| matches!(e, Event::TestStarted { test, .. } if test == "long"));
                if started {
                    trigger.cancel();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let outcome = runner.run(sink, cancel).await.unwrap();
        assert_eq!(outcome.verdict(), RunVerdict::Interrupted);
        let verdicts: Vec<_> = outcome
            .report
            .outcomes()
            .map(|o| (o.name.as_str(), o.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("done-first", Verdict::Pass),
                ("long", Verdict::Interrupted)
            ]
        );
        let stored = ResultsStore::new(dir.path().join("results"))
            .read_report(&outcome.report.run_id)
            .unwrap();
        assert_eq!(stored.status, RunStatus::Interrupted);
    }

    #[tokio::test]
    async fn the_run_deadline_stops_a_hanging_suite() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = Runner::with_parts(
            settings(dir.path(), "timeout-minutes = 1\n"),
            Arc::new(provider(1)),
            Arc::new(connector()),
            vec![Arc::new(WaitsForCancel)],
            None,
        );
        runner.deadline = Some(Duration::from_millis(200));
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(outcome.report.status, RunStatus::Interrupted);
        assert!(
            outcome
                .report
                .error
                .as_ref()
                .unwrap()
                .contains("run.timeout-minutes")
        );
    }

    /// A suite of `t0..tN` that runs them in order, skipping finished ones;
    /// `trouble(name, attempt)` may stop it at a test (hung, machine lost).
    struct Troubled {
        tests: usize,
        runs: Mutex<HashMap<String, usize>>,
        trouble: fn(&str, usize) -> Option<SuiteError>,
    }

    #[async_trait::async_trait]
    impl TestSuite for Troubled {
        fn id(&self) -> &str {
            "troubled"
        }
        fn tests(&self) -> Option<Vec<String>> {
            Some((0..self.tests).map(|i| format!("t{i}")).collect())
        }
        async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
            let mut report = SuiteReport::new("troubled");
            for i in 0..self.tests {
                let name = format!("t{i}");
                if !ctx.selected(&name) {
                    continue;
                }
                ctx.test_started("troubled", &name);
                let attempt = {
                    let mut runs = self.runs.lock().unwrap();
                    let n = runs.entry(name.clone()).or_default();
                    *n += 1;
                    *n
                };
                match (self.trouble)(&name, attempt) {
                    Some(SuiteError::Hung { test, .. }) => {
                        let outcome = TestOutcome::new("troubled", &test, Verdict::Hung)
                            .with_message("did not finish within its timeout of 1 s");
                        report.tests.push(ctx.test_finished(outcome));
                        return Err(SuiteError::Hung {
                            suite: "troubled".into(),
                            test,
                            partial: Box::new(report),
                        });
                    }
                    Some(err) => return Err(err),
                    None => report.tests.push(ctx.test_finished(TestOutcome::new(
                        "troubled",
                        &name,
                        Verdict::Pass,
                    ))),
                }
            }
            Ok(report)
        }
    }

    fn troubled(
        tests: usize,
        trouble: fn(&str, usize) -> Option<SuiteError>,
    ) -> Vec<Arc<dyn TestSuite>> {
        vec![Arc::new(Troubled {
            tests,
            runs: Mutex::default(),
            trouble,
        })]
    }

    fn hung(test: &str) -> SuiteError {
        SuiteError::Hung {
            suite: "troubled".into(),
            test: test.into(),
            partial: Box::new(SuiteReport::new("troubled")),
        }
    }

    fn lost() -> SuiteError {
        SuiteError::Remote {
            suite: "troubled".into(),
            source: btrfsqa_remote::RemoteError::Disconnected {
                host: "mock-0".into(),
                command: "./t1".into(),
                source: "connection closed by peer".into(),
            },
        }
    }

    /// A connector whose hosts answer (`alive`) or not after the first
    /// connection, counting connections.
    fn counting_connector(
        alive: bool,
        connections: Arc<std::sync::atomic::AtomicUsize>,
    ) -> MockConnector {
        let mut connector = MockConnector::new();
        connector.expect_connect().returning(move |_| {
            let n = connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut host = MockRemoteHost::new();
            host.expect_name().return_const("mock-0".to_owned());
            // The first host dies with the crash (when not `alive`); hosts
            // after a reset answer.
            let answers = alive || n > 0;
            host.expect_exec().returning(move |request, _| {
                if !answers && request.command == "true" {
                    return Err(btrfsqa_remote::RemoteError::Disconnected {
                        host: "mock-0".into(),
                        command: "true".into(),
                        source: "no route to host".into(),
                    });
                }
                let stdout = if request.command.starts_with("uname") {
                    b"6.18.0-test\n#1 SMP\n".to_vec()
                } else if request.command.contains("sysrq") {
                    b"task:btrfs state:D stack:0 pid:812\n".to_vec()
                } else {
                    Vec::new()
                };
                Ok(ExecOutput {
                    code: Some(0),
                    stdout,
                    ..Default::default()
                })
            });
            Ok(Arc::new(host) as Arc<dyn RemoteHost>)
        });
        connector
    }

    fn resettable_provider(resets: usize, console: &'static str) -> MockCloudProvider {
        let mut provider = base_provider(1);
        provider.expect_reset().times(resets).returning(|_| Ok(()));
        // Empty when the machine came up; the crash after.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        provider.expect_console().returning(move |_| {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (n > 0).then(|| console.to_owned())
        });
        provider.expect_interruption_notice().returning(|_| None);
        provider
    }

    fn verdicts(report: &RunReport) -> Vec<(String, Verdict)> {
        report
            .outcomes()
            .map(|t| (t.name.clone(), t.verdict))
            .collect()
    }

    #[tokio::test]
    async fn a_hung_test_keeps_evidence_the_machine_is_reset_and_the_rest_runs() {
        let dir = tempfile::tempdir().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(resettable_provider(1, "[ 1.0] booted\n")),
            Arc::new(counting_connector(true, connections.clone())),
            troubled(3, |name, _| (name == "t1").then(|| hung("t1"))),
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        let report = &outcome.report;
        assert_eq!(
            verdicts(report),
            [
                ("t0".into(), Verdict::Pass),
                ("t1".into(), Verdict::Hung),
                ("t2".into(), Verdict::Pass)
            ]
        );
        assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
        let hung = report.outcomes().find(|t| t.name == "t1").unwrap();
        let evidence = hung
            .artifacts
            .iter()
            .find(|a| a.path.ends_with("hang-evidence.txt"))
            .expect("evidence kept");
        let text = std::fs::read_to_string(outcome.run_dir.join(&evidence.path)).unwrap();
        assert!(text.contains("state:D"), "{text}");
    }

    #[tokio::test]
    async fn a_kernel_crash_is_crashed_with_the_console_and_the_run_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(resettable_provider(
                1,
                "[ 9.0] sshd started\n[ 60.0] sysrq: Trigger a crash\n[ 60.1] Kernel panic - not syncing: sysrq triggered crash\n",
            )),
            Arc::new(counting_connector(false, connections.clone())),
            troubled(3, |name, _| (name == "t1").then(lost)),
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        let report = &outcome.report;
        assert_eq!(
            verdicts(report),
            [
                ("t0".into(), Verdict::Pass),
                ("t1".into(), Verdict::Crashed),
                ("t2".into(), Verdict::Pass)
            ]
        );
        let crashed = report.outcomes().find(|t| t.name == "t1").unwrap();
        assert_eq!(
            crashed.message.as_deref(),
            Some("the kernel crashed: [ 60.0] sysrq: Trigger a crash")
        );
        let console = crashed
            .artifacts
            .iter()
            .find(|a| a.kind == btrfsqa_model::ArtifactKind::Console)
            .unwrap();
        let text = std::fs::read_to_string(outcome.run_dir.join(&console.path)).unwrap();
        assert!(text.contains("Kernel panic"));
        assert!(report.suites[0].error.is_none());
    }

    #[tokio::test]
    async fn a_broken_connection_to_a_live_machine_runs_the_test_again_without_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(resettable_provider(0, "")),
            Arc::new(counting_connector(true, connections.clone())),
            troubled(3, |name, attempt| (name == "t1" && attempt == 1).then(lost)),
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            verdicts(&outcome.report),
            [
                ("t0".into(), Verdict::Pass),
                ("t1".into(), Verdict::Pass),
                ("t2".into(), Verdict::Pass)
            ]
        );
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_machine_that_cannot_be_reset_stops_its_tests_and_is_still_torn_down() {
        let dir = tempfile::tempdir().unwrap();
        let mut provider = provider(1);
        // What a provider without resets (this machine, static hosts) answers.
        provider.expect_reset().times(1).returning(|m| {
            Err(ProvisionError::Unsupported {
                provider: m.provider.clone(),
                operation: "reset a machine".into(),
            })
        });
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider),
            Arc::new(counting_connector(false, connections)),
            troubled(3, |name, _| (name == "t1").then(lost)),
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        let report = &outcome.report;
        assert_eq!(
            verdicts(report),
            [
                ("t0".into(), Verdict::Pass),
                ("t1".into(), Verdict::Crashed)
            ]
        );
        assert_eq!(report.status, RunStatus::Errored);
        assert!(
            report.error.as_deref().unwrap().contains("cannot reset it"),
            "{:?}",
            report.error
        );
    }

    #[tokio::test]
    async fn a_spot_interruption_notice_interrupts_the_run_resumably() {
        let dir = tempfile::tempdir().unwrap();
        let mut provider = base_provider(1);
        provider.expect_console().returning(|_| None);
        provider
            .expect_interruption_notice()
            .returning(|_| Some("spot request `sir-1` is `marked-for-termination`".into()));
        let mut runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider),
            Arc::new(connector()),
            vec![Arc::new(WaitsForCancel)],
            None,
        );
        runner.notice_poll = Duration::from_millis(50);
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        let report = &outcome.report;
        assert_eq!(report.status, RunStatus::Interrupted);
        let error = report.error.as_deref().unwrap();
        assert!(
            error.contains("marked-for-termination") && error.contains("btrfsqa resume"),
            "{error}"
        );
        assert_eq!(
            verdicts(report),
            [
                ("done-first".into(), Verdict::Pass),
                ("long".into(), Verdict::Interrupted)
            ]
        );
    }

    #[test]
    fn journaled_outcomes_missing_from_the_report_are_recovered_once() {
        let mut report = RunReport::start(
            RunId::parse("run-j").unwrap(),
            Utc::now(),
            Provenance::default(),
        );
        let mut suite = SuiteReport::new("a");
        suite.tests.push(TestOutcome::new("a", "t0", Verdict::Pass));
        report.suites.push(suite);
        recover_journaled(
            &mut report,
            vec![
                TestOutcome::new("a", "t0", Verdict::Fail),
                TestOutcome::new("a", "t1", Verdict::Fail),
                TestOutcome::new("a", "t1", Verdict::Pass),
                TestOutcome::new("b", "x", Verdict::Skip),
            ],
        );
        assert_eq!(
            verdicts(&report),
            [
                ("t0".into(), Verdict::Pass),
                ("t1".into(), Verdict::Pass),
                ("x".into(), Verdict::Skip)
            ]
        );
        assert_eq!(report.summary.pass, 2);
    }

    #[tokio::test]
    async fn a_static_host_that_hung_a_test_is_rebooted_over_ssh() {
        let dir = tempfile::tempdir().unwrap();
        let mut provider = MockCloudProvider::new();
        provider.expect_id().return_const("static".to_owned());
        provider.expect_provision().returning(|spec| {
            let mut machine = machine(spec);
            machine.access = Access::Ssh(btrfsqa_cloud::SshEndpoint {
                host: "192.0.2.10".into(),
                port: 22,
                user: "root".into(),
                identity_file: None,
                known_hosts_file: None,
            });
            Ok(machine)
        });
        provider.expect_teardown().times(1).returning(|_| Ok(()));
        provider.expect_console().returning(|_| None);
        provider.expect_interruption_notice().returning(|_| None);
        provider.expect_reset().times(1).returning(|m| {
            Err(ProvisionError::Unsupported {
                provider: m.provider.clone(),
                operation: "reset a machine".into(),
            })
        });
        let reboots = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = reboots.clone();
        let mut connector = MockConnector::new();
        connector.expect_connect().times(1).returning(move |_| {
            let mut host = MockRemoteHost::new();
            host.expect_name().return_const("mock-0".to_owned());
            host.expect_exec().returning(|request, _| {
                let stdout = if request.command.starts_with("uname") {
                    b"6.18.0-test\n#1 SMP\n".to_vec()
                } else {
                    Vec::new()
                };
                Ok(ExecOutput {
                    code: Some(0),
                    stdout,
                    ..Default::default()
                })
            });
            let counted = counted.clone();
            host.expect_reboot_and_wait().returning(move |_| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            });
            Ok(Arc::new(host) as Arc<dyn RemoteHost>)
        });
        let runner = Runner::with_parts(
            settings(dir.path(), ""),
            Arc::new(provider),
            Arc::new(connector),
            troubled(3, |name, _| (name == "t1").then(|| hung("t1"))),
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            verdicts(&outcome.report),
            [
                ("t0".into(), Verdict::Pass),
                ("t1".into(), Verdict::Hung),
                ("t2".into(), Verdict::Pass)
            ]
        );
        assert_eq!(reboots.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_shard_that_crashes_and_one_whose_connection_breaks_still_give_every_test_one_verdict()
     {
        let dir = tempfile::tempdir().unwrap();
        let mut provider = base_provider(2);
        provider.expect_reset().returning(|_| Ok(()));
        provider
            .expect_console()
            .returning(|_| Some("[ 1.0] booted\n".into()));
        provider.expect_interruption_notice().returning(|_| None);
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runner = Runner::with_parts(
            settings(dir.path(), "shards = 2\n"),
            Arc::new(provider),
            Arc::new(counting_connector(true, connections)),
            vec![Arc::new(Troubled {
                tests: 6,
                runs: Mutex::default(),
                // t1 hangs; t3's connection breaks once (its machine answers).
                trouble: |name, attempt| match name {
                    "t1" => Some(hung("t1")),
                    "t3" if attempt == 1 => Some(lost()),
                    _ => None,
                },
            })],
            None,
        );
        let outcome = runner
            .run(collect().0, CancellationToken::new())
            .await
            .unwrap();
        let mut got = verdicts(&outcome.report);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("t0".into(), Verdict::Pass),
                ("t1".into(), Verdict::Hung),
                ("t2".into(), Verdict::Pass),
                ("t3".into(), Verdict::Pass),
                ("t4".into(), Verdict::Pass),
                ("t5".into(), Verdict::Pass)
            ]
        );
        assert_eq!(outcome.report.status, RunStatus::Completed);
    }

    #[tokio::test]
    async fn a_machine_back_from_its_reset_on_another_kernel_boots_the_kernel_under_test_again() {
        use crate::kernel::tests::{RELEASE, builder};
        let dir = tempfile::tempdir().unwrap();
        let mut provider = base_provider(1);
        provider.expect_console().returning(|_| None);
        provider.expect_interruption_notice().returning(|_| None);
        provider.expect_reset().times(1).returning(|_| Ok(()));
        // The first boot, and the boot after the reset.
        provider
            .expect_boot_kernel()
            .times(2)
            .returning(|_, _| Ok(()));
        // Connections: 0 before the stage (the old kernel), 1 after its boot
        // (the kernel under test; it crashes), 2 after the reset (the old
        // kernel again), 3 after the second boot.
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        let mut connector = MockConnector::new();
        connector.expect_connect().returning(move |_| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let release = if n % 2 == 1 { RELEASE } else { "6.1.0-old" };
            let mut host = MockRemoteHost::new();
            host.expect_name().return_const("mock-0".to_owned());
            host.expect_upload().returning(|_, _| Ok(()));
            host.expect_exec().returning(move |request, _| {
                let c = request.command.as_str();
                if c == "true" && n == 1 {
                    return Err(btrfsqa_remote::RemoteError::Disconnected {
                        host: "mock-0".into(),
                        command: "true".into(),
                        source: "no route to host".into(),
                    });
                }
                let stdout = if c.starts_with("uname -r; uname -v") {
                    format!("{release}\n#1 SMP\n")
                } else if c.contains("uname -r") {
                    format!("release={release}\nbtrfs=yes\n")
                } else if c.contains("boot_id") {
                    format!("boot-{n}\n")
                } else {
                    String::new()
                };
                Ok(ExecOutput {
                    code: Some(0),
                    stdout: stdout.into_bytes(),
                    ..Default::default()
                })
            });
            Ok(Arc::new(host) as Arc<dyn RemoteHost>)
        });
        let mut runner = Runner::with_parts(
            settings(
                dir.path(),
                "[kernel]\nsource = \"/srv/linux\"\nref = \"main\"\n",
            ),
            Arc::new(provider),
            Arc::new(connector),
            troubled(3, |name, _| (name == "t1").then(lost)),
            None,
        );
        let builds = Arc::new(Mutex::new(0));
        runner.kernel_builder = Some(Arc::new(builder(builds.clone(), false)));
        let (sink, events) = collect();
        let outcome = runner.run(sink, CancellationToken::new()).await.unwrap();
        let report = &outcome.report;
        assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
        assert_eq!(
            verdicts(report),
            [
                ("t0".into(), Verdict::Pass),
                ("t1".into(), Verdict::Crashed),
                ("t2".into(), Verdict::Pass)
            ]
        );
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(
            *builds.lock().unwrap(),
            1,
            "the second boot reuses the build"
        );
        assert!(events.lock().unwrap().iter().any(|e| matches!(
            e,
            Event::Warning { message, .. }
                if message.contains("came back with kernel 6.1.0-old: booting 6.1.192 again")
        )));
    }

    /// `t0..t5`, each taking 150 ms unless the run or machine stops.
    struct Slow;

    #[async_trait::async_trait]
    impl TestSuite for Slow {
        fn id(&self) -> &str {
            "slow6"
        }
        fn tests(&self) -> Option<Vec<String>> {
            Some((0..6).map(|i| format!("t{i}")).collect())
        }
        async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
            let mut report = SuiteReport::new("slow6");
            for i in 0..6 {
                let name = format!("t{i}");
                if !ctx.selected(&name) {
                    continue;
                }
                ctx.test_started("slow6", &name);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(150)) => {}
                    () = ctx.cancel.cancelled() => {
                        return Err(SuiteError::Cancelled {
                            suite: "slow6".into(),
                            partial: Box::new(report),
                        });
                    }
                }
                report.tests.push(ctx.test_finished(TestOutcome::new(
                    "slow6",
                    &name,
                    Verdict::Pass,
                )));
            }
            Ok(report)
        }
    }

    #[tokio::test]
    async fn a_shard_taken_away_hands_its_tests_to_the_other_machines() {
        let dir = tempfile::tempdir().unwrap();
        let mut provider = base_provider(2);
        provider.expect_console().returning(|_| None);
        provider.expect_interruption_notice().returning(|m| {
            m.name
                .ends_with('1')
                .then(|| "spot request `sir-9` is `marked-for-termination`".to_owned())
        });
        let mut runner = Runner::with_parts(
            settings(dir.path(), "shards = 2\n"),
            Arc::new(provider),
            Arc::new(connector()),
            vec![Arc::new(Slow)],
            None,
        );
        runner.notice_poll = Duration::from_millis(50);
        let (sink, events) = collect();
        let outcome = runner.run(sink, CancellationToken::new()).await.unwrap();
        let report = &outcome.report;
        let mut got = verdicts(report);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            (0..6)
                .map(|i| (format!("t{i}"), Verdict::Pass))
                .collect::<Vec<_>>()
        );
        assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
        assert!(
            report
                .outcomes()
                .all(|t| t.machine.as_deref().is_some_and(|m| !m.ends_with('1'))),
            "every verdict comes from the machine that stayed"
        );
        assert!(events.lock().unwrap().iter().any(|e| matches!(
            e,
            Event::Warning { message, .. } if message.contains("marked-for-termination")
        )));
    }
}
