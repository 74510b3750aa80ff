use std::path::PathBuf;

/// A failure to reach or use a machine. Never a command's own non-zero exit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// Could not connect (or reconnect) to the machine.
    #[error("cannot connect to `{host}`")]
    Connect {
        /// The machine.
        host: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection broke while a command ran or a file moved.
    #[error("connection to `{host}` lost while running `{command}`")]
    Disconnected {
        /// The machine.
        host: String,
        /// What was under way.
        command: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Starting a command failed.
    #[error("cannot start `{command}` on `{host}`")]
    Spawn {
        /// The machine.
        host: String,
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Copying a file failed.
    #[error("cannot copy `{remote}` {direction} `{host}` (local `{}`)", local.display())]
    Transfer {
        /// The machine.
        host: String,
        /// `to` or `from`.
        direction: &'static str,
        /// The remote path.
        remote: String,
        /// The local path.
        local: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The machine did not come back after a reboot in time.
    #[error("`{host}` did not answer within {secs} s after reboot")]
    RebootTimeout {
        /// The machine.
        host: String,
        /// The time waited.
        secs: u64,
    },
    /// A terminal recording could not be created.
    #[error("cannot write the recording `{}`", path.display())]
    Record {
        /// The recording's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The operation is not possible on this kind of host.
    #[error("`{host}` cannot {operation}")]
    Unsupported {
        /// The machine.
        host: String,
        /// What was asked.
        operation: &'static str,
    },
}

/// A helper command on the machine ended badly; the cause inside a
/// [`RemoteError`] (`Transfer`, `Spawn`).
#[derive(Debug, thiserror::Error)]
#[error("`{command}` exited with {}{}", describe_code(*code), describe_stderr(stderr))]
pub(crate) struct CommandFailed {
    /// What ran (never its environment).
    pub(crate) command: String,
    /// Its exit code, `None` when it did not exit normally.
    pub(crate) code: Option<i32>,
    /// The tail of its standard error.
    pub(crate) stderr: String,
}

fn describe_code(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("status `{code}`"),
        None => "no status".to_owned(),
    }
}

fn describe_stderr(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": `{stderr}`")
    }
}

/// A machine did not answer within the time given; the cause inside
/// [`RemoteError::Connect`].
#[derive(Debug, thiserror::Error)]
#[error("no answer within {secs} s")]
pub(crate) struct NotReachable {
    /// The time waited.
    pub(crate) secs: u64,
    /// The last failure seen.
    #[source]
    pub(crate) last: RemoteError,
}

/// A request that cannot be sent to a machine as it is.
#[derive(Debug, thiserror::Error)]
#[error("{what} `{value}` {why}")]
pub(crate) struct InvalidRequest {
    /// What it is (`host`, `environment variable`).
    pub(crate) what: &'static str,
    /// The offending value.
    pub(crate) value: String,
    /// Why it is refused.
    pub(crate) why: &'static str,
}

/// A machine whose host key is not pinned: ssh is never run against it;
/// the cause inside [`RemoteError::Connect`].
#[derive(Debug, thiserror::Error)]
#[error(
    "no host key is pinned for `{address}`{}: put its public host key in a known_hosts \
     file and name it (`known-hosts-file` for a static host; e.g. the output of \
     `ssh-keyscan -p {port} {host}` once its fingerprint is checked), or let the provider \
     record it",
    describe_file(file.as_deref())
)]
pub(crate) struct NoPinnedHostKey {
    /// `host:port`.
    pub(crate) address: String,
    /// The host, for the example.
    pub(crate) host: String,
    /// The port, for the example.
    pub(crate) port: u16,
    /// The known_hosts file given, if any (missing, or holding no key).
    pub(crate) file: Option<PathBuf>,
}

fn describe_file(file: Option<&std::path::Path>) -> String {
    match file {
        Some(file) => format!(" (`{}` holds no key)", file.display()),
        None => String::new(),
    }
}

/// The machine showed a host key other than the pinned one; the cause
/// inside [`RemoteError::Connect`], with ssh's own message as its source.
#[derive(Debug, thiserror::Error)]
#[error(
    "the host key of `{address}` is not the one pinned in `{}` (a reinstalled machine, or \
     someone in between): check the machine's new key, then replace its line in that file",
    file.display()
)]
pub(crate) struct HostKeyChanged {
    /// `host:port`.
    pub(crate) address: String,
    /// The known_hosts file.
    pub(crate) file: PathBuf,
    /// What ssh said.
    #[source]
    pub(crate) source: openssh::Error,
}
