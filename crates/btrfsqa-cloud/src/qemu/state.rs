//! `WORK/<run-id>/<machine>/machine.json`: what a qemu machine is made of,
//! rewritten atomically before and after every step (launch, relaunch), so
//! teardown and `reap` always know the current pid.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::launch::LaunchSpec;

/// The state file's name inside a machine directory.
pub(crate) const STATE_FILE: &str = "machine.json";

/// One qemu machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct QemuState {
    /// The run.
    pub run_id: String,
    /// The machine's name within the run.
    pub machine: String,
    /// `WORK/<run-id>/<machine>`: overlay, disks, keys, sockets.
    pub dir: PathBuf,
    /// The controller that made it: while it lives, `reap` leaves the run alone.
    pub controller: Controller,
    /// The VM process, once launched (the current one after a relaunch).
    pub pid: Option<u32>,
    /// The last launch (command line inputs).
    pub launch: Option<LaunchSpec>,
    /// The serial console (outside `dir` when it goes to the results store).
    pub console: PathBuf,
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
}

impl Controller {
    /// This process.
    pub(crate) fn current() -> Self {
        let pid = std::process::id();
        Controller {
            pid,
            start_time: start_time(pid),
        }
    }

    /// Whether the controller still runs (a zombie, killed but not yet
    /// waited for, does not).
    pub(crate) fn is_alive(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        if matches!(parse_state(&stat), Some('Z' | 'X')) {
            return false;
        }
        match parse_start_time(&stat) {
            None => false,
            Some(now) => self.start_time.is_none_or(|then| then == now),
        }
    }
}

/// The state letter (field 3) of a `/proc/PID/stat` line.
pub(crate) fn parse_state(stat: &str) -> Option<char> {
    stat.get(stat.rfind(')')? + 1..)?
        .trim_start()
        .chars()
        .next()
}

/// Start time of `pid` in clock ticks since boot (field 22 of its stat).
fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&text)
}

/// Field 22 of a `/proc/PID/stat` line, after the parenthesised name (which
/// may itself contain spaces and parentheses).
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let close = stat.rfind(')')?;
    stat.get(close + 1..)?
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

impl QemuState {
    /// Writes `dir/machine.json` through a temporary file and a rename.
    pub(crate) fn write(&self) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        json.push(b'\n');
        btrfsqa_model::fs::write_atomic(&self.dir.join(STATE_FILE), &json)
    }

    /// Reads `dir/machine.json`, if there is a readable one.
    pub(crate) fn read(dir: &Path) -> Option<QemuState> {
        serde_json::from_slice(&std::fs::read(dir.join(STATE_FILE)).ok()?).ok()
    }

    /// The tag that the VM's command line carries.
    pub(crate) fn tag(&self) -> String {
        tag(&self.run_id, &self.machine)
    }
}

/// `btrfsqa-<run-id>-<machine>`: in the VM's name and command line.
pub(crate) fn tag(run_id: &str, machine: &str) -> String {
    format!("btrfsqa-{run_id}-{machine}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_after_a_name_with_parentheses() {
        let stat = "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 3 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("12 (short"), None);
        assert_eq!(parse_state(stat), Some('S'));
        assert_eq!(parse_state("7 (a) b) Z 1"), Some('Z'));
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Controller::current();
        assert!(me.is_alive());
        let reused = Controller {
            start_time: me.start_time.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!reused.is_alive());
        let gone = Controller {
            pid: u32::MAX - 1,
            start_time: None,
        };
        assert!(!gone.is_alive());
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let state = QemuState {
            run_id: "20261124-100000-ab12".into(),
            machine: "qemu-0".into(),
            dir: dir.path().to_owned(),
            controller: Controller::current(),
            pid: Some(7),
            launch: None,
            console: dir.path().join("console.log"),
        };
        state.write().unwrap();
        assert_eq!(QemuState::read(dir.path()), Some(state.clone()));
        assert_eq!(state.tag(), "btrfsqa-20261124-100000-ab12-qemu-0");
    }
}
