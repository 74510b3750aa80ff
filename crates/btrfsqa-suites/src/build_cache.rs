//! Built source trees kept on the controller, so a suite is built once per
//! commit and machine image, not once per machine and run.
//!
//! The first machine that needs a tree places the pinned source, builds it,
//! packs the built tree (`tar -cz`) and the controller keeps the archive in
//! `<cache>/builds/<suite>-<commit>-<key>.tar.gz`. Every later machine of the
//! same image, in this run or the next, unpacks that archive instead of
//! building: a few seconds instead of minutes. The key hashes the suite, the
//! commit, the build command and the machine image (its `/etc/os-release`,
//! architecture and the versions of the build packages), so a machine with
//! other libraries never gets a tree built against them.
//!
//! Machines of one run that need the same tree wait for the one building it
//! (in this process, and across processes through a lock file beside the
//! archive): on one host, two concurrent builds cost twice the CPU for the
//! same tree, while an unpack is cheap everywhere.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btrfsqa_remote::{ExecRequest, RemoteHost, shell_quote};
use sha2::{Digest, Sha256};

use crate::SuiteError;
use crate::setup::run_step;
use crate::source::{self, BUILT_MARKER, COMMIT_MARKER, PinnedSource};

/// How a suite builds its tree.
#[derive(Debug, Clone)]
pub(crate) struct Recipe<'a> {
    /// The step's name in errors (`build fstests`).
    pub step: &'a str,
    /// The shell command, run in the tree; its output is the error on failure.
    pub command: String,
    /// The packages the build links against (their versions are in the key).
    pub packages: &'a [&'a str],
    /// How long the build may take.
    pub timeout: Duration,
}

/// Where archives are kept: `<cache_dir>/builds`.
pub(crate) fn builds_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("builds")
}

/// Puts the pinned tree, built, at [`PinnedSource::remote_dir`] on the
/// machine: already there, unpacked from an archive of an earlier build, or
/// placed and built (and then archived). Returns the directory.
pub(crate) async fn place_built(
    host: &dyn RemoteHost,
    suite: &str,
    pinned: &PinnedSource,
    work_dir: &str,
    cache_dir: &Path,
    recipe: &Recipe<'_>,
) -> Result<String, SuiteError> {
    let dir = pinned.remote_dir(work_dir);
    if is_built_commit(host, suite, &dir, &pinned.commit).await? {
        return Ok(dir);
    }
    let image = image_key(host, suite, recipe.packages).await?;
    let archive = builds_dir(cache_dir).join(archive_name(suite, pinned, recipe, &image));
    // One builder per archive; the others wait and unpack.
    let local_lock = process_lock(&archive);
    let _local = local_lock.lock().await;
    let _file = FileLock::acquire(&archive.with_extension("lock")).await?;
    if archive.is_file() {
        match unpack(host, suite, &archive, &dir, &pinned.commit).await {
            Ok(()) => return Ok(dir),
            // A damaged archive is built again (and replaced).
            Err(_) => {
                let _ = std::fs::remove_file(&archive);
            }
        }
    }
    let dir = source::place(host, suite, pinned, work_dir).await?;
    run_step(
        host,
        suite,
        recipe.step,
        ExecRequest::new(format!(
            "{{ {}; }} >btrfsqa-build.log 2>&1 || {{ tail -n 40 btrfsqa-build.log; exit 1; }}; touch {BUILT_MARKER}",
            recipe.command
        ))
        .cwd(dir.clone())
        .timeout(recipe.timeout),
    )
    .await?;
    // Keeping the archive only saves time later: a failure here is not the run's.
    let _ = keep(host, suite, &dir, &archive).await;
    Ok(dir)
}

/// Whether `dir` holds a finished build of `commit`.
async fn is_built_commit(
    host: &dyn RemoteHost,
    suite: &str,
    dir: &str,
    commit: &str,
) -> Result<bool, SuiteError> {
    let quoted = shell_quote(dir);
    let out = run_step(
        host,
        suite,
        "look for a built source tree",
        ExecRequest::new(format!(
            "[ -f {quoted}/{BUILT_MARKER} ] && cat {quoted}/{COMMIT_MARKER} 2>/dev/null; true"
        ))
        .timeout(Duration::from_secs(60)),
    )
    .await?;
    Ok(out.stdout_text().trim() == commit)
}

/// A digest of what a build depends on in the machine: its distribution and
/// release, architecture and the versions of `packages`.
async fn image_key(
    host: &dyn RemoteHost,
    suite: &str,
    packages: &[&str],
) -> Result<String, SuiteError> {
    let list = packages
        .iter()
        .map(|p| shell_quote(p))
        .collect::<Vec<_>>()
        .join(" ");
    let out = run_step(
        host,
        suite,
        "describe the machine image",
        ExecRequest::new(format!(
            "cat /etc/os-release 2>/dev/null; uname -m; \
             if command -v dpkg-query >/dev/null; then dpkg-query -W -f '${{Package}} ${{Version}}\\n' {list} 2>/dev/null; \
             else rpm -q {list} 2>/dev/null; fi; true"
        ))
        .timeout(Duration::from_secs(120)),
    )
    .await?;
    Ok(hex(&Sha256::digest(&out.stdout)))
}

/// `<suite>-<commit12>-<key16>.tar.gz`.
fn archive_name(suite: &str, pinned: &PinnedSource, recipe: &Recipe<'_>, image: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [suite, &pinned.commit, &recipe.command, image] {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    let key = hex(&hasher.finalize());
    let commit: String = pinned.commit.chars().take(12).collect();
    format!(
        "{}-{commit}-{}.tar.gz",
        btrfsqa_model::safe_file_name(suite),
        &key[..16]
    )
}

/// Uploads `archive` and unpacks it as `dir`, then checks it is the build.
async fn unpack(
    host: &dyn RemoteHost,
    suite: &str,
    archive: &Path,
    dir: &str,
    commit: &str,
) -> Result<(), SuiteError> {
    let quoted = shell_quote(dir);
    let remote = format!("{dir}.btrfsqa-build.tar.gz");
    run_step(
        host,
        suite,
        "make the source directory",
        ExecRequest::new(format!("rm -rf {quoted} && mkdir -p {quoted}"))
            .timeout(Duration::from_secs(300)),
    )
    .await?;
    host.upload(archive, &remote)
        .await
        .map_err(|source| SuiteError::Remote {
            suite: suite.to_owned(),
            source,
        })?;
    let remote = shell_quote(&remote);
    run_step(
        host,
        suite,
        "unpack the built tree",
        ExecRequest::new(format!(
            "tar -xzf {remote} -C {quoted}; status=$?; rm -f {remote}; exit $status"
        ))
        .timeout(Duration::from_secs(600)),
    )
    .await?;
    if is_built_commit(host, suite, dir, commit).await? {
        Ok(())
    } else {
        Err(SuiteError::Setup {
            suite: suite.to_owned(),
            step: "unpack the built tree".to_owned(),
            message: format!(
                "`{}` does not hold a build of `{commit}`",
                archive.display()
            ),
        })
    }
}

/// Packs the built `dir` on the machine and keeps it as `archive`.
async fn keep(
    host: &dyn RemoteHost,
    suite: &str,
    dir: &str,
    archive: &Path,
) -> Result<(), SuiteError> {
    let remote = format!("{dir}.btrfsqa-build.tar.gz");
    let quoted_remote = shell_quote(&remote);
    run_step(
        host,
        suite,
        "pack the built tree",
        ExecRequest::new(format!(
            "tar -czf {quoted_remote} -C {} .",
            shell_quote(dir)
        ))
        .timeout(Duration::from_secs(600)),
    )
    .await?;
    let parent = archive.parent().unwrap_or(Path::new("."));
    let store = |source| SuiteError::Store {
        path: archive.to_owned(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(store)?;
    let partial = archive.with_extension(format!("partial-{}", std::process::id()));
    let fetched = host.download(&remote, &partial).await;
    let _ = host
        .exec(
            ExecRequest::new(format!("rm -f {quoted_remote}")).timeout(Duration::from_secs(60)),
            None,
        )
        .await;
    fetched.map_err(|source| SuiteError::Remote {
        suite: suite.to_owned(),
        source,
    })?;
    // Renamed into place whole: a reader never sees half an archive.
    std::fs::rename(&partial, archive).map_err(store)
}

/// The in-process lock of one archive.
fn process_lock(archive: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: Mutex<Option<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = Mutex::new(None);
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks
        .get_or_insert_with(HashMap::new)
        .entry(archive.to_owned())
        .or_default()
        .clone()
}

/// An exclusive lock on a file, held until dropped, so two btrfsqa
/// processes never build into (or read half of) one archive.
struct FileLock(
    #[expect(dead_code, reason = "held for its Drop")] nix::fcntl::Flock<std::fs::File>,
);

impl FileLock {
    async fn acquire(path: &Path) -> Result<FileLock, SuiteError> {
        let store = |source| SuiteError::Store {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(store)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(store)?;
        // Blocks until the other holder is done: off the async threads.
        let lock = tokio::task::spawn_blocking(move || {
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, errno)| std::io::Error::from(errno))
        })
        .await
        .map_err(|e| store(std::io::Error::other(e)))?
        .map_err(store)?;
        Ok(FileLock(lock))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::SourceInfo;
    use btrfsqa_remote::LocalHost;

    #[tokio::test]
    async fn a_tree_is_built_once_then_unpacked_from_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        // A real mirror with one commit.
        let upstream = tmp.path().join("up");
        std::fs::create_dir_all(&upstream).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&upstream)
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        git(&["init", "-q", "-b", "master"]);
        std::fs::write(upstream.join("src.c"), "int main(void) { return 0; }\n").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "one"]);
        let commit = git(&["rev-parse", "HEAD"]);
        let pinned = PinnedSource {
            info: SourceInfo {
                name: "t".into(),
                url: upstream.display().to_string(),
                git_ref: Some("master".into()),
                commit: Some(commit.clone()),
            },
            commit,
            mirror: upstream.join(".git"),
        };
        let recipe = Recipe {
            step: "build",
            // Counts builds in a file outside the tree.
            command: format!("echo built >> {}", tmp.path().join("builds.log").display()),
            packages: &["coreutils"],
            timeout: Duration::from_secs(60),
        };
        let host = LocalHost::new("t");
        let cache = tmp.path().join("cache");
        let work = |n: u32| tmp.path().join(format!("work{n}")).display().to_string();
        let first = place_built(&host, "t", &pinned, &work(0), &cache, &recipe)
            .await
            .unwrap();
        assert!(Path::new(&first).join("src.c").is_file());
        // Another machine (another work dir) unpacks; the same one reuses.
        let second = place_built(&host, "t", &pinned, &work(1), &cache, &recipe)
            .await
            .unwrap();
        assert!(Path::new(&second).join(BUILT_MARKER).is_file());
        place_built(&host, "t", &pinned, &work(1), &cache, &recipe)
            .await
            .unwrap();
        let builds = std::fs::read_to_string(tmp.path().join("builds.log")).unwrap();
        assert_eq!(builds.lines().count(), 1, "built once");
        let archives: Vec<_> = std::fs::read_dir(builds_dir(&cache))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tar.gz"))
            .collect();
        assert_eq!(archives.len(), 1, "{archives:?}");
        // A changed recipe is another build.
        let other = Recipe {
            command: format!("{}; true", recipe.command),
            ..recipe.clone()
        };
        place_built(&host, "t", &pinned, &work(2), &cache, &other)
            .await
            .unwrap();
        let builds = std::fs::read_to_string(tmp.path().join("builds.log")).unwrap();
        assert_eq!(builds.lines().count(), 2);
    }
}
