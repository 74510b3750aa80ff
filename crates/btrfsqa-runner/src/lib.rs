//! The btrfsqa pipeline: what an embedder calls.
//!
//! Load a configuration ([`ConfigSource`]), resolve it with command-line
//! overrides into [`Settings`], build a [`Runner`] and run it. The runner
//! plans the run (every test the suites list, [`plan::RunPlan`]), provisions
//! `run.shards` machines, hands the tests out to them in batches, writes
//! every result to the results store, publishes, and tears every machine
//! down on every path: success, failure, a panic, the run's deadline and
//! cancellation (the CLI cancels on SIGINT, SIGTERM and SIGHUP). It never
//! prints: progress arrives as [`btrfsqa_model::Event`]s through the sink
//! you pass.
//!
//! Besides runs: [`import::import_results`] makes a run of results made
//! elsewhere, [`plan::forecast`] predicts a run, and
//! [`machine::provision_machine`] and [`machine::teardown_run`] handle a
//! machine by hand. Every entry point's error converts into [`Error`],
//! whose [`Error::kind`] says what kind of failure it is.
//!
//! ```no_run
//! use std::sync::Arc;
//! use btrfsqa_runner::{ConfigSource, RunOverrides, Runner, Settings};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn demo() -> Result<(), btrfsqa_runner::RunError> {
//! let source = ConfigSource::load(None)?; // the embedded default
//! let settings = Settings::resolve(&source, RunOverrides::default())?;
//! let runner = Runner::from_settings(settings).await?;
//! let outcome = runner
//!     .run(Arc::new(|event| eprintln!("{event:?}")), CancellationToken::new())
//!     .await?;
//! println!("{} tests, report in {}", outcome.report.summary.total(), outcome.run_dir.display());
//! # Ok(()) }
//! ```

pub mod bisect;
pub mod config;
mod connect;
mod error;
mod failure;
pub mod history;
pub mod import;
mod journal;
pub mod kernel;
mod lock;
pub mod machine;
pub mod matrix;
pub mod notify;
pub mod plan;
pub mod plugins;
mod recording;
pub mod reference;
pub mod registry;
mod run;
pub mod schedule;
mod settings;
pub mod stored;
pub mod watch;

pub use config::{Config, ConfigSource, DEFAULT_CONFIG};
pub use connect::{Connector, DefaultConnector, MockConnector};
pub use error::{ConfigError, ConfigIssue, ErrorKind, NotifyError, RunError, error_chain};
pub use failure::Error;
pub use journal::Journal;
pub use recording::SECRET_ENV_VARS;
pub use run::{RunOutcome, RunVerdict, Runner, read_machine_records, write_machine_record};
pub use settings::{RunOverrides, Settings};
pub use tokio_util::sync::CancellationToken;

#[cfg(test)]
mod layers;
