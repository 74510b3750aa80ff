//! `[providers.local]` and the provider it makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use btrfsqa_model::Section;
use serde::Deserialize;

use super::{LocalProvider, LocalSettings};
use crate::{CloudProvider, ProviderContext, ProviderPlugin, ProvisionError};

/// `[providers.local]`: this machine, with loop devices.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LocalConfig {
    /// Backing files and mount points.
    #[serde(default = "default_work_dir")]
    pub work_dir: PathBuf,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            work_dir: default_work_dir(),
        }
    }
}

fn default_work_dir() -> PathBuf {
    PathBuf::from("/var/tmp/btrfsqa")
}

impl Section for LocalConfig {
    fn resolve_paths(&mut self, base: &Path) {
        btrfsqa_model::section::absolute_all(base, [&mut self.work_dir]);
    }
}

impl ProviderPlugin for LocalProvider {
    const ID: &'static str = super::PROVIDER;
    type Config = LocalConfig;

    async fn make(
        config: &LocalConfig,
        _context: ProviderContext<'_>,
    ) -> Result<Arc<dyn CloudProvider>, ProvisionError> {
        Ok(Arc::new(LocalProvider::new(LocalSettings::new(
            config.work_dir.clone(),
        ))))
    }
}
