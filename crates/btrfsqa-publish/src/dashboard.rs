//! The static dashboard: an index of every run and one page per run, rendered
//! from the results store with minijinja.
//!
//! The site is plain HTML and one stylesheet. Every link is relative, so it
//! works from `file://`, from a sub-path of GitHub Pages and from any static
//! host; no page needs a script, and each page forbids scripts outright with
//! a Content-Security-Policy. Every string that comes from a run (test names,
//! messages, host names) goes through minijinja's HTML auto-escaping, which is
//! on for every template and never bypassed (no `|safe` anywhere).
//!
//! Layout of the output directory:
//!
//! ```text
//! index.html                       every run, newest first
//! style.css, .nojekyll
//! runs/<run-id>/index.html         the run page
//! runs/<run-id>/report.json        a copy of the report
//! runs/<run-id>/junit.xml          the JUnit export
//! runs/<run-id>/files/<path>       artifacts, trimmed to a size limit
//! .btrfsqa-site.json               hashes of the rendered reports (not for serving)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use btrfsqa_model::{
    Artifact, ArtifactKind, Counts, ModelError, ResultsStore, RunId, RunReport, RunStatus,
    SourceInfo, Verdict,
};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::git::redact_url;
use crate::{PublishError, Published, Publisher, export};

/// The file in the output directory that remembers which report each run
/// page was rendered from. It starts with a dot so static hosts that hide
/// dotfiles do not serve it; the git publisher leaves it out of the tree.
pub(crate) const MANIFEST_FILE: &str = ".btrfsqa-site.json";

/// Bumped when the code that builds a run page changes in a way the
/// templates do not show, so existing sites re-render their run pages.
const PAGE_FORMAT: &str = "page-format-1";

const BASE_TEMPLATE: &str = include_str!("../templates/base.html");
const INDEX_TEMPLATE: &str = include_str!("../templates/index.html");
const RUN_TEMPLATE: &str = include_str!("../templates/run.html");
const STYLE_CSS: &str = include_str!("../static/style.css");

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
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            title: "btrfsqa results".to_owned(),
            max_artifact_bytes: 1024 * 1024,
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
    /// Reports in the store that could not be read, one line each.
    pub unreadable: Vec<String>,
    /// Artifacts copied into the site (trimmed ones included).
    pub artifacts_copied: usize,
    /// Artifacts that were trimmed to the size limit.
    pub artifacts_trimmed: usize,
    /// Artifacts not copied, one line each (`run: path: reason`): paths that
    /// leave the run directory, missing files, directories.
    pub artifacts_refused: Vec<String>,
}

impl RenderStats {
    /// Pages written, the index included (it is always written).
    pub fn pages_written(&self) -> usize {
        self.written.len() + 1
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
        ] {
            env.add_template(name, source)
                .unwrap_or_else(|err| panic!("embedded template `{name}` does not parse: {err}"));
        }
        // Pages depend on the templates, the stylesheet, the settings and the
        // code that builds their context: a change to any of them makes every
        // run page stale.
        let mut hasher = Sha256::new();
        for part in [
            PAGE_FORMAT,
            env!("CARGO_PKG_VERSION"),
            BASE_TEMPLATE,
            RUN_TEMPLATE,
            STYLE_CSS,
            &settings.title,
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.update(settings.max_artifact_bytes.to_le_bytes());
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
    /// The index is always rewritten; a run page (with its copies of the
    /// report and artifacts) only when its report changed since the last
    /// render into the same directory. A report that cannot be read is
    /// listed in [`RenderStats::unreadable`] and on the index, and does not
    /// stop the others.
    pub fn render(
        &self,
        store: &ResultsStore,
        out_dir: &Path,
    ) -> Result<RenderStats, PublishError> {
        self.render_site(store, out_dir, &[])
    }

    /// [`render`](Self::render), with `published`: reports of runs already on
    /// the published site that may not be in `store` (another controller
    /// published them). Those are listed on the index; their pages are not
    /// written. A run in both uses the store's report.
    pub(crate) fn render_site(
        &self,
        store: &ResultsStore,
        out_dir: &Path,
        published: &[RunReport],
    ) -> Result<RenderStats, PublishError> {
        fs::create_dir_all(out_dir).map_err(PublishError::io("create directory", out_dir))?;
        let (reports, errors) = store.load_all()?;
        let old = Manifest::read(&out_dir.join(MANIFEST_FILE));
        let mut manifest = Manifest::default();
        let mut stats = RenderStats {
            unreadable: errors.iter().map(describe_unreadable).collect(),
            ..RenderStats::default()
        };
        for error in &errors {
            tracing::warn!(%error, "skipping an unreadable report");
        }

        let mut rendered = Vec::with_capacity(reports.len());
        for loaded in reports {
            let report_path = store.report_path(&loaded.run_id);
            let raw = fs::read(&report_path).map_err(PublishError::io("read", &report_path))?;
            // Render from the very bytes that are hashed and copied: the
            // runner may have replaced the report since `load_all` read it.
            let report = serde_json::from_slice::<RunReport>(&raw)
                .ok()
                .filter(|fresh| fresh.run_id == loaded.run_id)
                .unwrap_or(loaded);
            let key = self.page_key(&raw);
            let run_out = run_out_dir(out_dir, &report.run_id);
            let id = report.run_id.as_str().to_owned();
            if old.runs.get(&id) == Some(&key) && run_out.join("index.html").is_file() {
                stats.skipped.push(report.run_id.clone());
            } else {
                self.render_run(store, &report, &raw, &run_out, &mut stats)?;
                stats.written.push(report.run_id.clone());
            }
            manifest.runs.insert(id, key);
            rendered.push(report);
        }
        let reports = rendered;

        let in_store: BTreeSet<&RunId> = reports.iter().map(|r| &r.run_id).collect();
        let mut listed: Vec<&RunReport> = reports.iter().collect();
        for report in published {
            if !in_store.contains(&report.run_id) && !stats.kept.contains(&report.run_id) {
                stats.kept.push(report.run_id.clone());
                listed.push(report);
            }
        }
        listed.sort_by(|a, b| (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id)));
        let index = self.render_index(&listed, &stats.unreadable)?;
        write_atomic(&out_dir.join("index.html"), index.as_bytes())?;
        write_file(&out_dir.join("style.css"), STYLE_CSS.as_bytes())?;
        write_file(&out_dir.join(".nojekyll"), b"")?;
        manifest.write(&out_dir.join(MANIFEST_FILE))?;
        Ok(stats)
    }

    /// The manifest key of a run page: the renderer and the exact report.
    fn page_key(&self, raw_report: &[u8]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.fingerprint);
        hasher.update(raw_report);
        hex(&hasher.finalize())
    }

    /// Renders the index page for `runs` (already in display order).
    pub(crate) fn render_index(
        &self,
        runs: &[&RunReport],
        unreadable: &[String],
    ) -> Result<String, PublishError> {
        let rows: Vec<IndexRow> = runs.iter().map(|report| IndexRow::new(report)).collect();
        let context = IndexPage {
            site_title: &self.settings.title,
            root: "",
            verdicts: Verdict::ALL.iter().map(|v| v.as_str()).collect(),
            runs: rows,
            unreadable,
        };
        self.render_template("index.html", &context)
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

    /// Writes one run's directory: its page, the report, the JUnit export
    /// and the artifacts.
    fn render_run(
        &self,
        store: &ResultsStore,
        report: &RunReport,
        raw_report: &[u8],
        run_out: &Path,
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
        let mut copier = ArtifactCopier::new(
            store,
            report,
            files_out,
            self.settings.max_artifact_bytes,
            stats,
        );
        let html = self.render_run_page(report, &mut copier)?;
        write_file(&run_out.join("report.json"), raw_report)?;
        write_file(&run_out.join("junit.xml"), export::junit(report).as_bytes())?;
        write_atomic(&run_out.join("index.html"), html.as_bytes())
    }

    fn render_run_page(
        &self,
        report: &RunReport,
        copier: &mut ArtifactCopier<'_>,
    ) -> Result<String, PublishError> {
        let counts = Counts::of(report.outcomes());
        let mut problems = Vec::new();
        let mut suites = Vec::new();
        for (i, suite) in report.suites.iter().enumerate() {
            let files = copier.copy_all(&suite.artifacts)?;
            let mut tests = Vec::new();
            for (j, test) in suite.tests.iter().enumerate() {
                let anchor = format!("t-{i}-{j}");
                if !test.verdict.is_ok() {
                    problems.push(Problem {
                        suite: &suite.id,
                        name: &test.name,
                        verdict: test.verdict.as_str(),
                        anchor: anchor.clone(),
                    });
                }
                tests.push(TestView {
                    name: &test.name,
                    profile: test.profile.as_deref(),
                    verdict: test.verdict.as_str(),
                    bad: !test.verdict.is_ok(),
                    duration: test.duration_secs.and_then(human_duration),
                    message: test.message.as_deref(),
                    machine: test.machine.as_deref(),
                    anchor,
                    files: copier.copy_all(&test.artifacts)?,
                });
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
                tests,
            });
        }
        let provenance = &report.provenance;
        let context = RunPage {
            site_title: &self.settings.title,
            root: "../../",
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
            problems,
            suites,
        };
        self.render_template("run.html", &context)
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

/// Report hashes of the pages in an output directory.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Run id -> page key.
    runs: BTreeMap<String, String>,
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
        max_bytes: u64,
        stats: &'a mut RenderStats,
    ) -> Self {
        ArtifactCopier {
            run_id: &report.run_id,
            source_root: fs::canonicalize(store.run_dir(&report.run_id)).ok(),
            files_out,
            max_bytes,
            done: HashMap::new(),
            stats,
        }
    }

    fn copy_all(&mut self, artifacts: &[Artifact]) -> Result<Vec<FileView>, PublishError> {
        artifacts
            .iter()
            .map(|artifact| self.copy(artifact))
            .collect()
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
        let left_out = self.copy_file(&checked, &artifact.path)?;
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
        let mut site_components: Vec<String> = components.iter().map(|c| (*c).to_owned()).collect();
        let last = site_components
            .last_mut()
            .expect("a checked path has a component");
        if is_active_content(last) {
            last.push_str(".txt");
        }
        let mut destination = self.files_out.clone();
        destination.extend(&site_components);
        let href = std::iter::once("files".to_owned())
            .chain(site_components.iter().map(|c| percent_encode(c)))
            .collect::<Vec<_>>()
            .join("/");
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
        if checked.size <= self.max_bytes {
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
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    write_file(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(PublishError::io("rename into", path))
}

// The template contexts. Every field is always present (absent values are
// `none`), because the environment treats undefined values as errors.

#[derive(Serialize)]
struct IndexPage<'a> {
    site_title: &'a str,
    root: &'a str,
    verdicts: Vec<&'static str>,
    runs: Vec<IndexRow<'a>>,
    unreadable: &'a [String],
}

#[derive(Serialize)]
struct IndexRow<'a> {
    date: String,
    id: &'a str,
    href: String,
    status: &'static str,
    status_class: &'static str,
    kernel: Option<&'a str>,
    machine: Option<String>,
    counts: Vec<u32>,
    duration: Option<String>,
}

impl<'a> IndexRow<'a> {
    fn new(report: &'a RunReport) -> Self {
        let counts = Counts::of(report.outcomes());
        let provenance = &report.provenance;
        let machines: Vec<String> = provenance
            .machines
            .iter()
            .map(|m| match &m.instance_type {
                Some(kind) => format!("{} ({kind})", m.name),
                None => m.name.clone(),
            })
            .collect();
        let machine = match (provenance.provider.is_empty(), machines.is_empty()) {
            (true, true) => None,
            (false, true) => Some(provenance.provider.clone()),
            (true, false) => Some(machines.join(", ")),
            (false, false) => Some(format!("{}: {}", provenance.provider, machines.join(", "))),
        };
        IndexRow {
            date: report.started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            id: report.run_id.as_str(),
            href: format!("runs/{}/index.html", report.run_id),
            status: status_text(report.status),
            status_class: status_class(report.status, &counts),
            kernel: kernel_release(report),
            machine,
            counts: Verdict::ALL.iter().map(|&v| counts.get(v)).collect(),
            duration: report.duration_secs().and_then(human_duration),
        }
    }
}

#[derive(Serialize)]
struct RunPage<'a> {
    site_title: &'a str,
    root: &'a str,
    run: RunView<'a>,
    provenance: ProvenanceView<'a>,
    problems: Vec<Problem<'a>>,
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
    verdict: &'static str,
    anchor: String,
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
    tests: Vec<TestView<'a>>,
}

#[derive(Serialize)]
struct TestView<'a> {
    name: &'a str,
    profile: Option<&'a str>,
    verdict: &'static str,
    bad: bool,
    duration: Option<String>,
    message: Option<&'a str>,
    machine: Option<&'a str>,
    anchor: String,
    files: Vec<FileView>,
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
