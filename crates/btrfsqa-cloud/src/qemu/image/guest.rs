//! What goes into the guest: the packages installed besides debootstrap's
//! base, and the files written into its root filesystem (the unit that
//! installs the run's SSH key from fw_cfg, the probe init, the network and
//! journal set-up).

/// The fw_cfg entry that carries the run's authorized key.
pub const FW_CFG_KEYS: &str = "opt/btrfsqa/authorized_keys";
/// What the probe init prints on the console once userspace runs.
pub const PROBE_MARKER: &str = "btrfsqa-probe: userspace is up";
/// The probe init inside the image.
pub const PROBE_INIT: &str = "/usr/local/sbin/btrfsqa-probe";

/// Packages installed into the image besides debootstrap's minimal base:
/// sshd and the boot essentials, the btrfs tools, and what a kernel build or
/// install on the machine needs. What the suites need to build and run
/// (fstests, btrfs-progs) is theirs to say: the caller adds it as
/// [`ImageSettings::extra_packages`](super::ImageSettings::extra_packages)
/// (`btrfsqa image build` adds every registered suite's).
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
    // The filesystem under test and the tools a person debugging it reaches for.
    "btrfs-progs",
    "e2fsprogs",
    "file",
    "strace",
    "xz-utils",
    "zstd",
    "rsync",
    // Building and installing kernels on the machine.
    "git",
    "make",
    "gcc",
    "libc6-dev",
    "bison",
    "flex",
    "libssl-dev",
    "libelf-dev",
    "cpio",
    "ccache",
    "kexec-tools",
];

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
