//! A render of the site: which runs changed since the last render into the
//! same directory, their pages, then the index, histories and bisections;
//! at the top of the dashboard, it uses every other part.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use btrfsqa_model::compare::CompareOptions;
use btrfsqa_model::{ResultsStore, RunId};
use sha2::{Digest, Sha256};

use super::assets::*;
use super::incremental::*;
use super::renderer::{Dashboard, RenderStats};
use super::run_page::page_context;
use super::summary::RunSummary;
use crate::PublishError;
use crate::lock::DirLock;

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
