//! The dashboard renderer's types: how it looks ([`DashboardSettings`]),
//! the renderer ([`Dashboard`]) and what a render did ([`RenderStats`]).
//! Below every part of the dashboard, which each extend or name them.

use std::sync::Arc;

use btrfsqa_model::RunId;
use minijinja::Environment;

/// How the dashboard looks and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSettings {
    /// The site's title, on every page.
    pub title: String,
    /// The largest artifact copied whole, in bytes; bigger files keep their
    /// first and last halves of this with a note about what was left out.
    pub max_artifact_bytes: u64,
    /// The largest terminal recording copied whole; bigger ones keep their
    /// first and last events (and every test marker) with a note event
    /// where the rest was left out, so the copy still plays.
    pub max_cast_bytes: u64,
    /// Keep the pages and files of only the newest this many runs; older
    /// runs stay in the index and the test histories as rows without links.
    /// `None` keeps every run.
    pub keep_runs: Option<usize>,
    /// The newest this many runs have pages that list every test with its
    /// files; older runs' pages list only the tests that did not pass, with
    /// their files (every test is in the run's `report.json.gz`). This keeps
    /// a long history within what a static host takes (GitHub Pages: 1 GB).
    pub full_pages: usize,
    /// The public URL of the site (`https://owner.github.io/site/`), for
    /// the absolute links exports need (KCIDB); pages never use it.
    pub site_url: Option<String>,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            title: "btrfsqa results".to_owned(),
            max_artifact_bytes: 1024 * 1024,
            max_cast_bytes: 8 * 1024 * 1024,
            keep_runs: None,
            full_pages: 100,
            site_url: None,
        }
    }
}

/// What a [`Dashboard::render`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Runs whose page was (re)written because their report changed or the page was missing.
    pub written: Vec<RunId>,
    /// Runs whose page was left as it was: same report, same renderer.
    pub skipped: Vec<RunId>,
    /// Runs of the index that are not in the store (known only from an
    /// already published site); their pages were not touched.
    pub kept: Vec<RunId>,
    /// Runs older than [`DashboardSettings::keep_runs`]: only their summary is kept.
    pub pruned: Vec<RunId>,
    /// Reports in the store that could not be read, one line each.
    pub unreadable: Vec<String>,
    /// Other pages and files of the site (index, archive, matrix, test
    /// pages, static files) written because their content changed.
    pub site_files_written: usize,
    /// Other pages and files of the site left as they were.
    pub site_files_unchanged: usize,
    /// Artifacts copied into the site (trimmed ones included).
    pub artifacts_copied: usize,
    /// Artifacts that were trimmed to the size limit.
    pub artifacts_trimmed: usize,
    /// Artifacts not copied, one line each (`run: path: reason`): paths that
    /// leave the run directory, missing files, directories.
    pub artifacts_refused: Vec<String>,
}

impl RenderStats {
    /// Run pages and other pages or files written.
    pub fn pages_written(&self) -> usize {
        self.written.len() + self.site_files_written
    }

    /// Run pages skipped because they were up to date.
    pub fn pages_skipped(&self) -> usize {
        self.skipped.len()
    }
}

/// Renders the static site from a [`ResultsStore`](btrfsqa_model::ResultsStore).
///
/// ```no_run
/// use btrfsqa_model::ResultsStore;
/// use btrfsqa_publish::Dashboard;
///
/// let stats = Dashboard::new().render(&ResultsStore::new("results"), "site".as_ref())?;
/// eprintln!("{} pages written, {} up to date", stats.pages_written(), stats.pages_skipped());
/// # Ok::<(), btrfsqa_publish::PublishError>(())
/// ```
#[derive(Clone)]
pub struct Dashboard {
    pub(super) settings: DashboardSettings,
    pub(super) env: Arc<Environment<'static>>,
    pub(super) fingerprint: [u8; 32],
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// The settings in use.
    pub fn settings(&self) -> &DashboardSettings {
        &self.settings
    }
}
