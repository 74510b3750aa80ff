//! [`Error`]: the one error every entry point's error converts into, so a
//! caller handles all of them in one place and tells its user the same
//! [`ErrorKind`] for the same failure (the CLI's exit codes are these kinds).
//!
//! It sits above every module whose error it wraps: `error.rs`, which most
//! modules import, defines only the kinds.

use crate::bisect::BisectError;
use crate::error::{ConfigError, ErrorKind, RunError};
use crate::import::ImportError;
use crate::machine::MachineError;
use crate::plan::PlanError;
use crate::stored::StoredError;
use crate::watch::WatchError;

/// Any error of the runner's entry points. Its message and causes are those
/// of the error it wraps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A run could not start or keep its results.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Watching could not go on.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// A bisection could not be made.
    #[error(transparent)]
    Bisect(#[from] BisectError),
    /// Results could not be imported.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A plan could not be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A machine could not be provisioned or torn down.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// A finished run's results could not be published.
    #[error(transparent)]
    Publish(#[from] btrfsqa_publish::PublishError),
    /// A stored run could not be had (or published again).
    #[error(transparent)]
    Stored(#[from] StoredError),
    /// The qemu provider's guest image could not be built.
    #[error(transparent)]
    Image(#[from] btrfsqa_cloud::qemu::ImageError),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Usage,
            Error::Run(err) => err.kind(),
            Error::Watch(err) => watch_kind(err),
            Error::Bisect(err) => bisect_kind(err),
            Error::Import(err) => err.kind(),
            Error::Plan(err) => err.kind(),
            Error::Machine(err) => err.kind(),
            Error::Publish(_) => ErrorKind::PublishFailed,
            Error::Stored(err) => err.kind(),
            Error::Image(_) => ErrorKind::Infrastructure,
        }
    }
}

/// A watch that cannot start for its configuration, or because another
/// watcher watches the store, is the user's; polling, the state file and
/// the runs are the infrastructure's, but a store a manual run holds is
/// the user's to wait for.
fn watch_kind(err: &WatchError) -> ErrorKind {
    match err {
        WatchError::NothingToWatch | WatchError::Source { .. } | WatchError::Watched { .. } => {
            ErrorKind::Usage
        }
        WatchError::Run(RunError::StoreInUse { .. }) => ErrorKind::Usage,
        _ => ErrorKind::Infrastructure,
    }
}

/// A request the configuration cannot serve, or refs that list no commits,
/// are the user's; a stopped bisection is interrupted (the same command
/// resumes it); its journal and its runs are the infrastructure's.
fn bisect_kind(err: &BisectError) -> ErrorKind {
    match err {
        BisectError::Request(_) | BisectError::Commits { .. } => ErrorKind::Usage,
        BisectError::Stopped { .. } => ErrorKind::Interrupted,
        _ => ErrorKind::Infrastructure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_is_of_the_kind_its_command_always_exited_with() {
        let busy = || RunError::StoreInUse {
            store: "/store".into(),
            owner: "pid 1 on host".into(),
        };
        let store = || {
            RunError::Store(btrfsqa_model::ModelError::Io {
                action: "write",
                path: "/store".into(),
                source: std::io::Error::other("disk full"),
            })
        };
        let state = || WatchError::State {
            path: "/store/.watch".into(),
            source: std::io::Error::other("denied"),
        };
        let cases: Vec<(Error, ErrorKind)> = vec![
            (
                ConfigError::Invalid { issues: vec![] }.into(),
                ErrorKind::Usage,
            ),
            (busy().into(), ErrorKind::Usage),
            (store().into(), ErrorKind::Infrastructure),
            (WatchError::NothingToWatch.into(), ErrorKind::Usage),
            (state().into(), ErrorKind::Infrastructure),
            (WatchError::Run(busy()).into(), ErrorKind::Usage),
            (WatchError::Run(store()).into(), ErrorKind::Infrastructure),
            (
                BisectError::Request("no such suite".into()).into(),
                ErrorKind::Usage,
            ),
            (
                BisectError::Stopped { id: "b1".into() }.into(),
                ErrorKind::Interrupted,
            ),
            (BisectError::Run(busy()).into(), ErrorKind::Infrastructure),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err:?}");
        }
    }
}
