//! End-to-end tests of the `btrfsqa` binary: real processes, real loop
//! devices, real btrfs, a real git repository. Tests that need root skip
//! with a printed reason.

mod bisect;
mod cli;
mod compare;
mod deploy;
mod faults;
mod hardening;
mod imports;
mod matrix;
mod plugins;
mod readme;
mod reap;
mod runs;
mod scripts;
mod sharding;
mod watch;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn btrfsqa() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_btrfsqa"));
    command.env("NO_COLOR", "1").env_remove("BTRFSQA_CONFIG");
    command
}

/// Runs and returns output, with the text printed on failure to help debugging.
pub fn run(command: &mut Command) -> Output {
    command.output().expect("btrfsqa starts")
}

/// Text of both streams.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Whether root-only tests can run; prints why not.
pub fn need_root(test: &str) -> bool {
    let root = nix_is_root();
    let tools = ["losetup", "mkfs.btrfs", "git"]
        .iter()
        .all(|tool| which(tool));
    if !root || !tools {
        eprintln!("skipping {test}: needs root with losetup, mkfs.btrfs and git (root={root})");
    }
    root && tools
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether `tool` is on PATH.
pub fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}
