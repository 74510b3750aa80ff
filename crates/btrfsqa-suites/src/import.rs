//! Importing results made elsewhere (`btrfsqa import`): an fstests results
//! directory or a btrfs-progs tree after `make test-*` becomes a suite report
//! with its files copied into a run directory of the results store, so it is
//! published like any run.
//!
//! ```no_run
//! use std::path::Path;
//! use btrfsqa_suites::import;
//!
//! # fn demo() -> Result<(), btrfsqa_suites::SuiteError> {
//! let dir = Path::new("/var/lib/xfstests/results");
//! let report = match import::detect(dir)? {
//!     import::ImportKind::Xfstests => import::xfstests(dir, Path::new("store/run-1"))?,
//!     import::ImportKind::BtrfsProgs => import::btrfs_progs(dir, Path::new("store/run-1"))?,
//! };
//! println!("{} tests", report.tests.len());
//! # Ok(()) }
//! ```

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use btrfsqa_model::{Artifact, ArtifactKind, SuiteReport, TestOutcome, safe_file_name};

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
/// `.out.bad` and `.dmesg` copied and linked).
pub fn xfstests(dir: &Path, run_dir: &Path) -> Result<SuiteReport, SuiteError> {
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
    let mut report = SuiteReport::new(xfstests::ID);
    for (section, sdir) in sections {
        let label = section.clone().unwrap_or_else(|| "global".to_owned());
        let section_rel = format!("{}/{}", xfstests::ID, safe_file_name(&label));
        let read = |name: &str| fs::read(sdir.join(name)).ok();
        let xunit = read("result.xml").and_then(|b| fst_parse::parse_xunit(&b).ok());
        // check.time is global in a run with sections; the section copy
        // exists only once the section ended.
        let times = read("check.time")
            .or_else(|| fs::read(dir.join("check.time")).ok())
            .map(|b| fst_parse::parse_check_time(&String::from_utf8_lossy(&b)))
            .unwrap_or_default();
        let check_log = read("check.log")
            .and_then(|b| fst_parse::parse_check_log(&String::from_utf8_lossy(&b)))
            .map(|log| log.tests(&times));
        let tests = xfstests::merge_results(xunit.map(|x| x.tests), check_log, Vec::new(), None);
        for file in ["result.xml", "check.log", "check.time"] {
            let src = sdir.join(file);
            if src.is_file() {
                let rel = format!("{section_rel}/{file}");
                let truncated = copy_capped(&src, &run_dir.join(&rel))?;
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
            outcome.message = test.message.clone();
            if fst_parse::is_test_name(&test.name) {
                for (suffix, kind) in [
                    (".full", ArtifactKind::Full),
                    (".out.bad", ArtifactKind::OutBad),
                    (".dmesg", ArtifactKind::Dmesg),
                ] {
                    let src = sdir.join(format!("{}{suffix}", test.name));
                    if !src.is_file() {
                        continue;
                    }
                    let base = test.name.rsplit('/').next().unwrap_or(&test.name);
                    let rel = format!(
                        "{section_rel}/{}/{}",
                        safe_file_name(&test.name),
                        safe_file_name(&format!("{base}{suffix}"))
                    );
                    let truncated = copy_capped(&src, &run_dir.join(&rel))?;
                    let mut artifact = Artifact::new(kind, rel);
                    artifact.truncated_bytes = truncated;
                    outcome.artifacts.push(artifact);
                }
            }
            report.tests.push(outcome);
        }
    }
    Ok(report)
}

/// Imports a btrfs-progs tree (or its `tests/` directory) after a test run
/// into `run_dir` (report of suite `btrfs-progs`, one outcome per case in
/// the results files, tests named `<suite>/<case>`, each case's part of the
/// results file kept as its log).
///
/// The results files do not record cases that did not run (`[NOTRUN]` goes
/// only to the console), so those read as passes; a run stopped at its first
/// failure holds only the cases up to it.
pub fn btrfs_progs(dir: &Path, run_dir: &Path) -> Result<SuiteReport, SuiteError> {
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
    let mut report = SuiteReport::new(btrfs_progs::ID);
    for (suite, file) in files {
        let bytes = fs::read(&file).map_err(|source| SuiteError::Store {
            path: file.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let suite_rel = format!("{}/{}", btrfs_progs::ID, safe_file_name(&suite));
        let rel = format!(
            "{suite_rel}/{}",
            safe_file_name(&format!("{suite}-tests-results.txt"))
        );
        let truncated = copy_capped(&file, &run_dir.join(&rel))?;
        let mut artifact = Artifact::new(ArtifactKind::Log, rel);
        artifact.truncated_bytes = truncated;
        report.artifacts.push(artifact);
        let blocks = progs_parse::split_results(&text);
        for case in progs_parse::parse_results(&text) {
            let name = format!("{suite}/{}", case.name);
            let mut outcome = TestOutcome::new(btrfs_progs::ID, name.as_str(), case.verdict);
            outcome.message = case.summary();
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
    Ok(report)
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

/// Copies `src` to `dst`; a file over [`MAX_ARTIFACT_BYTES`] keeps its head
/// and tail with a marker between. Returns the bytes left out.
fn copy_capped(src: &Path, dst: &Path) -> Result<Option<u64>, SuiteError> {
    let store = |path: &Path| {
        let path = path.to_owned();
        move |source| SuiteError::Store { path, source }
    };
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(store(parent))?;
    }
    let size = fs::metadata(src).map_err(store(src))?.len();
    if size <= MAX_ARTIFACT_BYTES {
        fs::copy(src, dst).map_err(store(dst))?;
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
        .write_all(&head)
        .and_then(|()| write!(output, "\n[... btrfsqa cut {left_out} bytes ...]\n"))
        .and_then(|()| output.write_all(&tail))
        .map_err(store(dst))?;
    Ok(Some(left_out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::Verdict;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
    }

    #[test]
    fn an_fstests_results_directory_is_imported_with_its_files() {
        let src = fixtures().join("xfstests/btrfs-loop-30");
        assert_eq!(detect(&src).unwrap(), ImportKind::Xfstests);
        let run = tempfile::tempdir().unwrap();
        let report = xfstests(&src, run.path()).unwrap();
        assert_eq!(report.id, "xfstests");
        assert_eq!(report.tests.len(), 30);
        let failed = report.tests.iter().find(|t| t.name == "btrfs/012").unwrap();
        assert_eq!(failed.verdict, Verdict::Fail);
        assert!(
            failed
                .message
                .as_deref()
                .unwrap()
                .contains("output mismatch")
        );
        let kinds: Vec<ArtifactKind> = failed.artifacts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [ArtifactKind::Full, ArtifactKind::OutBad]);
        for artifact in failed.artifacts.iter().chain(&report.artifacts) {
            assert!(run.path().join(&artifact.path).is_file(), "{artifact:?}");
        }
        assert_eq!(report.counts().pass, 29);
    }

    #[test]
    fn sectioned_results_keep_their_section() {
        let src = fixtures().join("xfstests/sections");
        let run = tempfile::tempdir().unwrap();
        let report = xfstests(&src, run.path()).unwrap();
        let profiles: std::collections::BTreeSet<_> = report
            .tests
            .iter()
            .filter_map(|t| t.profile.clone())
            .collect();
        assert!(profiles.len() >= 2, "{profiles:?}");
        assert!(
            report
                .tests
                .iter()
                .any(|t| t.verdict == Verdict::Skip && t.message.is_some())
        );
    }

    #[test]
    fn a_btrfs_progs_tree_is_imported_per_case() {
        let tmp = tempfile::tempdir().unwrap();
        let tests = tmp.path().join("tests");
        fs::create_dir_all(&tests).unwrap();
        let fixture = |n: &str| fs::read(fixtures().join("btrfs-progs").join(n)).unwrap();
        let mut cli = fixture("cli-001-btrfs.results");
        cli.extend(fixture("cli-002-balance-full-no-filters.results"));
        fs::write(tests.join("cli-tests-results.txt"), cli).unwrap();
        fs::write(
            tests.join("misc-tests-results.txt"),
            fixture("misc-047-raid5-convert.results"),
        )
        .unwrap();
        assert_eq!(detect(tmp.path()).unwrap(), ImportKind::BtrfsProgs);
        let run = tempfile::tempdir().unwrap();
        let report = btrfs_progs(tmp.path(), run.path()).unwrap();
        let names: Vec<(&str, Verdict)> = report
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.verdict))
            .collect();
        assert_eq!(
            names,
            [
                ("cli/001-btrfs", Verdict::Pass),
                ("cli/002-balance-full-no-filters", Verdict::Fail),
                ("misc/047-raid5-convert", Verdict::Pass),
            ]
        );
        let failed = &report.tests[1];
        assert!(
            failed
                .message
                .as_deref()
                .unwrap()
                .contains("target is busy")
        );
        let log = fs::read_to_string(run.path().join(&failed.artifacts[0].path)).unwrap();
        assert!(log.contains("target is busy") && !log.contains("001-btrfs"));
        // The same tree read as fstests results says what it is.
        let err = xfstests(tmp.path(), run.path()).unwrap_err();
        assert!(err.to_string().contains("btrfs-progs"), "{err}");
    }

    #[test]
    fn a_directory_with_neither_is_refused_clearly() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
        let err = detect(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("neither fstests results") && err.contains("btrfs-progs"),
            "{err}"
        );
        let err = btrfs_progs(tmp.path(), tmp.path()).unwrap_err().to_string();
        assert!(err.contains("neither"), "{err}");
        assert!(
            detect(&tmp.path().join("missing"))
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }

    #[test]
    fn huge_files_are_cut_with_head_and_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("big.full");
        let mut data = b"HEAD".to_vec();
        data.resize((MAX_ARTIFACT_BYTES + 4096) as usize, b'x');
        data.extend_from_slice(b"TAIL");
        fs::write(&src, &data).unwrap();
        let dst = tmp.path().join("out/big.full");
        let cut = copy_capped(&src, &dst).unwrap();
        assert_eq!(cut, Some(data.len() as u64 - MAX_ARTIFACT_BYTES));
        let copied = fs::read(&dst).unwrap();
        assert!(copied.starts_with(b"HEAD") && copied.ends_with(b"TAIL"));
        assert!(copied.len() < data.len());
    }
}
