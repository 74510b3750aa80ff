//! A run's owner: the one process that drives it. `btrfsqa resume` of a run
//! whose owner is still alive is refused; the lock of a dead owner (killed,
//! even with SIGKILL) is gone with it, so a stale owner never blocks.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use btrfsqa_model::{ModelError, RunId};
use nix::fcntl::{Flock, FlockArg};

use crate::RunError;

/// The lock file in a run's directory.
const LOCK_FILE: &str = "owner.lock";

/// Held while a process drives a run.
pub(crate) struct RunLock(#[expect(dead_code, reason = "held for its Drop")] Flock<File>);

impl RunLock {
    /// Takes run `run`'s lock, or says who holds it.
    pub(crate) fn acquire(run_dir: &Path, run: &RunId) -> Result<RunLock, RunError> {
        let path = run_dir.join(LOCK_FILE);
        let io = |action, source| {
            RunError::Store(ModelError::Io {
                action,
                path: path.clone(),
                source,
            })
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("open", e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let owner = format!(
                    "pid {} on {}",
                    std::process::id(),
                    super::machine::hostname().unwrap_or_else(|| "this host".into())
                );
                lock.set_len(0).map_err(|e| io("truncate", e))?;
                lock.rewind().map_err(|e| io("rewind", e))?;
                lock.write_all(owner.as_bytes())
                    .map_err(|e| io("write", e))?;
                Ok(RunLock(lock))
            }
            Err((mut file, _)) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                Err(RunError::Busy {
                    run: run.clone(),
                    owner: if owner.trim().is_empty() {
                        "another btrfsqa process".into()
                    } else {
                        owner.trim().to_owned()
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_has_one_owner_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunId::parse("run-owned").unwrap();
        let held = RunLock::acquire(dir.path(), &run).unwrap();
        let err = RunLock::acquire(dir.path(), &run).err().expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("run-owned") && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(held);
        RunLock::acquire(dir.path(), &run).expect("free once its owner is done");
    }
}
