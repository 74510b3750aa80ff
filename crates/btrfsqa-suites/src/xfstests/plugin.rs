//! `[suites.xfstests]` in the runner's registry.

use std::path::Path;
use std::sync::Arc;

use btrfsqa_model::Section;
use btrfsqa_model::section::{absolute_all, resolve_repo};

use super::config::{PROFILES, SectionConfig};
use super::{Xfstests, XfstestsConfig};
use crate::TestSuite;
use crate::plugin::{GitSource, SuitePlugin, SuiteSetup};

impl Section for XfstestsConfig {
    fn validate(&self) -> Vec<(String, String)> {
        XfstestsConfig::validate(self)
    }

    fn resolve_paths(&mut self, base: &Path) {
        absolute_all(base, self.cache_dir.iter_mut());
        // A git URL may be a local mirror given relative to the config file.
        self.git_url = resolve_repo(base, &self.git_url);
        let sections = self
            .sections
            .iter_mut()
            .flat_map(|s| s.exclude_files.iter_mut());
        absolute_all(base, self.exclude_files.iter_mut().chain(sections));
    }
}

impl SuitePlugin for Xfstests {
    const ID: &'static str = "xfstests";
    type Config = XfstestsConfig;

    fn make(
        config: &XfstestsConfig,
        _id: &str,
        setup: SuiteSetup<'_>,
    ) -> Option<Arc<dyn TestSuite>> {
        let mut config = config.clone();
        config
            .cache_dir
            .get_or_insert_with(|| setup.cache_dir.to_owned());
        Some(Arc::new(Xfstests::new(config)))
    }

    fn machine_packages(distro: crate::Distro) -> &'static [&'static str] {
        super::setup::packages(distro)
    }

    fn source(config: &XfstestsConfig) -> Option<GitSource> {
        Some(GitSource::new(&config.git_url, &config.git_ref))
    }

    fn pin_source(config: &mut XfstestsConfig, url: Option<&str>, commit: &str) {
        GitSource::pin(&mut config.git_url, &mut config.git_ref, url, commit);
    }

    /// Each name is a built-in profile or a configured section's name; the
    /// configured sections it does not name are left out.
    fn select_profiles(
        config: &mut XfstestsConfig,
        names: &[String],
    ) -> Option<Vec<(String, String)>> {
        let section_name =
            |section: &SectionConfig| section.name.clone().or_else(|| section.profile.clone());
        let configured: Vec<String> = config.sections.iter().filter_map(section_name).collect();
        let mut issues = Vec::new();
        let mut profiles = Vec::new();
        for name in names {
            if configured.contains(name) {
                continue;
            }
            if PROFILES.iter().any(|p| p.name == name) {
                profiles.push(name.clone());
            } else {
                let mut known: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
                known.extend(configured.iter().map(String::as_str));
                issues.push((
                    "profiles".to_owned(),
                    format!(
                        "`--profile {name}`: no such fstests profile or section (known: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        config.profiles = profiles;
        config
            .sections
            .retain(|section| section_name(section).is_some_and(|n| names.contains(&n)));
        Some(issues)
    }
}
