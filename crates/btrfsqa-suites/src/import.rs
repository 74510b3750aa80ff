//! Importing results made elsewhere (`btrfsqa import`): an fstests results
//! directory or a btrfs-progs tree after `make test-*` becomes a suite report
//! with its files copied into a run directory of the results store, so it is
//! published like any run.
//!
//! An import never reads outside its directory: a symbolic link that is
//! absolute, that goes through `..` or that leads out is not followed (a
//! link to a file beside it is), and each one refused is a warning in
//! [`Imported::warnings`]. What it copies and the messages it keeps go
//! through a [`Redactor`] first, as recordings of runs do.
//!
//! ```no_run
//! use std::path::Path;
//! use btrfsqa_remote::Redactor;
//! use btrfsqa_suites::import;
//!
//! # fn demo() -> Result<(), btrfsqa_suites::SuiteError> {
//! let dir = Path::new("/var/lib/xfstests/results");
//! let redactor = Redactor::from_env(&["GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"]);
//! let imported = match import::detect(dir)? {
//!     import::ImportKind::Xfstests => import::xfstests(dir, Path::new("store/run-1"), &redactor)?,
//!     import::ImportKind::BtrfsProgs => import::btrfs_progs(dir, None, Path::new("store/run-1"), &redactor)?,
//! };
//! println!("{} tests", imported.report.tests.len());
//! for warning in &imported.warnings {
//!     eprintln!("warning: {warning}");
//! }
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use btrfsqa_model::{Artifact, ArtifactKind, SuiteReport, TestOutcome, safe_file_name};
use btrfsqa_remote::Redactor;
use chrono::{DateTime, Utc};

use crate::SuiteError;
use crate::btrfs_progs::{self, parse as progs_parse};
use crate::xfstests::{self, parse as fst_parse};

/// Files over this size are cut on import, their head and tail kept.
pub const MAX_ARTIFACT_BYTES: u64 = 8 << 20;

/// What a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// An fstests results directory (`RESULT_BASE`).
    Xfstests,
    /// A btrfs-progs tree (or its `tests/` directory) after a test run.
    BtrfsProgs,
}

/// What an import made: the suite's report, and what it did not read.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The suite's report; its artifacts are in the run directory.
    pub report: SuiteReport,
    /// Files left out, and why (a symbolic link out of the directory).
    pub warnings: Vec<String>,
    /// What the results say about the run that made them.
    pub run: ImportedRun,
}

/// What results made elsewhere say about their run, so the imported run
/// shows the machine, kernel and times of the real one rather than those of
/// the import. Each is `None` when the results do not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportedRun {
    /// The kernel release (`uname -r`) the tests ran on.
    pub kernel: Option<String>,
    /// The host name of the machine they ran on.
    pub host: Option<String>,
    /// When the first test run started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the last one ended.
    pub finished_at: Option<DateTime<Utc>>,
}

impl ImportedRun {
    /// Takes in what one fstests section's `result.xml` says: the earliest
    /// start and the latest end of all sections are the run's.
    fn add_xunit(&mut self, xunit: &fst_parse::XunitReport) {
        if self.kernel.is_none() {
            self.kernel = xunit
                .properties
                .get("KERNEL")
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty());
        }
        if self.host.is_none() {
            self.host = xunit.hostname.clone();
        }
        let time = xunit
            .time_secs
            .map(|secs| chrono::Duration::milliseconds((secs * 1000.0) as i64));
        // `report_timestamp` is the section's end; fstests before 2022 wrote
        // only `timestamp`, and then at the end.
        let end = xunit
            .report_timestamp
            .or(xunit.timestamp)
            .map(|t| t.with_timezone(&Utc));
        let start = xunit
            .start_timestamp
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| Some(end? - time?));
        let end = end.or_else(|| Some(start? + time?));
        if let Some(start) = start {
            self.started_at = Some(self.started_at.map_or(start, |s| s.min(start)));
        }
        if let Some(end) = end {
            self.finished_at = Some(self.finished_at.map_or(end, |e| e.max(end)));
        }
    }
}

/// Symbolic links followed one after another before giving up.
const MAX_LINKS: usize = 16;

/// The imported directory: every file is read through it, so nothing
/// outside it is read, and what is read is redacted.
struct Source<'a> {
    /// The directory as given (for messages).
    shown: PathBuf,
    /// The directory with its own links resolved.
    root: PathBuf,
    redactor: &'a Redactor,
    warnings: Vec<String>,
}

impl<'a> Source<'a> {
    fn new(dir: &Path, redactor: &'a Redactor) -> Result<Self, SuiteError> {
        let root = fs::canonicalize(dir).map_err(|e| SuiteError::Config {
            suite: "import".to_owned(),
            message: format!("cannot read `{}`: {e}", dir.display()),
        })?;
        Ok(Source {
            shown: dir.to_owned(),
            root,
            redactor,
            warnings: Vec::new(),
        })
    }

    /// The regular file at `rel` (relative to the directory) when it is one
    /// and reaching it leaves the directory nowhere. A link that is
    /// absolute, goes through `..` or leads out is not followed: a warning.
    fn file(&mut self, rel: &Path) -> Option<PathBuf> {
        match self.resolve(rel) {
            Ok(Some(path)) if path.is_file() => Some(path),
            Ok(_) => None,
            Err(why) => {
                let warning = format!(
                    "`{}`: {why}, not followed: an import never reads outside `{}`",
                    rel.display(),
                    self.shown.display()
                );
                if !self.warnings.contains(&warning) {
                    self.warnings.push(warning);
                }
                None
            }
        }
    }

    /// Walks `rel` one component at a time from the root, following only
    /// relative links that do not go up. `Ok(None)` when something on the
    /// way does not exist.
    fn resolve(&self, rel: &Path) -> Result<Option<PathBuf>, String> {
        // What is left to walk, the next component last.
        let mut stack: Vec<OsString> = Vec::new();
        if !push_components(&mut stack, rel) {
            return Err("the path leads out".to_owned());
        }
        let mut path = self.root.clone();
        let mut links = 0;
        while let Some(name) = stack.pop() {
            let candidate = path.join(&name);
            let Ok(meta) = fs::symlink_metadata(&candidate) else {
                return Ok(None);
            };
            if !meta.file_type().is_symlink() {
                path = candidate;
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err("too many symbolic links".to_owned());
            }
            let target = fs::read_link(&candidate).map_err(|e| e.to_string())?;
            if target.is_absolute() {
                return Err(format!(
                    "a symbolic link to the absolute path `{}`",
                    target.display()
                ));
            }
            // The target is walked from the link's own directory.
            if !push_components(&mut stack, &target) {
                return Err(format!(
                    "a symbolic link through `..` (to `{}`)",
                    target.display()
                ));
            }
        }
        // However it was reached, it is below the directory.
        match fs::canonicalize(&path) {
            Ok(real) if real.starts_with(&self.root) => Ok(Some(real)),
            Ok(real) => Err(format!("it leads to `{}`", real.display())),
            Err(_) => Ok(None),
        }
    }

    /// Warns about section directories that are symbolic links (sections
    /// are read from real directories only).
    fn warn_about_linked_sections(&mut self, dir: &Path) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let linked_dir =
                entry.file_type().is_ok_and(|t| t.is_symlink()) && entry.path().is_dir();
            if linked_dir && FSTESTS_FILES.iter().any(|f| entry.path().join(f).exists()) {
                self.warnings.push(format!(
                    "`{}`: a symbolic link to a directory, not followed: an import never reads outside `{}`",
                    entry.file_name().to_string_lossy(),
                    self.shown.display()
                ));
            }
        }
    }

    /// The content of the file at `rel`, when it may be read.
    fn read(&mut self, rel: &Path) -> Option<Vec<u8>> {
        let path = self.file(rel)?;
        fs::read(path).ok()
    }

    /// Copies the file at `rel` (when it may be read) to `dst`, redacted
    /// and cut to [`MAX_ARTIFACT_BYTES`]: `None` when it was not copied,
    /// else the bytes left out.
    fn copy(&mut self, rel: &Path, dst: &Path) -> Result<Option<Option<u64>>, SuiteError> {
        let Some(src) = self.file(rel) else {
            return Ok(None);
        };
        copy_capped(&src, dst, self.redactor).map(Some)
    }
}

/// Pushes the components of the relative `path` on `stack`, the first
/// last; false when it has any but plain names and `.`.
fn push_components(stack: &mut Vec<OsString>, path: &Path) -> bool {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name.to_owned()),
            Component::CurDir => {}
            _ => return false,
        }
    }
    stack.extend(names.into_iter().rev());
    true
}

const FSTESTS_FILES: &[&str] = &["result.xml", "check.log"];

/// The fstests result directories under `dir`: `(section, directory)`, the
/// section `None` for a results directory without sections.
fn fstests_sections(dir: &Path) -> Vec<(Option<String>, PathBuf)> {
    let holds = |d: &Path| FSTESTS_FILES.iter().any(|f| d.join(f).is_file());
    let mut sections: Vec<(Option<String>, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| holds(&e.path()))
        .filter_map(|e| Some((Some(e.file_name().into_string().ok()?), e.path())))
        .collect();
    sections.sort();
    if sections.is_empty() && holds(dir) {
        sections.push((None, dir.to_owned()));
    }
    sections
}

/// The btrfs-progs results files under `dir` or `dir/tests`: `(suite, file)`.
fn progs_results(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for d in [dir.to_owned(), dir.join("tests")] {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if let Some(suite) = name.strip_suffix("-tests-results.txt")
                && entry.path().is_file()
            {
                found.push((suite.to_owned(), entry.path()));
            }
        }
        if !found.is_empty() {
            break;
        }
    }
    found.sort();
    found
}

fn neither(dir: &Path) -> String {
    format!(
        "`{}` holds neither fstests results (result.xml or check.log, at its top or in a section directory) \
         nor btrfs-progs test results (tests/<suite>-tests-results.txt)",
        dir.display()
    )
}

/// Says what `dir` holds, or why it is neither.
pub fn detect(dir: &Path) -> Result<ImportKind, SuiteError> {
    if !dir.is_dir() {
        return Err(SuiteError::Config {
            suite: "import".to_owned(),
            message: format!("`{}` is not a directory", dir.display()),
        });
    }
    if !fstests_sections(dir).is_empty() {
        Ok(ImportKind::Xfstests)
    } else if !progs_results(dir).is_empty() {
        Ok(ImportKind::BtrfsProgs)
    } else {
        Err(SuiteError::Config {
            suite: "import".to_owned(),
            message: neither(dir),
        })
    }
}

/// Imports an fstests results directory into `run_dir` (report of suite
/// `xfstests`, one outcome per test and section, each test's `.full`,
/// `.out.bad` and `.dmesg` copied and linked), redacted with `redactor`.
pub fn xfstests(dir: &Path, run_dir: &Path, redactor: &Redactor) -> Result<Imported, SuiteError> {
    let sections = fstests_sections(dir);
    if sections.is_empty() {
        let mut message = neither(dir);
        if !progs_results(dir).is_empty() {
            message = format!(
                "`{}` holds btrfs-progs test results, not fstests results: import it as btrfs-progs",
                dir.display()
            );
        }
        return Err(SuiteError::Config {
            suite: xfstests::ID.to_owned(),
            message,
        });
    }
    let mut source = Source::new(dir, redactor)?;
    let mut report = SuiteReport::new(xfstests::ID);
    let mut run = ImportedRun::default();
    for (section, _) in sections {
        let label = section.clone().unwrap_or_else(|| "global".to_owned());
        let section_rel = format!("{}/{}", xfstests::ID, safe_file_name(&label));
        let sdir = PathBuf::from(section.clone().unwrap_or_default());
        let xunit = source
            .read(&sdir.join("result.xml"))
            .and_then(|b| fst_parse::parse_xunit(&b).ok());
        if let Some(xunit) = &xunit {
            run.add_xunit(xunit);
        }
        // check.time is global in a run with sections; the section copy
        // exists only once the section ended.
        let times = source
            .read(&sdir.join("check.time"))
            .or_else(|| source.read(Path::new("check.time")))
            .map(|b| fst_parse::parse_check_time(&String::from_utf8_lossy(&b)))
            .unwrap_or_default();
        let check_log = source
            .read(&sdir.join("check.log"))
            .and_then(|b| fst_parse::parse_check_log(&String::from_utf8_lossy(&b)));
        if run.kernel.is_none() {
            run.kernel = check_log
                .as_ref()
                .and_then(|log| log.kernel.clone())
                .filter(|k| !k.is_empty());
        }
        let mut tests = xfstests::merge_results(
            xunit.map(|x| x.tests),
            check_log.map(|log| log.tests(&times)),
            Vec::new(),
            None,
        );
        // A result.xml without per-test times (and no check.log to bring
        // them): check.time has them for the tests that passed.
        for test in &mut tests {
            if test.duration_secs.is_none() && test.verdict == btrfsqa_model::Verdict::Pass {
                test.duration_secs = times.get(&test.name).copied();
            }
        }
        for file in ["result.xml", "check.log", "check.time"] {
            let rel = format!("{section_rel}/{file}");
            if let Some(truncated) = source.copy(&sdir.join(file), &run_dir.join(&rel))? {
                let mut artifact = Artifact::new(
                    if file == "check.log" {
                        ArtifactKind::Log
                    } else {
                        ArtifactKind::Other
                    },
                    rel,
                );
                artifact.truncated_bytes = truncated;
                report.artifacts.push(artifact);
            }
        }
        for test in tests {
            let mut outcome = TestOutcome::new(xfstests::ID, test.name.clone(), test.verdict);
            outcome.profile = section.clone();
            outcome.duration_secs = test.duration_secs;
            outcome.message = test.message.as_deref().map(|m| redactor.redact_str(m));
            if fst_parse::is_test_name(&test.name) {
                for (suffix, kind) in [
                    (".full", ArtifactKind::Full),
                    (".out.bad", ArtifactKind::OutBad),
                    (".dmesg", ArtifactKind::Dmesg),
                ] {
                    let src = sdir.join(format!("{}{suffix}", test.name));
                    let base = test.name.rsplit('/').next().unwrap_or(&test.name);
                    let rel = format!(
                        "{section_rel}/{}/{}",
                        safe_file_name(&test.name),
                        safe_file_name(&format!("{base}{suffix}"))
                    );
                    if let Some(truncated) = source.copy(&src, &run_dir.join(&rel))? {
                        let mut artifact = Artifact::new(kind, rel);
                        artifact.truncated_bytes = truncated;
                        outcome.artifacts.push(artifact);
                    }
                }
            }
            report.tests.push(outcome);
        }
    }
    source.warn_about_linked_sections(dir);
    Ok(Imported {
        report,
        warnings: source.warnings,
        run,
    })
}

/// Imports a btrfs-progs tree (or its `tests/` directory) after a test run
/// into `run_dir` (report of suite `btrfs-progs`, one outcome per case in
/// the results files, tests named `<suite>/<case>`, each case's part of the
/// results file kept as its log), redacted with `redactor`.
///
/// Each case gets the verdict the harness gave it
/// ([`progs_parse::harness_verdict`]): failed when it wrote `test failed for
/// case`, never for a `failed:` line alone. `console` is what the run
/// printed (`make test-cli ... 2>&1 | tee FILE`): the harness reports cases
/// it did not run (`[NOTRUN]`) only there, so without it they read as
/// passes (a warning says so). A run stopped at its first failure holds
/// only the cases up to it.
pub fn btrfs_progs(
    dir: &Path,
    console: Option<&str>,
    run_dir: &Path,
    redactor: &Redactor,
) -> Result<Imported, SuiteError> {
    let files = progs_results(dir);
    if files.is_empty() {
        let mut message = neither(dir);
        if !fstests_sections(dir).is_empty() {
            message = format!(
                "`{}` holds fstests results, not btrfs-progs test results: import it as xfstests",
                dir.display()
            );
        }
        return Err(SuiteError::Config {
            suite: btrfs_progs::ID.to_owned(),
            message,
        });
    }
    let mut source = Source::new(dir, redactor)?;
    let mut report = SuiteReport::new(btrfs_progs::ID);
    let console = console.map(|text| redactor.redact_str(text));
    let printed = console
        .as_deref()
        .map(progs_parse::parse_console)
        .unwrap_or_default();
    let printed_for = |suite: &str, case: &str| {
        printed
            .iter()
            .rev()
            .find(|c| c.suite == suite && c.name == case)
    };
    for (suite, file) in files {
        let rel_file = file.strip_prefix(dir).unwrap_or(&file).to_owned();
        let Some(bytes) = source.read(&rel_file) else {
            continue;
        };
        let text = redactor.redact_str(&String::from_utf8_lossy(&bytes));
        let suite_rel = format!("{}/{}", btrfs_progs::ID, safe_file_name(&suite));
        let rel = format!(
            "{suite_rel}/{}",
            safe_file_name(&format!("{suite}-tests-results.txt"))
        );
        let Some(truncated) = source.copy(&rel_file, &run_dir.join(&rel))? else {
            continue;
        };
        let mut artifact = Artifact::new(ArtifactKind::Log, rel);
        artifact.truncated_bytes = truncated;
        report.artifacts.push(artifact);
        let blocks = progs_parse::split_results(&text);
        for case in progs_parse::parse_results(&text) {
            let name = format!("{suite}/{}", case.name);
            let (verdict, message) =
                progs_parse::harness_verdict(Some(&case), printed_for(&suite, &case.name));
            let mut outcome = TestOutcome::new(btrfs_progs::ID, name.as_str(), verdict);
            outcome.message = message;
            if let Some((_, block)) = blocks.iter().find(|(n, _)| *n == case.name) {
                let rel = format!("{suite_rel}/{}/results.txt", safe_file_name(&case.name));
                crate::context::write_file(&run_dir.join(&rel), cap_text(block).as_bytes())?;
                outcome
                    .artifacts
                    .push(Artifact::new(ArtifactKind::Log, rel));
            }
            report.tests.push(outcome);
        }
    }
    // Cases the console names that no results file holds (a results file
    // not kept): the console alone tells their verdict.
    for case in &printed {
        let name = format!("{}/{}", case.suite, case.name);
        if report.tests.iter().any(|t| t.name == name) {
            continue;
        }
        let (verdict, message) = progs_parse::harness_verdict(None, Some(case));
        let mut outcome = TestOutcome::new(btrfs_progs::ID, name.as_str(), verdict);
        outcome.message = message;
        report.tests.push(outcome);
    }
    match &console {
        Some(text) => {
            let rel = format!("{}/console.txt", btrfs_progs::ID);
            crate::context::write_file(&run_dir.join(&rel), cap_text(text).as_bytes())?;
            report
                .artifacts
                .push(Artifact::new(ArtifactKind::Stdout, rel));
        }
        None => source.warnings.push(
            "no console given: cases the harness did not run (`[NOTRUN]`, which it prints only \
             on its console) read as passes; import with the console of the run to tell them"
                .to_owned(),
        ),
    }
    Ok(Imported {
        report,
        warnings: source.warnings,
        run: ImportedRun::default(),
    })
}

fn cap_text(text: &str) -> String {
    let max = MAX_ARTIFACT_BYTES as usize;
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// Copies `src` to `dst` redacted; a file over [`MAX_ARTIFACT_BYTES`]
/// keeps its head and tail (each redacted) with a marker between. Returns
/// the bytes left out.
fn copy_capped(src: &Path, dst: &Path, redactor: &Redactor) -> Result<Option<u64>, SuiteError> {
    let store = |path: &Path| {
        let path = path.to_owned();
        move |source| SuiteError::Store { path, source }
    };
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(store(parent))?;
    }
    let size = fs::metadata(src).map_err(store(src))?.len();
    if size <= MAX_ARTIFACT_BYTES {
        let bytes = fs::read(src).map_err(store(src))?;
        fs::write(dst, redactor.redact(&bytes)).map_err(store(dst))?;
        return Ok(None);
    }
    let half = MAX_ARTIFACT_BYTES / 2;
    let mut input = fs::File::open(src).map_err(store(src))?;
    let mut output = fs::File::create(dst).map_err(store(dst))?;
    let mut head = vec![0; half as usize];
    input.read_exact(&mut head).map_err(store(src))?;
    input
        .seek(SeekFrom::Start(size - half))
        .map_err(store(src))?;
    let mut tail = Vec::with_capacity(half as usize);
    input.read_to_end(&mut tail).map_err(store(src))?;
    let left_out = size - MAX_ARTIFACT_BYTES;
    output
        .write_all(&redactor.redact(&head))
        .and_then(|()| write!(output, "\n[... btrfsqa cut {left_out} bytes ...]\n"))
        .and_then(|()| output.write_all(&redactor.redact(&tail)))
        .map_err(store(dst))?;
    Ok(Some(left_out))
}

#[cfg(test)]
mod tests;
