//! The run's journal: every event appended to `journal.jsonl` and synced, so
//! a controller killed at any instant loses no finished result.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use btrfsqa_model::{Event, ModelError};

/// The outcomes a journal recorded (`test-finished` events), in order. Lines
/// that do not parse (a line cut by a crash, garbage) are skipped.
pub fn finished_outcomes(path: &Path) -> Vec<btrfsqa_model::TestOutcome> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<Event>(line).ok())
        .filter_map(|event| match event {
            Event::TestFinished { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect()
}

/// An append-only event log.
#[derive(Debug)]
pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens (creating) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, ModelError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| ModelError::Io {
                action: "open",
                path: path.to_owned(),
                source,
            })?;
        Ok(Journal { file })
    }

    /// Appends one event as a JSON line. State changes (a test started or
    /// finished, a machine ready, a stage started or finished) are synced to
    /// disk before this returns; a failure to write is not fatal
    /// (the report is the primary record) and is ignored. URLs are written
    /// without their credentials ([`Event::redact_credentials`]).
    pub fn append(&mut self, event: &Event) {
        let mut event = event.clone();
        event.redact_credentials();
        let Ok(mut line) = serde_json::to_vec(&event) else {
            return;
        };
        line.push(b'\n');
        if self.file.write_all(&line).is_ok()
            && matches!(
                event,
                Event::TestStarted { .. }
                    | Event::TestFinished { .. }
                    | Event::MachineReady { .. }
                    | Event::SuiteFinished { .. }
                    | Event::StageStarted { .. }
                    | Event::StageFinished { .. }
                    | Event::RunFinished { .. }
            )
        {
            let _ = self.file.sync_data();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_holds_no_credentials_from_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut journal = Journal::open(&path).unwrap();
        journal.append(&Event::Warning {
            machine: None,
            message: "cannot fetch `https://me:tok-1234567@git.example/fstests.git`".into(),
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("tok-1234567"), "{text}");
        assert!(text.contains("https://git.example/fstests.git"), "{text}");
    }
}
