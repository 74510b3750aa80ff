//! The pages built from the runs' summaries: the index and its archive
//! pages, the matrix and a page per test; and the words and numbers every
//! page shows the same way (statuses, durations).

use super::Dashboard;
use super::history::{self, INDEX_RUNS, IndexRow};
use super::incremental::*;
use super::summary::RunSummary;
use super::templates::*;
use crate::PublishError;

impl Dashboard {
    /// The index, the archive pages, the matrix and a page per test.
    pub(super) fn write_history_pages(
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
            filter: false,
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
                filter: false,
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
            filter: false,
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
                filter: false,
                page: history::test_page(key, &entries, summaries),
            };
            site.write(&path, self.render_template("test.html", &page)?.as_bytes())?;
        }
        Ok(())
    }
}

/// Index rows for `runs`, the `offset`-th onwards of the site's runs.
pub(super) fn index_rows<'a>(
    runs: &'a [RunSummary],
    offset: usize,
    root: &str,
    computed: &[u32],
) -> Vec<IndexRow<'a>> {
    runs.iter()
        .enumerate()
        // A run whose tests were not read has no reckoning of its own here.
        .map(|(i, run)| IndexRow::new(run, root, run.tests_read.then(|| computed[offset + i])))
        .collect()
}
