//! The set-up scripts, run for real against Debian's archive, in each
//! order they may be run in on one machine.
//!
//! apt's state here is private to the test: `APT_CONFIG` points apt (and so
//! the scripts, which ask `apt-config` where the sources are) at a copy of
//! this machine's sources with its own package lists, so the machine's own
//! apt configuration is never touched. Needs root, apt and the network to
//! the archive; takes about a minute per order.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{need_root, repo_root, text, which};

/// A private apt configuration: this machine's `deb` sources, no more.
struct PrivateApt {
    dir: tempfile::TempDir,
}

impl PrivateApt {
    fn new() -> PrivateApt {
        let dir = tempfile::Builder::new()
            .prefix("btrfsqa-apt-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = dir.path();
        for sub in ["sources.list.d", "lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        // The machine's binary sources, as a fresh machine has them.
        let system = Path::new("/etc/apt/sources.list.d");
        for entry in std::fs::read_dir(system).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if name.ends_with(".sources") && !name.starts_with("btrfsqa-") {
                let deb_only: String = text
                    .split("\n\n")
                    .filter(|stanza| !stanza.contains("deb-src") && !stanza.contains("-backports"))
                    .collect::<Vec<_>>()
                    .join("\n\n");
                std::fs::write(root.join("sources.list.d").join(&name), deb_only).unwrap();
            }
        }
        if let Ok(list) = std::fs::read_to_string("/etc/apt/sources.list") {
            let deb_only: String = list
                .lines()
                .filter(|l| l.starts_with("deb ") && !l.contains("-backports"))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(root.join("sources.list"), deb_only).unwrap();
        }
        std::fs::write(
            root.join("apt.conf"),
            format!(
                "Dir::Etc::SourceList \"{0}/sources.list\";\n\
                 Dir::Etc::SourceParts \"{0}/sources.list.d\";\n\
                 Dir::State::Lists \"{0}/lists\";\n\
                 Dir::Cache \"{0}/cache\";\n",
                root.display()
            ),
        )
        .unwrap();
        PrivateApt { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a script of the repository with this apt configuration; panics
    /// with its output when it fails.
    fn script(&self, script: &str, args: &[&Path]) -> String {
        let out = Command::new(repo_root().join("scripts").join(script))
            .args(args)
            .env("APT_CONFIG", self.path("apt.conf"))
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "{script} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        stdout
    }

    /// The sources apt now has, for messages.
    fn sources(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.path("sources.list.d"))
            .unwrap()
            .flatten()
        {
            all.push_str(&format!(
                "# {}\n{}\n",
                entry.file_name().to_string_lossy(),
                std::fs::read_to_string(entry.path()).unwrap_or_default()
            ));
        }
        all
    }
}

/// The Debian version the mirror at `dest` was made from, from its
/// `debian/changelog` (`btrfs-progs (6.2-1+deb12u2) bookworm; ...`).
fn mirrored_version(dest: &Path) -> String {
    let changelog = std::fs::read_to_string(dest.join("debian/changelog")).unwrap();
    let first = changelog.lines().next().unwrap_or_default();
    first.split(['(', ')']).nth(1).unwrap_or(first).to_owned()
}

fn codename() -> Option<String> {
    std::fs::read_to_string("/etc/os-release")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME=").map(str::to_owned))
        .filter(|c| !c.is_empty())
}

fn can_run(test: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    let tools = ["apt-get", "apt-config", "dpkg-source"]
        .iter()
        .all(|t| which(t));
    let debian = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg").is_file();
    if !tools || !debian || codename().is_none() {
        eprintln!(
            "skipping {test}: needs Debian's apt, dpkg-source and /etc/os-release's codename"
        );
        return false;
    }
    true
}

/// `install-deps.sh qemu` enables `<codename>-backports` (what `backports`
/// does alone); the mirror made after it is still the distribution's own
/// btrfs-progs, whose files the archive serves, not the backport.
#[test]
fn the_btrfs_progs_mirror_is_made_after_backports_are_enabled() {
    if !can_run("the_btrfs_progs_mirror_is_made_after_backports_are_enabled") {
        return;
    }
    let apt = PrivateApt::new();
    apt.script("install-deps.sh", &[Path::new("backports")]);
    assert!(apt.sources().contains("-backports"), "{}", apt.sources());
    let dest = apt.path("btrfs-progs");
    let out = apt.script("make-btrfs-progs-mirror.sh", &[&dest]);
    assert!(out.contains("export BTRFSQA_BTRFS_PROGS_GIT="), "{out}");
    let version = mirrored_version(&dest);
    assert!(!version.contains("bpo"), "{version}\n{}", apt.sources());
    assert!(dest.join("tests/cli-tests").is_dir());
}

/// The other order: the mirror first, then backports (the deb-src twin the
/// mirror added must not get in the way), then another mirror.
#[test]
fn backports_are_enabled_after_the_btrfs_progs_mirror() {
    if !can_run("backports_are_enabled_after_the_btrfs_progs_mirror") {
        return;
    }
    let apt = PrivateApt::new();
    let first = apt.path("first");
    apt.script("make-btrfs-progs-mirror.sh", &[&first]);
    let before = mirrored_version(&first);
    apt.script("install-deps.sh", &[Path::new("backports")]);
    assert!(apt.sources().contains("-backports"), "{}", apt.sources());
    let second = apt.path("second");
    apt.script("make-btrfs-progs-mirror.sh", &[&second]);
    assert_eq!(mirrored_version(&second), before);
    assert!(!before.contains("bpo"), "{before}");
}
