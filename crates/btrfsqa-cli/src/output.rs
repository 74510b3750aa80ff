//! Everything the user sees: logging, colours, progress, summaries.
//!
//! Everything printed goes through [`out`] and [`err`] (the `outln!`,
//! `out!` and `errln!` macros), which never panic: a stream whose reader
//! went away (`btrfsqa run | head -1`, a closed terminal or ssh session)
//! makes its output dropped, and the command goes on. A run still tears
//! down and keeps its results, and exits with its usual code.

use std::collections::HashMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use btrfsqa_model::{Counts, Event, RunReport, Stage, Verdict};

/// Prints to stdout, like `print!`, but never panics: once a write fails
/// (the reader is gone) stdout is left alone for good.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::out(format_args!($($arg)*))
    };
}

/// `out!` with a newline, like `println!`.
macro_rules! outln {
    () => {
        $crate::output::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints a line to stderr, like `eprintln!`, but never panics.
macro_rules! errln {
    () => {
        $crate::output::err(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to `stream` and flushes, unless it failed before; a
/// failure is remembered instead of raised.
fn write_to(mut stream: impl Write, closed: &AtomicBool, args: fmt::Arguments<'_>) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    if stream
        .write_fmt(args)
        .and_then(|()| stream.flush())
        .is_err()
    {
        closed.store(true, Ordering::Relaxed);
    }
}

/// What `out!` and `outln!` call.
pub fn out(args: fmt::Arguments<'_>) {
    write_to(std::io::stdout().lock(), &STDOUT_CLOSED, args);
}

/// What `errln!` calls.
pub fn err(args: fmt::Arguments<'_>) {
    write_to(std::io::stderr().lock(), &STDERR_CLOSED, args);
}

/// Sends `tracing` logs to stderr; `RUST_LOG` wins over `-v`.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(Colors::stderr().enabled)
        .try_init();
}

/// Whether to colour, decided once per stream: a terminal and no `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
pub struct Colors {
    enabled: bool,
}

impl Colors {
    fn decide(is_terminal: bool) -> Self {
        Colors {
            enabled: is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// For stderr.
    pub fn stderr() -> Self {
        Self::decide(std::io::stderr().is_terminal())
    }

    /// For stdout.
    pub fn stdout() -> Self {
        Self::decide(std::io::stdout().is_terminal())
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A verdict, coloured and padded.
    pub fn verdict(&self, verdict: Verdict) -> String {
        let code = match verdict {
            Verdict::Pass => "32",
            Verdict::Skip => "33",
            Verdict::Fail | Verdict::Hung | Verdict::Crashed => "1;31",
            Verdict::Error | Verdict::Interrupted => "35",
        };
        self.paint(code, &format!("{:>11}", verdict.as_str().to_uppercase()))
    }

    /// Bold.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Red.
    pub fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }
}

/// Turns events into one spinner line per machine and one line per finished
/// test, all on stderr.
pub struct Progress {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    colors: Colors,
    counts: Mutex<Counts>,
}

impl Progress {
    /// A renderer for the terminal (or plain lines when stderr is not one).
    pub fn new() -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            colors: Colors::stderr(),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn line(&self, text: String) {
        if self.multi.is_hidden() {
            errln!("{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }

    fn bar(&self, machine: &str) -> ProgressBar {
        let mut bars = self.bars.lock().expect("not poisoned");
        bars.entry(machine.to_owned())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}",
                    )
                    .expect("template is valid"),
                );
                bar.set_prefix(machine.to_owned());
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            })
            .clone()
    }

    /// Shows one event; URLs without their credentials.
    pub fn show(&self, event: &Event) {
        let mut event = event.clone();
        event.redact_credentials();
        match &event {
            Event::RunStarted {
                run_id,
                provider,
                suites,
            } => self.line(format!(
                "{} run {run_id} on {provider}: {}",
                self.colors.bold("btrfsqa"),
                suites.join(", ")
            )),
            Event::StageStarted { machine, stage } => match machine {
                Some(machine) => self
                    .bar(machine)
                    .set_message(format!("{}…", stage.as_str())),
                None => self.line(format!("  {}…", stage.as_str())),
            },
            Event::StageFinished {
                machine,
                stage,
                ok,
                message,
            } => {
                if !ok {
                    let who = machine.as_deref().unwrap_or("run");
                    self.line(format!(
                        "{} {who}: {} failed: {}",
                        self.colors.red("error:"),
                        stage.as_str(),
                        message.as_deref().unwrap_or("")
                    ));
                } else if let (None, Some(message)) = (machine, message) {
                    self.line(format!("  {} done: {message}", stage.as_str()));
                } else if let (Some(machine), Some(message), Stage::Kernel) =
                    (machine, message, stage)
                {
                    // What was built (or reused) and booted is worth a line.
                    self.line(format!("  machine {machine} kernel: {message}"));
                }
            }
            Event::MachineReady { machine } => self.line(format!(
                "  machine {} ready: {} ({}), kernel {}",
                machine.name,
                machine.address,
                machine.provider,
                machine.kernel.release.as_deref().unwrap_or("unknown")
            )),
            Event::SuiteStarted { machine, suite, .. } => {
                self.bar(machine).set_message(suite.clone());
            }
            Event::TestStarted {
                machine,
                suite,
                test,
            } => {
                self.bar(machine).set_message(format!("{suite} {test}"));
            }
            Event::TestFinished { machine, outcome } => {
                let counts = {
                    let mut counts = self.counts.lock().expect("not poisoned");
                    counts.add(outcome.verdict);
                    *counts
                };
                let duration = outcome
                    .duration_secs
                    .map(|d| format!("{d:>7.1}s"))
                    .unwrap_or_else(|| "        ".to_owned());
                let mut text = format!(
                    "{} {duration} {}/{}",
                    self.colors.verdict(outcome.verdict),
                    outcome.suite,
                    outcome.name
                );
                if !outcome.verdict.is_ok()
                    && let Some(message) = &outcome.message
                {
                    let first = message.lines().next().unwrap_or("");
                    text.push_str(&format!(": {first}"));
                }
                self.line(text);
                self.bar(machine).set_message(format!(
                    "{} passed, {} failed, {} skipped",
                    counts.pass,
                    counts.bad(),
                    counts.skip
                ));
            }
            Event::SuiteFinished {
                suite,
                error: Some(error),
                ..
            } => {
                self.line(format!(
                    "{} suite {suite}: {error}",
                    self.colors.red("error:")
                ));
            }
            Event::Warning { machine, message } => {
                let who = machine
                    .as_deref()
                    .map(|m| format!("{m}: "))
                    .unwrap_or_default();
                self.line(format!("warning: {who}{message}"));
            }
            Event::RunFinished { .. } => self.finish(),
            _ => {}
        }
    }

    /// Removes the spinners.
    pub fn finish(&self) {
        for bar in self.bars.lock().expect("not poisoned").values() {
            bar.finish_and_clear();
        }
    }
}

/// One event as the line `--message-format json` prints: one JSON object,
/// URLs without their credentials.
pub fn event_json(event: &Event) -> Option<String> {
    let mut event = event.clone();
    event.redact_credentials();
    serde_json::to_string(&event).ok()
}

/// The end-of-run table (stdout). URLs are shown without their credentials.
pub fn summary(report: &RunReport) -> String {
    let report = &*report.without_credentials();
    let colors = Colors::stdout();
    let mut out = String::new();
    out.push_str(&format!(
        "\n{:<24} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>12}\n",
        colors.bold("suite"),
        "pass",
        "fail",
        "skip",
        "error",
        "hung",
        "crashed",
        "interrupted"
    ));
    for suite in &report.suites {
        let c = suite.counts();
        out.push_str(&format!(
            "{:<24} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>12}\n",
            suite.id, c.pass, c.fail, c.skip, c.error, c.hung, c.crashed, c.interrupted
        ));
        if let Some(error) = &suite.error {
            out.push_str(&format!("  {} {error}\n", colors.red("suite error:")));
        }
    }
    let c = report.summary;
    out.push_str(&format!(
        "{:<24} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>12}\n",
        colors.bold("total"),
        c.pass,
        c.fail,
        c.skip,
        c.error,
        c.hung,
        c.crashed,
        c.interrupted
    ));
    let bad: Vec<_> = report.outcomes().filter(|o| !o.verdict.is_ok()).collect();
    if !bad.is_empty() {
        out.push_str(&format!("\n{}\n", colors.bold("not passed:")));
        for outcome in bad {
            let message = outcome
                .message
                .as_deref()
                .and_then(|m| m.lines().next())
                .unwrap_or("");
            out.push_str(&format!(
                "  {} {}/{} {message}\n",
                colors.verdict(outcome.verdict).trim_start(),
                outcome.suite,
                outcome.name
            ));
        }
    }
    if let Some(comparison) = &report.comparison
        && !comparison.slower.is_empty()
    {
        out.push_str(&format!(
            "\n{}\n",
            colors.bold("slower than their history (performance regressions):")
        ));
        for slow in &comparison.slower {
            out.push_str(&format!(
                "  {}/{}{} took {:.0} s, usually {:.0} s (over {:.0} s counts; {} earlier runs)\n",
                slow.suite,
                slow.name,
                slow.profile
                    .as_deref()
                    .map(|p| format!(" [{p}]"))
                    .unwrap_or_default(),
                slow.secs,
                slow.median_secs,
                slow.threshold_secs,
                slow.samples
            ));
        }
    }
    out.push_str(&format!(
        "\nrun {} {} in {:.0} s",
        report.run_id,
        match report.status {
            btrfsqa_model::RunStatus::Completed => "completed",
            btrfsqa_model::RunStatus::Errored => "errored",
            btrfsqa_model::RunStatus::Interrupted => "interrupted",
            btrfsqa_model::RunStatus::Running => "running",
        },
        report.duration_secs().unwrap_or_default()
    ));
    if let Some(kernel) = &report.provenance.kernel.release {
        out.push_str(&format!(" on kernel {kernel}"));
    }
    out.push('\n');
    if let Some(error) = &report.error {
        out.push_str(&format!("{} {error}\n", colors.red("error:")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::{Provenance, RunId, RunStatus, SuiteReport, TestOutcome};

    const URL: &str = "https://me:tok-1234567@git.example/fstests.git";

    #[test]
    fn the_summary_shows_urls_without_credentials() {
        let mut report = RunReport::start(
            RunId::parse("r1").unwrap(),
            chrono::Utc::now(),
            Provenance::default(),
        );
        let mut suite = SuiteReport::new("xfstests");
        suite.error = Some(format!("cannot fetch `{URL}`"));
        suite.tests.push(
            TestOutcome::new("xfstests", "btrfs/001", Verdict::Error)
                .with_message(format!("clone of {URL} failed")),
        );
        report.suites.push(suite);
        report.error = Some(format!("giving up on {URL}"));
        report.finish(RunStatus::Errored, chrono::Utc::now());
        let text = summary(&report);
        assert!(!text.contains("tok-1234567"), "{text}");
        assert!(text.contains("https://git.example/fstests.git"), "{text}");
    }

    #[test]
    fn events_show_urls_without_credentials() {
        let event = Event::Warning {
            machine: None,
            message: format!("cannot fetch `{URL}`"),
        };
        let line = event_json(&event).unwrap();
        assert!(!line.contains("tok-1234567"), "{line}");
        assert!(line.starts_with(r#"{"event":"warning""#), "{line}");
    }
}
