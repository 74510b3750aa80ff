//! Resolving a [`Config`] plus command-line overrides into [`Settings`].

use std::path::{Path, PathBuf};

use btrfsqa_suites::XfstestsConfig;
use btrfsqa_suites::xfstests::config::{PROFILES, SectionConfig};

use crate::config::{Config, ConfigSource, ProviderKind, validate};
use crate::error::{ConfigError, ConfigIssue};

/// What the command line may override (`*Args` in the CLI map onto this).
#[derive(Debug, Clone, Default)]
pub struct RunOverrides {
    /// `--provider`.
    pub provider: Option<ProviderKind>,
    /// `--suite` (repeatable); replaces `run.suites` when non-empty.
    pub suites: Vec<String>,
    /// `--profile` (repeatable): when non-empty, the fstests sections to run,
    /// each a built-in profile or a configured section's name; replaces
    /// `suites.xfstests.profiles` and leaves out the configured sections it
    /// does not name.
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
            config.run.provider = provider;
            hash_input.push_str(&format!(";provider={provider}"));
        }
        if !overrides.suites.is_empty() {
            hash_input.push_str(&format!(";suites={}", overrides.suites.join(",")));
            config.run.suites = overrides.suites;
        }
        let mut override_issues = Vec::new();
        if !overrides.profiles.is_empty() {
            hash_input.push_str(&format!(";profiles={}", overrides.profiles.join(",")));
            override_issues.extend(select_profiles(
                &mut config.suites.xfstests,
                &overrides.profiles,
            ));
            if !config.run.suites.iter().any(|s| s == "xfstests") {
                override_issues.push((
                    "run.suites".to_owned(),
                    "`--profile` selects fstests profiles, but the run has no `xfstests` suite: \
                     add `--suite xfstests`"
                        .to_owned(),
                ));
            }
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

/// Narrows the fstests suite to the sections `names` (built-in profiles or
/// the names of configured sections); returns `(key, message)` for each
/// name that is neither.
fn select_profiles(xfstests: &mut XfstestsConfig, names: &[String]) -> Vec<(String, String)> {
    let section_name =
        |section: &SectionConfig| section.name.clone().or_else(|| section.profile.clone());
    let configured: Vec<String> = xfstests.sections.iter().filter_map(section_name).collect();
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
                "suites.xfstests.profiles".to_owned(),
                format!(
                    "`--profile {name}`: no such fstests profile or section (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    xfstests.profiles = profiles;
    xfstests
        .sections
        .retain(|section| section_name(section).is_some_and(|n| names.contains(&n)));
    issues
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        let joined = base.join(path);
        // Keep `./x` tidy without touching the filesystem (it may not exist yet).
        joined
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    }
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// A site repository given as a relative path becomes absolute; URLs stay.
fn resolve_repo(base: &Path, repo: &str) -> String {
    if repo.contains("://")
        || (repo.contains(':') && !repo.starts_with('/') && !repo.starts_with('.'))
    {
        repo.to_owned()
    } else {
        absolute(base, &expand_home(Path::new(repo)))
            .display()
            .to_string()
    }
}

fn resolve_paths(config: &mut Config, base: &Path) {
    config.run.results_dir = absolute(base, &expand_home(&config.run.results_dir));
    config.providers.local.work_dir =
        absolute(base, &expand_home(&config.providers.local.work_dir));
    if let Some(dir) = &mut config.providers.static_hosts.state_dir {
        *dir = absolute(base, &expand_home(dir));
    }
    for host in &mut config.providers.static_hosts.hosts {
        for file in [&mut host.identity_file, &mut host.known_hosts_file]
            .into_iter()
            .flatten()
        {
            *file = absolute(base, &expand_home(file));
        }
    }
    for cache in [
        &mut config.suites.xfstests.cache_dir,
        &mut config.suites.btrfs_progs.cache_dir,
    ]
    .into_iter()
    .flatten()
    {
        *cache = absolute(base, &expand_home(cache));
    }
    // A git URL may be a local mirror given relative to the config file.
    for url in [
        &mut config.suites.xfstests.git_url,
        &mut config.suites.btrfs_progs.git_url,
    ] {
        *url = resolve_repo(base, url);
    }
    let xfstests = &mut config.suites.xfstests;
    for file in xfstests.exclude_files.iter_mut().chain(
        xfstests
            .sections
            .iter_mut()
            .flat_map(|s| s.exclude_files.iter_mut()),
    ) {
        *file = absolute(base, &expand_home(file));
    }
    for script in config.suites.scripts.values_mut() {
        script.dir = absolute(base, &expand_home(&script.dir));
    }
    if let Some(key) = &mut config.publish.ssh_key {
        *key = absolute(base, &expand_home(key));
    }
    if let Some(repo) = &config.publish.site_repo {
        config.publish.site_repo = Some(resolve_repo(base, repo));
    }
    config.kernel.resolve_paths(base);
    config.providers.qemu.resolve_paths(base);
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
        let xfstests = &settings.config.suites.xfstests;
        assert_eq!(xfstests.profiles, ["compress", "raid"]);
        assert!(xfstests.sections.is_empty());
        // A configured section is chosen by its name (or its profile's).
        let settings = with_profiles(text, &["xfstests"], &["mine", "discard"]).unwrap();
        let xfstests = &settings.config.suites.xfstests;
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
