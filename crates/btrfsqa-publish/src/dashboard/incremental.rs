//! Rendering only what changed: the manifest of what each page was
//! rendered from, the report stamps (size and time) that spare reading an
//! unchanged report, the summaries kept beside run pages, the writer that
//! leaves unchanged pages alone, and atomic writes.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use btrfsqa_model::compare::CompareOptions;
use btrfsqa_model::{ModelError, ResultsStore, RunId, RunReport};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::assets::*;
use super::run_page::page_context;
use super::summary::{self, RunSummary};
use super::{Dashboard, RenderStats};
use crate::PublishError;
use crate::lock::{DirLock, unique_temp_path};

impl Dashboard {
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
            let stamp = Stamp::of(&store.report_path(&id));
            if let Some(entry) = old.runs.get(id.as_str())
                && same_renderer
                && stamp.is_some()
                && entry.stamp == stamp
                && let Some(summary) = read_summary(&run_out_dir(out_dir, &id), &id, false)
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

        // Every run's tests are read when runs lose their pages (a test's
        // page must not keep links to them), else only the newest runs'.
        let window = match self.settings.keep_runs {
            Some(_) => summaries.len(),
            None => TESTS_WINDOW.min(summaries.len()),
        };
        read_tests(&mut summaries, 0..window, out_dir);

        // Pass 2: the run pages.
        let mut to_write = Vec::new();
        for (i, summary) in summaries.iter().enumerate() {
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
            // A page also shows other runs (the run it is compared with,
            // and whether that one still has a page): a change there makes
            // it stale too.
            let full = i < self.settings.full_pages;
            let context = page_context(i, &summaries, full);
            let context_changed = old
                .runs
                .get(id.as_str())
                .is_none_or(|e| e.context != context);
            manifest.runs.insert(
                id.as_str().to_owned(),
                ManifestRun {
                    key: run.key.clone(),
                    stamp: run.stamp,
                    context,
                },
            );
            if !summary.has_page {
                prune_run_dir(&run_out)?;
                write_summary(&run_out, summary)?;
                stats.pruned.push(id.clone());
                continue;
            }
            if !run.changed && !context_changed && run_out.join("index.html").is_file() {
                stats.skipped.push(id.clone());
                continue;
            }
            to_write.push((i, full));
        }
        // What changed on a page is reckoned against the runs before it.
        let before = CompareOptions::default().flaky_window;
        read_tests(
            &mut summaries,
            to_write.iter().flat_map(|&(i, _)| i + 1..=i + before),
            out_dir,
        );
        for (i, full) in to_write {
            let id = &summaries[i].run_id;
            let (report, raw) = read_report(store, id)?;
            let run_out = run_out_dir(out_dir, id);
            self.render_run(store, &report, &raw, &run_out, &summaries, full, &mut stats)?;
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
        let mut unreadable = Vec::new();
        let bisections = super::bisect_pages::read_bisections(store, &mut unreadable);
        self.write_bisect_pages(&mut site, &bisections, &summaries)?;
        site.stats.unreadable.extend(unreadable);
        for (path, bytes) in static_files() {
            site.write(path, bytes)?;
        }
        // Pages of tests (or archive pages) that no longer exist. A test
        // that did not run in the newest runs keeps the page it has when
        // older runs' tests were not read.
        let every_test_read = summaries.iter().all(|s| s.tests_read);
        for (path, hash) in &old.pages {
            if !manifest.pages.contains_key(path)
                && !every_test_read
                && path.starts_with("tests/")
                && out_dir.join(path).is_file()
            {
                manifest.pages.insert(path.clone(), hash.clone());
                continue;
            }
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

    /// The manifest key of a run page: the renderer and the exact report.
    pub(super) fn page_key(&self, raw_report: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.fingerprint);
        hasher.update(raw_report);
        hex(&hasher.finalize())
    }
}

/// The file in the output directory that remembers which report each run
/// page was rendered from. It starts with a dot so static hosts that hide
/// dotfiles do not serve it; the git publisher leaves it out of the tree.
pub(crate) const MANIFEST_FILE: &str = ".btrfsqa-site.json";

/// The lock file in the output directory, held while rendering into it
/// (not served: it starts with a dot, and the git publisher leaves it out).
pub(super) const LOCK_FILE: &str = ".btrfsqa-site.lock";

/// A run's summary, beside its page.
pub(crate) const SUMMARY_FILE: &str = "summary.json";

/// Which run of the store needs what, between the two passes of a render.
pub(super) struct StoreRun {
    pub(super) key: String,
    pub(super) stamp: Option<Stamp>,
    /// The report changed (or the renderer did) since the page was written.
    pub(super) changed: bool,
}

/// Reads a run's report and its exact bytes.
pub(super) fn read_report(
    store: &ResultsStore,
    id: &RunId,
) -> Result<(RunReport, Vec<u8>), ModelError> {
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
pub(super) fn read_summary(run_out: &Path, id: &RunId, tests: bool) -> Option<RunSummary> {
    let bytes = fs::read(run_out.join(SUMMARY_FILE)).ok()?;
    let summary = if tests {
        serde_json::from_slice::<RunSummary>(&bytes)
    } else {
        RunSummary::head(&bytes)
    };
    summary
        .ok()
        .filter(|s| s.format == summary::SUMMARY_FORMAT && &s.run_id == id)
}

/// Runs whose tests a publish reads: those of the test pages and the
/// matrix, the newest. Older runs' tests are read only where a page needs
/// them (the runs before a run page that is written).
const TESTS_WINDOW: usize = super::history::TEST_HISTORY_RUNS;

/// Reads the tests of the runs at `indexes` that were read without them.
fn read_tests(
    summaries: &mut [RunSummary],
    indexes: impl IntoIterator<Item = usize>,
    out_dir: &Path,
) {
    for i in indexes {
        let Some(summary) = summaries.get_mut(i).filter(|s| !s.tests_read) else {
            continue;
        };
        match read_summary(
            &run_out_dir(out_dir, &summary.run_id),
            &summary.run_id,
            true,
        ) {
            Some(whole) => {
                *summary = RunSummary {
                    has_page: summary.has_page,
                    ..whole
                }
            }
            None => {
                tracing::warn!(run = %summary.run_id, "a summary's tests could not be read again")
            }
        }
    }
}

pub(super) fn write_summary(run_out: &Path, summary: &RunSummary) -> Result<(), PublishError> {
    debug_assert!(
        summary.tests_read,
        "a summary read without its tests is never written"
    );
    fs::create_dir_all(run_out).map_err(PublishError::io("create directory", run_out))?;
    let json = serde_json::to_vec(summary).expect("a summary always serializes");
    write_atomic(&run_out.join(SUMMARY_FILE), &json)
}

/// Removes everything of a run's directory but its summary.
pub(super) fn prune_run_dir(run_out: &Path) -> Result<(), PublishError> {
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
pub(super) struct SiteWriter<'a> {
    pub(super) out_dir: &'a Path,
    pub(super) old: &'a BTreeMap<String, String>,
    pub(super) new: &'a mut BTreeMap<String, String>,
    pub(super) stats: &'a mut RenderStats,
}

impl SiteWriter<'_> {
    pub(super) fn write(&mut self, path: &str, bytes: &[u8]) -> Result<(), PublishError> {
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
pub(super) fn run_out_dir(out_dir: &Path, id: &RunId) -> PathBuf {
    out_dir.join("runs").join(id.as_str())
}

/// One line for an unreadable report, naming the run directory rather than
/// the controller's full path (which the public site has no business showing).
pub(super) fn describe_unreadable(error: &ModelError) -> String {
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
pub(super) struct Manifest {
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
pub(super) struct ManifestRun {
    key: String,
    #[serde(default)]
    stamp: Option<Stamp>,
    /// [`page_context`] when the page was written.
    #[serde(default)]
    context: String,
}

/// A file's size and modification time, to tell that it has not changed
/// without reading it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stamp {
    len: u64,
    mtime_ns: u128,
}

impl Stamp {
    pub(super) fn of(path: &Path) -> Option<Stamp> {
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
    pub(super) fn read(path: &Path) -> Manifest {
        fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub(super) fn write(&self, path: &Path) -> Result<(), PublishError> {
        let json = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        write_atomic(path, &json)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    fs::write(path, bytes).map_err(PublishError::io("write", path))
}

/// The suffix of [`write_atomic`]'s temporary files; one left by a crash is
/// not site content, and the git publisher leaves it out.
pub(crate) const TMP_SUFFIX: &str = ".btrfsqa-tmp";

/// Writes through a temporary file and a rename, so a web server reading the
/// directory never serves half a page.
/// The temporary name is unique (pid and counter), so writers never share one.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let tmp = unique_temp_path(path, TMP_SUFFIX);
    write_file(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(PublishError::io("rename into", path))
}
