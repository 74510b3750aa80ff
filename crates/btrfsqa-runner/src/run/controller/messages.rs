//! What goes between the run controller and the rest of the run: the
//! [`Message`]s workers send, the [`Batch`]es they get and the
//! [`BatchResult`]s they return, the [`Settings`] the controller starts
//! with and what it hands back when it stops ([`Ended`]).

use btrfsqa_cloud::Machine;
use btrfsqa_model::{KernelInfo, RunReport, SuiteReport, TestOutcome};
use tokio::sync::oneshot;

use crate::history::ExpectationsConfig;
use crate::schedule::WorkItem;

/// Work handed to one machine: items of one suite and profile, run by one
/// invocation of the suite.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    /// The suite's id.
    pub suite: String,
    /// The profile the items run under.
    pub profile: Option<String>,
    /// The items.
    pub items: Vec<WorkItem>,
    /// For a whole suite: the tests it already has verdicts for.
    pub skip: Vec<String>,
    /// These are reruns of new failures.
    pub rerun: bool,
}

impl Batch {
    /// The tests to put in `SuiteContext::only` (`None` for a whole suite).
    pub fn only(&self) -> Option<Vec<String>> {
        self.items
            .iter()
            .map(|item| item.test.clone())
            .collect::<Option<Vec<_>>>()
    }
}

/// What a machine did with a batch.
#[derive(Debug)]
pub(crate) struct BatchResult {
    /// The batch.
    pub batch: Batch,
    /// The outcomes (and the suite's error, artifacts...).
    pub part: SuiteReport,
    /// Items to hand out again (the rest of a batch stopped by a hang, a
    /// crash, a broken connection or a machine taken away).
    pub requeue: Vec<WorkItem>,
    /// `interrupted` outcomes of a machine taken away: kept only for tests
    /// no other machine runs.
    pub withdrawn: Vec<TestOutcome>,
    /// The suite could not be set up on this machine (why).
    pub setup_failed: Option<String>,
}

/// Why a worker stopped asking for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gone {
    /// No work was left.
    Done,
    /// The machine could not be made usable (unreachable, kernel stage).
    Failed(String),
    /// The machine could not be brought back after trouble.
    GivenUp(String),
    /// The machine is being taken away (a spot interruption notice).
    TakenAway(String),
}

/// What workers tell the controller.
#[derive(Debug)]
pub(crate) enum Message {
    /// The worker's machine exists.
    Provisioned { worker: usize, machine: Machine },
    /// It could not be made.
    ProvisionFailed { worker: usize, error: String },
    /// The machine runs the kernel under test and is ready for suites;
    /// `stage` holds what the kernel stage reported.
    Ready {
        worker: usize,
        kernel: KernelInfo,
        stage: Vec<SuiteReport>,
    },
    /// The worker wants a batch (`None`: no more work).
    Next {
        worker: usize,
        reply: oneshot::Sender<Option<Batch>>,
    },
    /// Items of a batch cut short by trouble, handed back before the
    /// machine is recovered so the other machines can take them at once.
    Requeue { items: Vec<WorkItem> },
    /// A batch ended.
    Finished { worker: usize, result: BatchResult },
    /// The worker stopped asking.
    Gone { worker: usize, why: Gone },
    /// A machine is torn down (`error`: what could not be removed).
    TornDown {
        cost_usd: Option<f64>,
        error: Option<String>,
    },
}

/// What the run left when the controller stopped.
#[derive(Debug)]
pub(crate) struct Ended {
    /// The report, every outcome merged, not yet finished.
    pub report: RunReport,
    /// Why a machine was taken away while work was left (the run is
    /// interrupted, resumably).
    pub interruption: Option<String>,
    /// What teardown could not remove.
    pub teardown_errors: Vec<String>,
}

/// What the controller needs besides the plan.
pub(crate) struct Settings {
    /// How many machines (workers) the run has.
    pub machines: usize,
    /// The suites' ids in the configured order.
    pub suite_order: Vec<String>,
    pub expectations: ExpectationsConfig,
    /// The run's page on the dashboard (for the comparison summary).
    pub run_page: Option<String>,
}
