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
mod build_cache;
mod context;
mod error;
#[cfg(test)]
mod fuzz_tests;
pub mod import;
pub mod kernel_log;
mod plugin;
mod profile_check;
pub mod raid56;
pub mod script;
mod script_suites;
mod setup;
mod source;
mod stop;
pub mod xfstests;

pub use btrfs_progs::{BtrfsProgsConfig, BtrfsProgsTests};
pub use context::{EventSink, MachineDevices, SuiteContext};
pub use error::SuiteError;
pub use plugin::{GitSource, SuitePlugin, SuiteSetup};
pub use profile_check::{ProfileCheck, ProfileCheckConfig};
pub use raid56::{Raid56Scrub, Raid56ScrubConfig};
pub use script::{ScriptSuite, ScriptSuiteConfig};
pub use script_suites::ScriptSuites;
pub use setup::Distro;
pub use source::{Commit, commit_range, git_ref_problem, git_url_and_auth, git_url_problem};
pub use xfstests::{Xfstests, XfstestsConfig};

use btrfsqa_model::SuiteReport;
pub use btrfsqa_remote::RemoteHost;

/// A test a suite will run, as the controller lists it before any machine
/// exists: the unit a run hands out to its machines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListedTest {
    /// The profile (fstests section) it runs under, for suites with profiles.
    pub profile: Option<String>,
    /// Its name within the suite.
    pub name: String,
    /// It changes state the whole kernel shares (it reloads a module, sets
    /// a `/proc/sys` knob): on machines that share one kernel (the local
    /// provider's) it must run while nothing else runs.
    pub exclusive: bool,
}

impl ListedTest {
    /// A test without a profile that shares nothing.
    pub fn new(name: impl Into<String>) -> Self {
        ListedTest {
            profile: None,
            name: name.into(),
            exclusive: false,
        }
    }
}

/// What [`TestSuite::list_tests`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestList {
    /// The tests, in the order one machine would run them.
    pub tests: Vec<ListedTest>,
    /// What a user should know about the list (a named test the source
    /// lacks), one sentence each.
    pub warnings: Vec<String>,
    /// What one invocation of the suite's harness costs besides its tests,
    /// in milliseconds (fstests: a fresh filesystem on the test device,
    /// `./check` starting, the results collected): what a batch of these
    /// tests costs once, on top of their durations. The scheduler sizes
    /// batches by it.
    pub batch_setup_ms: u64,
}

/// [`TestList::batch_setup_ms`] of a suite that says nothing: a command
/// over SSH and a little bookkeeping.
pub const DEFAULT_BATCH_SETUP_MS: u64 = 500;

impl Default for TestList {
    fn default() -> Self {
        TestList {
            tests: Vec::new(),
            warnings: Vec::new(),
            batch_setup_ms: DEFAULT_BATCH_SETUP_MS,
        }
    }
}

impl TestList {
    /// A list of `tests` without profiles or warnings.
    pub fn of(tests: impl IntoIterator<Item = String>) -> Self {
        TestList {
            tests: tests.into_iter().map(ListedTest::new).collect(),
            ..TestList::default()
        }
    }
}

/// A test suite.
///
/// Implementers: `id` is the suite's kebab-case id (it names the suite's
/// directory in the results store and its section on the dashboard).
/// `list_tests` says, on the controller, which tests `run` would run, so a
/// run can hand them out to several machines (default: not known, and the
/// suite runs whole on one machine). `prepare` installs or builds what the
/// suite needs on the machine (default: nothing); it is called once per
/// machine before the first batch. `run` runs the tests
/// [`SuiteContext::selected`] allows (a batch: [`SuiteContext::only`] and
/// [`SuiteContext::profile`]), calls [`SuiteContext::test_started`] and
/// [`SuiteContext::test_finished`] around each, keeps per-test files under
/// [`SuiteContext::suite_dir`], and returns every outcome. A test that fails
/// is an outcome, not an `Err`; `Err` means the suite could not run at all
/// (and then the runner records it with the outcomes reported so far).
/// `run` must leave no mount or device state behind, also on error, and must
/// stop promptly when [`SuiteContext::cancel`] fires. A suite stops after a
/// test that hung ([`SuiteError::Hung`]): the runner then captures evidence,
/// resets the machine and hands the batch's other tests out again.
#[mockall::automock]
#[async_trait::async_trait]
pub trait TestSuite: Send + Sync {
    /// The suite's id.
    fn id(&self) -> &str;

    /// The tests `run` would run, when the controller can know them without
    /// a machine (from the suite's configuration and its pinned source).
    /// `Ok(None)`: not known; the suite runs whole on one machine.
    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        Ok(None)
    }

    /// Gets the machine ready for the suite.
    async fn prepare(&self, ctx: &SuiteContext) -> Result<(), SuiteError> {
        let _ = ctx;
        Ok(())
    }

    /// Runs the selected tests and returns their outcomes.
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError>;
}
