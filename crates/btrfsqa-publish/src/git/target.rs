//! The site repository and the publisher's bare mirror of it: where the
//! repository is (a local path, or a remote URL shown without its
//! credentials), creating a local one, fetching its branch (gix for local
//! repositories, `git` for remote ones), committing a tree and pushing it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicBool;

use btrfsqa_model::redact_url;
use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::settings::GitPublisherSettings;
use crate::credentials::GitCredentials;
use crate::{PublishError, Published};

/// Where to publish, resolved from the settings.
pub(super) struct Target {
    /// What gix and `git push` are given (an absolute path for local repositories).
    pub(super) url: String,
    /// What messages show: the repository with credentials removed.
    pub(super) shown: String,
    /// The local repository, when `repo` is a path or `file://` URL.
    local: Option<PathBuf>,
    /// `refs/heads/<branch>`.
    branch_ref: String,
    /// How `git` authenticates to a remote repository.
    pub(super) credentials: GitCredentials,
}

impl Target {
    pub(super) fn new(settings: &GitPublisherSettings) -> Result<Self, PublishError> {
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

    pub(super) fn published(&self, commit: ObjectId) -> Published {
        Published {
            location: self.shown.clone(),
            commit: Some(commit.to_hex().to_string()),
        }
    }

    /// Creates a local repository that does not exist yet: bare, with HEAD
    /// on the site branch so `git log` and `git show` there show the site.
    pub(super) fn create_if_missing(&self) -> Result<(), PublishError> {
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
    pub(super) fn fetch(&self, mirror: &gix::Repository) -> Result<Option<ObjectId>, PublishError> {
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

    pub(super) fn commit(
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
    pub(super) fn push(
        &self,
        mirror: &gix::Repository,
        commit: ObjectId,
    ) -> Result<(), PublishError> {
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
pub(super) fn open_mirror(path: &Path, shown: &str) -> Result<gix::Repository, PublishError> {
    if path.join("HEAD").is_file() {
        return gix::open(path).map_err(PublishError::git("open the mirror", shown));
    }
    fs::create_dir_all(path).map_err(PublishError::io("create directory", path))?;
    gix::init_bare(path).map_err(PublishError::git("create the mirror", shown))
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
}
