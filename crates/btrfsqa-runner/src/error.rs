//! The errors of configuration, runs and notifications, and the classes
//! every error of the runner falls into ([`ErrorKind`]).

use std::fmt;
use std::path::PathBuf;

/// What kind of failure an error is: what a caller tells its user, and what
/// the CLI's exit code says (README.md, "Exit codes").
// Not `non_exhaustive`: a new kind must make every caller's mapping (the
// CLI's exit codes) fail to compile until it is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request or the configuration is unusable, or something the user
    /// should wait for is busy: nothing was started.
    Usage,
    /// A machine, a provider, a source or the results store failed.
    Infrastructure,
    /// The results are kept in the store, but publishing them failed.
    PublishFailed,
    /// Stopped by a signal or a deadline; what was done is kept.
    Interrupted,
}

impl ErrorKind {
    /// Every kind, for callers that map each of them.
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Usage,
        ErrorKind::Infrastructure,
        ErrorKind::PublishFailed,
        ErrorKind::Interrupted,
    ];
}

/// One problem in a configuration file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file (or `<embedded default>`, or `command line`).
    pub file: String,
    /// The 1-based line, when the key is in the file.
    pub line: Option<usize>,
    /// The dotted key (`suites.scripts.smoke.timeout-secs`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Keys with wrong or inconsistent values.
    #[error("{}", issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem found.
        issues: Vec<ConfigIssue>,
    },
}

/// A run that could not start or could not keep its results.
///
/// Failures of machines and suites during a run are not errors of this kind:
/// they end up in the run's report (status `errored`, verdicts `error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The results store cannot be written: nothing would be kept.
    #[error("results store")]
    Store(#[from] btrfsqa_model::ModelError),
    /// The run is driven by another live process (`btrfsqa resume` of a
    /// run that still runs): nothing was started.
    #[error("run `{run}` is still being driven ({owner}); wait for it to end, or stop it first")]
    Busy {
        /// The run.
        run: btrfsqa_model::RunId,
        /// Who drives it (`pid N on HOST`).
        owner: String,
    },
    /// Another process drives the results store in a way that excludes
    /// this one (a watcher's run and a manual run): nothing was started.
    #[error("the results store `{}` is in use ({owner})", store.display())]
    StoreInUse {
        /// The store.
        store: std::path::PathBuf,
        /// Who uses it.
        owner: String,
    },
    /// A provider could not even be set up.
    #[error("provider `{provider}`: {message}")]
    Provider {
        /// The provider.
        provider: String,
        /// What is wrong.
        message: String,
    },
}

impl RunError {
    /// A run that never started because of its configuration, its provider's
    /// set-up or a busy run or store is the user's to fix or wait for; a
    /// store that cannot be written is the infrastructure's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunError::Config(_)
            | RunError::Provider { .. }
            | RunError::Busy { .. }
            | RunError::StoreInUse { .. } => ErrorKind::Usage,
            RunError::Store(_) => ErrorKind::Infrastructure,
        }
    }
}

/// A notification hook that could not deliver (see [`crate::notify`]).
///
/// Webhook URLs are shown without their path and query, which often hold
/// the hook's secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `notify.webhook` is not a URL this client can send to.
    #[error("webhook `{url}`: {reason}")]
    BadWebhook {
        /// The URL, path hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Connecting, sending or reading failed.
    #[error("webhook `{url}`: cannot deliver")]
    Webhook {
        /// The URL, path hidden.
        url: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with a status other than 2xx.
    #[error("webhook `{url}` answered {status}: {body}")]
    WebhookStatus {
        /// The URL, path hidden.
        url: String,
        /// The HTTP status (0: not an HTTP response).
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The server did not answer in time.
    #[error("webhook `{url}` did not answer within {secs} s")]
    WebhookTimeout {
        /// The URL, path hidden.
        url: String,
        /// The limit.
        secs: u64,
    },
    /// The command could not be started or fed.
    #[error("notify command `{command}` could not run")]
    Spawn {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command exited unsuccessfully.
    #[error("notify command `{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command.
        command: String,
        /// How it exited.
        status: String,
        /// The end of what it printed on stderr.
        stderr: String,
    },
    /// The command did not finish in time and was killed.
    #[error("notify command `{command}` did not finish within {secs} s and was killed")]
    CommandTimeout {
        /// The command.
        command: String,
        /// The limit.
        secs: u64,
    },
}

pub use btrfsqa_model::error_chain;
