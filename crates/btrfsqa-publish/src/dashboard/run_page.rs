//! A run's page: what changed first, then what did not pass, the run's
//! facts, its machines and recordings, its provenance, and every test with
//! its verdict, message and files, which the page's own filter script
//! (`assets/btrfsqa-filter.js`) narrows by name and verdict. Written with
//! its copies of the report, the exports and the artifacts.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use btrfsqa_model::{
    Artifact, ArtifactKind, Counts, ResultsStore, RunReport, SourceInfo, Verdict, redact_url,
};
use serde::Serialize;

use super::assets::*;
use super::changes::{self, Changes};
use super::format::{human_duration, status_class, status_text};
use super::history;
use super::incremental::*;
use super::summary::{self, RunSummary};
use super::timeline;
use super::{Dashboard, RenderStats};
use crate::{PublishError, export};

impl Dashboard {
    /// Writes one run's directory: its page, the report, the exports, its
    /// summary and the artifacts. A `full` page lists every test; another
    /// only those that did not pass, with only their files.
    #[expect(
        clippy::too_many_arguments,
        reason = "one caller, and every input is a different thing"
    )]
    pub(super) fn render_run(
        &self,
        store: &ResultsStore,
        report: &RunReport,
        raw_report: &[u8],
        run_out: &Path,
        summaries: &[RunSummary],
        full: bool,
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
        let (html, new_failures) = self.render_run_page(report, &mut copier, summaries, full)?;
        let files_url = self
            .settings
            .site_url
            .as_ref()
            .map(|url| format!("{}/runs/{}/files", url.trim_end_matches('/'), report.run_id));
        for (name, text) in [
            (EXPORTS[0], raw_report.to_vec()),
            (EXPORTS[1], export::junit(report).into_bytes()),
            (
                EXPORTS[2],
                export::kcidb(report, files_url.as_deref()).into_bytes(),
            ),
        ] {
            write_file(&run_out.join(name), &gzip(&text))?;
            // A site written before the exports were compressed.
            let plain = run_out.join(name.trim_end_matches(".gz"));
            match fs::remove_file(&plain) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(PublishError::io("remove", &plain)(source)),
            }
        }
        // The index shows the page's count of new failures for this run.
        let mut summary = RunSummary::of(report);
        summary.new_failures = summary.new_failures.or(Some(new_failures));
        write_summary(run_out, &summary)?;
        write_atomic(&run_out.join("index.html"), html.as_bytes())
    }

    pub(super) fn render_run_page(
        &self,
        report: &RunReport,
        copier: &mut ArtifactCopier<'_>,
        summaries: &[RunSummary],
        full: bool,
    ) -> Result<(String, u32), PublishError> {
        let counts = Counts::of(report.outcomes());
        let summary = RunSummary::of(report);
        let class_of: HashMap<summary::Anchor, &str> = summary
            .tests
            .iter()
            .filter_map(|t| t.class.as_deref().map(|c| (t.anchor, c)))
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
                if !full && test.verdict.is_ok() {
                    continue;
                }
                let class = class_of.get(&summary::Anchor(i, j)).copied();
                let anchor = summary::test_anchor(i, j);
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
        let earlier: Vec<&RunSummary> = summaries
            .iter()
            .filter(|s| RunSummary::newest_first(s, &summary).is_gt())
            .collect();
        let changes = changes::of(&summary, report.comparison.as_ref(), &earlier);
        let new_failures = changes.new_failures.len() as u32;
        let baseline = changes
            .baseline
            .as_ref()
            .and_then(|b| summaries.iter().find(|s| s.run_id.as_str() == b));
        let changes = ChangesView {
            baseline_href: baseline
                .filter(|b| b.has_page)
                .map(|b| format!("../{}/index.html", b.run_id)),
            baseline_kernel: baseline.and_then(|b| b.kernel_release.as_deref()),
            empty: changes.is_empty(),
            changes,
        };
        let provenance = &report.provenance;
        let context = RunPage {
            site_title: &self.settings.title,
            root: "../../",
            player: !casts.is_empty(),
            filter: true,
            listed: (!full).then_some(problems.len()),
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
                kernel: kernel_release(report),
                import: report.import.as_ref().map(ImportView::new),
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
            changes,
            problems,
            casts,
            suites,
            timeline: timeline::view(report),
        };
        Ok((self.render_template("run.html", &context)?, new_failures))
    }
}

/// The exports beside each run page, compressed: a run of 1,200 tests has
/// about 700 KB of them as text and 40 KB as gzip.
pub(crate) const EXPORTS: [&str; 3] = ["report.json.gz", "junit.xml.gz", "kcidb.json.gz"];

/// What the page of `summaries[i]` shows that is not in its report:
/// whether it is `full`, the run its changes are against (the runner's
/// baseline, else the run before it) and whether that run has a page to
/// link to.
pub(super) fn page_context(i: usize, summaries: &[RunSummary], full: bool) -> String {
    let run = &summaries[i];
    let linked = match &run.baseline {
        Some(baseline) => summaries.iter().find(|s| &s.run_id == baseline),
        None => summaries.get(i + 1),
    };
    let linked = match linked {
        Some(linked) => format!("{}:{}", linked.run_id, u8::from(linked.has_page)),
        None => run
            .baseline
            .as_ref()
            .map_or_else(String::new, |b| b.to_string()),
    };
    format!("{}|{linked}", if full { "full" } else { "failures" })
}

/// `bytes` as a gzip file, the same bytes for the same input (no time or
/// name in the header), so an unchanged export is an unchanged blob.
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::default(),
    );
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .expect("compressing into memory does not fail")
}

/// The recording of `artifact` among `casts` (added when new), or `None`
/// when it was not copied (then it is only listed as a file).
pub(super) fn cast_view(
    casts: &mut Vec<CastView>,
    artifact: &Artifact,
    view: &FileView,
) -> Option<usize> {
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
pub(super) fn clock(secs: f64) -> String {
    let total = secs.max(0.0) as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

pub(super) fn kernel_release(report: &RunReport) -> Option<&str> {
    report.provenance.kernel.release.as_deref().or_else(|| {
        report
            .provenance
            .machines
            .iter()
            .find_map(|m| m.kernel.release.as_deref())
    })
}

pub(super) fn machine_devices(machine: &btrfsqa_model::MachineInfo) -> Option<String> {
    let mut devices: Vec<&str> = machine.test_dev.iter().map(String::as_str).collect();
    devices.extend(machine.scratch_devs.iter().map(String::as_str));
    (!devices.is_empty()).then(|| devices.join(" "))
}

pub(super) fn format_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) fn verdict_counts(counts: &Counts) -> Vec<VerdictCount> {
    Verdict::ALL
        .iter()
        .map(|&verdict| VerdictCount {
            verdict: verdict.as_str(),
            n: counts.get(verdict),
        })
        .collect()
}

#[derive(Serialize)]
pub(super) struct RunPage<'a> {
    site_title: &'a str,
    root: &'a str,
    player: bool,
    /// The run page's filter script.
    filter: bool,
    /// On the page of an older run, the tests listed: only those that did
    /// not pass.
    listed: Option<usize>,
    run: RunView<'a>,
    timeline: Option<timeline::TimelineView>,
    provenance: ProvenanceView<'a>,
    changes: ChangesView<'a>,
    problems: Vec<Problem<'a>>,
    casts: Vec<CastView>,
    suites: Vec<SuiteView<'a>>,
}

#[derive(Serialize)]
pub(super) struct RunView<'a> {
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
    kernel: Option<&'a str>,
    /// Where an imported run was read from.
    import: Option<ImportView<'a>>,
}

#[derive(Serialize)]
pub(super) struct ImportView<'a> {
    source: &'a str,
    kind: &'a str,
    imported_at: String,
    /// `user@host`, what is known of it.
    by: Option<String>,
}

impl<'a> ImportView<'a> {
    fn new(origin: &'a btrfsqa_model::ImportOrigin) -> Self {
        let by = match (&origin.user, &origin.host) {
            (Some(user), Some(host)) => Some(format!("{user}@{host}")),
            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
            (None, None) => None,
        };
        ImportView {
            source: &origin.source,
            kind: &origin.kind,
            imported_at: origin.imported_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            by,
        }
    }
}

#[derive(Serialize)]
pub(super) struct Label<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
pub(super) struct VerdictCount {
    verdict: &'static str,
    n: u32,
}

/// What changed, with the run it was compared with.
#[derive(Serialize)]
pub(super) struct ChangesView<'a> {
    #[serde(flatten)]
    changes: Changes<'a>,
    baseline_href: Option<String>,
    baseline_kernel: Option<&'a str>,
    /// Nothing new failed, was fixed or is flaky.
    empty: bool,
}

#[derive(Serialize)]
pub(super) struct ProvenanceView<'a> {
    btrfsqa_version: &'a str,
    config_hash: &'a str,
    provider: &'a str,
    controller: Option<&'a str>,
    kernel: KernelView<'a>,
    sources: Vec<SourceView<'a>>,
    machines: Vec<MachineView<'a>>,
}

#[derive(Serialize)]
pub(super) struct KernelView<'a> {
    release: Option<&'a str>,
    version: Option<&'a str>,
    source: Option<SourceView<'a>>,
}

#[derive(Serialize)]
pub(super) struct SourceView<'a> {
    name: &'a str,
    /// Credentials in a source URL are never shown.
    url: String,
    git_ref: Option<&'a str>,
    commit: Option<&'a str>,
}

impl<'a> SourceView<'a> {
    pub(super) fn new(source: &'a SourceInfo) -> Self {
        SourceView {
            name: &source.name,
            url: redact_url(&source.url),
            git_ref: source.git_ref.as_deref(),
            commit: source.commit.as_deref(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct MachineView<'a> {
    name: &'a str,
    provider: &'a str,
    instance_type: Option<&'a str>,
    address: String,
    kernel: Option<&'a str>,
    devices: Option<String>,
}

#[derive(Serialize)]
pub(super) struct Problem<'a> {
    suite: &'a str,
    name: &'a str,
    profile: Option<&'a str>,
    verdict: &'static str,
    class: Option<&'a str>,
    anchor: String,
}

/// One terminal recording on a run page.
#[derive(Serialize)]
pub(super) struct CastView {
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
pub(super) struct ReplayView {
    player: String,
    start: String,
    at: String,
}

#[derive(Serialize)]
pub(super) struct SuiteView<'a> {
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
pub(super) struct GroupView<'a> {
    profile: Option<&'a str>,
    tests: Vec<TestView<'a>>,
}

#[derive(Serialize)]
pub(super) struct TestView<'a> {
    name: &'a str,
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
