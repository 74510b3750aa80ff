//! The static dashboard, rendered from the results store with minijinja.
//!
//! Pages: an index of the newest runs with a pass-rate chart (older runs on
//! archive pages), a page per run with every test, its verdict, message and
//! files and the terminal recordings, a page per test with its history, and
//! a tests-by-runs matrix marking new failures, fixes and flaky tests.
//!
//! Every link is relative, so the site works from `file://`, from a sub-path
//! of GitHub Pages and from any static host. Pages are readable with scripts
//! off: the chart is inline SVG. Only run pages with recordings load scripts,
//! the asciinema player and a small init file, both served from the site
//! itself (`script-src 'self'`, no inline script); every other page forbids
//! scripts with its Content-Security-Policy. Every string that comes from a
//! run (test names, messages, host names) goes through minijinja's HTML
//! auto-escaping, which is on for every template and never bypassed (no
//! `|safe` anywhere).
//!
//! Layout of the output directory:
//!
//! ```text
//! index.html                       the newest runs, newest first, and the pass-rate chart
//! archive/<n>.html                 older runs, a page per 100 (1 is the oldest)
//! matrix.html                      tests by the newest runs
//! tests/<suite>/<test>.html        the history of one test (names escaped: `btrfs~011.html`)
//! style.css, .nojekyll, assets/    stylesheet, the asciinema player and its init script
//! report.schema.json               the JSON Schema of every run's report.json
//! runs/<run-id>/index.html         the run page
//! runs/<run-id>/summary.json       what the history pages need of the run
//! runs/<run-id>/report.json        exports: the report, JUnit XML, KCIDB JSON
//! runs/<run-id>/junit.xml
//! runs/<run-id>/kcidb.json
//! runs/<run-id>/files/<path>       artifacts (logs, recordings), trimmed to a size limit
//! .btrfsqa-site.json               what was rendered from what (not for serving)
//! ```
//!
//! Rendering is incremental: a run page is written only when its report
//! changed (the report's size and time are checked before it is read at
//! all), history pages are built from the small `summary.json` of each run,
//! and a page whose content did not change is not written again. With
//! [`DashboardSettings::keep_runs`], only the newest runs keep their pages
//! and files; older runs stay in the index and the histories as rows
//! without links (their `summary.json` is kept).

mod history;
mod summary;
mod timeline;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use btrfsqa_model::{
    Artifact, ArtifactKind, Counts, ModelError, ResultsStore, RunId, RunReport, RunStatus,
    SourceInfo, Verdict, redact_url,
};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::lock::{DirLock, unique_temp_path};
use crate::{PublishError, Published, Publisher, export};
use history::{INDEX_RUNS, IndexRow};
pub(crate) use summary::{RunSummary, SUMMARY_FORMAT};

/// The file in the output directory that remembers which report each run
/// page was rendered from. It starts with a dot so static hosts that hide
/// dotfiles do not serve it; the git publisher leaves it out of the tree.
pub(crate) const MANIFEST_FILE: &str = ".btrfsqa-site.json";

/// The lock file in the output directory, held while rendering into it
/// (not served: it starts with a dot, and the git publisher leaves it out).
const LOCK_FILE: &str = ".btrfsqa-site.lock";

/// A run's summary, beside its page.
pub(crate) const SUMMARY_FILE: &str = "summary.json";

/// Bumped when the code that builds a run page changes in a way the
/// templates do not show, so existing sites re-render their run pages.
const PAGE_FORMAT: &str = "page-format-3";

const BASE_TEMPLATE: &str = include_str!("../templates/base.html");
const INDEX_TEMPLATE: &str = include_str!("../templates/index.html");
const RUN_TEMPLATE: &str = include_str!("../templates/run.html");
const TEST_TEMPLATE: &str = include_str!("../templates/test.html");
const MATRIX_TEMPLATE: &str = include_str!("../templates/matrix.html");
const STYLE_CSS: &str = include_str!("../static/style.css");
const PLAYER_INIT_JS: &str = include_str!("../static/btrfsqa-player.js");

/// The asciinema player (npm package `asciinema-player` 3.18.0, Apache-2.0),
/// vendored under `assets/asciinema-player/` and written into every site.
const PLAYER_FILES: &[(&str, &[u8])] = &[
    (
        "assets/asciinema-player/asciinema-player.min.js",
        include_bytes!("../assets/asciinema-player/asciinema-player.min.js"),
    ),
    (
        "assets/asciinema-player/asciinema-player.css",
        include_bytes!("../assets/asciinema-player/asciinema-player.css"),
    ),
    (
        "assets/asciinema-player/LICENSE",
        include_bytes!("../assets/asciinema-player/LICENSE"),
    ),
];

/// The site's own static files: the ones every page needs.
fn static_files() -> Vec<(&'static str, &'static [u8])> {
    let mut files: Vec<(&str, &[u8])> = vec![
        ("style.css", STYLE_CSS.as_bytes()),
        (".nojekyll", b""),
        ("assets/btrfsqa-player.js", PLAYER_INIT_JS.as_bytes()),
        // What every run's report.json follows, for tools that check it.
        (
            "report.schema.json",
            btrfsqa_model::REPORT_SCHEMA.as_bytes(),
        ),
    ];
    files.extend_from_slice(PLAYER_FILES);
    files
}

/// Extensions a browser (or GitHub Pages, which sets the content type from
/// the extension) would treat as active content. An artifact named like this
/// could carry a script onto the dashboard's origin, so its copy gets a
/// `.txt` suffix and is served as text.
const ACTIVE_EXTENSIONS: &[&str] = &[
    "htm", "html", "xhtml", "xht", "shtml", "svg", "svgz", "xml", "xsl", "xslt", "js", "mjs",
    "css", "swf", "pdf", "mht", "mhtml", "wasm",
];

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

/// Renders the static site from a [`ResultsStore`].
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
    settings: DashboardSettings,
    env: Arc<Environment<'static>>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard::new()
    }
}

/// Which run of the store needs what, between the two passes of a render.
struct StoreRun {
    key: String,
    stamp: Option<Stamp>,
    /// The report changed (or the renderer did) since the page was written.
    changed: bool,
}

impl Dashboard {
    /// A dashboard with the default settings.
    pub fn new() -> Self {
        Dashboard::with_settings(DashboardSettings::default())
    }

    /// A dashboard with `settings`.
    pub fn with_settings(settings: DashboardSettings) -> Self {
        let mut env = Environment::new();
        // Escape everything, whatever a template is called.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        // A misspelt field in a template is an error, not an empty cell.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in [
            ("base.html", BASE_TEMPLATE),
            ("index.html", INDEX_TEMPLATE),
            ("run.html", RUN_TEMPLATE),
            ("test.html", TEST_TEMPLATE),
            ("matrix.html", MATRIX_TEMPLATE),
        ] {
            env.add_template(name, source)
                .unwrap_or_else(|err| panic!("embedded template `{name}` does not parse: {err}"));
        }
        // Run pages depend on the templates, the stylesheet, the settings and
        // the code that builds their context: a change to any of them makes
        // every run page stale.
        let mut hasher = Sha256::new();
        for part in [
            PAGE_FORMAT,
            env!("CARGO_PKG_VERSION"),
            BASE_TEMPLATE,
            RUN_TEMPLATE,
            STYLE_CSS,
            &settings.title,
            settings.site_url.as_deref().unwrap_or(""),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.update(settings.max_artifact_bytes.to_le_bytes());
        hasher.update(settings.max_cast_bytes.to_le_bytes());
        Dashboard {
            settings,
            env: Arc::new(env),
            fingerprint: hasher.finalize().into(),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &DashboardSettings {
        &self.settings
    }

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

    /// [`render`](Self::render), with `published`: summaries of runs already
    /// on the published site that may not be in `store` (another controller
    /// published them). Those are listed on the index and in the histories;
    /// their pages are not written. A run in both uses the store's report.
    pub(crate) fn render_site(
        &self,
        store: &ResultsStore,
        out_dir: &Path,
        published: &[RunSummary],
    ) -> Result<RenderStats, PublishError> {
        // Two renders into one directory take turns.
        let _lock = DirLock::acquire(out_dir, LOCK_FILE, "the site directory")?;
        let old = Manifest::read(&out_dir.join(MANIFEST_FILE));
        let fingerprint = hex(&self.fingerprint);
        let same_renderer = old.fingerprint == fingerprint;
        let mut manifest = Manifest {
            fingerprint,
            ..Manifest::default()
        };
        let mut stats = RenderStats::default();

        // Pass 1: a summary of every run, reading only the reports that changed.
        let mut summaries = Vec::new();
        let mut in_store: HashMap<RunId, StoreRun> = HashMap::new();
        for id in store.list_runs()? {
            let report_path = store.report_path(&id);
            let run_out = run_out_dir(out_dir, &id);
            let stamp = Stamp::of(&report_path);
            if let Some(entry) = old.runs.get(id.as_str())
                && same_renderer
                && stamp.is_some()
                && entry.stamp == stamp
                && let Some(summary) = read_summary(&run_out, &id)
            {
                in_store.insert(
                    id,
                    StoreRun {
                        key: entry.key.clone(),
                        stamp,
                        changed: false,
                    },
                );
                summaries.push(summary);
                continue;
            }
            let (report, raw) = match read_report(store, &id) {
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(%error, "skipping an unreadable report");
                    stats.unreadable.push(describe_unreadable(&error));
                    continue;
                }
            };
            let key = self.page_key(&raw);
            let changed = old.runs.get(id.as_str()).map(|e| &e.key) != Some(&key);
            summaries.push(RunSummary::of(&report));
            in_store.insert(
                id,
                StoreRun {
                    key,
                    stamp,
                    changed,
                },
            );
        }
        for summary in published {
            if !in_store.contains_key(&summary.run_id) && !stats.kept.contains(&summary.run_id) {
                stats.kept.push(summary.run_id.clone());
                summaries.push(summary.clone());
            }
        }
        summaries.sort_by(RunSummary::newest_first);
        let keep = self.settings.keep_runs.unwrap_or(usize::MAX);
        for (i, summary) in summaries.iter_mut().enumerate() {
            summary.has_page = i < keep;
        }

        // Pass 2: the run pages.
        for summary in &summaries {
            let id = &summary.run_id;
            let run_out = run_out_dir(out_dir, id);
            let Some(run) = in_store.get(id) else {
                if !summary.has_page {
                    // Another controller's run, now beyond retention.
                    prune_run_dir(&run_out)?;
                    write_summary(&run_out, summary)?;
                    stats.pruned.push(id.clone());
                }
                continue;
            };
            manifest.runs.insert(
                id.as_str().to_owned(),
                ManifestRun {
                    key: run.key.clone(),
                    stamp: run.stamp,
                },
            );
            if !summary.has_page {
                prune_run_dir(&run_out)?;
                write_summary(&run_out, summary)?;
                stats.pruned.push(id.clone());
                continue;
            }
            if !run.changed && run_out.join("index.html").is_file() {
                stats.skipped.push(id.clone());
                continue;
            }
            let (report, raw) = read_report(store, id)?;
            self.render_run(store, &report, &raw, &run_out, &summaries, &mut stats)?;
            stats.written.push(id.clone());
        }

        // The pages built from the history.
        let mut site = SiteWriter {
            out_dir,
            old: &old.pages,
            new: &mut manifest.pages,
            stats: &mut stats,
        };
        self.write_history_pages(&mut site, &summaries)?;
        for (path, bytes) in static_files() {
            site.write(path, bytes)?;
        }
        // Pages of tests (or archive pages) that no longer exist.
        for path in old.pages.keys() {
            if !manifest.pages.contains_key(path) {
                let file = out_dir.join(path);
                match fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(PublishError::io("remove", file)(source)),
                }
            }
        }
        manifest.write(&out_dir.join(MANIFEST_FILE))?;
        Ok(stats)
    }

    /// The index, the archive pages, the matrix and a page per test.
    fn write_history_pages(
        &self,
        site: &mut SiteWriter<'_>,
        summaries: &[RunSummary],
    ) -> Result<(), PublishError> {
        let computed = history::new_failures(summaries);
        let unreadable = site.stats.unreadable.clone();
        let (newest, older) = summaries.split_at(summaries.len().min(INDEX_RUNS));
        // Archive pages are cut from the oldest run up, so adding a run
        // changes only the newest archive page.
        let archive_count = older.len().div_ceil(INDEX_RUNS);
        let archive_range = |k: usize| {
            let end = older.len() - (k - 1) * INDEX_RUNS;
            (end.saturating_sub(INDEX_RUNS), end)
        };
        let pages = |root: &str, current: Option<usize>| -> Vec<ArchiveLink> {
            (1..=archive_count)
                .rev()
                .map(|k| {
                    let (start, end) = archive_range(k);
                    let first = &older[end - 1];
                    let last = &older[start];
                    ArchiveLink {
                        label: format!(
                            "{} – {}",
                            first.started_at.format("%Y-%m-%d"),
                            last.started_at.format("%Y-%m-%d")
                        ),
                        href: format!("{root}archive/{k}.html"),
                        current: current == Some(k),
                    }
                })
                .collect()
        };
        let newest_refs: Vec<&RunSummary> = newest.iter().collect();
        let index = IndexPage {
            site_title: &self.settings.title,
            root: "",
            player: false,
            archive: None,
            total: summaries.len(),
            trend: history::trend(&newest_refs, ""),
            runs: index_rows(newest, 0, "", &computed),
            pages: pages("", None),
            unreadable: &unreadable,
        };
        site.write(
            "index.html",
            self.render_template("index.html", &index)?.as_bytes(),
        )?;
        for k in 1..=archive_count {
            let (start, end) = archive_range(k);
            let page = IndexPage {
                site_title: &self.settings.title,
                root: "../",
                player: false,
                archive: Some(ArchiveTitle {
                    title: format!("Older runs, page {k} of {archive_count}"),
                }),
                total: summaries.len(),
                trend: None,
                runs: index_rows(&older[start..end], newest.len() + start, "../", &computed),
                pages: pages("../", Some(k)),
                unreadable: &[],
            };
            site.write(
                &format!("archive/{k}.html"),
                self.render_template("index.html", &page)?.as_bytes(),
            )?;
        }
        let matrix = MatrixPage {
            site_title: &self.settings.title,
            root: "",
            player: false,
            matrix: history::matrix(summaries),
        };
        site.write(
            "matrix.html",
            self.render_template("matrix.html", &matrix)?.as_bytes(),
        )?;
        for (key, entries) in history::test_histories(summaries) {
            let path = history::test_page_path(key.0, key.1);
            let root = history::root_of(&path);
            let page = TestPageContext {
                site_title: &self.settings.title,
                root: &root,
                player: false,
                page: history::test_page(key, &entries, summaries),
            };
            site.write(&path, self.render_template("test.html", &page)?.as_bytes())?;
        }
        Ok(())
    }

    /// The manifest key of a run page: the renderer and the exact report.
    fn page_key(&self, raw_report: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.fingerprint);
        hasher.update(raw_report);
        hex(&hasher.finalize())
    }

    fn render_template(
        &self,
        name: &'static str,
        context: &impl Serialize,
    ) -> Result<String, PublishError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|source| PublishError::Template {
                template: name,
                source: Box::new(source),
            })?;
        template
            .render(Serde(context))
            .map_err(|source| PublishError::Template {
                template: name,
                source: Box::new(source),
            })
    }

    /// Writes one run's directory: its page, the report, the exports, its
    /// summary and the artifacts.
    fn render_run(
        &self,
        store: &ResultsStore,
        report: &RunReport,
        raw_report: &[u8],
        run_out: &Path,
        summaries: &[RunSummary],
        stats: &mut RenderStats,
    ) -> Result<(), PublishError> {
        let files_out = run_out.join("files");
        // Artifacts of an older version of the report must not linger.
        match fs::remove_dir_all(&files_out) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(PublishError::io("remove", &files_out)(source)),
        }
        fs::create_dir_all(run_out).map_err(PublishError::io("create directory", run_out))?;
        let mut copier = ArtifactCopier::new(store, report, files_out, &self.settings, stats);
        let html = self.render_run_page(report, &mut copier, summaries)?;
        write_file(&run_out.join("report.json"), raw_report)?;
        write_file(&run_out.join("junit.xml"), export::junit(report).as_bytes())?;
        let files_url = self
            .settings
            .site_url
            .as_ref()
            .map(|url| format!("{}/runs/{}/files", url.trim_end_matches('/'), report.run_id));
        write_file(
            &run_out.join("kcidb.json"),
            export::kcidb(report, files_url.as_deref()).as_bytes(),
        )?;
        write_summary(run_out, &RunSummary::of(report))?;
        write_atomic(&run_out.join("index.html"), html.as_bytes())
    }

    fn render_run_page(
        &self,
        report: &RunReport,
        copier: &mut ArtifactCopier<'_>,
        summaries: &[RunSummary],
    ) -> Result<String, PublishError> {
        let counts = Counts::of(report.outcomes());
        let summary = RunSummary::of(report);
        let class_of: HashMap<&str, &str> = summary
            .tests
            .iter()
            .filter_map(|t| t.class.as_deref().map(|c| (t.anchor.as_str(), c)))
            .collect();
        let mut casts: Vec<CastView> = Vec::new();
        let mut problems = Vec::new();
        let mut suites = Vec::new();
        for (i, suite) in report.suites.iter().enumerate() {
            let mut files = Vec::new();
            for artifact in &suite.artifacts {
                let view = copier.copy(artifact)?;
                if artifact.kind == ArtifactKind::Cast {
                    cast_view(&mut casts, artifact, &view);
                }
                files.push(view);
            }
            let mut groups: Vec<GroupView> = Vec::new();
            for (j, test) in suite.tests.iter().enumerate() {
                let anchor = summary::test_anchor(i, j);
                let class = class_of.get(anchor.as_str()).copied();
                if !test.verdict.is_ok() {
                    problems.push(Problem {
                        suite: &suite.id,
                        name: &test.name,
                        profile: test.profile.as_deref(),
                        verdict: test.verdict.as_str(),
                        class,
                        anchor: anchor.clone(),
                    });
                }
                let mut files = Vec::new();
                let mut replay = None;
                for artifact in &test.artifacts {
                    let view = copier.copy(artifact)?;
                    if artifact.kind == ArtifactKind::Cast {
                        if let Some(cast) = cast_view(&mut casts, artifact, &view) {
                            let start = artifact.start_secs.filter(|s| s.is_finite() && *s >= 0.0);
                            let start = start.unwrap_or(0.0);
                            if !test.verdict.is_ok() && casts[cast].first_problem.is_none() {
                                casts[cast].first_problem = Some(start);
                            }
                            replay = Some(ReplayView {
                                player: casts[cast].id.clone(),
                                start: format!("{start:.3}"),
                                at: clock(start),
                            });
                        }
                        if view.href.is_some() {
                            continue;
                        }
                    }
                    files.push(view);
                }
                let view = TestView {
                    name: &test.name,
                    profile: test.profile.as_deref(),
                    verdict: test.verdict.as_str(),
                    bad: !test.verdict.is_ok(),
                    class,
                    duration: test.duration_secs.and_then(human_duration),
                    message: test.message.as_deref(),
                    kernel_log: &test.kernel_log,
                    machine: test.machine.as_deref(),
                    history: format!("../../{}", history::test_page_path(&test.suite, &test.name)),
                    anchor,
                    files,
                    replay,
                };
                let profile = test.profile.as_deref();
                match groups.iter_mut().find(|g| g.profile == profile) {
                    Some(group) => group.tests.push(view),
                    None => groups.push(GroupView {
                        profile,
                        tests: vec![view],
                    }),
                }
            }
            let suite_counts = suite.counts();
            suites.push(SuiteView {
                id: &suite.id,
                anchor: format!("suite-{i}"),
                counts: verdict_counts(&suite_counts),
                total: suite_counts.total(),
                duration: suite.duration_secs.and_then(human_duration),
                error: suite.error.as_deref(),
                source: suite.source.as_ref().map(SourceView::new),
                files,
                groups,
            });
        }
        for cast in &mut casts {
            cast.start = format!("{:.3}", cast.first_problem.unwrap_or(0.0));
        }
        let comparison = report.comparison.as_ref().map(|c| {
            let baseline = c
                .baseline
                .as_ref()
                .and_then(|b| summaries.iter().find(|s| &s.run_id == b));
            ComparisonView {
                baseline: c.baseline.as_ref().map(|b| b.as_str().to_owned()),
                baseline_href: baseline
                    .filter(|b| b.has_page)
                    .map(|b| format!("../{}/index.html", b.run_id)),
                baseline_kernel: baseline.and_then(|b| b.kernel_release.clone()),
                new_failures: c.counts.new_failure,
                fixed: c.counts.fixed,
                flaky: c.counts.flaky,
                still_failing: c.counts.still_failing,
            }
        });
        let provenance = &report.provenance;
        let context = RunPage {
            site_title: &self.settings.title,
            root: "../../",
            player: !casts.is_empty(),
            run: RunView {
                id: report.run_id.as_str(),
                status: status_text(report.status),
                status_class: status_class(report.status, &counts),
                started: format_time(report.started_at),
                finished: report.finished_at.map(format_time),
                duration: report.duration_secs().and_then(human_duration),
                error: report.error.as_deref(),
                cost: report.cost_usd.map(|usd| format!("${usd:.2}")),
                labels: report
                    .labels
                    .iter()
                    .map(|(key, value)| Label { key, value })
                    .collect(),
                counts: verdict_counts(&counts),
                total: counts.total(),
            },
            provenance: ProvenanceView {
                btrfsqa_version: &provenance.btrfsqa_version,
                config_hash: &provenance.config_hash,
                provider: &provenance.provider,
                controller: provenance.controller.as_deref(),
                kernel: KernelView {
                    release: kernel_release(report),
                    version: provenance.kernel.version.as_deref(),
                    source: provenance.kernel.source.as_ref().map(SourceView::new),
                },
                sources: provenance.sources.iter().map(SourceView::new).collect(),
                machines: provenance
                    .machines
                    .iter()
                    .map(|machine| MachineView {
                        name: &machine.name,
                        provider: &machine.provider,
                        instance_type: machine.instance_type.as_deref(),
                        address: redact_url(&machine.address),
                        kernel: machine.kernel.release.as_deref(),
                        devices: machine_devices(machine),
                    })
                    .collect(),
            },
            comparison,
            problems,
            casts,
            suites,
            timeline: timeline::view(report),
        };
        self.render_template("run.html", &context)
    }
}

/// Index rows for `runs`, the `offset`-th onwards of the site's runs.
fn index_rows<'a>(
    runs: &'a [RunSummary],
    offset: usize,
    root: &str,
    computed: &[u32],
) -> Vec<IndexRow<'a>> {
    runs.iter()
        .enumerate()
        .map(|(i, run)| IndexRow::new(run, root, Some(computed[offset + i])))
        .collect()
}

/// The recording of `artifact` among `casts` (added when new), or `None`
/// when it was not copied (then it is only listed as a file).
fn cast_view(casts: &mut Vec<CastView>, artifact: &Artifact, view: &FileView) -> Option<usize> {
    let href = view.href.as_ref()?;
    if let Some(i) = casts.iter().position(|c| &c.href == href) {
        return Some(i);
    }
    let machine = artifact
        .path
        .rsplit('/')
        .next()
        .unwrap_or(&artifact.path)
        .trim_end_matches(".cast")
        .to_owned();
    casts.push(CastView {
        id: format!("rec-{}", casts.len()),
        machine,
        href: href.clone(),
        name: artifact.path.clone(),
        note: view.note.clone(),
        start: String::new(),
        first_problem: None,
    });
    Some(casts.len() - 1)
}

/// `1:02:03`, `2:05`, `0:07`: a position in a recording.
fn clock(secs: f64) -> String {
    let total = secs.max(0.0) as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Reads a run's report and its exact bytes.
fn read_report(store: &ResultsStore, id: &RunId) -> Result<(RunReport, Vec<u8>), ModelError> {
    let path = store.report_path(id);
    let raw = fs::read(&path).map_err(|source| ModelError::Io {
        action: "read",
        path: path.clone(),
        source,
    })?;
    // Render from the very bytes that are hashed and copied: the runner may
    // replace the report at any moment. The store's reader gives the precise
    // error (a newer schema, a broken file).
    // A report with credentials in a URL (written by an older btrfsqa or
    // another tool) is published without them, its copy included.
    let serialize =
        |report: &RunReport| serde_json::to_vec_pretty(report).expect("a report always serializes");
    match serde_json::from_slice::<RunReport>(&raw) {
        Ok(mut report) if &report.run_id == id => {
            if report.redact_credentials() {
                let raw = serialize(&report);
                return Ok((report, raw));
            }
            Ok((report, raw))
        }
        _ => store.read_report(id).map(|mut report| {
            report.redact_credentials();
            let raw = serialize(&report);
            (report, raw)
        }),
    }
}

/// A run's summary as last written beside its page, when it is current.
fn read_summary(run_out: &Path, id: &RunId) -> Option<RunSummary> {
    let bytes = fs::read(run_out.join(SUMMARY_FILE)).ok()?;
    serde_json::from_slice::<RunSummary>(&bytes)
        .ok()
        .filter(|s| s.format == summary::SUMMARY_FORMAT && &s.run_id == id)
}

fn write_summary(run_out: &Path, summary: &RunSummary) -> Result<(), PublishError> {
    fs::create_dir_all(run_out).map_err(PublishError::io("create directory", run_out))?;
    let json = serde_json::to_vec(summary).expect("a summary always serializes");
    write_atomic(&run_out.join(SUMMARY_FILE), &json)
}

/// Removes everything of a run's directory but its summary.
fn prune_run_dir(run_out: &Path) -> Result<(), PublishError> {
    let entries = match fs::read_dir(run_out) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(PublishError::io("read directory", run_out)(source)),
    };
    for entry in entries {
        let entry = entry.map_err(PublishError::io("read directory", run_out))?;
        if entry.file_name() == SUMMARY_FILE {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(PublishError::io("remove", &path))?;
    }
    Ok(())
}

/// Writes the site's shared pages, skipping those whose content is what the
/// last render wrote.
struct SiteWriter<'a> {
    out_dir: &'a Path,
    old: &'a BTreeMap<String, String>,
    new: &'a mut BTreeMap<String, String>,
    stats: &'a mut RenderStats,
}

impl SiteWriter<'_> {
    fn write(&mut self, path: &str, bytes: &[u8]) -> Result<(), PublishError> {
        let hash = hex(&Sha256::digest(bytes));
        let file = self.out_dir.join(path);
        if self.old.get(path) == Some(&hash) && file.is_file() {
            self.stats.site_files_unchanged += 1;
        } else {
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).map_err(PublishError::io("create directory", parent))?;
            }
            write_atomic(&file, bytes)?;
            self.stats.site_files_written += 1;
        }
        self.new.insert(path.to_owned(), hash);
        Ok(())
    }
}

/// `runs/<id>` under the site root. Run ids are restricted by the model to
/// `[A-Za-z0-9._-]` without a leading dot, so this stays inside `out_dir`.
fn run_out_dir(out_dir: &Path, id: &RunId) -> PathBuf {
    out_dir.join("runs").join(id.as_str())
}

/// One line for an unreadable report, naming the run directory rather than
/// the controller's full path (which the public site has no business showing).
fn describe_unreadable(error: &ModelError) -> String {
    let run_of = |path: &Path| {
        path.parent()
            .and_then(Path::file_name)
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match error {
        ModelError::BadReport { path, source } => {
            format!("{}: not a valid report: {source}", run_of(path))
        }
        ModelError::UnsupportedSchema {
            path,
            found,
            supported,
        } => {
            format!(
                "{}: schema version {found}, this btrfsqa reads up to {supported}",
                run_of(path)
            )
        }
        ModelError::Io { path, source, .. } => format!("{}: cannot read: {source}", run_of(path)),
        other => other.to_string(),
    }
}

/// What the last render into an output directory wrote from what.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// The renderer's fingerprint: another one makes every run page stale.
    #[serde(default)]
    fingerprint: String,
    /// Run id -> its page key and the report's size and time when read.
    #[serde(default)]
    runs: BTreeMap<String, ManifestRun>,
    /// Site-relative path of every other page and file -> hash of its content.
    #[serde(default)]
    pages: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestRun {
    key: String,
    #[serde(default)]
    stamp: Option<Stamp>,
}

/// A file's size and modification time, to tell that it has not changed
/// without reading it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    mtime_ns: u128,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let metadata = fs::metadata(path).ok()?;
        let mtime = metadata.modified().ok()?;
        let mtime_ns = mtime.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        Some(Stamp {
            len: metadata.len(),
            mtime_ns,
        })
    }
}

impl Manifest {
    /// A missing or unreadable manifest only means every page is rendered again.
    fn read(path: &Path) -> Manifest {
        fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn write(&self, path: &Path) -> Result<(), PublishError> {
        let json = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        write_atomic(path, &json)
    }
}

/// Copies the artifacts of one run into its `files/` directory, checking
/// every path first, and describes each for the page.
struct ArtifactCopier<'a> {
    run_id: &'a RunId,
    /// The run directory in the store, symlinks resolved; `None` when it does not exist.
    source_root: Option<PathBuf>,
    files_out: PathBuf,
    max_bytes: u64,
    max_cast_bytes: u64,
    /// Destination -> the artifact path copied there, so two artifacts never
    /// overwrite each other and a repeated artifact is copied once.
    done: HashMap<PathBuf, (String, FileView)>,
    stats: &'a mut RenderStats,
}

impl<'a> ArtifactCopier<'a> {
    fn new(
        store: &ResultsStore,
        report: &'a RunReport,
        files_out: PathBuf,
        settings: &DashboardSettings,
        stats: &'a mut RenderStats,
    ) -> Self {
        ArtifactCopier {
            run_id: &report.run_id,
            source_root: fs::canonicalize(store.run_dir(&report.run_id)).ok(),
            files_out,
            max_bytes: settings.max_artifact_bytes,
            max_cast_bytes: settings.max_cast_bytes,
            done: HashMap::new(),
            stats,
        }
    }

    fn copy(&mut self, artifact: &Artifact) -> Result<FileView, PublishError> {
        let mut view = FileView {
            label: kind_label(artifact.kind),
            name: artifact.path.clone(),
            href: None,
            note: artifact
                .truncated_bytes
                .map(|n| format!("cut when collected: {} left out", byte_count(n))),
        };
        let checked = match self.check(&artifact.path) {
            Ok(checked) => checked,
            Err(reason) => {
                tracing::warn!(run = %self.run_id, path = %artifact.path, reason, "artifact not copied");
                self.stats
                    .artifacts_refused
                    .push(format!("{}: {}: {reason}", self.run_id, artifact.path));
                append_note(&mut view.note, reason);
                return Ok(view);
            }
        };
        if let Some((path, done)) = self.done.get(&checked.destination) {
            if *path == artifact.path {
                return Ok(FileView {
                    label: view.label,
                    ..done.clone()
                });
            }
            let reason = "not copied: another artifact has the same name on the site";
            self.stats
                .artifacts_refused
                .push(format!("{}: {}: {reason}", self.run_id, artifact.path));
            append_note(&mut view.note, reason);
            return Ok(view);
        }
        let left_out = if artifact.kind == ArtifactKind::Cast && checked.size > self.max_cast_bytes
        {
            self.copy_cast_trimmed(&checked, &artifact.path)?
        } else {
            self.copy_file(&checked, &artifact.path)?
        };
        self.stats.artifacts_copied += 1;
        if let Some(left_out) = left_out {
            self.stats.artifacts_trimmed += 1;
            append_note(
                &mut view.note,
                &format!(
                    "trimmed: {} left out here; the full file is in the results store",
                    byte_count(left_out)
                ),
            );
        }
        view.href = Some(checked.href.clone());
        self.done
            .insert(checked.destination, (artifact.path.clone(), view.clone()));
        Ok(view)
    }

    /// Checks an artifact path from a report: relative, no `..`, and the file
    /// it names (symlinks resolved) is a regular file inside the run directory.
    fn check(&self, path: &str) -> Result<CheckedArtifact, &'static str> {
        let components = relative_components(path)?;
        let root = self
            .source_root
            .as_ref()
            .ok_or("missing: the run has no directory in the results store")?;
        let mut source = root.clone();
        source.extend(&components);
        let resolved = fs::canonicalize(&source).map_err(|_| "missing from the results store")?;
        if !resolved.starts_with(root) {
            return Err("refused: the path leads outside the run directory");
        }
        let metadata = fs::metadata(&resolved).map_err(|_| "missing from the results store")?;
        if !metadata.is_file() {
            return Err("refused: not a regular file");
        }
        let site_components = site_components(&components);
        let mut destination = self.files_out.clone();
        destination.extend(&site_components);
        let href = format!("files/{}", url_path(&site_components));
        Ok(CheckedArtifact {
            source: resolved,
            size: metadata.len(),
            destination,
            href,
        })
    }

    /// Copies one checked artifact, trimming it to the limit; returns the
    /// number of bytes left out, if any.
    fn copy_file(
        &self,
        checked: &CheckedArtifact,
        path: &str,
    ) -> Result<Option<u64>, PublishError> {
        let destination = &checked.destination;
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent).map_err(PublishError::io("create directory", parent))?;
        }
        let limit = if path.ends_with(".cast") {
            self.max_cast_bytes
        } else {
            self.max_bytes
        };
        if checked.size <= limit {
            fs::copy(&checked.source, destination)
                .map_err(PublishError::io("copy", &checked.source))?;
            return Ok(None);
        }
        let head = self.max_bytes / 2;
        let tail = self.max_bytes - head;
        let left_out = checked.size - self.max_bytes;
        let read_error = PublishError::io("read", &checked.source);
        let trimmed = (|| -> std::io::Result<(Vec<u8>, Vec<u8>)> {
            let mut file = fs::File::open(&checked.source)?;
            let mut first = Vec::new();
            (&mut file).take(head).read_to_end(&mut first)?;
            file.seek(SeekFrom::End(-(tail as i64)))?;
            let mut last = Vec::new();
            file.take(tail).read_to_end(&mut last)?;
            Ok((first, last))
        })();
        let (first, last) = trimmed.map_err(read_error)?;
        let note = format!(
            "\n\n[btrfsqa: {} left out here. This copy keeps the first {} and the last {} of {}. \
             The full file is in the results store: {}/{}]\n\n",
            byte_count(left_out),
            byte_count(head),
            byte_count(tail),
            byte_count(checked.size),
            self.run_id,
            path,
        );
        let write_error = PublishError::io("write", destination);
        (|| -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(fs::File::create(destination)?);
            out.write_all(&first)?;
            out.write_all(note.as_bytes())?;
            out.write_all(&last)?;
            out.flush()
        })()
        .map_err(write_error)?;
        Ok(Some(left_out))
    }
}

impl ArtifactCopier<'_> {
    /// Copies a recording that is over its limit so that the copy still
    /// plays: the header, the first and the last events within the limit,
    /// every marker in between, and an output event saying what was left
    /// out where it was. Returns the number of bytes left out.
    fn copy_cast_trimmed(
        &self,
        checked: &CheckedArtifact,
        path: &str,
    ) -> Result<Option<u64>, PublishError> {
        let text = fs::read(&checked.source).map_err(PublishError::io("read", &checked.source))?;
        let text = String::from_utf8_lossy(&text);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let events: Vec<&str> = lines.collect();
        let half = (self.max_cast_bytes / 2) as usize;
        let mut head = 0;
        let mut used = 0;
        while head < events.len() && used + events[head].len() < half {
            used += events[head].len() + 1;
            head += 1;
        }
        let mut tail = events.len();
        used = 0;
        while tail > head && used + events[tail - 1].len() < half {
            used += events[tail - 1].len() + 1;
            tail -= 1;
        }
        let middle = &events[head..tail];
        let left_out: u64 = middle.iter().map(|l| l.len() as u64 + 1).sum();
        let mut out = String::with_capacity(self.max_cast_bytes as usize + 1024);
        out.push_str(header);
        out.push('\n');
        for line in &events[..head] {
            out.push_str(line);
            out.push('\n');
        }
        if !middle.is_empty() {
            let at = middle
                .first()
                .and_then(|l| serde_json::from_str::<(f64, String, String)>(l).ok())
                .map_or(0.0, |e| e.0);
            let note = format!(
                "\r\n[btrfsqa: {} of this recording left out here to keep the site small; \
                 the full recording is in the results store: {}/{}]\r\n",
                byte_count(left_out),
                self.run_id,
                path
            );
            let event = serde_json::to_string(&(at, "o", note)).expect("an event serializes");
            out.push_str(&event);
            out.push('\n');
            // Markers stay: tests that started in the gap still have theirs.
            for line in middle {
                if let Ok((_, code, _)) = serde_json::from_str::<(f64, String, String)>(line)
                    && code == "m"
                {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        for line in &events[tail..] {
            out.push_str(line);
            out.push('\n');
        }
        let destination = &checked.destination;
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent).map_err(PublishError::io("create directory", parent))?;
        }
        write_file(destination, out.as_bytes())?;
        Ok((left_out > 0).then_some(left_out))
    }
}

struct CheckedArtifact {
    source: PathBuf,
    size: u64,
    destination: PathBuf,
    href: String,
}

/// The components of a relative artifact path, or why it is refused.
fn relative_components(path: &str) -> Result<Vec<&str>, &'static str> {
    if path.is_empty() {
        return Err("refused: empty path");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err("refused: not a relative path");
    }
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => continue,
            ".." => return Err("refused: the path leads outside the run directory"),
            c if !allowed_in_git_tree(c) => {
                return Err("refused: a name git does not allow in a tree");
            }
            c => components.push(c),
        }
    }
    if components.is_empty() {
        return Err("refused: empty path");
    }
    Ok(components)
}

/// Whether git (and so the git publisher) accepts `component` as a tree
/// entry: not `.git` in any disguise (NTFS short names, HFS+ ignorables),
/// no NTFS alternate-data-stream syntax. Windows device names are allowed,
/// as git allows them by default on other systems.
fn allowed_in_git_tree(component: &str) -> bool {
    use gix::bstr::ByteSlice;
    let options = gix::validate::path::component::Options {
        protect_windows: false,
        protect_hfs: true,
        protect_ntfs: true,
    };
    gix::validate::path::component(component.as_bytes().as_bstr(), None, options).is_ok()
}

/// The names an artifact's path components get on the site: the last one
/// with `.txt` added when a browser would treat it as active content.
fn site_components(components: &[&str]) -> Vec<String> {
    let mut site: Vec<String> = components.iter().map(|c| (*c).to_owned()).collect();
    if let Some(last) = site.last_mut()
        && is_active_content(last)
    {
        last.push_str(".txt");
    }
    site
}

fn url_path(components: &[String]) -> String {
    components
        .iter()
        .map(|c| percent_encode(c))
        .collect::<Vec<_>>()
        .join("/")
}

/// Where the site publishes the artifact at `path` (relative to the run
/// directory), as a URL path below the run's `files/`; the reason when the
/// dashboard refuses the path. The copy may still be refused for what the
/// file is (missing, not a regular file).
pub(crate) fn artifact_url_path(path: &str) -> Result<String, &'static str> {
    Ok(url_path(&site_components(&relative_components(path)?)))
}

fn is_active_content(file_name: &str) -> bool {
    file_name.rsplit_once('.').is_some_and(|(_, ext)| {
        ACTIVE_EXTENSIONS
            .iter()
            .any(|a| a.eq_ignore_ascii_case(ext))
    })
}

/// Percent-encodes one path component for a URL: everything but unreserved characters.
fn percent_encode(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for byte in component.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn append_note(note: &mut Option<String>, more: &str) {
    match note {
        Some(note) => {
            note.push_str("; ");
            note.push_str(more);
        }
        None => *note = Some(more.to_owned()),
    }
}

fn kind_label(kind: ArtifactKind) -> &'static str {
    match kind {
        ArtifactKind::Stdout => "stdout",
        ArtifactKind::Stderr => "stderr",
        ArtifactKind::Log => "log",
        ArtifactKind::Full => "full",
        ArtifactKind::OutBad => "out.bad",
        ArtifactKind::Dmesg => "dmesg",
        ArtifactKind::Console => "console",
        ArtifactKind::BuildLog => "build log",
        ArtifactKind::Cast => "recording",
        ArtifactKind::Other => "file",
    }
}

fn status_text(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Errored => "errored",
        RunStatus::Interrupted => "interrupted",
    }
}

/// The badge colour of a run: green only when it completed with nothing bad.
fn status_class(status: RunStatus, counts: &Counts) -> &'static str {
    match status {
        RunStatus::Completed if counts.bad() == 0 => "ok",
        RunStatus::Completed | RunStatus::Errored => "bad",
        RunStatus::Running | RunStatus::Interrupted => "warn",
    }
}

fn kernel_release(report: &RunReport) -> Option<&str> {
    report.provenance.kernel.release.as_deref().or_else(|| {
        report
            .provenance
            .machines
            .iter()
            .find_map(|m| m.kernel.release.as_deref())
    })
}

fn machine_devices(machine: &btrfsqa_model::MachineInfo) -> Option<String> {
    let mut devices: Vec<&str> = machine.test_dev.iter().map(String::as_str).collect();
    devices.extend(machine.scratch_devs.iter().map(String::as_str));
    (!devices.is_empty()).then(|| devices.join(" "))
}

fn format_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `2h 03m`, `4m 05s`, `12 s`, `0.4 s`.
fn human_duration(secs: f64) -> Option<String> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    if secs < 10.0 {
        return Some(format!("{secs:.1} s"));
    }
    let total = secs.round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    Some(if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s} s")
    })
}

/// `1234567 bytes (1.2 MiB)`.
fn byte_count(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = "bytes";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{bytes} bytes ({value:.1} {unit})")
}

fn verdict_counts(counts: &Counts) -> Vec<VerdictCount> {
    Verdict::ALL
        .iter()
        .map(|&verdict| VerdictCount {
            verdict: verdict.as_str(),
            n: counts.get(verdict),
        })
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    fs::write(path, bytes).map_err(PublishError::io("write", path))
}

/// The suffix of [`write_atomic`]'s temporary files; one left by a crash is
/// not site content, and the git publisher leaves it out.
pub(crate) const TMP_SUFFIX: &str = ".btrfsqa-tmp";

/// Writes through a temporary file and a rename, so a web server reading the
/// directory never serves half a page.
/// The temporary name is unique (pid and counter), so writers never share one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let tmp = unique_temp_path(path, TMP_SUFFIX);
    write_file(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(PublishError::io("rename into", path))
}

// The template contexts. Every field is always present (absent values are
// `none`), because the environment treats undefined values as errors.

#[derive(Serialize)]
struct IndexPage<'a> {
    site_title: &'a str,
    root: &'a str,
    player: bool,
    archive: Option<ArchiveTitle>,
    total: usize,
    trend: Option<history::Trend<'a>>,
    runs: Vec<IndexRow<'a>>,
    pages: Vec<ArchiveLink>,
    unreadable: &'a [String],
}

#[derive(Serialize)]
struct ArchiveTitle {
    title: String,
}

#[derive(Serialize)]
struct ArchiveLink {
    label: String,
    href: String,
    current: bool,
}

#[derive(Serialize)]
struct MatrixPage<'a> {
    site_title: &'a str,
    root: &'a str,
    player: bool,
    matrix: history::Matrix<'a>,
}

#[derive(Serialize)]
struct TestPageContext<'a> {
    site_title: &'a str,
    root: &'a str,
    player: bool,
    page: history::TestPage<'a>,
}

#[derive(Serialize)]
struct RunPage<'a> {
    site_title: &'a str,
    root: &'a str,
    player: bool,
    run: RunView<'a>,
    timeline: Option<timeline::TimelineView>,
    provenance: ProvenanceView<'a>,
    comparison: Option<ComparisonView>,
    problems: Vec<Problem<'a>>,
    casts: Vec<CastView>,
    suites: Vec<SuiteView<'a>>,
}

#[derive(Serialize)]
struct RunView<'a> {
    id: &'a str,
    status: &'static str,
    status_class: &'static str,
    started: String,
    finished: Option<String>,
    duration: Option<String>,
    error: Option<&'a str>,
    cost: Option<String>,
    labels: Vec<Label<'a>>,
    counts: Vec<VerdictCount>,
    total: u32,
}

#[derive(Serialize)]
struct Label<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct VerdictCount {
    verdict: &'static str,
    n: u32,
}

#[derive(Serialize)]
struct ComparisonView {
    baseline: Option<String>,
    baseline_href: Option<String>,
    baseline_kernel: Option<String>,
    new_failures: u32,
    fixed: u32,
    flaky: u32,
    still_failing: u32,
}

#[derive(Serialize)]
struct ProvenanceView<'a> {
    btrfsqa_version: &'a str,
    config_hash: &'a str,
    provider: &'a str,
    controller: Option<&'a str>,
    kernel: KernelView<'a>,
    sources: Vec<SourceView<'a>>,
    machines: Vec<MachineView<'a>>,
}

#[derive(Serialize)]
struct KernelView<'a> {
    release: Option<&'a str>,
    version: Option<&'a str>,
    source: Option<SourceView<'a>>,
}

#[derive(Serialize)]
struct SourceView<'a> {
    name: &'a str,
    /// Credentials in a source URL are never shown.
    url: String,
    git_ref: Option<&'a str>,
    commit: Option<&'a str>,
}

impl<'a> SourceView<'a> {
    fn new(source: &'a SourceInfo) -> Self {
        SourceView {
            name: &source.name,
            url: redact_url(&source.url),
            git_ref: source.git_ref.as_deref(),
            commit: source.commit.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct MachineView<'a> {
    name: &'a str,
    provider: &'a str,
    instance_type: Option<&'a str>,
    address: String,
    kernel: Option<&'a str>,
    devices: Option<String>,
}

#[derive(Serialize)]
struct Problem<'a> {
    suite: &'a str,
    name: &'a str,
    profile: Option<&'a str>,
    verdict: &'static str,
    class: Option<&'a str>,
    anchor: String,
}

/// One terminal recording on a run page.
#[derive(Serialize)]
struct CastView {
    /// The player's element id (`rec-0`).
    id: String,
    machine: String,
    href: String,
    name: String,
    note: Option<String>,
    /// Where the player opens: the first failing test, else the start.
    start: String,
    #[serde(skip)]
    first_problem: Option<f64>,
}

#[derive(Serialize)]
struct ReplayView {
    player: String,
    start: String,
    at: String,
}

#[derive(Serialize)]
struct SuiteView<'a> {
    id: &'a str,
    anchor: String,
    counts: Vec<VerdictCount>,
    total: u32,
    duration: Option<String>,
    error: Option<&'a str>,
    source: Option<SourceView<'a>>,
    files: Vec<FileView>,
    groups: Vec<GroupView<'a>>,
}

/// The tests of a suite that ran under one profile.
#[derive(Serialize)]
struct GroupView<'a> {
    profile: Option<&'a str>,
    tests: Vec<TestView<'a>>,
}

#[derive(Serialize)]
struct TestView<'a> {
    name: &'a str,
    profile: Option<&'a str>,
    verdict: &'static str,
    bad: bool,
    class: Option<&'a str>,
    duration: Option<String>,
    message: Option<&'a str>,
    /// What the kernel logged that matters (BUG, WARNING, ...).
    kernel_log: &'a [String],
    machine: Option<&'a str>,
    /// The test's history page.
    history: String,
    anchor: String,
    files: Vec<FileView>,
    replay: Option<ReplayView>,
}

#[derive(Serialize, Clone)]
struct FileView {
    label: &'static str,
    name: String,
    /// Relative to the run page; absent when the file was not copied.
    href: Option<String>,
    note: Option<String>,
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
