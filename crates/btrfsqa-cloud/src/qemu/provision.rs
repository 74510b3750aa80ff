//! Making a machine: its directory, SSH key, overlay and data disks, then
//! the first launch of its VM on a free port.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{CommandError, ProvisionError};
use crate::machine::{Access, Machine, MachineSpec, SshEndpoint};
use crate::tool::{find_tool, run_tool};

use super::launch::LaunchSpec;
use super::state::{Controller, QemuState};
use super::{
    Inner, PORT_ATTEMPTS, PROVIDER, StepError, is_port_clash, is_safe_name, launch, memory_label,
    probe, remove_if_empty, step_err,
};

impl Inner {
    pub(super) fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
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
    pub(super) fn build(
        &self,
        spec: &MachineSpec,
        state: &mut QemuState,
    ) -> Result<(String, u16), StepError> {
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
    pub(super) fn launch(&self, spec: &LaunchSpec) -> Result<u32, CommandError> {
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
}
