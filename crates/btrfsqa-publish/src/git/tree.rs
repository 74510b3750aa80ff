//! The site as a git tree: the runs already published in the tip's tree
//! (their summaries), and the new tree built on top of it with gix's tree
//! editor from the staging directory (runs published by others stay as
//! they are, unchanged files reuse their blobs).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use btrfsqa_model::{RunId, RunReport};
use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::PublishError;
use crate::dashboard::{REPORT_EXPORT, RunSummary, SUMMARY_FILE, TMP_SUFFIX};

/// The site files at the root of the tree, rewritten on every publish.
const ROOT_FILES: &[&str] = &[
    "index.html",
    "matrix.html",
    "style.css",
    ".nojekyll",
    "report.schema.json",
];

/// The directories built from the whole history, replaced on every publish.
const HISTORY_DIRS: &[&str] = &["archive", "tests", "assets", "bisect"];

pub(super) fn commit_tree(
    repo: &gix::Repository,
    commit: ObjectId,
    shown: &str,
) -> Result<ObjectId, PublishError> {
    let fail = PublishError::git("read the published commit", shown);
    repo.find_commit(commit)
        .and_then(|commit| commit.tree_id())
        .map(|id| id.detach())
        .map_err(fail)
}

/// Summaries of the runs already on the site (`runs/<id>/summary.json`
/// in the tip's tree, or the report of a site written before summaries
/// existed), so the index and the histories list runs that other
/// controllers published. One that does not parse is left out with a warning.
pub(super) fn published_summaries(
    repo: &gix::Repository,
    tree: ObjectId,
    shown: &str,
) -> Result<Vec<RunSummary>, PublishError> {
    let fail = PublishError::git::<gix::Error>;
    let tree = repo
        .find_tree(tree)
        .map_err(fail("read the published site", shown))?;
    let Some(runs) = tree
        .lookup_entry_by_path("runs")
        .map_err(fail("read the published site", shown))?
    else {
        return Ok(Vec::new());
    };
    if !runs.mode().is_tree() {
        return Ok(Vec::new());
    }
    let runs = repo
        .find_tree(runs.object_id())
        .map_err(fail("read the published site", shown))?;
    let mut summaries = Vec::new();
    for entry in runs.iter() {
        let entry = entry.map_err(fail("read the published site", shown))?;
        if !entry.mode().is_tree() {
            continue;
        }
        let run_tree = repo
            .find_tree(entry.object_id())
            .map_err(fail("read the published site", shown))?;
        let blob_of = |name: &str| -> Result<Option<Vec<u8>>, PublishError> {
            let Some(file) = run_tree
                .lookup_entry_by_path(name)
                .map_err(fail("read the published site", shown))?
            else {
                return Ok(None);
            };
            let blob = file
                .object()
                .map_err(fail("read the published site", shown))?;
            Ok(Some(blob.data.clone()))
        };
        let summary = match blob_of(SUMMARY_FILE)? {
            Some(bytes) => serde_json::from_slice::<RunSummary>(&bytes)
                .ok()
                .filter(|s| s.format == crate::dashboard::SUMMARY_FORMAT),
            None => None,
        };
        let summary = match summary {
            Some(summary) => Some(summary),
            None => match published_report(&blob_of)? {
                Some(bytes) => match serde_json::from_slice::<RunReport>(&bytes) {
                    Ok(report) => Some(RunSummary::of(&report.without_credentials())),
                    Err(error) => {
                        tracing::warn!(run = %entry.filename(), %error, "a published report does not parse; it is left out of the index");
                        None
                    }
                },
                None => None,
            },
        };
        summaries.extend(summary);
    }
    Ok(summaries)
}

/// The new site tree: the tip's tree with the root files and the runs of
/// the local store replaced by the staging directory's. A run whose page was
/// not re-rendered and whose published report is the same keeps its
/// published subtree untouched.
pub(super) fn build_tree(
    repo: &gix::Repository,
    tip_tree: Option<ObjectId>,
    staging: &Path,
    stats: &crate::RenderStats,
    shown: &str,
) -> Result<ObjectId, PublishError> {
    let fail = PublishError::git::<gix::Error>;
    let base_id = tip_tree.unwrap_or_else(|| ObjectId::empty_tree(repo.object_hash()));
    let base = repo
        .find_tree(base_id)
        .map_err(fail("read the published site", shown))?;
    let mut editor = base.edit().map_err(fail("edit the site tree", shown))?;
    for name in ROOT_FILES {
        upsert_file(repo, &mut editor, name, &staging.join(name), shown)?;
    }
    for dir in HISTORY_DIRS {
        editor
            .remove(*dir)
            .map_err(fail("edit the site tree", shown))?;
        let path = staging.join(dir);
        if path.is_dir() {
            add_dir(repo, &mut editor, dir, &path, shown)?;
        }
    }
    // Runs beyond the retention setting keep only their summary.
    for run in &stats.pruned {
        let rel = format!("runs/{run}");
        editor
            .remove(rel.as_str())
            .map_err(fail("edit the site tree", shown))?;
        let summary = staging.join("runs").join(run.as_str()).join(SUMMARY_FILE);
        upsert_file(
            repo,
            &mut editor,
            &format!("{rel}/{SUMMARY_FILE}"),
            &summary,
            shown,
        )?;
    }
    let skipped: BTreeSet<&RunId> = stats.skipped.iter().collect();
    for run in stats.written.iter().chain(&stats.skipped) {
        let rel = format!("runs/{run}");
        let run_dir = staging.join("runs").join(run.as_str());
        if skipped.contains(run) && same_published_report(repo, &base, &rel, &run_dir, shown)? {
            continue;
        }
        editor
            .remove(rel.as_str())
            .map_err(fail("edit the site tree", shown))?;
        add_dir(repo, &mut editor, &rel, &run_dir, shown)?;
    }
    editor
        .write()
        .map(|id| id.detach())
        .map_err(fail("write the site tree", shown))
}

/// A file of a published run's directory, when it has one.
type BlobOf<'a> = dyn Fn(&str) -> Result<Option<Vec<u8>>, PublishError> + 'a;

/// The report beside a published run page: compressed, or as a site
/// written before the exports were compressed has it.
fn published_report(blob_of: &BlobOf<'_>) -> Result<Option<Vec<u8>>, PublishError> {
    if let Some(gz) = blob_of(REPORT_EXPORT)? {
        let mut bytes = Vec::new();
        return Ok(std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(gz.as_slice()),
            &mut bytes,
        )
        .ok()
        .map(|_| bytes));
    }
    blob_of("report.json")
}

fn same_published_report(
    repo: &gix::Repository,
    base: &gix::Tree<'_>,
    rel: &str,
    run_dir: &Path,
    shown: &str,
) -> Result<bool, PublishError> {
    let published = base
        .lookup_entry_by_path(format!("{rel}/{REPORT_EXPORT}"))
        .map_err(PublishError::git("read the published site", shown))?;
    let Some(published) = published else {
        return Ok(false);
    };
    let path = run_dir.join(REPORT_EXPORT);
    let bytes = fs::read(&path).map_err(PublishError::io("read", path))?;
    let local = gix::objs::compute_hash(repo.object_hash(), gix::objs::Kind::Blob, &bytes)
        .map_err(PublishError::git("hash a file", shown))?;
    Ok(published.object_id() == local)
}

/// Adds every file under `dir` at `rel` in the tree.
fn add_dir(
    repo: &gix::Repository,
    editor: &mut gix::object::tree::Editor<'_>,
    rel: &str,
    dir: &Path,
    shown: &str,
) -> Result<(), PublishError> {
    let entries = fs::read_dir(dir).map_err(PublishError::io("read directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(PublishError::io("read directory", dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(path = %path.display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            continue;
        }
        let file_type = entry
            .file_type()
            .map_err(PublishError::io("inspect", &path))?;
        let child = format!("{rel}/{name}");
        if file_type.is_dir() {
            add_dir(repo, editor, &child, &path, shown)?;
        } else if file_type.is_file() {
            upsert_file(repo, editor, &child, &path, shown)?;
        }
        // The dashboard never writes symlinks; anything else is not site content.
    }
    Ok(())
}

fn upsert_file(
    repo: &gix::Repository,
    editor: &mut gix::object::tree::Editor<'_>,
    rel: &str,
    path: &Path,
    shown: &str,
) -> Result<(), PublishError> {
    let bytes = fs::read(path).map_err(PublishError::io("read", path))?;
    // write_blob only hashes a blob the mirror already has.
    let blob = repo
        .write_blob(&bytes)
        .map_err(PublishError::git("write a blob", shown))?;
    editor
        .upsert(rel, EntryKind::Blob, blob.detach())
        .map_err(PublishError::git("edit the site tree", shown))?;
    Ok(())
}
