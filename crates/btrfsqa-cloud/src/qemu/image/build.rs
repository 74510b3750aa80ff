//! Building the image: debootstrap into a staging root, the guest's files
//! and accounts, the kernel and initramfs taken out, the root filesystem
//! made with `mkfs.ext4 -d` and converted to qcow2, each step logged to
//! `build.log`, and `image.json` written last.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::super::error::ImageError;
use super::directory::{ImageBuild, ImageInfo, ImageSettings};
use super::guest::{GuestFile, guest_files};
use crate::error::CommandError;

/// Users and the group that fstests expects.
const FSTESTS_ACCOUNTS: &str = "getent group fsgqa >/dev/null || groupadd fsgqa; \
     for u in fsgqa fsgqa2 123456-fsgqa; do id \"$u\" >/dev/null 2>&1 || useradd -m -g fsgqa \"$u\"; done";

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

pub(super) fn write_guest_file(root: &Path, guest: &GuestFile) -> Result<(), ImageError> {
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
pub(super) fn find_kernel(root: &Path) -> Result<(PathBuf, PathBuf, String), ImageError> {
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
