use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use btrfsqa_model::EventSink;
use btrfsqa_model::{Artifact, ArtifactKind, Event, TestOutcome, safe_file_name};
use btrfsqa_remote::RemoteHost;
use tokio_util::sync::CancellationToken;

use crate::SuiteError;

/// The data devices and directories of the machine a suite runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineDevices {
    /// The machine's name.
    pub name: String,
    /// The test device (fstests' TEST_DEV).
    pub test_dev: String,
    /// The scratch pool (fstests' SCRATCH_DEV_POOL).
    pub scratch_devs: Vec<String>,
    /// A directory on the machine for work files and mount points.
    pub work_dir: String,
}

/// Everything a suite gets to run with.
#[derive(Clone)]
pub struct SuiteContext {
    /// The machine.
    pub host: Arc<dyn RemoteHost>,
    /// Its devices.
    pub devices: MachineDevices,
    /// The run's directory in the local results store.
    pub run_dir: PathBuf,
    /// Where events go.
    pub events: EventSink,
    /// Fires when the run is being stopped (signal, run timeout).
    pub cancel: CancellationToken,
    /// When set, run only these tests (a batch, reruns); otherwise all.
    pub only: Option<Vec<String>>,
    /// When set, run only under this profile (fstests section); otherwise
    /// under every configured one.
    pub profile: Option<String>,
    /// Tests not to run again (a resumed run's finished tests).
    pub skip: Vec<String>,
    /// Timeouts the runner derived from each test's history (ten times its
    /// last duration, at least five minutes), by `suite/test`, used for
    /// tests whose suite configures no timeout: see
    /// [`SuiteContext::timeout_for`].
    pub derived_timeouts: std::collections::HashMap<String, std::time::Duration>,
}

impl std::fmt::Debug for SuiteContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuiteContext")
            .field("host", &self.host.name())
            .field("devices", &self.devices)
            .field("run_dir", &self.run_dir)
            .finish_non_exhaustive()
    }
}

impl SuiteContext {
    /// A context that drops events and is never cancelled.
    pub fn new(host: Arc<dyn RemoteHost>, devices: MachineDevices, run_dir: PathBuf) -> Self {
        SuiteContext {
            host,
            devices,
            run_dir,
            events: Arc::new(|_| {}),
            cancel: CancellationToken::new(),
            only: None,
            profile: None,
            skip: Vec::new(),
            derived_timeouts: std::collections::HashMap::new(),
        }
    }

    /// The timeout of `test`: the configured one when there is one, else the
    /// one derived from its history, else the suite's `default`.
    pub fn timeout_for(
        &self,
        suite: &str,
        test: &str,
        configured: Option<std::time::Duration>,
        default: std::time::Duration,
    ) -> std::time::Duration {
        configured
            .or_else(|| {
                self.derived_timeouts
                    .get(&format!("{suite}/{test}"))
                    .copied()
            })
            .unwrap_or(default)
    }

    /// Whether `test` is selected by [`SuiteContext::only`] and not in
    /// [`SuiteContext::skip`].
    pub fn selected(&self, test: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|t| t == test))
            && !self.skip.iter().any(|t| t == test)
    }

    /// Whether the profile `profile` is selected by [`SuiteContext::profile`].
    pub fn selected_profile(&self, profile: &str) -> bool {
        self.profile.as_deref().is_none_or(|p| p == profile)
    }

    /// Emits an event.
    pub fn emit(&self, event: Event) {
        (self.events)(event);
    }

    /// Emits [`Event::TestStarted`].
    pub fn test_started(&self, suite: &str, test: &str) {
        self.emit(Event::TestStarted {
            machine: self.devices.name.clone(),
            suite: suite.to_owned(),
            test: test.to_owned(),
        });
    }

    /// Emits [`Event::TestFinished`] for `outcome` (with the machine filled in)
    /// and returns the outcome.
    pub fn test_finished(&self, mut outcome: TestOutcome) -> TestOutcome {
        if outcome.machine.is_none() {
            outcome.machine = Some(self.devices.name.clone());
        }
        self.emit(Event::TestFinished {
            machine: self.devices.name.clone(),
            outcome: outcome.clone(),
        });
        outcome
    }

    /// The suite's directory in the results store (`RUN_DIR/<suite>`).
    pub fn suite_dir(&self, suite: &str) -> PathBuf {
        self.run_dir.join(safe_file_name(suite))
    }

    /// Writes `contents` as the file `file` of test `test` in suite `suite`
    /// (`RUN_DIR/<suite>/<test>/<file>`, each part made safe) and returns the
    /// artifact that names it.
    pub fn write_artifact(
        &self,
        suite: &str,
        test: &str,
        file: &str,
        kind: ArtifactKind,
        contents: &[u8],
    ) -> Result<Artifact, SuiteError> {
        let relative = artifact_relative_path(suite, test, file);
        let path = self.run_dir.join(&relative);
        write_file(&path, contents)?;
        Ok(Artifact::new(kind, relative))
    }
}

/// `<suite>/<test>/<file>` with each part made safe, `/`-separated.
pub fn artifact_relative_path(suite: &str, test: &str, file: &str) -> String {
    format!(
        "{}/{}/{}",
        safe_file_name(suite),
        safe_file_name(test),
        safe_file_name(file)
    )
}

pub(crate) fn write_file(path: &Path, contents: &[u8]) -> Result<(), SuiteError> {
    let io = |source| SuiteError::Store {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_configured_timeout_wins_then_history_then_the_default() {
        let mut ctx = SuiteContext::new(
            Arc::new(btrfsqa_remote::LocalHost::new("m")),
            MachineDevices::default(),
            "/nonexistent".into(),
        );
        ctx.derived_timeouts
            .insert("smoke/001_a".into(), Duration::from_secs(900));
        let default = Duration::from_secs(300);
        let configured = Some(Duration::from_secs(5));
        assert_eq!(
            ctx.timeout_for("smoke", "001_a", configured, default),
            Duration::from_secs(5)
        );
        assert_eq!(
            ctx.timeout_for("smoke", "001_a", None, default),
            Duration::from_secs(900)
        );
        assert_eq!(ctx.timeout_for("other", "001_a", None, default), default);
        assert_eq!(ctx.timeout_for("smoke", "002_b", None, default), default);
    }
}
