use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::exec::pump;
use crate::{ExecOutput, ExecRequest, OutputSink, RemoteError, RemoteHost, StreamKind};

/// The controller's environment variables a command sees (besides what its
/// request sets): what a shell and the tools need to run and to print
/// readable text, and nothing that could hold a credential.
const KEPT_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "LANGUAGE", "TERM", "TMPDIR", "USER", "LOGNAME", "SHELL", "TZ",
];

/// Whether the controller's variable `name` is passed on to commands:
/// [`KEPT_ENV`] and the locale's `LC_*`.
fn kept(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|name| KEPT_ENV.contains(&name) || name.starts_with("LC_"))
}

/// This machine, reached through child processes (the `local` provider).
///
/// Commands see only a few of the controller's environment variables
/// (`PATH`, `HOME`, `LANG`, `LANGUAGE`, `LC_*`, `TERM`, `TMPDIR`, `USER`,
/// `LOGNAME`, `SHELL`, `TZ`) plus those their request sets: the
/// controller's credentials (`AWS_SECRET_ACCESS_KEY`, `GITHUB_TOKEN`) never
/// reach a test. Each command runs in its own process group, and the whole
/// group is killed when the command ends, times out, or its future is
/// dropped (the caller gave up or was cancelled).
#[derive(Debug, Clone)]
pub struct LocalHost {
    name: String,
}

impl LocalHost {
    /// A host called `name` in events and messages.
    pub fn new(name: impl Into<String>) -> Self {
        LocalHost { name: name.into() }
    }
}

#[async_trait::async_trait]
impl RemoteHost for LocalHost {
    fn name(&self) -> &str {
        &self.name
    }

    async fn exec(
        &self,
        request: ExecRequest,
        sink: Option<OutputSink>,
    ) -> Result<ExecOutput, RemoteError> {
        // By absolute path: a PATH search costs a failed exec per entry, on
        // every command.
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&request.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills everything it started.
            .process_group(0)
            .kill_on_drop(true)
            .env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| kept(name)));
        for (key, value) in &request.env {
            command.env(key, value);
        }
        if let Some(cwd) = &request.cwd {
            command.current_dir(cwd);
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| RemoteError::Spawn {
            host: self.name.clone(),
            command: request.command.clone(),
            source: source.into(),
        })?;
        let pgid = child.id();
        // Declared after `child`, so dropped first: a dropped future kills
        // the group, not only the shell (`kill_on_drop`).
        let mut group = GroupGuard(pgid);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let limit = request.capture_limit;
        let out_task = tokio::spawn(pump(stdout, StreamKind::Stdout, sink.clone(), limit, None));
        let err_task = tokio::spawn(pump(stderr, StreamKind::Stderr, sink, limit, None));

        let (status, timed_out) = match request.timeout {
            Some(timeout) => match tokio::time::timeout(timeout, child.wait()).await {
                Ok(status) => (Some(status), false),
                Err(_) => {
                    kill_group(pgid);
                    let _ = child.wait().await;
                    (None, true)
                }
            },
            None => (Some(child.wait().await), false),
        };
        // Descendants that outlive the shell keep the pipes open; they belong
        // to the command, so they go with it. (Once: after this the group id
        // may be reused.)
        group.kill();
        let stdout = out_task.await.unwrap_or_default();
        let stderr = err_task.await.unwrap_or_default();
        let status = status.transpose().map_err(|source| RemoteError::Spawn {
            host: self.name.clone(),
            command: request.command.clone(),
            source: source.into(),
        })?;
        Ok(ExecOutput {
            code: status.and_then(|s| s.code()),
            timed_out,
            stdout,
            stderr,
            duration: started.elapsed(),
        })
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RemoteError> {
        copy(local, Path::new(remote))
            .await
            .map_err(|source| RemoteError::Transfer {
                host: self.name.clone(),
                direction: "to",
                remote: remote.to_owned(),
                local: local.to_owned(),
                source: source.into(),
            })
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), RemoteError> {
        copy(Path::new(remote), local)
            .await
            .map_err(|source| RemoteError::Transfer {
                host: self.name.clone(),
                direction: "from",
                remote: remote.to_owned(),
                local: local.to_owned(),
                source: source.into(),
            })
    }

    async fn reboot_and_wait(&self, _timeout: Duration) -> Result<(), RemoteError> {
        Err(RemoteError::Unsupported {
            host: self.name.clone(),
            operation: "reboot the controller's own machine",
        })
    }
}

async fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::copy(from, to).await.map(drop)
}

/// Kills a command's process group when dropped: on every way out of
/// `exec`, including a future dropped half-way.
struct GroupGuard(Option<u32>);

impl GroupGuard {
    fn kill(&mut self) {
        kill_group(self.0.take());
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        // ESRCH (already gone) is the common, harmless case.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_commands_and_streams_output() {
        let host = LocalHost::new("t");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = host
            .exec(ExecRequest::new("echo out; echo err >&2; exit 3"), Some(tx))
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(out.stderr_text(), "err\n");
        let mut streamed = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            streamed.push(chunk.stream);
        }
        assert!(streamed.contains(&StreamKind::Stdout) && streamed.contains(&StreamKind::Stderr));
    }

    #[tokio::test]
    async fn timeouts_kill_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survivor");
        let host = LocalHost::new("t");
        let command = format!(
            "(sleep 2; touch {}) & echo started; sleep 30",
            marker.display()
        );
        let out = host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_millis(300)),
                None,
            )
            .await
            .unwrap();
        assert!(out.timed_out && out.code.is_none());
        assert_eq!(out.stdout_text(), "started\n");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "a background child survived the timeout");
    }

    #[tokio::test]
    async fn env_and_cwd_apply() {
        let dir = tempfile::tempdir().unwrap();
        let out = LocalHost::new("t")
            .exec(
                ExecRequest::new("echo $V; pwd")
                    .env("V", "x y")
                    .cwd(dir.path().to_str().unwrap()),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            out.stdout_text(),
            format!("x y\n{}\n", dir.path().display())
        );
    }
}
