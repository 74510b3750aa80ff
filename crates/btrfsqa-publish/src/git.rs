//! Publishing the dashboard to a git repository (GitHub Pages serves it).
//!
//! [`GitPublisher`] keeps a bare mirror of the site repository in its cache
//! directory, fetches the branch with gix, renders the site into a staging
//! directory, builds the new tree on top of the fetched tip with gix's tree
//! editor (runs published by others stay as they are, unchanged files reuse
//! their blobs), commits with an explicit signature and pushes with the `git`
//! command (gix cannot push). A push rejected because someone else published
//! meanwhile is retried on the new tip, a bounded number of times.
//!
//! The repository URL is only ever passed on command lines and to gix's
//! anonymous remote: it is never written to the mirror's config, and every
//! message that shows it has any credentials removed first. A GitHub token
//! comes from the environment and reaches `git` only through `GIT_ASKPASS`
//! (see `credentials.rs`); an SSH deploy key through `GIT_SSH_COMMAND`.
//! Remote (HTTPS, SSH) repositories are fetched with `git` too, local ones
//! with gix.
//!
//! One cache directory serves one publisher at a time: publishers that
//! share one (two btrfsqa processes on one host, with one results store)
//! take turns on a lock file in it (`publish.lock`), the one that waits
//! saying who it waits for. Publishers on other machines have their own.

mod settings;
mod target;
mod tree;

use btrfsqa_model::{Counts, ResultsStore, RunId, RunReport};
use gix::ObjectId;

pub use settings::GitPublisherSettings;
use target::{Target, open_mirror};
use tree::{build_tree, commit_tree, published_summaries};

use crate::credentials::GitCredentials;
use crate::lock::DirLock;
use crate::{Dashboard, PublishError, Published, Publisher};

/// The lock file in the cache directory, held while publishing.
const CACHE_LOCK: &str = "publish.lock";

/// Commits the dashboard to a git repository and pushes it. Id `git`.
///
/// Publishing the same run twice makes no second commit when nothing changed.
#[derive(Debug, Clone)]
pub struct GitPublisher {
    settings: GitPublisherSettings,
    dashboard: Dashboard,
}

impl GitPublisher {
    /// A publisher with `settings`.
    pub fn new(settings: GitPublisherSettings) -> Self {
        let dashboard = Dashboard::with_settings(settings.dashboard.clone());
        GitPublisher {
            settings,
            dashboard,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &GitPublisherSettings {
        &self.settings
    }

    /// [`Publisher::publish`] without an async runtime: blocks on git.
    pub fn publish_blocking(
        &self,
        store: &ResultsStore,
        run: &RunId,
    ) -> Result<Published, PublishError> {
        let report = store.read_report(run)?;
        let mut target = Target::new(&self.settings)?;
        let _lock = DirLock::acquire(&self.settings.cache_dir, CACHE_LOCK, "the site cache")?;
        target.create_if_missing()?;
        target.credentials = GitCredentials::for_url(
            &target.url,
            &self.settings.token_env,
            self.settings.ssh_key.as_deref(),
            &self.settings.cache_dir,
        )?;
        tracing::debug!(repo = %target.shown, token = target.credentials.has_token(), "publishing");
        let mirror = open_mirror(&self.settings.cache_dir.join("mirror.git"), &target.shown)?;
        let staging = self.settings.cache_dir.join("site");
        let message = commit_message(&report);
        let attempts = self.settings.push_attempts.max(1);
        let mut rejected: Option<(Option<ObjectId>, PublishError)> = None;
        for attempt in 1..=attempts {
            let tip = target.fetch(&mirror)?;
            if let Some((rejected_tip, error)) = rejected.take()
                && rejected_tip == tip
            {
                // Nobody published meanwhile, so the push failed for another reason.
                return Err(error);
            }
            let tip_tree = match tip {
                Some(tip) => Some(commit_tree(&mirror, tip, &target.shown)?),
                None => None,
            };
            let published = match tip_tree {
                Some(tree) => published_summaries(&mirror, tree, &target.shown)?,
                None => Vec::new(),
            };
            let stats = self.dashboard.render_site(store, &staging, &published)?;
            let tree = build_tree(&mirror, tip_tree, &staging, &stats, &target.shown)?;
            if let Some(tip) = tip
                && tip_tree == Some(tree)
            {
                tracing::info!(repo = %target.shown, %run, "site already up to date");
                return Ok(target.published(tip));
            }
            let commit = target.commit(&mirror, &self.settings, tree, tip, &message)?;
            match target.push(&mirror, commit) {
                Ok(()) => {
                    tracing::info!(repo = %target.shown, %run, %commit, "site published");
                    return Ok(target.published(commit));
                }
                Err(error) => {
                    tracing::info!(repo = %target.shown, attempt, %error, "push failed; fetching to see whether others published meanwhile");
                    rejected = Some((tip, error));
                }
            }
        }
        Err(PublishError::PushRetriesExhausted {
            repo: target.shown,
            attempts,
        })
    }
}

#[async_trait::async_trait]
impl Publisher for GitPublisher {
    fn id(&self) -> &str {
        "git"
    }

    /// Runs on tokio's blocking pool: gix and `git push` block.
    async fn publish(&self, store: &ResultsStore, run: &RunId) -> Result<Published, PublishError> {
        let (this, store, run) = (self.clone(), store.clone(), run.clone());
        crate::dashboard::run_blocking(move || this.publish_blocking(&store, &run)).await
    }
}

/// `btrfsqa: run <id>, <pass> passed, <fail> failed`.
fn commit_message(report: &RunReport) -> String {
    let counts = Counts::of(report.outcomes());
    let mut message = format!(
        "btrfsqa: run {}, {} passed, {} failed",
        report.run_id, counts.pass, counts.fail
    );
    let others = counts.bad() - counts.fail;
    if others > 0 {
        message.push_str(&format!(", {others} other problems"));
    }
    message.push('\n');
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_message_names_the_run() {
        use btrfsqa_model::{Provenance, SuiteReport, TestOutcome, Verdict};
        let mut report = RunReport::start(
            RunId::parse("r1").unwrap(),
            chrono::Utc::now(),
            Provenance::default(),
        );
        let mut suite = SuiteReport::new("s");
        suite.tests.push(TestOutcome::new("s", "a", Verdict::Pass));
        suite.tests.push(TestOutcome::new("s", "b", Verdict::Fail));
        report.suites.push(suite);
        assert_eq!(
            commit_message(&report),
            "btrfsqa: run r1, 1 passed, 1 failed\n"
        );
    }
}
