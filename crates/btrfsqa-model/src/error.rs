use std::path::PathBuf;

/// What can go wrong with the model's own values and the results store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A kernel range (`>=6.1,<6.9`) with a part that is no comparison of
    /// kernel versions.
    #[error("`{part}` is not a kernel version comparison (expected e.g. `>=6.1,<6.9`)")]
    NotAKernelRange {
        /// The part.
        part: String,
    },
    /// A run id that is not of the accepted form.
    #[error("invalid run id `{value}`: {reason}")]
    InvalidRunId {
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Reading or writing a file of the results store failed.
    #[error("results store: cannot {action} `{}`", path.display())]
    Io {
        /// What was being done (`write`, `read`, `create directory`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `report.json` that does not parse.
    #[error("results store: `{}` is not a valid report", path.display())]
    BadReport {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A report written by a newer btrfsqa with an incompatible schema.
    #[error("results store: `{}` has schema version {found}, this btrfsqa reads up to {supported}", path.display())]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// The schema version in the file.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
}

/// An error with the full chain of its causes, `a: b: c`; a cause whose
/// text the message already holds is not repeated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_each_cause_once() {
        let inner = std::io::Error::other("disk full");
        let err = ModelError::Io {
            action: "write",
            path: PathBuf::from("/r/report.json"),
            source: inner,
        };
        assert_eq!(
            error_chain(&err),
            "results store: cannot write `/r/report.json`: disk full"
        );
        // A message that already quotes its cause does not repeat it.
        #[derive(Debug, thiserror::Error)]
        #[error("outer: disk full")]
        struct Quoting(#[source] std::io::Error);
        let err = Quoting(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&err), "outer: disk full");
    }
}
