//! `[watch]`: the git refs `btrfsqa watch` follows.

use serde::{Deserialize, Serialize};

/// `[watch]`: what `btrfsqa watch` polls and how.
///
/// ```toml
/// [watch]
/// interval-secs = 300
/// [[watch.refs]]
/// source = "kernel"           # the kernel under test is built from it
/// url = "https://git.kernel.org/pub/scm/linux/kernel/git/kdave/linux.git"
/// ref = "for-next"
/// [[watch.refs]]
/// source = "xfstests"         # fstests, at its configured git-url
/// ref = "for-next"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct WatchConfig {
    /// How often the refs are polled (`git ls-remote`), in seconds.
    pub interval_secs: u64,
    /// The longest wait between polls after failures (the wait doubles from
    /// `interval-secs` with each failure in a row).
    pub max_backoff_secs: u64,
    /// On the first start with no state in the results store, note the
    /// current heads and wait for them to move (`false`: test them now).
    pub skip_current: bool,
    /// Bisect a new failure that a rerun of it confirmed, by itself.
    pub bisect: bool,
    /// The refs to follow.
    pub refs: Vec<WatchedRef>,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            interval_secs: 300,
            max_backoff_secs: 3600,
            skip_current: true,
            bisect: false,
            refs: Vec::new(),
        }
    }
}

/// `[[watch.refs]]`: one ref, and what a run builds from it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatchedRef {
    /// What the run builds from it: `kernel` (the kernel under test), or a
    /// suite built from git: `xfstests`, `btrfs-progs` (the suite's source).
    pub source: WatchSource,
    /// The repository (default: the URL the source is configured with).
    #[serde(default)]
    pub url: Option<String>,
    /// The branch or tag.
    #[serde(rename = "ref")]
    pub git_ref: String,
}

/// What a watched ref is the source of: `kernel`, or the id of a suite
/// section built from git (`xfstests`, `btrfs-progs`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum WatchSource {
    /// The kernel under test (`[kernel]`).
    Kernel,
    /// The source of the suite section `[suites.ID]`.
    Suite(String),
}

impl WatchSource {
    /// Its name in the configuration.
    pub fn as_str(&self) -> &str {
        match self {
            WatchSource::Kernel => "kernel",
            WatchSource::Suite(id) => id,
        }
    }
}

impl From<String> for WatchSource {
    fn from(name: String) -> Self {
        if name == "kernel" {
            WatchSource::Kernel
        } else {
            WatchSource::Suite(name)
        }
    }
}

impl From<WatchSource> for String {
    fn from(source: WatchSource) -> Self {
        source.as_str().to_owned()
    }
}

impl WatchConfig {
    /// Problems serde cannot see, as `(key below watch, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.interval_secs == 0 {
            issues.push(("interval-secs".into(), "must be at least 1".into()));
        }
        if self.max_backoff_secs < self.interval_secs {
            issues.push((
                "max-backoff-secs".into(),
                "must be at least `interval-secs`".into(),
            ));
        }
        for (i, watched) in self.refs.iter().enumerate() {
            if let Some(url) = &watched.url
                && let Some(problem) = btrfsqa_suites::git_url_problem(url)
            {
                issues.push((format!("refs[{i}].url"), problem));
            }
            if let Some(problem) = btrfsqa_suites::git_ref_problem(&watched.git_ref) {
                issues.push((format!("refs[{i}].ref"), problem));
            }
        }
        issues
    }
}
