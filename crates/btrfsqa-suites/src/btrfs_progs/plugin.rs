//! `[suites.btrfs-progs]` in the runner's registry.

use std::path::Path;
use std::sync::Arc;

use btrfsqa_model::Section;
use btrfsqa_model::section::{absolute_all, resolve_repo};

use super::{BtrfsProgsConfig, BtrfsProgsTests};
use crate::TestSuite;
use crate::plugin::{GitSource, SuitePlugin, SuiteSetup};

impl Section for BtrfsProgsConfig {
    fn validate(&self) -> Vec<(String, String)> {
        BtrfsProgsConfig::validate(self)
    }

    fn resolve_paths(&mut self, base: &Path) {
        absolute_all(base, self.cache_dir.iter_mut());
        // A git URL may be a local mirror given relative to the config file.
        self.git_url = resolve_repo(base, &self.git_url);
    }
}

impl SuitePlugin for BtrfsProgsTests {
    const ID: &'static str = "btrfs-progs";
    type Config = BtrfsProgsConfig;

    fn make(
        config: &BtrfsProgsConfig,
        _id: &str,
        setup: SuiteSetup<'_>,
    ) -> Option<Arc<dyn TestSuite>> {
        let mut config = config.clone();
        config
            .cache_dir
            .get_or_insert_with(|| setup.cache_dir.to_owned());
        Some(Arc::new(BtrfsProgsTests::new(config)))
    }

    fn machine_packages(distro: crate::Distro) -> &'static [&'static str] {
        super::packages(distro)
    }

    fn source(config: &BtrfsProgsConfig) -> Option<GitSource> {
        Some(GitSource::new(&config.git_url, &config.git_ref))
    }

    fn pin_source(config: &mut BtrfsProgsConfig, url: Option<&str>, commit: &str) {
        GitSource::pin(&mut config.git_url, &mut config.git_ref, url, commit);
    }
}
