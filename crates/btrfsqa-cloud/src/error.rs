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
