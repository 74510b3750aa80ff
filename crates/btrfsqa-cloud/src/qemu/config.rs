//! `[providers.qemu]` and the provider it makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use btrfsqa_model::Section;
use serde::Deserialize;

use super::{Accel, ImagePaths, QemuProvider, QemuSettings};
use crate::{CloudProvider, ProviderContext, ProviderPlugin, ProvisionError};

/// `[providers.qemu]`: a disposable local VM per machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QemuConfig {
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

impl Section for QemuConfig {
    fn validate(&self) -> Vec<(String, String)> {
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

    fn resolve_paths(&mut self, base: &Path) {
        let dirs = [&mut self.work_dir, &mut self.image_dir];
        btrfsqa_model::section::absolute_all(base, dirs.into_iter().flatten());
    }
}

impl QemuConfig {
    /// The image directory these settings name.
    pub fn image(&self) -> ImagePaths {
        match &self.image_dir {
            Some(dir) => ImagePaths::from_path(dir),
            None => ImagePaths::from_env_or_default(),
        }
    }

    /// The provider's settings: consoles go into `console_dir` (the
    /// results store, beside the report).
    pub fn settings(&self, console_dir: &Path) -> QemuSettings {
        let mut out = QemuSettings::default();
        if let Some(dir) = &self.work_dir {
            out.work_dir = dir.clone();
        }
        out.image = self.image();
        if let Some(memory) = self.memory_mib {
            out.memory_mib = memory;
        }
        if let Some(cpus) = self.cpus {
            out.cpus = cpus;
        }
        if let Some(accel) = self.accel.as_deref().and_then(|a| a.parse().ok()) {
            out.accel = accel;
        }
        out.extra_args = self.extra_args.clone();
        out.console_dir = Some(console_dir.to_path_buf());
        out
    }
}

impl ProviderPlugin for QemuProvider {
    const ID: &'static str = "qemu";
    const VIRTIO_GUEST: bool = true;
    type Config = QemuConfig;

    async fn make(
        config: &QemuConfig,
        context: ProviderContext<'_>,
    ) -> Result<Arc<dyn CloudProvider>, ProvisionError> {
        Ok(Arc::new(QemuProvider::new(
            config.settings(context.results_dir),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let config: QemuConfig =
            toml::from_str("accel = \"hvf\"\nmemory-mib = 64\ncpus = 0").unwrap();
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["accel", "memory-mib", "cpus"]);
        assert!(toml::from_str::<QemuConfig>("acel = \"tcg\"").is_err());
    }

    #[test]
    fn relative_dirs_follow_the_config_file() {
        let mut config: QemuConfig =
            toml::from_str("image-dir = \"img\"\nwork-dir = \"/w\"").unwrap();
        config.resolve_paths(Path::new("/etc/btrfsqa"));
        assert_eq!(config.image().dir, PathBuf::from("/etc/btrfsqa/img"));
        assert_eq!(config.work_dir, Some(PathBuf::from("/w")));
    }
}
