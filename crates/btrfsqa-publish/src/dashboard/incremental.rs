//! Rendering only what changed: the manifest of what each page was
//! rendered from, the report stamps (size and time) that spare reading an
//! unchanged report, the summaries kept beside run pages, the writer that
//! leaves unchanged pages alone, and atomic writes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use btrfsqa_model::fs::AtomicWrite;
use btrfsqa_model::{ModelError, ResultsStore, RunId, RunReport};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::renderer::RenderStats;
use super::summary::{self, RunSummary};
use crate::PublishError;

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
    pub(super) fingerprint: String,
    /// Run id -> its page key and the report's size and time when read.
    #[serde(default)]
    pub(super) runs: BTreeMap<String, ManifestRun>,
    /// Site-relative path of every other page and file -> hash of its content.
    #[serde(default)]
    pub(super) pages: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ManifestRun {
    pub(super) key: String,
    #[serde(default)]
    pub(super) stamp: Option<Stamp>,
    /// [`page_context`] when the page was written.
    #[serde(default)]
    pub(super) context: String,
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
/// directory never serves half a page. Not synced: a whole site is rewritten
/// at once, and a page lost to a power cut is rebuilt by the next publish.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    AtomicWrite::new()
        .temp_suffix(TMP_SUFFIX)
        .sync(false)
        .write(path, bytes)
        .map_err(PublishError::io("write", path))
}
