//! Writing a file whole or not at all: the one temporary-file-and-rename
//! writer that the results store, the providers' state files, the dashboard,
//! the publisher's credentials and the runner's journals share.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that readers see the old or the new content,
/// never a mix, and the new content survives a crash once this returns.
///
/// The same as `AtomicWrite::new().write(path, bytes)`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    AtomicWrite::new().write(path, bytes)
}

/// How [`write_atomic`] writes, for the callers that need something else:
/// a mode for the file, a temporary name a reader of the directory knows to
/// leave out, or no syncing where many small files are rewritten at once.
#[derive(Debug, Clone)]
pub struct AtomicWrite {
    temp_suffix: &'static str,
    mode: Option<u32>,
    sync: bool,
}

impl Default for AtomicWrite {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicWrite {
    /// Temporary files ending in `.tmp`, the default mode, synced.
    pub fn new() -> Self {
        AtomicWrite {
            temp_suffix: ".tmp",
            mode: None,
            sync: true,
        }
    }

    /// The end of the temporary file's name (default `.tmp`), so that a
    /// directory's reader can tell one left by a crash from content.
    pub fn temp_suffix(mut self, suffix: &'static str) -> Self {
        self.temp_suffix = suffix;
        self
    }

    /// The file's permission bits (e.g. `0o700` for a script), set before
    /// it takes the target's name, so it is never seen with other bits.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Whether the file and its directory are synced before this returns
    /// (default yes). Without, readers still never see half a file; only a
    /// power loss may lose the write.
    pub fn sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// Writes `bytes` to `path` through a temporary file beside it, renamed
    /// over it; the temporary file is removed when a step fails.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = unique_temp_path(path, self.temp_suffix);
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            if let Some(mode) = self.mode {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
            }
            if self.sync {
                file.sync_all()?;
            }
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written?;
        if self.sync
            && let Some(dir) = path.parent()
            && let Ok(dir) = fs::File::open(dir)
        {
            // Syncing the directory makes the rename itself durable; a failure
            // here only weakens durability, so it is not an error.
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// `path` with a suffix unique to this write, in this process or any other
/// (pid and a counter), then `suffix`: two writers (threads, or a resumed run
/// and a `btrfsqa publish`) never share, truncate or rename each other's.
pub fn unique_temp_path(path: &Path, suffix: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}-{count}{suffix}", std::process::id()));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_differ() {
        let a = unique_temp_path(Path::new("/x/index.html"), ".tmp");
        let b = unique_temp_path(Path::new("/x/index.html"), ".tmp");
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(&format!("index.html.{}-", std::process::id()))
                && name.ends_with(".tmp"),
            "{name}"
        );
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_mode_is_set_and_a_failed_write_leaves_the_old_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("askpass.sh");
        AtomicWrite::new()
            .mode(0o700)
            .write(&path, b"#!/bin/sh\n")
            .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A directory where the file should go: the rename fails.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), "x").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
