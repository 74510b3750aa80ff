//! What the site serves besides pages: its own static files (stylesheet,
//! scripts, the asciinema player, the report schema) and each run's
//! artifacts, every path checked before it is copied (relative, inside the
//! run directory, a name git allows), active content renamed to `.txt`,
//! large files trimmed to a size limit.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use btrfsqa_model::{Artifact, ArtifactKind, ResultsStore, RunId, RunReport};
use serde::Serialize;

pub(super) use super::artifact_paths::*;
use super::incremental::*;
use super::templates::*;
use super::{DashboardSettings, RenderStats};
use crate::PublishError;

/// The asciinema player (npm package `asciinema-player` 3.18.0, Apache-2.0),
/// vendored under `assets/asciinema-player/` and written into every site.
pub(super) const PLAYER_FILES: &[(&str, &[u8])] = &[
    (
        "assets/asciinema-player/asciinema-player.min.js",
        include_bytes!("../../assets/asciinema-player/asciinema-player.min.js"),
    ),
    (
        "assets/asciinema-player/asciinema-player.css",
        include_bytes!("../../assets/asciinema-player/asciinema-player.css"),
    ),
    (
        "assets/asciinema-player/LICENSE",
        include_bytes!("../../assets/asciinema-player/LICENSE"),
    ),
];

/// The site's own static files: the ones every page needs.
pub(super) fn static_files() -> Vec<(&'static str, &'static [u8])> {
    let mut files: Vec<(&str, &[u8])> = vec![
        ("style.css", STYLE_CSS.as_bytes()),
        (".nojekyll", b""),
        ("assets/btrfsqa-player.js", PLAYER_INIT_JS.as_bytes()),
        ("assets/btrfsqa-filter.js", FILTER_JS.as_bytes()),
        // What every run's report.json follows, for tools that check it.
        (
            "report.schema.json",
            btrfsqa_model::REPORT_SCHEMA.as_bytes(),
        ),
    ];
    files.extend_from_slice(PLAYER_FILES);
    files
}

/// Copies the artifacts of one run into its `files/` directory, checking
/// every path first, and describes each for the page.
pub(super) struct ArtifactCopier<'a> {
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
    pub(super) fn new(
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

    pub(super) fn copy(&mut self, artifact: &Artifact) -> Result<FileView, PublishError> {
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

pub(super) struct CheckedArtifact {
    source: PathBuf,
    size: u64,
    destination: PathBuf,
    href: String,
}

pub(super) fn append_note(note: &mut Option<String>, more: &str) {
    match note {
        Some(note) => {
            note.push_str("; ");
            note.push_str(more);
        }
        None => *note = Some(more.to_owned()),
    }
}

pub(super) fn kind_label(kind: ArtifactKind) -> &'static str {
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

/// `1234567 bytes (1.2 MiB)`.
pub(super) fn byte_count(bytes: u64) -> String {
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

#[derive(Serialize, Clone)]
pub(super) struct FileView {
    pub(super) label: &'static str,
    pub(super) name: String,
    /// Relative to the run page; absent when the file was not copied.
    pub(super) href: Option<String>,
    pub(super) note: Option<String>,
}
