use std::path::PathBuf;

use btrfsqa_remote::RemoteError;

/// A suite could not run (test failures are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// The machine could not be used.
    #[error("suite `{suite}`: machine error")]
    Remote {
        /// The suite.
        suite: String,
        /// The cause.
        #[source]
        source: RemoteError,
    },
    /// Setting up failed (a build, an install, a missing tool).
    #[error("suite `{suite}`: {step} failed: {message}")]
    Setup {
        /// The suite.
        suite: String,
        /// What was being done.
        step: String,
        /// What went wrong (the tail of the command's output).
        message: String,
    },
    /// The suite's configuration or input is unusable.
    #[error("suite `{suite}`: {message}")]
    Config {
        /// The suite.
        suite: String,
        /// What is wrong.
        message: String,
    },
    /// Writing to the results store failed.
    #[error("cannot write `{}` to the results store", path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A test hung (it is `hung` in `partial`): the suite stopped so the
    /// machine can be looked at and reset before the tests not yet run.
    #[error("suite `{suite}`: `{test}` hung; stopped before the next test")]
    Hung {
        /// The suite.
        suite: String,
        /// The test that hung.
        test: String,
        /// What it had finished, the hung test included.
        partial: Box<btrfsqa_model::SuiteReport>,
    },
    /// The run was cancelled while the suite ran.
    #[error("suite `{suite}` was cancelled")]
    Cancelled {
        /// The suite.
        suite: String,
        /// What it had finished by then.
        partial: Box<btrfsqa_model::SuiteReport>,
    },
}

impl SuiteError {
    /// A [`SuiteError::Config`] listing every `(key, message)` a config's
    /// `validate` found, as `` `key`: message `` joined with `; `.
    pub fn config_issues(suite: &str, issues: &[(String, String)]) -> Self {
        SuiteError::Config {
            suite: suite.to_owned(),
            message: issues
                .iter()
                .map(|(key, message)| format!("`{key}`: {message}"))
                .collect::<Vec<_>>()
                .join("; "),
        }
    }
}
