/// Provisioning failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The provider's configuration does not allow this request.
    #[error("{provider}: {message}")]
    Config {
        /// The provider.
        provider: String,
        /// What is wrong.
        message: String,
    },
    /// An operation failed; `leftovers` lists what may still exist (empty when
    /// everything made so far was removed).
    #[error("{provider}: cannot {operation}{}", leftover_note(leftovers))]
    Failed {
        /// The provider.
        provider: String,
        /// What was being done.
        operation: String,
        /// Resources that may have been left behind.
        leftovers: Vec<String>,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The provider does not do this at all (the caller picks another way).
    #[error("{provider}: cannot {operation} (not supported by this provider)")]
    Unsupported {
        /// The provider.
        provider: String,
        /// What was asked.
        operation: String,
    },
}

/// Teardown or reaping failed; what is named may still exist.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TeardownError {
    /// One or more resources could not be removed.
    #[error("{provider}: could not remove {}", leftovers.join(", "))]
    Leftovers {
        /// The provider.
        provider: String,
        /// What is left, with why, one entry per resource.
        leftovers: Vec<String>,
    },
    /// The provider cannot be asked at all (API down, permission).
    #[error("{provider}: cannot {operation}")]
    Failed {
        /// The provider.
        provider: String,
        /// What was being done.
        operation: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn leftover_note(leftovers: &[String]) -> String {
    if leftovers.is_empty() {
        String::new()
    } else {
        format!(" (may be left behind: {})", leftovers.join(", "))
    }
}

/// A system command (`losetup`, `umount`, `btrfs`) that could not be run or
/// that failed. Used as the `source` of the errors above.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` {}", describe_failure(*status, stderr))]
pub struct CommandError {
    /// The command line, for messages.
    pub command: String,
    /// Its exit code; `None` when it could not be started or was killed.
    pub status: Option<i32>,
    /// What it printed on stderr (trimmed), or why it could not start.
    pub stderr: String,
}

fn describe_failure(status: Option<i32>, stderr: &str) -> String {
    let head = match status {
        Some(code) => format!("exited with status {code}"),
        None => "did not run to completion".to_owned(),
    };
    if stderr.is_empty() {
        head
    } else {
        format!("{head}: {stderr}")
    }
}
