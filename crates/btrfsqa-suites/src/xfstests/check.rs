//! One `./check` invocation: started in a session of its own on the
//! machine, its console read as it streams (tests reported as they start
//! and end), and stopped when a test runs past its timeout, the run is
//! cancelled, or it prints nothing between tests for as long.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use btrfsqa_model::{TestOutcome, Verdict};
use btrfsqa_remote::{ExecRequest, RemoteError, shell_quote};
use chrono::{DateTime, Utc};

use super::common::ID;
use super::config::{self, MachineLayout, ResolvedSection, XfstestsConfig};
use super::parse::{ConsoleEvent, ConsoleParser, ParsedTest};
use crate::SuiteContext;

/// Runs and watches `./check` in the fstests tree on one machine.
pub(super) struct Check<'a> {
    pub(super) ctx: &'a SuiteContext,
    pub(super) config: &'a XfstestsConfig,
    /// The built fstests tree on the machine.
    pub(super) dir: &'a str,
    pub(super) layout: &'a MachineLayout,
}

impl Check<'_> {
    /// Where the running `./check` leaves its pid (it runs remotely).
    fn pidfile(&self, section: &ResolvedSection) -> String {
        format!(
            "{}/check-{}.pid",
            self.layout.result_base, section.fstests_name
        )
    }

    /// Stops a running `./check` and everything it started (its own session).
    async fn stop_check(&self, section: &ResolvedSection) {
        // `./check` cleans up (unmounts) after a SIGTERM: ten seconds for it.
        let command = crate::stop::stop_group(&self.pidfile(section), 10);
        let _ = self
            .ctx
            .host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(60)),
                None,
            )
            .await;
    }

    /// Runs `./check` once for `section`, reading its console as it streams.
    pub(super) async fn invoke(
        &self,
        section: &ResolvedSection,
        exclude_file: Option<&str>,
        console: &mut std::fs::File,
    ) -> Invocation {
        let ctx = self.ctx;
        let host = ctx.host.as_ref();
        let args = config::check_args(section, exclude_file, ctx.only.as_deref());
        let check = std::iter::once("./check".to_owned())
            .chain(args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ");
        // A session of its own, so a hung test can be stopped with all it
        // started; its pid goes to a file because the command runs remotely.
        let inner = format!(
            "echo $$ > {}; exec {check}",
            shell_quote(&self.pidfile(section))
        );
        let command = format!("setsid -w sh -c {}", shell_quote(&inner));

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let exec = host.exec(ExecRequest::new(command).cwd(self.dir.to_owned()), Some(tx));
        tokio::pin!(exec);
        let mut parser = ConsoleParser::new();
        let mut live = LiveState::default();
        // Between tests (no per-test timeout applies) the configured or
        // default one does.
        let timeout = Duration::from_secs(
            self.config
                .test_timeout_secs
                .unwrap_or(config::DEFAULT_TEST_TIMEOUT_SECS),
        );
        live.configured = self.config.test_timeout_secs.map(Duration::from_secs);
        let mut stopped: Option<Verdict> = None;
        // Between tests (set-up, mkfs, the summary) `./check` is stopped
        // after the same time without any output.
        let mut last_output = tokio::time::Instant::now();
        let mut idle_stop = false;
        let mut evidence = None;
        let result = loop {
            let deadline = live.deadline.unwrap_or(last_output + timeout);
            tokio::select! {
                result = &mut exec => break result,
                Some(chunk) = rx.recv() => {
                    last_output = tokio::time::Instant::now();
                    let _ = console.write_all(&chunk.data);
                    for event in parser.push(&chunk.data) {
                        live.event(ctx, section, event, timeout);
                    }
                }
                _ = ctx.cancel.cancelled(), if stopped.is_none() => {
                    stopped = Some(Verdict::Interrupted);
                    live.stopped = parser.running().map(str::to_owned);
                    self.stop_check(section).await;
                }
                _ = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                    stopped = Some(Verdict::Hung);
                    live.stopped = parser.running().map(str::to_owned);
                    idle_stop = live.stopped.is_none();
                    self.stop_check(section).await;
                    // What stays blocked after the kill is what matters.
                    if live.stopped.is_some() {
                        evidence = crate::kernel_log::hang_evidence(host).await;
                    }
                }
            }
        };
        while let Ok(chunk) = rx.try_recv() {
            let _ = console.write_all(&chunk.data);
            for event in parser.push(&chunk.data) {
                live.event(ctx, section, event, timeout);
            }
        }
        for event in parser.finish() {
            live.event(ctx, section, event, timeout);
        }
        // `./check` that ran no test and failed (a broken build, a config
        // fstests refused) is a harness error, with what it printed.
        let refused = match &result {
            Ok(out) if !out.success() && live.started.is_empty() && stopped.is_none() => Some(
                format!("{}: {}", exit_status(out), crate::setup::output_tail(out)),
            ),
            _ => None,
        };
        let lost = result.err();
        // The test that was running when `./check` was stopped (or when the
        // machine was lost) gets the reason; whatever the console printed
        // for it after the stop (`Terminated`) is not its result.
        let running = live
            .stopped
            .clone()
            .or_else(|| parser.running().map(str::to_owned));
        let interrupted = running.as_deref().and_then(|name| {
            let (verdict, message) = match (&lost, stopped) {
                (Some(err), _) => (
                    Verdict::Crashed,
                    format!("the machine was lost while this test ran: {err}"),
                ),
                (None, Some(Verdict::Hung)) => (
                    Verdict::Hung,
                    format!(
                        "still running after {} s: stopped",
                        live.test_timeout.unwrap_or(timeout).as_secs()
                    ),
                ),
                (None, Some(v)) => (v, "the run was stopped while this test ran".to_owned()),
                (None, None) => return None,
            };
            Some(ParsedTest {
                name: name.to_owned(),
                verdict,
                duration_secs: live
                    .started
                    .get(name)
                    .map(|(_, at)| at.elapsed().as_secs_f64()),
                message: Some(message),
            })
        });
        Invocation {
            live,
            stopped,
            lost,
            interrupted,
            idle_stop,
            refused,
            evidence,
        }
    }
}

/// What one `./check` invocation gave.
pub(super) struct Invocation {
    pub(super) live: LiveState,
    pub(super) stopped: Option<Verdict>,
    pub(super) lost: Option<RemoteError>,
    pub(super) interrupted: Option<ParsedTest>,
    /// Stopped for printing nothing outside a test.
    pub(super) idle_stop: bool,
    /// Exited with an error before running any test: its status and output.
    pub(super) refused: Option<String>,
    /// What the machine showed after a hung test was stopped.
    pub(super) evidence: Option<String>,
}

fn exit_status(out: &btrfsqa_remote::ExecOutput) -> String {
    match out.code {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    }
}

/// What the console said while the section ran.
#[derive(Debug, Default)]
pub(super) struct LiveState {
    /// Per test: when it started (wall clock, monotonic).
    pub(super) started: BTreeMap<String, (DateTime<Utc>, Instant)>,
    pub(super) finished: Vec<ParsedTest>,
    deadline: Option<tokio::time::Instant>,
    /// The test that ran when btrfsqa stopped `./check`.
    stopped: Option<String>,
    /// The configured per-test timeout, if any.
    configured: Option<Duration>,
    /// The running test's timeout.
    test_timeout: Option<Duration>,
}

impl LiveState {
    fn event(
        &mut self,
        ctx: &SuiteContext,
        section: &ResolvedSection,
        event: ConsoleEvent,
        timeout: Duration,
    ) {
        match event {
            ConsoleEvent::Section(_) => {}
            ConsoleEvent::TestStarted(name) => {
                ctx.test_started(ID, &name);
                let timeout = ctx.timeout_for(ID, &name, self.configured, timeout);
                self.test_timeout = Some(timeout);
                self.deadline = Some(tokio::time::Instant::now() + timeout);
                self.started.insert(name, (Utc::now(), Instant::now()));
            }
            ConsoleEvent::TestFinished(test) if self.stopped.as_ref() == Some(&test.name) => {}
            ConsoleEvent::TestFinished(test) => {
                self.deadline = None;
                let mut outcome = TestOutcome::new(ID, test.name.clone(), test.verdict);
                outcome.profile = Some(section.name.clone());
                outcome.duration_secs = test.duration_secs;
                outcome.message = test.message.clone();
                outcome.started_at = self.started.get(&test.name).map(|(at, _)| *at);
                // Live progress; the report's outcome adds what result.xml
                // and the collected files say.
                ctx.test_finished(outcome);
                self.finished.push(test);
            }
        }
    }
}
