//! The `hosts-file` provider: existing SSH hosts listed in a file of their
//! own, read when the run starts, so a lab regenerates its host list
//! without touching `btrfsqa.toml`. The hosts are handed out, claimed and
//! pinned exactly as the `static` provider does.
//!
//! ```toml
//! # lab-hosts.toml
//! [[hosts]]
//! host = "10.0.0.5"
//! test-dev = "/dev/vdb"
//! scratch-devs = ["/dev/vdc", "/dev/vdd"]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use btrfsqa_model::Section;
use serde::Deserialize;

use crate::static_hosts::validate_hosts;
use crate::{
    CloudProvider, ProviderContext, ProviderPlugin, ProvisionError, StaticHost, StaticProvider,
    StaticSettings,
};

const PROVIDER: &str = "hosts-file";

/// `[providers.hosts-file]`: existing SSH hosts listed in a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostsFileConfig {
    /// The file of `[[hosts]]` tables, each with the keys of a
    /// `[[providers.static.hosts]]`; read when a run starts.
    pub path: PathBuf,
    /// Where claims on hosts and learned host keys are kept (default: the
    /// `static` provider's); processes that must never share a host must
    /// share it.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

/// The hosts file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    #[serde(default)]
    hosts: Vec<StaticHost>,
}

impl Section for HostsFileConfig {
    fn resolve_paths(&mut self, base: &Path) {
        btrfsqa_model::section::absolute_all(base, [&mut self.path]);
        btrfsqa_model::section::absolute_all(base, self.state_dir.iter_mut());
    }
}

impl HostsFileConfig {
    /// The hosts the file lists, key files resolved against its directory;
    /// an error names the file, the line and the key.
    pub fn read_hosts(&self) -> Result<Vec<StaticHost>, ProvisionError> {
        let name = self.path.display();
        let text = std::fs::read_to_string(&self.path)
            .map_err(|err| config_error(format!("cannot read the hosts file `{name}`: {err}")))?;
        let file: HostsFile = toml::from_str(&text).map_err(|err| {
            let line = err
                .span()
                .map_or(0, |span| text[..span.start].matches('\n').count() + 1);
            config_error(format!("{name}:{line}: {}", err.message().trim()))
        })?;
        let mut problems = validate_hosts(&file.hosts);
        if file.hosts.is_empty() {
            problems.push(("hosts".to_owned(), "lists no host".to_owned()));
        }
        if let Some((key, message)) = problems.into_iter().next() {
            return Err(config_error(format!("{name}: `{key}`: {message}")));
        }
        let base = self.path.parent().unwrap_or(Path::new("/"));
        let mut hosts = file.hosts;
        for host in &mut hosts {
            host.resolve_paths(base);
        }
        Ok(hosts)
    }
}

fn config_error(message: String) -> ProvisionError {
    ProvisionError::Config {
        provider: PROVIDER.to_owned(),
        message,
    }
}

/// Hands out the hosts of a [`HostsFileConfig`]'s file, as the
/// [`StaticProvider`] does (it is one, under its own id).
#[derive(Debug)]
pub struct HostsFileProvider;

impl ProviderPlugin for HostsFileProvider {
    const ID: &'static str = PROVIDER;
    type Config = HostsFileConfig;

    async fn make(
        config: &HostsFileConfig,
        _context: ProviderContext<'_>,
    ) -> Result<Arc<dyn CloudProvider>, ProvisionError> {
        let hosts = config.read_hosts()?;
        let provider = StaticProvider::with_settings(StaticSettings {
            hosts,
            state_dir: config.state_dir.clone(),
        });
        Ok(Arc::new(provider.with_id(PROVIDER)))
    }

    fn check_run(config: &HostsFileConfig, _shards: u32) -> Vec<(String, String)> {
        if config.path.as_os_str().is_empty() {
            vec![(
                "providers.hosts-file.path".to_owned(),
                "provider `hosts-file` needs the path of its hosts file".to_owned(),
            )]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, text: &str) -> HostsFileConfig {
        let path = dir.join("hosts.toml");
        std::fs::write(&path, text).unwrap();
        HostsFileConfig {
            path,
            state_dir: Some(dir.join("state")),
        }
    }

    #[tokio::test]
    async fn hosts_come_from_the_file_under_this_providers_id() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            "[[hosts]]\nhost = \"10.0.0.5\"\nidentity-file = \"keys/lab\"\n\
             test-dev = \"/dev/vdb\"\nscratch-devs = [\"/dev/vdc\"]\n",
        );
        let hosts = config.read_hosts().unwrap();
        assert_eq!(hosts[0].host, "10.0.0.5");
        assert_eq!(hosts[0].identity_file, Some(dir.path().join("keys/lab")));
        let context = ProviderContext {
            results_dir: dir.path(),
            run_timeout_minutes: 10,
        };
        let provider = HostsFileProvider::make(&config, context).await.unwrap();
        assert_eq!(provider.id(), "hosts-file");
    }

    #[test]
    fn a_bad_file_is_named_with_its_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("hosts.toml");
        let err = config(dir.path(), "[[hosts]]\nhost = \"h\"\ntest-dev = 3\n")
            .read_hosts()
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{}:3:", name.display())), "{err}");
        let err = config(
            dir.path(),
            "[[hosts]]\nhost = \"h\"\ntest-dev = \"sdb\"\nscratch-devs = [\"/dev/c\"]\n",
        )
        .read_hosts()
        .unwrap_err()
        .to_string();
        assert!(err.contains("`hosts[0].test-dev`"), "{err}");
        let err = config(dir.path(), "").read_hosts().unwrap_err().to_string();
        assert!(err.contains("lists no host"), "{err}");
        let missing = HostsFileConfig {
            path: dir.path().join("nope.toml"),
            state_dir: None,
        };
        let err = missing.read_hosts().unwrap_err().to_string();
        assert!(err.contains("cannot read the hosts file"), "{err}");
    }
}
