//! Git sources of the suites that build from source (fstests, btrfs-progs).
//!
//! The controller keeps a mirror of each repository in a cache directory,
//! resolves the asked ref to a commit there ([`pin`]), and puts exactly that
//! tree on the machine ([`place`]) as a tar archive it uploads. The machine
//! never talks to the git server, needs no credentials, and the same path
//! works for the local machine and for one reached over SSH.

use std::path::{Path, PathBuf};
use std::time::Duration;

use btrfsqa_model::{SourceInfo, safe_file_name};
use btrfsqa_remote::{ExecRequest, RemoteHost, shell_quote};
use tokio::process::Command;

use crate::SuiteError;
use crate::setup::run_step;

/// The file in a placed tree that names the commit it holds.
pub(crate) const COMMIT_MARKER: &str = ".btrfsqa-commit";
/// The file in a placed tree that says the build finished.
pub(crate) const BUILT_MARKER: &str = ".btrfsqa-built";

/// One cache lock for the whole process: two machines of one run prepare at
/// once, and two clones into one mirror directory would corrupt it.
static CACHE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A source resolved to one commit, with the local mirror that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PinnedSource {
    /// What goes into the report.
    pub info: SourceInfo,
    /// The full commit id.
    pub commit: String,
    /// The local bare mirror.
    pub mirror: PathBuf,
}

impl PinnedSource {
    /// The directory on the machine that holds this tree.
    pub(crate) fn remote_dir(&self, work_dir: &str) -> String {
        let short: String = self.commit.chars().take(12).collect();
        format!(
            "{}/btrfsqa-src/{}-{short}",
            work_dir.trim_end_matches('/'),
            safe_file_name(&self.info.name)
        )
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/btrfsqa/git`, else
/// `~/.cache/btrfsqa/git`, else a directory under the system's temporary one.
pub(crate) fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("btrfsqa/git");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".cache/btrfsqa/git");
    }
    std::env::temp_dir().join("btrfsqa-cache/git")
}

/// Runs `git` on the controller.
async fn git(suite: &str, step: &str, args: &[&str]) -> Result<String, SuiteError> {
    // Clones and fetches cross the network: retried while they fail for a
    // reason that may pass.
    let delays: &[std::time::Duration] = if args.contains(&"clone") || args.contains(&"fetch") {
        &crate::setup::FETCH_RETRY_DELAYS
    } else {
        &[]
    };
    crate::setup::retry_transient(delays, || git_once(suite, step, args)).await
}

async fn git_once(suite: &str, step: &str, args: &[&str]) -> Result<String, SuiteError> {
    let setup = |message: String| SuiteError::Setup {
        suite: suite.to_owned(),
        step: step.to_owned(),
        message,
    };
    let out = git_command(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| setup(format!("cannot run `git`: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        return Err(setup(tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `url` without its credentials, and the environment that gives them to
/// git as an `Authorization` header instead (`GIT_CONFIG_*`): a process's
/// environment, unlike its command line, is not shown to other users, and
/// git keeps it out of the repository's config. No credentials, no
/// environment.
pub fn git_url_and_auth(url: &str) -> (String, Vec<(&'static str, String)>) {
    use base64::Engine;
    match btrfsqa_model::url_credentials(url) {
        Some((user, password)) => {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (
                btrfsqa_model::redact_url(url),
                vec![
                    ("GIT_CONFIG_COUNT", "1".to_owned()),
                    ("GIT_CONFIG_KEY_0", "http.extraHeader".to_owned()),
                    (
                        "GIT_CONFIG_VALUE_0",
                        format!("Authorization: Basic {basic}"),
                    ),
                ],
            )
        }
        None => (url.to_owned(), Vec::new()),
    }
}

/// `git ARGS`, never prompting, with the credentials of an HTTP(S) URL
/// among `args` moved out of it ([`git_url_and_auth`]): they are never in
/// `ps`, in the mirror's config or in its directory's name.
pub(crate) fn git_command(args: &[&str]) -> Command {
    let mut command = Command::new("git");
    // Never ask for a password: a source that needs one is a config error.
    command.env("GIT_TERMINAL_PROMPT", "0");
    for arg in args {
        let (arg, env) = git_url_and_auth(arg);
        command.arg(arg).envs(env);
    }
    command
}

/// Why `url` cannot be given to git as a repository, if it cannot: empty,
/// starting with `-` (git would read an option, `--upload-pack=...`), or
/// holding white space or control characters.
pub fn git_url_problem(url: &str) -> Option<String> {
    if url.is_empty() {
        Some("must not be empty".to_owned())
    } else if url.starts_with('-') {
        Some("must not start with `-` (git would read it as an option)".to_owned())
    } else if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not hold spaces or control characters".to_owned())
    } else {
        None
    }
}

/// Why `git_ref` is not a branch, tag or commit name git accepts, if it is
/// not (git's `check-ref-format` rules, and never an option).
pub fn git_ref_problem(git_ref: &str) -> Option<String> {
    let bad = git_ref.is_empty()
        || git_ref.starts_with('-')
        || git_ref.starts_with('/')
        || git_ref.ends_with('/')
        || git_ref.ends_with('.')
        || git_ref.ends_with(".lock")
        || git_ref.contains("..")
        || git_ref.contains("@{")
        || git_ref.contains("//")
        || git_ref.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')
        });
    bad.then(|| "must name a branch, tag or commit (no spaces, no leading `-`)".to_owned())
}

/// [`pin`] once per suite instance: the first call mirrors and resolves,
/// later calls reuse the pinned source.
pub(crate) async fn pin_once<'a>(
    cell: &'a tokio::sync::OnceCell<PinnedSource>,
    suite: &str,
    name: &str,
    url: &str,
    git_ref: &str,
    cache_dir: Option<&Path>,
) -> Result<&'a PinnedSource, SuiteError> {
    cell.get_or_try_init(|| async {
        let cache = cache_dir.map_or_else(default_cache_dir, Path::to_owned);
        pin(suite, name, url, git_ref, &cache).await
    })
    .await
}

/// Whether a previous build in `dir` on the machine finished (its
/// [`BUILT_MARKER`] exists).
pub(crate) async fn is_built(
    host: &dyn RemoteHost,
    dir: &str,
) -> Result<bool, btrfsqa_remote::RemoteError> {
    let out = host
        .exec(
            ExecRequest::new(format!("test -f {}/{BUILT_MARKER}", shell_quote(dir)))
                .timeout(Duration::from_secs(60)),
            None,
        )
        .await?;
    Ok(out.success())
}

/// Mirrors `url` into `cache_dir` (or updates the mirror) and resolves
/// `git_ref` to a commit.
pub(crate) async fn pin(
    suite: &str,
    name: &str,
    url: &str,
    git_ref: &str,
    cache_dir: &Path,
) -> Result<PinnedSource, SuiteError> {
    // Never reaches git as an option, whoever built the configuration.
    let problem = git_url_problem(url)
        .map(|p| format!("git URL `{}` {p}", btrfsqa_model::redact_url(url)))
        .or_else(|| git_ref_problem(git_ref).map(|p| format!("git ref `{git_ref}` {p}")));
    if let Some(message) = problem {
        return Err(SuiteError::Config {
            suite: suite.to_owned(),
            message,
        });
    }
    let _guard = CACHE_LOCK.lock().await;
    // Named by the bare URL: a directory name is no place for a token.
    let bare_url = btrfsqa_model::redact_url(url);
    let mirror = cache_dir.join(format!("{}.git", safe_file_name(&bare_url)));
    let mirror_str = mirror.to_string_lossy().into_owned();
    let resolve = |m: String| async move {
        git(
            suite,
            &format!(
                "resolve `{git_ref}` in `{}`",
                btrfsqa_model::redact_url(url)
            ),
            &[
                "-C",
                &m,
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &format!("{git_ref}^{{commit}}"),
            ],
        )
        .await
    };
    if !mirror.join("HEAD").exists() {
        std::fs::create_dir_all(cache_dir).map_err(|source| SuiteError::Store {
            path: cache_dir.to_owned(),
            source,
        })?;
        // Clone beside the final name and rename, so an interrupted clone
        // never looks like a mirror.
        let partial = cache_dir.join(format!(
            "{}.partial-{}",
            safe_file_name(&bare_url),
            std::process::id()
        ));
        let partial_str = partial.to_string_lossy().into_owned();
        let _ = std::fs::remove_dir_all(&partial);
        git(
            suite,
            &format!("clone `{}`", btrfsqa_model::redact_url(url)),
            &["clone", "--mirror", "--quiet", "--", url, &partial_str],
        )
        .await?;
        std::fs::rename(&partial, &mirror).map_err(|source| SuiteError::Store {
            path: mirror.clone(),
            source,
        })?;
    } else if resolve(mirror_str.clone()).await.is_err() || !is_commit_id(git_ref) {
        // A branch or tag may have moved; a commit id that is already there
        // cannot, so that case stays off the network.
        git(
            suite,
            &format!("fetch `{}`", btrfsqa_model::redact_url(url)),
            &[
                "-C",
                &mirror_str,
                "fetch",
                "--prune",
                "--quiet",
                "--",
                url,
                "+refs/*:refs/*",
            ],
        )
        .await?;
    }
    let commit = resolve(mirror_str).await.map_err(|_| SuiteError::Config {
        suite: suite.to_owned(),
        message: format!(
            "`{git_ref}` is not a branch, tag or commit of `{}`",
            btrfsqa_model::redact_url(url)
        ),
    })?;
    Ok(PinnedSource {
        info: SourceInfo::new(name, url, Some(git_ref.to_owned()), Some(commit.clone())),
        commit,
        mirror,
    })
}

/// A commit and its subject line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The full commit id.
    pub id: String,
    /// Its subject line.
    pub subject: String,
}

/// The commits after `good` up to `bad` of `url` (mirrored into
/// `cache_dir` like a suite's source), oldest first, following first
/// parents (the mainline of a merge-based history); `good` and `bad` as
/// full ids too. Errors when `good` is not an ancestor of `bad`.
pub async fn commit_range(
    url: &str,
    good: &str,
    bad: &str,
    cache_dir: &Path,
) -> Result<(String, String, Vec<Commit>), SuiteError> {
    let pinned_bad = pin("bisect", "source", url, bad, cache_dir).await?;
    let pinned_good = pin("bisect", "source", url, good, cache_dir).await?;
    let mirror = pinned_bad.mirror.to_string_lossy().into_owned();
    let (good, bad) = (pinned_good.commit, pinned_bad.commit);
    let ancestor = Command::new("git")
        .args(["-C", &mirror, "merge-base", "--is-ancestor", &good, &bad])
        .status()
        .await
        .map_err(|e| SuiteError::Setup {
            suite: "bisect".into(),
            step: "compare the commits".into(),
            message: format!("cannot run `git`: {e}"),
        })?;
    if !ancestor.success() {
        return Err(SuiteError::Config {
            suite: "bisect".into(),
            message: format!("`{good}` is not an ancestor of `{bad}`"),
        });
    }
    let log = git(
        "bisect",
        "list the commits",
        &[
            "-C",
            &mirror,
            "log",
            "--first-parent",
            "--reverse",
            "--format=%H %s",
            &format!("{good}..{bad}"),
        ],
    )
    .await?;
    let commits = log
        .lines()
        .filter_map(|line| {
            let (id, subject) = line.split_once(' ').unwrap_or((line, ""));
            is_commit_id(id).then(|| Commit {
                id: id.to_owned(),
                subject: subject.to_owned(),
            })
        })
        .collect();
    Ok((good, bad, commits))
}

/// What `git grep -I -e <pattern> <commit> -- <path>` prints in the pinned
/// tree's mirror (`<commit>:<file>:<line>` per match; empty for no match).
/// `files_only` prints each matching file once (`-l`).
pub(crate) async fn grep(
    suite: &str,
    pinned: &PinnedSource,
    pattern: &str,
    path: &str,
    files_only: bool,
) -> Result<String, SuiteError> {
    let mirror = pinned.mirror.to_string_lossy().into_owned();
    let mut args = vec!["-C", &mirror, "grep", "-I", "-E"];
    if files_only {
        args.push("-l");
    }
    args.extend(["-e", pattern, &pinned.commit, "--", path]);
    let out = Command::new("git")
        .args(&args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| SuiteError::Setup {
            suite: suite.to_owned(),
            step: "list the tests".to_owned(),
            message: format!("cannot run `git`: {e}"),
        })?;
    // `git grep` exits 1 when nothing matched.
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(1) if out.stderr.is_empty() => Ok(String::new()),
        _ => Err(SuiteError::Setup {
            suite: suite.to_owned(),
            step: format!("list the tests of `{}`", pinned.commit),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
    }
}

/// The text of `path` in the pinned tree.
pub(crate) async fn show(
    suite: &str,
    pinned: &PinnedSource,
    path: &str,
) -> Result<String, SuiteError> {
    git(
        suite,
        &format!("read `{path}` of `{}`", pinned.commit),
        &[
            "-C",
            &pinned.mirror.to_string_lossy(),
            "show",
            &format!("{}:{path}", pinned.commit),
        ],
    )
    .await
}

/// The names of the directories directly under `path` in the pinned tree.
pub(crate) async fn subdirectories(
    suite: &str,
    pinned: &PinnedSource,
    path: &str,
) -> Result<Vec<String>, SuiteError> {
    let out = git(
        suite,
        &format!("list `{path}` of `{}`", pinned.commit),
        &[
            "-C",
            &pinned.mirror.to_string_lossy(),
            "ls-tree",
            "-d",
            "--name-only",
            &pinned.commit,
            "--",
            &format!("{}/", path.trim_end_matches('/')),
        ],
    )
    .await?;
    Ok(out
        .lines()
        .filter_map(|line| line.rsplit('/').next())
        .map(str::to_owned)
        .collect())
}

fn is_commit_id(value: &str) -> bool {
    value.len() == 40 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Puts the pinned tree at [`PinnedSource::remote_dir`] on the machine unless
/// it is already there; returns that directory.
pub(crate) async fn place(
    host: &dyn RemoteHost,
    suite: &str,
    pinned: &PinnedSource,
    work_dir: &str,
) -> Result<String, SuiteError> {
    let dir = pinned.remote_dir(work_dir);
    let quoted = shell_quote(&dir);
    let check = run_step(
        host,
        suite,
        "look for a placed source tree",
        ExecRequest::new(format!(
            "cat {}/{COMMIT_MARKER} 2>/dev/null || true",
            quoted
        ))
        .timeout(Duration::from_secs(60)),
    )
    .await?;
    if check.stdout_text().trim() == pinned.commit {
        return Ok(dir);
    }

    let local = tempfile_dir(suite)?;
    let tar = local.path().join("source.tar");
    let tar_str = tar.to_string_lossy().into_owned();
    git(
        suite,
        &format!("archive `{}`", pinned.commit),
        &[
            "-C",
            &pinned.mirror.to_string_lossy(),
            "archive",
            "--format=tar",
            "-o",
            &tar_str,
            &pinned.commit,
        ],
    )
    .await?;
    let remote_tar = format!("{dir}.tar");
    run_step(
        host,
        suite,
        "make the source directory",
        ExecRequest::new(format!(
            "mkdir -p \"$(dirname {quoted})\" && rm -rf {quoted}"
        ))
        .timeout(Duration::from_secs(300)),
    )
    .await?;
    host.upload(&tar, &remote_tar)
        .await
        .map_err(|source| SuiteError::Remote {
            suite: suite.to_owned(),
            source,
        })?;
    let remote_tar = shell_quote(&remote_tar);
    run_step(
        host,
        suite,
        "unpack the source",
        ExecRequest::new(format!(
            "mkdir -p {quoted} && tar -xf {remote_tar} -C {quoted} && rm -f {remote_tar} \
             && echo {} > {quoted}/{COMMIT_MARKER}",
            pinned.commit
        ))
        .timeout(Duration::from_secs(600)),
    )
    .await?;
    Ok(dir)
}

/// A local temporary directory, removed when dropped.
fn tempfile_dir(suite: &str) -> Result<TempDir, SuiteError> {
    let path = std::env::temp_dir().join(format!(
        "btrfsqa-{}-{}-{}",
        safe_file_name(suite),
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&path).map_err(|source| SuiteError::Store {
        path: path.clone(),
        source,
    })?;
    Ok(TempDir(path))
}

/// A directory removed on drop (tempfile is only a dev-dependency here).
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_remote::LocalHost;

    /// A git repository served over "dumb" HTTP by Python, answering only
    /// requests with `Authorization: Basic base64(user:pass)`; what it saw
    /// is logged to `seen`.
    struct AuthServer {
        child: std::process::Child,
        port: u16,
        seen: PathBuf,
    }

    impl Drop for AuthServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn base64_encode(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn serve_with_auth(root: &Path, user: &str, pass: &str) -> Option<AuthServer> {
        let seen = root.join("seen.log");
        let script = r#"
import base64, http.server, os, sys
root, expected, seen = sys.argv[1], sys.argv[2], sys.argv[3]
class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def do_GET(self):
        got = self.headers.get("Authorization", "")
        with open(seen, "a") as f:
            f.write(self.path + " " + got + "\n")
        if got != "Basic " + expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="t"')
            self.end_headers()
            return
        super().do_GET()
    def log_message(self, *a):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
        let expected = base64_encode(format!("{user}:{pass}").as_bytes());
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(root)
            .arg(expected)
            .arg(&seen)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let port = line.trim().parse().ok()?;
        Some(AuthServer { child, port, seen })
    }

    #[tokio::test]
    async fn credentials_in_a_url_reach_the_server_but_no_command_line_file_or_name() {
        let tmp = tempfile::tempdir().unwrap();
        let served = tmp.path().join("www");
        make_repo(&tmp.path().join("work"));
        std::fs::create_dir_all(&served).unwrap();
        let bare = served.join("r.git");
        git_sync(
            tmp.path(),
            &["clone", "-q", "--bare", "work", bare.to_str().unwrap()],
        );
        git_sync(&bare, &["update-server-info"]);
        let secret = "s3cret-token-0123456789";
        let Some(server) = serve_with_auth(&served, "qa", secret) else {
            eprintln!("skipping: no python3 to serve git over HTTP");
            return;
        };
        let url = format!("http://qa:{secret}@127.0.0.1:{}/r.git", server.port);
        let cache = tmp.path().join("cache");
        let pinned = pin("s", "src", &url, "master", &cache).await.unwrap();
        assert_eq!(pinned.commit.len(), 40);
        // Again: a fetch into the mirror, with the same credentials.
        pin("s", "src", &url, "master", &cache).await.unwrap();
        let seen = std::fs::read_to_string(&server.seen).unwrap();
        assert!(
            seen.lines().any(|l| l.ends_with(&format!(
                " Basic {}",
                base64_encode(format!("qa:{secret}").as_bytes())
            ))),
            "the server was given the credentials: {seen}"
        );
        // Nothing under the cache names or holds the secret.
        let mut stack = vec![cache.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                assert!(
                    !path.to_string_lossy().contains(secret),
                    "a file name holds the secret: {}",
                    path.display()
                );
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    assert!(
                        !String::from_utf8_lossy(&bytes).contains(secret),
                        "{} holds the secret",
                        path.display()
                    );
                }
            }
        }
        assert!(!pinned.info.url.contains(secret), "{}", pinned.info.url);
        // What git is given on its command line has no secret either.
        let command = git_command(&["fetch", "--", &url]);
        let args: Vec<String> = command
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.iter().any(|a| a.contains(secret)), "{args:?}");
    }

    fn git_sync(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(status.status.success(), "{:?}", status);
    }

    fn make_repo(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        git_sync(dir, &["init", "-q", "-b", "master"]);
        std::fs::write(dir.join("check"), "#!/bin/sh\necho hi\n").unwrap();
        git_sync(dir, &["add", "-A"]);
        git_sync(dir, &["commit", "-q", "-m", "one"]);
    }

    #[tokio::test]
    async fn sources_are_pinned_and_placed_once() {
        if std::process::Command::new("git")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: no git");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let upstream = tmp.path().join("upstream");
        make_repo(&upstream);
        let url = upstream.to_string_lossy().into_owned();
        let cache = tmp.path().join("cache");
        let first = pin("t", "fstests", &url, "master", &cache).await.unwrap();
        assert_eq!(first.commit.len(), 40);
        assert_eq!(first.info.git_ref.as_deref(), Some("master"));

        // A new commit upstream is picked up by the next pin.
        std::fs::write(upstream.join("new"), "x").unwrap();
        git_sync(&upstream, &["add", "-A"]);
        git_sync(&upstream, &["commit", "-q", "-m", "two"]);
        let second = pin("t", "fstests", &url, "master", &cache).await.unwrap();
        assert_ne!(first.commit, second.commit);
        // The old commit still resolves, from the mirror alone.
        let old = pin("t", "fstests", &url, &first.commit, &cache)
            .await
            .unwrap();
        assert_eq!(old.commit, first.commit);

        // Nothing a user typed reaches git as an option.
        let marker = tmp.path().join("pwned");
        let hostile = format!("--upload-pack=touch {}", marker.display());
        for (url, git_ref) in [
            (hostile.as_str(), "master"),
            (&format!(" {hostile}"), "master"),
            (url.as_str(), hostile.as_str()),
            (url.as_str(), "--output=/tmp/x"),
        ] {
            let err = pin("t", "fstests", url, git_ref, &cache).await.unwrap_err();
            assert!(matches!(err, SuiteError::Config { .. }), "{err:?}");
        }
        assert!(!marker.exists(), "git ran the user's option");

        let err = pin("t", "fstests", &url, "no-such-branch", &cache)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("`no-such-branch`"), "{err}");

        let work = tmp.path().join("work");
        let host = LocalHost::new("t");
        let dir = place(&host, "t", &second, &work.to_string_lossy())
            .await
            .unwrap();
        assert!(Path::new(&dir).join("new").exists());
        assert!(Path::new(&dir).join("check").exists());
        // Placing again keeps the tree (and whatever was built in it).
        std::fs::write(Path::new(&dir).join(BUILT_MARKER), "").unwrap();
        let again = place(&host, "t", &second, &work.to_string_lossy())
            .await
            .unwrap();
        assert_eq!(again, dir);
        assert!(Path::new(&dir).join(BUILT_MARKER).exists());
    }
}
