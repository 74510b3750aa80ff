//! Ending a machine: stopping its VM (power button, QMP quit, SIGKILL) and
//! removing its files.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::TeardownError;
use crate::machine::Machine;

use super::state::QemuState;
use super::{Inner, KILL_TIMEOUT, POWERDOWN_TIMEOUT, PROVIDER, launch, remove_if_empty};

/// How [`Inner::stop`] ends a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The ACPI power button, so the guest shuts down cleanly; then `Quit`.
    PowerOff,
    /// QMP `quit` (QEMU closes its disks); then `Kill`.
    Quit,
    /// SIGKILL at once: a power cut for the guest.
    Kill,
}

impl Inner {
    /// Stops the VM of `state` if it runs; `Err` names what is left.
    pub(super) fn stop(&self, state: &QemuState, how: Stop) -> Result<(), String> {
        let tag = state.tag();
        let pid = state
            .pid
            .or_else(|| launch::read_pidfile(&state.dir.join("qemu.pid")));
        let Some(pid) = pid else { return Ok(()) };
        if !launch::process_has_tag(pid, &tag) {
            return Ok(());
        }
        let qmp = state.dir.join("qmp.sock");
        if how == Stop::PowerOff
            && launch::qmp_command(&qmp, "system_powerdown").is_ok()
            && launch::wait_gone(pid, &tag, POWERDOWN_TIMEOUT)
        {
            return Ok(());
        }
        if how != Stop::Kill
            && launch::qmp_command(&qmp, "quit").is_ok()
            && launch::wait_gone(pid, &tag, Duration::from_secs(10))
        {
            return Ok(());
        }
        // Checked again right before the signal: the pid must still be ours.
        if launch::process_has_tag(pid, &tag) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if launch::wait_gone(pid, &tag, KILL_TIMEOUT) {
            Ok(())
        } else {
            Err(format!("qemu process {pid} ({tag})"))
        }
    }

    /// Stops the VM and deletes the machine's directory; returns leftovers.
    pub(super) fn destroy(&self, state: &QemuState) -> Vec<String> {
        let mut leftovers = Vec::new();
        if let Err(left) = self.stop(state, Stop::Quit) {
            leftovers.push(left);
            // Never delete the disks under a running VM.
            leftovers.push(format!("`{}`", state.dir.display()));
            return leftovers;
        }
        if state.dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&state.dir)
        {
            leftovers.push(format!("`{}` ({e})", state.dir.display()));
        }
        leftovers
    }

    pub(super) fn state_of(&self, machine: &Machine) -> Option<QemuState> {
        let dir = machine
            .state
            .get("dir")
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.machine_dir(machine.run_id.as_str(), &machine.name));
        // The file is current (a relaunch changes the pid); the copy in the
        // Machine is from provisioning.
        QemuState::read(&dir).or_else(|| serde_json::from_value(machine.state.clone()).ok())
    }

    pub(super) fn teardown(&self, machine: &Machine) -> Result<(), TeardownError> {
        let Some(state) = self.state_of(machine) else {
            let dir = self.machine_dir(machine.run_id.as_str(), &machine.name);
            if dir.exists() {
                return Err(TeardownError::Leftovers {
                    provider: PROVIDER.to_owned(),
                    leftovers: vec![format!("`{}` (no readable machine.json)", dir.display())],
                });
            }
            return Ok(());
        };
        // Only directories of this run under our work directory are deleted.
        let expected = self.machine_dir(&state.run_id, &state.machine);
        if state.dir != expected || state.run_id != machine.run_id.as_str() {
            return Err(TeardownError::Leftovers {
                provider: PROVIDER.to_owned(),
                leftovers: vec![format!(
                    "`{}` (not this run's directory `{}`)",
                    state.dir.display(),
                    expected.display()
                )],
            });
        }
        let leftovers = self.destroy(&state);
        if let Some(run_dir) = state.dir.parent() {
            remove_if_empty(run_dir);
        }
        if leftovers.is_empty() {
            Ok(())
        } else {
            Err(TeardownError::Leftovers {
                provider: PROVIDER.to_owned(),
                leftovers,
            })
        }
    }
}
