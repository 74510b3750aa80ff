//! Running commands on test machines.
//!
//! [`RemoteHost`] is what every suite and stage talks to: run a shell command
//! with its output streamed as it arrives, move files both ways, and reboot.
//! Two implementations: [`OpenSshHost`] (one multiplexed OpenSSH master per
//! machine, through the `openssh` crate) and [`LocalHost`] (this machine,
//! through child processes, for the `local` provider). [`RecordingHost`]
//! wraps either to keep an asciicast recording of everything it runs
//! ([`CastRecorder`]), with secrets removed ([`Redactor`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use btrfsqa_remote::{ExecRequest, LocalHost, RemoteHost};
//!
//! # async fn demo() -> Result<(), btrfsqa_remote::RemoteError> {
//! let host = LocalHost::new("local-0");
//! let out = host
//!     .exec(ExecRequest::new("uname -r").timeout(Duration::from_secs(10)), None)
//!     .await?;
//! assert!(out.success());
//! # Ok(()) }
//! ```

mod error;
mod exec;
mod local;
mod record;
mod redact;
mod ssh;
#[cfg(feature = "test-support")]
pub mod testsupport;

pub use error::RemoteError;
pub use exec::{
    ExecOutput, ExecRequest, OutputChunk, OutputSink, StreamKind, push_capped, shell_quote,
};
pub use local::LocalHost;
pub use record::{CastRecorder, RecordingHost};
pub use redact::{REDACTED, RedactingStream, Redactor, is_secret_name};
pub use ssh::{OpenSshHost, SshTarget};

use std::path::Path;
use std::time::Duration;

/// A machine that runs commands.
///
/// Implementers: `exec` runs `request.command` with `sh -c` in its own process
/// group, streams every chunk of output to `sink` as it arrives (when given),
/// and returns the exit status with the captured output. On timeout it kills
/// the whole process group and returns `Ok` with `timed_out` set, so the
/// caller can still read what was printed. A transport failure (connection
/// lost, host unreachable) is an `Err`, never a non-zero status.
#[mockall::automock]
#[async_trait::async_trait]
pub trait RemoteHost: Send + Sync {
    /// The machine's name within the run (for messages and events).
    fn name(&self) -> &str;

    /// Runs one command; see the trait documentation.
    async fn exec(
        &self,
        request: ExecRequest,
        sink: Option<OutputSink>,
    ) -> Result<ExecOutput, RemoteError>;

    /// Copies the local file `local` to `remote` on the machine.
    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RemoteError>;

    /// Copies `remote` from the machine to the local file `local`.
    async fn download(&self, remote: &str, local: &Path) -> Result<(), RemoteError>;

    /// Reboots the machine and waits until it answers again, up to `timeout`.
    async fn reboot_and_wait(&self, timeout: Duration) -> Result<(), RemoteError>;
}
