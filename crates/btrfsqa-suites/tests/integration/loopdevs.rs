//! Loop devices on sparse files, detached (and their mounts undone) on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Loop devices backed by sparse files in a directory of their own.
pub struct LoopDevices {
    /// The devices, in order.
    pub devices: Vec<String>,
    /// The directory of the backing files (and a work directory beside them).
    pub dir: PathBuf,
}

impl LoopDevices {
    /// `count` devices of `size_gib` GiB each under `dir`.
    pub fn new(dir: &Path, count: usize, size_gib: u64) -> Self {
        Self::with_bytes(dir, count, size_gib << 30)
    }

    /// `count` devices of `bytes` bytes each under `dir`.
    pub fn with_bytes(dir: &Path, count: usize, bytes: u64) -> Self {
        let mut loops = LoopDevices {
            devices: Vec::new(),
            dir: dir.to_owned(),
        };
        for i in 0..count {
            let file = dir.join(format!("disk{i}.img"));
            let f = std::fs::File::create(&file).unwrap();
            f.set_len(bytes).unwrap();
            let out = Command::new("losetup")
                .args(["-f", "--show"])
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "losetup: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            loops
                .devices
                .push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
        loops
    }
}

impl Drop for LoopDevices {
    fn drop(&mut self) {
        // Whatever a failed test left mounted from these devices or under the
        // directory goes first, or the devices cannot be detached.
        let dir = self.dir.to_string_lossy().into_owned();
        let script = format!(
            "for i in 1 2 3; do findmnt -rn -o TARGET,SOURCE | while read -r t s; do \
             case \"$t $s\" in *{dir}*) umount -l \"$t\";; esac; \
             for d in {devs}; do [ \"$s\" = \"$d\" ] && umount -l \"$t\"; done; done; done; true",
            devs = self.devices.join(" ")
        );
        let _ = Command::new("sh").arg("-c").arg(script).status();
        // Stale multi-device registrations would confuse a later mkfs or
        // mount on a reused loop device name.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "btrfs device scan --forget {} >/dev/null 2>&1; true",
                self.devices.join(" ")
            ))
            .status();
        for dev in &self.devices {
            let _ = Command::new("losetup").arg("-d").arg(dev).status();
        }
    }
}
