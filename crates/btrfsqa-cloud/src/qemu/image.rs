//! The qemu provider's guest image: a Debian root filesystem with sshd,
//! btrfs-progs and what fstests and btrfs-progs need to build and run, made
//! from Debian's packages only (`debootstrap`), cached and reused.
//!
//! Layout of the image directory (default [`DEFAULT_IMAGE_DIR`]):
//!
//! ```text
//! DIR/rootfs.qcow2              the root filesystem (ext4 on the whole disk, /dev/vda)
//! DIR/vmlinuz, DIR/initrd.img   the image's own Debian kernel, booted with -kernel
//! DIR/ssh_host_ed25519_key.pub  the guest's host key, pinned by every run
//! DIR/image.json                what was built; written last, so its presence means complete
//! DIR/build.log                 the last build's output
//! ```
//!
//! The image is never modified by a run: every machine boots a qcow2 overlay
//! on it. Its root filesystem is made with `mkfs.ext4 -d` (no mount, no
//! loop device), and the run's SSH key reaches the guest through QEMU's
//! `fw_cfg` (`opt/btrfsqa/authorized_keys`), read by a small unit baked in.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use crate::error::CommandError;

/// Where images live unless configured.
pub const DEFAULT_IMAGE_DIR: &str = "/var/cache/btrfsqa/qemu-image";
/// Environment variable naming the image (its directory or its `rootfs.qcow2`).
pub const IMAGE_ENV: &str = "BTRFSQA_QEMU_IMAGE";
/// The fw_cfg entry that carries the run's authorized key.
pub const FW_CFG_KEYS: &str = "opt/btrfsqa/authorized_keys";
/// What the probe init prints on the console once userspace runs.
pub const PROBE_MARKER: &str = "btrfsqa-probe: userspace is up";
/// The probe init inside the image.
pub const PROBE_INIT: &str = "/usr/local/sbin/btrfsqa-probe";

/// Packages installed into the image besides debootstrap's minimal base:
/// sshd and the boot essentials, the btrfs tools, and the build and run-time
/// dependencies of fstests and btrfs-progs (so both build inside the guest),
/// plus what a kernel build or install on the machine needs.
pub const PACKAGES: &[&str] = &[
    // Boot, login, network.
    "systemd-sysv",
    // systemd-logind needs D-Bus; it turns QEMU's ACPI power button into a
    // clean power-off (how a relaunch into another kernel starts).
    "dbus",
    "udev",
    "kmod",
    "openssh-server",
    "iproute2",
    "netbase",
    "procps",
    "util-linux",
    "linux-image-amd64",
    "initramfs-tools",
    "ca-certificates",
    "sudo",
    "less",
    // Filesystems and block devices.
    "btrfs-progs",
    "e2fsprogs",
    "xfsprogs",
    "dmsetup",
    "duperemove",
    "attr",
    "acl",
    "quota",
    // fstests run time.
    "bc",
    "fio",
    "dbench",
    "psmisc",
    "file",
    "strace",
    "python3",
    "xz-utils",
    "zstd",
    "rsync",
    // Building fstests and btrfs-progs.
    "git",
    "make",
    "gcc",
    "libc6-dev",
    "autoconf",
    "automake",
    "libtool",
    "pkg-config",
    "xfslibs-dev",
    "uuid-dev",
    "libattr1-dev",
    "libacl1-dev",
    "libaio-dev",
    "liburing-dev",
    "libgdbm-dev",
    "libcap-dev",
    "libblkid-dev",
    "libzstd-dev",
    "liblzo2-dev",
    "zlib1g-dev",
    "libudev-dev",
    "libext2fs-dev",
    // Building and installing kernels on the machine.
    "bison",
    "flex",
    "libssl-dev",
    "libelf-dev",
    "cpio",
    "ccache",
    "kexec-tools",
];

/// Users and the group that fstests expects.
const FSTESTS_ACCOUNTS: &str = "getent group fsgqa >/dev/null || groupadd fsgqa; \
     for u in fsgqa fsgqa2 123456-fsgqa; do id \"$u\" >/dev/null 2>&1 || useradd -m -g fsgqa \"$u\"; done";

/// The files of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePaths {
    /// The directory holding them.
    pub dir: PathBuf,
}

impl ImagePaths {
    /// The image in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ImagePaths { dir: dir.into() }
    }

    /// The image named by `BTRFSQA_QEMU_IMAGE` (its directory, or the
    /// `rootfs.qcow2` in it), else the default directory.
    pub fn from_env_or_default() -> Self {
        match std::env::var_os(IMAGE_ENV) {
            Some(value) if !value.is_empty() => ImagePaths::from_path(Path::new(&value)),
            _ => ImagePaths::new(DEFAULT_IMAGE_DIR),
        }
    }

    /// The image at `path`: a directory, or a `*.qcow2` file in one.
    pub fn from_path(path: &Path) -> Self {
        if path.extension().is_some_and(|e| e == "qcow2") {
            ImagePaths::new(path.parent().unwrap_or(Path::new(".")))
        } else {
            ImagePaths::new(path)
        }
    }

    /// The root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs.qcow2")
    }
    /// The image's Debian kernel.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    /// The image's initramfs.
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }
    /// The guest's public host key.
    pub fn host_key(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key.pub")
    }
    /// The description written when the build completes.
    pub fn info(&self) -> PathBuf {
        self.dir.join("image.json")
    }
    /// The last build's log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("build.log")
    }

    /// Whether a complete image is there.
    pub fn is_complete(&self) -> bool {
        [
            self.info(),
            self.rootfs(),
            self.kernel(),
            self.initrd(),
            self.host_key(),
        ]
        .iter()
        .all(|p| p.is_file())
    }

    /// The description of the complete image, if there is one.
    pub fn read_info(&self) -> Option<ImageInfo> {
        if !self.is_complete() {
            return None;
        }
        serde_json::from_slice(&std::fs::read(self.info()).ok()?).ok()
    }
}

/// What `btrfsqa image build` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageSettings {
    /// Where the image goes.
    pub paths: ImagePaths,
    /// The Debian release (default `bookworm`).
    pub suite: String,
    /// The Debian mirror (default `http://deb.debian.org/debian`).
    pub mirror: String,
    /// Size of the root filesystem in GiB (sparse; default 16).
    pub size_gib: u64,
    /// Packages added to [`PACKAGES`].
    pub extra_packages: Vec<String>,
    /// Build even when a complete image is there.
    pub force: bool,
}

impl ImageSettings {
    /// Defaults for the image in `paths`.
    pub fn new(paths: ImagePaths) -> Self {
        ImageSettings {
            paths,
            suite: "bookworm".to_owned(),
            mirror: "http://deb.debian.org/debian".to_owned(),
            size_gib: 16,
            extra_packages: Vec::new(),
            force: false,
        }
    }

    /// Every package to install.
    pub fn packages(&self) -> Vec<String> {
        let mut packages: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
        for extra in &self.extra_packages {
            if !packages.contains(extra) {
                packages.push(extra.clone());
            }
        }
        packages
    }
}

/// A finished image's description (`image.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageInfo {
    /// The Debian release.
    pub suite: String,
    /// The mirror it came from.
    pub mirror: String,
    /// The release of the image's own kernel.
    pub kernel_release: String,
    /// The installed packages asked for.
    pub packages: Vec<String>,
    /// When it was built.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// How long the build took.
    pub build_secs: f64,
}

/// The outcome of [`build_image`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBuild {
    /// Where it is.
    pub paths: ImagePaths,
    /// What it is.
    pub info: ImageInfo,
    /// `false` when the cached image was reused.
    pub built: bool,
}

/// One file written into the guest's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestFile {
    /// Absolute path inside the guest.
    pub path: &'static str,
    /// Its content; a symlink target when `symlink` is set.
    pub content: String,
    /// Its mode.
    pub mode: u32,
    /// Whether it is a symlink to `content`.
    pub symlink: bool,
}

fn file(path: &'static str, content: &str, mode: u32) -> GuestFile {
    GuestFile {
        path,
        content: content.to_owned(),
        mode,
        symlink: false,
    }
}

fn link(path: &'static str, target: &str) -> GuestFile {
    GuestFile {
        path,
        content: target.to_owned(),
        mode: 0o777,
        symlink: true,
    }
}

/// The configuration the image gets on top of the packages.
pub(crate) fn guest_files() -> Vec<GuestFile> {
    let keys_script = format!(
        r#"#!/bin/sh
# Installs the run's SSH key, which QEMU passes as fw_cfg `{FW_CFG_KEYS}`.
modprobe qemu_fw_cfg 2>/dev/null || true
f=/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_KEYS}/raw
i=0
while [ ! -r "$f" ] && [ $i -lt 20 ]; do sleep 0.25; i=$((i + 1)); done
[ -r "$f" ] || {{ echo "btrfsqa: no authorized key in fw_cfg" >&2; exit 0; }}
install -d -m 700 /root/.ssh
cat "$f" > /root/.ssh/authorized_keys.new
chmod 600 /root/.ssh/authorized_keys.new
mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
"#
    );
    let probe = format!(
        r#"#!/bin/sh
# Init for the accelerator probe: prove userspace runs, then power off.
echo "{PROBE_MARKER}" > /dev/console
echo o > /proc/sysrq-trigger
sleep 30
"#
    );
    vec![
        file("/etc/hostname", "btrfsqa-guest\n", 0o644),
        file(
            "/etc/hosts",
            "127.0.0.1 localhost\n127.0.1.1 btrfsqa-guest\n::1 localhost ip6-localhost ip6-loopback\n",
            0o644,
        ),
        file(
            "/etc/fstab",
            "# The root is the whole first virtio disk.\n/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
            0o644,
        ),
        // QEMU's user network is fixed: no DHCP round trip at boot.
        file(
            "/etc/systemd/network/10-qemu-user.network",
            "[Match]\nName=e*\n\n[Network]\nAddress=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
            0o644,
        ),
        link(
            "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
            "/lib/systemd/system/systemd-networkd.service",
        ),
        file("/etc/resolv.conf", "nameserver 10.0.2.3\n", 0o644),
        file(
            "/etc/ssh/sshd_config.d/btrfsqa.conf",
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\nMaxSessions 20\n",
            0o644,
        ),
        file("/usr/local/sbin/btrfsqa-fw-cfg-keys", &keys_script, 0o755),
        file(
            "/etc/systemd/system/btrfsqa-authorized-keys.service",
            "[Unit]\nDescription=btrfsqa: install the run's SSH key from QEMU fw_cfg\nBefore=ssh.service\nAfter=local-fs.target systemd-modules-load.service\n\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/btrfsqa-fw-cfg-keys\nRemainAfterExit=yes\n\n[Install]\nWantedBy=multi-user.target\n",
            0o644,
        ),
        link(
            "/etc/systemd/system/multi-user.target.wants/btrfsqa-authorized-keys.service",
            "/etc/systemd/system/btrfsqa-authorized-keys.service",
        ),
        file(PROBE_INIT, &probe, 0o755),
        // Timers that would compete with the tests for the disks.
        link("/etc/systemd/system/apt-daily.timer", "/dev/null"),
        link("/etc/systemd/system/apt-daily-upgrade.timer", "/dev/null"),
        link("/etc/systemd/system/e2scrub_all.timer", "/dev/null"),
        link("/etc/systemd/system/fstrim.timer", "/dev/null"),
        link("/etc/systemd/system/man-db.timer", "/dev/null"),
        link(
            "/etc/systemd/system/systemd-networkd-wait-online.service",
            "/dev/null",
        ),
        // Volatile journal: the console and the suites keep what matters.
        file(
            "/etc/systemd/journald.conf.d/btrfsqa.conf",
            "[Journal]\nStorage=volatile\nForwardToConsole=no\n",
            0o644,
        ),
    ]
}

/// Builds the image unless a complete one is there (and `force` is off).
/// Blocking; takes minutes. Needs root, `debootstrap`, `mkfs.ext4` and
/// `qemu-img`. Every step's output goes to the image's `build.log`.
pub fn build_image(settings: &ImageSettings) -> Result<ImageBuild, ImageError> {
    let paths = &settings.paths;
    if !settings.force
        && let Some(info) = paths.read_info()
    {
        return Ok(ImageBuild {
            paths: paths.clone(),
            info,
            built: false,
        });
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(ImageError::NotRoot);
    }
    for (tool, hint) in [
        ("debootstrap", "apt-get install debootstrap"),
        ("mkfs.ext4", "apt-get install e2fsprogs"),
        ("qemu-img", "scripts/install-deps.sh qemu"),
        ("chroot", "coreutils"),
    ] {
        if crate::tool::find_tool(tool).is_none() {
            return Err(ImageError::MissingTool {
                tool: tool.to_owned(),
                hint: hint.to_owned(),
            });
        }
    }
    let io = |operation: &str, path: &Path| {
        let operation = operation.to_owned();
        let path = path.to_owned();
        move |source| ImageError::Io {
            operation,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&paths.dir).map_err(io("create", &paths.dir))?;
    let lock_path = paths.dir.join(".lock");
    let lock_file = File::create(&lock_path).map_err(io("create", &lock_path))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| ImageError::Locked {
            lock: lock_path.clone(),
        })?;

    let started = Instant::now();
    let work = paths.dir.join(".build");
    remove_tree(&work)?;
    std::fs::create_dir_all(&work).map_err(io("create", &work))?;
    let log_path = paths.log();
    let mut log = File::create(&log_path).map_err(io("create", &log_path))?;
    let root = work.join("root");
    let packages = settings.packages();
    let result = (|| {
        let mut step = |name: &str, program: &str, args: &[&std::ffi::OsStr]| {
            run_logged(&mut log, &log_path, name, program, args)
        };
        step(
            "debootstrap",
            "debootstrap",
            &[
                "--variant=minbase".as_ref(),
                format!("--include={}", packages.join(",")).as_ref(),
                settings.suite.as_ref(),
                root.as_os_str(),
                settings.mirror.as_ref(),
            ],
        )?;
        for guest in guest_files() {
            write_guest_file(&root, &guest)?;
        }
        step(
            "fstests accounts",
            "chroot",
            &[
                root.as_os_str(),
                "sh".as_ref(),
                "-c".as_ref(),
                FSTESTS_ACCOUNTS.as_ref(),
            ],
        )?;
        // Root logs in with the run's key only.
        step(
            "lock root's password",
            "chroot",
            &[
                root.as_os_str(),
                "passwd".as_ref(),
                "-l".as_ref(),
                "root".as_ref(),
            ],
        )?;
        let (kernel, initrd, release) = find_kernel(&root)?;
        let host_key = root.join("etc/ssh/ssh_host_ed25519_key.pub");
        if !host_key.is_file() {
            return Err(ImageError::Incomplete {
                root: root.clone(),
                what: "ssh host key (`/etc/ssh/ssh_host_ed25519_key.pub`)".to_owned(),
            });
        }
        for (from, to) in [
            (&kernel, work.join("vmlinuz")),
            (&initrd, work.join("initrd.img")),
            (&host_key, work.join("ssh_host_ed25519_key.pub")),
        ] {
            std::fs::copy(from, &to).map_err(io("copy to", &to))?;
        }
        let raw = work.join("rootfs.raw");
        step(
            "mkfs.ext4 -d",
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-L".as_ref(),
                "btrfsqa-root".as_ref(),
                "-d".as_ref(),
                root.as_os_str(),
                raw.as_os_str(),
                format!("{}G", settings.size_gib).as_ref(),
            ],
        )?;
        let qcow2 = work.join("rootfs.qcow2");
        step(
            "qemu-img convert",
            "qemu-img",
            &[
                "convert".as_ref(),
                "-f".as_ref(),
                "raw".as_ref(),
                "-O".as_ref(),
                "qcow2".as_ref(),
                raw.as_os_str(),
                qcow2.as_os_str(),
            ],
        )?;
        let _ = std::fs::remove_file(&raw);
        Ok(release)
    })();
    let release = match result {
        Ok(release) => release,
        Err(err) => {
            let _ = writeln!(log, "FAILED: {err}");
            let _ = remove_tree(&work);
            return Err(err);
        }
    };

    // The old description goes first: a crash from here on leaves an
    // incomplete image that the next build replaces.
    let _ = std::fs::remove_file(paths.info());
    for name in [
        "rootfs.qcow2",
        "vmlinuz",
        "initrd.img",
        "ssh_host_ed25519_key.pub",
    ] {
        let target = paths.dir.join(name);
        std::fs::rename(work.join(name), &target).map_err(io("move into place", &target))?;
    }
    let info = ImageInfo {
        suite: settings.suite.clone(),
        mirror: settings.mirror.clone(),
        kernel_release: release,
        packages,
        created_at: chrono::Utc::now(),
        build_secs: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|e| ImageError::Io {
        operation: "encode".to_owned(),
        path: paths.info(),
        source: std::io::Error::other(e),
    })?;
    let temp = paths.dir.join(".image.json.tmp");
    std::fs::write(&temp, json).map_err(io("write", &temp))?;
    std::fs::rename(&temp, paths.info()).map_err(io("write", &paths.info()))?;
    remove_tree(&work)?;
    Ok(ImageBuild {
        paths: paths.clone(),
        info,
        built: true,
    })
}

/// Runs one step with its output appended to the log.
fn run_logged(
    log: &mut File,
    log_path: &Path,
    step: &str,
    program: &str,
    args: &[&std::ffi::OsStr],
) -> Result<(), ImageError> {
    let line = std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(log, "==> {step}: {line}");
    let _ = log.flush();
    let failed = |status: Option<i32>, stderr: String| ImageError::Step {
        step: step.to_owned(),
        log: log_path.to_owned(),
        source: CommandError {
            command: line.clone(),
            status,
            stderr,
        },
    };
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => return Err(failed(None, e.to_string())),
    };
    let program_path = crate::tool::find_tool(program).unwrap_or_else(|| PathBuf::from(program));
    let status = Command::new(program_path)
        .args(args)
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| failed(None, e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(failed(
            status.code(),
            format!("see `{}`", log_path.display()),
        ))
    }
}

fn write_guest_file(root: &Path, guest: &GuestFile) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(guest.path.trim_start_matches('/'));
    let io = |operation: &str| {
        let operation = operation.to_owned();
        let path = path.clone();
        move |source| ImageError::Io {
            operation,
            path,
            source,
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create the directory of"))?;
    }
    // Never write through a symlink the packages left there (resolv.conf).
    if path.symlink_metadata().is_ok() {
        std::fs::remove_file(&path).map_err(io("replace"))?;
    }
    if guest.symlink {
        std::os::unix::fs::symlink(&guest.content, &path).map_err(io("link"))
    } else {
        std::fs::write(&path, &guest.content).map_err(io("write"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(guest.mode))
            .map_err(io("set the mode of"))
    }
}

/// The image's kernel, initramfs and release (the newest, if several).
fn find_kernel(root: &Path) -> Result<(PathBuf, PathBuf, String), ImageError> {
    let boot = root.join("boot");
    let mut releases: Vec<String> = std::fs::read_dir(&boot)
        .map_err(|source| ImageError::Io {
            operation: "list".to_owned(),
            path: boot.clone(),
            source,
        })?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_owned)
        })
        .filter(|release| boot.join(format!("initrd.img-{release}")).is_file())
        .collect();
    releases.sort();
    let release = releases.pop().ok_or_else(|| ImageError::Incomplete {
        root: root.to_owned(),
        what: "kernel with an initramfs in `/boot`".to_owned(),
    })?;
    Ok((
        boot.join(format!("vmlinuz-{release}")),
        boot.join(format!("initrd.img-{release}")),
        release,
    ))
}

/// Removes a build directory, first unmounting anything a failed
/// debootstrap left mounted inside it (never deleting through a mount).
fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    if !dir.exists() {
        return Ok(());
    }
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut inside: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&canonical))
        .collect();
    inside.sort();
    for target in inside.iter().rev() {
        let status = Command::new("umount")
            .arg(target)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            return Err(ImageError::Io {
                operation: "unmount (left mounted by a failed build)".to_owned(),
                path: target.clone(),
                source: std::io::Error::other("umount failed"),
            });
        }
    }
    std::fs::remove_dir_all(dir).map_err(|source| ImageError::Io {
        operation: "remove".to_owned(),
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_a_directory_or_the_qcow2_in_it() {
        let dir = ImagePaths::from_path(Path::new("/srv/img"));
        assert_eq!(dir.rootfs(), Path::new("/srv/img/rootfs.qcow2"));
        let file = ImagePaths::from_path(Path::new("/srv/img/rootfs.qcow2"));
        assert_eq!(file, dir);
        assert_eq!(
            file.host_key(),
            Path::new("/srv/img/ssh_host_ed25519_key.pub")
        );
    }

    #[test]
    fn an_image_without_its_description_is_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ImagePaths::new(dir.path());
        for name in [
            "rootfs.qcow2",
            "vmlinuz",
            "initrd.img",
            "ssh_host_ed25519_key.pub",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        assert!(!paths.is_complete());
        assert_eq!(paths.read_info(), None);
        let info = ImageInfo {
            suite: "bookworm".into(),
            mirror: "http://deb.debian.org/debian".into(),
            kernel_release: "6.1.0-37-amd64".into(),
            packages: vec!["btrfs-progs".into()],
            created_at: chrono::Utc::now(),
            build_secs: 1.0,
        };
        std::fs::write(paths.info(), serde_json::to_vec(&info).unwrap()).unwrap();
        assert_eq!(paths.read_info(), Some(info));
    }

    #[test]
    fn a_cached_image_is_reused_without_root_or_tools() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ImagePaths::new(dir.path());
        for name in [
            "rootfs.qcow2",
            "vmlinuz",
            "initrd.img",
            "ssh_host_ed25519_key.pub",
        ] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::write(
            paths.info(),
            r#"{"suite":"bookworm","mirror":"m","kernel-release":"r","packages":[],"created-at":"2026-01-01T00:00:00Z","build-secs":2.0}"#,
        )
        .unwrap();
        let built = build_image(&ImageSettings::new(paths.clone())).unwrap();
        assert!(!built.built);
        assert_eq!(built.info.kernel_release, "r");
    }

    #[test]
    fn the_package_list_covers_boot_btrfs_and_fstests() {
        let mut settings = ImageSettings::new(ImagePaths::new("/x"));
        settings.extra_packages = vec!["btrfs-progs".into(), "vim-tiny".into()];
        let packages = settings.packages();
        for needed in [
            "openssh-server",
            "btrfs-progs",
            "linux-image-amd64",
            "xfslibs-dev",
            "liburing-dev",
            "fio",
            "dmsetup",
            "vim-tiny",
        ] {
            assert!(packages.iter().any(|p| p == needed), "{needed}");
        }
        assert_eq!(packages.iter().filter(|p| *p == "btrfs-progs").count(), 1);
    }

    #[test]
    fn guest_files_install_the_key_before_sshd_and_start_the_network() {
        let files = guest_files();
        let unit = files
            .iter()
            .find(|f| f.path == "/etc/systemd/system/btrfsqa-authorized-keys.service")
            .unwrap();
        assert!(unit.content.contains("Before=ssh.service"));
        let script = files
            .iter()
            .find(|f| f.path == "/usr/local/sbin/btrfsqa-fw-cfg-keys")
            .unwrap();
        assert!(script.content.contains(FW_CFG_KEYS));
        assert_eq!(script.mode, 0o755);
        assert!(files.iter().any(|f| f.symlink
            && f.path.ends_with("systemd-networkd.service")
            && f.content.starts_with("/lib/systemd/system/")));
        let probe = files.iter().find(|f| f.path == PROBE_INIT).unwrap();
        assert!(probe.content.contains(PROBE_MARKER));
    }

    #[test]
    fn guest_files_are_written_under_the_root_replacing_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/run/elsewhere", root.join("etc/resolv.conf")).unwrap();
        for guest in guest_files() {
            write_guest_file(root, &guest).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
            "nameserver 10.0.2.3\n"
        );
        assert!(
            root.join("etc/systemd/system/apt-daily.timer")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn the_newest_kernel_with_an_initramfs_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        for name in [
            "vmlinuz-6.1.0-30-amd64",
            "initrd.img-6.1.0-30-amd64",
            "vmlinuz-6.1.0-37-amd64",
            "initrd.img-6.1.0-37-amd64",
            "vmlinuz-6.1.0-40-amd64",
        ] {
            std::fs::write(boot.join(name), "x").unwrap();
        }
        let (kernel, initrd, release) = find_kernel(dir.path()).unwrap();
        assert_eq!(release, "6.1.0-37-amd64");
        assert!(kernel.ends_with("vmlinuz-6.1.0-37-amd64"));
        assert!(initrd.ends_with("initrd.img-6.1.0-37-amd64"));
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(empty.path().join("boot")).unwrap();
        assert!(matches!(
            find_kernel(empty.path()),
            Err(ImageError::Incomplete { .. })
        ));
    }
}
