//! Booting a machine again: on a kernel of the caller's (`boot_kernel`),
//! or as it was last launched after a crash or hang (`reset`).

use std::path::{Path, PathBuf};

use crate::error::ProvisionError;
use crate::machine::{BootKernel, Machine};

use super::console::append_console_line;
use super::state::QemuState;
use super::teardown::Stop;
use super::{
    Inner, PORT_ATTEMPTS, PORT_RETRY_DELAY, PROVIDER, RESET_SEPARATOR, is_port_clash, launch, state,
};

impl Inner {
    pub(super) fn boot_kernel(
        &self,
        machine: &Machine,
        kernel: &BootKernel,
    ) -> Result<(), ProvisionError> {
        let failed = |operation: String, source: Box<dyn std::error::Error + Send + Sync>| {
            ProvisionError::Failed {
                provider: PROVIDER.to_owned(),
                operation,
                leftovers: Vec::new(),
                source,
            }
        };
        let mut state = self
            .state_of(machine)
            .ok_or_else(|| self.config_error(format!("no state for machine `{}`", machine.name)))?;
        let Some(mut spec) = state.launch.clone() else {
            return Err(self.config_error(format!("machine `{}` was never launched", machine.name)));
        };
        if !kernel.image.is_file() {
            return Err(self.config_error(format!(
                "kernel image `{}` does not exist",
                kernel.image.display()
            )));
        }
        // A clean power-off first: what the guest wrote (modules) must reach
        // the overlay.
        self.stop(&state, Stop::PowerOff).map_err(|left| {
            failed(
                format!("stop the VM to boot `{}`", kernel.release),
                left.into(),
            )
        })?;
        // The VM runs the files it was launched with from now on, whatever
        // becomes of the caller's (a rebuilt store entry): a reset boots
        // the same kernel. Copied while the VM is down; should that fail,
        // the state still names the previous launch's files, untouched.
        let (image, initrd) = keep_boot_files(&state.dir, kernel).map_err(|e| {
            failed(
                format!(
                    "copy kernel `{}` into `{}`",
                    kernel.release,
                    state.dir.join(BOOT_DIR).display()
                ),
                Box::new(e),
            )
        })?;
        let extra = [
            self.settings.extra_args.as_deref(),
            kernel.extra_args.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        spec.kernel = image;
        spec.initrd = initrd;
        spec.append = launch::kernel_cmdline(&spec.tag, Some(&extra));
        state.pid = None;
        state.launch = Some(spec.clone());
        state
            .write()
            .map_err(|e| failed("write the machine state".to_owned(), Box::new(e)))?;
        let pid = self.launch(&spec).map_err(|e| {
            failed(
                format!("relaunch with kernel `{}`", kernel.release),
                Box::new(e),
            )
        })?;
        state.pid = Some(pid);
        state
            .write()
            .map_err(|e| failed("write the machine state".to_owned(), Box::new(e)))
    }

    pub(super) fn reset(&self, machine: &Machine) -> Result<(), ProvisionError> {
        let failed = |operation: String,
                      leftovers: Vec<String>,
                      source: Box<dyn std::error::Error + Send + Sync>| {
            ProvisionError::Failed {
                provider: PROVIDER.to_owned(),
                operation,
                leftovers,
                source,
            }
        };
        let mut state = self.launched_state(machine)?;
        let spec = state.launch.clone().expect("checked by launched_state");
        let tag = state.tag();
        // A power cut for the guest, as on real hardware: what it flushed is
        // in the qcow2 files already (QEMU writes its qcow2 metadata out on
        // every guest flush, even with cache=unsafe), the rest is lost as it
        // would be. Asking a wedged QEMU over QMP would only cost timeouts.
        self.stop(&state, Stop::Kill).map_err(|left| {
            failed(
                "kill the VM to reset it".to_owned(),
                vec![left.clone()],
                left.into(),
            )
        })?;
        state.pid = None;
        state.write().map_err(|e| {
            failed(
                "write the machine state".to_owned(),
                Vec::new(),
                Box::new(e),
            )
        })?;
        append_console_line(&spec.console, RESET_SEPARATOR).map_err(|e| {
            failed(
                format!("append to console `{}`", spec.console.display()),
                Vec::new(),
                Box::new(e),
            )
        })?;
        let mut attempt = 1;
        let pid = loop {
            match self.launch(&spec) {
                Ok(pid) => break pid,
                // The machine keeps its port (the runner knows it): the
                // killed QEMU's listener may take a moment to go, or
                // another process may hold the port for a while.
                Err(e) if is_port_clash(&e) && attempt < PORT_ATTEMPTS => {
                    tracing::debug!(port = spec.ssh_port, error = %e, "port still taken, retrying");
                    attempt += 1;
                    std::thread::sleep(PORT_RETRY_DELAY);
                }
                Err(e) => {
                    return Err(failed(
                        format!("relaunch `{tag}` after a reset"),
                        Vec::new(),
                        Box::new(e),
                    ));
                }
            }
        };
        state.pid = Some(pid);
        state.write().map_err(|e| {
            failed(
                "write the machine state".to_owned(),
                vec![format!("qemu process {pid} ({tag})")],
                Box::new(e),
            )
        })
    }

    /// The current state of a machine that was launched and still has its
    /// files; a clear error otherwise.
    pub(super) fn launched_state(&self, machine: &Machine) -> Result<QemuState, ProvisionError> {
        let dir = machine
            .state
            .get("dir")
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.machine_dir(machine.run_id.as_str(), &machine.name));
        if !dir.is_dir() {
            return Err(self.config_error(format!(
                "machine `{}` has no directory `{}` (torn down or reaped)",
                machine.name,
                dir.display()
            )));
        }
        // Only the file is current (a relaunch changes the pid, boot_kernel
        // the kernel); the copy in the Machine is from provisioning.
        let state = QemuState::read(&dir).ok_or_else(|| {
            self.config_error(format!(
                "machine `{}` has no readable `{}`",
                machine.name,
                dir.join(state::STATE_FILE).display()
            ))
        })?;
        let expected = self.machine_dir(&state.run_id, &state.machine);
        if state.dir != expected || state.run_id != machine.run_id.as_str() {
            return Err(self.config_error(format!(
                "machine `{}`: `{}` is not this run's directory `{}`",
                machine.name,
                state.dir.display(),
                expected.display()
            )));
        }
        let Some(spec) = &state.launch else {
            return Err(self.config_error(format!("machine `{}` was never launched", machine.name)));
        };
        let needed = std::iter::once(&spec.kernel)
            .chain(&spec.initrd)
            .chain(&spec.disks);
        for file in needed {
            if !file.is_file() {
                return Err(self.config_error(format!(
                    "machine `{}` cannot be launched again: `{}` is gone",
                    machine.name,
                    file.display()
                )));
            }
        }
        Ok(state)
    }
}

/// Where `boot_kernel` keeps the kernel the VM boots: `DIR/boot/`.
pub(super) const BOOT_DIR: &str = "boot";

/// Copies `kernel`'s image and initrd to `dir/boot/vmlinuz` and
/// `dir/boot/initrd.img` (each through a temporary file, renamed once both
/// are copied); returns the copies.
pub(super) fn keep_boot_files(
    dir: &Path,
    kernel: &BootKernel,
) -> std::io::Result<(PathBuf, Option<PathBuf>)> {
    let boot = dir.join(BOOT_DIR);
    std::fs::create_dir_all(&boot)?;
    let mut files = vec![(kernel.image.clone(), boot.join("vmlinuz"))];
    if let Some(initrd) = &kernel.initrd {
        files.push((initrd.clone(), boot.join("initrd.img")));
    }
    let mut copied = Vec::new();
    for (from, to) in &files {
        let temp = to.with_extension("tmp");
        if let Err(e) = std::fs::copy(from, &temp) {
            for temp in copied {
                let _ = std::fs::remove_file(temp);
            }
            return Err(std::io::Error::new(
                e.kind(),
                format!("`{}`: {e}", from.display()),
            ));
        }
        copied.push(temp);
    }
    for ((_, to), temp) in files.iter().zip(&copied) {
        std::fs::rename(temp, to)?;
    }
    let initrd = boot.join("initrd.img");
    if kernel.initrd.is_none() {
        let _ = std::fs::remove_file(&initrd);
        Ok((boot.join("vmlinuz"), None))
    } else {
        Ok((boot.join("vmlinuz"), Some(initrd)))
    }
}
