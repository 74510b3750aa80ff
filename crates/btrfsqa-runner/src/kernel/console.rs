//! The machine's console file, as the provider keeps it: the artifact of
//! the stage and what it says when a boot fails.

use std::path::{Path, PathBuf};

use btrfsqa_cloud::Machine;
use btrfsqa_model::{Artifact, ArtifactKind};

use super::step::last_lines;

/// The console file the provider keeps, when it lies in the run directory.
pub(super) fn console_path(machine: &Machine) -> Option<PathBuf> {
    machine
        .state
        .get("console")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
}

pub(super) fn console_artifact(machine: &Machine, run_dir: &Path) -> Option<Artifact> {
    let console = console_path(machine)?;
    let relative = console.strip_prefix(run_dir).ok()?;
    console
        .is_file()
        .then(|| Artifact::new(ArtifactKind::Console, relative.display().to_string()))
}

/// The first kernel panic line on the console after `offset`, if any.
pub(super) fn console_panic(machine: &Machine, offset: u64) -> Option<String> {
    let text = std::fs::read(console_path(machine)?).ok()?;
    let tail = String::from_utf8_lossy(text.get(offset as usize..)?).into_owned();
    first_panic(&tail)
}

/// The first line that says the kernel panicked.
pub(crate) fn first_panic(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains("Kernel panic - not syncing"))
        .map(|l| {
            // Drop the timestamp: `[    2.5] Kernel panic - ...`.
            l.find("Kernel panic")
                .map_or(l, |i| &l[i..])
                .trim()
                .to_owned()
        })
}

pub(super) fn console_hint(machine: &Machine) -> String {
    match console_path(machine) {
        Some(console) => {
            let tail = std::fs::read_to_string(&console)
                .map(|t| last_lines(&t, 3))
                .unwrap_or_default();
            format!(" (console `{}`: {tail})", console.display())
        }
        None => String::new(),
    }
}
