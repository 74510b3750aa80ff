//! Publishing btrfsqa results.
//!
//! A [`Publisher`] takes a run that is already in the [`ResultsStore`](btrfsqa_model::ResultsStore) and
//! makes it visible somewhere. [`Dashboard`] renders the static site (an
//! index of runs, a page per run with every test's verdict and links to its
//! logs) from the store; [`GitPublisher`] commits that site to a git
//! repository with gix and pushes it (GitHub Pages serves it);
//! [`DirectoryPublisher`] renders it into a directory, to preview it.
//! [`export`] writes JUnit XML, KCIDB JSON and JSON for other tools.
//!
//! ```no_run
//! use btrfsqa_model::{ResultsStore, RunId};
//! use btrfsqa_publish::{Dashboard, GitPublisher, GitPublisherSettings, Publisher};
//!
//! # async fn demo() -> Result<(), btrfsqa_publish::PublishError> {
//! let store = ResultsStore::new("results");
//! let publisher = GitPublisher::new(GitPublisherSettings::new("/srv/site.git", "results/.site-cache"));
//! let published = publisher.publish(&store, &RunId::parse("20261124-101500-ab12").unwrap()).await?;
//! println!("published at {}", published.location);
//! # Ok(()) }
//! ```

mod credentials;
mod dashboard;
mod error;
pub mod export;
mod git;
mod lock;
mod publisher;

pub use credentials::TOKEN_ENV_VARS;
pub use dashboard::{Dashboard, DashboardSettings, DirectoryPublisher, RenderStats};
pub use error::PublishError;
pub use git::{GitPublisher, GitPublisherSettings};
pub use publisher::{MockPublisher, Published, Publisher};

#[cfg(test)]
mod layers;
