//! `[providers.static]` and the provider it makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use btrfsqa_model::Section;
use serde::Deserialize;

use super::StaticProvider;
use crate::{CloudProvider, ProviderContext, ProviderPlugin, ProvisionError};

/// `[providers.static]`: existing SSH hosts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticSettings {
    /// The hosts, handed out in this order.
    #[serde(default)]
    pub hosts: Vec<StaticHost>,
    /// Where the provider keeps its claims on hosts and the host keys it
    /// learned at first use (made mode 0700 if missing; default:
    /// `$XDG_STATE_HOME/btrfsqa/static-hosts`, else
    /// `~/.local/state/btrfsqa/static-hosts`). btrfsqa processes that must
    /// never share a host must share it.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

/// One `[[providers.static.hosts]]`: an existing machine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StaticHost {
    /// Its name in the run (empty: the host).
    #[serde(default)]
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Login user (root, or a user with password-less sudo is not supported yet).
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// Private key file, if not the agent's or the default.
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// A known_hosts file pinning the host key. Without one, the key is
    /// learned at the host's first use and recorded under `state-dir`.
    #[serde(default)]
    pub known_hosts_file: Option<PathBuf>,
    /// The test device.
    pub test_dev: String,
    /// The scratch pool.
    pub scratch_devs: Vec<String>,
    /// A work directory on the host.
    #[serde(default = "default_remote_work_dir")]
    pub work_dir: String,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_ssh_user() -> String {
    "root".to_owned()
}
fn default_remote_work_dir() -> String {
    "/var/tmp/btrfsqa".to_owned()
}

impl StaticHost {
    /// Problems serde cannot see, as `(key below the host, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.host.trim().is_empty() {
            issues.push(("host".to_owned(), "must not be empty".to_owned()));
        }
        if !self.test_dev.starts_with('/') {
            issues.push((
                "test-dev".to_owned(),
                format!("`{}` is not an absolute device path", self.test_dev),
            ));
        }
        if self.scratch_devs.is_empty() {
            issues.push((
                "scratch-devs".to_owned(),
                "needs at least one scratch device".to_owned(),
            ));
        }
        for (j, dev) in self.scratch_devs.iter().enumerate() {
            if !dev.starts_with('/') {
                issues.push((
                    format!("scratch-devs[{j}]"),
                    format!("`{dev}` is not an absolute device path"),
                ));
            }
            if *dev == self.test_dev || self.scratch_devs[..j].contains(dev) {
                issues.push((
                    format!("scratch-devs[{j}]"),
                    format!("`{dev}` is used twice"),
                ));
            }
        }
        issues
    }

    /// Makes the key files absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let files = [&mut self.identity_file, &mut self.known_hosts_file];
        btrfsqa_model::section::absolute_all(base, files.into_iter().flatten());
    }
}

/// `(hosts[i].key, message)` for every problem of `hosts`.
pub(crate) fn validate_hosts(hosts: &[StaticHost]) -> Vec<(String, String)> {
    hosts
        .iter()
        .enumerate()
        .flat_map(|(i, host)| {
            host.validate()
                .into_iter()
                .map(move |(key, message)| (format!("hosts[{i}].{key}"), message))
        })
        .collect()
}

impl Section for StaticSettings {
    fn validate(&self) -> Vec<(String, String)> {
        validate_hosts(&self.hosts)
    }

    fn resolve_paths(&mut self, base: &Path) {
        btrfsqa_model::section::absolute_all(base, self.state_dir.iter_mut());
        for host in &mut self.hosts {
            host.resolve_paths(base);
        }
    }
}

impl ProviderPlugin for StaticProvider {
    const ID: &'static str = super::PROVIDER;
    type Config = StaticSettings;

    async fn make(
        config: &StaticSettings,
        _context: ProviderContext<'_>,
    ) -> Result<Arc<dyn CloudProvider>, ProvisionError> {
        Ok(Arc::new(StaticProvider::with_settings(config.clone())))
    }

    fn check_run(config: &StaticSettings, shards: u32) -> Vec<(String, String)> {
        let hosts = config.hosts.len();
        let mut issues = Vec::new();
        if shards > 1 && (hosts as u32) < shards {
            issues.push((
                "run.shards".to_owned(),
                format!(
                    "{shards} shards need as many [[providers.static.hosts]], {hosts} are configured"
                ),
            ));
        }
        if hosts == 0 {
            issues.push((
                "providers.static.hosts".to_owned(),
                "provider `static` needs at least one [[providers.static.hosts]] entry".to_owned(),
            ));
        }
        issues
    }
}
