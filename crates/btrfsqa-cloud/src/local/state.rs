//! The state file `WORK/<run-id>/<machine>/machine.json`: what a local
//! machine is made of, rewritten (atomically) before every provisioning step
//! so that a controller killed at any instant leaves enough for `reap`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name inside a machine directory.
pub(crate) const STATE_FILE: &str = "machine.json";

/// What one local machine is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct LocalState {
    /// The run.
    pub run_id: String,
    /// The machine's name within the run.
    pub machine: String,
    /// `WORK/<run-id>/<machine>`.
    pub work_dir: PathBuf,
    /// The process that made it: while it lives, `reap` leaves the run alone.
    pub controller: Controller,
    /// `provisioning` until every device is attached, then `ready`.
    pub phase: Phase,
    /// Backing files, listed BEFORE each is created.
    pub backing_files: Vec<PathBuf>,
    /// Loop devices attached so far.
    pub loop_devices: Vec<Attachment>,
    /// Mount-point directories made for the runner.
    pub mount_dirs: Vec<PathBuf>,
}

/// How far provisioning got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// Still being made.
    Provisioning,
    /// Handed to the runner.
    Ready,
}

/// The controller process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Controller {
    /// Its pid.
    pub pid: u32,
    /// Its start time (clock ticks since boot), which tells it from a later
    /// process that got the same pid.
    pub start_time: Option<u64>,
    /// Its command name, for messages.
    pub name: Option<String>,
}

/// One loop device and its backing file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Attachment {
    /// `/dev/loopN`.
    pub device: String,
    /// The file behind it.
    pub backing_file: PathBuf,
}

impl LocalState {
    /// Writes `dir/machine.json` through a temporary file and a rename, so a
    /// reader (or a crash) sees either the old or the new state, never half.
    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        json.push(b'\n');
        btrfsqa_model::fs::write_atomic(&dir.join(STATE_FILE), &json)
    }

    /// Reads `dir/machine.json`, if there is a readable one.
    pub(crate) fn read(dir: &Path) -> Option<LocalState> {
        let text = std::fs::read(dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> LocalState {
        LocalState {
            run_id: "20261124-100000-ab12".into(),
            machine: "local-0".into(),
            work_dir: dir.to_owned(),
            controller: Controller {
                pid: 42,
                start_time: Some(7),
                name: Some("btrfsqa".into()),
            },
            phase: Phase::Provisioning,
            backing_files: vec![dir.join("disk-0.img")],
            loop_devices: vec![Attachment {
                device: "/dev/loop3".into(),
                backing_file: dir.join("disk-0.img"),
            }],
            mount_dirs: Vec::new(),
        }
    }

    #[test]
    fn state_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = sample(dir.path());
        state.write(dir.path()).unwrap();
        state.phase = Phase::Ready;
        state.write(dir.path()).unwrap();
        assert_eq!(LocalState::read(dir.path()), Some(state));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        let text = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(text.contains("\"phase\": \"ready\""), "{text}");
        assert!(text.contains("\"loop-devices\""), "{text}");
    }

    #[test]
    fn unreadable_state_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LocalState::read(dir.path()), None);
        std::fs::write(dir.path().join(STATE_FILE), "{").unwrap();
        assert_eq!(LocalState::read(dir.path()), None);
    }
}
