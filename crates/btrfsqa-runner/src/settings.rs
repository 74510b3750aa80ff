//! Resolving a [`Config`] plus command-line overrides into [`Settings`].

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigSource, ProviderKind, validate};
use crate::error::{ConfigError, ConfigIssue};

/// What the command line may override (`*Args` in the CLI map onto this).
#[derive(Debug, Clone, Default)]
pub struct RunOverrides {
    /// `--provider`.
    pub provider: Option<ProviderKind>,
    /// `--suite` (repeatable); replaces `run.suites` when non-empty.
    pub suites: Vec<String>,
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
        let issues: Vec<ConfigIssue> = validate(&config)
            .into_iter()
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
