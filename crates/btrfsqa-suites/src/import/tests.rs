//! Tests of `btrfsqa import`: fstests results directories and btrfs-progs
//! trees, their times and sections, links that lead out, redaction and cut
//! files.

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
    let report = xfstests(&src, run.path(), &Redactor::default())
        .unwrap()
        .report;
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

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn an_fstests_import_keeps_the_kernel_host_and_times_of_result_xml() {
    // result.xml: hostname="vm", start_timestamp 13:48:18, report_timestamp
    // 13:56:01 (time="463"), KERNEL 6.18.44-fc-v657.
    let src = fixtures().join("xfstests/btrfs-loop-30");
    let run = tempfile::tempdir().unwrap();
    let imported = xfstests(&src, run.path(), &Redactor::default()).unwrap();
    assert_eq!(
        imported.run,
        ImportedRun {
            kernel: Some("6.18.44-fc-v657".into()),
            host: Some("vm".into()),
            started_at: Some(utc("2026-11-24T13:48:18+00:00")),
            finished_at: Some(utc("2026-11-24T13:56:01+00:00")),
        }
    );
    let duration = |name: &str| {
        imported
            .report
            .tests
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .duration_secs
    };
    // As result.xml says (`time="241"`, `time="66"`).
    assert_eq!(duration("btrfs/011"), Some(241.0));
    assert_eq!(duration("btrfs/004"), Some(66.0));
}

#[test]
fn sections_make_one_run_from_the_first_start_to_the_last_end() {
    let src = fixtures().join("xfstests/sections");
    let run = tempfile::tempdir().unwrap();
    let imported = xfstests(&src, run.path(), &Redactor::default()).unwrap();
    // compress: 15:53:11 to 15:53:28; default: 15:52:54 to 15:53:10.
    assert_eq!(
        imported.run.started_at,
        Some(utc("2026-11-24T15:52:54+00:00"))
    );
    assert_eq!(
        imported.run.finished_at,
        Some(utc("2026-11-24T15:53:28+00:00"))
    );
    assert_eq!(imported.run.host.as_deref(), Some("vm"));
    assert!(imported.run.kernel.is_some());
}

#[test]
fn older_result_xml_and_missing_times_fall_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("results");
    copy_tree(&fixtures().join("xfstests/btrfs-loop-30"), &src);
    // fstests before 2022: no start_timestamp or report_timestamp, and
    // `timestamp` is the end; no per-test `time`, no check.log.
    let xml = fs::read_to_string(src.join("result.xml")).unwrap();
    let mut old = String::new();
    for line in xml.lines() {
        let line = if line.contains("<testcase ") {
            let start = line.find(" time=").unwrap();
            let end = line[start + 7..].find('"').unwrap() + start + 8;
            format!("{}{}", &line[..start], &line[end..])
        } else {
            line.to_owned()
        };
        if line.contains("start_timestamp=") || line.contains("report_timestamp=") {
            continue;
        }
        old.push_str(&line.replace(
            "timestamp=\"2026-11-24T13:56:00+00:00\"",
            "timestamp=\"2026-11-24T13:56:01\"",
        ));
        old.push('\n');
    }
    assert!(!old.contains(" time=\"241\""), "{old}");
    fs::write(src.join("result.xml"), old).unwrap();
    fs::remove_file(src.join("check.log")).unwrap();
    let run = tmp.path().join("run");
    let imported = xfstests(&src, &run, &Redactor::default()).unwrap();
    assert_eq!(
        imported.run.finished_at,
        Some(utc("2026-11-24T13:56:01+00:00"))
    );
    // The end less the section's `time="463"`.
    assert_eq!(
        imported.run.started_at,
        Some(utc("2026-11-24T13:48:18+00:00"))
    );
    let btrfs_011 = imported
        .report
        .tests
        .iter()
        .find(|t| t.name == "btrfs/011")
        .unwrap();
    // check.time: `btrfs/011 241`.
    assert_eq!(btrfs_011.duration_secs, Some(241.0));
}

#[test]
fn sectioned_results_keep_their_section() {
    let src = fixtures().join("xfstests/sections");
    let run = tempfile::tempdir().unwrap();
    let report = xfstests(&src, run.path(), &Redactor::default())
        .unwrap()
        .report;
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
    let report = btrfs_progs(tmp.path(), None, run.path(), &Redactor::default())
        .unwrap()
        .report;
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
    let err = xfstests(tmp.path(), run.path(), &Redactor::default()).unwrap_err();
    assert!(err.to_string().contains("btrfs-progs"), "{err}");
}

/// What the harness printed for each case of a `make test-*` console,
/// read independently of the importer: `[TEST/<suite>] <case>` starts
/// a case, `[NOTRUN]` and `[SKIPPED]` skip it, `test failed for case`
/// fails it, nothing else passes it.
fn printed_verdicts(console: &str) -> Vec<(String, Verdict)> {
    let mut cases: Vec<(String, Verdict)> = Vec::new();
    for line in console.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("[TEST/") {
            let (suite, case) = rest.split_once(']').unwrap();
            cases.push((format!("{suite}/{}", case.trim()), Verdict::Pass));
        } else if line.starts_with("[NOTRUN]") || line.starts_with("[SKIPPED]") {
            cases.last_mut().unwrap().1 = Verdict::Skip;
        } else if let Some(case) = line.strip_prefix("test failed for case ") {
            let last = cases.last_mut().unwrap();
            assert!(last.0.ends_with(case), "{line} after {}", last.0);
            last.1 = Verdict::Fail;
        }
    }
    cases
}

#[test]
fn a_real_make_test_run_gets_the_verdicts_the_harness_printed() {
    // `make -k test-cli test-mkfs test-misc` of btrfs-progs 6.2 (see the
    // fixture's README): 45 cases; cli/003 and mkfs/002 log `failed:`
    // lines yet pass; mkfs/005 and mkfs/017 are not run; mkfs/025 and
    // misc/004 fail, each ending its suite.
    let src = fixtures().join("btrfs-progs/make-cli-mkfs-misc");
    let console = fs::read_to_string(src.join("console.txt")).unwrap();
    let printed = printed_verdicts(&console);
    assert_eq!(printed.len(), 45);
    let run = tempfile::tempdir().unwrap();
    let imported = btrfs_progs(&src, Some(&console), run.path(), &Redactor::default()).unwrap();
    let verdicts = |report: &SuiteReport| -> Vec<(String, Verdict)> {
        report
            .tests
            .iter()
            .map(|t| (t.name.clone(), t.verdict))
            .collect()
    };
    let mut got = verdicts(&imported.report);
    let mut want = printed.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    let test = |name: &str| {
        imported
            .report
            .tests
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        test("mkfs/005-long-device-name-for-ssd").message.as_deref(),
        Some("This test requires dm-linear support")
    );
    let failed = test("misc/004-shrink-fs").message.unwrap();
    assert!(
        failed.starts_with("failed: ") && failed.contains("balance start"),
        "{failed}"
    );
    assert!(
        imported
            .report
            .artifacts
            .iter()
            .any(|a| a.kind == ArtifactKind::Stdout && run.path().join(&a.path).is_file())
    );

    // Without the console only the not-run cases are lost (as passes),
    // and a warning says so.
    let run = tempfile::tempdir().unwrap();
    let imported = btrfs_progs(&src, None, run.path(), &Redactor::default()).unwrap();
    let mut got = verdicts(&imported.report);
    got.sort();
    let want: Vec<(String, Verdict)> = want
        .into_iter()
        .map(|(name, verdict)| match verdict {
            Verdict::Skip => (name, Verdict::Pass),
            other => (name, other),
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        imported.warnings[0].contains("NOTRUN"),
        "{:?}",
        imported.warnings
    );
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
    let err = btrfs_progs(tmp.path(), None, tmp.path(), &Redactor::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("neither"), "{err}");
    assert!(
        detect(&tmp.path().join("missing"))
            .unwrap_err()
            .to_string()
            .contains("not a directory")
    );
}

/// Copies a fixture directory (following nothing: plain files only).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir`, with its content.
fn stored_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(stored_files(&path));
        } else {
            out.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
    out
}

const OUTSIDE: &[u8] = b"OUTSIDE-THE-IMPORT\n";

/// An fstests results directory whose files are links out of it (to an
/// absolute path, through `..`, and a directory), and one link that
/// stays inside.
fn hostile_results(tmp: &Path) -> PathBuf {
    use std::os::unix::fs::symlink;
    let src = tmp.join("results");
    copy_tree(&fixtures().join("xfstests/btrfs-loop-30"), &src);
    let outside = tmp.join("outside");
    fs::create_dir_all(outside.join("btrfs")).unwrap();
    fs::write(outside.join("secret"), OUTSIDE).unwrap();
    fs::write(outside.join("btrfs/012.out.bad"), OUTSIDE).unwrap();
    // Absolute, through `..`, a directory out, and one that stays inside.
    fs::remove_file(src.join("btrfs/001.full")).unwrap();
    symlink(outside.join("secret"), src.join("btrfs/001.full")).unwrap();
    fs::remove_file(src.join("check.time")).unwrap();
    symlink("../outside/secret", src.join("check.time")).unwrap();
    fs::rename(src.join("btrfs/012.full"), src.join("012.full.real")).unwrap();
    symlink("../012.full.real", src.join("btrfs/012.full")).unwrap();
    fs::write(src.join("btrfs/004.real"), b"inside\n").unwrap();
    fs::remove_file(src.join("btrfs/004.full")).unwrap();
    symlink("004.real", src.join("btrfs/004.full")).unwrap();
    fs::remove_file(src.join("btrfs/012.out.bad")).unwrap();
    src
}

#[test]
fn an_import_never_reads_outside_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let src = hostile_results(tmp.path());
    // A whole directory of tests linked from elsewhere.
    let generic = tmp.path().join("outside/generic");
    fs::create_dir_all(&generic).unwrap();
    fs::write(generic.join("001.full"), OUTSIDE).unwrap();
    std::os::unix::fs::symlink(&generic, src.join("generic")).unwrap();
    let run = tmp.path().join("run");
    let imported = xfstests(&src, &run, &Redactor::default()).unwrap();
    for (path, content) in stored_files(&run) {
        assert!(
            !content.windows(OUTSIDE.len()).any(|w| w == OUTSIDE),
            "{} was copied from outside the import",
            path.display()
        );
    }
    let report = &imported.report;
    let full = |name: &str| {
        report
            .tests
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .artifacts
            .iter()
            .any(|a| a.kind == ArtifactKind::Full)
    };
    assert!(!full("btrfs/001"), "absolute link out");
    assert!(!full("btrfs/012"), "link through `..`");
    assert!(full("btrfs/004"), "a link that stays inside is followed");
    let warnings = imported.warnings.join("\n");
    for refused in ["btrfs/001.full", "check.time", "btrfs/012.full"] {
        assert!(
            warnings.contains(refused) && warnings.contains("not followed"),
            "{refused}: {warnings}"
        );
    }
}

#[test]
fn imported_files_and_messages_are_redacted() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("results");
    copy_tree(&fixtures().join("xfstests/btrfs-loop-30"), &src);
    let token = format!("ghp_{}", "a1B2c3D4e5".repeat(4));
    let mut full = fs::read(src.join("btrfs/012.full")).unwrap();
    full.extend_from_slice(
            format!("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\npushing with {token}\nthe run's own hunter2-secret-value\n").as_bytes(),
        );
    fs::write(src.join("btrfs/012.full"), full).unwrap();
    let run = tmp.path().join("run");
    let redactor = Redactor::new(["hunter2-secret-value"]);
    let imported = xfstests(&src, &run, &redactor).unwrap();
    for (path, content) in stored_files(&run) {
        let text = String::from_utf8_lossy(&content);
        for secret in [
            token.as_str(),
            "wJalrXUtnFEMIK7MDENG",
            "hunter2-secret-value",
        ] {
            assert!(!text.contains(secret), "{secret} in {}", path.display());
        }
    }
    let failed = imported
        .report
        .tests
        .iter()
        .find(|t| t.name == "btrfs/012")
        .unwrap();
    let full = failed
        .artifacts
        .iter()
        .find(|a| a.kind == ArtifactKind::Full)
        .unwrap();
    let text = fs::read_to_string(run.join(&full.path)).unwrap();
    assert!(text.contains("[REDACTED]"), "{text}");
}

#[test]
fn a_btrfs_progs_import_never_reads_outside_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let tests = tmp.path().join("progs/tests");
    fs::create_dir_all(&tests).unwrap();
    fs::write(
        tests.join("cli-tests-results.txt"),
        fs::read(fixtures().join("btrfs-progs/cli-001-btrfs.results")).unwrap(),
    )
    .unwrap();
    let outside = tmp.path().join("misc.results");
    fs::write(
        &outside,
        fs::read(fixtures().join("btrfs-progs/misc-047-raid5-convert.results")).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, tests.join("misc-tests-results.txt")).unwrap();
    let run = tmp.path().join("run");
    let imported =
        btrfs_progs(&tmp.path().join("progs"), None, &run, &Redactor::default()).unwrap();
    let names: Vec<&str> = imported
        .report
        .tests
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["cli/001-btrfs"]);
    assert!(
        imported
            .warnings
            .iter()
            .any(|w| w.contains("misc-tests-results.txt")),
        "{:?}",
        imported.warnings
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
    let cut = copy_capped(&src, &dst, &Redactor::default()).unwrap();
    assert_eq!(cut, Some(data.len() as u64 - MAX_ARTIFACT_BYTES));
    let copied = fs::read(&dst).unwrap();
    assert!(copied.starts_with(b"HEAD") && copied.ends_with(b"TAIL"));
    assert!(copied.len() < data.len());
}
