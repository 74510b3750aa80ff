//! Names the commit the binary is built from, for `btrfsqa --version` and the
//! reports' `btrfsqa_version`: `git rev-parse --short HEAD`, `-dirty` when
//! the work tree has changes, `unknown` outside a git checkout (a source
//! tarball, git missing). Nothing here may fail the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match git(&dir, &["rev-parse", "--short", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            // Any change to tracked files, staged or not (untracked files do
            // not change what is built from the tree).
            let dirty = git(&dir, &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        _ => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=BTRFSQA_COMMIT={commit}");
    // Run again when HEAD moves (a commit, a checkout), when the index
    // changes, and when a source file changes (it may make the tree dirty).
    for path in ["HEAD", "index", "packed-refs"] {
        if let Some(file) = git(&dir, &["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={}", dir.join(file).display());
        }
    }
    if let Some(head) = git(&dir, &["symbolic-ref", "-q", "HEAD"])
        && let Some(file) = git(&dir, &["rev-parse", "--git-path", &head])
    {
        println!("cargo:rerun-if-changed={}", dir.join(file).display());
    }
    println!("cargo:rerun-if-changed={}", dir.join("..").display());
}
