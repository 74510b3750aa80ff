//! `[providers.qemu]` and the provider it makes.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use btrfsqa_cloud::qemu::{ImagePaths, image::DEFAULT_IMAGE_DIR};
use btrfsqa_cloud::{Accel, QemuProvider, QemuSettings};

/// `[providers.qemu]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QemuProviderConfig {
    /// Overlays, disks, keys and sockets of running VMs (default `/var/tmp/btrfsqa-qemu`).
    pub work_dir: Option<PathBuf>,
    /// The guest image's directory (default `$BTRFSQA_QEMU_IMAGE`, else
    /// `/var/cache/btrfsqa/qemu-image`); `btrfsqa image build` makes it.
    pub image_dir: Option<PathBuf>,
    /// Guest memory in MiB (default 2048).
    pub memory_mib: Option<u32>,
    /// Virtual CPUs (default 2).
    pub cpus: Option<u32>,
    /// `auto` (a KVM probe boot decides), `kvm` or `tcg`.
    pub accel: Option<String>,
    /// Added to the guest kernel's command line.
    pub extra_args: Option<String>,
}

impl QemuProviderConfig {
    /// Problems serde cannot see, as `(key below providers.qemu, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if let Some(accel) = &self.accel
            && let Err(message) = accel.parse::<Accel>()
        {
            issues.push(("accel".to_owned(), message));
        }
        if self.memory_mib.is_some_and(|m| m < 256) {
            issues.push(("memory-mib".to_owned(), "must be at least 256".to_owned()));
        }
        if self.cpus == Some(0) {
            issues.push(("cpus".to_owned(), "must be at least 1".to_owned()));
        }
        issues
    }

    /// Makes relative paths absolute against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for dir in [&mut self.work_dir, &mut self.image_dir]
            .into_iter()
            .flatten()
        {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
    }

    /// The image directory these settings name.
    pub fn image(&self) -> ImagePaths {
        match &self.image_dir {
            Some(dir) => ImagePaths::from_path(dir),
            None => ImagePaths::from_env_or_default(),
        }
    }
}

/// The provider's settings for `config`: consoles go into `console_dir`
/// (the results store, beside the report). It takes the section rather than
/// the whole settings so that the config, which holds this section, stays
/// below the settings resolved from it.
pub fn qemu_settings(config: &QemuProviderConfig, console_dir: &Path) -> QemuSettings {
    let mut out = QemuSettings::default();
    if let Some(dir) = &config.work_dir {
        out.work_dir = dir.clone();
    }
    out.image = config.image();
    if let Some(memory) = config.memory_mib {
        out.memory_mib = memory;
    }
    if let Some(cpus) = config.cpus {
        out.cpus = cpus;
    }
    if let Some(accel) = config.accel.as_deref().and_then(|a| a.parse().ok()) {
        out.accel = accel;
    }
    out.extra_args = config.extra_args.clone();
    out.console_dir = Some(console_dir.to_path_buf());
    out
}

/// The qemu provider for `config`, its consoles in `console_dir`.
pub fn provider(config: &QemuProviderConfig, console_dir: &Path) -> QemuProvider {
    QemuProvider::new(qemu_settings(config, console_dir))
}

/// The default image directory, for messages.
pub fn default_image_dir() -> &'static str {
    DEFAULT_IMAGE_DIR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let config: QemuProviderConfig =
            toml::from_str("accel = \"hvf\"\nmemory-mib = 64\ncpus = 0").unwrap();
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["accel", "memory-mib", "cpus"]);
        assert!(toml::from_str::<QemuProviderConfig>("acel = \"tcg\"").is_err());
    }

    #[test]
    fn relative_dirs_follow_the_config_file() {
        let mut config: QemuProviderConfig =
            toml::from_str("image-dir = \"img\"\nwork-dir = \"/w\"").unwrap();
        config.resolve_paths(Path::new("/etc/btrfsqa"));
        assert_eq!(config.image().dir, PathBuf::from("/etc/btrfsqa/img"));
        assert_eq!(config.work_dir, Some(PathBuf::from("/w")));
    }
}
