//! The small surface through which the local provider changes the system:
//! `losetup`, `umount`, `btrfs device scan --forget`, and what it reads from
//! `/proc` and `/sys`. Everything that decides (which devices are ours, what
//! to undo) lives elsewhere and is tested against a fake of this trait.

use std::path::Path;

use crate::error::CommandError;
use crate::local::parse::{self, LoopDevice, Mount};
use crate::tool::{find_tool, run_tool};

/// What the local provider needs from the machine it runs on.
pub(crate) trait System: Send + Sync {
    /// Whether we may set up loop devices and mount.
    fn is_root(&self) -> bool;
    /// Whether btrfs-progs (`btrfs`) is installed.
    fn has_btrfs(&self) -> bool;
    /// `losetup --find --show FILE`: the device now backed by `file`.
    fn attach(&self, file: &Path) -> Result<String, CommandError>;
    /// `losetup -d DEVICE`.
    fn detach(&self, device: &str) -> Result<(), CommandError>;
    /// `losetup -l -J`: every attached loop device.
    fn loop_devices(&self) -> Result<Vec<LoopDevice>, CommandError>;
    /// `losetup -j FILE`: the devices backed by `file` (by inode, so also
    /// through another path to the same file).
    fn associated(&self, file: &Path) -> Result<Vec<String>, CommandError>;
    /// The mounts of our mount namespace, in mount order.
    fn mounts(&self) -> Result<Vec<Mount>, CommandError>;
    /// For each mounted btrfs, the names (`loop6`) of all its devices.
    fn btrfs_device_groups(&self) -> Vec<Vec<String>>;
    /// `umount [-l] TARGET`.
    fn unmount(&self, target: &Path, lazy: bool) -> Result<(), CommandError>;
    /// `btrfs device scan --forget DEVICE`.
    fn btrfs_forget(&self, device: &str) -> Result<(), CommandError>;
    /// What we know of process `pid`, when it exists.
    fn process(&self, pid: u32) -> Option<ProcessInfo>;
}

/// A running process, as far as the liveness check of `reap` cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessInfo {
    /// Its command name (`/proc/PID/comm`).
    pub comm: String,
    /// The file name of its executable, when readable.
    pub exe: Option<String>,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// The real machine.
pub(crate) struct HostSystem;

impl System for HostSystem {
    fn is_root(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn has_btrfs(&self) -> bool {
        find_tool("btrfs").is_some()
    }

    fn attach(&self, file: &Path) -> Result<String, CommandError> {
        let out = run_tool(
            "losetup",
            &["--find".as_ref(), "--show".as_ref(), file.as_os_str()],
        )?;
        let device = out.trim();
        if device.starts_with("/dev/") {
            Ok(device.to_owned())
        } else {
            Err(CommandError {
                command: format!("losetup --find --show {}", file.display()),
                status: Some(0),
                stderr: format!("printed `{device}` instead of a device"),
            })
        }
    }

    fn detach(&self, device: &str) -> Result<(), CommandError> {
        run_tool("losetup", &["-d", device]).map(drop)
    }

    fn loop_devices(&self) -> Result<Vec<LoopDevice>, CommandError> {
        let json = run_tool("losetup", &["-l", "-J"])?;
        parse::losetup_list(&json).map_err(|e| CommandError {
            command: "losetup -l -J".to_owned(),
            status: Some(0),
            stderr: format!("unreadable output: {e}"),
        })
    }

    fn associated(&self, file: &Path) -> Result<Vec<String>, CommandError> {
        let out = run_tool("losetup", &["-j".as_ref(), file.as_os_str()])?;
        Ok(parse::losetup_associated(&out))
    }

    fn mounts(&self) -> Result<Vec<Mount>, CommandError> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|text| parse::mountinfo(&text))
            .map_err(|e| CommandError {
                command: "read /proc/self/mountinfo".to_owned(),
                status: None,
                stderr: e.to_string(),
            })
    }

    fn btrfs_device_groups(&self) -> Vec<Vec<String>> {
        // /sys/fs/btrfs/<fsid>/devices/<name> exists for every device of every
        // mounted btrfs: the one place that names all devices of a
        // multi-device filesystem, where mountinfo names only one.
        let Ok(filesystems) = std::fs::read_dir("/sys/fs/btrfs") else {
            return Vec::new();
        };
        filesystems
            .flatten()
            .filter_map(|fs| std::fs::read_dir(fs.path().join("devices")).ok())
            .map(|devices| {
                devices
                    .flatten()
                    .map(|d| d.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|group| !group.is_empty())
            .collect()
    }

    fn unmount(&self, target: &Path, lazy: bool) -> Result<(), CommandError> {
        let mut args: Vec<&std::ffi::OsStr> = Vec::new();
        if lazy {
            args.push("-l".as_ref());
        }
        args.push(target.as_os_str());
        run_tool("umount", &args).map(drop)
    }

    fn btrfs_forget(&self, device: &str) -> Result<(), CommandError> {
        run_tool("btrfs", &["device", "scan", "--forget", device]).map(drop)
    }

    fn process(&self, pid: u32) -> Option<ProcessInfo> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let stat = parse::proc_stat(&text)?;
        // comm is cut at 15 bytes and a process may rename itself; the
        // executable's name is a second witness when we may read it.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()));
        Some(ProcessInfo {
            comm: stat.comm,
            exe,
            start_time: stat.start_time,
        })
    }
}

/// Whether a failed `losetup --find` lost a race for a free device to another
/// process (worth trying again) rather than failing for good.
pub(crate) fn is_attach_race(error: &CommandError) -> bool {
    let text = error.stderr.to_ascii_lowercase();
    text.contains("resource busy")
        || text.contains("temporarily unavailable")
        || text.contains("cannot find an unused loop device")
}

/// Makes the `nth` (0-based) attach fail, to test undoing a provision that
/// fails halfway on real loop devices.
#[cfg(feature = "fault-injection")]
pub(crate) struct FailAttach {
    pub inner: std::sync::Arc<dyn System>,
    pub nth: usize,
    pub count: std::sync::atomic::AtomicUsize,
}

#[cfg(feature = "fault-injection")]
impl System for FailAttach {
    fn is_root(&self) -> bool {
        self.inner.is_root()
    }
    fn has_btrfs(&self) -> bool {
        self.inner.has_btrfs()
    }
    fn attach(&self, file: &Path) -> Result<String, CommandError> {
        let n = self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == self.nth {
            return Err(CommandError {
                command: format!("losetup --find --show {}", file.display()),
                status: Some(1),
                stderr: "injected failure".to_owned(),
            });
        }
        self.inner.attach(file)
    }
    fn detach(&self, device: &str) -> Result<(), CommandError> {
        self.inner.detach(device)
    }
    fn loop_devices(&self) -> Result<Vec<LoopDevice>, CommandError> {
        self.inner.loop_devices()
    }
    fn associated(&self, file: &Path) -> Result<Vec<String>, CommandError> {
        self.inner.associated(file)
    }
    fn mounts(&self) -> Result<Vec<Mount>, CommandError> {
        self.inner.mounts()
    }
    fn btrfs_device_groups(&self) -> Vec<Vec<String>> {
        self.inner.btrfs_device_groups()
    }
    fn unmount(&self, target: &Path, lazy: bool) -> Result<(), CommandError> {
        self.inner.unmount(target, lazy)
    }
    fn btrfs_forget(&self, device: &str) -> Result<(), CommandError> {
        self.inner.btrfs_forget(device)
    }
    fn process(&self, pid: u32) -> Option<ProcessInfo> {
        self.inner.process(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_races_are_told_from_real_failures() {
        let err = |stderr: &str| CommandError {
            command: "losetup".into(),
            status: Some(1),
            stderr: stderr.into(),
        };
        assert!(is_attach_race(&err(
            "losetup: /x.img: failed to set up loop device: Device or resource busy"
        )));
        assert!(!is_attach_race(&err(
            "losetup: /x.img: failed to set up loop device: No such file or directory"
        )));
    }

    #[test]
    fn missing_tools_are_reported_by_name() {
        let err = run_tool::<&str>("btrfsqa-no-such-tool", &[]).unwrap_err();
        assert_eq!(err.status, None);
        assert!(
            err.to_string()
                .contains("`btrfsqa-no-such-tool` is not installed")
        );
    }
}
