//! The master connection of an [`OpenSshHost`](super::OpenSshHost): launched on
//! first use and again after it breaks, the channels spawned on it, how a
//! command on it ended, and the kill of a command's process group.

use std::num::NonZeroUsize;
use std::sync::Arc;

use openssh::{ControlPersist, KnownHosts, OwningCommand, Session, SessionBuilder, Stdio};
use tokio::sync::{Mutex, Semaphore};

use crate::error::{HostKeyChanged, InvalidRequest, NoPinnedHostKey};
use crate::{ExecRequest, RemoteError};

use super::commands::{SSH_CONFIG, kill_group_command};
use super::{
    CONNECT_TIMEOUT, Inner, KEEPALIVE, KILL_COMMAND_TIMEOUT, MASTER_IDLE_SECS, MAX_CHANNELS,
    Master, SshTarget, address, check_host, holds_a_key, names_a_changed_host_key, private_dir,
};

impl Inner {
    pub(super) fn new(name: String, target: SshTarget) -> Result<Self, RemoteError> {
        let refuse = |source: Box<dyn std::error::Error + Send + Sync>| RemoteError::Connect {
            host: name.clone(),
            source,
        };
        if let Err(why) = check_host(&target.host) {
            return Err(refuse(Box::new(InvalidRequest {
                what: "host",
                value: target.host.clone(),
                why,
            })));
        }
        let known_hosts = match &target.known_hosts_file {
            Some(file) if holds_a_key(file) => file.clone(),
            file => {
                return Err(refuse(Box::new(NoPinnedHostKey {
                    address: address(&target),
                    host: target.host.clone(),
                    port: target.port,
                    file: file.clone(),
                })));
            }
        };
        let private = private_dir().map_err(|e| refuse(e.into()))?;
        let config_file = private.path().join("ssh_config");
        std::fs::write(&config_file, SSH_CONFIG).map_err(|e| refuse(e.into()))?;
        Ok(Inner {
            name,
            target,
            master: Mutex::new(None),
            channels: Semaphore::new(MAX_CHANNELS),
            config_file,
            known_hosts,
            private,
        })
    }

    /// Starts a new master connection. It runs in its own task: if the caller
    /// gives up half-way, the `ssh` it started is still waited for and shut
    /// down, never left running detached.
    pub(super) async fn launch(self: Arc<Self>) -> Result<Master, RemoteError> {
        let name = self.name.clone();
        let (address, known_hosts) = (address(&self.target), self.known_hosts.clone());
        let task = tokio::spawn(async move {
            let mut builder = SessionBuilder::default();
            if !self.target.user.is_empty() {
                builder.user(self.target.user.clone());
            }
            builder
                .port(self.target.port)
                .config_file(&self.config_file)
                .user_known_hosts_file(&self.known_hosts)
                .known_hosts_check(KnownHosts::Strict)
                .control_directory(self.private.path())
                .control_persist(ControlPersist::IdleFor(
                    NonZeroUsize::new(MASTER_IDLE_SECS).expect("non-zero"),
                ))
                .connect_timeout(CONNECT_TIMEOUT)
                .server_alive_interval(KEEPALIVE);
            if let Some(key) = &self.target.identity_file {
                builder.keyfile(key);
            }
            tracing::debug!(host = %self.name, "opening ssh master connection");
            builder.connect_mux(&self.target.host).await
        });
        match task.await {
            Ok(Ok(session)) => Ok(Arc::new(session)),
            Ok(Err(source)) if names_a_changed_host_key(&source) => Err(RemoteError::Connect {
                host: name,
                source: Box::new(HostKeyChanged {
                    address,
                    file: known_hosts,
                    source,
                }),
            }),
            Ok(Err(source)) => Err(RemoteError::Connect {
                host: name,
                source: Box::new(source),
            }),
            Err(join) => Err(RemoteError::Connect {
                host: name,
                source: Box::new(join),
            }),
        }
    }

    /// The current master, connecting first if there is none.
    pub(super) async fn master(self: &Arc<Self>) -> Result<Master, RemoteError> {
        let mut current = self.master.lock().await;
        if let Some(master) = &*current {
            return Ok(master.clone());
        }
        let master = self.clone().launch().await?;
        *current = Some(master.clone());
        Ok(master)
    }

    /// Forgets `master` (if it is still the current one) so the next call
    /// reconnects. The session shuts down once the last user lets go.
    pub(super) async fn discard(&self, master: &Master) {
        let mut current = self.master.lock().await;
        if current.as_ref().is_some_and(|m| Arc::ptr_eq(m, master)) {
            tracing::debug!(host = %self.name, "dropping ssh master connection");
            *current = None;
        }
    }

    pub(super) async fn discard_current(&self) {
        self.master.lock().await.take();
    }

    /// Starts a remote command built by `build` on the current master. When
    /// that fails because the master is gone, reconnects once and tries again:
    /// the command never started, so running it now is safe.
    pub(super) async fn spawn(
        self: &Arc<Self>,
        label: &str,
        build: impl Fn(&Master) -> Result<OwningCommand<Master>, RemoteError>,
    ) -> Result<(Master, openssh::Child<Master>), RemoteError> {
        let mut retried = false;
        loop {
            let master = self.master().await?;
            let error = match build(&master)?.spawn().await {
                Ok(child) => return Ok((master, child)),
                Err(error) => error,
            };
            if retried || master.check().await.is_ok() {
                return Err(RemoteError::Spawn {
                    host: self.name.clone(),
                    command: label.to_owned(),
                    source: Box::new(error),
                });
            }
            tracing::debug!(host = %self.name, "ssh master connection lost, reconnecting");
            self.discard(&master).await;
            retried = true;
        }
    }

    /// Waits for a remote command's end, once its output streams are drained
    /// (the `openssh` child stops the streams when `wait` returns).
    pub(super) async fn finish(&self, master: &Master, child: openssh::Child<Master>) -> Finish {
        match child.wait().await {
            Ok(status) => Finish::Exited(status.code()),
            // The crate turns status 127 into an error; it is a status here.
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Finish::Exited(Some(127))
            }
            // No exit status: either the wrapper was killed or the connection
            // broke, which the multiplexing protocol does not tell apart. A
            // live master means the former.
            Err(openssh::Error::RemoteProcessTerminated) => match master.check().await {
                Ok(()) => Finish::Exited(None),
                Err(_) => Finish::Lost(Box::new(openssh::Error::RemoteProcessTerminated)),
            },
            Err(error) => Finish::Lost(Box::new(error)),
        }
    }

    /// Kills a timed-out command's process group. `Lost` when that failed
    /// because the connection is gone.
    pub(super) async fn kill_timed_out(
        &self,
        master: &Master,
        pgid_file: &str,
        request: &ExecRequest,
    ) -> Finish {
        tracing::debug!(host = %self.name, command = %request.command, "timed out, killing");
        match kill_group(master, pgid_file).await {
            Ok(()) => Finish::Exited(None),
            Err(error) => match master.check().await {
                Ok(()) => Finish::Exited(None),
                Err(_) => Finish::Lost(Box::new(error)),
            },
        }
    }

    pub(super) fn disconnected(&self, command: &str, source: Box<openssh::Error>) -> RemoteError {
        RemoteError::Disconnected {
            host: self.name.clone(),
            command: command.to_owned(),
            source,
        }
    }
}

/// How a remote command ended, as far as the connection could tell.
pub(super) enum Finish {
    /// With this status (`None`: no normal exit).
    Exited(Option<i32>),
    /// The connection broke.
    Lost(Box<openssh::Error>),
}

/// Whether `exec` saw the command end by itself or killed it.
pub(super) enum End {
    Finished(Finish),
    TimedOut(Finish),
}

/// Kills the remote process group of a command whose `exec` future was
/// dropped before it finished (the caller gave up), so it does not run on.
pub(super) struct KillOnDrop {
    pub(super) inner: Arc<Inner>,
    pub(super) master: Master,
    pub(super) pgid_file: String,
    pub(super) armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            let master = self.master.clone();
            let pgid_file = std::mem::take(&mut self.pgid_file);
            runtime.spawn(async move {
                if kill_group(&master, &pgid_file).await.is_err() {
                    tracing::debug!(host = %inner.name, "could not kill an abandoned command");
                }
            });
        }
    }
}

/// Kills the process group recorded in `pgid_file`, over its own channel.
pub(super) async fn kill_group(master: &Master, pgid_file: &str) -> Result<(), openssh::Error> {
    let mut command = Session::to_raw_command(master.clone(), kill_group_command(pgid_file));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let run = async { command.spawn().await?.wait().await.map(drop) };
    match tokio::time::timeout(KILL_COMMAND_TIMEOUT, run).await {
        Ok(result) => result,
        Err(_) => Err(openssh::Error::Disconnected),
    }
}
