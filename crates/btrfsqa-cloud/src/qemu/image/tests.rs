//! The image's paths and description, its package list and guest files,
//! reusing a cached image, and finding the kernel in a built root.

use std::path::Path;

use super::super::error::ImageError;
use super::build::{find_kernel, write_guest_file};
use super::guest::guest_files;
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
fn the_package_list_covers_boot_btrfs_and_the_callers_extras() {
    let mut settings = ImageSettings::new(ImagePaths::new("/x"));
    settings.extra_packages = vec!["btrfs-progs".into(), "vim-tiny".into()];
    let packages = settings.packages();
    for needed in [
        "openssh-server",
        "btrfs-progs",
        "linux-image-amd64",
        "kexec-tools",
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
