//! A machine worker: provisions one machine, gets it ready (connection,
//! kernel stage, recording), then pulls batches from the controller and
//! runs them until no work is left, handling a hang, a crash or a broken
//! connection per test; and tears the machine down on every path, a panic
//! included.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use btrfsqa_cloud::{Machine, MachineSpec};
use btrfsqa_model::EventSink;
use btrfsqa_model::{Event, Provenance, RunReport, Stage, SuiteReport, TestOutcome, Verdict};
use btrfsqa_suites::{MachineDevices, SuiteContext, SuiteError, TestSuite};

use super::controller::{Batch, BatchResult, Gone, Message};
use super::events::{stage_done, stage_started, warning};
use super::machine::{Session, kernel_info, release_devices};
use super::recovery::{self, Recovery, Trouble};
use super::runner::WorkerEnv;
use crate::error::error_chain;
use crate::schedule::WorkItem;

/// How long a suite gets to stop by itself after cancellation before its
/// future is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// Why the machine is being taken away, once a notice came.
type Notice = Arc<Mutex<Option<String>>>;

/// What this worker's suites say as they run: the test running now, the
/// ones finished in the current batch, and when each started.
#[derive(Default)]
struct Track {
    running: Option<String>,
    last_started: Option<String>,
    started_at: HashMap<String, DateTime<Utc>>,
    finished: Vec<TestOutcome>,
}

/// Provisions the run's machines together (`CloudProvider::provision_many`:
/// an EC2 fleet asks for all of them in one request), then gives each to
/// its worker. Provisioning is not raced against cancellation: a half-made
/// machine is harder to clean than a whole one, so it finishes and is torn
/// down.
pub(crate) async fn work_all(
    env: &WorkerEnv<'_>,
    specs: Vec<MachineSpec>,
    outbox: mpsc::UnboundedSender<Message>,
) {
    for spec in &specs {
        (env.sink)(stage_started(&spec.name, Stage::Provision));
    }
    let machines = env.runner.provider.provision_many(&specs).await;
    let workers = specs
        .into_iter()
        .zip(machines)
        .enumerate()
        .map(|(i, (spec, machine))| work(env, i, spec, machine, outbox.clone()));
    let workers: Vec<_> = workers.collect();
    drop(outbox);
    futures_util::future::join_all(workers).await;
}

/// One machine's life, from provisioning to teardown. Reports everything
/// to the controller through `outbox`.
async fn work(
    env: &WorkerEnv<'_>,
    worker: usize,
    spec: MachineSpec,
    provisioned: Result<Machine, btrfsqa_cloud::ProvisionError>,
    outbox: mpsc::UnboundedSender<Message>,
) {
    let runner = env.runner;
    let machine = match provisioned {
        Ok(machine) => machine,
        Err(err) => {
            let message = error_chain(&err);
            (env.sink)(stage_done(
                &spec.name,
                Stage::Provision,
                Some(message.clone()),
            ));
            let _ = outbox.send(Message::ProvisionFailed {
                worker,
                error: message,
            });
            return;
        }
    };
    (env.sink)(stage_done(&spec.name, Stage::Provision, None));
    let _ = outbox.send(Message::Provisioned {
        worker,
        machine: machine.clone(),
    });
    // A panic in the worker must not skip the teardown below, nor lose the
    // outcomes of the batch it was running.
    let track = Arc::new(Mutex::new(Track::default()));
    let current: Arc<Mutex<Option<Batch>>> = Arc::default();
    let gone = match AssertUnwindSafe(serve(env, worker, &machine, &outbox, &track, &current))
        .catch_unwind()
        .await
    {
        Ok(gone) => gone,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "(no message)".to_owned());
            let message = format!("the worker of machine `{}` panicked: {what}", machine.name);
            let batch = current.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(batch) = batch {
                let result = salvage(batch, &track, &machine.name, &message);
                let _ = outbox.send(Message::Finished { worker, result });
            }
            Gone::Failed(message)
        }
    };
    let _ = outbox.send(Message::Gone { worker, why: gone });
    (env.sink)(stage_started(&machine.name, Stage::Teardown));
    let (cost_usd, error) = match runner.provider.teardown(&machine).await {
        Ok(()) => {
            (env.sink)(stage_done(&machine.name, Stage::Teardown, None));
            (machine.cost_estimate(Utc::now()), None)
        }
        Err(err) => {
            let message = error_chain(&err);
            (env.sink)(stage_done(
                &machine.name,
                Stage::Teardown,
                Some(message.clone()),
            ));
            (None, Some(message))
        }
    };
    let _ = outbox.send(Message::TornDown { cost_usd, error });
}

/// Everything between provisioning and teardown.
async fn serve(
    env: &WorkerEnv<'_>,
    worker: usize,
    machine: &Machine,
    outbox: &mpsc::UnboundedSender<Message>,
    track: &Arc<Mutex<Track>>,
    current: &Arc<Mutex<Option<Batch>>>,
) -> Gone {
    let name = machine.name.clone();
    // A machine taken away (a spot interruption) stops alone; the other
    // machines take its tests.
    let machine_stop = env.stop.child_token();
    let notice = Arc::new(Mutex::new(None));
    let mut session = match open_session(env, worker, machine, &machine_stop, track, outbox).await {
        Ok(session) => session,
        Err(message) => return Gone::Failed(message),
    };
    let _watch = watch_notices(env, machine, &machine_stop, notice.clone());
    let mut recovery = Recovery::default();
    let mut prepared: HashSet<String> = HashSet::new();
    loop {
        if machine_stop.is_cancelled() {
            break;
        }
        let (reply, answer) = oneshot::channel();
        if outbox.send(Message::Next { worker, reply }).is_err() {
            break;
        }
        let batch = tokio::select! {
            batch = answer => batch.ok().flatten(),
            () = machine_stop.cancelled() => None,
        };
        let Some(batch) = batch else {
            break;
        };
        let Some(suite) = env.runner.suite(&batch.suite) else {
            // Cannot happen: batches come from these suites' lists.
            break;
        };
        if !prepared.contains(&batch.suite) {
            match prepare(suite.as_ref(), &session.ctx).await {
                Ok(()) => {
                    prepared.insert(batch.suite.clone());
                }
                Err(message) => {
                    let requeue = batch.items.clone();
                    let _ = outbox.send(Message::Finished {
                        worker,
                        result: BatchResult {
                            part: SuiteReport::new(&batch.suite),
                            batch,
                            requeue,
                            withdrawn: Vec::new(),
                            setup_failed: Some(message),
                        },
                    });
                    continue;
                }
            }
        }
        let resets = recovery.resets();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(batch.clone());
        let (result, gone) = run_batch(
            env,
            outbox,
            machine,
            &mut session,
            &mut recovery,
            suite.as_ref(),
            batch,
            (track, &machine_stop, &notice),
        )
        .await;
        current.lock().unwrap_or_else(|e| e.into_inner()).take();
        if recovery.resets() != resets {
            // A machine that was reset is set up again before its next batch.
            prepared.clear();
        }
        let _ = outbox.send(Message::Finished { worker, result });
        if let Some(gone) = gone {
            (env.sink)(stage_done(&name, Stage::Suites, Some(gone_message(&gone))));
            return gone;
        }
    }
    if machine_stop.is_cancelled() && !env.stop.is_cancelled() {
        let reason = notice.lock().expect("not poisoned").clone();
        let message = format!(
            "{}; its tests go to the other machines",
            reason.unwrap_or_else(|| format!("machine `{name}` was taken away"))
        );
        (env.sink)(stage_done(&name, Stage::Suites, Some(message.clone())));
        return Gone::TakenAway(message);
    }
    (env.sink)(stage_done(&name, Stage::Suites, None));
    // Leave the devices unmounted whatever the suites did; providers that
    // delete the devices do this too, static hosts rely on it.
    (env.sink)(stage_started(&name, Stage::Collect));
    let cleanup = release_devices(session.host.as_ref(), machine).await;
    (env.sink)(stage_done(&name, Stage::Collect, cleanup.clone().err()));
    match cleanup {
        Ok(()) => Gone::Done,
        Err(message) => Gone::Failed(format!("cleaning up `{name}`: {message}")),
    }
}

fn gone_message(gone: &Gone) -> String {
    match gone {
        Gone::Done => "done".to_owned(),
        Gone::Failed(m) | Gone::GivenUp(m) | Gone::TakenAway(m) => m.clone(),
    }
}

/// Prepares a suite, giving up promptly when the run stops.
async fn prepare(suite: &dyn TestSuite, ctx: &SuiteContext) -> Result<(), String> {
    let result = tokio::select! {
        result = suite.prepare(ctx) => result,
        () = async {
            ctx.cancel.cancelled().await;
            tokio::time::sleep(CANCEL_GRACE).await;
        } => return Err("stopped while the suite was being set up".to_owned()),
    };
    result.map_err(|err| error_chain(&err))
}

/// Connects to a machine, runs the kernel stage, starts recording and
/// records its kernel: everything a machine needs before its suites.
async fn open_session(
    env: &WorkerEnv<'_>,
    worker: usize,
    machine: &Machine,
    stop: &CancellationToken,
    track: &Arc<Mutex<Track>>,
    outbox: &mpsc::UnboundedSender<Message>,
) -> Result<Session, String> {
    let runner = env.runner;
    let sink = env.sink;
    let name = machine.name.clone();
    sink(stage_started(&name, Stage::Prepare));
    let host = tokio::select! {
        host = runner.connector.connect(machine) => host.map_err(|err| {
            let message = error_chain(&err);
            sink(stage_done(&name, Stage::Prepare, Some(message.clone())));
            format!("cannot reach machine `{name}`: {message}")
        })?,
        () = stop.cancelled() => return Err("stopped before the machine was reachable".into()),
    };
    // The kernel stage (nothing for the installed kernel) may boot the
    // machine into a built kernel: what follows uses the host it returns.
    // It reports into a report of its own, which the controller merges.
    let mut stage = RunReport::start(machine.run_id.clone(), Utc::now(), Provenance::default());
    stage.provenance.machines.push(machine.info());
    let kernel_env = runner.kernel_env(env.run_dir, sink, stop);
    let staged = crate::kernel::run_stage(&kernel_env, machine, host, &mut stage).await;
    let host = match staged {
        Ok(host) => host,
        Err(message) => {
            sink(stage_done(&name, Stage::Prepare, Some(message.clone())));
            let _ = outbox.send(Message::Ready {
                worker,
                kernel: stage.provenance.kernel.clone(),
                stage: stage.suites,
            });
            return Err(message);
        }
    };
    // Everything run on the machine from here on is recorded (redacted).
    let (host, recording) = crate::recording::record(
        env.run_dir,
        &name,
        host,
        sink,
        crate::registry::redactor(&runner.settings),
    );
    let mut kernel = kernel_info(host.as_ref()).await;
    kernel.source = stage.provenance.kernel.source.clone();
    sink(stage_done(&name, Stage::Prepare, None));
    let mut info = machine.info();
    info.kernel = kernel.clone();
    sink(Event::MachineReady { machine: info });
    let _ = outbox.send(Message::Ready {
        worker,
        kernel: kernel.clone(),
        stage: stage.suites,
    });
    let marking = crate::recording::marking_sink(recording.as_ref(), sink);
    let ctx = SuiteContext {
        host: host.clone(),
        devices: MachineDevices {
            name: name.clone(),
            test_dev: machine.test_dev.clone(),
            scratch_devs: machine.scratch_devs.clone(),
            work_dir: machine.work_dir.clone(),
        },
        run_dir: env.run_dir.to_owned(),
        events: tracking_sink(track.clone(), marking),
        cancel: stop.clone(),
        only: None,
        profile: None,
        skip: Vec::new(),
        derived_timeouts: env.derived_timeouts.clone(),
    };
    sink(stage_started(&name, Stage::Suites));
    let console_mark = runner
        .provider
        .console(machine)
        .await
        .map_or(0, |c| c.len());
    Ok(Session {
        host,
        recording,
        ctx,
        kernel_release: kernel.release,
        console_mark,
    })
}

/// `sink`, noting which test runs now and which finished.
fn tracking_sink(track: Arc<Mutex<Track>>, sink: EventSink) -> EventSink {
    Arc::new(move |event: Event| {
        {
            let mut track = track.lock().unwrap_or_else(|e| e.into_inner());
            match &event {
                Event::TestStarted { test, .. } => {
                    track.running = Some(test.clone());
                    track.last_started = Some(test.clone());
                    track.started_at.insert(test.clone(), Utc::now());
                }
                Event::TestFinished { outcome, .. } => {
                    track.running = None;
                    track.finished.push(outcome.clone());
                }
                _ => {}
            }
        }
        sink(event);
    })
}

/// Runs one batch and makes the machine usable again after trouble.
/// Returns the result for the controller and, when the machine cannot go
/// on, why.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all of it the worker's state"
)]
async fn run_batch(
    env: &WorkerEnv<'_>,
    outbox: &mpsc::UnboundedSender<Message>,
    machine: &Machine,
    session: &mut Session,
    recovery: &mut Recovery,
    suite: &dyn TestSuite,
    batch: Batch,
    (track, machine_stop, notice): (&Arc<Mutex<Track>>, &CancellationToken, &Notice),
) -> (BatchResult, Option<Gone>) {
    let mut ctx = session.ctx.clone();
    ctx.only = batch.only();
    ctx.profile = batch.profile.clone();
    ctx.skip = batch.skip.clone();
    let (mut part, trouble) = run_suite(suite, &ctx, track).await;
    let troubled = trouble.is_some();
    let mut gone = None;
    // The tests after the troubled one go back before the (slow) recovery,
    // for the other machines to take now.
    let mut handed_back: HashSet<(Option<String>, String)> = HashSet::new();
    if let Some(trouble) = &trouble
        && !env.stop.is_cancelled()
        && !batch.rerun
    {
        // (A whole suite goes back after the recovery, with what it finished.)
        let early: Vec<WorkItem> = unfinished(&batch, &part, trouble.test())
            .into_iter()
            .filter(|item| item.test.is_some())
            .collect();
        if !early.is_empty() {
            handed_back.extend(
                early
                    .iter()
                    .filter_map(|i| i.test.clone().map(|t| (i.profile.clone(), t))),
            );
            let names: Vec<String> = early.iter().map(WorkItem::label).collect();
            (env.sink)(warning(
                Some(&machine.name),
                format!(
                    "the rest of its batch goes back to the queue while it is recovered: {}",
                    names.join(", ")
                ),
            ));
            let _ = outbox.send(Message::Requeue { items: early });
        }
    }
    if let Some(trouble) = trouble
        && !env.stop.is_cancelled()
    {
        if let Err(message) =
            recovery::recover(env, machine, session, &mut part, trouble, recovery).await
        {
            gone = Some(Gone::GivenUp(message));
        }
    }
    let mut withdrawn = Vec::new();
    let taken_away = machine_stop.is_cancelled() && !env.stop.is_cancelled();
    if taken_away {
        // What it was running gets a verdict on another machine.
        let (interrupted, kept) = std::mem::take(&mut part.tests)
            .into_iter()
            .partition(|t: &TestOutcome| t.verdict == Verdict::Interrupted);
        part.tests = kept;
        withdrawn = interrupted;
        part.error = None;
        let reason = notice.lock().expect("not poisoned").clone();
        gone.get_or_insert(Gone::TakenAway(format!(
            "{}; its tests go to the other machines",
            reason.unwrap_or_else(|| format!("machine `{}` was taken away", machine.name))
        )));
    }
    // The rest of a batch cut short goes back to the queue.
    let requeue = if troubled || taken_away || env.stop.is_cancelled() {
        unfinished(&batch, &part, None)
            .into_iter()
            .filter(|item| {
                item.test
                    .as_ref()
                    .is_none_or(|t| !handed_back.contains(&(item.profile.clone(), t.clone())))
            })
            .collect()
    } else {
        Vec::new()
    };
    {
        // Outcomes that do not say when they started get it from the events.
        let track = track.lock().unwrap_or_else(|e| e.into_inner());
        for outcome in &mut part.tests {
            if outcome.started_at.is_none() {
                outcome.started_at = track.started_at.get(&outcome.name).copied();
            }
            outcome.machine.get_or_insert_with(|| machine.name.clone());
        }
    }
    crate::recording::attach(session.recording.as_ref(), &mut part);
    (
        BatchResult {
            batch,
            part,
            requeue,
            withdrawn,
            setup_failed: None,
        },
        gone,
    )
}

/// What a batch whose worker panicked leaves: the outcomes its suite
/// reported, the running test an `error`, the rest handed back.
fn salvage(batch: Batch, track: &Arc<Mutex<Track>>, machine: &str, why: &str) -> BatchResult {
    let mut track = track.lock().unwrap_or_else(|e| e.into_inner());
    let mut part = SuiteReport::new(&batch.suite);
    part.tests = std::mem::take(&mut track.finished);
    if let Some(test) = track.running.take() {
        let mut outcome = TestOutcome::new(&batch.suite, test, Verdict::Error)
            .with_message(format!("{why} while this test ran"));
        outcome.machine = Some(machine.to_owned());
        outcome.profile = batch.profile.clone();
        part.tests.push(outcome);
    }
    part.error = Some(why.to_owned());
    let requeue = unfinished(&batch, &part, None);
    BatchResult {
        batch,
        part,
        requeue,
        withdrawn: Vec::new(),
        setup_failed: None,
    }
}

/// The items of `batch` without an outcome in `part`, less `except` (the
/// test the trouble was in: its verdict is decided by the recovery). A whole
/// suite is always unfinished.
fn unfinished(batch: &Batch, part: &SuiteReport, except: Option<&str>) -> Vec<WorkItem> {
    let done: HashSet<(Option<String>, &str)> = part
        .tests
        .iter()
        .map(|t| (t.profile.clone(), t.name.as_str()))
        .collect();
    batch
        .items
        .iter()
        .filter(|item| match &item.test {
            Some(test) => {
                Some(test.as_str()) != except
                    && !done.contains(&(item.profile.clone(), test.as_str()))
                    && !done.contains(&(None, test.as_str()))
            }
            None => true,
        })
        .cloned()
        .collect()
}

/// Runs one suite invocation and always returns a report: errors and
/// cancellation become its `error`. A test that hung or a machine that
/// stopped answering is the [`Trouble`] returned beside it.
async fn run_suite(
    suite: &dyn TestSuite,
    ctx: &SuiteContext,
    track: &Arc<Mutex<Track>>,
) -> (SuiteReport, Option<Trouble>) {
    let id = suite.id().to_owned();
    let machine = ctx.devices.name.clone();
    {
        let mut track = track.lock().unwrap_or_else(|e| e.into_inner());
        track.running = None;
        track.last_started = None;
        track.finished.clear();
    }
    let finished_so_far =
        || std::mem::take(&mut track.lock().unwrap_or_else(|e| e.into_inner()).finished);
    let mut trouble = None;
    ctx.emit(Event::SuiteStarted {
        machine: machine.clone(),
        suite: id.clone(),
        planned: ctx.only.as_ref().map(|o| o.len() as u32),
    });
    let started = Instant::now();
    let result = tokio::select! {
        result = suite.run(ctx) => Some(result),
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
                test: track
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_started
                    .clone(),
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
            report.tests = finished_so_far();
            report.error = Some("did not stop within the grace period after cancellation".into());
            report
        }
    };
    // A test that started and never got a verdict was cut off. Taken out
    // first: the lock must be free before test_finished re-enters the sink.
    let cut_off = track
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .running
        .take();
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
        outcome.profile = ctx.profile.clone();
        report.tests.push(ctx.test_finished(outcome));
    }
    report
        .duration_secs
        .get_or_insert(started.elapsed().as_secs_f64());
    report.id = id;
    (report, trouble)
}

/// Polls the provider for a notice that `machine` is being taken away
/// (a spot interruption); on one, puts why in `notice` and cancels `stop`
/// (this machine's). Stops polling when the returned guard is dropped.
fn watch_notices(
    env: &WorkerEnv<'_>,
    machine: &Machine,
    stop: &CancellationToken,
    notice: Arc<Mutex<Option<String>>>,
) -> AbortOnDrop {
    let provider = env.runner.provider.clone();
    let machine = machine.clone();
    let stop = stop.clone();
    let sink = env.sink.clone();
    let every = env.runner.notice_poll;
    AbortOnDrop(Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            if let Some(reason) = provider.interruption_notice(&machine).await {
                let message = format!("machine `{}` is being taken away: {reason}", machine.name);
                sink(warning(Some(&machine.name), message.clone()));
                notice.lock().expect("not poisoned").get_or_insert(message);
                stop.cancel();
                return;
            }
        }
    })))
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
