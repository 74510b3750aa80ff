//! Errors of the qemu provider's image builder.

use std::path::PathBuf;

use crate::error::CommandError;

/// `btrfsqa image build` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Building an image needs root (debootstrap, chroot, device nodes).
    #[error("building a guest image needs root")]
    NotRoot,
    /// A tool the build needs is missing.
    #[error("`{tool}` is not installed ({hint})")]
    MissingTool {
        /// The tool.
        tool: String,
        /// How to get it.
        hint: String,
    },
    /// A file operation failed.
    #[error("cannot {operation} `{}`", path.display())]
    Io {
        /// What was being done.
        operation: String,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A build step failed; the log has the details.
    #[error("image build step `{step}` failed (log: `{}`)", log.display())]
    Step {
        /// The step.
        step: String,
        /// The build log.
        log: PathBuf,
        /// The command that failed.
        #[source]
        source: CommandError,
    },
    /// The finished root filesystem lacks something the provider needs.
    #[error("the image root `{}` has no {what}", root.display())]
    Incomplete {
        /// The root filesystem.
        root: PathBuf,
        /// What is missing.
        what: String,
    },
    /// Another build of the same image is under way.
    #[error("another build holds the lock `{}`", lock.display())]
    Locked {
        /// The lock file.
        lock: PathBuf,
    },
}
