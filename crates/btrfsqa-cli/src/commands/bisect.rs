//! `btrfsqa bisect`: the first bad commit of a source for one test.

use btrfsqa_runner::bisect::search::Mark;
use btrfsqa_runner::bisect::{BisectRequest, Bisection, Outcome, Step, bisect as run_bisect};
use btrfsqa_runner::watch::WatchSource;
use btrfsqa_runner::{CancellationToken, RunOverrides};

use super::run::{event_sink, watch_signals};
use super::{load_settings, usage};
use crate::args::{BisectArgs, MessageFormat};
use crate::exit::Code;

pub async fn bisect(args: BisectArgs) -> super::Outcome {
    if args.runs == 0 {
        return usage("--runs must be at least 1");
    }
    let settings = load_settings(&args.config, RunOverrides::default())?;
    let source = match &args.source {
        Some(name) => WatchSource::from(name.clone()),
        None => btrfsqa_runner::bisect::default_source(&settings, &args.suite),
    };
    let request = BisectRequest {
        suite: args.suite.clone(),
        test: args.test.clone(),
        profile: args.profile.clone(),
        source,
        good: args.good.clone(),
        bad: args.bad.clone(),
        runs: args.runs,
    };
    let json = args.message_format == MessageFormat::Json;
    let cancel = CancellationToken::new();
    watch_signals(cancel.clone());
    // The runs' progress on stderr (JSON lines would mix with the steps').
    let (events, progress) = event_sink(if json {
        MessageFormat::Human
    } else {
        args.message_format
    });
    let on_step = move |state: &Bisection, step: &Step| {
        progress.finish();
        if json {
            let line = serde_json::json!({
                "event": "bisect-step",
                "bisect": state.id,
                "step": step,
            });
            outln!("{line}");
        } else {
            errln!("{}", describe(step));
        }
    };
    let state = run_bisect(&settings, &request, events, cancel.clone(), &on_step).await?;
    let journal = settings
        .results_dir()
        .join(".bisect")
        .join(&state.id)
        .join("bisect.json");
    let runs = state.test_runs();
    publish(&settings, &state).await;
    let code = match state.outcome.clone() {
        Some(Outcome::Found { commit, subject }) => {
            if json {
                let line = serde_json::json!({
                    "event": "bisect-finished",
                    "bisect": state.id,
                    "first_bad": commit,
                    "subject": subject,
                    "test_runs": runs,
                    "journal": journal,
                });
                outln!("{line}");
            } else {
                errln!(
                    "first bad commit ({runs} test runs over {} commits; {}): {subject}",
                    state.commits.len(),
                    journal.display()
                );
                outln!("{commit}");
            }
            Code::Ok
        }
        Some(Outcome::Undecided { why, commits }) => {
            if json {
                let line = serde_json::json!({
                    "event": "bisect-finished",
                    "bisect": state.id,
                    "first_bad": null,
                    "undecided": why,
                    "candidates": commits,
                    "journal": journal,
                });
                outln!("{line}");
            } else {
                errln!("error: cannot decide: {why}");
                for commit in &commits {
                    errln!("  could be {commit}");
                }
                outln!("undecided");
            }
            Code::Infrastructure
        }
        None => Code::Infrastructure,
    };
    Ok(code)
}

/// Publishes the site again once the bisection has ended, so its page
/// shows the end (each step's run published before its step was saved).
/// A failure is said and does not change the exit code: the journal is in
/// the store and the next publish takes it.
async fn publish(settings: &btrfsqa_runner::Settings, state: &Bisection) {
    let Some(publisher) = btrfsqa_runner::registry::publisher(settings) else {
        return;
    };
    let Some(run) = state
        .steps
        .iter()
        .rev()
        .flat_map(|s| s.runs.iter().rev())
        .find_map(|id| btrfsqa_model::RunId::parse(id).ok())
    else {
        return;
    };
    let store = btrfsqa_model::ResultsStore::new(settings.results_dir());
    match publisher.publish(&store, &run).await {
        Ok(published) => errln!(
            "published: {} (the bisection's page: bisect/{}/index.html)",
            published.location,
            state.id
        ),
        Err(err) => errln!(
            "error: publishing the bisection failed (its journal is in the store): {}",
            btrfsqa_runner::error_chain(&err)
        ),
    }
}

fn describe(step: &Step) -> String {
    let short: String = step.commit.chars().take(12).collect();
    let verdicts: Vec<&str> = step
        .verdicts
        .iter()
        .map(|v| v.map_or("did not run", |v| v.as_str()))
        .collect();
    let mark = match step.mark {
        Mark::Good => "good",
        Mark::Bad => "bad",
        Mark::Skip => "skip",
    };
    let mut line = format!(
        "bisect: {} {short}: {mark} ({})",
        step.purpose,
        verdicts.join(", ")
    );
    if let Some(note) = &step.note {
        line.push_str(&format!(": {}", note.lines().next().unwrap_or("")));
    }
    line
}
