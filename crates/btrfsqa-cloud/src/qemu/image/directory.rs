//! The image directory: where its files are, what a build is asked for
//! ([`ImageSettings`]), and the description a complete image keeps
//! (`image.json`, [`ImageInfo`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::guest::PACKAGES;

/// Where images live unless configured.
pub const DEFAULT_IMAGE_DIR: &str = "/var/cache/btrfsqa/qemu-image";
/// Environment variable naming the image (its directory or its `rootfs.qcow2`).
pub const IMAGE_ENV: &str = "BTRFSQA_QEMU_IMAGE";

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

/// The outcome of [`build_image`](super::build_image).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBuild {
    /// Where it is.
    pub paths: ImagePaths,
    /// What it is.
    pub info: ImageInfo,
    /// `false` when the cached image was reused.
    pub built: bool,
}
