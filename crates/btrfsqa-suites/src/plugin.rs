//! What a suite declares so that the runner's registry can take it in with
//! one line: the id of its config section, the section's type, and how to
//! make the suites it describes.

use std::path::Path;
use std::sync::Arc;

use btrfsqa_model::Section;

use crate::TestSuite;

/// What the runner hands a suite it makes.
#[derive(Debug, Clone, Copy)]
pub struct SuiteSetup<'a> {
    /// Where a suite keeps what outlives a run (git mirrors, build
    /// archives) unless its section names a place.
    pub cache_dir: &'a Path,
}

/// A git source a suite is built from: what `watch` follows and `bisect`
/// walks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// The repository.
    pub url: String,
    /// The branch, tag or commit built.
    pub git_ref: String,
}

impl GitSource {
    /// The source at `url` and `git_ref`.
    pub fn new(url: &str, git_ref: &str) -> Self {
        GitSource {
            url: url.to_owned(),
            git_ref: git_ref.to_owned(),
        }
    }

    /// Pins the fields `url` and `git_ref` of a suite's config to `commit`
    /// (of `new_url`, when given): what [`SuitePlugin::pin_source`] does
    /// for a suite configured by `git-url` and `git-ref`.
    pub fn pin(url: &mut String, git_ref: &mut String, new_url: Option<&str>, commit: &str) {
        if let Some(new_url) = new_url {
            *url = new_url.to_owned();
        }
        *git_ref = commit.to_owned();
    }
}

/// A suite (or a family of named suites) as the registry knows it.
pub trait SuitePlugin {
    /// Its section: `[suites.ID]`; also the suite's id in `run.suites`
    /// unless [`suite_ids`](Self::suite_ids) says otherwise.
    const ID: &'static str;
    /// `[suites.ID]`.
    type Config: Section;

    /// The ids of the suites the section makes, each with its key below
    /// the section (empty for the section itself): one suite, `ID`, unless
    /// the section holds named suites (`[suites.scripts.NAME]`).
    fn suite_ids(config: &Self::Config) -> Vec<(String, String)> {
        let _ = config;
        vec![(Self::ID.to_owned(), String::new())]
    }

    /// The suite `id`, one of [`suite_ids`](Self::suite_ids) (`None` for
    /// an id the section does not make).
    fn make(config: &Self::Config, id: &str, setup: SuiteSetup<'_>) -> Option<Arc<dyn TestSuite>>;

    /// The git source the suite is built from, when it is built from one.
    fn source(config: &Self::Config) -> Option<GitSource> {
        let _ = config;
        None
    }

    /// Builds the suite from `commit` (of `url`, when given) from now on.
    /// Only called for a suite with a [`source`](Self::source).
    fn pin_source(config: &mut Self::Config, url: Option<&str>, commit: &str) {
        let _ = (config, url, commit);
    }

    /// The packages the suite needs on a machine of `distro` to build and
    /// run (what a machine image made for it should hold already).
    fn machine_packages(distro: crate::Distro) -> &'static [&'static str] {
        let _ = distro;
        &[]
    }

    /// `--profile`: narrows the suite to the profiles `names`; returns
    /// `(key below the section, message)` for each name it does not know,
    /// or `None` when the suite has no profiles.
    fn select_profiles(
        config: &mut Self::Config,
        names: &[String],
    ) -> Option<Vec<(String, String)>> {
        let _ = (config, names);
        None
    }
}
