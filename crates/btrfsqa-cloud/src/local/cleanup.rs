//! Removing everything under one directory of the work tree (a machine's or
//! a whole run's): mounts, btrfs registrations, loop devices, backing files,
//! directories. Shared by `teardown`, by the undo of a failed `provision` and
//! by `reap`.
//!
//! The rule that keeps this safe: a loop device is ours only if the kernel
//! says NOW that its backing file lies under the scope directory. A device
//! number from a state file is never trusted on its own, because after a
//! crash the number may have been reused by someone else.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::CommandError;
use crate::local::parse::{LoopDevice, Mount, is_under};
use crate::local::state::LocalState;
use crate::local::system::System;

/// Unmount rounds before giving up; each round unmounts what is on top, so
/// this bounds how deeply mounts may be stacked under the scope.
const UNMOUNT_ROUNDS: usize = 8;

/// A directory of the work tree, under every name it may go by (canonical
/// first, then the configured spelling): the kernel reports canonical paths,
/// a deleted directory can only be named as configured.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    dirs: Vec<PathBuf>,
}

impl Scope {
    /// A scope named by `dirs` (at least one; the first is the one deleted).
    pub(crate) fn new(dirs: Vec<PathBuf>) -> Scope {
        debug_assert!(!dirs.is_empty());
        Scope { dirs }
    }

    /// Whether `path` lies inside the scope.
    pub(crate) fn contains(&self, path: &Path) -> bool {
        self.dirs.iter().any(|dir| is_under(path, dir))
    }

    /// The directory to delete: the first name under which it exists.
    fn existing_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .map(PathBuf::as_path)
            .find(|dir| dir.symlink_metadata().is_ok_and(|m| m.is_dir()))
    }
}

/// What happened to one thing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Removed, with a note when it took a last resort.
    Done(Option<String>),
    /// Found, left alone (dry run).
    WouldDo,
    /// Still there, and why.
    Failed(String),
}

/// One thing found in a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// `mount`, `loop-device`, `backing-file` or `work-dir`.
    pub kind: &'static str,
    /// Its path or device name.
    pub id: String,
    /// What became of it.
    pub outcome: Outcome,
}

impl Found {
    fn new(kind: &'static str, id: impl Into<String>, outcome: Outcome) -> Found {
        Found {
            kind,
            id: id.into(),
            outcome,
        }
    }

    /// The `action` of a `ReapItem`.
    pub(crate) fn action(&self) -> crate::ReapAction {
        use crate::ReapAction;
        match &self.outcome {
            Outcome::Done(note) => ReapAction::Deleted(note.clone()),
            Outcome::WouldDo => ReapAction::WouldDelete,
            Outcome::Failed(why) => ReapAction::Failed(why.clone()),
        }
    }

    /// A leftover entry of a `TeardownError`, when it failed.
    pub(crate) fn leftover(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Failed(why) => Some(format!("{} `{}`: {why}", self.kind, self.id)),
            _ => None,
        }
    }
}

/// Removes (or with `dry_run`, lists) everything in `scope`. `hints` are the
/// state files found for it; they add backing files to look for, nothing more.
/// `settle` bounds the wait for detached devices that someone else still
/// holds open.
pub(crate) fn clean(
    sys: &dyn System,
    scope: &Scope,
    hints: &[LocalState],
    dry_run: bool,
    settle: Duration,
) -> Vec<Found> {
    let mut found = Vec::new();

    let devices = match sys.loop_devices() {
        Ok(all) => Some(ours(all, scope)),
        Err(e) => {
            found.push(Found::new(
                "loop-device",
                "?",
                Outcome::Failed(format!("cannot list loop devices: {e}")),
            ));
            None
        }
    };
    for hint in hints {
        for attachment in &hint.loop_devices {
            let still_ours = devices
                .iter()
                .flatten()
                .any(|d| d.name == attachment.device);
            if !still_ours {
                // Detached already, or the number now belongs to someone else.
                tracing::debug!(device = %attachment.device, "not ours any more, leaving it alone");
            }
        }
    }
    let our_devices: Vec<String> = devices.iter().flatten().map(|d| d.name.clone()).collect();

    let mounts_left = unmount(sys, scope, &our_devices, dry_run, &mut found);

    // Forget and detach; the verdict on each device waits for the check below.
    let mut device_errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if !dry_run {
        let forget = sys.has_btrfs();
        for device in &our_devices {
            let errors = device_errors.entry(device.clone()).or_default();
            // Stale registrations of a multi-device btrfs would make a later
            // filesystem on a reused device number assemble wrongly.
            if forget {
                if let Err(e) = sys.btrfs_forget(device) {
                    errors.push(format!("btrfs device scan --forget failed: {e}"));
                }
            }
            if let Err(e) = sys.detach(device) {
                errors.push(format!("losetup -d failed: {e}"));
            }
        }
    }

    // `losetup -d` on a device someone holds open (a blkid probe of any
    // process scanning for filesystems, a lazily unmounted filesystem) only
    // marks it for auto-clear and says nothing, so what counts is the
    // kernel's list afterwards.
    let mut still_attached: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut pending_autoclear: BTreeSet<String> = BTreeSet::new();
    let mut verified = devices.is_some();
    if let Some(devices) = &devices {
        if dry_run {
            still_attached.extend(
                devices
                    .iter()
                    .map(|d| (d.name.clone(), d.back_file.clone())),
            );
        } else {
            match wait_detached(sys, scope, settle) {
                Ok(left) => {
                    for device in left {
                        if device.autoclear {
                            pending_autoclear.insert(device.name.clone());
                        }
                        still_attached.insert(device.name, device.back_file);
                    }
                }
                Err(e) => {
                    verified = false;
                    found.push(Found::new(
                        "loop-device",
                        "?",
                        Outcome::Failed(format!("cannot check loop devices after detaching: {e}")),
                    ));
                }
            }
        }
    }

    let files = backing_files(scope, hints, devices.as_deref().unwrap_or_default());
    if !dry_run {
        // `losetup -j` matches by inode: it also catches a device that reaches
        // one of our files through another path.
        for file in files.iter().filter(|f| f.exists()) {
            match sys.associated(file) {
                Ok(names) => {
                    for name in names {
                        still_attached.entry(name).or_insert_with(|| file.clone());
                    }
                }
                Err(e) => {
                    verified = false;
                    found.push(Found::new(
                        "backing-file",
                        file.display().to_string(),
                        Outcome::Failed(format!("cannot check with `losetup -j`: {e}")),
                    ));
                }
            }
        }
    }

    for device in &our_devices {
        let outcome = if dry_run {
            Outcome::WouldDo
        } else {
            let errors = device_errors.remove(device).unwrap_or_default();
            if let Some(file) = still_attached.get(device) {
                let mut why = format!("still attached to `{}`", file.display());
                if pending_autoclear.contains(device) {
                    why.push_str(" (in use; the kernel detaches it when its last user closes it)");
                }
                if !errors.is_empty() {
                    why = format!("{why}: {}", errors.join("; "));
                }
                Outcome::Failed(why)
            } else if errors.is_empty() {
                Outcome::Done(None)
            } else {
                Outcome::Failed(format!("detached, but {}", errors.join("; ")))
            }
        };
        found.push(Found::new("loop-device", device.clone(), outcome));
    }
    // Devices found only by `losetup -j` (another path to our file).
    for (device, file) in &still_attached {
        if !dry_run && !our_devices.contains(device) {
            found.push(Found::new(
                "loop-device",
                device.clone(),
                Outcome::Failed(format!(
                    "attached to `{}` through another path",
                    file.display()
                )),
            ));
        }
    }

    let attached_files: BTreeSet<&PathBuf> = still_attached.values().collect();
    let deleted_in_kernel: BTreeSet<&PathBuf> = devices
        .iter()
        .flatten()
        .filter(|d| d.deleted)
        .map(|d| &d.back_file)
        .collect();
    for file in &files {
        let exists = file.symlink_metadata().is_ok();
        if !exists && !deleted_in_kernel.contains(file) {
            continue;
        }
        let id = file.display().to_string();
        let outcome = if dry_run {
            Outcome::WouldDo
        } else if attached_files.contains(file) {
            Outcome::Failed("kept: a loop device still uses it".to_owned())
        } else if !verified {
            Outcome::Failed("kept: could not check that no loop device uses it".to_owned())
        } else if !exists {
            // Unlinked earlier; its space went back when the device let go.
            Outcome::Done(None)
        } else {
            match std::fs::remove_file(file) {
                Ok(()) => Outcome::Done(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Done(None),
                Err(e) => Outcome::Failed(format!("cannot delete: {e}")),
            }
        };
        found.push(Found::new("backing-file", id, outcome));
    }

    if let Some(dir) = scope.existing_dir() {
        let id = dir.display().to_string();
        let outcome = if dry_run {
            Outcome::WouldDo
        } else if mounts_left {
            Outcome::Failed("kept: something is still mounted under it".to_owned())
        } else if !still_attached.is_empty() || !verified {
            Outcome::Failed("kept: it holds files a loop device may still use".to_owned())
        } else {
            match remove_tree(dir) {
                Ok(()) => Outcome::Done(None),
                Err(e) => Outcome::Failed(format!("cannot delete: {e}")),
            }
        };
        found.push(Found::new("work-dir", id, outcome));
    }
    found
}

/// Waits up to `settle` for our devices to leave the kernel's list, and
/// returns those that did not.
fn wait_detached(
    sys: &dyn System,
    scope: &Scope,
    settle: Duration,
) -> Result<Vec<LoopDevice>, CommandError> {
    let deadline = Instant::now() + settle;
    let mut pause = Duration::from_millis(20);
    let mut retried = BTreeSet::new();
    loop {
        let left = ours(sys.loop_devices()?, scope);
        let now = Instant::now();
        if left.is_empty() || now >= deadline {
            return Ok(left);
        }
        for device in &left {
            // Not even marked for auto-clear: the first `losetup -d` did not
            // take; once more.
            if !device.autoclear && retried.insert(device.name.clone()) {
                let _ = sys.detach(&device.name);
            }
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The devices whose backing file lies strictly inside `scope`.
fn ours(all: Vec<LoopDevice>, scope: &Scope) -> Vec<LoopDevice> {
    all.into_iter()
        .filter(|d| scope.contains(&d.back_file) && !scope.dirs.contains(&d.back_file))
        .collect()
}

/// Backing files to delete: what the kernel and the state files name, and
/// `disk-*.img` in the scope and its subdirectories (a state file may have
/// been lost with a crash mid-write, a file may be created but not attached).
fn backing_files(scope: &Scope, hints: &[LocalState], devices: &[LoopDevice]) -> Vec<PathBuf> {
    let mut files = BTreeSet::new();
    files.extend(devices.iter().map(|d| d.back_file.clone()));
    files.extend(
        hints
            .iter()
            .flat_map(|h| h.backing_files.iter())
            .filter(|f| scope.contains(f))
            .cloned(),
    );
    if let Some(dir) = scope.existing_dir() {
        let mut dirs = vec![dir.to_owned()];
        if let Ok(entries) = std::fs::read_dir(dir) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            files.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.path())
                    .filter(|p| is_disk_image(p)),
            );
        }
    }
    files.into_iter().collect()
}

/// `disk-<n>.img`, the name the provider gives backing files.
pub(crate) fn is_disk_image(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("disk-"))
        .and_then(|n| n.strip_suffix(".img"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Unmounts everything under the scope and everything mounted from our
/// devices (or from a btrfs one of our devices belongs to), top of the stack
/// first. Returns whether anything related is still mounted.
fn unmount(
    sys: &dyn System,
    scope: &Scope,
    our_devices: &[String],
    dry_run: bool,
    found: &mut Vec<Found>,
) -> bool {
    let mut ours: BTreeSet<String> = our_devices.iter().map(|d| device_name(d)).collect();
    let mut results: BTreeMap<PathBuf, Outcome> = BTreeMap::new();
    let mut errors: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut remaining = Vec::new();

    for round in 0..=UNMOUNT_ROUNDS {
        // A multi-device btrfs shows ONE of its devices in mountinfo, maybe
        // not one of ours: sysfs names them all.
        for group in sys.btrfs_device_groups() {
            if group.iter().any(|d| ours.contains(d)) {
                ours.extend(group);
            }
        }
        let mounts = match sys.mounts() {
            Ok(mounts) => mounts,
            Err(e) => {
                found.push(Found::new(
                    "mount",
                    "?",
                    Outcome::Failed(format!("cannot read the mount table: {e}")),
                ));
                return true;
            }
        };
        remaining = related(&mounts, scope, &ours);
        if dry_run {
            for mount in &remaining {
                results.insert(mount.mount_point.clone(), Outcome::WouldDo);
            }
            break;
        }
        if remaining.is_empty() || round == UNMOUNT_ROUNDS {
            break;
        }
        let mut progress = false;
        for mount in remaining.iter().rev() {
            match sys.unmount(&mount.mount_point, false) {
                Ok(()) => {
                    progress = true;
                    errors.remove(&mount.mount_point);
                    results.insert(mount.mount_point.clone(), Outcome::Done(None));
                }
                Err(e) => {
                    errors.insert(mount.mount_point.clone(), e.to_string());
                }
            }
        }
        if !progress {
            // Last resort: detach the mounts from the tree. The filesystem
            // lives on until its last user lets go, and its devices with it;
            // the check after `losetup -d` will tell.
            for mount in remaining.iter().rev() {
                let busy = errors.get(&mount.mount_point).cloned().unwrap_or_default();
                match sys.unmount(&mount.mount_point, true) {
                    Ok(()) => {
                        tracing::warn!(
                            mount_point = %mount.mount_point.display(),
                            reason = %busy,
                            "unmounted lazily"
                        );
                        progress = true;
                        errors.remove(&mount.mount_point);
                        results.insert(
                            mount.mount_point.clone(),
                            Outcome::Done(Some(format!("lazy unmount, it was busy: {busy}"))),
                        );
                    }
                    Err(e) => {
                        errors.insert(
                            mount.mount_point.clone(),
                            format!("{busy}; lazy unmount failed too: {e}"),
                        );
                    }
                }
            }
            if !progress {
                break;
            }
        }
    }

    if !dry_run {
        for mount in &remaining {
            let why = errors
                .get(&mount.mount_point)
                .cloned()
                .unwrap_or_else(|| "still mounted".to_owned());
            results.insert(mount.mount_point.clone(), Outcome::Failed(why));
        }
    }
    found.extend(
        results
            .into_iter()
            .map(|(point, outcome)| Found::new("mount", point.display().to_string(), outcome)),
    );
    !dry_run && !remaining.is_empty()
}

/// Mounts that must go: under the scope, or from one of `devices`.
fn related(mounts: &[Mount], scope: &Scope, devices: &BTreeSet<String>) -> Vec<Mount> {
    mounts
        .iter()
        .filter(|m| {
            scope.contains(&m.mount_point)
                || (m.source.starts_with("/dev/") && devices.contains(&device_name(&m.source)))
        })
        .cloned()
        .collect()
}

/// `/dev/loop6` → `loop6`, the name sysfs uses.
fn device_name(device: &str) -> String {
    device.strip_prefix("/dev/").unwrap_or(device).to_owned()
}

/// Deletes a directory tree without leaving its filesystem and without
/// following symbolic links: whatever is still mounted below stays untouched
/// and is reported.
pub(crate) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let device = dir.symlink_metadata()?.dev();
    remove_tree_on(dir, device)
}

fn remove_tree_on(path: &Path, device: u64) -> std::io::Result<()> {
    let meta = match path.symlink_metadata() {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    if meta.dev() != device {
        return Err(std::io::Error::other(format!(
            "`{}` is on another filesystem (still mounted?)",
            path.display()
        )));
    }
    for entry in std::fs::read_dir(path)? {
        remove_tree_on(&entry?.path(), device)?;
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_images_are_recognised_by_name() {
        assert!(is_disk_image(Path::new("/w/r/m/disk-0.img")));
        assert!(is_disk_image(Path::new("disk-12.img")));
        for other in [
            "disk-.img",
            "disk-1.img.bak",
            "disk-a.img",
            "machine.json",
            "xdisk-1.img",
        ] {
            assert!(!is_disk_image(Path::new(other)), "{other}");
        }
    }

    #[test]
    fn remove_tree_removes_files_and_keeps_symlink_targets() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), tree.join("a/link")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.path().join("keep").exists());
    }

    #[test]
    fn related_mounts_are_under_the_scope_or_from_our_devices() {
        let scope = Scope::new(vec![PathBuf::from("/w/run/m")]);
        let mount = |point: &str, source: &str| Mount {
            mount_point: PathBuf::from(point),
            fs_type: "btrfs".into(),
            source: source.into(),
        };
        let mounts = [
            mount("/w/run/m/mnt/test", "/dev/loop9"),
            mount("/elsewhere", "/dev/loop3"),
            mount("/w/run/m2/mnt", "/dev/loop8"),
            mount("/", "/dev/vda"),
            mount("/sys", "sysfs"),
        ];
        let devices: BTreeSet<String> = ["loop3".to_owned()].into();
        let picked: Vec<_> = related(&mounts, &scope, &devices)
            .into_iter()
            .map(|m| m.mount_point)
            .collect();
        assert_eq!(
            picked,
            [
                PathBuf::from("/w/run/m/mnt/test"),
                PathBuf::from("/elsewhere")
            ]
        );
    }
}
