use serde::{Deserialize, Serialize};

use crate::{Counts, MachineInfo, RunId, RunStatus, TestOutcome};

/// Receives the events a run, its suites and its kernel stage emit: every
/// crate speaks it, so it lives with the events.
pub type EventSink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;

/// A step of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Getting machines.
    Provision,
    /// Waiting for a machine, installing packages, placing sources.
    Prepare,
    /// Building, installing and booting the kernel.
    Kernel,
    /// Running the suites.
    Suites,
    /// Bringing artifacts into the results store.
    Collect,
    /// Rendering and pushing the dashboard.
    Publish,
    /// Removing machines, disks and keys.
    Teardown,
}

impl Stage {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Provision => "provision",
            Stage::Prepare => "prepare",
            Stage::Kernel => "kernel",
            Stage::Suites => "suites",
            Stage::Collect => "collect",
            Stage::Publish => "publish",
            Stage::Teardown => "teardown",
        }
    }
}

/// What a run reports while it goes. Libraries emit these; the CLI turns them
/// into progress lines or, with `--message-format json`, one JSON object per
/// line (`{"event":"test-finished",...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// A run began.
    RunStarted {
        /// The run.
        run_id: RunId,
        /// The provider.
        provider: String,
        /// The suites it will run.
        suites: Vec<String>,
    },
    /// A stage began on a machine (or for the run, when `machine` is absent).
    StageStarted {
        /// The machine, if the stage is per machine.
        machine: Option<String>,
        /// The stage.
        stage: Stage,
    },
    /// A stage ended.
    StageFinished {
        /// The machine, if the stage is per machine.
        machine: Option<String>,
        /// The stage.
        stage: Stage,
        /// Whether it succeeded.
        ok: bool,
        /// What went wrong, or a short note.
        message: Option<String>,
    },
    /// A machine is up and reachable.
    MachineReady {
        /// The machine.
        machine: MachineInfo,
    },
    /// A suite began on a machine.
    SuiteStarted {
        /// The machine.
        machine: String,
        /// The suite id.
        suite: String,
        /// How many tests it will run, when known in advance.
        planned: Option<u32>,
    },
    /// A test began.
    TestStarted {
        /// The machine.
        machine: String,
        /// The suite id.
        suite: String,
        /// The test.
        test: String,
    },
    /// A test got its verdict.
    TestFinished {
        /// The machine.
        machine: String,
        /// The outcome.
        outcome: TestOutcome,
    },
    /// A suite ended.
    SuiteFinished {
        /// The machine.
        machine: String,
        /// The suite id.
        suite: String,
        /// Its verdict counts.
        counts: Counts,
        /// Set when the suite stopped early.
        error: Option<String>,
    },
    /// Something worth telling that did not stop the run.
    Warning {
        /// The machine concerned, if any.
        machine: Option<String>,
        /// What happened.
        message: String,
    },
    /// The run ended; its report is in the results store.
    RunFinished {
        /// The run.
        run_id: RunId,
        /// How it ended.
        status: RunStatus,
        /// Its verdict counts.
        summary: Counts,
        /// The run's directory in the results store.
        results_dir: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_kebab_case() {
        let event = Event::StageStarted {
            machine: Some("local-0".into()),
            stage: Stage::Provision,
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"event":"stage-started","machine":"local-0","stage":"provision"}"#
        );
    }
}
