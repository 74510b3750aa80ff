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

mod error;
pub mod image;
mod launch;
mod probe;
mod state;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use btrfsqa_model::RunId;

use crate::CloudProvider;
use crate::error::{CommandError, ProvisionError, TeardownError};
use crate::machine::{Access, BootKernel, Machine, MachineSpec, ReapAction, ReapItem, SshEndpoint};
use crate::tool::{find_tool, run_tool};
pub use error::ImageError;
pub use image::{ImageBuild, ImageInfo, ImagePaths, ImageSettings, build_image};
pub use launch::Accelerator;
use launch::LaunchSpec;
use state::{Controller, QemuState};

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
/// At most this much of the end of a console is returned by
/// [`CloudProvider::console`].
const CONSOLE_TAIL: u64 = 1 << 20;

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
///   and returns [`Access::Ssh`] at once (the runner waits for SSH).
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

/// How [`Inner::stop`] ends a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The ACPI power button, so the guest shuts down cleanly; then `Quit`.
    PowerOff,
    /// QMP `quit` (QEMU closes its disks); then `Kill`.
    Quit,
    /// SIGKILL at once: a power cut for the guest.
    Kill,
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

    fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        if !(2..=24).contains(&spec.data_devices) {
            return Err(self.config_error(format!(
                "`{}` data devices asked for, 2 to 24 possible (a test device and a scratch pool)",
                spec.data_devices
            )));
        }
        if spec.device_size == 0 {
            return Err(self.config_error("device size `0` asked for".to_owned()));
        }
        if !is_safe_name(&spec.name) {
            return Err(self.config_error(format!(
                "machine name `{}` must be 1 to 64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`",
                spec.name
            )));
        }
        let image = &self.settings.image;
        if !image.is_complete() {
            return Err(self.config_error(format!(
                "no complete guest image in `{}`: run `btrfsqa image build`",
                image.dir.display()
            )));
        }
        for tool in [
            self.settings.qemu.display().to_string(),
            "qemu-img".to_owned(),
            "ssh-keygen".to_owned(),
        ] {
            if find_tool(&tool).is_none() {
                return Err(self.config_error(format!(
                    "`{tool}` is not installed (scripts/install-deps.sh qemu)"
                )));
            }
        }
        let dir = self.machine_dir(spec.run_id.as_str(), &spec.name);
        let run_dir = dir.parent().map(Path::to_owned).unwrap_or_default();
        let failed = |operation: String, leftovers: Vec<String>, source| ProvisionError::Failed {
            provider: PROVIDER.to_owned(),
            operation,
            leftovers,
            source,
        };
        std::fs::create_dir_all(&run_dir).map_err(|e| {
            failed(
                format!("create `{}`", run_dir.display()),
                Vec::new(),
                Box::new(e),
            )
        })?;
        if let Err(e) = std::fs::create_dir(&dir) {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (it already exists: a machine of that name in this run, or leftovers for `btrfsqa reap`)"
            } else {
                ""
            };
            return Err(failed(
                format!("create `{}`{hint}", dir.display()),
                Vec::new(),
                Box::new(e),
            ));
        }
        let console = match &self.settings.console_dir {
            Some(console_dir) => console_dir
                .join(spec.run_id.as_str())
                .join(format!("console-{}.log", spec.name)),
            None => dir.join("console.log"),
        };
        let mut state = QemuState {
            run_id: spec.run_id.to_string(),
            machine: spec.name.clone(),
            dir: dir.clone(),
            controller: Controller::current(),
            pid: None,
            launch: None,
            console,
        };
        match self.build(spec, &mut state) {
            Ok((accel_detail, port)) => {
                let launch = state.launch.as_ref().expect("set by build");
                let letters: Vec<String> = (0..spec.data_devices)
                    .map(|i| format!("/dev/vd{}", (b'b' + i as u8) as char))
                    .collect();
                let instance_type = format!(
                    "qemu-{} {}cpu {}",
                    launch.accel.as_str(),
                    launch.cpus,
                    memory_label(launch.memory_mib)
                );
                let mut json = serde_json::to_value(&state).unwrap_or_default();
                if let Some(map) = json.as_object_mut() {
                    map.insert("accel".into(), launch.accel.as_str().into());
                    map.insert("accel-detail".into(), accel_detail.into());
                }
                Ok(Machine {
                    run_id: spec.run_id.clone(),
                    name: spec.name.clone(),
                    provider: PROVIDER.to_owned(),
                    provider_id: dir.display().to_string(),
                    access: Access::Ssh(SshEndpoint {
                        host: "127.0.0.1".to_owned(),
                        port,
                        user: "root".to_owned(),
                        identity_file: Some(dir.join("id_ed25519")),
                        known_hosts_file: Some(dir.join("known_hosts")),
                    }),
                    test_dev: letters[0].clone(),
                    scratch_devs: letters[1..].to_vec(),
                    work_dir: "/var/tmp/btrfsqa".to_owned(),
                    instance_type: Some(instance_type),
                    state: json,
                })
            }
            Err(step) => {
                tracing::debug!(operation = %step.operation, "provisioning failed, undoing");
                let leftovers = self.destroy(&state);
                remove_if_empty(&run_dir);
                Err(failed(step.operation, leftovers, step.source))
            }
        }
    }

    /// Makes the machine's files and launches it; returns the accelerator's
    /// reason and the SSH port.
    fn build(&self, spec: &MachineSpec, state: &mut QemuState) -> Result<(String, u16), StepError> {
        let dir = state.dir.clone();
        state.write().map_err(step_err(format!(
            "write `{}`",
            dir.join("machine.json").display()
        )))?;
        if let Some(parent) = state.console.parent() {
            std::fs::create_dir_all(parent)
                .map_err(step_err(format!("create `{}`", parent.display())))?;
        }
        let key = dir.join("id_ed25519");
        run_tool(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &format!("btrfsqa-{}", state.run_id),
                "-f",
                &key.display().to_string(),
            ],
        )
        .map_err(|e| StepError {
            operation: "make the run's SSH key".to_owned(),
            source: Box::new(e),
        })?;
        let image = &self.settings.image;
        let base = std::path::absolute(image.rootfs()).unwrap_or(image.rootfs());
        let overlay = dir.join("root.qcow2");
        run_tool(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                &base.display().to_string(),
                &overlay.display().to_string(),
            ],
        )
        .map_err(|e| StepError {
            operation: "create the root overlay".to_owned(),
            source: Box::new(e),
        })?;
        let mut disks = vec![overlay];
        for n in 0..spec.data_devices {
            let disk = dir.join(format!("disk-{n}.qcow2"));
            run_tool(
                "qemu-img",
                &[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    &disk.display().to_string(),
                    &spec.device_size.to_string(),
                ],
            )
            .map_err(|e| StepError {
                operation: format!("create data disk `{}`", disk.display()),
                source: Box::new(e),
            })?;
            disks.push(disk);
        }
        let (accel, accel_detail) = self.accelerator();
        let (kernel, initrd) = match &self.settings.kernel {
            Some(kernel) => (kernel.clone(), self.settings.initrd.clone()),
            None => (image.kernel(), Some(image.initrd())),
        };
        let tag = state.tag();
        let host_key = std::fs::read_to_string(image.host_key())
            .map_err(step_err(format!("read `{}`", image.host_key().display())))?;
        let host_key = host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        // The guest is only ever reached with its key pinned: an image
        // without one is broken, not a machine to trust at first contact.
        if !host_key.contains(' ') {
            return Err(step_err(format!("read `{}`", image.host_key().display()))(
                std::io::Error::new(std::io::ErrorKind::InvalidData, "it holds no public key"),
            ));
        }
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = launch::free_port().map_err(step_err("find a free port on 127.0.0.1"))?;
            std::fs::write(
                dir.join("known_hosts"),
                format!("[127.0.0.1]:{port} {host_key}\n"),
            )
            .map_err(step_err("write known_hosts"))?;
            let spec = LaunchSpec {
                tag: tag.clone(),
                accel,
                memory_mib: self.settings.memory_mib,
                cpus: self.settings.cpus,
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                append: launch::kernel_cmdline(&tag, self.settings.extra_args.as_deref()),
                disks: disks.clone(),
                ssh_port: port,
                console: state.console.clone(),
                qmp: dir.join("qmp.sock"),
                pidfile: dir.join("qemu.pid"),
                authorized_keys: dir.join("id_ed25519.pub"),
                bios: launch::default_bios(),
            };
            state.launch = Some(spec.clone());
            state.write().map_err(step_err("write the machine state"))?;
            match self.launch(&spec) {
                Ok(pid) => {
                    state.pid = Some(pid);
                    state.write().map_err(step_err("write the machine state"))?;
                    return Ok((accel_detail, port));
                }
                Err(e) if is_port_clash(&e) => {
                    last_error = Some(e);
                }
                Err(e) => {
                    return Err(StepError {
                        operation: "launch qemu".to_owned(),
                        source: Box::new(e),
                    });
                }
            }
        }
        Err(StepError {
            operation: format!("launch qemu (no free port after {PORT_ATTEMPTS} tries)"),
            source: Box::new(last_error.expect("at least one attempt")),
        })
    }

    /// Starts QEMU daemonized; returns its pid once it runs.
    fn launch(&self, spec: &LaunchSpec) -> Result<u32, CommandError> {
        let args = launch::qemu_args(spec);
        let program = find_tool(&self.settings.qemu.display().to_string())
            .unwrap_or_else(|| self.settings.qemu.clone());
        let line = format!("{} {}", program.display(), args.join(" "));
        tracing::debug!(command = %line, "launching");
        let _ = std::fs::remove_file(&spec.pidfile);
        let _ = std::fs::remove_file(&spec.qmp);
        // With -daemonize the parent exits once the VM is set up, so its
        // status and stderr tell whether the launch worked.
        let output = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| CommandError {
                command: line.clone(),
                status: None,
                stderr: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(CommandError {
                command: line,
                status: output.status.code(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        match launch::read_pidfile(&spec.pidfile) {
            Some(pid) if launch::process_has_tag(pid, &spec.tag) => Ok(pid),
            _ => Err(CommandError {
                command: line,
                status: Some(0),
                stderr: format!(
                    "no running qemu behind `{}`: {}",
                    spec.pidfile.display(),
                    probe::last_lines(
                        &std::fs::read_to_string(&spec.console).unwrap_or_default(),
                        3
                    )
                ),
            }),
        }
    }

    /// Stops the VM of `state` if it runs; `Err` names what is left.
    fn stop(&self, state: &QemuState, how: Stop) -> Result<(), String> {
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
    fn destroy(&self, state: &QemuState) -> Vec<String> {
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

    fn state_of(&self, machine: &Machine) -> Option<QemuState> {
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

    fn teardown(&self, machine: &Machine) -> Result<(), TeardownError> {
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

    fn boot_kernel(&self, machine: &Machine, kernel: &BootKernel) -> Result<(), ProvisionError> {
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

    fn reset(&self, machine: &Machine) -> Result<(), ProvisionError> {
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
    fn launched_state(&self, machine: &Machine) -> Result<QemuState, ProvisionError> {
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

    fn reap(&self, run: Option<&RunId>, dry_run: bool) -> Result<Vec<ReapItem>, TeardownError> {
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

/// Appends `line` to the console file on a line of its own.
fn append_console_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut text = String::new();
    if file.metadata()?.len() > 0 {
        // The crashed boot may have stopped mid-line.
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    file.write_all(text.as_bytes())
}

/// The end of a console file, at most `limit` bytes, starting at a line
/// when cut; `None` when there is no such file.
fn read_console_tail(path: &Path, limit: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), error = %e, "console not readable");
            }
            return None;
        }
    };
    let len = file.metadata().ok()?.len();
    let cut = len > limit;
    if cut {
        file.seek(SeekFrom::Start(len - limit)).ok()?;
    }
    let mut bytes = Vec::new();
    // `take`: the VM may still be writing.
    file.take(limit).read_to_end(&mut bytes).ok()?;
    if cut && let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
        bytes.drain(..=newline);
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Where `boot_kernel` keeps the kernel the VM boots: `DIR/boot/`.
const BOOT_DIR: &str = "boot";

/// Copies `kernel`'s image and initrd to `dir/boot/vmlinuz` and
/// `dir/boot/initrd.img` (each through a temporary file, renamed once both
/// are copied); returns the copies.
fn keep_boot_files(dir: &Path, kernel: &BootKernel) -> std::io::Result<(PathBuf, Option<PathBuf>)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(work: &Path, image: &Path) -> QemuSettings {
        let mut settings = QemuSettings::new(work);
        settings.image = ImagePaths::new(image);
        settings.accel = Accel::Tcg;
        settings
    }

    #[test]
    fn accel_parses_its_three_modes() {
        assert_eq!("auto".parse::<Accel>(), Ok(Accel::Auto));
        assert_eq!("kvm".parse::<Accel>(), Ok(Accel::Kvm));
        assert_eq!("tcg".parse::<Accel>(), Ok(Accel::Tcg));
        assert!("hvf".parse::<Accel>().unwrap_err().contains("`hvf`"));
    }

    #[test]
    fn memory_labels_are_short() {
        assert_eq!(memory_label(2048), "2G");
        assert_eq!(memory_label(1536), "1536M");
    }

    #[tokio::test]
    async fn provisioning_without_an_image_says_how_to_make_one() {
        let work = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(settings(work.path(), &work.path().join("no-image")));
        let spec = MachineSpec::new(RunId::parse("20261124-100000-ab12").unwrap(), "qemu-0");
        let err = provider.provision(&spec).await.unwrap_err();
        assert!(err.to_string().contains("btrfsqa image build"), "{err}");
        assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn bad_requests_are_refused_before_anything_is_made() {
        let work = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(settings(work.path(), work.path()));
        let mut spec = MachineSpec::new(RunId::parse("20261124-100000-ab12").unwrap(), "qemu-0");
        spec.data_devices = 1;
        assert!(matches!(
            provider.provision(&spec).await,
            Err(ProvisionError::Config { .. })
        ));
        spec.data_devices = 6;
        spec.name = "../x".into();
        assert!(matches!(
            provider.provision(&spec).await,
            Err(ProvisionError::Config { .. })
        ));
    }

    #[tokio::test]
    async fn teardown_of_a_machine_that_is_gone_is_a_no_op_and_foreign_dirs_are_refused() {
        let work = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(settings(work.path(), work.path()));
        let run_id = RunId::parse("20261124-100000-ab12").unwrap();
        let mut machine = Machine {
            run_id: run_id.clone(),
            name: "qemu-0".into(),
            provider: PROVIDER.into(),
            provider_id: "x".into(),
            access: Access::Local,
            test_dev: "/dev/vdb".into(),
            scratch_devs: vec![],
            work_dir: "/var/tmp/btrfsqa".into(),
            instance_type: None,
            state: serde_json::Value::Null,
        };
        provider.teardown(&machine).await.unwrap();
        provider.teardown(&machine).await.unwrap();

        // A state that points elsewhere is never followed.
        let elsewhere = tempfile::tempdir().unwrap();
        let state = QemuState {
            run_id: run_id.to_string(),
            machine: "qemu-0".into(),
            dir: elsewhere.path().to_owned(),
            controller: Controller::current(),
            pid: None,
            launch: None,
            console: elsewhere.path().join("console.log"),
        };
        machine.state = serde_json::to_value(&state).unwrap();
        assert!(provider.teardown(&machine).await.is_err());
        assert!(elsewhere.path().exists());
    }

    #[tokio::test]
    async fn reap_keeps_live_runs_and_deletes_dead_ones() {
        let work = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(settings(work.path(), work.path()));
        let make = |run: &str, controller: Controller| {
            let dir = provider.inner.machine_dir(run, "qemu-0");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("disk-0.qcow2"), "x").unwrap();
            QemuState {
                run_id: run.into(),
                machine: "qemu-0".into(),
                dir: dir.clone(),
                controller,
                // A pid that is not a VM of this run: never signalled.
                pid: Some(std::process::id()),
                launch: None,
                console: dir.join("console.log"),
            }
            .write()
            .unwrap();
            dir
        };
        let live = make("20261124-100000-aaaa", Controller::current());
        let dead = make(
            "20261124-100000-bbbb",
            Controller {
                pid: u32::MAX - 1,
                start_time: Some(1),
            },
        );
        let dry = provider.reap(None, true).await.unwrap();
        assert!(
            dry.iter()
                .any(|i| i.kind == "run" && matches!(i.action, ReapAction::Kept(_)))
        );
        assert!(
            dry.iter()
                .any(|i| i.kind == "work-dir" && i.action == "would delete")
        );
        assert!(!dry.iter().any(|i| i.kind == "qemu-process"), "{dry:?}");
        assert!(dead.exists());

        let done = provider.reap(None, false).await.unwrap();
        assert!(
            done.iter()
                .any(|i| i.kind == "work-dir" && i.action == "deleted")
        );
        assert!(!dead.exists());
        assert!(!dead.parent().unwrap().exists());
        assert!(live.exists());

        // Naming the run reaps it even while its controller lives.
        let run = RunId::parse("20261124-100000-aaaa").unwrap();
        provider.reap(Some(run), false).await.unwrap();
        assert!(!live.exists());
    }

    #[tokio::test]
    async fn boot_kernel_needs_a_launched_machine_and_an_existing_image() {
        let work = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(settings(work.path(), work.path()));
        let dir = provider.inner.machine_dir("20261124-100000-ab12", "qemu-0");
        std::fs::create_dir_all(&dir).unwrap();
        let state = QemuState {
            run_id: "20261124-100000-ab12".into(),
            machine: "qemu-0".into(),
            dir: dir.clone(),
            controller: Controller::current(),
            pid: None,
            launch: None,
            console: dir.join("console.log"),
        };
        state.write().unwrap();
        let machine = Machine {
            run_id: RunId::parse("20261124-100000-ab12").unwrap(),
            name: "qemu-0".into(),
            provider: PROVIDER.into(),
            provider_id: dir.display().to_string(),
            access: Access::Local,
            test_dev: "/dev/vdb".into(),
            scratch_devs: vec![],
            work_dir: "/var/tmp/btrfsqa".into(),
            instance_type: None,
            state: serde_json::to_value(&state).unwrap(),
        };
        let kernel = BootKernel {
            image: work.path().join("bzImage"),
            initrd: None,
            extra_args: None,
            release: "6.1.192".into(),
        };
        let err = provider.boot_kernel(&machine, &kernel).await.unwrap_err();
        assert!(err.to_string().contains("never launched"), "{err}");
    }

    const RUN: &str = "20261124-100000-ab12";

    /// A machine of `provider` whose directory and state file exist, launched
    /// with `launch` (or never).
    fn machine_with_state(provider: &QemuProvider, launch: Option<LaunchSpec>) -> Machine {
        let dir = provider.inner.machine_dir(RUN, "qemu-0");
        std::fs::create_dir_all(&dir).unwrap();
        let state = QemuState {
            run_id: RUN.into(),
            machine: "qemu-0".into(),
            dir: dir.clone(),
            controller: Controller::current(),
            pid: None,
            launch,
            console: dir.join("console.log"),
        };
        state.write().unwrap();
        Machine {
            run_id: RunId::parse(RUN).unwrap(),
            name: "qemu-0".into(),
            provider: PROVIDER.into(),
            provider_id: dir.display().to_string(),
            access: Access::Local,
            test_dev: "/dev/vdb".into(),
            scratch_devs: vec![],
            work_dir: "/var/tmp/btrfsqa".into(),
            instance_type: None,
            state: serde_json::to_value(&state).unwrap(),
        }
    }

    /// A launch spec whose files exist (empty) in the machine's directory.
    fn launch_spec(provider: &QemuProvider) -> LaunchSpec {
        let dir = provider.inner.machine_dir(RUN, "qemu-0");
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str| {
            let path = dir.join(name);
            std::fs::write(&path, "").unwrap();
            path
        };
        let tag = state::tag(RUN, "qemu-0");
        LaunchSpec {
            tag: tag.clone(),
            accel: Accelerator::Tcg,
            memory_mib: 512,
            cpus: 1,
            kernel: file("vmlinuz"),
            initrd: None,
            append: launch::kernel_cmdline(&tag, None),
            disks: vec![file("root.qcow2"), file("disk-0.qcow2")],
            ssh_port: 40022,
            console: dir.join("console.log"),
            qmp: dir.join("qmp.sock"),
            pidfile: dir.join("qemu.pid"),
            authorized_keys: file("id_ed25519.pub"),
            bios: None,
        }
    }

    #[tokio::test]
    async fn reset_needs_a_launched_machine_that_still_has_its_files() {
        let work = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(settings(work.path(), work.path()));
        let machine = machine_with_state(&provider, None);
        let err = provider.reset(&machine).await.unwrap_err();
        assert!(matches!(err, ProvisionError::Config { .. }), "{err}");
        assert!(err.to_string().contains("never launched"), "{err}");

        let spec = launch_spec(&provider);
        let machine = machine_with_state(&provider, Some(spec.clone()));
        std::fs::remove_file(&spec.disks[1]).unwrap();
        let err = provider.reset(&machine).await.unwrap_err();
        assert!(err.to_string().contains("disk-0.qcow2` is gone"), "{err}");

        std::fs::remove_dir_all(work.path().join(RUN)).unwrap();
        let err = provider.reset(&machine).await.unwrap_err();
        assert!(err.to_string().contains("torn down or reaped"), "{err}");
        assert!(!work.path().join(RUN).exists(), "nothing made");
    }

    #[tokio::test]
    async fn console_is_none_without_a_file_and_the_file_otherwise() {
        let work = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(settings(work.path(), work.path()));
        let machine = machine_with_state(&provider, None);
        assert_eq!(provider.console(&machine).await, None);
        let console = QemuProvider::console_path(&machine).unwrap();
        std::fs::write(&console, b"Linux version 6.1\r\nbad \xff byte\r\n").unwrap();
        assert_eq!(
            provider.console(&machine).await.as_deref(),
            Some("Linux version 6.1\r\nbad \u{fffd} byte\r\n")
        );
        // Torn down: the state in the Machine still names the console.
        std::fs::remove_file(
            provider
                .inner
                .machine_dir(RUN, "qemu-0")
                .join(state::STATE_FILE),
        )
        .unwrap();
        assert!(provider.console(&machine).await.is_some());
        // A machine that is not one of ours has no console.
        let mut foreign = machine.clone();
        foreign.state = serde_json::Value::Null;
        foreign.name = "qemu-9".into();
        assert_eq!(provider.console(&foreign).await, None);
    }

    #[test]
    fn a_long_console_is_cut_to_its_end_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "first line\nsecond line\nthird\n").unwrap();
        assert_eq!(
            read_console_tail(&path, 16).as_deref(),
            Some("third\n"),
            "the cut `ine\\n` is dropped"
        );
        assert_eq!(
            read_console_tail(&path, 1000).as_deref(),
            Some("first line\nsecond line\nthird\n")
        );
        assert_eq!(read_console_tail(&dir.path().join("none"), 16), None);
    }

    #[test]
    fn the_reset_separator_goes_on_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("console.log");
        append_console_line(&path, RESET_SEPARATOR).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"[ 1.0] sysrq: Trigger a cr"))
            .unwrap();
        append_console_line(&path, RESET_SEPARATOR).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{RESET_SEPARATOR}\n[ 1.0] sysrq: Trigger a cr\n{RESET_SEPARATOR}\n")
        );
    }

    #[test]
    fn boot_files_are_copied_into_the_machine_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        std::fs::write(store.path().join("bzImage"), "kernel 1").unwrap();
        std::fs::write(store.path().join("initrd"), "initrd 1").unwrap();
        let mut kernel = BootKernel {
            image: store.path().join("bzImage"),
            initrd: Some(store.path().join("initrd")),
            extra_args: None,
            release: "6.1.192".into(),
        };
        let (image, initrd) = keep_boot_files(dir.path(), &kernel).unwrap();
        assert_eq!(image, dir.path().join("boot/vmlinuz"));
        assert_eq!(std::fs::read_to_string(&image).unwrap(), "kernel 1");
        assert_eq!(
            std::fs::read_to_string(initrd.unwrap()).unwrap(),
            "initrd 1"
        );
        // The store entry is rebuilt: the VM's copy is not.
        std::fs::write(store.path().join("bzImage"), "kernel 2").unwrap();
        assert_eq!(std::fs::read_to_string(&image).unwrap(), "kernel 1");

        kernel.initrd = None;
        let (image, initrd) = keep_boot_files(dir.path(), &kernel).unwrap();
        assert_eq!(std::fs::read_to_string(&image).unwrap(), "kernel 2");
        assert_eq!(initrd, None);
        assert!(!dir.path().join("boot/initrd.img").exists());

        kernel.image = store.path().join("missing");
        assert!(keep_boot_files(dir.path(), &kernel).is_err());
        assert_eq!(std::fs::read_to_string(&image).unwrap(), "kernel 2");
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("boot"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["vmlinuz"], "no temporary file is left");
    }

    /// A stand-in for QEMU: daemonizes a shell loop whose command line
    /// carries the VM's tag, writes its pidfile, and a line to the console.
    const FAKE_QEMU: &str = r#"#!/bin/sh
if [ "$1" = --vm ]; then
    while :; do sleep 1; done
fi
prev=
for arg in "$@"; do
    case "$prev" in
        -pidfile) pidfile=$arg ;;
        -chardev) console=${arg#*path=}; console=${console%,append=on} ;;
    esac
    prev=$arg
done
echo "fake boot" >> "$console"
"$0" --vm "$@" </dev/null >/dev/null 2>&1 &
echo $! > "$pidfile"
"#;

    /// Kills what the fake QEMU left running, also when the test fails.
    struct StopFake<'a>(&'a QemuProvider, Machine);

    impl Drop for StopFake<'_> {
        fn drop(&mut self) {
            let _ = self.0.inner.teardown(&self.1);
        }
    }

    #[tokio::test]
    async fn reset_kills_a_running_vm_or_relaunches_a_dead_one_and_keeps_the_console() {
        let work = tempfile::tempdir().unwrap();
        let fake = work.path().join("fake-qemu");
        std::fs::write(&fake, FAKE_QEMU).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut settings = settings(work.path(), work.path());
        settings.qemu = fake;
        let provider = QemuProvider::new(settings);
        let spec = launch_spec(&provider);
        let machine = machine_with_state(&provider, Some(spec.clone()));
        let _stop = StopFake(&provider, machine.clone());
        let dir = provider.inner.machine_dir(RUN, "qemu-0");
        let current_pid = || QemuState::read(&dir).unwrap().pid.expect("a pid");

        // Never running (say it was killed before the state knew its pid).
        provider.reset(&machine).await.unwrap();
        let first = current_pid();
        assert!(launch::process_has_tag(first, &spec.tag));

        // Running (a hung guest): killed, and another one launched.
        provider.reset(&machine).await.unwrap();
        let second = current_pid();
        assert_ne!(first, second);
        assert!(
            !launch::process_has_tag(first, &spec.tag),
            "the old VM is gone"
        );
        assert!(launch::process_has_tag(second, &spec.tag));

        // Killed by someone else: just launched again.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(second as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert!(launch::wait_gone(
            second,
            &spec.tag,
            Duration::from_secs(10)
        ));
        provider.reset(&machine).await.unwrap();
        let third = current_pid();
        assert!(launch::process_has_tag(third, &spec.tag));

        let console = provider.console(&machine).await.unwrap();
        let boot = format!("{RESET_SEPARATOR}\nfake boot\n");
        assert_eq!(console, boot.repeat(3));

        // Teardown finds the VM of the last reset.
        provider.teardown(&machine).await.unwrap();
        assert!(!launch::process_has_tag(third, &spec.tag));
        assert!(!dir.exists());
    }
}
