//! [`OpenSshHost`]: a machine reached over OpenSSH.
//!
//! One multiplexed master connection per machine (the `openssh` crate's native
//! mux), so a command costs a few milliseconds instead of a full handshake.
//! Everything that ssh reads lives in a directory private to the host (its own
//! `ssh_config`: the user's `~/.ssh/config` and the system one are ignored;
//! the control socket) or is named by the caller: the known_hosts file that
//! pins the machine's host key. Host keys are always checked strictly: a
//! machine without a pinned key is never connected to (the error names it
//! and says how to pin it), and one that shows another key is refused. The
//! user's `~/.ssh/known_hosts` is never read or touched.
//!
//! Remote commands run as
//!
//! ```text
//! login shell ── exec sh -c WRAPPER ── setsid sh -c SCRIPT
//!                (waits, cleans up)     (own session and process group)
//! ```
//!
//! The inner shell writes its process group id to a file in `$TMPDIR`
//! (default `/tmp`) on the machine; a
//! timeout kills that group over a second channel, and the wrapper kills what
//! is left of it once the script ends (like [`crate::LocalHost`], background
//! children die with the command), then reports the script's status. Because
//! the wrapper itself is never killed, a session that ends without an exit
//! status means the connection broke.
//!
//! The channel's standard input is the command's lifeline: the controller
//! holds it open, unwritten, while it waits, and the wrapper kills the group
//! when it closes. So a command whose caller gave up (its future dropped),
//! whose controller exited or died, or whose connection broke does not run
//! on, on a machine that may outlive the run (a static host).

mod commands;
mod master;

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{Session, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, Semaphore, watch};

use crate::error::{CommandFailed, InvalidRequest, NoPinnedHostKey, NotReachable};
use crate::exec::pump;
use crate::{
    ExecOutput, ExecRequest, OutputSink, RemoteError, RemoteHost, StreamKind, shell_quote,
};

use commands::{detached_command, download_command, unique_pgid_file, upload_command, wrap_exec};
use master::{End, Finish, KillOnDrop};

/// How long one connection attempt may take (`ConnectTimeout`: TCP, then the
/// SSH handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive period; three unanswered probes end the master connection, which
/// turns a silent network cut into [`RemoteError::Disconnected`] within 30 s.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// An idle master exits after this long, so a controller that crashes leaves
/// no ssh process behind for long; the next command reconnects transparently.
const MASTER_IDLE_SECS: usize = 600;
/// Channels used at once by commands and transfers. sshd allows ten sessions
/// per connection by default (`MaxSessions`); the rest stay free for killing
/// timed-out commands.
const MAX_CHANNELS: usize = 8;
/// After a timeout kill, how long the output may take to drain before the
/// streams are abandoned (a process that left the group may hold them open).
const KILL_GRACE: Duration = Duration::from_secs(10);
/// Bound on the helper command that kills a timed-out process group.
const KILL_COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on a boot-id probe while waiting for a reboot.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry delays while waiting for a machine: first and largest.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Captured standard error of helper commands (transfers, probes).
const HELPER_STDERR_LIMIT: usize = 16 << 10;
const BOOT_ID_COMMAND: &str = "cat /proc/sys/kernel/random/boot_id";
const DEFAULT_REBOOT_COMMAND: &str = "systemctl reboot || reboot";

/// How to reach a machine over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Private key. `None` leaves the choice to ssh (agent, default keys).
    pub identity_file: Option<PathBuf>,
    /// The known_hosts file that pins the machine's host key. Required:
    /// without it (or when it holds no key) [`OpenSshHost`] refuses to
    /// connect. It is read, never written.
    pub known_hosts_file: Option<PathBuf>,
}

impl SshTarget {
    /// `user@host:port`, with ssh's default key and no pinned host key yet
    /// (set [`SshTarget::known_hosts_file`] before connecting).
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        SshTarget {
            host: host.into(),
            port,
            user: user.into(),
            identity_file: None,
            known_hosts_file: None,
        }
    }
}

/// A machine reached over OpenSSH, through one multiplexed master connection.
///
/// The connection lives behind a lock: when it breaks, the command under way
/// fails with [`RemoteError::Disconnected`] and the next call connects again
/// (once; if that fails it returns [`RemoteError::Connect`]). A command that
/// could not even start because the master had gone away is retried on the
/// new connection, since it never ran.
///
/// On this host a command killed by a signal reports `128 + signal` as its
/// code (the shell's view), where [`crate::LocalHost`] reports `None`.
pub struct OpenSshHost {
    inner: Arc<Inner>,
    reboot_command: String,
}

struct Inner {
    name: String,
    target: SshTarget,
    /// The current master, if any. Declared before `private` so the session
    /// shuts down before its control directory goes away.
    master: Mutex<Option<Master>>,
    channels: Semaphore,
    config_file: PathBuf,
    known_hosts: PathBuf,
    /// ssh_config, control sockets.
    private: tempfile::TempDir,
}

type Master = Arc<Session>;

impl fmt::Debug for OpenSshHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenSshHost")
            .field("name", &self.inner.name)
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

impl OpenSshHost {
    /// Opens the master connection to `target`; `name` is the machine's name
    /// in messages.
    pub async fn connect(name: impl Into<String>, target: SshTarget) -> Result<Self, RemoteError> {
        let inner = Arc::new(Inner::new(name.into(), target)?);
        let master = inner.clone().launch().await?;
        *inner.master.lock().await = Some(master);
        Ok(OpenSshHost {
            inner,
            reboot_command: DEFAULT_REBOOT_COMMAND.to_owned(),
        })
    }

    /// Connects to a machine that may still be booting: retries with backoff
    /// until it runs `true`, or `timeout` has passed. A host key that does
    /// not match, or a target ssh cannot take, is refused at once.
    pub async fn wait_until_reachable(
        name: impl Into<String>,
        target: SshTarget,
        timeout: Duration,
    ) -> Result<Self, RemoteError> {
        let name = name.into();
        let deadline = Instant::now() + timeout;
        let mut delay = BACKOFF_START;
        loop {
            let failure = match OpenSshHost::connect(name.clone(), target.clone()).await {
                Ok(host) => {
                    let probe = ExecRequest::new("true").timeout(PROBE_TIMEOUT);
                    match host.exec(probe, None).await {
                        Ok(out) if out.success() => return Ok(host),
                        Ok(out) => RemoteError::Spawn {
                            host: name.clone(),
                            command: "true".to_owned(),
                            source: Box::new(CommandFailed {
                                command: "true".to_owned(),
                                code: out.code,
                                stderr: out.stderr_text(),
                            }),
                        },
                        Err(err) => err,
                    }
                }
                Err(err) if is_permanent(&err) => return Err(err),
                Err(err) => err,
            };
            tracing::debug!(host = %name, error = %failure, "not reachable yet");
            if Instant::now() + delay >= deadline {
                return Err(RemoteError::Connect {
                    host: name,
                    source: Box::new(NotReachable {
                        secs: timeout.as_secs(),
                        last: failure,
                    }),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// Replaces the command that [`RemoteHost::reboot_and_wait`] runs
    /// (default `systemctl reboot || reboot`), e.g. for a kexec reboot.
    pub fn with_reboot_command(mut self, command: impl Into<String>) -> Self {
        self.reboot_command = command.into();
        self
    }

    /// Where this host is.
    pub fn target(&self) -> &SshTarget {
        &self.inner.target
    }

    async fn boot_id(&self, timeout: Option<Duration>) -> Result<String, RemoteError> {
        let mut request = ExecRequest::new(BOOT_ID_COMMAND);
        request.timeout = timeout;
        let out = self.exec(request, None).await?;
        let id = out.stdout_text().trim().to_owned();
        if !out.success() || id.is_empty() {
            return Err(RemoteError::Spawn {
                host: self.inner.name.clone(),
                command: BOOT_ID_COMMAND.to_owned(),
                source: Box::new(CommandFailed {
                    command: BOOT_ID_COMMAND.to_owned(),
                    code: out.code,
                    stderr: out.stderr_text(),
                }),
            });
        }
        Ok(id)
    }
}

#[async_trait::async_trait]
impl RemoteHost for OpenSshHost {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn exec(
        &self,
        request: ExecRequest,
        sink: Option<OutputSink>,
    ) -> Result<ExecOutput, RemoteError> {
        let inner = &self.inner;
        if let Some((key, _)) = request.env.iter().find(|(key, _)| !is_env_name(key)) {
            return Err(RemoteError::Spawn {
                host: inner.name.clone(),
                command: request.command.clone(),
                source: Box::new(InvalidRequest {
                    what: "environment variable",
                    value: key.clone(),
                    why: "is not a valid shell variable name",
                }),
            });
        }
        let _permit = inner.channels.acquire().await.expect("never closed");
        let pgid_file = unique_pgid_file();
        let remote = wrap_exec(&request.script(), &pgid_file);
        tracing::debug!(host = %inner.name, command = %request.command, "exec");
        let (master, mut child) = inner
            .spawn(&request.command, |master| {
                let mut command = Session::to_raw_command(master.clone(), &remote);
                command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                Ok(command)
            })
            .await?;
        // Held, never written, until `exec` returns or its future is
        // dropped: its end kills the command (see `wrap_exec`), even when
        // no runtime is left to run `KillOnDrop`'s task.
        let _lifeline = child.stdin().take();
        let started = Instant::now();
        let mut guard = KillOnDrop {
            inner: inner.clone(),
            master: master.clone(),
            pgid_file: pgid_file.clone(),
            armed: true,
        };
        let stdout = child.stdout().take().expect("stdout is piped");
        let stderr = child.stderr().take().expect("stderr is piped");
        let limit = request.capture_limit;
        let (stop, stopped) = watch::channel(false);
        let out_task = tokio::spawn(pump(
            stdout,
            StreamKind::Stdout,
            sink.clone(),
            limit,
            Some(stopped.clone()),
        ));
        let err_task = tokio::spawn(pump(stderr, StreamKind::Stderr, sink, limit, Some(stopped)));
        let mut drained = Box::pin(async move {
            let (out, err) = tokio::join!(out_task, err_task);
            (out.unwrap_or_default(), err.unwrap_or_default())
        });

        // The timeout covers the whole command: its output streams, then its
        // exit (a command may close its output and run on).
        let deadline = request
            .timeout
            .map(|limit| tokio::time::Instant::now() + limit);
        let drained_in_time = match deadline {
            None => Ok(drained.as_mut().await),
            Some(deadline) => tokio::time::timeout_at(deadline, drained.as_mut()).await,
        };
        let (stdout, stderr, end) = match drained_in_time {
            Ok((stdout, stderr)) => {
                let finish = inner.finish(&master, child);
                let finish = match deadline {
                    None => Some(finish.await),
                    Some(deadline) => tokio::time::timeout_at(deadline, finish).await.ok(),
                };
                match finish {
                    Some(finish) => (stdout, stderr, End::Finished(finish)),
                    // The output is complete; only the exit status is lost.
                    None => {
                        let killed = inner.kill_timed_out(&master, &pgid_file, &request).await;
                        (stdout, stderr, End::TimedOut(killed))
                    }
                }
            }
            Err(_) => {
                let killed = inner.kill_timed_out(&master, &pgid_file, &request).await;
                let drained = match tokio::time::timeout(KILL_GRACE, drained.as_mut()).await {
                    Ok(output) => output,
                    Err(_) => {
                        let _ = stop.send(true);
                        drained.await
                    }
                };
                let end = match killed {
                    Finish::Lost(source) => Finish::Lost(source),
                    Finish::Exited(_) => {
                        tokio::time::timeout(KILL_GRACE, inner.finish(&master, child))
                            .await
                            .unwrap_or(Finish::Exited(None))
                    }
                };
                (drained.0, drained.1, End::TimedOut(end))
            }
        };
        guard.armed = false;
        let (timed_out, finish) = match end {
            End::Finished(finish) => (false, finish),
            End::TimedOut(finish) => (true, finish),
        };
        match finish {
            Finish::Exited(code) => Ok(ExecOutput {
                code: if timed_out { None } else { code },
                timed_out,
                stdout,
                stderr,
                duration: started.elapsed(),
            }),
            Finish::Lost(source) => {
                inner.discard(&master).await;
                Err(inner.disconnected(&request.command, source))
            }
        }
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RemoteError> {
        let inner = &self.inner;
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| RemoteError::Transfer {
            host: inner.name.clone(),
            direction: "to",
            remote: remote.to_owned(),
            local: local.to_owned(),
            source,
        };
        let label = format!("upload {}", shell_quote(remote));
        let script = upload_command(remote);
        let _permit = inner.channels.acquire().await.expect("never closed");
        // Opened per attempt: the master reads the file itself, straight from
        // this descriptor, so nothing large passes through this process.
        let (master, mut child) = inner
            .spawn(&label, |master| {
                let file = std::fs::File::open(local).map_err(|e| failed(e.into()))?;
                let mut command = Session::to_raw_command(master.clone(), &script);
                command
                    .stdin(file)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                Ok(command)
            })
            .await?;
        let stderr = child.stderr().take().expect("stderr is piped");
        let stderr = pump(stderr, StreamKind::Stderr, None, HELPER_STDERR_LIMIT, None).await;
        match inner.finish(&master, child).await {
            Finish::Exited(Some(0)) => Ok(()),
            Finish::Exited(code) => Err(failed(Box::new(CommandFailed {
                command: label,
                code,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            }))),
            Finish::Lost(source) => {
                inner.discard(&master).await;
                Err(inner.disconnected(&label, source))
            }
        }
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), RemoteError> {
        let inner = &self.inner;
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| RemoteError::Transfer {
            host: inner.name.clone(),
            direction: "from",
            remote: remote.to_owned(),
            local: local.to_owned(),
            source,
        };
        let label = format!("download {}", shell_quote(remote));
        // Written beside the destination and renamed at the end, so a failed
        // copy never leaves a truncated file under the real name.
        let parent = match local.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| failed(e.into()))?;
        let partial = tempfile::Builder::new()
            .prefix(".btrfsqa-download-")
            .tempfile_in(&parent)
            .map_err(|e| failed(e.into()))?;
        let mut file = tokio::fs::File::from_std(partial.reopen().map_err(|e| failed(e.into()))?);

        let script = download_command(remote);
        let _permit = inner.channels.acquire().await.expect("never closed");
        let (master, mut child) = inner
            .spawn(&label, |master| {
                let mut command = Session::to_raw_command(master.clone(), &script);
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                Ok(command)
            })
            .await?;
        let mut stdout = child.stdout().take().expect("stdout is piped");
        let stderr = child.stderr().take().expect("stderr is piped");
        let (stop, stopped) = watch::channel(false);
        // Copied in chunks through this process (not handed to the master as
        // a descriptor) so that the end of the stream is known for sure
        // before the file is renamed.
        let copy = async {
            let copied = async {
                let mut reader = tokio::io::BufReader::with_capacity(256 << 10, &mut stdout);
                tokio::io::copy_buf(&mut reader, &mut file).await?;
                file.flush().await?;
                file.sync_all().await
            }
            .await;
            if copied.is_err() {
                // The remote side may block on a full pipe now: give up on it.
                let _ = stop.send(true);
            }
            copied
        };
        let (copied, stderr) = tokio::join!(
            copy,
            pump(
                stderr,
                StreamKind::Stderr,
                None,
                HELPER_STDERR_LIMIT,
                Some(stopped)
            )
        );
        drop(stdout);
        copied.map_err(|e| failed(e.into()))?;
        let finish = inner.finish(&master, child).await;
        match finish {
            Finish::Lost(source) => {
                inner.discard(&master).await;
                Err(inner.disconnected(&label, source))
            }
            Finish::Exited(Some(0)) => {
                let permissions = std::fs::Permissions::from_mode(0o644);
                std::fs::set_permissions(partial.path(), permissions)
                    .map_err(|e| failed(e.into()))?;
                partial.persist(local).map_err(|e| failed(e.error.into()))?;
                Ok(())
            }
            Finish::Exited(code) => Err(failed(Box::new(CommandFailed {
                command: label,
                code,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            }))),
        }
    }

    async fn reboot_and_wait(&self, timeout: Duration) -> Result<(), RemoteError> {
        let inner = &self.inner;
        let started = Instant::now();
        let old = self.boot_id(Some(PROBE_TIMEOUT)).await?;
        tracing::debug!(host = %inner.name, "rebooting");
        let trigger =
            ExecRequest::new(detached_command(&self.reboot_command)).timeout(PROBE_TIMEOUT);
        match self.exec(trigger, None).await {
            // The reboot may cut the connection before the status comes back.
            Ok(_) | Err(RemoteError::Disconnected { .. }) => {}
            Err(error) => return Err(error),
        }
        let mut delay = BACKOFF_START;
        loop {
            // A fresh connection for every probe: the old one dies with the
            // old system, and a master talking to a machine that vanished
            // would only notice after its keepalives run out.
            inner.discard_current().await;
            match self.boot_id(Some(PROBE_TIMEOUT)).await {
                Ok(id) if id != old => {
                    tracing::debug!(host = %inner.name, "back after reboot");
                    return Ok(());
                }
                Ok(_) => tracing::debug!(host = %inner.name, "not gone down yet"),
                Err(error) => tracing::debug!(host = %inner.name, %error, "not back yet"),
            }
            if started.elapsed() + delay >= timeout {
                inner.discard_current().await;
                return Err(RemoteError::RebootTimeout {
                    host: inner.name.clone(),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }
}

/// A host name or address that ssh takes as a destination and nothing else
/// (no option, no `user@`).
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("is empty");
    }
    if host.starts_with('-') {
        return Err("starts with `-`");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:[]%".contains(&b))
    {
        return Err("is not a host name or address");
    }
    Ok(())
}

fn is_env_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether retrying a failed connection is pointless: the target is invalid,
/// no host key is pinned, or the host key does not match the pinned one (a
/// retry would get the same key).
fn is_permanent(error: &RemoteError) -> bool {
    let invalid = match error {
        RemoteError::Connect { source, .. } => {
            source.is::<InvalidRequest>() || source.is::<NoPinnedHostKey>()
        }
        _ => false,
    };
    invalid || host_key_refused(error)
}

/// `host:port`, as messages show a target.
fn address(target: &SshTarget) -> String {
    if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    }
}

/// Whether a known_hosts file exists and holds at least one entry.
fn holds_a_key(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.lines()
            .map(str::trim)
            .any(|line| !line.is_empty() && !line.starts_with('#'))
    })
}

/// Whether ssh refused the connection for its host key.
fn names_a_changed_host_key(error: &openssh::Error) -> bool {
    let text = error.to_string();
    let io = match error {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        _ => String::new(),
    };
    [text, io].iter().any(|text| {
        text.contains("Host key verification failed")
            || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
    })
}

/// Whether a connection failed because the host key did not match.
fn host_key_refused(error: &RemoteError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        let text = error.to_string();
        if text.contains("Host key verification failed")
            || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// A private directory for one host's ssh files. Kept short: the control
/// socket path must fit in a `sockaddr_un` (108 bytes) with ssh's suffixes.
fn private_dir() -> std::io::Result<tempfile::TempDir> {
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() <= 40 {
        base
    } else {
        PathBuf::from("/tmp")
    };
    tempfile::Builder::new()
        .prefix("btrfsqa-ssh-")
        .tempdir_in(base)
}

#[cfg(test)]
mod tests;
