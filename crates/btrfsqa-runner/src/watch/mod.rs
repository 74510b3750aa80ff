//! `btrfsqa watch`: runs that start by themselves when a watched git ref
//! moves.
//!
//! A [`Watcher`] polls every `[[watch.refs]]` with `git ls-remote` (no
//! clone), compares the heads with the state it keeps in the results store
//! (`RESULTS/.watch/state.json`, so a restart picks up where it stopped),
//! and when one moved starts exactly one run with every watched source
//! pinned to the head it saw; the run's report records the heads that
//! triggered it (label `trigger`). On the first start with no state it
//! notes the heads and waits for them to move (`skip-current`). Polls that
//! fail back off (the wait doubles up to `max-backoff-secs`).
//!
//! One watcher per store (`RESULTS/.watch/watch.lock`), and a watcher's
//! runs and manual runs never drive the store at once (see the `lock`
//! module): a watcher skips a poll while a manual run uses the store; a
//! manual run is refused while a watcher's run goes.

pub mod config;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use btrfsqa_model::EventSink;

pub use config::{WatchConfig, WatchSource, WatchedRef};

use crate::bisect::{BisectError, BisectRequest, Bisection, bisect_with};
use crate::lock::{self, Held, Refused};
use crate::{RunError, RunOutcome, Runner, Settings};

/// Why watching could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// `[watch]` names no ref.
    #[error("`watch.refs` names no ref to watch (see `btrfsqa config default`)")]
    NothingToWatch,
    /// A watched source has no repository to poll.
    #[error("`watch.refs[{index}]`: {message}")]
    Source {
        /// Which ref.
        index: usize,
        /// What is missing.
        message: String,
    },
    /// Another watcher (a live process) watches this store.
    #[error("another `btrfsqa watch` watches `{}` ({owner})", store.display())]
    Watched {
        /// The store.
        store: PathBuf,
        /// Who (`pid N on HOST`).
        owner: String,
    },
    /// `git ls-remote` failed.
    #[error("cannot poll `{ref_}` of `{url}`: {message}")]
    Poll {
        /// The repository (no credentials).
        url: String,
        /// The ref.
        ref_: String,
        /// What git said.
        message: String,
    },
    /// The state file could not be read or written.
    #[error("watch state `{}`", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The run could not start or keep its results.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// One watched ref and the commit its head is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// What it is the source of.
    pub source: WatchSource,
    /// The repository (no credentials).
    pub url: String,
    /// The branch or tag.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit.
    pub commit: String,
}

impl Head {
    fn key(&self) -> String {
        format!("{} {} {}", self.source.as_str(), self.url, self.git_ref)
    }

    /// `kernel for-next 1a2b3c4d5e6f`.
    pub fn describe(&self) -> String {
        let short: String = self.commit.chars().take(12).collect();
        format!("{} {} {short}", self.source.as_str(), self.git_ref)
    }
}

/// What the watcher remembers in the results store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchState {
    /// `source url ref` → the last commit seen (and tested, unless skipped).
    pub heads: BTreeMap<String, String>,
    /// The runs it started, newest last (at most [`KEPT_TRIGGERS`]).
    pub triggered: Vec<Triggered>,
}

/// How many triggered runs the state keeps.
pub const KEPT_TRIGGERS: usize = 200;

/// A run the watcher started, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Triggered {
    /// When.
    pub at: DateTime<Utc>,
    /// The run.
    pub run_id: String,
    /// The heads that moved.
    pub moved: Vec<Head>,
}

/// What one poll did.
#[derive(Debug)]
pub enum Tick {
    /// No watched ref moved.
    Unchanged,
    /// First start: the current heads were noted, nothing run.
    Noted(Vec<Head>),
    /// A manual run uses the store: this poll was skipped.
    StoreBusy(String),
    /// Heads moved and a run tested them.
    Ran {
        /// What moved.
        moved: Vec<Head>,
        /// The run.
        outcome: Box<RunOutcome>,
        /// With `watch.bisect`: the bisection of a new failure the run's
        /// reruns confirmed.
        bisected: Option<Result<Box<Bisection>, BisectError>>,
    },
}

/// Watches the refs of one configuration over one results store.
pub struct Watcher {
    settings: Settings,
    state_path: PathBuf,
    state: WatchState,
    /// Polls that failed in a row.
    failures: u32,
    _lock: Held,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Starts watching: takes the store's watcher lock and reads the state.
    /// Also returns the owner of a stale lock it took over, if any.
    pub fn start(settings: Settings) -> Result<(Watcher, Option<String>), WatchError> {
        if settings.config.watch.refs.is_empty() {
            return Err(WatchError::NothingToWatch);
        }
        for index in 0..settings.config.watch.refs.len() {
            repository(&settings, index)?;
        }
        let dir = settings.results_dir().join(".watch");
        let held = match lock::take(&dir.join("watch.lock"), true, "btrfsqa watch") {
            Ok(held) => held,
            Err(Refused::Held(owner)) => {
                return Err(WatchError::Watched {
                    store: settings.results_dir().to_owned(),
                    owner,
                });
            }
            Err(Refused::Io(_, source)) => {
                return Err(WatchError::State {
                    path: dir.join("watch.lock"),
                    source,
                });
            }
        };
        let stale = held.stale.clone();
        let state_path = dir.join("state.json");
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => WatchState::default(),
            Err(source) => {
                return Err(WatchError::State {
                    path: state_path,
                    source,
                });
            }
        };
        Ok((
            Watcher {
                settings,
                state_path,
                state,
                failures: 0,
                _lock: held,
            },
            stale,
        ))
    }

    /// What it remembers.
    pub fn state(&self) -> &WatchState {
        &self.state
    }

    /// How long to wait before the next poll: the interval, doubled for
    /// each failure in a row, at most `max-backoff-secs`.
    pub fn next_wait(&self) -> Duration {
        let watch = &self.settings.config.watch;
        let factor = 1u64 << self.failures.min(16);
        Duration::from_secs(
            watch
                .interval_secs
                .saturating_mul(factor)
                .min(watch.max_backoff_secs),
        )
    }

    /// The head of every watched ref now.
    pub async fn heads(&self) -> Result<Vec<Head>, WatchError> {
        let mut heads = Vec::new();
        for (index, watched) in self.settings.config.watch.refs.iter().enumerate() {
            let url = repository(&self.settings, index)?;
            let commit = ls_remote(&url, &watched.git_ref).await?;
            heads.push(Head {
                source: watched.source.clone(),
                url: btrfsqa_model::redact_url(&url),
                git_ref: watched.git_ref.clone(),
                commit,
            });
        }
        Ok(heads)
    }

    /// One poll: when a watched ref moved, one run of the configuration with
    /// every watched source at the head seen (`events` and `cancel` as for
    /// [`Runner::run`]).
    pub async fn tick(
        &mut self,
        events: EventSink,
        cancel: CancellationToken,
    ) -> Result<Tick, WatchError> {
        let heads = match self.heads().await {
            Ok(heads) => {
                self.failures = 0;
                heads
            }
            Err(err) => {
                self.failures += 1;
                return Err(err);
            }
        };
        let first = self.state.heads.is_empty();
        let moved: Vec<Head> = heads
            .iter()
            .filter(|h| self.state.heads.get(&h.key()) != Some(&h.commit))
            .cloned()
            .collect();
        if moved.is_empty() {
            return Ok(Tick::Unchanged);
        }
        if first && self.settings.config.watch.skip_current {
            self.remember(&heads, None)?;
            return Ok(Tick::Noted(heads));
        }
        let _drivers = match lock::store_drivers(self.settings.results_dir(), true) {
            Ok(held) => held,
            Err(RunError::StoreInUse { owner, .. }) => return Ok(Tick::StoreBusy(owner)),
            Err(err) => return Err(err.into()),
        };
        let mut runner = Runner::from_settings(pinned(&self.settings, &heads, &moved)).await?;
        runner.store_lock_held = true;
        let outcome = runner.run(events.clone(), cancel.clone()).await?;
        // An interrupted run tested nothing for sure: its heads stay new.
        if outcome.report.status != btrfsqa_model::RunStatus::Interrupted {
            self.remember(&heads, Some((&outcome, &moved)))?;
        }
        let mut bisected = None;
        if self.settings.config.watch.bisect && !cancel.is_cancelled() {
            let store = btrfsqa_model::ResultsStore::new(self.settings.results_dir());
            let baseline = outcome
                .report
                .comparison
                .as_ref()
                .and_then(|c| c.baseline.as_ref())
                .and_then(|id| store.read_report(id).ok());
            if let Some(request) = bisect_request(&outcome.report, baseline.as_ref(), &moved) {
                // The watcher holds the store: its bisection's runs do not
                // take the lock again.
                let make = |settings: Settings| -> futures_util::future::BoxFuture<
                    'static,
                    Result<Runner, RunError>,
                > {
                    Box::pin(async move {
                        let mut runner = Runner::from_settings(settings).await?;
                        runner.store_lock_held = true;
                        Ok(runner)
                    })
                };
                bisected = Some(
                    bisect_with(&self.settings, &request, events, cancel, &|_, _| {}, &make)
                        .await
                        .map(Box::new),
                );
            }
        }
        Ok(Tick::Ran {
            moved,
            outcome: Box::new(outcome),
            bisected,
        })
    }

    fn remember(
        &mut self,
        heads: &[Head],
        run: Option<(&RunOutcome, &[Head])>,
    ) -> Result<(), WatchError> {
        for head in heads {
            self.state.heads.insert(head.key(), head.commit.clone());
        }
        if let Some((outcome, moved)) = run {
            self.state.triggered.push(Triggered {
                at: Utc::now(),
                run_id: outcome.report.run_id.to_string(),
                moved: moved.to_vec(),
            });
            let extra = self.state.triggered.len().saturating_sub(KEPT_TRIGGERS);
            self.state.triggered.drain(..extra);
        }
        let json = serde_json::to_vec_pretty(&self.state).expect("the state serializes");
        btrfsqa_model::fs::write_atomic(&self.state_path, &json).map_err(|source| {
            WatchError::State {
                path: self.state_path.clone(),
                source,
            }
        })
    }
}

/// The bisection a watcher starts after `run`: of its first new failure
/// that every rerun confirmed, over the one source that moved, from the
/// commit the `baseline` run tested to the new head. `None` when there is no
/// such failure, several sources moved (which broke it is unknown), or the
/// baseline does not say which commit of the source it tested.
pub fn bisect_request(
    run: &btrfsqa_model::RunReport,
    baseline: Option<&btrfsqa_model::RunReport>,
    moved: &[Head],
) -> Option<BisectRequest> {
    let [head] = moved else {
        return None;
    };
    let failure = run
        .comparison
        .as_ref()?
        .regressions
        .iter()
        .find(|t| t.attempts.len() > 1 && t.attempts.iter().all(|v| !v.is_ok()))?;
    let baseline = baseline?;
    let good = match &head.source {
        WatchSource::Kernel => baseline.provenance.kernel.source.as_ref()?.commit.clone()?,
        WatchSource::Suite(_) => baseline
            .suites
            .iter()
            .find(|s| s.id == head.source.as_str())?
            .source
            .as_ref()?
            .commit
            .clone()?,
    };
    (good != head.commit).then(|| BisectRequest {
        suite: failure.suite.clone(),
        test: failure.name.clone(),
        profile: failure.profile.clone(),
        source: head.source.clone(),
        good,
        bad: head.commit.clone(),
        runs: 1,
    })
}

/// The repository of watched ref `index`: its own `url`, else the URL its
/// source is configured with.
fn repository(settings: &Settings, index: usize) -> Result<String, WatchError> {
    let watched = &settings.config.watch.refs[index];
    if let Some(url) = &watched.url {
        return Ok(url.clone());
    }
    match &watched.source {
        WatchSource::Kernel => settings
            .config
            .kernel
            .git_source()
            .map(|s| s.url)
            .ok_or_else(|| WatchError::Source {
                index,
                message:
                    "the kernel under test is the installed one: give `url` or set `kernel.source`"
                        .into(),
            }),
        WatchSource::Suite(id) => crate::plugins::suite_source(&settings.config.suites, id)
            .map(|source| source.url)
            .ok_or_else(|| WatchError::Source {
                index,
                message: format!("no suite section `[suites.{id}]` is built from git"),
            }),
    }
}

/// The settings of a run of `heads`: each watched source pinned to the
/// commit seen, the heads that moved in the `trigger` label.
pub fn pinned(settings: &Settings, heads: &[Head], moved: &[Head]) -> Settings {
    let mut pinned = settings.clone();
    let config = &mut pinned.config;
    for (index, head) in heads.iter().enumerate() {
        let url = repository(settings, index).unwrap_or_else(|_| head.url.clone());
        match &head.source {
            WatchSource::Kernel => {
                config.kernel.source = Some(url);
                config.kernel.git_ref = Some(head.commit.clone());
            }
            WatchSource::Suite(id) => {
                crate::plugins::pin_suite_source(&mut config.suites, id, Some(&url), &head.commit);
            }
        }
    }
    config.run.labels.insert(
        "trigger".to_owned(),
        moved
            .iter()
            .map(Head::describe)
            .collect::<Vec<_>>()
            .join(", "),
    );
    pinned
}

/// The commit `git_ref` of `url` is at (`git ls-remote`, no clone): the
/// branch, else the tag (peeled to its commit).
pub async fn ls_remote(url: &str, git_ref: &str) -> Result<String, WatchError> {
    let fail = |message: String| WatchError::Poll {
        url: btrfsqa_model::redact_url(url),
        ref_: git_ref.to_owned(),
        message,
    };
    if let Some(problem) =
        btrfsqa_suites::git_url_problem(url).or_else(|| btrfsqa_suites::git_ref_problem(git_ref))
    {
        return Err(fail(problem));
    }
    // The URL's credentials go to git as a header in its environment.
    let (bare_url, auth) = btrfsqa_suites::git_url_and_auth(url);
    let out = Command::new("git")
        .args(["ls-remote", "--", &bare_url, git_ref])
        .envs(auth)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| fail(format!("cannot run `git`: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(fail(btrfsqa_model::redact_url(stderr.trim())));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    head_of(&text, git_ref).ok_or_else(|| fail("no such branch or tag".to_owned()))
}

/// The commit of `git_ref` in `git ls-remote` output: a branch first, then
/// a tag's peeled commit, then the tag itself.
pub fn head_of(ls_remote: &str, git_ref: &str) -> Option<String> {
    let refs: BTreeMap<&str, &str> = ls_remote
        .lines()
        .filter_map(|line| {
            let (commit, name) = line.split_once('\t')?;
            (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()))
                .then_some((name.trim(), commit))
        })
        .collect();
    [
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}^{{}}"),
        format!("refs/tags/{git_ref}"),
        git_ref.to_owned(),
    ]
    .iter()
    .find_map(|name| refs.get(name.as_str()).map(|c| (*c).to_owned()))
}

#[cfg(test)]
mod tests;
