//! The QEMU command line (pure), and the processes and sockets around it:
//! QMP, pid checks by command line, free ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The accelerator a VM runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accelerator {
    /// Hardware virtualization.
    Kvm,
    /// QEMU's own CPU emulation.
    Tcg,
}

impl Accelerator {
    /// `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// Everything one launch of a VM needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct LaunchSpec {
    /// Appears in the process name and command line: how teardown and reap
    /// recognise the process as this run's before signalling it.
    pub tag: String,
    /// The accelerator.
    pub accel: Accelerator,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// The kernel to boot.
    pub kernel: PathBuf,
    /// Its initramfs, if it needs one.
    pub initrd: Option<PathBuf>,
    /// The full kernel command line.
    pub append: String,
    /// The root disk (the run's overlay) first, then the data disks.
    pub disks: Vec<PathBuf>,
    /// Host port forwarded to the guest's port 22, on 127.0.0.1.
    pub ssh_port: u16,
    /// The serial console file (appended to across relaunches).
    pub console: PathBuf,
    /// The QMP socket.
    pub qmp: PathBuf,
    /// The pid file.
    pub pidfile: PathBuf,
    /// The file passed as fw_cfg `opt/btrfsqa/authorized_keys`.
    pub authorized_keys: PathBuf,
    /// The firmware (`qboot.rom` when installed: it boots `-kernel` fastest).
    pub bios: Option<PathBuf>,
}

/// The kernel command line for a guest whose root is `/dev/vda`.
pub(crate) fn kernel_cmdline(tag: &str, extra: Option<&str>) -> String {
    // panic=-1 reboots at once on a panic and -no-reboot turns that into
    // QEMU exiting, so a crashed kernel ends the VM with the oops on the console.
    let mut line = format!(
        "root=/dev/vda rw console=ttyS0,115200 panic=-1 net.ifnames=0 \
         systemd.show_status=1 btrfsqa.tag={tag}"
    );
    if let Some(extra) = extra.map(str::trim).filter(|e| !e.is_empty()) {
        line.push(' ');
        line.push_str(extra);
    }
    line
}

/// The arguments after the program name.
pub(crate) fn qemu_args(spec: &LaunchSpec) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| (*s).to_owned()));
    push(&["-name", &format!("{},process={}", spec.tag, spec.tag)]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-no-reboot", "-daemonize"]);
    match spec.accel {
        Accelerator::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        Accelerator::Tcg => push(&["-accel", "tcg,thread=multi", "-cpu", "max"]),
    }
    push(&["-m", &spec.memory_mib.to_string()]);
    push(&["-smp", &spec.cpus.to_string()]);
    if let Some(bios) = &spec.bios {
        push(&["-bios", &bios.display().to_string()]);
    }
    push(&["-kernel", &spec.kernel.display().to_string()]);
    if let Some(initrd) = &spec.initrd {
        push(&["-initrd", &initrd.display().to_string()]);
    }
    push(&["-append", &spec.append]);
    for (i, disk) in spec.disks.iter().enumerate() {
        // Everything is disposable: flushes are not worth their time.
        push(&[
            "-drive",
            &format!(
                "file={},if=virtio,format=qcow2,cache=unsafe,discard=unmap,index={i}",
                escape_option(&disk.display().to_string())
            ),
        ]);
    }
    push(&[
        "-netdev",
        &format!("user,id=net0,hostfwd=tcp:127.0.0.1:{}-:22", spec.ssh_port),
    ]);
    // No option ROM: nothing boots from the network.
    push(&["-device", "virtio-net-pci,netdev=net0,romfile="]);
    push(&["-device", "virtio-rng-pci"]);
    push(&[
        "-chardev",
        &format!(
            "file,id=console0,path={},append=on",
            escape_option(&spec.console.display().to_string())
        ),
    ]);
    push(&["-serial", "chardev:console0"]);
    push(&[
        "-qmp",
        &format!(
            "unix:{},server=on,wait=off",
            escape_option(&spec.qmp.display().to_string())
        ),
    ]);
    push(&["-pidfile", &spec.pidfile.display().to_string()]);
    push(&[
        "-fw_cfg",
        &format!(
            "name={},file={}",
            super::image::FW_CFG_KEYS,
            escape_option(&spec.authorized_keys.display().to_string())
        ),
    ]);
    args
}

/// QEMU option values separate with commas; a comma inside one is doubled.
fn escape_option(value: &str) -> String {
    value.replace(',', ",,")
}

/// The firmware to use: qboot when the package installed it.
pub(crate) fn default_bios() -> Option<PathBuf> {
    let qboot = Path::new("/usr/share/qemu/qboot.rom");
    qboot.is_file().then(|| qboot.to_owned())
}

/// A port on 127.0.0.1 that was free a moment ago. QEMU may still lose it
/// to another process; the caller retries the launch then.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether process `pid` is running with `tag` in its command line: the
/// only way btrfsqa ever decides that a process is one of its VMs.
pub(crate) fn process_has_tag(pid: u32, tag: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => cmdline_has_tag(&raw, tag),
        Err(_) => false,
    }
}

/// Whether a raw `/proc/PID/cmdline` (NUL-separated) names `tag` in one of
/// its arguments.
pub(crate) fn cmdline_has_tag(raw: &[u8], tag: &str) -> bool {
    !tag.is_empty()
        && raw
            .split(|b| *b == 0)
            .any(|arg| String::from_utf8_lossy(arg).contains(tag))
}

/// Reads a pid file.
pub(crate) fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Asks QEMU over QMP to run `command` (`quit`, `system_powerdown`).
pub(crate) fn qmp_command(socket: &Path, command: &str) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    // The greeting, then capabilities negotiation, then the command.
    reader.read_line(&mut line)?;
    writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    writer.write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())?;
    line.clear();
    // `quit` may close the socket before answering.
    let _ = reader.read_line(&mut line);
    Ok(())
}

/// Waits until process `pid` is gone (or no longer ours), up to `timeout`.
pub(crate) fn wait_gone(pid: u32, tag: &str, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if !process_has_tag(pid, tag) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            tag: "btrfsqa-20261124-100000-ab12-qemu-0".into(),
            accel: Accelerator::Tcg,
            memory_mib: 2048,
            cpus: 2,
            kernel: "/img/vmlinuz".into(),
            initrd: Some("/img/initrd.img".into()),
            append: kernel_cmdline("btrfsqa-x", Some(" quiet ")),
            disks: vec!["/w/root,1.qcow2".into(), "/w/disk-0.qcow2".into()],
            ssh_port: 40022,
            console: "/r/console-qemu-0.log".into(),
            qmp: "/w/qmp.sock".into(),
            pidfile: "/w/qemu.pid".into(),
            authorized_keys: "/w/id_ed25519.pub".into(),
            bios: Some("/usr/share/qemu/qboot.rom".into()),
        }
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn the_command_line_names_the_run_and_binds_ssh_to_loopback() {
        let args = qemu_args(&spec());
        assert_eq!(
            after(&args, "-name"),
            ["btrfsqa-20261124-100000-ab12-qemu-0,process=btrfsqa-20261124-100000-ab12-qemu-0"]
        );
        assert_eq!(
            after(&args, "-netdev"),
            ["user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22"]
        );
        assert_eq!(after(&args, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(after(&args, "-cpu"), ["max"]);
        assert!(args.contains(&"-no-reboot".to_owned()));
        assert_eq!(
            after(&args, "-fw_cfg"),
            ["name=opt/btrfsqa/authorized_keys,file=/w/id_ed25519.pub"]
        );
        assert_eq!(after(&args, "-initrd"), ["/img/initrd.img"]);
    }

    #[test]
    fn disks_keep_their_order_and_commas_are_escaped() {
        let drives = after(&qemu_args(&spec()), "-drive")
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        assert_eq!(drives.len(), 2);
        assert!(
            drives[0].starts_with("file=/w/root,,1.qcow2,"),
            "{}",
            drives[0]
        );
        assert!(drives[0].ends_with("index=0"));
        assert!(drives[1].ends_with("index=1"));
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_initrd_is_passed_when_there_is_none() {
        let mut spec = spec();
        spec.accel = Accelerator::Kvm;
        spec.initrd = None;
        let args = qemu_args(&spec);
        assert_eq!(after(&args, "-accel"), ["kvm"]);
        assert_eq!(after(&args, "-cpu"), ["host"]);
        assert!(!args.contains(&"-initrd".to_owned()));
    }

    #[test]
    fn the_kernel_command_line_has_the_root_console_and_extras() {
        let line = kernel_cmdline("btrfsqa-x", Some("  slub_debug=FZ "));
        assert!(line.starts_with("root=/dev/vda rw console=ttyS0,115200 panic=-1"));
        assert!(line.contains("btrfsqa.tag=btrfsqa-x"));
        assert!(line.ends_with(" slub_debug=FZ"));
        assert!(!kernel_cmdline("t", Some("  ")).ends_with(' '));
    }

    #[test]
    fn processes_are_recognised_by_their_tag_only() {
        let raw = b"qemu-system-x86_64\0-name\0btrfsqa-run-1-qemu-0,process=btrfsqa-run-1-qemu-0\0";
        assert!(cmdline_has_tag(raw, "btrfsqa-run-1-qemu-0"));
        assert!(!cmdline_has_tag(raw, "btrfsqa-run-2-qemu-0"));
        assert!(!cmdline_has_tag(raw, ""));
        assert!(!process_has_tag(std::process::id(), ""));
        assert!(!process_has_tag(std::process::id(), "btrfsqa-no-such-run"));
    }

    #[test]
    fn free_ports_are_on_loopback_and_nonzero() {
        assert!(free_port().unwrap() > 0);
    }
}
