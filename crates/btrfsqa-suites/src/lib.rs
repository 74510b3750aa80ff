//! btrfs test suites and the parsers of what they print.
//!
//! A [`TestSuite`] runs on a machine through a [`RemoteHost`] given in its
//! [`SuiteContext`], reports each test as it starts and ends through the
//! context's event sink, and returns a [`SuiteReport`] with one outcome per
//! test. Turning a suite's text into outcomes lives in pure parser modules
//! (no I/O) so it can be tested on captured real output.
//!
//! Suites here: [`Raid56Scrub`] (RAID5/6 repair by scrub, needs only
//! btrfs-progs) and [`ScriptSuite`] (a directory of executable scripts, one
//! test each).
//!
//! ```no_run
//! use std::sync::Arc;
//! use btrfsqa_remote::LocalHost;
//! use btrfsqa_suites::{MachineDevices, ScriptSuite, ScriptSuiteConfig, SuiteContext, TestSuite};
//!
//! # async fn demo() -> Result<(), btrfsqa_suites::SuiteError> {
//! let suite = ScriptSuite::new("smoke", ScriptSuiteConfig::new("suites/smoke"));
//! let ctx = SuiteContext::new(
//!     Arc::new(LocalHost::new("local-0")),
//!     MachineDevices::default(),
//!     "/tmp/results/run-1".into(),
//! );
//! let report = suite.run(&ctx).await?;
//! println!("{} tests", report.tests.len());
//! # Ok(()) }
//! ```

// `SuiteError` carries a `RemoteError` inline (it is part of the contract);
// it is returned at most once per suite run, so its size costs nothing.
#![expect(
    clippy::result_large_err,
    reason = "SuiteError embeds RemoteError by contract"
)]

pub mod btrfs_progs;
mod context;
mod error;
pub mod import;
pub mod kernel_log;
pub mod raid56;
pub mod script;
mod setup;
mod source;
pub mod xfstests;

pub use btrfs_progs::{BtrfsProgsConfig, BtrfsProgsTests};
pub use context::{EventSink, MachineDevices, SuiteContext};
pub use error::SuiteError;
pub use raid56::{Raid56Scrub, Raid56ScrubConfig};
pub use script::{ScriptSuite, ScriptSuiteConfig};
pub use xfstests::{Xfstests, XfstestsConfig};

use btrfsqa_model::SuiteReport;
pub use btrfsqa_remote::RemoteHost;

/// A test suite.
///
/// Implementers: `id` is the suite's kebab-case id (it names the suite's
/// directory in the results store and its section on the dashboard).
/// `prepare` installs or builds what the suite needs on the machine (default:
/// nothing). `run` runs the tests, calls [`SuiteContext::test_started`] and
/// [`SuiteContext::test_finished`] around each, keeps per-test files under
/// [`SuiteContext::suite_dir`], and returns every outcome. A test that fails
/// is an outcome, not an `Err`; `Err` means the suite could not run at all
/// (and then the runner records it with the outcomes reported so far).
/// `run` must leave no mount or device state behind, also on error, and must
/// stop promptly when [`SuiteContext::cancel`] fires. A suite whose tests run
/// one by one stops after a test that hung ([`SuiteError::Hung`]): the runner
/// then captures evidence, resets the machine and runs the suite again with
/// the finished tests in [`SuiteContext::skip`].
#[mockall::automock]
#[async_trait::async_trait]
pub trait TestSuite: Send + Sync {
    /// The suite's id.
    fn id(&self) -> &str;

    /// Gets the machine ready for the suite.
    async fn prepare(&self, ctx: &SuiteContext) -> Result<(), SuiteError> {
        let _ = ctx;
        Ok(())
    }

    /// Runs every test and returns their outcomes.
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError>;

    /// The tests `run` would run, in its order, when the controller knows
    /// them without asking the machine (default: not known). A sharded run
    /// hands out known tests one by one with [`SuiteContext::only`]; a suite
    /// whose tests are not known runs whole on one machine.
    fn tests(&self) -> Option<Vec<String>> {
        None
    }
}
