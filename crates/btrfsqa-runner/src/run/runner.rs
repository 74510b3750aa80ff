//! The [`Runner`] itself, what its workers share, and what they ask of it;
//! below the run's controller, workers and recovery, which all use it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use btrfsqa_cloud::CloudProvider;
use btrfsqa_model::EventSink;
use btrfsqa_model::compare::TestKey;
use btrfsqa_publish::Publisher;
use btrfsqa_remote::RemoteHost;
use btrfsqa_suites::TestSuite;

use crate::connect::Connector;
use crate::settings::Settings;

/// How often the provider is asked whether a machine is being taken away
/// (a spot interruption notice).
pub(crate) const NOTICE_POLL: Duration = Duration::from_secs(15);

/// Runs the pipeline. Build it with [`Runner::from_settings`] (the real
/// providers, suites and publisher) or [`Runner::with_parts`] (your own).
pub struct Runner {
    pub(super) settings: Settings,
    pub(super) provider: Arc<dyn CloudProvider>,
    pub(super) connector: Arc<dyn Connector>,
    pub(super) suites: Vec<Arc<dyn TestSuite>>,
    pub(super) publisher: Option<Arc<dyn Publisher>>,
    /// Replaces `run.timeout-minutes` (tests: a deadline shorter than a minute).
    pub(super) deadline: Option<Duration>,
    /// How often providers are asked for interruption notices.
    pub(super) notice_poll: Duration,
    /// Replaces the kernel stage's builder (tests).
    pub(crate) kernel_builder: Option<Arc<dyn RemoteHost>>,
    /// The caller holds the store's drivers' lock (a watcher): runs do not
    /// take it again.
    pub(crate) store_lock_held: bool,
    /// Only these tests run (see [`Runner::only`]).
    pub(super) only: Option<Vec<TestKey>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("provider", &self.provider.id())
            .field(
                "suites",
                &self
                    .suites
                    .iter()
                    .map(|s| s.id().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What every worker of a run shares.
pub(crate) struct WorkerEnv<'a> {
    pub runner: &'a Runner,
    pub run_dir: &'a Path,
    pub sink: &'a EventSink,
    /// The run's stop: a signal or the deadline.
    pub stop: &'a CancellationToken,
    pub derived_timeouts: HashMap<String, Duration>,
}

impl Runner {
    /// A runner with the given parts.
    pub fn with_parts(
        settings: Settings,
        provider: Arc<dyn CloudProvider>,
        connector: Arc<dyn Connector>,
        suites: Vec<Arc<dyn TestSuite>>,
        publisher: Option<Arc<dyn Publisher>>,
    ) -> Self {
        Runner {
            settings,
            provider,
            connector,
            suites,
            publisher,
            deadline: None,
            notice_poll: NOTICE_POLL,
            kernel_builder: None,
            store_lock_held: false,
            only: None,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs only `tests` of the configured suites (a key without a profile
    /// stands for the test under every profile): what a bisection step or a
    /// rerun needs.
    pub fn only(mut self, tests: Vec<TestKey>) -> Self {
        self.only = Some(tests);
        self
    }

    /// What the kernel stage needs from this runner.
    pub(crate) fn kernel_env<'a>(
        &'a self,
        run_dir: &'a Path,
        sink: &'a EventSink,
        stop: &'a CancellationToken,
    ) -> crate::kernel::StageEnv<'a> {
        crate::kernel::StageEnv {
            settings: &self.settings,
            provider: &self.provider,
            connector: &self.connector,
            run_dir,
            sink,
            stop,
            builder: self.kernel_builder.clone(),
        }
    }

    /// The suite with id `id`.
    pub(super) fn suite(&self, id: &str) -> Option<&Arc<dyn TestSuite>> {
        self.suites.iter().find(|s| s.id() == id)
    }
}
