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

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicBool;

use btrfsqa_model::{Counts, ResultsStore, RunId, RunReport, redact_url};

use crate::credentials::GitCredentials;
use crate::dashboard::{REPORT_EXPORT, RunSummary, SUMMARY_FILE};
use crate::lock::DirLock;
use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;

use crate::dashboard::{DashboardSettings, TMP_SUFFIX};
use crate::{Dashboard, PublishError, Published, Publisher};

/// The lock file in the cache directory, held while publishing.
const CACHE_LOCK: &str = "publish.lock";

/// The site files at the root of the tree, rewritten on every publish.
const ROOT_FILES: &[&str] = &[
    "index.html",
    "matrix.html",
    "style.css",
    ".nojekyll",
    "report.schema.json",
];

/// The directories built from the whole history, replaced on every publish.
const HISTORY_DIRS: &[&str] = &["archive", "tests", "assets", "bisect"];

/// Resolved settings of a [`GitPublisher`].
#[derive(Clone, PartialEq, Eq)]
pub struct GitPublisherSettings {
    /// The repository: a local path (created as a bare repository when it
    /// does not exist), a `file://`, `https://` or `ssh://` URL, or `user@host:path`.
    pub repo: String,
    /// The branch the site lives on (`gh-pages`).
    pub branch: String,
    /// Where the publisher keeps its mirror of the repository and its staging
    /// directory. Publishers sharing it take turns (a lock file in it).
    pub cache_dir: PathBuf,
    /// Author and committer name of the commits.
    pub author_name: String,
    /// Author and committer email of the commits.
    pub author_email: String,
    /// How the site is rendered.
    pub dashboard: DashboardSettings,
    /// How many pushes to try when others keep publishing meanwhile (at least 1).
    pub push_attempts: u32,
    /// For an HTTPS repository: the environment variables a token is read
    /// from, first set wins (`GITHUB_TOKEN`, `GH_TOKEN`). The token reaches
    /// `git` through `GIT_ASKPASS`, never the URL or a command line.
    pub token_env: Vec<String>,
    /// For an SSH repository: a deploy key to push with.
    pub ssh_key: Option<PathBuf>,
}

impl GitPublisherSettings {
    /// Settings for `repo` with the mirror in `cache_dir`: branch `gh-pages`,
    /// author `btrfsqa <btrfsqa@localhost>`, default dashboard, 5 push attempts.
    pub fn new(repo: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        GitPublisherSettings {
            repo: repo.into(),
            branch: "gh-pages".to_owned(),
            cache_dir: cache_dir.into(),
            author_name: "btrfsqa".to_owned(),
            author_email: "btrfsqa@localhost".to_owned(),
            dashboard: DashboardSettings::default(),
            push_attempts: 5,
            token_env: crate::credentials::TOKEN_ENV_VARS
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
            ssh_key: None,
        }
    }
}

/// The repository URL may hold a token: Debug shows it redacted.
impl std::fmt::Debug for GitPublisherSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitPublisherSettings")
            .field("repo", &redact_url(&self.repo))
            .field("branch", &self.branch)
            .field("cache_dir", &self.cache_dir)
            .field("author_name", &self.author_name)
            .field("author_email", &self.author_email)
            .field("dashboard", &self.dashboard)
            .field("push_attempts", &self.push_attempts)
            .field("token_env", &self.token_env)
            .field("ssh_key", &self.ssh_key)
            .finish()
    }
}

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

/// Where to publish, resolved from the settings.
struct Target {
    /// What gix and `git push` are given (an absolute path for local repositories).
    url: String,
    /// What messages show: the repository with credentials removed.
    shown: String,
    /// The local repository, when `repo` is a path or `file://` URL.
    local: Option<PathBuf>,
    /// `refs/heads/<branch>`.
    branch_ref: String,
    /// How `git` authenticates to a remote repository.
    credentials: GitCredentials,
}

impl Target {
    fn new(settings: &GitPublisherSettings) -> Result<Self, PublishError> {
        let repo = settings.repo.trim();
        if repo.is_empty() || repo.starts_with('-') {
            return Err(PublishError::Settings {
                key: "repo",
                message: "must be a path or URL (not empty, not starting with `-`)".to_owned(),
            });
        }
        let branch_ref = format!("refs/heads/{}", settings.branch);
        if gix::refs::FullName::try_from(branch_ref.as_str()).is_err() || settings.branch.is_empty()
        {
            return Err(PublishError::Settings {
                key: "branch",
                message: format!("`{}` is not a valid branch name", settings.branch),
            });
        }
        let shown = redact_url(repo);
        let local = match gix::url::parse(repo.as_bytes().as_bstr()) {
            Ok(url) if url.scheme == gix::url::Scheme::File => {
                let path = gix::path::from_bstr(url.path.as_bstr())
                    .map_err(|_| PublishError::Settings {
                        key: "repo",
                        message: format!("`{shown}` is not a usable path"),
                    })?
                    .into_owned();
                Some(std::path::absolute(&path).map_err(PublishError::io("resolve", path))?)
            }
            Ok(_) => None,
            Err(source) => {
                return Err(PublishError::Settings {
                    key: "repo",
                    message: format!(
                        "`{shown}` is not a git URL or path: {}",
                        redact_url(&source.to_string())
                    ),
                });
            }
        };
        let url = match &local {
            Some(path) => path.display().to_string(),
            None => repo.to_owned(),
        };
        Ok(Target {
            url,
            shown,
            local,
            branch_ref,
            credentials: GitCredentials::default(),
        })
    }

    fn published(&self, commit: ObjectId) -> Published {
        Published {
            location: self.shown.clone(),
            commit: Some(commit.to_hex().to_string()),
        }
    }

    /// Creates a local repository that does not exist yet: bare, with HEAD
    /// on the site branch so `git log` and `git show` there show the site.
    fn create_if_missing(&self) -> Result<(), PublishError> {
        let Some(path) = &self.local else {
            return Ok(());
        };
        if path.exists() {
            return Ok(());
        }
        let parent = path.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent).map_err(PublishError::io("create directory", parent))?;
        // Built beside the target and renamed into place, so a publisher
        // starting at the same moment never sees half a repository.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.init-{}", unique_suffix()));
        let _ = fs::remove_dir_all(&tmp);
        gix::init_bare(&tmp).map_err(PublishError::git("create the repository", &self.shown))?;
        let head = tmp.join("HEAD");
        fs::write(&head, format!("ref: {}\n", self.branch_ref))
            .map_err(PublishError::io("write", head))?;
        match fs::rename(&tmp, path) {
            Ok(()) => {
                tracing::info!(repo = %self.shown, "created a bare repository for the site");
                Ok(())
            }
            // Someone else created it meanwhile: theirs is as good.
            Err(_) if path.exists() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(source) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(PublishError::io("create", path)(source))
            }
        }
    }

    /// Fetches the site branch into the mirror and returns its tip (`None`
    /// when the branch does not exist yet). The mirror's own branch is set to
    /// the tip, so the next commit on it has the tip as parent.
    fn fetch(&self, mirror: &gix::Repository) -> Result<Option<ObjectId>, PublishError> {
        if self.local.is_none() {
            let tip = self.fetch_with_git(mirror)?;
            self.reset_branch(mirror, tip)?;
            return Ok(tip);
        }
        let fail = |source: gix::Error| PublishError::Git {
            operation: "fetch",
            repo: self.shown.clone(),
            source: Box::new(source),
        };
        let tracking = format!(
            "+{}:refs/remotes/site/{}",
            self.branch_ref,
            &self.branch_ref["refs/heads/".len()..]
        );
        // An anonymous remote: the URL (and any credentials in it) never
        // reaches the mirror's config.
        let remote = mirror
            .remote_at(self.url.as_str())
            .map_err(fail)?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs([tracking.as_str()], gix::remote::Direction::Fetch)
            .map_err(fail)?;
        let connection = remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(fail)?;
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(fail)?;
        let tip = prepare.ref_map().remote_refs.iter().find_map(|remote_ref| {
            let (name, target, peeled) = remote_ref.unpack();
            (name == self.branch_ref.as_str())
                .then(|| peeled.or(target).map(ToOwned::to_owned))
                .flatten()
        });
        // A new repository has no branch yet: nothing to fetch, and gix
        // refuses a fetch whose refspec matches nothing.
        if tip.is_some() {
            prepare
                .receive(gix::progress::Discard, &AtomicBool::new(false))
                .map_err(fail)?;
        }
        self.reset_branch(mirror, tip)?;
        Ok(tip)
    }

    fn reset_branch(
        &self,
        mirror: &gix::Repository,
        tip: Option<ObjectId>,
    ) -> Result<(), PublishError> {
        use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
        let fail = PublishError::git::<gix::Error>("reset the mirror's branch", &self.shown);
        let name: gix::refs::FullName = self
            .branch_ref
            .as_str()
            .try_into()
            .expect("validated in Target::new");
        let change = match tip {
            Some(tip) => Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: "btrfsqa: fetched".into(),
                },
                expected: PreviousValue::Any,
                new: gix::refs::Target::Object(tip),
            },
            None if mirror
                .try_find_reference(self.branch_ref.as_str())
                .ok()
                .flatten()
                .is_some() =>
            {
                Change::Delete {
                    expected: PreviousValue::Any,
                    log: RefLog::AndReference,
                }
            }
            None => return Ok(()),
        };
        mirror
            .edit_reference(RefEdit {
                change,
                name,
                deref: false,
            })
            .map(drop)
            .map_err(fail)
    }

    fn commit(
        &self,
        mirror: &gix::Repository,
        settings: &GitPublisherSettings,
        tree: ObjectId,
        parent: Option<ObjectId>,
        message: &str,
    ) -> Result<ObjectId, PublishError> {
        let signature = gix::actor::Signature {
            name: settings.author_name.as_str().into(),
            email: settings.author_email.as_str().into(),
            time: gix::date::Time::now_local_or_utc(),
        };
        let mut time = gix::date::parse::TimeBuf::default();
        let signature = signature.to_ref(&mut time);
        mirror
            .commit_as(
                signature,
                signature,
                self.branch_ref.as_str(),
                message,
                tree,
                parent,
            )
            .map(|id| id.detach())
            .map_err(PublishError::git("commit", &self.shown))
    }

    /// Fetches a remote (HTTPS or SSH) repository with the `git` command.
    ///
    /// This build of gix has no HTTP client (one would add a TLS stack to
    /// the build), and `git` already holds the credentials setup the push
    /// needs, so both network operations go through it; local repositories
    /// are fetched with gix.
    fn fetch_with_git(&self, mirror: &gix::Repository) -> Result<Option<ObjectId>, PublishError> {
        let listed = self.run_git(
            mirror,
            "list the site branch",
            &["ls-remote", "--heads", &self.url, &self.branch_ref],
        )?;
        let exists = listed
            .lines()
            .any(|line| line.split_whitespace().nth(1) == Some(self.branch_ref.as_str()));
        if !exists {
            return Ok(None);
        }
        let tracking = format!(
            "refs/remotes/site/{}",
            &self.branch_ref["refs/heads/".len()..]
        );
        let refspec = format!("+{}:{tracking}", self.branch_ref);
        self.run_git(
            mirror,
            "fetch",
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                &self.url,
                &refspec,
            ],
        )?;
        let tip = mirror
            .find_reference(tracking.as_str())
            .map_err(PublishError::git("read the fetched branch", &self.shown))?
            .into_fully_peeled_id()
            .map_err(PublishError::git("read the fetched branch", &self.shown))?
            .detach();
        Ok(Some(tip))
    }

    /// Runs `git --git-dir MIRROR ARGS` with the credentials; its standard output.
    fn run_git(
        &self,
        mirror: &gix::Repository,
        operation: &'static str,
        args: &[&str],
    ) -> Result<String, PublishError> {
        let output = self
            .credentials
            .git()
            .arg("--git-dir")
            .arg(mirror.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(PublishError::io("run", "git"))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(PublishError::Git {
            operation,
            repo: self.shown.clone(),
            source: self.describe_failure(&output).into(),
        })
    }

    /// What a failed `git` printed, with the URL and any credentials removed.
    fn describe_failure(&self, output: &std::process::Output) -> String {
        let stderr = String::from_utf8_lossy(&output.stderr).replace(&self.url, &self.shown);
        let stderr = self.credentials.scrub(&redact_url(stderr.trim()));
        format!("`git` exited with {}: {stderr}", output.status)
    }

    /// Pushes `commit` to the site branch with `git push` (gix cannot push).
    fn push(&self, mirror: &gix::Repository, commit: ObjectId) -> Result<(), PublishError> {
        let refspec = format!("{commit}:{}", self.branch_ref);
        let output = self
            .credentials
            .git()
            .arg("--git-dir")
            .arg(mirror.path())
            .args(["push", "--quiet", "--no-verify"])
            .arg(&self.url)
            .arg(&refspec)
            .stdin(Stdio::null())
            .output()
            .map_err(PublishError::io("run", "git"))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).replace(&self.url, &self.shown);
        Err(PublishError::Push {
            repo: self.shown.clone(),
            status: output.status.to_string(),
            stderr: self.credentials.scrub(&redact_url(stderr.trim())),
        })
    }
}

/// A suffix no other publisher uses at the same time, in this process or another.
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{count}-{nanos}", std::process::id())
}

/// Opens the publisher's bare mirror, creating it on first use.
fn open_mirror(path: &Path, shown: &str) -> Result<gix::Repository, PublishError> {
    if path.join("HEAD").is_file() {
        return gix::open(path).map_err(PublishError::git("open the mirror", shown));
    }
    fs::create_dir_all(path).map_err(PublishError::io("create directory", path))?;
    gix::init_bare(path).map_err(PublishError::git("create the mirror", shown))
}

fn commit_tree(
    repo: &gix::Repository,
    commit: ObjectId,
    shown: &str,
) -> Result<ObjectId, PublishError> {
    let fail = PublishError::git("read the published commit", shown);
    repo.find_commit(commit)
        .and_then(|commit| commit.tree_id())
        .map(|id| id.detach())
        .map_err(fail)
}

/// Summaries of the runs already on the site (`runs/<id>/summary.json`
/// in the tip's tree, or the report of a site written before summaries
/// existed), so the index and the histories list runs that other
/// controllers published. One that does not parse is left out with a warning.
fn published_summaries(
    repo: &gix::Repository,
    tree: ObjectId,
    shown: &str,
) -> Result<Vec<RunSummary>, PublishError> {
    let fail = PublishError::git::<gix::Error>;
    let tree = repo
        .find_tree(tree)
        .map_err(fail("read the published site", shown))?;
    let Some(runs) = tree
        .lookup_entry_by_path("runs")
        .map_err(fail("read the published site", shown))?
    else {
        return Ok(Vec::new());
    };
    if !runs.mode().is_tree() {
        return Ok(Vec::new());
    }
    let runs = repo
        .find_tree(runs.object_id())
        .map_err(fail("read the published site", shown))?;
    let mut summaries = Vec::new();
    for entry in runs.iter() {
        let entry = entry.map_err(fail("read the published site", shown))?;
        if !entry.mode().is_tree() {
            continue;
        }
        let run_tree = repo
            .find_tree(entry.object_id())
            .map_err(fail("read the published site", shown))?;
        let blob_of = |name: &str| -> Result<Option<Vec<u8>>, PublishError> {
            let Some(file) = run_tree
                .lookup_entry_by_path(name)
                .map_err(fail("read the published site", shown))?
            else {
                return Ok(None);
            };
            let blob = file
                .object()
                .map_err(fail("read the published site", shown))?;
            Ok(Some(blob.data.clone()))
        };
        let summary = match blob_of(SUMMARY_FILE)? {
            Some(bytes) => serde_json::from_slice::<RunSummary>(&bytes)
                .ok()
                .filter(|s| s.format == crate::dashboard::SUMMARY_FORMAT),
            None => None,
        };
        let summary = match summary {
            Some(summary) => Some(summary),
            None => match published_report(&blob_of)? {
                Some(bytes) => match serde_json::from_slice::<RunReport>(&bytes) {
                    Ok(report) => Some(RunSummary::of(&report.without_credentials())),
                    Err(error) => {
                        tracing::warn!(run = %entry.filename(), %error, "a published report does not parse; it is left out of the index");
                        None
                    }
                },
                None => None,
            },
        };
        summaries.extend(summary);
    }
    Ok(summaries)
}

/// The new site tree: the tip's tree with the root files and the runs of
/// the local store replaced by the staging directory's. A run whose page was
/// not re-rendered and whose published report is the same keeps its
/// published subtree untouched.
fn build_tree(
    repo: &gix::Repository,
    tip_tree: Option<ObjectId>,
    staging: &Path,
    stats: &crate::RenderStats,
    shown: &str,
) -> Result<ObjectId, PublishError> {
    let fail = PublishError::git::<gix::Error>;
    let base_id = tip_tree.unwrap_or_else(|| ObjectId::empty_tree(repo.object_hash()));
    let base = repo
        .find_tree(base_id)
        .map_err(fail("read the published site", shown))?;
    let mut editor = base.edit().map_err(fail("edit the site tree", shown))?;
    for name in ROOT_FILES {
        upsert_file(repo, &mut editor, name, &staging.join(name), shown)?;
    }
    for dir in HISTORY_DIRS {
        editor
            .remove(*dir)
            .map_err(fail("edit the site tree", shown))?;
        let path = staging.join(dir);
        if path.is_dir() {
            add_dir(repo, &mut editor, dir, &path, shown)?;
        }
    }
    // Runs beyond the retention setting keep only their summary.
    for run in &stats.pruned {
        let rel = format!("runs/{run}");
        editor
            .remove(rel.as_str())
            .map_err(fail("edit the site tree", shown))?;
        let summary = staging.join("runs").join(run.as_str()).join(SUMMARY_FILE);
        upsert_file(
            repo,
            &mut editor,
            &format!("{rel}/{SUMMARY_FILE}"),
            &summary,
            shown,
        )?;
    }
    let skipped: BTreeSet<&RunId> = stats.skipped.iter().collect();
    for run in stats.written.iter().chain(&stats.skipped) {
        let rel = format!("runs/{run}");
        let run_dir = staging.join("runs").join(run.as_str());
        if skipped.contains(run) && same_published_report(repo, &base, &rel, &run_dir, shown)? {
            continue;
        }
        editor
            .remove(rel.as_str())
            .map_err(fail("edit the site tree", shown))?;
        add_dir(repo, &mut editor, &rel, &run_dir, shown)?;
    }
    editor
        .write()
        .map(|id| id.detach())
        .map_err(fail("write the site tree", shown))
}

/// A file of a published run's directory, when it has one.
type BlobOf<'a> = dyn Fn(&str) -> Result<Option<Vec<u8>>, PublishError> + 'a;

/// The report beside a published run page: compressed, or as a site
/// written before the exports were compressed has it.
fn published_report(blob_of: &BlobOf<'_>) -> Result<Option<Vec<u8>>, PublishError> {
    if let Some(gz) = blob_of(REPORT_EXPORT)? {
        let mut bytes = Vec::new();
        return Ok(std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(gz.as_slice()),
            &mut bytes,
        )
        .ok()
        .map(|_| bytes));
    }
    blob_of("report.json")
}

fn same_published_report(
    repo: &gix::Repository,
    base: &gix::Tree<'_>,
    rel: &str,
    run_dir: &Path,
    shown: &str,
) -> Result<bool, PublishError> {
    let published = base
        .lookup_entry_by_path(format!("{rel}/{REPORT_EXPORT}"))
        .map_err(PublishError::git("read the published site", shown))?;
    let Some(published) = published else {
        return Ok(false);
    };
    let path = run_dir.join(REPORT_EXPORT);
    let bytes = fs::read(&path).map_err(PublishError::io("read", path))?;
    let local = gix::objs::compute_hash(repo.object_hash(), gix::objs::Kind::Blob, &bytes)
        .map_err(PublishError::git("hash a file", shown))?;
    Ok(published.object_id() == local)
}

/// Adds every file under `dir` at `rel` in the tree.
fn add_dir(
    repo: &gix::Repository,
    editor: &mut gix::object::tree::Editor<'_>,
    rel: &str,
    dir: &Path,
    shown: &str,
) -> Result<(), PublishError> {
    let entries = fs::read_dir(dir).map_err(PublishError::io("read directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(PublishError::io("read directory", dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(path = %path.display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(PublishError::io("inspect", &path))?;
        let child = format!("{rel}/{name}");
        if file_type.is_dir() {
            add_dir(repo, editor, &child, &path, shown)?;
        } else if file_type.is_file() {
            upsert_file(repo, editor, &child, &path, shown)?;
        }
        // The dashboard never writes symlinks; anything else is not site content.
    }
    Ok(())
}

fn upsert_file(
    repo: &gix::Repository,
    editor: &mut gix::object::tree::Editor<'_>,
    rel: &str,
    path: &Path,
    shown: &str,
) -> Result<(), PublishError> {
    let bytes = fs::read(path).map_err(PublishError::io("read", path))?;
    // write_blob only hashes a blob the mirror already has.
    let blob = repo
        .write_blob(&bytes)
        .map_err(PublishError::git("write a blob", shown))?;
    editor
        .upsert(rel, EntryKind::Blob, blob.detach())
        .map_err(PublishError::git("edit the site tree", shown))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let mut settings = GitPublisherSettings::new("/tmp/x.git", "/tmp/cache");
        settings.branch = "a..b".into();
        let err = Target::new(&settings).err().unwrap();
        assert!(err.to_string().contains("`branch`"), "{err}");
        settings.branch = "gh-pages".into();
        settings.repo = "--upload-pack=evil".into();
        let err = Target::new(&settings).err().unwrap();
        assert!(err.to_string().contains("`repo`"), "{err}");
    }

    #[test]
    fn local_paths_and_file_urls_are_local() {
        let settings = GitPublisherSettings::new("file:///srv/site.git", "/tmp/cache");
        assert_eq!(
            Target::new(&settings).unwrap().local,
            Some(PathBuf::from("/srv/site.git"))
        );
        let settings = GitPublisherSettings::new("https://example.com/site.git", "/tmp/cache");
        assert_eq!(Target::new(&settings).unwrap().local, None);
    }

    #[test]
    fn debug_does_not_show_tokens() {
        let settings = GitPublisherSettings::new("https://x:secret@example.com/s.git", "/tmp/c");
        assert!(!format!("{settings:?}").contains("secret"));
    }

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
