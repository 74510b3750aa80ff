//! What every publisher is ([`Publisher`]) and gives back ([`Published`]);
//! at the bottom of the crate so that the publishers can name them.

use btrfsqa_model::{ResultsStore, RunId};

use crate::error::PublishError;

/// Where a publish landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// A path or URL where the result can be seen or fetched.
    pub location: String,
    /// The commit made, for git-based publishers.
    pub commit: Option<String>,
}

/// Makes a stored run visible.
///
/// Implementers: read everything from `store` (the run and, for an index,
/// the runs before it); never modify the store; publishing the same run twice
/// must be harmless. An `Err` never loses results: they are already in the
/// store, and the run can be published again later.
#[mockall::automock]
#[async_trait::async_trait]
pub trait Publisher: Send + Sync {
    /// The publisher's id (`git`, `directory`).
    fn id(&self) -> &str;

    /// Publishes run `run` from `store`.
    async fn publish(&self, store: &ResultsStore, run: &RunId) -> Result<Published, PublishError>;
}
