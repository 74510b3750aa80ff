//! `btrfsqa watch`: polls the refs of `[watch]` and runs when one moves.

use btrfsqa_runner::watch::{Tick, Watcher};
use btrfsqa_runner::{CancellationToken, RunOverrides};

use super::run::{event_sink, report, watch_signals};
use super::{Outcome, failed, load_settings, print_error};
use crate::args::{MessageFormat, WatchArgs};
use crate::exit::Code;

pub async fn watch(args: WatchArgs) -> Outcome {
    let settings = load_settings(&args.config, RunOverrides::default())?;
    let (mut watcher, stale) = Watcher::start(settings)?;
    if let Some(stale) = stale {
        errln!("watch: took over the lock of a watcher that is gone ({stale})");
    }
    let cancel = CancellationToken::new();
    watch_signals(cancel.clone());
    let json = args.message_format == MessageFormat::Json;
    loop {
        let (sink, progress) = event_sink(args.message_format);
        let code = match watcher.tick(sink, cancel.clone()).await {
            Ok(Tick::Unchanged) => {
                errln!("watch: no watched ref moved");
                Code::Ok
            }
            Ok(Tick::Noted(heads)) => {
                for head in &heads {
                    errln!(
                        "watch: first start: {} noted; a run starts when it moves",
                        head.describe()
                    );
                }
                Code::Ok
            }
            Ok(Tick::StoreBusy(owner)) => {
                errln!(
                    "watch: the results store is in use ({owner}); trying again at the next poll"
                );
                Code::Ok
            }
            Ok(Tick::Ran {
                moved,
                outcome,
                bisected,
            }) => {
                progress.finish();
                let what: Vec<String> = moved.iter().map(|h| h.describe()).collect();
                errln!(
                    "watch: {} moved: ran {}",
                    what.join(", "),
                    outcome.report.run_id
                );
                let code = report(&outcome, json);
                match bisected {
                    Some(Ok(bisection)) => match &bisection.outcome {
                        Some(btrfsqa_runner::bisect::Outcome::Found { commit, subject }) => {
                            errln!(
                                "watch: bisected {}: first bad commit {commit} ({subject})",
                                bisection.test
                            )
                        }
                        _ => errln!(
                            "watch: bisected {}: undecided ({})",
                            bisection.test,
                            bisection.id
                        ),
                    },
                    Some(Err(err)) => print_error(&err),
                    None => {}
                }
                code
            }
            // Said, and watching goes on: the next poll may succeed.
            Err(err) => {
                progress.finish();
                failed(&err.into())
            }
        };
        if cancel.is_cancelled() {
            return Ok(Code::Interrupted);
        }
        if args.once {
            return Ok(code);
        }
        let wait = watcher.next_wait();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return Ok(Code::Interrupted),
        }
    }
}
