//! `btrfsqa bisect`: the first commit of a source (the kernel, btrfs-progs
//! or fstests) after which a test fails.
//!
//! The commits after the good one up to the bad one (first parents, oldest
//! first) are searched by halving ([`search`]). Each step is a real run of
//! the configuration with the source at that commit and only the one test
//! (builds are reused: the kernel's and the suites' build caches are keyed
//! by commit). A step runs the test `runs` times: it is bad if any run
//! fails as the bad commit does, good only if every run passes, and `skip`
//! when it cannot say (the commit does not build or boot, the test did not
//! run or failed otherwise): a skipped commit is stepped around. The bad
//! commit is tested first (its failure is what the others are compared
//! with), and the commit found is confirmed by running it and its parent
//! again. Every step is written to `RESULTS/.bisect/<id>/bisect.json` as it
//! ends, with the runs it made: the same command resumes an interrupted
//! bisection.

pub mod search;

use std::path::PathBuf;

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use btrfsqa_model::EventSink;
use btrfsqa_model::Verdict;
use btrfsqa_model::compare::TestKey;

use crate::watch::WatchSource;
use crate::{RunError, Runner, Settings};
use search::{Next, Search};

pub use btrfsqa_model::bisect::{Bisection, Mark, Outcome, Step};

/// What to bisect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BisectRequest {
    /// The suite's id.
    pub suite: String,
    /// The test.
    pub test: String,
    /// The profile (fstests section), for suites with profiles.
    pub profile: Option<String>,
    /// Which source's commits.
    pub source: WatchSource,
    /// A commit (or ref) where the test passes.
    pub good: String,
    /// A later commit (or ref) where it fails.
    pub bad: String,
    /// Test runs per step (more for a flaky test).
    pub runs: u32,
}

/// Why a bisection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BisectError {
    /// The request names something the configuration lacks.
    #[error("{0}")]
    Request(String),
    /// The commits could not be listed.
    #[error("cannot list the commits between `{good}` and `{bad}`")]
    Commits {
        /// The good ref.
        good: String,
        /// The bad ref.
        bad: String,
        /// The cause.
        #[source]
        source: Box<btrfsqa_suites::SuiteError>,
    },
    /// The journal could not be written.
    #[error("bisect journal `{}`", path.display())]
    Journal {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A step's run could not start or keep its results.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Stopped by a signal; the same command resumes it.
    #[error("bisection `{id}` stopped; the same command resumes it")]
    Stopped {
        /// The bisection.
        id: String,
    },
}

/// Makes the runner of one step's run from its settings.
pub type MakeRunner = dyn Fn(Settings) -> futures_util::future::BoxFuture<'static, Result<Runner, RunError>>
    + Send
    + Sync;

/// Bisects: see the module documentation. `on_step` is told of every step
/// as it ends; `events` and `cancel` go to the runs.
pub async fn bisect(
    settings: &Settings,
    request: &BisectRequest,
    events: EventSink,
    cancel: CancellationToken,
    on_step: &(dyn Fn(&Bisection, &Step) + Sync),
) -> Result<Bisection, BisectError> {
    let real =
        |settings: Settings| -> futures_util::future::BoxFuture<'static, Result<Runner, RunError>> {
            Box::pin(Runner::from_settings(settings))
        };
    bisect_with(settings, request, events, cancel, on_step, &real).await
}

/// [`bisect`] with the runners `make` makes (an embedder's own providers
/// and suites).
pub async fn bisect_with(
    settings: &Settings,
    request: &BisectRequest,
    events: EventSink,
    cancel: CancellationToken,
    on_step: &(dyn Fn(&Bisection, &Step) + Sync),
    make: &MakeRunner,
) -> Result<Bisection, BisectError> {
    // An embedder's own suite is in `run.suites` without a section.
    if !settings.config.run.suites.contains(&request.suite)
        && crate::plugins::suite_entry(&settings.config.suites, &request.suite).is_none()
    {
        return Err(BisectError::Request(format!(
            "no suite `{}` in the configuration",
            request.suite
        )));
    }
    let url = repository(settings, &request.source)?;
    let cache = settings.results_dir().join(".cache");
    let (good, bad, commits) =
        btrfsqa_suites::commit_range(&url, &request.good, &request.bad, &cache)
            .await
            .map_err(|source| BisectError::Commits {
                good: request.good.clone(),
                bad: request.bad.clone(),
                source: Box::new(source),
            })?;
    if commits.is_empty() {
        return Err(BisectError::Request(format!(
            "`{}` and `{}` are the same commit: nothing to bisect",
            request.good, request.bad
        )));
    }
    let id = bisection_id(request, &good, &bad);
    let dir = settings.results_dir().join(".bisect").join(&id);
    let path = dir.join("bisect.json");
    let mut state = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Bisection>(&bytes).ok(),
        Err(_) => None,
    }
    .filter(|b| b.outcome.is_none())
    .unwrap_or_else(|| Bisection {
        id: id.clone(),
        test: format!("{}/{}", request.suite, request.test),
        profile: request.profile.clone(),
        source: request.source.as_str().to_owned(),
        url: btrfsqa_model::redact_url(&url),
        good: good.clone(),
        bad: bad.clone(),
        commits: commits
            .iter()
            .map(|c| format!("{} {}", c.id, c.subject))
            .collect(),
        runs: request.runs.max(1),
        failure: None,
        steps: Vec::new(),
        outcome: None,
    });
    let ids: Vec<&str> = commits.iter().map(|c| c.id.as_str()).collect();
    let step_env = StepEnv {
        settings,
        request,
        url: &url,
        events: &events,
        cancel: &cancel,
        id: &id,
        make,
    };
    let save = |state: &Bisection| -> Result<(), BisectError> {
        let io = |source| BisectError::Journal {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(state).expect("a bisection serializes");
        btrfsqa_model::fs::write_atomic(&path, &json).map_err(io)
    };

    // The bad commit first: how it fails is what bad means.
    let bad_step = match state.steps.iter().find(|s| s.purpose == "bad") {
        Some(step) => step.clone(),
        None => {
            let step = step_env.test(&bad, "bad", None).await?;
            state.steps.push(step.clone());
            save(&state)?;
            on_step(&state, &step);
            step
        }
    };
    let failure = bad_step
        .verdicts
        .iter()
        .flatten()
        .find(|v| matches!(v, Verdict::Fail | Verdict::Hung | Verdict::Crashed))
        .copied();
    state.failure = failure;
    let Some(failure) = failure else {
        return finish(
            state,
            Outcome::Undecided {
                why: match bad_step.mark {
                    Mark::Skip => format!(
                        "the bad commit cannot be tested: {}",
                        bad_step.note.as_deref().unwrap_or("the test did not run")
                    ),
                    _ => "the test does not fail on the bad commit".to_owned(),
                },
                commits: Vec::new(),
            },
            &save,
        );
    };

    let mut search = Search::new(ids.len());
    for step in state.steps.iter().filter(|s| s.purpose == "search") {
        if let Some(i) = ids.iter().position(|c| *c == step.commit) {
            search.mark(i, step.mark);
        }
    }
    let culprit = loop {
        if cancel.is_cancelled() {
            save(&state)?;
            return Err(BisectError::Stopped { id });
        }
        match search.next() {
            Next::Test(i) => {
                let step = step_env.test(ids[i], "search", Some(failure)).await?;
                search.mark(i, step.mark);
                state.steps.push(step.clone());
                save(&state)?;
                on_step(&state, &step);
            }
            Next::Found(i) => break i,
            Next::Undecided(range) => {
                return finish(
                    state,
                    Outcome::Undecided {
                        why: "the first bad commit is one of commits that could not be tested"
                            .to_owned(),
                        commits: range.iter().map(|&i| ids[i].to_owned()).collect(),
                    },
                    &save,
                );
            }
        }
    };

    // Confirmed: the culprit fails again, its parent passes again.
    let parent = if culprit == 0 {
        good.as_str()
    } else {
        ids[culprit - 1]
    };
    for (commit, purpose) in [(ids[culprit], "culprit"), (parent, "parent")] {
        if state.steps.iter().any(|s| s.purpose == purpose) {
            continue;
        }
        let step = step_env.test(commit, purpose, Some(failure)).await?;
        state.steps.push(step.clone());
        save(&state)?;
        on_step(&state, &step);
    }
    let confirmed = |purpose: &str, want: Mark| {
        state
            .steps
            .iter()
            .rev()
            .find(|s| s.purpose == purpose)
            .is_some_and(|s| s.mark == want)
    };
    let outcome = if !confirmed("parent", Mark::Good) && culprit == 0 {
        Outcome::Undecided {
            why: "the good commit is not good: the test fails there too".into(),
            commits: Vec::new(),
        }
    } else if confirmed("culprit", Mark::Bad) && confirmed("parent", Mark::Good) {
        Outcome::Found {
            commit: ids[culprit].to_owned(),
            subject: commits[culprit].subject.clone(),
        }
    } else {
        Outcome::Undecided {
            why: format!(
                "`{}` did not confirm (the culprit passed or its parent failed when run again): \
                 the test may be flaky; try more --runs",
                ids[culprit]
            ),
            commits: vec![ids[culprit].to_owned()],
        }
    };
    finish(state, outcome, &save)
}

fn finish(
    mut state: Bisection,
    outcome: Outcome,
    save: &dyn Fn(&Bisection) -> Result<(), BisectError>,
) -> Result<Bisection, BisectError> {
    state.outcome = Some(outcome);
    save(&state)?;
    Ok(state)
}

/// What every step needs.
struct StepEnv<'a> {
    settings: &'a Settings,
    request: &'a BisectRequest,
    url: &'a str,
    events: &'a EventSink,
    cancel: &'a CancellationToken,
    id: &'a str,
    make: &'a MakeRunner,
}

impl StepEnv<'_> {
    /// Runs the test `runs` times with the source at `commit`.
    async fn test(
        &self,
        commit: &str,
        purpose: &str,
        failure: Option<Verdict>,
    ) -> Result<Step, BisectError> {
        let mut verdicts = Vec::new();
        let mut runs = Vec::new();
        let mut note = None;
        let key = TestKey {
            suite: self.request.suite.clone(),
            profile: self.request.profile.clone(),
            name: self.request.test.clone(),
        };
        for _ in 0..self.request.runs.max(1) {
            let settings = self.pinned(commit, purpose);
            let runner = (self.make)(settings).await?.only(vec![key.clone()]);
            let outcome = runner.run(self.events.clone(), self.cancel.clone()).await?;
            if self.cancel.is_cancelled() {
                // An interrupted step says nothing: the resumed bisection
                // tests this commit again.
                return Err(BisectError::Stopped {
                    id: self.id.to_owned(),
                });
            }
            runs.push(outcome.report.run_id.to_string());
            let verdict = outcome
                .report
                .outcomes()
                .find(|t| t.suite == key.suite && t.name == key.name)
                .map(|t| t.verdict);
            if verdict.is_none() || verdict == Some(Verdict::Error) {
                note = Some(
                    outcome
                        .report
                        .suites
                        .iter()
                        .find_map(|s| s.error.clone())
                        .or_else(|| outcome.report.error.clone())
                        .unwrap_or_else(|| "the test did not run".to_owned()),
                );
            }
            verdicts.push(verdict);
            // A build that fails fails every time: one run says so.
            if verdict.is_none() {
                break;
            }
        }
        let mark = step_mark(&verdicts, failure);
        Ok(Step {
            commit: commit.to_owned(),
            purpose: purpose.to_owned(),
            verdicts,
            runs,
            mark,
            note: if mark == Mark::Skip { note } else { None },
            at: Utc::now(),
        })
    }

    /// The configuration of one run of the test with the source at `commit`.
    fn pinned(&self, commit: &str, purpose: &str) -> Settings {
        let mut settings = self.settings.clone();
        let config = &mut settings.config;
        match &self.request.source {
            WatchSource::Kernel => {
                config.kernel.source = Some(self.url.to_owned());
                config.kernel.git_ref = Some(commit.to_owned());
            }
            WatchSource::Suite(id) => {
                crate::plugins::pin_suite_source(&mut config.suites, id, None, commit);
            }
        }
        config.run.suites = vec![self.request.suite.clone()];
        config.run.shards = 1;
        config.publish.site_repo = None;
        config.expectations.rerun_new_failures = 0;
        config
            .run
            .labels
            .insert("bisect".into(), self.id.to_owned());
        config
            .run
            .labels
            .insert("bisect-step".into(), format!("{purpose} {commit}"));
        settings
    }
}

/// A step's mark from its runs' verdicts: bad when any failed as the bad
/// commit did, good when every one passed, else skip. Without a known
/// failure (the bad commit's own step), any failure is bad.
pub fn step_mark(verdicts: &[Option<Verdict>], failure: Option<Verdict>) -> Mark {
    let fails_alike = |v: &Verdict| match failure {
        Some(f) => *v == f,
        None => matches!(v, Verdict::Fail | Verdict::Hung | Verdict::Crashed),
    };
    if verdicts.iter().flatten().any(fails_alike) {
        Mark::Bad
    } else if !verdicts.is_empty() && verdicts.iter().all(|v| *v == Some(Verdict::Pass)) {
        Mark::Good
    } else {
        Mark::Skip
    }
}

/// The repository of `source` in the configuration.
fn repository(settings: &Settings, source: &WatchSource) -> Result<String, BisectError> {
    match source {
        WatchSource::Kernel => settings
            .config
            .kernel
            .git_source()
            .map(|s| s.url)
            .ok_or_else(|| {
                BisectError::Request(
                    "the kernel under test is the installed one: set `kernel.source` to bisect it"
                        .into(),
                )
            }),
        WatchSource::Suite(id) => crate::plugins::suite_source(&settings.config.suites, id)
            .map(|source| source.url)
            .ok_or_else(|| {
                BisectError::Request(format!(
                    "`{id}` is not a suite built from git (those are: {})",
                    crate::plugins::suite_source_ids(&settings.config.suites).join(", ")
                ))
            }),
    }
}

/// What a bisection of a test of `suite` walks when the request names no
/// source: the suite's own git source when it is built from one, else the
/// kernel under test.
pub fn default_source(settings: &Settings, suite: &str) -> WatchSource {
    match crate::plugins::suite_entry(&settings.config.suites, suite) {
        Some(entry)
            if crate::plugins::suite_source(&settings.config.suites, entry.id).is_some() =>
        {
            WatchSource::Suite(entry.id.to_owned())
        }
        _ => WatchSource::Kernel,
    }
}

/// The id of a bisection: the same request over the same commits resumes.
fn bisection_id(request: &BisectRequest, good: &str, bad: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [
        request.suite.as_str(),
        request.test.as_str(),
        request.profile.as_deref().unwrap_or(""),
        request.source.as_str(),
        good,
        bad,
        &request.runs.to_string(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("bisect-{digest}")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod marks {
    use super::*;

    #[test]
    fn a_step_is_bad_when_any_run_fails_alike_and_good_only_when_all_pass() {
        use Verdict::*;
        assert_eq!(step_mark(&[Some(Pass), Some(Fail)], Some(Fail)), Mark::Bad);
        assert_eq!(step_mark(&[Some(Pass), Some(Pass)], Some(Fail)), Mark::Good);
        // Failing otherwise (hung where the bad commit failed) says nothing.
        assert_eq!(step_mark(&[Some(Hung)], Some(Fail)), Mark::Skip);
        assert_eq!(step_mark(&[None], Some(Fail)), Mark::Skip);
        assert_eq!(step_mark(&[Some(Skip)], Some(Fail)), Mark::Skip);
        assert_eq!(step_mark(&[Some(Crashed)], None), Mark::Bad);
        assert_eq!(step_mark(&[], None), Mark::Skip);
    }
}
