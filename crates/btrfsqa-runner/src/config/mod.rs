//! `btrfsqa.toml`: the file's types, loading with precise errors, validation
//! and resolution into [`Settings`](crate::Settings).
//!
//! Errors always name the file, the line and the dotted key
//! (`btrfsqa.toml:14: \`suites.scripts.smoke.timeout-secs\`: must be at least 1`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};

mod locate;

use crate::error::{ConfigError, ConfigIssue};
use crate::plugins::{self, ProviderSections, SuiteSections};
use locate::{dotted_path, lookup_span};

/// The embedded default configuration (also what `btrfsqa init` writes).
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// The name errors use for the embedded default.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default>";

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// `[run]`.
    #[serde(default)]
    pub run: RunConfig,
    /// `[machine]`.
    #[serde(default)]
    pub machine: MachineConfig,
    /// `[providers.*]`: each provider's own section.
    #[serde(default)]
    pub providers: ProviderSections,
    /// `[suites.*]`: each suite's own section.
    #[serde(default)]
    pub suites: SuiteSections,
    /// `[publish]`.
    #[serde(default)]
    pub publish: PublishConfig,
    /// `[expectations]`: known failures, reruns of new failures, baselines.
    #[serde(default)]
    pub expectations: crate::history::ExpectationsConfig,
    /// `[notify]`: hooks told about regressions.
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// `[kernel]`: the kernel under test (default: the installed one).
    #[serde(default)]
    pub kernel: crate::kernel::KernelConfig,
    /// `[watch]`: the git refs `btrfsqa watch` follows.
    #[serde(default)]
    pub watch: crate::watch::WatchConfig,
}

/// `[run]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunConfig {
    /// Where the machines come from (`--provider`): `local` (this machine,
    /// loop devices), `static` (existing SSH hosts), `hosts-file` (SSH hosts
    /// listed in a file), `aws` (EC2 spot machines) or `qemu` (local VMs).
    #[serde(default = "default_provider")]
    pub provider: String,
    /// The suites to run, in order (`--suite`): `raid56-scrub`, `xfstests`,
    /// `btrfs-progs`, or the name of a `[suites.scripts.NAME]`.
    #[serde(default = "default_suites")]
    pub suites: Vec<String>,
    /// The local results store: every run lands in `RESULTS-DIR/<run-id>/`
    /// before anything is published (`--results-dir`).
    #[serde(default = "default_results_dir")]
    pub results_dir: PathBuf,
    /// The whole run is stopped, torn down and reported after this long.
    #[serde(default = "default_timeout_minutes")]
    pub timeout_minutes: u64,
    /// Only `installed` (the machine's running kernel); a kernel to build
    /// and boot goes in `[kernel]`.
    #[serde(default = "default_kernel")]
    pub kernel: String,
    /// Free-form labels copied into the report.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Machines to spread the tests over, each with its own devices
    /// (`--shards`).
    #[serde(default = "default_shards")]
    pub shards: u32,
    /// Environment variables whose values are secrets, besides the ones
    /// btrfsqa knows (tokens, AWS keys) and every variable whose name says
    /// TOKEN, SECRET, PASSWORD, KEY or CREDENTIAL: their values never reach
    /// a recording, a log or a report.
    #[serde(default)]
    pub secret_env: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            provider: default_provider(),
            suites: default_suites(),
            results_dir: default_results_dir(),
            timeout_minutes: default_timeout_minutes(),
            kernel: default_kernel(),
            labels: BTreeMap::new(),
            shards: default_shards(),
            secret_env: Vec::new(),
        }
    }
}

fn default_provider() -> String {
    "local".to_owned()
}
fn default_shards() -> u32 {
    1
}
fn default_suites() -> Vec<String> {
    vec!["raid56-scrub".to_owned()]
}
fn default_results_dir() -> PathBuf {
    PathBuf::from("btrfsqa-results")
}
fn default_timeout_minutes() -> u64 {
    240
}
fn default_kernel() -> String {
    "installed".to_owned()
}

/// `[machine]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MachineConfig {
    /// Data devices per machine (test device + scratch pool).
    #[serde(default = "default_data_devices")]
    pub data_devices: u32,
    /// The size of each data device, GiB (sparse on the local and qemu
    /// providers).
    #[serde(default = "default_device_size_gib")]
    pub device_size_gib: u64,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            data_devices: default_data_devices(),
            device_size_gib: default_device_size_gib(),
        }
    }
}

fn default_data_devices() -> u32 {
    6
}
fn default_device_size_gib() -> u64 {
    10
}

/// `[publish]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PublishConfig {
    /// The site repository (path or URL); unset: no publishing.
    #[serde(default)]
    pub site_repo: Option<String>,
    /// The branch that receives the site.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// The dashboard's title.
    #[serde(default = "default_title")]
    pub title: String,
    /// Keep pages and files of only the newest N runs in the site repository
    /// (older runs stay as rows without links); unset keeps everything.
    #[serde(default)]
    pub keep_runs: Option<usize>,
    /// Where the site is served (e.g. `https://USER.github.io/btrfsqa`), for
    /// absolute links in exports (KCIDB).
    #[serde(default)]
    pub site_url: Option<String>,
    /// An SSH deploy key for pushing (else the environment's GITHUB_TOKEN /
    /// GH_TOKEN over HTTPS, or the user's own ssh setup).
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            site_repo: None,
            branch: default_branch(),
            title: default_title(),
            keep_runs: None,
            site_url: None,
            ssh_key: None,
        }
    }
}

fn default_branch() -> String {
    "gh-pages".to_owned()
}
fn default_title() -> String {
    "btrfsqa".to_owned()
}

/// A configuration file's text and where it came from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file name for messages (the path, or [`DEFAULT_CONFIG_NAME`]).
    pub name: String,
    /// The directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    /// The text.
    pub text: String,
}

impl ConfigSource {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(ConfigSource {
            name: path.display().to_string(),
            base_dir,
            text,
        })
    }

    /// The embedded default; relative paths resolve against the current directory.
    pub fn embedded_default() -> Self {
        ConfigSource {
            name: DEFAULT_CONFIG_NAME.to_owned(),
            base_dir: PathBuf::from("."),
            text: DEFAULT_CONFIG.to_owned(),
        }
    }

    /// `path` if given, else the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(path) => Self::read(path),
            None => Ok(Self::embedded_default()),
        }
    }

    /// SHA-256 of the text, hex.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.text.as_bytes()))
    }

    /// Parses and validates the file.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        let document = DeTable::parse(&self.text).map_err(|err| self.syntax_error(&err))?;
        reject_secrets(document.get_ref(), "", &mut |key, span| {
            self.issue_at(
                key,
                span,
                "secrets are never read from the config file: set them in the environment",
            )
        })?;
        let deserializer =
            toml::Deserializer::parse(&self.text).map_err(|err| self.syntax_error(&err))?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = dotted_path(err.path());
            let inner = err.inner();
            let span = inner
                .span()
                .or_else(|| lookup_span(document.get_ref(), &key));
            ConfigError::Invalid {
                issues: vec![self.issue_at(&key, span, inner.message())],
            }
        })?;
        let issues: Vec<ConfigIssue> = validate(&config)
            .into_iter()
            .map(|(key, message)| {
                let span = lookup_span(document.get_ref(), &key);
                self.issue_at(&key, span, &message)
            })
            .collect();
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { issues })
        }
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        (line, column)
    }

    fn syntax_error(&self, err: &toml::de::Error) -> ConfigError {
        let (line, column) = err
            .span()
            .map_or((0, 0), |span| self.line_column(span.start));
        ConfigError::Syntax {
            file: self.name.clone(),
            line,
            column,
            message: err.message().trim().to_owned(),
        }
    }

    fn issue_at(
        &self,
        key: &str,
        span: Option<std::ops::Range<usize>>,
        message: &str,
    ) -> ConfigIssue {
        ConfigIssue {
            file: self.name.clone(),
            line: span.map(|span| self.line_column(span.start).0),
            key: key.to_owned(),
            message: message.trim().to_owned(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Key names that hold credentials; the file must never carry them.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('_', "-");
    [
        "token",
        "password",
        "secret",
        "secret-access-key",
        "access-key-id",
        "private-key",
        "api-key",
    ]
    .iter()
    .any(|s| key == *s || key.ends_with(&format!("-{s}")))
}

fn reject_secrets(
    table: &DeTable<'_>,
    prefix: &str,
    issue: &mut dyn FnMut(&str, Option<std::ops::Range<usize>>) -> ConfigIssue,
) -> Result<(), ConfigError> {
    let mut issues = Vec::new();
    walk_secrets(table, prefix, issue, &mut issues);
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid { issues })
    }
}

fn walk_secrets(
    table: &DeTable<'_>,
    prefix: &str,
    issue: &mut dyn FnMut(&str, Option<std::ops::Range<usize>>) -> ConfigIssue,
    issues: &mut Vec<ConfigIssue>,
) {
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        let dotted = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        };
        if is_secret_key(name) {
            issues.push(issue(&dotted, Some(key.span())));
        }
        match value.get_ref() {
            DeValue::Table(inner) => walk_secrets(inner, &dotted, issue, issues),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        walk_secrets(inner, &format!("{dotted}[{i}]"), issue, issues);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Checks what serde cannot: returns `(dotted key, message)` pairs.
pub fn validate(config: &Config) -> Vec<(String, String)> {
    let mut issues = Vec::new();
    let mut issue = |key: String, message: String| issues.push((key, message));

    if config.run.suites.is_empty() {
        issue(
            "run.suites".into(),
            "names no suite: add at least one suite id".into(),
        );
    }
    let suite_ids = plugins::suite_ids(&config.suites);
    for (i, id) in config.run.suites.iter().enumerate() {
        if !suite_ids.iter().any(|(known, _, _)| known == id) {
            let choices: Vec<&str> = suite_ids.iter().map(|(id, _, _)| id.as_str()).collect();
            issue(
                format!("run.suites[{i}]"),
                format!("unknown suite `{id}` (known: {})", choices.join(", ")),
            );
        }
        if config.run.suites[..i].contains(id) {
            issue(
                format!("run.suites[{i}]"),
                format!("suite `{id}` is listed twice"),
            );
        }
    }
    for (i, (id, _, key)) in suite_ids.iter().enumerate() {
        if let Some((_, first, _)) = suite_ids[..i].iter().find(|(other, _, _)| other == id) {
            issue(
                key.clone(),
                format!(
                    "`{id}` is already the id of the suite of [suites.{}]",
                    first.id
                ),
            );
        }
    }
    if !(1..=64).contains(&config.run.shards) {
        issue("run.shards".into(), "must be from 1 to 64".into());
    }
    match (
        plugins::provider(&config.run.provider),
        config.providers.by_id(&config.run.provider),
    ) {
        (Some(entry), Some(section)) => {
            for (key, message) in entry.check_run(section, config.run.shards) {
                issue(key, message);
            }
        }
        _ => issue(
            "run.provider".into(),
            format!(
                "unknown provider `{}` (expected {})",
                config.run.provider,
                plugins::provider_ids().join(", ")
            ),
        ),
    }
    if config.run.timeout_minutes == 0 {
        issue("run.timeout-minutes".into(), "must be at least 1".into());
    }
    for (i, name) in config.run.secret_env.iter().enumerate() {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            issue(
                format!("run.secret-env[{i}]"),
                format!("`{name}` is not an environment variable name"),
            );
        }
    }
    if config.run.kernel != "installed" {
        issue(
            "run.kernel".into(),
            format!(
                "`{}`: `run.kernel` only takes `installed`; name a kernel to build in `[kernel]` (`source = \"git\"` or a git URL)",
                config.run.kernel
            ),
        );
    }
    for (id, section) in config.providers.iter() {
        for (key, message) in section.validate() {
            issue(format!("providers.{id}.{key}"), message);
        }
    }
    for (key, message) in config.kernel.validate() {
        issue(format!("kernel.{key}"), message);
    }
    for (key, message) in config.watch.validate() {
        issue(format!("watch.{key}"), message);
    }
    for (i, watched) in config.watch.refs.iter().enumerate() {
        if let crate::watch::WatchSource::Suite(id) = &watched.source
            && plugins::suite_source(&config.suites, id).is_none()
        {
            let mut known = vec!["kernel"];
            known.extend(plugins::suite_source_ids(&config.suites));
            issue(
                format!("watch.refs[{i}].source"),
                format!("`{id}` is not a source (expected {})", known.join(", ")),
            );
        }
    }
    if config.machine.data_devices < 2 {
        issue(
            "machine.data-devices".into(),
            "must be at least 2 (one test device and a scratch pool)".into(),
        );
    }
    if config.machine.device_size_gib == 0 {
        issue(
            "machine.device-size-gib".into(),
            "must be at least 1".into(),
        );
    }
    for (id, section) in config.suites.iter() {
        for (key, message) in section.validate() {
            issue(format!("suites.{id}.{key}"), message);
        }
    }
    for (key, message) in config.expectations.validate() {
        issue(format!("expectations.{key}"), message);
    }
    for (key, message) in config.notify.validate() {
        issue(format!("notify.{key}"), message);
    }
    if config.publish.keep_runs == Some(0) {
        issue(
            "publish.keep-runs".into(),
            "must be at least 1 (or unset to keep every run)".into(),
        );
    }
    if config.publish.branch.trim().is_empty() || config.publish.branch.contains("..") {
        issue(
            "publish.branch".into(),
            format!("`{}` is not a valid branch name", config.publish.branch),
        );
    }
    if let Some(repo) = &config.publish.site_repo
        && repo.contains('@')
        && repo.contains(':')
        && repo.contains("//")
        && repo
            .split("//")
            .nth(1)
            .is_some_and(|rest| rest.split('/').next().unwrap_or("").contains(':'))
    {
        issue(
            "publish.site-repo".into(),
            "must not carry credentials in the URL: set GITHUB_TOKEN in the environment".into(),
        );
    }
    issues
}

#[cfg(test)]
mod tests;
