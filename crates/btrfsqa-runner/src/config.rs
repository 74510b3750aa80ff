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

use crate::error::{ConfigError, ConfigIssue};
use crate::plugins::{self, ProviderSections, SuiteSections};

/// The embedded default configuration (also what `btrfsqa init` writes).
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

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

/// `a.b[2].c` from serde_path_to_error's path.
fn dotted_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// The span of the deepest part of `key` (`a.b[1].c`) present in the document.
fn lookup_span(root: &DeTable<'_>, key: &str) -> Option<std::ops::Range<usize>> {
    let mut span = None;
    let mut table = Some(root);
    let mut value: Option<&DeValue<'_>> = None;
    for part in key_parts(key) {
        let next = match (part, table, value) {
            (KeyPart::Name(name), Some(table), _) => table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == name)
                .map(|(k, v)| (k.span(), v)),
            (KeyPart::Index(index), _, Some(DeValue::Array(array))) => {
                array.get(index).map(|v| (v.span(), v))
            }
            _ => None,
        };
        let Some((found, item)) = next else { break };
        span = Some(found);
        value = Some(item.get_ref());
        table = match item.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    span
}

enum KeyPart<'a> {
    Name(&'a str),
    Index(usize),
}

fn key_parts(key: &str) -> Vec<KeyPart<'_>> {
    let mut parts = Vec::new();
    for piece in key.split('.') {
        let (name, mut rest) = match piece.find('[') {
            Some(i) => (&piece[..i], &piece[i..]),
            None => (piece, ""),
        };
        if !name.is_empty() {
            parts.push(KeyPart::Name(name));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(index) = rest[1..end].parse() {
                parts.push(KeyPart::Index(index));
            }
            rest = &rest[end + 1..];
        }
    }
    parts
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
mod tests {
    use super::*;

    fn source(text: &str) -> ConfigSource {
        ConfigSource {
            name: "btrfsqa.toml".into(),
            base_dir: PathBuf::from("/etc/btrfsqa"),
            text: text.into(),
        }
    }

    fn error_text(text: &str) -> String {
        source(text).parse().unwrap_err().to_string()
    }

    #[test]
    fn the_embedded_default_parses_and_validates() {
        let config = ConfigSource::embedded_default().parse().unwrap();
        assert_eq!(config.run.provider, "local");
        assert_eq!(config.run.suites, ["raid56-scrub"]);
        assert_eq!(config.machine.data_devices, 6);
    }

    /// The commented `[suites.xfstests]` and `[suites.btrfs-progs]` of the
    /// default, uncommented: the TOML lines of the region (`# [table]`,
    /// `# key = value  # note`), not its prose.
    fn uncommented_suites() -> String {
        let start = DEFAULT_CONFIG.find("# [suites.xfstests]").unwrap();
        let end = DEFAULT_CONFIG.find("\n[publish]").unwrap();
        let mut out = String::new();
        for line in DEFAULT_CONFIG[start..end].lines() {
            let Some(rest) = line.strip_prefix("# ") else {
                continue;
            };
            let is_key = rest.split_once(" = ").is_some_and(|(key, _)| {
                !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
            if rest.starts_with('[') || is_key {
                out.push_str(rest);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn the_default_offers_fstests_and_btrfs_progs_with_every_key() {
        let text = uncommented_suites();
        let config = source(&text).parse().unwrap();
        let xfstests = config
            .suites
            .get::<btrfsqa_suites::XfstestsConfig>()
            .unwrap();
        assert_eq!(xfstests.profiles, ["default"]);
        assert_eq!(xfstests.sections.len(), 1);
        assert_eq!(xfstests.sections[0].scratch_devs, Some(3));
        assert_eq!(
            config
                .suites
                .get::<btrfsqa_suites::BtrfsProgsConfig>()
                .unwrap()
                .exclude,
            ["cli/017-*"]
        );
        // Still only what the README's main job runs.
        let default = ConfigSource::embedded_default().parse().unwrap();
        assert_eq!(default.run.suites, ["raid56-scrub"]);
        // Every key of the three tables, as the types have them.
        let shape = crate::reference::config_shape().unwrap();
        let keys = |path: &[&str]| -> Vec<&'static str> {
            let mut shape = &shape;
            for key in path {
                let crate::reference::Shape::Struct { fields, .. } = shape else {
                    panic!("{path:?}")
                };
                shape = &fields.iter().find(|f| f.key == *key).unwrap().shape;
                if let crate::reference::Shape::Array(inner) = shape {
                    shape = inner;
                }
            }
            let crate::reference::Shape::Struct { fields, .. } = shape else {
                panic!("{path:?}")
            };
            fields.iter().map(|f| f.key).collect()
        };
        let tables = [
            ("[suites.xfstests]", keys(&["suites", "xfstests"])),
            (
                "[[suites.xfstests.sections]]",
                keys(&["suites", "xfstests", "sections"]),
            ),
            ("[suites.btrfs-progs]", keys(&["suites", "btrfs-progs"])),
        ];
        for (table, keys) in tables {
            let at = text.find(&format!("{table}\n")).unwrap();
            let body = text[at + table.len()..].split("\n[").next().unwrap();
            for key in keys {
                // `sections` is the table that follows.
                if key == "sections" {
                    continue;
                }
                assert!(
                    body.lines().any(|l| l.starts_with(&format!("{key} = "))),
                    "{table}: `{key}` is not in the default configuration"
                );
            }
        }
        for profile in btrfsqa_suites::xfstests::config::PROFILES {
            assert!(
                DEFAULT_CONFIG.lines().any(|l| l.starts_with("#   ")
                    && l.contains(profile.name)
                    && l.contains(profile.description)),
                "profile `{}` is not described in the default configuration",
                profile.name
            );
        }
    }

    #[test]
    fn an_empty_file_means_all_defaults() {
        let config = source("").parse().unwrap();
        assert_eq!(config.run.timeout_minutes, 240);
        assert_eq!(config.publish.branch, "gh-pages");
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = error_text("[run]\nprovider = \"local\"\nsuites = [\n");
        assert!(err.starts_with("btrfsqa.toml:"), "{err}");
        let err = error_text("[run]\n\nprovider = = 3\n");
        assert!(err.starts_with("btrfsqa.toml:3:"), "{err}");
    }

    #[test]
    fn unknown_keys_name_the_table_and_line() {
        let err = error_text("[run]\nprovider = \"local\"\n\n[machine]\ndata-disks = 6\n");
        assert!(err.contains("btrfsqa.toml:5:"), "{err}");
        assert!(err.contains("data-disks"), "{err}");
        assert!(err.contains("`machine.data-disks`: unknown field"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_dotted_key() {
        let err = error_text("[machine]\ndevice-size-gib = \"ten\"\n");
        assert!(
            err.contains("btrfsqa.toml:2: `machine.device-size-gib`"),
            "{err}"
        );
        let err = error_text("[run]\nprovider = \"azure\"\n");
        assert!(err.contains("`run.provider`"), "{err}");
        assert!(err.contains("azure"), "{err}");
    }

    #[test]
    fn validation_errors_point_at_array_elements() {
        let err = error_text("[run]\nsuites = [\n  \"raid56-scrub\",\n  \"nope\",\n]\n");
        assert!(
            err.contains("btrfsqa.toml:4: `run.suites[1]`: unknown suite `nope`"),
            "{err}"
        );
        let err = error_text("[machine]\ndata-devices = 1\n");
        assert!(
            err.contains("btrfsqa.toml:2: `machine.data-devices`: must be at least 2"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = error_text("[run]\ntimeout-minutes = 0\nsuites = []\n");
        assert!(err.contains("run.timeout-minutes"), "{err}");
        assert!(err.contains("run.suites"), "{err}");
    }

    #[test]
    fn static_hosts_are_checked() {
        let text = r#"
[run]
provider = "static"

[[providers.static.hosts]]
host = "192.0.2.1"
test-dev = "vdb"
scratch-devs = ["/dev/vdc", "/dev/vdc"]
"#;
        let err = error_text(text);
        assert!(
            err.contains("btrfsqa.toml:7: `providers.static.hosts[0].test-dev`"),
            "{err}"
        );
        assert!(
            err.contains("`providers.static.hosts[0].scratch-devs[1]`: `/dev/vdc` is used twice"),
            "{err}"
        );
        let err = error_text("[run]\nprovider = \"static\"\n");
        assert!(err.contains("`providers.static.hosts`"), "{err}");
    }

    #[test]
    fn secrets_are_refused_wherever_they_are() {
        let err = error_text("[publish]\nsite-repo = \"x\"\ngithub-token = \"ghp_abc\"\n");
        assert!(
            err.contains("btrfsqa.toml:3: `publish.github-token`: secrets are never read"),
            "{err}"
        );
        assert!(
            !err.contains("ghp_abc"),
            "the secret itself leaked into the message: {err}"
        );
        let err = error_text("[providers.aws]\nsecret_access_key = \"x\"\n");
        assert!(err.contains("secret_access_key"), "{err}");
        let err = error_text("[publish]\nsite-repo = \"https://user:pw@example.com/site.git\"\n");
        assert!(
            err.contains("`publish.site-repo`: must not carry credentials"),
            "{err}"
        );
    }

    #[test]
    fn script_suites_are_known_suites() {
        let text = "[run]\nsuites = [\"smoke\"]\n[suites.scripts.smoke]\ndir = \"suites/smoke\"\n";
        let config = source(text).parse().unwrap();
        assert_eq!(
            config
                .suites
                .get::<btrfsqa_suites::ScriptSuites>()
                .unwrap()
                .0["smoke"]
                .dir,
            PathBuf::from("suites/smoke")
        );
        let err = error_text("[suites.scripts.Bad_Name]\ndir = \"x\"\n");
        assert!(err.contains("suites.scripts.Bad_Name"), "{err}");
    }

    #[test]
    fn key_paths_resolve_to_spans() {
        let text = "[a]\nb = [1, 2]\n[[c]]\nd = 1\n[[c]]\nd = 2\n";
        let doc = DeTable::parse(text).unwrap();
        let src = source(text);
        let line = |key: &str| lookup_span(doc.get_ref(), key).map(|s| src.line_column(s.start).0);
        assert_eq!(line("a.b"), Some(2));
        assert_eq!(line("c[1].d"), Some(6));
        assert_eq!(line("c[1].missing"), Some(5));
        assert_eq!(line("zzz"), None);
    }
}
