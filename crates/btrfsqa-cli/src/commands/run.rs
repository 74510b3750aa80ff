//! `btrfsqa run`.

use std::sync::Arc;

use btrfsqa_model::Event;
use btrfsqa_runner::{CancellationToken, RunOverrides, Runner};

use super::{Outcome, load_settings, print_error};
use crate::args::{MessageFormat, ResumeArgs, RunArgs};
use crate::exit::Code;
use crate::output::{Progress, summary};

pub async fn run(args: RunArgs) -> Outcome {
    let overrides = RunOverrides {
        provider: args.provider.clone(),
        suites: args.suites.clone(),
        profiles: args.profiles.clone(),
        results_dir: None,
        site_repo: args.site_repo.clone(),
        shards: args.shards,
    };
    let settings = load_settings(&args.config, overrides)?;
    match btrfsqa_runner::matrix::split(&settings, &btrfsqa_runner::matrix::new_id()) {
        Some(runs) => drive_matrix(runs, args.message_format).await,
        None => drive(settings, args.message_format, None).await,
    }
}

/// A kernel matrix: every kernel's run at once, then each one's summary
/// and a line per kernel. Exits with the most severe of their codes.
async fn drive_matrix(
    runs: Vec<btrfsqa_runner::matrix::MatrixRun>,
    format: MessageFormat,
) -> Outcome {
    let mut runners = Vec::new();
    for run in runs {
        runners.push((run.kernel, Runner::from_settings(run.settings).await?));
    }
    let cancel = CancellationToken::new();
    watch_signals(cancel.clone());
    let json = format == MessageFormat::Json;
    let (sink, progress) = event_sink(format);
    let outcomes = btrfsqa_runner::matrix::run(runners, sink, cancel).await;
    progress.finish();
    let mut codes = Vec::new();
    let mut lines = Vec::new();
    for outcome in &outcomes {
        match &outcome.result {
            Ok(run) => {
                codes.push(report(run, json));
                let s = run.report.summary;
                lines.push(format!(
                    "  {:<16} {}  {} passed, {} failed, {} skipped, {} other  (kernel {})",
                    outcome.kernel,
                    run.report.run_id,
                    s.pass,
                    s.fail + s.hung + s.crashed,
                    s.skip,
                    s.error + s.interrupted,
                    run.report
                        .provenance
                        .kernel
                        .release
                        .as_deref()
                        .unwrap_or("unknown"),
                ));
            }
            Err(err) => {
                errln!("error: kernel {}:", outcome.kernel);
                print_error(err);
                codes.push(Code::from(err.kind()));
                lines.push(format!("  {:<16} did not run", outcome.kernel));
            }
        }
    }
    if !json {
        outln!("\nkernel matrix:");
        for line in lines {
            outln!("{line}");
        }
    }
    Ok(most_severe(&codes))
}

/// The code that says the most: interrupted, infrastructure, bad usage,
/// failed tests, publishing, then success.
fn most_severe(codes: &[Code]) -> Code {
    const ORDER: [Code; 6] = [
        Code::Interrupted,
        Code::Infrastructure,
        Code::Usage,
        Code::TestsFailed,
        Code::PublishFailed,
        Code::Ok,
    ];
    ORDER
        .into_iter()
        .find(|code| codes.contains(code))
        .unwrap_or(Code::Ok)
}

/// `btrfsqa resume`: the tests of a stored run that have no verdict yet, on
/// a new machine.
pub async fn resume(args: ResumeArgs) -> Outcome {
    let overrides = RunOverrides {
        provider: args.provider.clone(),
        site_repo: args.site_repo.clone(),
        ..Default::default()
    };
    let settings = load_settings(&args.config, overrides)?;
    // A run of a kernel matrix goes on with its own kernel.
    let (run_id, settings) = btrfsqa_runner::stored::resume_settings(settings, &args.run_id)?;
    drive(settings, args.message_format, Some(run_id)).await
}

/// Runs (or resumes) with progress, signals and the summary.
async fn drive(
    settings: btrfsqa_runner::Settings,
    format: MessageFormat,
    resume: Option<btrfsqa_model::RunId>,
) -> Outcome {
    let runner = Runner::from_settings(settings).await?;

    let cancel = CancellationToken::new();
    watch_signals(cancel.clone());
    let json = format == MessageFormat::Json;
    let (sink, progress) = event_sink(format);

    let result = match &resume {
        Some(run_id) => runner.resume(run_id, sink, cancel).await,
        None => runner.run(sink, cancel).await,
    };
    progress.finish();
    Ok(report(&result?, json))
}

/// Where a run's events go: progress on stderr, or JSON lines on stdout.
pub(super) fn event_sink(format: MessageFormat) -> (btrfsqa_suites::EventSink, Arc<Progress>) {
    let json = format == MessageFormat::Json;
    let progress = Arc::new(Progress::new());
    let shown = progress.clone();
    let sink: btrfsqa_suites::EventSink = Arc::new(move |event: Event| {
        if json {
            // One object per line on stdout, for machines.
            if let Some(line) = crate::output::event_json(&event) {
                outln!("{line}");
            }
        } else {
            shown.show(&event);
        }
    });
    (sink, progress)
}

/// Prints a finished run's summary and problems; its exit code.
pub(super) fn report(outcome: &btrfsqa_runner::RunOutcome, json: bool) -> Code {
    if !json {
        out!("{}", summary(&outcome.report));
        outln!("report: {}", outcome.run_dir.join("report.json").display());
        if let Some(published) = &outcome.published {
            outln!(
                "published: {}{}",
                published.location,
                published
                    .commit
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(error) = &outcome.publish_error {
        errln!(
            "error: publishing failed (results are kept in the store; `btrfsqa publish {}` retries): {error}",
            outcome.report.run_id
        );
    }
    for error in &outcome.teardown_errors {
        errln!("error: teardown: {error} (run `btrfsqa reap` to retry)");
    }
    outcome.verdict().into()
}

/// First SIGINT/SIGTERM/SIGHUP (a closed terminal or ssh session): stop
/// the run (it tears down and keeps results). Second: say that teardown is
/// under way. Third: leave at once. What is said goes to a stderr that may
/// be gone already: it never stops the run.
pub(super) fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
            count += 1;
            match count {
                1 => {
                    errln!(
                        "\nstopping: tearing down and saving results (signal again to see this, a third time to quit at once)"
                    );
                    cancel.cancel();
                }
                2 => errln!(
                    "still tearing down; a third signal quits and leaves cleanup to `btrfsqa reap`"
                ),
                _ => std::process::exit(Code::Interrupted as i32),
            }
        }
    });
}
