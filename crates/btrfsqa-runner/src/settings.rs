//! Resolving a [`Config`] plus command-line overrides into [`Settings`].

use std::path::{Path, PathBuf};

use btrfsqa_model::section::{absolute, resolve_repo};

use crate::config::{Config, ConfigSource, validate};
use crate::error::{ConfigError, ConfigIssue};
use crate::plugins;

/// What the command line may override (`*Args` in the CLI map onto this).
#[derive(Debug, Clone, Default)]
pub struct RunOverrides {
    /// `--provider`.
    pub provider: Option<String>,
    /// `--suite` (repeatable); replaces `run.suites` when non-empty.
    pub suites: Vec<String>,
    /// `--profile` (repeatable): when non-empty, narrows each suite of the
    /// run that has profiles to these (fstests: built-in profiles or
    /// configured sections' names, replacing `suites.xfstests.profiles`).
    pub profiles: Vec<String>,
    /// `--results-dir`.
    pub results_dir: Option<PathBuf>,
    /// `--site-repo`.
    pub site_repo: Option<String>,
    /// `--shards`.
    pub shards: Option<u32>,
}

/// A validated configuration with every path resolved: what the runner uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file's name (or `<embedded default>`).
    pub config_name: String,
    /// SHA-256 of the config text and the overrides.
    pub config_hash: String,
    /// The configuration, overrides applied, paths absolute.
    pub config: Config,
}

impl Settings {
    /// Parses `source`, applies `overrides`, validates the result and makes
    /// every relative path absolute (file paths against the file's directory,
    /// command-line paths against the current directory).
    pub fn resolve(
        source: &ConfigSource,
        overrides: RunOverrides,
    ) -> Result<Settings, ConfigError> {
        let mut config = source.parse()?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let base = absolute(&cwd, &source.base_dir);
        resolve_paths(&mut config, &base);

        let mut hash_input = source.hash();
        if let Some(provider) = overrides.provider {
            hash_input.push_str(&format!(";provider={provider}"));
            config.run.provider = provider;
        }
        if !overrides.suites.is_empty() {
            hash_input.push_str(&format!(";suites={}", overrides.suites.join(",")));
            config.run.suites = overrides.suites;
        }
        let mut override_issues = Vec::new();
        if !overrides.profiles.is_empty() {
            hash_input.push_str(&format!(";profiles={}", overrides.profiles.join(",")));
            override_issues.extend(select_profiles(&mut config, &overrides.profiles));
        }
        if let Some(shards) = overrides.shards {
            config.run.shards = shards;
        }
        if let Some(dir) = overrides.results_dir {
            config.run.results_dir = absolute(&cwd, &dir);
        }
        if let Some(repo) = overrides.site_repo {
            config.publish.site_repo = Some(resolve_repo(&cwd, &repo));
        }
        // Overrides can make a valid file invalid (`--suite nope`): check again,
        // naming the command line for keys the file did not hold.
        let issues: Vec<ConfigIssue> = override_issues
            .into_iter()
            .chain(validate(&config))
            .map(|(key, message)| ConfigIssue {
                file: format!("{} (with command-line overrides)", source.name),
                line: None,
                key,
                message,
            })
            .collect();
        if !issues.is_empty() {
            return Err(ConfigError::Invalid { issues });
        }
        use sha2::Digest;
        let config_hash = sha2::Sha256::digest(hash_input.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Settings {
            config_name: source.name.clone(),
            config_hash,
            config,
        })
    }

    /// The results store root.
    pub fn results_dir(&self) -> &Path {
        &self.config.run.results_dir
    }
}

/// Narrows every suite of the run that has profiles to `names`; returns
/// `(key, message)` for each name a suite does not know, or for a run
/// without such a suite.
fn select_profiles(config: &mut Config, names: &[String]) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    let mut taken = false;
    let mut entries: Vec<_> = config
        .run
        .suites
        .iter()
        .filter_map(|id| plugins::suite_entry(&config.suites, id))
        .collect();
    entries.dedup_by_key(|entry| entry.id);
    for entry in entries {
        let Some(section) = config.suites.by_id_mut(entry.id) else {
            continue;
        };
        if let Some(unknown) = entry.select_profiles(section, names) {
            taken = true;
            issues.extend(
                unknown
                    .into_iter()
                    .map(|(key, message)| (format!("suites.{}.{key}", entry.id), message)),
            );
        }
    }
    if !taken {
        issues.push((
            "run.suites".to_owned(),
            "`--profile` selects profiles (fstests sections), but no suite of the run has \
             profiles: add `--suite xfstests`"
                .to_owned(),
        ));
    }
    issues
}

fn resolve_paths(config: &mut Config, base: &Path) {
    config.run.results_dir = absolute(base, &config.run.results_dir);
    for (_, section) in config.providers.iter_mut() {
        section.resolve_paths(base);
    }
    for (_, section) in config.suites.iter_mut() {
        section.resolve_paths(base);
    }
    if let Some(key) = &mut config.publish.ssh_key {
        *key = absolute(base, key);
    }
    if let Some(repo) = &config.publish.site_repo {
        config.publish.site_repo = Some(resolve_repo(base, repo));
    }
    config.kernel.resolve_paths(base);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> ConfigSource {
        ConfigSource {
            name: "t.toml".into(),
            base_dir: "/".into(),
            text: text.into(),
        }
    }

    fn xfstests_of(settings: &Settings) -> &btrfsqa_suites::XfstestsConfig {
        settings.config.suites.get().unwrap()
    }

    fn with_profiles(text: &str, suites: &[&str], profiles: &[&str]) -> Result<Settings, String> {
        let overrides = RunOverrides {
            suites: suites.iter().map(|s| (*s).to_owned()).collect(),
            profiles: profiles.iter().map(|s| (*s).to_owned()).collect(),
            ..RunOverrides::default()
        };
        Settings::resolve(&source(text), overrides).map_err(|e| e.to_string())
    }

    #[test]
    fn profiles_on_the_command_line_choose_the_fstests_sections() {
        let text = "[suites.xfstests]\nprofiles = [\"default\"]\n\
                    [[suites.xfstests.sections]]\nname = \"mine\"\nmount-options = \"-o ssd\"\n\
                    [[suites.xfstests.sections]]\nprofile = \"discard\"\nexclude-tests = [\"btrfs/001\"]\n";
        let settings = with_profiles(text, &["xfstests"], &["compress", "raid"]).unwrap();
        let xfstests = xfstests_of(&settings);
        assert_eq!(xfstests.profiles, ["compress", "raid"]);
        assert!(xfstests.sections.is_empty());
        // A configured section is chosen by its name (or its profile's).
        let settings = with_profiles(text, &["xfstests"], &["mine", "discard"]).unwrap();
        let xfstests = xfstests_of(&settings);
        assert!(xfstests.profiles.is_empty());
        let names: Vec<_> = xfstests
            .resolve()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["mine", "discard"]);
        // Another profile list is another configuration.
        let a = with_profiles(text, &["xfstests"], &["compress"]).unwrap();
        let b = with_profiles(text, &["xfstests"], &["raid"]).unwrap();
        assert_ne!(a.config_hash, b.config_hash);
    }

    #[test]
    fn an_unknown_profile_or_a_run_without_fstests_is_refused() {
        let err = with_profiles("", &["xfstests"], &["compres"]).unwrap_err();
        assert!(err.contains("`--profile compres`"), "{err}");
        for known in [
            "default",
            "compress",
            "holes",
            "no-free-space-tree",
            "block-group-tree",
            "nodatacow",
            "discard",
            "raid",
            "raid56-scrub",
        ] {
            assert!(err.contains(known), "{known}: {err}");
        }
        let err = with_profiles("", &[], &["compress"]).unwrap_err();
        assert!(err.contains("`--suite xfstests`"), "{err}");
    }
}
