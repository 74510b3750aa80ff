//! Locks between btrfsqa processes, on files in the results store.
//!
//! - A run's owner (`RUN_DIR/owner.lock`, exclusive): `btrfsqa resume` of a
//!   run whose owner is alive is refused.
//! - The store's drivers (`RESULTS/.store.lock`): every run holds it shared,
//!   so manual runs go side by side, while `btrfsqa watch` holds it
//!   exclusive for the runs it starts: a watcher and a manual run never
//!   drive one store at once.
//! - The watcher itself (`RESULTS/.watch/watch.lock`, exclusive, for its
//!   life): a second watcher of the store is refused.
//!
//! flock(2) locks go with their process, even one killed with SIGKILL, so
//! a lock is never left stale; the holder writes its pid into the file, and
//! a process that takes a lock whose file names a dead process says it took
//! it over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use btrfsqa_model::{ModelError, RunId};
use nix::fcntl::{Flock, FlockArg};

use crate::RunError;

/// A lock held until dropped.
pub(crate) struct Held {
    _lock: Flock<File>,
    /// The owner the file named before, when that process is gone.
    pub stale: Option<String>,
}

/// Why a lock was not taken.
pub(crate) enum Refused {
    /// Another live process holds it (what its file says).
    Held(String),
    /// The file could not be opened.
    Io(&'static str, std::io::Error),
}

/// Takes the lock on `path` without waiting, exclusive or shared; an
/// exclusive holder records itself (`pid N on HOST`, `what`).
pub(crate) fn take(path: &Path, exclusive: bool, what: &str) -> Result<Held, Refused> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Refused::Io("create", e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Refused::Io("open", e))?;
    let mode = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    match Flock::lock(file, mode) {
        Ok(mut lock) => {
            let mut before = String::new();
            let _ = lock.read_to_string(&mut before);
            let stale = owner_pid(&before)
                .filter(|pid| !alive(*pid))
                .map(|_| before.trim().to_owned());
            if exclusive {
                let me = format!(
                    "pid {} on {}: {what}",
                    std::process::id(),
                    crate::run::machine::hostname().unwrap_or_else(|| "this host".into())
                );
                let _ = lock.set_len(0);
                let _ = lock.rewind();
                let _ = lock.write_all(me.as_bytes());
            }
            Ok(Held { _lock: lock, stale })
        }
        Err((mut file, _)) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            Err(Refused::Held(if owner.is_empty() {
                "another btrfsqa process".to_owned()
            } else {
                owner.to_owned()
            }))
        }
    }
}

/// The pid in `pid N on HOST: ...`.
fn owner_pid(text: &str) -> Option<i32> {
    text.strip_prefix("pid ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The lock of a run's owner, or why it is busy.
pub(crate) fn run_owner(run_dir: &Path, run: &RunId) -> Result<Held, RunError> {
    let path = run_dir.join("owner.lock");
    match take(&path, true, &format!("drives run {run}")) {
        Ok(held) => Ok(held),
        Err(Refused::Held(owner)) => Err(RunError::Busy {
            run: run.clone(),
            owner,
        }),
        Err(Refused::Io(action, source)) => Err(RunError::Store(ModelError::Io {
            action,
            path,
            source,
        })),
    }
}

/// The store's drivers' lock: shared for a run, exclusive for a watcher's.
pub(crate) fn store_drivers(results: &Path, exclusive: bool) -> Result<Held, RunError> {
    let path = results.join(".store.lock");
    let what = if exclusive {
        "btrfsqa watch runs on this store"
    } else {
        "a run"
    };
    match take(&path, exclusive, what) {
        Ok(held) => Ok(held),
        Err(Refused::Held(owner)) => Err(RunError::StoreInUse {
            store: results.to_owned(),
            owner,
        }),
        Err(Refused::Io(action, source)) => Err(RunError::Store(ModelError::Io {
            action,
            path,
            source,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_has_one_owner_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunId::parse("run-owned").unwrap();
        let held = run_owner(dir.path(), &run).unwrap();
        let err = run_owner(dir.path(), &run).err().expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("run-owned") && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(held);
        run_owner(dir.path(), &run).expect("free once its owner is done");
    }

    #[test]
    fn runs_share_the_store_and_a_watcher_drives_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let one = store_drivers(dir.path(), false).unwrap();
        let two = store_drivers(dir.path(), false).expect("runs go side by side");
        let err = store_drivers(dir.path(), true)
            .err()
            .expect("not while runs run");
        assert!(err.to_string().contains("in use"), "{err}");
        drop((one, two));
        let watcher = store_drivers(dir.path(), true).unwrap();
        let err = store_drivers(dir.path(), false)
            .err()
            .expect("not while it watches");
        assert!(err.to_string().contains("btrfsqa watch"), "{err}");
        drop(watcher);
    }

    #[test]
    fn the_lock_of_a_dead_process_is_taken_over_and_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.lock");
        // A process that is surely gone: a child that has exited.
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let _ = child.wait_with_output();
        std::fs::write(&path, format!("pid {pid} on host: watches")).unwrap();
        let held = take(&path, true, "watches").ok().expect("free");
        assert_eq!(
            held.stale.as_deref(),
            Some(format!("pid {pid} on host: watches").as_str())
        );
    }
}
