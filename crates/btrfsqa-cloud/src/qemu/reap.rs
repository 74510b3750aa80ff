//! Finding and removing the machines that runs no longer alive left behind.

use btrfsqa_model::RunId;

use crate::error::TeardownError;
use crate::machine::{ReapAction, ReapItem};

use super::state::QemuState;
use super::{Inner, PROVIDER, launch, remove_if_empty};

impl Inner {
    pub(super) fn reap(
        &self,
        run: Option<&RunId>,
        dry_run: bool,
    ) -> Result<Vec<ReapItem>, TeardownError> {
        let root = &self.settings.work_dir;
        let mut items = Vec::new();
        let Ok(runs) = std::fs::read_dir(root) else {
            return Ok(items);
        };
        let mut leftovers = Vec::new();
        for run_entry in runs.flatten() {
            let run_name = run_entry.file_name().to_string_lossy().into_owned();
            if !run_entry.path().is_dir() || RunId::parse(&run_name).is_err() {
                continue;
            }
            if run.is_some_and(|r| r.as_str() != run_name) {
                continue;
            }
            let Ok(machines) = std::fs::read_dir(run_entry.path()) else {
                continue;
            };
            for machine_entry in machines.flatten() {
                let Some(state) = QemuState::read(&machine_entry.path()) else {
                    continue;
                };
                let item = |kind: &str, id: String, action: ReapAction| ReapItem {
                    provider: PROVIDER.to_owned(),
                    kind: kind.to_owned(),
                    id,
                    run_id: Some(run_name.clone()),
                    action,
                };
                if run.is_none() && state.controller.is_alive() {
                    items.push(item(
                        "run",
                        state.machine.clone(),
                        ReapAction::Kept(format!(
                            "its controller (pid {}) is still running",
                            state.controller.pid
                        )),
                    ));
                    continue;
                }
                let tag = state.tag();
                let pid = state
                    .pid
                    .or_else(|| launch::read_pidfile(&state.dir.join("qemu.pid")))
                    .filter(|pid| launch::process_has_tag(*pid, &tag));
                if dry_run {
                    if let Some(pid) = pid {
                        items.push(item(
                            "qemu-process",
                            pid.to_string(),
                            ReapAction::WouldDelete,
                        ));
                    }
                    items.push(item(
                        "work-dir",
                        state.dir.display().to_string(),
                        ReapAction::WouldDelete,
                    ));
                    continue;
                }
                // Reap only what lies under this provider's work directory.
                if state.dir != machine_entry.path()
                    && state.dir != self.machine_dir(&state.run_id, &state.machine)
                {
                    continue;
                }
                let left = self.destroy(&state);
                if let Some(pid) = pid {
                    let action = if left.iter().any(|l| l.contains("qemu process")) {
                        ReapAction::Failed("still running".to_owned())
                    } else {
                        ReapAction::deleted()
                    };
                    items.push(item("qemu-process", pid.to_string(), action));
                }
                let action = if left.is_empty() {
                    ReapAction::deleted()
                } else {
                    ReapAction::Failed(left.join("; "))
                };
                items.push(item("work-dir", state.dir.display().to_string(), action));
                leftovers.extend(left);
            }
            if !dry_run {
                remove_if_empty(&run_entry.path());
            }
        }
        if leftovers.is_empty() {
            Ok(items)
        } else {
            Err(TeardownError::Leftovers {
                provider: PROVIDER.to_owned(),
                leftovers,
            })
        }
    }
}
