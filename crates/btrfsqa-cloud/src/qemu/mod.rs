//! The `qemu` provider: a disposable local VM per machine, no cloud account.
//!
//! Layout under the work directory `WORK` (default `/var/tmp/btrfsqa-qemu`):
//!
//! ```text
//! WORK/accel-probe.json                  the cached KVM probe answer
//! WORK/<run-id>/<machine>/machine.json   state, rewritten around every launch
//! WORK/<run-id>/<machine>/root.qcow2     overlay on the shared image (never modified)
//! WORK/<run-id>/<machine>/disk-<n>.qcow2 sparse data disks (/dev/vdb, /dev/vdc, ...)
//! WORK/<run-id>/<machine>/id_ed25519     the run's SSH key (public half via fw_cfg)
//! WORK/<run-id>/<machine>/known_hosts    the image's host key, pinned to the port
//! WORK/<run-id>/<machine>/qmp.sock, qemu.pid
//! WORK/<run-id>/<machine>/boot/vmlinuz   the kernel `boot_kernel` gave it (and initrd.img)
//! ```
//!
//! The serial console goes to `CONSOLE-DIR/<run-id>/console-<machine>.log`
//! when [`QemuSettings::console_dir`] is set (the runner points it at the
//! results store, so the console outlives the VM), else to
//! `WORK/<run-id>/<machine>/console.log`; `Machine.state["console"]` names it.
//!
//! The VM's process is only ever signalled after checking that
//! `/proc/<pid>/cmdline` carries the tag `btrfsqa-<run-id>-<machine>`, never
//! found by process name.

mod boot;
mod config;
mod console;
mod error;
pub mod image;
mod launch;
mod probe;
mod provision;
mod reap;
mod state;
mod teardown;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use btrfsqa_model::RunId;

use crate::CloudProvider;
use crate::error::{CommandError, ProvisionError, TeardownError};
use crate::machine::{BootKernel, Machine, MachineSpec, ReapItem};
pub use config::QemuConfig;
use console::{CONSOLE_TAIL, read_console_tail};
pub use error::ImageError;
pub use image::{ImageBuild, ImageInfo, ImagePaths, ImageSettings, build_image};
pub use launch::Accelerator;

const PROVIDER: &str = "qemu";
/// How many times a launch is retried when the forwarded port was taken.
const PORT_ATTEMPTS: u32 = 4;
/// How long a clean guest power-off may take before QEMU is told to quit
/// (a Debian guest under TCG powers off in a few seconds).
const POWERDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGKILLed QEMU may take to be gone (it unmaps guest memory).
const KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before launching again when a reset's port is still taken.
const PORT_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The line [`CloudProvider::reset`] appends to the console before booting
/// again: what comes before the last one is the boot that crashed or hung.
pub const RESET_SEPARATOR: &str = "=== btrfsqa: reset ===";

/// Which accelerator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM if a probe boot under KVM reaches userspace, else TCG.
    #[default]
    Auto,
    /// KVM, without probing.
    Kvm,
    /// TCG (`-accel tcg,thread=multi -cpu max`).
    Tcg,
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("`{other}` is not one of auto, kvm, tcg")),
        }
    }
}

/// Settings of the [`QemuProvider`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QemuSettings {
    /// Overlays, disks, keys and sockets (default `/var/tmp/btrfsqa-qemu`).
    pub work_dir: PathBuf,
    /// The guest image ([`image::build_image`] makes it).
    pub image: ImagePaths,
    /// Guest memory in MiB (default 2048).
    pub memory_mib: u32,
    /// Virtual CPUs (default 2).
    pub cpus: u32,
    /// The accelerator (default auto).
    pub accel: Accel,
    /// The kernel to boot first; default the image's own Debian kernel.
    pub kernel: Option<PathBuf>,
    /// Its initramfs; default the image's own when the kernel is the image's.
    pub initrd: Option<PathBuf>,
    /// Added to every kernel command line.
    pub extra_args: Option<String>,
    /// Where consoles go (`DIR/<run-id>/console-<machine>.log`); unset keeps
    /// them in the machine's work directory, deleted at teardown.
    pub console_dir: Option<PathBuf>,
    /// The QEMU binary (default `qemu-system-x86_64`).
    pub qemu: PathBuf,
}

impl QemuSettings {
    /// Settings with `work_dir`, the image from `BTRFSQA_QEMU_IMAGE` or the
    /// default cache, and defaults for the rest.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        QemuSettings {
            work_dir: work_dir.into(),
            image: ImagePaths::from_env_or_default(),
            memory_mib: 2048,
            cpus: 2,
            accel: Accel::Auto,
            kernel: None,
            initrd: None,
            extra_args: None,
            console_dir: None,
            qemu: PathBuf::from("qemu-system-x86_64"),
        }
    }
}

impl Default for QemuSettings {
    fn default() -> Self {
        QemuSettings::new("/var/tmp/btrfsqa-qemu")
    }
}

/// A local VM per machine: QEMU booting a qcow2 overlay of the cached guest
/// image, six sparse qcow2 data disks, SSH through a port forward bound to
/// 127.0.0.1 with a key made for the run. KVM when a probe boot proves it
/// works, TCG otherwise. Needs `qemu-system-x86_64`, `qemu-img` and
/// `ssh-keygen`, and an image (`btrfsqa image build`).
///
/// - `provision` makes the overlay, disks and key, launches QEMU daemonized,
///   and returns [`Access::Ssh`](crate::Access::Ssh) at once (the runner waits for SSH).
/// - `boot_kernel` powers the guest off and launches it again with another
///   `-kernel` (a copy kept in the machine's directory); disks and overlay
///   persist, the port stays the same.
/// - `reset` kills QEMU (SIGKILL) and launches it again as it was last
///   launched, after [`RESET_SEPARATOR`] on the console. A panicking guest
///   makes QEMU exit by itself (`panic=-1` with `-no-reboot`), a hung one
///   waits for the reset.
/// - `console` reads the serial console file (all boots, up to the last MiB).
/// - `teardown` quits QEMU over QMP (then SIGKILL, by recorded pid, after
///   checking the command line) and deletes the machine's directory.
/// - `reap` does the same for runs whose controller is gone (or the run named).
pub struct QemuProvider {
    inner: Arc<Inner>,
}

struct Inner {
    settings: QemuSettings,
}

impl std::fmt::Debug for QemuProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuProvider")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl QemuProvider {
    /// A provider with `settings`.
    pub fn new(settings: QemuSettings) -> Self {
        QemuProvider {
            inner: Arc::new(Inner { settings }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &QemuSettings {
        &self.inner.settings
    }

    /// The accelerator a machine would get now, and why (probing KVM once if
    /// `auto` and not yet cached).
    pub fn accelerator(&self) -> (Accelerator, String) {
        self.inner.accelerator()
    }

    /// The console file of a machine this provider made.
    pub fn console_path(machine: &Machine) -> Option<PathBuf> {
        machine
            .state
            .get("console")
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    died: impl FnOnce(tokio::task::JoinError) -> T,
) -> T {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(died)
}

#[async_trait::async_trait]
impl CloudProvider for QemuProvider {
    fn id(&self) -> &str {
        PROVIDER
    }

    async fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        let inner = self.inner.clone();
        let spec_owned = spec.clone();
        let leftover = self
            .inner
            .machine_dir(spec.run_id.as_str(), &spec.name)
            .display()
            .to_string();
        blocking(
            move || inner.provision(&spec_owned),
            |e| {
                Err(ProvisionError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: "provision (the worker died)".to_owned(),
                    leftovers: vec![leftover],
                    source: Box::new(e),
                })
            },
        )
        .await
    }

    async fn teardown(&self, machine: &Machine) -> Result<(), TeardownError> {
        let inner = self.inner.clone();
        let machine = machine.clone();
        blocking(
            move || inner.teardown(&machine),
            |e| {
                Err(TeardownError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: "tear down (the worker died)".to_owned(),
                    source: Box::new(e),
                })
            },
        )
        .await
    }

    async fn reap(
        &self,
        run: Option<RunId>,
        dry_run: bool,
    ) -> Result<Vec<ReapItem>, TeardownError> {
        let inner = self.inner.clone();
        blocking(
            move || inner.reap(run.as_ref(), dry_run),
            |e| {
                Err(TeardownError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: "reap (the worker died)".to_owned(),
                    source: Box::new(e),
                })
            },
        )
        .await
    }

    async fn boot_kernel(
        &self,
        machine: &Machine,
        kernel: &BootKernel,
    ) -> Result<(), ProvisionError> {
        let inner = self.inner.clone();
        let machine = machine.clone();
        let kernel = kernel.clone();
        blocking(
            move || inner.boot_kernel(&machine, &kernel),
            |e| {
                Err(ProvisionError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: "boot a kernel (the worker died)".to_owned(),
                    leftovers: Vec::new(),
                    source: Box::new(e),
                })
            },
        )
        .await
    }

    /// Kills QEMU (SIGKILL, whether the guest panicked, hangs or QEMU itself
    /// is wedged; nothing to do when it is already gone), appends
    /// [`RESET_SEPARATOR`] to the console and launches the VM again exactly
    /// as it was last launched: same kernel (the image's or the one
    /// `boot_kernel` gave it), command line, disks and SSH port.
    async fn reset(&self, machine: &Machine) -> Result<(), ProvisionError> {
        let inner = self.inner.clone();
        let machine = machine.clone();
        blocking(
            move || inner.reset(&machine),
            |e| {
                Err(ProvisionError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: "reset (the worker died)".to_owned(),
                    leftovers: Vec::new(),
                    source: Box::new(e),
                })
            },
        )
        .await
    }

    /// The serial console file, all boots of the machine one after the other
    /// (resets separated by [`RESET_SEPARATOR`]); when it is larger than
    /// 1 MiB, only its end, from the first whole line.
    async fn console(&self, machine: &Machine) -> Option<String> {
        let inner = self.inner.clone();
        let machine = machine.clone();
        blocking(
            move || {
                let path = inner
                    .state_of(&machine)
                    .map(|state| state.console)
                    .or_else(|| QemuProvider::console_path(&machine))?;
                read_console_tail(&path, CONSOLE_TAIL)
            },
            |_| None,
        )
        .await
    }
}

/// A failed step: what was being done, and why.
struct StepError {
    operation: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn step_err(operation: impl Into<String>) -> impl FnOnce(std::io::Error) -> StepError {
    let operation = operation.into();
    move |e| StepError {
        operation,
        source: Box::new(e),
    }
}

impl Inner {
    fn config_error(&self, message: String) -> ProvisionError {
        ProvisionError::Config {
            provider: PROVIDER.to_owned(),
            message,
        }
    }

    fn machine_dir(&self, run_id: &str, machine: &str) -> PathBuf {
        std::path::absolute(&self.settings.work_dir)
            .unwrap_or_else(|_| self.settings.work_dir.clone())
            .join(run_id)
            .join(machine)
    }

    fn accelerator(&self) -> (Accelerator, String) {
        match self.settings.accel {
            Accel::Kvm => (Accelerator::Kvm, "kvm asked for".to_owned()),
            Accel::Tcg => (Accelerator::Tcg, "tcg asked for".to_owned()),
            Accel::Auto => {
                let _ = std::fs::create_dir_all(&self.settings.work_dir);
                probe::auto_accelerator(
                    &self.settings.qemu,
                    launch::default_bios().as_deref(),
                    &self.settings.image,
                    &self.settings.work_dir,
                )
            }
        }
    }
}

fn memory_label(mib: u32) -> String {
    if mib % 1024 == 0 {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

fn is_safe_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn remove_if_empty(dir: &Path) {
    let _ = std::fs::remove_dir(dir);
}

/// Whether a launch failed because the forwarded port was taken.
fn is_port_clash(error: &CommandError) -> bool {
    error.stderr.contains("hostfwd") || error.stderr.contains("forwarding")
}

#[cfg(test)]
mod tests;
