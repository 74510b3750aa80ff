//! A simulated machine for unit tests: loop devices, mounts and btrfs
//! registrations kept in memory, with the kernel's awkward behaviours
//! (auto-clear on a busy device, a multi-device btrfs showing one device,
//! lazy unmounts that keep devices busy) and failures on demand. Files are
//! real, in a temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::error::CommandError;
use crate::local::parse::{LoopDevice, Mount};
use crate::local::system::{ProcessInfo, System};

/// One mounted filesystem.
#[derive(Debug, Clone)]
pub(crate) struct FakeMount {
    pub point: PathBuf,
    /// What mountinfo shows (`/dev/loop3`).
    pub source: String,
    /// All its devices by sysfs name (`loop3`), for a btrfs.
    pub devices: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub root: bool,
    pub btrfs: bool,
    /// Loop number → backing file.
    pub loops: BTreeMap<u32, PathBuf>,
    /// Devices `losetup -d` could only mark for auto-clear.
    pub autoclear: BTreeSet<u32>,
    pub mounts: Vec<FakeMount>,
    /// Mount points that refuse a plain `umount`.
    pub busy: BTreeSet<PathBuf>,
    /// Mount points that refuse even a lazy one.
    pub stuck: BTreeSet<PathBuf>,
    /// Devices kept open by a lazily unmounted filesystem.
    pub held: BTreeSet<String>,
    /// Devices someone else (a blkid probe) holds open for this many more
    /// listings.
    pub transient: BTreeMap<String, usize>,
    /// Attach calls (0-based) that fail for good.
    pub fail_attach: BTreeSet<usize>,
    /// How many coming attach calls lose a race.
    pub race_attach: usize,
    pub fail_detach: BTreeSet<String>,
    pub attach_calls: usize,
    pub processes: BTreeMap<u32, ProcessInfo>,
    /// Every changing call, in order (`detach /dev/loop1`).
    pub calls: Vec<String>,
}

impl FakeState {
    /// Held open by anyone.
    fn in_use(&self, name: &str) -> bool {
        self.transient.contains_key(name) || self.in_mounted_fs(name)
    }

    /// Part of a mounted (or lazily unmounted, still alive) filesystem: what
    /// makes `btrfs device scan --forget` refuse.
    fn in_mounted_fs(&self, name: &str) -> bool {
        self.held.contains(name)
            || self
                .mounts
                .iter()
                .any(|m| m.devices.iter().any(|d| d == name))
    }

    /// The kernel clears an auto-clear device when its last user goes.
    fn settle(&mut self) {
        let done: Vec<u32> = self
            .autoclear
            .iter()
            .copied()
            .filter(|n| !self.in_use(&format!("loop{n}")))
            .collect();
        for n in done {
            self.autoclear.remove(&n);
            self.loops.remove(&n);
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct FakeSystem {
    state: Mutex<FakeState>,
}

impl FakeSystem {
    /// Root, with btrfs-progs.
    pub(crate) fn new() -> Self {
        let fake = FakeSystem::default();
        fake.state().root = true;
        fake.state().btrfs = true;
        fake
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    /// Attaches `file` outside the provider (someone else's device).
    pub(crate) fn attach_foreign(&self, file: &Path) -> String {
        let mut s = self.state();
        let n = (0..).find(|n| !s.loops.contains_key(n)).unwrap();
        s.loops.insert(n, file.to_owned());
        format!("/dev/loop{n}")
    }

    /// Mounts a (btrfs) filesystem over `devices`, shown as `devices[0]`.
    pub(crate) fn mount(&self, point: &Path, devices: &[&str]) {
        let names = devices
            .iter()
            .map(|d| d.trim_start_matches("/dev/").to_owned())
            .collect();
        self.state().mounts.push(FakeMount {
            point: point.to_owned(),
            source: devices[0].to_owned(),
            devices: names,
        });
    }

    /// Lets go of what lazily unmounted filesystems held.
    pub(crate) fn release_held(&self) {
        let mut s = self.state();
        s.held.clear();
        s.settle();
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    pub(crate) fn devices(&self) -> Vec<String> {
        self.state()
            .loops
            .keys()
            .map(|n| format!("/dev/loop{n}"))
            .collect()
    }
}

fn fail(command: String, stderr: &str) -> CommandError {
    CommandError {
        command,
        status: Some(1),
        stderr: stderr.to_owned(),
    }
}

fn number(device: &str) -> Option<u32> {
    device.strip_prefix("/dev/loop")?.parse().ok()
}

impl System for FakeSystem {
    fn is_root(&self) -> bool {
        self.state().root
    }

    fn has_btrfs(&self) -> bool {
        self.state().btrfs
    }

    fn attach(&self, file: &Path) -> Result<String, CommandError> {
        let mut s = self.state();
        let call = s.attach_calls;
        s.attach_calls += 1;
        let command = format!("losetup --find --show {}", file.display());
        if s.fail_attach.contains(&call) {
            return Err(fail(command, "injected failure"));
        }
        if s.race_attach > 0 {
            s.race_attach -= 1;
            return Err(fail(
                command,
                "failed to set up loop device: Device or resource busy",
            ));
        }
        if !file.exists() {
            return Err(fail(command, "cannot open: No such file or directory"));
        }
        let n = (0..).find(|n| !s.loops.contains_key(n)).unwrap();
        s.loops.insert(n, file.to_owned());
        s.calls.push(format!("attach /dev/loop{n}"));
        Ok(format!("/dev/loop{n}"))
    }

    fn detach(&self, device: &str) -> Result<(), CommandError> {
        let mut s = self.state();
        s.calls.push(format!("detach {device}"));
        let command = format!("losetup -d {device}");
        if s.fail_detach.contains(device) {
            return Err(fail(command, "injected failure"));
        }
        let Some(n) = number(device).filter(|n| s.loops.contains_key(n)) else {
            return Err(fail(command, "No such device or address"));
        };
        if s.in_use(&format!("loop{n}")) {
            // Like the kernel: success, and the device stays until released.
            s.autoclear.insert(n);
        } else {
            s.loops.remove(&n);
        }
        Ok(())
    }

    fn loop_devices(&self) -> Result<Vec<LoopDevice>, CommandError> {
        let mut s = self.state();
        // Time passes: brief openers let go.
        for count in s.transient.values_mut() {
            *count = count.saturating_sub(1);
        }
        s.transient.retain(|_, count| *count > 0);
        s.settle();
        Ok(s.loops
            .iter()
            .map(|(n, file)| LoopDevice {
                name: format!("/dev/loop{n}"),
                back_file: file.clone(),
                deleted: !file.exists(),
                autoclear: s.autoclear.contains(n),
            })
            .collect())
    }

    fn associated(&self, file: &Path) -> Result<Vec<String>, CommandError> {
        if !file.exists() {
            return Ok(Vec::new());
        }
        Ok(self
            .state()
            .loops
            .iter()
            .filter(|(_, f)| f.as_path() == file)
            .map(|(n, _)| format!("/dev/loop{n}"))
            .collect())
    }

    fn mounts(&self) -> Result<Vec<Mount>, CommandError> {
        Ok(self
            .state()
            .mounts
            .iter()
            .map(|m| Mount {
                mount_point: m.point.clone(),
                fs_type: "btrfs".to_owned(),
                source: m.source.clone(),
            })
            .collect())
    }

    fn btrfs_device_groups(&self) -> Vec<Vec<String>> {
        self.state()
            .mounts
            .iter()
            .map(|m| m.devices.clone())
            .collect()
    }

    fn unmount(&self, target: &Path, lazy: bool) -> Result<(), CommandError> {
        let mut s = self.state();
        s.calls.push(format!(
            "umount{} {}",
            if lazy { " -l" } else { "" },
            target.display()
        ));
        let Some(index) = s.mounts.iter().rposition(|m| m.point == target) else {
            return Err(fail(format!("umount {}", target.display()), "not mounted."));
        };
        let busy = s.busy.contains(target);
        if s.stuck.contains(target) {
            return Err(fail(
                format!("umount {}", target.display()),
                "Operation not permitted",
            ));
        }
        if busy && !lazy {
            return Err(fail(
                format!("umount {}", target.display()),
                "target is busy.",
            ));
        }
        let mount = s.mounts.remove(index);
        if busy {
            s.held.extend(mount.devices);
        }
        s.settle();
        Ok(())
    }

    fn btrfs_forget(&self, device: &str) -> Result<(), CommandError> {
        let mut s = self.state();
        s.calls.push(format!("forget {device}"));
        if s.in_mounted_fs(device.trim_start_matches("/dev/")) {
            return Err(fail(
                format!("btrfs device scan --forget {device}"),
                "Device or resource busy",
            ));
        }
        Ok(())
    }

    fn process(&self, pid: u32) -> Option<ProcessInfo> {
        self.state().processes.get(&pid).cloned()
    }
}
