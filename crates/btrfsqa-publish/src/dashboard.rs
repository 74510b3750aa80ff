//! The static dashboard, rendered from the results store with minijinja.
//!
//! Pages: an index of the newest runs with a pass-rate chart (older runs on
//! archive pages), a page per run that starts with what changed and lists
//! every test, its verdict, message and files and the terminal recordings,
//! a page per test with its history, and a tests-by-runs matrix marking
//! new failures, fixes and flaky tests. Pages read on a phone (390 px) as
//! at 1280 px: wide tables scroll in their own box, test names never wrap.
//!
//! Every link is relative, so the site works from `file://`, from a sub-path
//! of GitHub Pages and from any static host. Pages are readable with scripts
//! off: the chart is inline SVG. Only run pages load scripts, all served
//! from the site itself (`script-src 'self'`, no inline script): the filter
//! of the list of tests, and where there are recordings the asciinema
//! player and a small init file; every other page forbids scripts with its
//! Content-Security-Policy. Every string that comes from a run (test names,
//! messages, host names) goes through minijinja's HTML auto-escaping, which
//! is on for every template and never bypassed (no `|safe` anywhere); the
//! scripts only read text and set properties, never markup.
//!
//! Layout of the output directory:
//!
//! ```text
//! index.html                       the newest runs, newest first, and the pass-rate chart
//! archive/<n>.html                 older runs, a page per 100 (1 is the oldest)
//! matrix.html                      tests by the newest runs (a kernel matrix's runs side by side)
//! bisect/index.html                the bisections of the results store (`btrfsqa bisect`)
//! bisect/<id>/index.html           a bisection's steps, verdicts and runs; bisect.json beside it
//! tests/<suite>/<test>.html        the history of one test (names escaped: `btrfs~011.html`)
//! style.css, .nojekyll, assets/    stylesheet, the filter script, the asciinema player and its init script
//! report.schema.json               the JSON Schema of every run's report.json
//! runs/<run-id>/index.html         the run page
//! runs/<run-id>/summary.json       what the history pages need of the run (compact rows)
//! runs/<run-id>/report.json.gz     exports, gzip: the report, JUnit XML, KCIDB JSON
//! runs/<run-id>/junit.xml.gz
//! runs/<run-id>/kcidb.json.gz
//! runs/<run-id>/files/<path>       artifacts (logs, recordings), trimmed to a size limit
//! .btrfsqa-site.json               what was rendered from what (not for serving)
//! ```
//!
//! The site stays small enough for GitHub Pages (1 GB) over a long history:
//! exports are compressed, summaries are compact, and only the newest
//! [`DashboardSettings::full_pages`] runs have pages listing every test;
//! older runs' pages list the tests that did not pass, with their files
//! (`bench/dashboard-scale.sh` checks 1,000 runs of 1,200 tests against a
//! 300 MB budget).
//!
//! Rendering is incremental: a run page is written only when its report
//! changed (the report's size and time are checked before it is read at
//! all) or what it shows of other runs did, history pages are built from
//! the small `summary.json` of each run, and a page whose content did not
//! change is not written again. With [`DashboardSettings::keep_runs`], only
//! the newest runs keep their pages and files; older runs stay in the index
//! and the histories as rows without links (their `summary.json` is kept).

mod artifact_paths;
mod assets;
mod bisect_pages;
mod changes;
mod format;
mod history;
mod incremental;
mod pages;
mod render;
mod renderer;
mod run_page;
mod summary;
mod templates;
mod timeline;

use std::path::{Path, PathBuf};

use btrfsqa_model::{ResultsStore, RunId};

use crate::{PublishError, Published, Publisher};
pub(crate) use artifact_paths::artifact_url_path;
#[cfg(test)]
use assets::*;
#[cfg(test)]
use format::human_duration;
use incremental::run_out_dir;
pub(crate) use incremental::{SUMMARY_FILE, TMP_SUFFIX};
pub use renderer::{Dashboard, DashboardSettings, RenderStats};
pub(crate) use run_page::EXPORTS;
pub(crate) use summary::{RunSummary, SUMMARY_FORMAT};

/// The compressed report beside each run page.
pub(crate) const REPORT_EXPORT: &str = EXPORTS[0];

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard::new()
    }
}

impl Dashboard {
    /// Writes the site for every run of `store` into `out_dir`.
    ///
    /// A run page (with its copies of the report and artifacts) is written
    /// only when its report changed since the last render into the same
    /// directory; the other pages only when their content changed. A report
    /// that cannot be read is listed in [`RenderStats::unreadable`] and on
    /// the index, and does not stop the others.
    pub fn render(
        &self,
        store: &ResultsStore,
        out_dir: &Path,
    ) -> Result<RenderStats, PublishError> {
        self.render_site(store, out_dir, &[])
    }
}

/// Renders the site into a directory, e.g. to preview it before publishing
/// or to serve it from a local web server.
#[derive(Debug, Clone)]
pub struct DirectoryPublisher {
    out_dir: PathBuf,
    dashboard: Dashboard,
}

impl DirectoryPublisher {
    /// Renders into `out_dir` with `dashboard`.
    pub fn new(out_dir: impl Into<PathBuf>, dashboard: Dashboard) -> Self {
        DirectoryPublisher {
            out_dir: out_dir.into(),
            dashboard,
        }
    }

    /// [`Publisher::publish`] without an async runtime.
    pub fn publish_blocking(
        &self,
        store: &ResultsStore,
        run: &RunId,
    ) -> Result<Published, PublishError> {
        // Reading the run first gives a precise error for a missing or broken run.
        store.read_report(run)?;
        self.dashboard.render(store, &self.out_dir)?;
        Ok(Published {
            location: run_out_dir(&self.out_dir, run)
                .join("index.html")
                .display()
                .to_string(),
            commit: None,
        })
    }
}

#[async_trait::async_trait]
impl Publisher for DirectoryPublisher {
    fn id(&self) -> &str {
        "directory"
    }

    /// Renders on tokio's blocking pool: the work is file I/O.
    async fn publish(&self, store: &ResultsStore, run: &RunId) -> Result<Published, PublishError> {
        let (this, store, run) = (self.clone(), store.clone(), run.clone());
        run_blocking(move || this.publish_blocking(&store, &run)).await
    }
}

/// Runs blocking work on tokio's blocking pool; a panic there is resumed here.
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => panic!("a blocking publish task was cancelled: {join}"),
    }
}

#[cfg(test)]
mod tests;
