//! A run: one controller, N machine workers.
//!
//! [`Runner::run`] computes the [`RunPlan`] (every test the suites list,
//! with its estimate from the store's history), starts one worker per
//! machine and the controller, and waits for both. Each worker provisions
//! its machine, gets it ready, pulls batches from the controller, runs
//! them, and tears its machine down on every path. The controller alone
//! owns the report and writes it to the store after every batch. An
//! unsharded run is a run with one worker: there is one code path.
//! Afterwards the run's status is decided, the report written, published
//! and, when it has regressions, notified.

mod controller;
mod events;
pub(crate) mod machine;
mod recovery;
mod runner;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use btrfsqa_cloud::MachineSpec;
use btrfsqa_model::EventSink;
use btrfsqa_model::compare::TestKey;
use btrfsqa_model::{
    Event, Provenance, ResultsStore, RunId, RunReport, RunStatus, Stage, SuiteReport, TestOutcome,
    Verdict,
};
use btrfsqa_publish::Published;

use crate::RunError;
use crate::error::error_chain;
use crate::journal::Journal;
use crate::plan::RunPlan;
use crate::schedule::History;
use crate::settings::Settings;
use controller::Controller;
use events::warning;

pub use machine::{read_machine_records, write_machine_record};
pub use runner::Runner;
use runner::WorkerEnv;

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

impl Runner {
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

    /// The plan a run of these suites would execute now: every test they
    /// list, with its estimate from the results store.
    pub async fn plan(&self) -> RunPlan {
        let store = ResultsStore::new(self.settings.results_dir());
        RunPlan::build(&self.suites, &History::from_store(&store), &HashSet::new()).await
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

    /// Continues a stored run that was interrupted (or errored): on new
    /// machines, the tests that have no verdict yet run, and their outcomes
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
        // One process drives a run: a resume of a run still running is
        // refused; a watcher's runs and manual runs never share the store.
        let _drivers = match self.store_lock_held {
            true => None,
            false => Some(crate::lock::store_drivers(
                self.settings.results_dir(),
                false,
            )?),
        };
        let _owner = crate::lock::run_owner(&run_dir, &run_id)?;
        // Outcomes a killed controller journaled but never put in the report.
        let journaled = match &previous {
            Some(_) => crate::journal::finished_outcomes(&run_dir.join("journal.jsonl")),
            None => Vec::new(),
        };
        let journal = Journal::open(&run_dir.join("journal.jsonl"))?;
        let sink = events::journaled(events, journal);

        let config = &self.settings.config;
        let provenance = Provenance {
            btrfsqa_version: env!("CARGO_PKG_VERSION").to_owned(),
            config_hash: self.settings.config_hash.clone(),
            provider: self.provider.id().to_owned(),
            controller: machine::hostname(),
            ..Provenance::default()
        };
        let report = match previous {
            Some(previous) => {
                if previous.provenance.config_hash != provenance.config_hash {
                    sink(warning(
                        None,
                        format!(
                            "resuming {run_id} with a configuration that differs from the one it started with"
                        ),
                    ));
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

        // The plan: every test without a verdict yet.
        let finished: HashSet<TestKey> = report.outcomes().map(TestKey::of).collect();
        let mut plan = RunPlan::build(&self.suites, &History::from_store(&store), &finished).await;
        if let Some(only) = &self.only {
            plan.keep_only(only);
        }
        for message in &plan.warnings {
            sink(warning(None, message.clone()));
        }

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

        // A resumed run's machines get new names: its first machines'
        // recordings and records stay as they were.
        let first = report.provenance.machines.len();
        // The machines of a matrix's kernels are told apart by their names.
        let prefix = match config.run.labels.get(btrfsqa_model::compare::KERNEL_LABEL) {
            Some(kernel) => format!("{}-{kernel}", self.provider.id()),
            None => self.provider.id().to_owned(),
        };
        let specs: Vec<MachineSpec> = (0..config.run.shards.max(1) as usize)
            .map(|i| MachineSpec {
                run_id: run_id.clone(),
                name: format!("{prefix}-{}", first + i),
                data_devices: config.machine.data_devices,
                device_size: config.machine.device_size_gib << 30,
            })
            .collect();
        let controller = Controller::new(
            report,
            store.clone(),
            sink.clone(),
            stop.clone(),
            plan,
            controller::Settings {
                machines: specs.len(),
                suite_order: self.suites.iter().map(|s| s.id().to_owned()).collect(),
                expectations: config.expectations.clone(),
                run_page: config.notify.run_page(&run_id),
            },
        );
        let env = WorkerEnv {
            runner: self,
            run_dir: &run_dir,
            sink: &sink,
            stop: &stop,
            derived_timeouts: crate::schedule::derived_timeouts(&store),
        };
        let (outbox, inbox) = tokio::sync::mpsc::unbounded_channel();
        // The controller stops when every worker has dropped its sender.
        let (ended, ()) = tokio::join!(
            AssertUnwindSafe(controller.run(inbox)).catch_unwind(),
            worker::work_all(&env, specs, outbox),
        );
        timer.abort();
        let (mut report, interruption, teardown_errors) = match ended {
            Ok(ended) => (ended.report, ended.interruption, ended.teardown_errors),
            // The controller wrote the report after every batch: what it
            // held is in the store and the journal.
            Err(_) => {
                let mut report = store.read_report(&run_id)?;
                recover_journaled(
                    &mut report,
                    crate::journal::finished_outcomes(&run_dir.join("journal.jsonl")),
                );
                report.error = Some(
                    "the run controller panicked; the report is the last one it stored".to_owned(),
                );
                (report, None, Vec::new())
            }
        };

        let status = if cancel.is_cancelled() {
            report
                .error
                .get_or_insert_with(|| "interrupted by a signal".to_owned());
            RunStatus::Interrupted
        } else if let Some(reason) = interruption {
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
                sink(warning(
                    None,
                    format!("notification failed: {}", error_chain(&error)),
                ));
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
}

/// Adds to `report` the journaled outcomes it lacks (the controller was
/// killed between a test's end and the next write of the report). The
/// journal's last word on a test counts; reruns of new failures are not
/// separate tests and are left out.
fn recover_journaled(report: &mut RunReport, journaled: Vec<TestOutcome>) {
    let mut latest: HashMap<TestKey, TestOutcome> = HashMap::new();
    let mut order: Vec<TestKey> = Vec::new();
    for outcome in journaled {
        let key = TestKey::of(&outcome);
        if latest.insert(key.clone(), outcome).is_none() {
            order.push(key);
        }
    }
    let known: HashSet<TestKey> = report.outcomes().map(TestKey::of).collect();
    for key in order {
        if known.contains(&key) {
            continue;
        }
        let Some(outcome) = latest.remove(&key) else {
            continue;
        };
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
