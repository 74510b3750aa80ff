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
    /// The operation is not possible on this kind of host.
    #[error("`{host}` cannot {operation}")]
    Unsupported {
        /// The machine.
        host: String,
        /// What was asked.
        operation: &'static str,
    },
}
