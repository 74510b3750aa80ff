//! Where a run's events go: the journal first, then the caller's sink.

use std::sync::{Arc, Mutex};

use btrfsqa_model::EventSink;
use btrfsqa_model::{Event, Stage};

use crate::journal::Journal;

/// The run's one way out for events: each is appended to the journal
/// (synced for state changes) before the caller sees it, so the journal
/// holds every state change before the next step.
pub(crate) fn journaled(user: EventSink, journal: Journal) -> EventSink {
    let journal = Mutex::new(journal);
    Arc::new(move |event: Event| {
        if let Ok(mut journal) = journal.lock() {
            journal.append(&event);
        }
        user(event);
    })
}

/// A per-machine stage ended (with `error` when it failed).
pub(crate) fn stage_done(machine: &str, stage: Stage, error: Option<String>) -> Event {
    Event::StageFinished {
        machine: Some(machine.to_owned()),
        stage,
        ok: error.is_none(),
        message: error,
    }
}

/// A per-machine stage began.
pub(crate) fn stage_started(machine: &str, stage: Stage) -> Event {
    Event::StageStarted {
        machine: Some(machine.to_owned()),
        stage,
    }
}

/// A warning about `machine` (or the run).
pub(crate) fn warning(machine: Option<&str>, message: impl Into<String>) -> Event {
    Event::Warning {
        machine: machine.map(str::to_owned),
        message: message.into(),
    }
}
