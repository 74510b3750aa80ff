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

mod build;
mod directory;
mod guest;

pub use build::build_image;
pub use directory::{
    DEFAULT_IMAGE_DIR, IMAGE_ENV, ImageBuild, ImageInfo, ImagePaths, ImageSettings,
};
pub use guest::{FW_CFG_KEYS, PACKAGES, PROBE_INIT, PROBE_MARKER};

#[cfg(test)]
mod tests;
