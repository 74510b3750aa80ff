//! The error type of every publisher and of the dashboard.

use std::path::PathBuf;

use btrfsqa_model::ModelError;

/// A boxed cause from a library whose error types are not part of this
/// crate's interface (gix, minijinja).
pub type BoxedCause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Publishing failed. The results are still in the results store: the run can
/// be published again once the cause is fixed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The results store could not be read (the run's report, or the list of runs).
    #[error("cannot read the results store")]
    Store {
        /// The cause.
        #[source]
        source: ModelError,
    },
    /// Reading or writing a file of the site (or of the publisher's cache) failed.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// What was being done (`write`, `create directory`, `copy`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A dashboard template failed to render (a bug in btrfsqa, not in the data).
    #[error("cannot render template `{template}`")]
    Template {
        /// The template's name.
        template: &'static str,
        /// The cause.
        #[source]
        source: BoxedCause,
    },
    /// A setting is not usable.
    #[error("invalid setting `{key}`: {message}")]
    Settings {
        /// The setting (`branch`, `repo`, ...).
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A git operation done with gix failed.
    #[error("git: cannot {operation} (repository `{repo}`)")]
    Git {
        /// What was being done (`fetch`, `write tree`, `commit`, ...).
        operation: &'static str,
        /// The repository, with any credentials removed.
        repo: String,
        /// The cause.
        #[source]
        source: BoxedCause,
    },
    /// `git push` failed for a reason other than a concurrent publish.
    #[error("git push to `{repo}` failed ({status}): {stderr}")]
    Push {
        /// The repository, with any credentials removed.
        repo: String,
        /// The exit status of `git push`, as text.
        status: String,
        /// What `git push` printed on standard error, with any credentials removed.
        stderr: String,
    },
    /// Every push was rejected because others kept publishing meanwhile.
    #[error("git push to `{repo}` was rejected {attempts} times: others kept publishing meanwhile")]
    PushRetriesExhausted {
        /// The repository, with any credentials removed.
        repo: String,
        /// How many pushes were tried.
        attempts: u32,
    },
}

impl PublishError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| PublishError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn git<'a, E>(operation: &'static str, repo: &'a str) -> impl FnOnce(E) -> Self + 'a
    where
        E: Into<BoxedCause>,
    {
        move |source| PublishError::Git {
            operation,
            repo: repo.to_owned(),
            source: source.into(),
        }
    }
}

impl From<ModelError> for PublishError {
    fn from(source: ModelError) -> Self {
        PublishError::Store { source }
    }
}
