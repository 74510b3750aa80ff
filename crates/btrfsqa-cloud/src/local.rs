//! The `local` provider: this machine, with loop devices on sparse files.
//!
//! Layout under the work directory `WORK` (default `/var/tmp/btrfsqa`):
//!
//! ```text
//! WORK/<run-id>/<machine>/machine.json     state, rewritten before every step
//! WORK/<run-id>/<machine>/disk-<n>.img     sparse backing files
//! WORK/<run-id>/<machine>/mnt/{test,scratch}
//! ```
//!
//! Everything is found again from the kernel's own lists (`losetup -l`,
//! mountinfo), never from device numbers alone, and only loop devices whose
//! backing file lies under `WORK/<run-id>/` are ever touched.

mod cleanup;
mod config;
mod parse;
mod state;
mod system;

#[cfg(test)]
mod fake;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use btrfsqa_model::RunId;

use crate::CloudProvider;
use crate::error::{CommandError, ProvisionError, TeardownError};
use crate::machine::{Access, Machine, MachineSpec, ReapAction, ReapItem};
use cleanup::{Found, Scope};
use state::{Attachment, Controller, LocalState, Phase};
use system::{HostSystem, System};

pub use config::LocalConfig;

const PROVIDER: &str = "local";

/// Settings of the [`LocalProvider`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalSettings {
    /// Where backing files, state files and mount points go
    /// (default `/var/tmp/btrfsqa`). Must be on a filesystem with sparse
    /// files; it should not be on tmpfs if devices are large.
    pub work_dir: PathBuf,
    /// How often to try `losetup --find` when another process takes the free
    /// device first (default 5).
    pub attach_attempts: u32,
    /// How long teardown waits for a detached loop device that another
    /// process holds open (a filesystem probe) to go (default 10 s).
    pub detach_timeout: Duration,
}

impl LocalSettings {
    /// Settings with `work_dir` and defaults for the rest.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        LocalSettings {
            work_dir: work_dir.into(),
            attach_attempts: 5,
            detach_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for LocalSettings {
    fn default() -> Self {
        LocalSettings::new("/var/tmp/btrfsqa")
    }
}

/// This machine as a test machine: [`Access::Local`], with the data devices
/// as loop devices on sparse files under the work directory. Needs root.
///
/// - `provision` makes `disk-<n>.img` files and attaches them; on failure it
///   undoes what it made (the error's `leftovers` name what it could not).
/// - `teardown` unmounts everything under the machine's directory or from
///   its devices (a last-resort lazy unmount is logged and reported),
///   forgets the devices' btrfs registrations, detaches them, checks with
///   the kernel that none is left, and deletes the files. Safe to repeat.
/// - `reap` does the same per run directory, for runs whose controller is
///   gone (or the run named), and reports each `mount`, `loop-device`,
///   `backing-file` and `work-dir` it found, plus a `run` item for each run
///   kept because its btrfsqa controller still runs.
pub struct LocalProvider {
    inner: Arc<Inner>,
}

struct Inner {
    settings: LocalSettings,
    sys: Arc<dyn System>,
}

impl LocalProvider {
    /// A provider with `settings`.
    pub fn new(settings: LocalSettings) -> Self {
        LocalProvider::with_system(settings, Arc::new(HostSystem))
    }

    fn with_system(settings: LocalSettings, sys: Arc<dyn System>) -> Self {
        LocalProvider {
            inner: Arc::new(Inner { settings, sys }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LocalSettings {
        &self.inner.settings
    }

    /// Makes the `nth` (0-based) loop-device attach of this provider fail, to
    /// test the undo of a provision that fails halfway.
    #[cfg(feature = "fault-injection")]
    pub fn fail_nth_attach(self, nth: usize) -> Self {
        let sys = Arc::new(system::FailAttach {
            inner: self.inner.sys.clone(),
            nth,
            count: Default::default(),
        });
        LocalProvider::with_system(self.inner.settings.clone(), sys)
    }
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl CloudProvider for LocalProvider {
    fn id(&self) -> &str {
        PROVIDER
    }

    async fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        let inner = self.inner.clone();
        let spec_owned = spec.clone();
        // The steps block (files, losetup); once started they run to the end
        // even if the caller stops waiting, so no half-made machine is left
        // without its state file.
        tokio::task::spawn_blocking(move || inner.provision(&spec_owned))
            .await
            .unwrap_or_else(|e| {
                Err(ProvisionError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: format!("provision `{}` (the worker died)", spec.name),
                    leftovers: vec![format!(
                        "whatever is under `{}`",
                        self.inner
                            .settings
                            .work_dir
                            .join(spec.run_id.as_str())
                            .join(&spec.name)
                            .display()
                    )],
                    source: Box::new(e),
                })
            })
    }

    async fn teardown(&self, machine: &Machine) -> Result<(), TeardownError> {
        let inner = self.inner.clone();
        let machine = machine.clone();
        tokio::task::spawn_blocking(move || inner.teardown(&machine))
            .await
            .unwrap_or_else(|e| {
                Err(TeardownError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: "tear down (the worker died)".to_owned(),
                    source: Box::new(e),
                })
            })
    }

    async fn reap(
        &self,
        run: Option<RunId>,
        dry_run: bool,
    ) -> Result<Vec<ReapItem>, TeardownError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.reap(run.as_ref(), dry_run))
            .await
            .unwrap_or_else(|e| {
                Err(TeardownError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: "reap (the worker died)".to_owned(),
                    source: Box::new(e),
                })
            })
    }
}

/// A provisioning step that failed.
struct StepError {
    operation: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StepError {
    fn new(operation: String, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StepError {
            operation,
            source: source.into(),
        }
    }
}

impl Inner {
    /// Every name the work directory goes by: canonical (as the kernel
    /// reports paths) first, then as configured, made absolute.
    fn roots(&self) -> Vec<PathBuf> {
        let configured = std::path::absolute(&self.settings.work_dir)
            .unwrap_or_else(|_| self.settings.work_dir.clone());
        let mut roots = Vec::new();
        if let Ok(canonical) = configured.canonicalize() {
            roots.push(canonical);
        }
        if !roots.contains(&configured) {
            roots.push(configured);
        }
        roots
    }

    fn config_error(&self, message: String) -> ProvisionError {
        ProvisionError::Config {
            provider: PROVIDER.to_owned(),
            message,
        }
    }

    fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        if spec.data_devices < 2 {
            return Err(self.config_error(format!(
                "`{}` data devices asked for, at least 2 needed (a test device and a scratch pool)",
                spec.data_devices
            )));
        }
        if spec.device_size == 0 || spec.device_size % 512 != 0 {
            return Err(self.config_error(format!(
                "device size `{}` is not a positive multiple of 512 bytes",
                spec.device_size
            )));
        }
        if !is_safe_name(&spec.name) {
            return Err(self.config_error(format!(
                "machine name `{}` must be 1 to 64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`",
                spec.name
            )));
        }
        if !self.sys.is_root() {
            return Err(self.config_error(
                "the local provider needs root for loop devices (run as root, or use the qemu provider)"
                    .to_owned(),
            ));
        }

        let failed = |operation: String, leftovers: Vec<String>, source| ProvisionError::Failed {
            provider: PROVIDER.to_owned(),
            operation,
            leftovers,
            source,
        };
        let work = &self.settings.work_dir;
        std::fs::create_dir_all(work).map_err(|e| {
            failed(
                format!("create the work directory `{}`", work.display()),
                Vec::new(),
                Box::new(e),
            )
        })?;
        let root = work.canonicalize().map_err(|e| {
            failed(
                format!("resolve the work directory `{}`", work.display()),
                Vec::new(),
                Box::new(e),
            )
        })?;
        let run_dir = root.join(spec.run_id.as_str());
        std::fs::create_dir_all(&run_dir).map_err(|e| {
            failed(
                format!("create `{}`", run_dir.display()),
                Vec::new(),
                Box::new(e),
            )
        })?;
        let dir = run_dir.join(&spec.name);
        // Never build into an existing directory: it belongs to a machine of
        // the same name, live or crashed, whose devices we must not adopt.
        if let Err(e) = std::fs::create_dir(&dir) {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                " (it already exists: a machine of that name in this run, or leftovers for `btrfsqa reap`)"
            } else {
                ""
            };
            remove_if_empty(&run_dir);
            return Err(failed(
                format!("create `{}`{hint}", dir.display()),
                Vec::new(),
                Box::new(e),
            ));
        }

        let mut state = LocalState {
            run_id: spec.run_id.to_string(),
            machine: spec.name.clone(),
            work_dir: dir.clone(),
            controller: self.controller(),
            phase: Phase::Provisioning,
            backing_files: Vec::new(),
            loop_devices: Vec::new(),
            mount_dirs: Vec::new(),
        };
        match self.build(spec, &dir, &mut state) {
            Ok(()) => {
                let devices: Vec<String> = state
                    .loop_devices
                    .iter()
                    .map(|a| a.device.clone())
                    .collect();
                Ok(Machine {
                    run_id: spec.run_id.clone(),
                    name: spec.name.clone(),
                    provider: PROVIDER.to_owned(),
                    provider_id: dir.display().to_string(),
                    access: Access::Local,
                    test_dev: devices[0].clone(),
                    scratch_devs: devices[1..].to_vec(),
                    work_dir: dir.display().to_string(),
                    instance_type: None,
                    state: serde_json::to_value(&state).unwrap_or_default(),
                })
            }
            Err(step) => {
                tracing::debug!(operation = %step.operation, "provisioning failed, undoing");
                let scope = Scope::new(vec![dir.clone()]);
                let leftovers: Vec<String> = cleanup::clean(
                    self.sys.as_ref(),
                    &scope,
                    &[state],
                    false,
                    self.settings.detach_timeout,
                )
                .iter()
                .filter_map(Found::leftover)
                .collect();
                remove_if_empty(&run_dir);
                Err(failed(step.operation, leftovers, step.source))
            }
        }
    }

    /// The steps of provisioning; the caller undoes them on failure.
    fn build(
        &self,
        spec: &MachineSpec,
        dir: &Path,
        state: &mut LocalState,
    ) -> Result<(), StepError> {
        let save = |state: &LocalState| {
            state.write(dir).map_err(|e| {
                StepError::new(format!("write the state file in `{}`", dir.display()), e)
            })
        };
        save(state)?;
        for n in 0..spec.data_devices {
            let file = dir.join(format!("disk-{n}.img"));
            state.backing_files.push(file.clone());
            save(state)?;
            create_sparse(&file, spec.device_size).map_err(|e| {
                StepError::new(
                    format!(
                        "create the `{}`-byte sparse file `{}`",
                        spec.device_size,
                        file.display()
                    ),
                    e,
                )
            })?;
            let device = self.attach(&file).map_err(|e| {
                StepError::new(format!("attach `{}` to a loop device", file.display()), e)
            })?;
            state.loop_devices.push(Attachment {
                device,
                backing_file: file,
            });
            save(state)?;
        }
        for name in ["test", "scratch"] {
            let mount_dir = dir.join("mnt").join(name);
            state.mount_dirs.push(mount_dir.clone());
            save(state)?;
            std::fs::create_dir_all(&mount_dir).map_err(|e| {
                StepError::new(
                    format!("create the mount point `{}`", mount_dir.display()),
                    e,
                )
            })?;
        }
        state.phase = Phase::Ready;
        save(state)
    }

    /// `losetup --find --show`, again when another process took the free
    /// device between losetup's search and its claim.
    fn attach(&self, file: &Path) -> Result<String, CommandError> {
        let attempts = self.settings.attach_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.sys.attach(file) {
                Ok(device) => return Ok(device),
                Err(e) if attempt < attempts && system::is_attach_race(&e) => {
                    tracing::debug!(file = %file.display(), error = %e, "lost a race for a loop device, retrying");
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn controller(&self) -> Controller {
        let pid = std::process::id();
        let process = self.sys.process(pid);
        Controller {
            pid,
            start_time: process.as_ref().map(|p| p.start_time),
            name: process.map(|p| p.exe.unwrap_or(p.comm)),
        }
    }

    fn teardown(&self, machine: &Machine) -> Result<(), TeardownError> {
        let leftovers = |leftovers| TeardownError::Leftovers {
            provider: PROVIDER.to_owned(),
            leftovers,
        };
        if machine.provider != PROVIDER {
            return Err(leftovers(vec![format!(
                "machine `{}`: made by provider `{}`, not `{PROVIDER}`; not touched",
                machine.name, machine.provider
            )]));
        }
        let roots = self.roots();
        let dirs: Vec<PathBuf> = roots
            .iter()
            .map(|root| root.join(machine.run_id.as_str()).join(&machine.name))
            .collect();
        // The Machine could come from anywhere (a stale file, another config):
        // only a directory of this provider's own layout is ever removed.
        if !is_safe_name(&machine.name) || !dirs.iter().any(|d| Path::new(&machine.work_dir) == d) {
            return Err(leftovers(vec![format!(
                "work-dir `{}`: not `{}`, refusing to touch it",
                machine.work_dir,
                dirs[0].display()
            )]));
        }
        let mut hints: Vec<LocalState> = serde_json::from_value(machine.state.clone())
            .into_iter()
            .collect();
        hints.extend(dirs.iter().filter_map(|d| LocalState::read(d)));

        let found = cleanup::clean(
            self.sys.as_ref(),
            &Scope::new(dirs),
            &hints,
            false,
            self.settings.detach_timeout,
        );
        for root in &roots {
            remove_if_empty(&root.join(machine.run_id.as_str()));
        }
        let failures: Vec<String> = found.iter().filter_map(Found::leftover).collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(leftovers(failures))
        }
    }

    fn reap(&self, run: Option<&RunId>, dry_run: bool) -> Result<Vec<ReapItem>, TeardownError> {
        let roots = self.roots();
        let mut runs: BTreeSet<RunId> = BTreeSet::new();
        for root in &roots {
            let entries = match std::fs::read_dir(root) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(TeardownError::Failed {
                        provider: PROVIDER.to_owned(),
                        operation: format!("read the work directory `{}`", root.display()),
                        source: Box::new(e),
                    });
                }
            };
            runs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| RunId::parse(e.file_name().to_str()?).ok()),
            );
        }
        // Devices whose files are gone (deleted, or the directory removed by
        // hand) are found only through the kernel's list.
        let devices = self.sys.loop_devices().map_err(|e| TeardownError::Failed {
            provider: PROVIDER.to_owned(),
            operation: "list loop devices".to_owned(),
            source: Box::new(e),
        })?;
        for device in &devices {
            runs.extend(
                roots
                    .iter()
                    .filter_map(|root| run_of(&device.back_file, root)),
            );
        }
        runs.retain(|r| run.is_none_or(|wanted| wanted == r));

        let mut items = Vec::new();
        for run_id in runs {
            let dirs: Vec<PathBuf> = roots
                .iter()
                .map(|root| root.join(run_id.as_str()))
                .collect();
            let hints: Vec<LocalState> = dirs.iter().flat_map(|d| states_in(d)).collect();
            if run.is_none() {
                if let Some(live) = hints
                    .iter()
                    .find_map(|h| self.live_controller(&h.controller))
                {
                    items.push(ReapItem {
                        provider: PROVIDER.to_owned(),
                        kind: "run".to_owned(),
                        id: dirs[0].display().to_string(),
                        run_id: Some(run_id.to_string()),
                        action: ReapAction::Kept(format!("its controller {live} is still running")),
                    });
                    continue;
                }
            }
            let found = cleanup::clean(
                self.sys.as_ref(),
                &Scope::new(dirs),
                &hints,
                dry_run,
                self.settings.detach_timeout,
            );
            items.extend(found.into_iter().map(|f| ReapItem {
                provider: PROVIDER.to_owned(),
                kind: f.kind.to_owned(),
                action: f.action(),
                id: f.id,
                run_id: Some(run_id.to_string()),
            }));
        }
        Ok(items)
    }

    /// `pid N (name)` when the controller is still running and is btrfsqa.
    fn live_controller(&self, controller: &Controller) -> Option<String> {
        let process = self.sys.process(controller.pid)?;
        if controller
            .start_time
            .is_some_and(|t| t != process.start_time)
        {
            return None; // the pid was reused
        }
        let names = [Some(&process.comm), process.exe.as_ref()];
        let is_btrfsqa = names.iter().flatten().any(|n| n.contains("btrfsqa"));
        is_btrfsqa.then(|| format!("pid `{}` (`{}`)", controller.pid, process.comm))
    }
}

/// The state files of the machines of a run directory.
fn states_in(run_dir: &Path) -> Vec<LocalState> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| LocalState::read(&e.path()))
        .collect()
}

/// The run a path under `root` belongs to: `root/<run-id>/...`, with at
/// least one component below the run directory.
fn run_of(path: &Path, root: &Path) -> Option<RunId> {
    let rest = path.strip_prefix(root).ok()?;
    let mut components = rest.components();
    let run = components.next()?.as_os_str().to_str()?;
    components.next()?;
    RunId::parse(run).ok()
}

/// Machine names become directory names: the rules of a run id.
fn is_safe_name(name: &str) -> bool {
    RunId::parse(name).is_ok()
}

fn create_sparse(file: &Path, size: u64) -> std::io::Result<()> {
    let handle = std::fs::File::create_new(file)?;
    handle.set_len(size)
}

fn remove_if_empty(dir: &Path) {
    // Fails when another machine of the run still lives there: as it should.
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests;
