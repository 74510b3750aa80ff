//! One publisher at a time per directory, across processes and threads.
//!
//! Two btrfsqa processes on one host share the results store and so the git
//! publisher's cache (`RESULTS/.site-cache`: its mirror and staging
//! directory), and two previews may render into one directory. A
//! [`DirLock`] is an exclusive `flock` on a lock file in that directory:
//! the kernel drops it when its holder exits, however it exits, so a
//! crashed publisher never blocks the next one. A publisher that has to wait
//! says so (a `warn` log line naming the holder's pid), then waits.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::PublishError;

/// Held while a publisher uses a directory; released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: Flock<File>,
}

impl DirLock {
    /// Takes the lock file `name` in `dir` (created with `dir` if missing),
    /// waiting while another publisher holds it. `what` names the directory
    /// in the message shown while waiting (`the site cache`).
    pub(crate) fn acquire(dir: &Path, name: &str, what: &str) -> Result<DirLock, PublishError> {
        std::fs::create_dir_all(dir).map_err(PublishError::io("create directory", dir))?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(PublishError::io("open", &path))?;
        let lock_error = |errno: Errno| PublishError::io("lock", &path)(errno.into());
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let holder = holder(&mut file)
                    .map(|pid| format!("pid {pid}"))
                    .unwrap_or_else(|| "another publisher".to_owned());
                tracing::warn!("waiting for {what} `{}` held by {holder}", dir.display());
                Flock::lock(file, FlockArg::LockExclusive)
                    .map_err(|(_, errno)| lock_error(errno))?
            }
            Err((_, errno)) => return Err(lock_error(errno)),
        };
        // Say who holds it, for the next one to wait.
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(PublishError::io("write", &path))?;
        Ok(DirLock { _file: file })
    }
}

/// The pid written into a held lock file, if it says.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "lock", "the site cache").unwrap();
        let written = std::fs::read_to_string(dir.path().join("lock")).unwrap();
        assert_eq!(written, std::process::id().to_string());
        let (tx, rx) = mpsc::channel();
        let path = dir.path().to_owned();
        let waiter = std::thread::spawn(move || {
            let lock = DirLock::acquire(&path, "lock", "the site cache").unwrap();
            tx.send(()).unwrap();
            drop(lock);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second got the lock while the first held it"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the second gets the lock once the first lets go");
        waiter.join().unwrap();
    }
}
