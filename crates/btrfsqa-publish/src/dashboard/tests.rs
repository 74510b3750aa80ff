use std::collections::BTreeSet;
use std::fs;

use btrfsqa_model::{
    Artifact, ArtifactKind, KernelInfo, MachineInfo, Provenance, RunReport, RunStatus, SourceInfo,
    SuiteReport, TestOutcome, Verdict,
};

use super::*;

mod artifacts;
mod bisect;
mod checks;
mod origin;

use checks::*;

const RUN: &str = "20261124-101500-ab12";
const OLDER_RUN: &str = "20261123-020000-0f0f";

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().unwrap()
}

fn source(name: &str, url: &str, git_ref: &str, commit: &str) -> SourceInfo {
    SourceInfo {
        name: name.into(),
        url: url.into(),
        git_ref: Some(git_ref.into()),
        commit: Some(commit.into()),
    }
}

fn outcome(suite: &str, name: &str, verdict: Verdict, secs: f64) -> TestOutcome {
    let mut outcome = TestOutcome::new(suite, name, verdict);
    outcome.duration_secs = Some(secs);
    outcome
}

/// A run with every kind of content the run page shows, at fixed times.
fn fixed_report() -> RunReport {
    let kernel = KernelInfo {
        release: Some("6.18.0-rc4-btrfsqa".into()),
        version: Some("#1 SMP PREEMPT_DYNAMIC Mon Nov 23 20:00:00 UTC 2026".into()),
        source: Some(source(
            "kernel",
            "https://git.kernel.org/pub/scm/linux/kernel/git/kdave/linux.git",
            "for-next",
            "0123456789abcdef0123456789abcdef01234567",
        )),
    };
    let provenance = Provenance {
        btrfsqa_version: "0.1.0".into(),
        config_hash: "sha256:5f2b9d".into(),
        provider: "qemu".into(),
        controller: Some("ci-runner-1".into()),
        machines: vec![MachineInfo {
            name: "qemu-0".into(),
            provider: "qemu".into(),
            address: "root@127.0.0.1:2222".into(),
            instance_type: Some("4cpu-8g".into()),
            test_dev: Some("/dev/vdb".into()),
            scratch_devs: vec!["/dev/vdc".into(), "/dev/vdd".into()],
            kernel: kernel.clone(),
        }],
        kernel,
        sources: vec![
            source(
                "fstests",
                "https://user:token@example.com/fstests.git",
                "master",
                "89abcdef",
            ),
            source(
                "btrfs-progs",
                "/srv/mirrors/btrfs-progs",
                "v6.17",
                "fedcba98",
            ),
        ],
    };
    let mut report = RunReport::start(
        RunId::parse(RUN).unwrap(),
        at("2026-11-24T10:15:00Z"),
        provenance,
    );
    report.labels.insert("trigger".into(), "nightly".into());

    let mut xfstests = SuiteReport::new("xfstests");
    xfstests.duration_secs = Some(2710.0);
    xfstests.source = report.provenance.sources.first().cloned();
    xfstests
        .artifacts
        .push(Artifact::new(ArtifactKind::Log, "xfstests/check.log"));
    let mut first = outcome("xfstests", "btrfs/001", Verdict::Pass, 3.2);
    first
        .artifacts
        .push(Artifact::new(ArtifactKind::Cast, "casts/qemu-0.cast").starting_at(1.0));
    xfstests.tests.push(first);
    let mut failed = outcome("xfstests", "btrfs/011", Verdict::Fail, 142.0).with_message(
        "- output mismatch (see btrfs/011.out.bad)\n+ERROR: scrub failed: Input/output error",
    );
    failed.profile = Some("raid56".into());
    failed.machine = Some("qemu-0".into());
    failed.kernel_log =
        vec!["WARNING: CPU: 1 PID: 4242 at fs/btrfs/scrub.c:1 <scrub_stripe>+0x1/0x2".into()];
    failed.artifacts = vec![
        Artifact::new(ArtifactKind::Full, "xfstests/btrfs/011.full"),
        Artifact::new(ArtifactKind::OutBad, "xfstests/btrfs/011.out.bad"),
        Artifact::new(ArtifactKind::Dmesg, "xfstests/btrfs/011.dmesg"),
        Artifact::new(ArtifactKind::Cast, "casts/qemu-0.cast").starting_at(12.5),
    ];
    xfstests.tests.push(failed);
    xfstests.tests.push(
        outcome("xfstests", "btrfs/100", Verdict::Skip, 0.0)
            .with_message("not run: zoned devices required"),
    );
    xfstests.tests.push(
        outcome("xfstests", "generic/475", Verdict::Hung, 900.0)
            .with_message("no verdict after 900 s"),
    );
    report.suites.push(xfstests);

    let mut raid = SuiteReport::new("raid56-scrub");
    raid.error = Some("lost the machine during scrub".into());
    raid.tests.push(outcome(
        "raid56-scrub",
        "raid5-data-repair",
        Verdict::Crashed,
        61.5,
    ));
    report.suites.push(raid);

    report.finish(RunStatus::Completed, at("2026-11-24T11:02:03Z"));
    report
}

fn older_report() -> RunReport {
    let provenance = Provenance {
        provider: "local".into(),
        ..Provenance::default()
    };
    let mut report = RunReport::start(
        RunId::parse(OLDER_RUN).unwrap(),
        at("2026-11-23T02:00:00Z"),
        provenance,
    );
    let mut suite = SuiteReport::new("btrfs-progs-cli");
    suite
        .tests
        .push(outcome("btrfs-progs-cli", "001-btrfs", Verdict::Pass, 1.0));
    report.suites.push(suite);
    report.finish(RunStatus::Completed, at("2026-11-23T02:00:51Z"));
    report
}

fn write_artifact(store: &ResultsStore, run: &str, path: &str, content: &[u8]) {
    let file = store.run_dir(&RunId::parse(run).unwrap()).join(path);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(file, content).unwrap();
}

fn fixed_store(dir: &Path) -> ResultsStore {
    let store = ResultsStore::new(dir);
    store.write_report(&fixed_report()).unwrap();
    store.write_report(&older_report()).unwrap();
    write_artifact(
        &store,
        RUN,
        "xfstests/check.log",
        b"btrfs/001 3s\nbtrfs/011 - output mismatch\n",
    );
    write_artifact(&store, RUN, "xfstests/btrfs/011.full", b"scrub started\n");
    write_artifact(
        &store,
        RUN,
        "xfstests/btrfs/011.out.bad",
        b"QA output created by 011\n+ERROR\n",
    );
    write_artifact(&store, RUN, "casts/qemu-0.cast", CAST.as_bytes());
    // 011.dmesg is missing on purpose: the page says so instead of linking.
    store
}

/// A recording with a marker at each test.
const CAST: &str = concat!(
    r#"{"version":2,"width":80,"height":24,"timestamp":1790000000,"title":"qemu-0"}"#,
    "\n",
    r#"[0.5,"o","$ ./check btrfs/001 btrfs/011\r\n"]"#,
    "\n",
    r#"[1.0,"m","xfstests: btrfs/001"]"#,
    "\n",
    r#"[4.2,"o","btrfs/001 3s\r\n"]"#,
    "\n",
    r#"[12.5,"m","xfstests: btrfs/011"]"#,
    "\n",
    r#"[150.0,"o","btrfs/011 - output mismatch (see btrfs/011.out.bad)\r\n"]"#,
    "\n",
);

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap()
}

/// A file the site publishes compressed (`name.gz`), as text.
fn read_gz(path: impl AsRef<Path>) -> String {
    use std::io::Read;
    let path = path.as_ref();
    let mut gz = path.as_os_str().to_owned();
    gz.push(".gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(&gz).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        !path.exists(),
        "{} is published compressed only",
        path.display()
    );
    text
}

#[test]
fn index_and_run_page_snapshots() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = fixed_store(store_dir.path());
    let stats = Dashboard::new().render(&store, site.path()).unwrap();
    assert_eq!(stats.written.len(), 2);
    assert_eq!(stats.artifacts_copied, 4);
    assert_eq!(
        stats.artifacts_refused,
        [format!(
            "{RUN}: xfstests/btrfs/011.dmesg: missing from the results store"
        )]
    );

    let index = read(site.path().join("index.html"));
    let table = &index[index.find("<table").unwrap()..];
    assert!(
        table.find(RUN).unwrap() < table.find(OLDER_RUN).unwrap(),
        "newest first"
    );
    insta::assert_snapshot!("index", index);
    let run_dir = site.path().join("runs").join(RUN);
    insta::assert_snapshot!("run_page", read(run_dir.join("index.html")));

    assert_eq!(
        read_gz(run_dir.join("report.json")),
        read(store.report_path(&RunId::parse(RUN).unwrap()))
    );
    assert!(read_gz(run_dir.join("junit.xml")).contains("<testsuite name=\"xfstests\""));
    assert!(read_gz(run_dir.join("kcidb.json")).contains("\"btrfsqa.xfstests.btrfs.011\""));
    insta::assert_snapshot!(
        "test_page",
        read(
            site.path()
                .join(history::test_page_path("xfstests", "btrfs/011"))
        )
    );
    insta::assert_snapshot!("matrix", read(site.path().join("matrix.html")));
    // The recording is embedded, opening at the first failing test, and
    // each test's replay link opens it where the test starts.
    let page = read(run_dir.join("index.html"));
    assert!(page.contains(r#"<section class="cast-player" id="rec-0" data-src="files/casts/qemu-0.cast" data-start="12.500">"#), "{page}");
    assert!(page.contains(r#"data-player="rec-0" data-start="12.500">▶ replay from 0:12</a>"#));
    assert!(page.contains("script-src 'self' 'wasm-unsafe-eval'"));
    assert_eq!(read(run_dir.join("files/casts/qemu-0.cast")), CAST);
    assert!(
        site.path()
            .join("assets/asciinema-player/asciinema-player.min.js")
            .is_file()
    );
    assert!(read(site.path().join("index.html")).contains("script-src 'none'"));
    assert_eq!(
        read(run_dir.join("files/xfstests/btrfs/011.full")),
        "scrub started\n"
    );
    assert!(site.path().join(".nojekyll").is_file());
    assert!(read(site.path().join("style.css")).contains("@media (max-width"));
    assert_links_resolve(site.path());
}

#[test]
fn hostile_strings_are_escaped_and_paths_outside_the_run_are_not_copied() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = ResultsStore::new(store_dir.path());
    let script = "<script>alert(1)</script>";
    let img = "\"><img src=x onerror=alert(1)>";

    let mut report = fixed_report();
    report.provenance.kernel.release = Some(script.into());
    report.provenance.provider = img.into();
    report.provenance.machines[0].name = format!("host{img}");
    report.provenance.machines[0].address = "'><svg onload=alert(2)>".into();
    report.provenance.sources[0].url = "javascript:alert(1)//<b>".into();
    report.error = Some(format!("</pre>{script}"));
    report.labels.insert(img.into(), script.into());
    let mut suite = SuiteReport::new(format!("suite{script}"));
    suite.error = Some(format!("</pre><pre>{img}"));
    let mut test = TestOutcome::new(suite.id.clone(), script, Verdict::Fail)
        .with_message(format!("{img}\n</pre>{script}"));
    test.profile = Some(img.into());
    test.machine = Some(script.into());
    test.artifacts = [
        "../../etc/passwd",
        "/etc/passwd",
        "logs/../../../etc/passwd",
        "escape/passwd",
        "other-run-secret.log",
        "page.html",
        &format!("odd{img}.log"),
        "a/.git/config",
        "logs",
    ]
    .iter()
    .map(|path| Artifact::new(ArtifactKind::Other, *path))
    .collect();
    suite.tests.push(test);
    report.suites.push(suite);
    store.write_report(&report).unwrap();

    let run_dir = store.run_dir(&report.run_id);
    write_artifact(
        &store,
        RUN,
        "page.html",
        format!("<html>{script}</html>").as_bytes(),
    );
    write_artifact(&store, RUN, &format!("odd{img}.log"), b"odd but allowed\n");
    write_artifact(&store, RUN, "logs/x", b"a directory is not an artifact\n");
    write_artifact(&store, RUN, "a/.git/config", b"[core]\n");
    write_artifact(&store, "elsewhere", "secret.log", b"SECRET\n");
    std::os::unix::fs::symlink("/etc", run_dir.join("escape")).unwrap();
    std::os::unix::fs::symlink(
        "../elsewhere/secret.log",
        run_dir.join("other-run-secret.log"),
    )
    .unwrap();

    let stats = Dashboard::new().render(&store, site.path()).unwrap();

    for page in [
        site.path().join("index.html"),
        site.path().join("runs").join(RUN).join("index.html"),
    ] {
        let html = read(&page);
        assert_only_template_markup(&html);
        for raw in [
            "<script>",
            "<img",
            "<svg onload",
            "<b>",
            "javascript:alert(1)//<",
        ] {
            assert!(
                !html.contains(raw),
                "`{raw}` emitted unescaped in {}",
                page.display()
            );
        }
        for href in hrefs(&html) {
            assert!(
                !href.contains("javascript") && !href.contains("/etc/") && !href.contains("passwd"),
                "{href}"
            );
        }
    }
    let run_page = read(site.path().join("runs").join(RUN).join("index.html"));
    assert!(
        run_page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the text is still shown, escaped"
    );

    // Nothing outside the run directory was copied; what is inside was.
    let mut copied = BTreeSet::new();
    let files = site.path().join("runs").join(RUN).join("files");
    let mut stack = vec![files.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            assert!(
                !kind.is_symlink(),
                "{} is a symlink",
                entry.path().display()
            );
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                let content = fs::read(entry.path()).unwrap();
                assert!(!content.starts_with(b"root:") && content != b"SECRET\n");
                copied.insert(
                    entry
                        .path()
                        .strip_prefix(&files)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let expected: BTreeSet<String> = ["page.html.txt".to_owned(), format!("odd{img}.log")].into();
    assert_eq!(copied, expected);
    // The fixed report's own artifacts were not written here: refused as missing.
    let hostile: Vec<_> = stats
        .artifacts_refused
        .iter()
        .filter(|l| !l.contains(": xfstests/") && !l.contains(": casts/"))
        .collect();
    assert_eq!(hostile.len(), 7, "{:#?}", stats.artifacts_refused);
    assert!(run_page.contains("the path leads outside the run directory"));
    assert!(
        run_page.contains("href=\"files/page.html.txt\""),
        "active content is served as text"
    );
    assert!(
        run_page
            .contains("href=\"files/odd%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.log\"")
    );
    assert_links_resolve(site.path());
}

#[test]
fn unchanged_run_pages_are_skipped() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = fixed_store(store_dir.path());
    let dashboard = Dashboard::new();
    let run = RunId::parse(RUN).unwrap();
    let older = RunId::parse(OLDER_RUN).unwrap();

    let first = dashboard.render(&store, site.path()).unwrap();
    assert_eq!((first.written.len(), first.pages_skipped()), (2, 0));
    assert!(first.site_files_written > 5);

    let second = dashboard.render(&store, site.path()).unwrap();
    assert_eq!(second.written, Vec::<RunId>::new());
    assert_eq!(second.skipped, [run.clone(), older.clone()]);
    assert_eq!(second.pages_written(), 0, "nothing changed");
    assert_eq!(second.site_files_unchanged, first.site_files_written);
    assert_eq!(second.artifacts_copied, 0);

    let mut report = store.read_report(&older).unwrap();
    report.labels.insert("note".into(), "re-run".into());
    store.write_report(&report).unwrap();
    fs::remove_file(site.path().join("runs").join(RUN).join("index.html")).unwrap();
    let third = dashboard.render(&store, site.path()).unwrap();
    assert_eq!(
        third.written,
        [run.clone(), older.clone()],
        "changed report, and a missing page"
    );
    assert!(read(site.path().join("runs").join(OLDER_RUN).join("index.html")).contains("re-run"));

    // Another renderer (here: other settings) makes every page stale.
    let other = Dashboard::with_settings(DashboardSettings {
        title: "Other title".into(),
        ..DashboardSettings::default()
    });
    assert_eq!(other.render(&store, site.path()).unwrap().written.len(), 2);
    assert!(read(site.path().join("index.html")).contains("Other title"));
}

#[test]
fn an_unreadable_report_does_not_stop_the_others() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = fixed_store(store_dir.path());
    fs::create_dir_all(store_dir.path().join("broken-run")).unwrap();
    fs::write(
        store_dir.path().join("broken-run/report.json"),
        b"{ truncated",
    )
    .unwrap();
    let stats = Dashboard::new().render(&store, site.path()).unwrap();
    assert_eq!(stats.written.len(), 2);
    assert_eq!(stats.unreadable.len(), 1);
    assert!(
        stats.unreadable[0].starts_with("broken-run: not a valid report"),
        "{:?}",
        stats.unreadable
    );
    let index = read(site.path().join("index.html"));
    assert!(index.contains(RUN) && index.contains("broken-run: not a valid report"));
    assert!(
        !index.contains(&store_dir.path().display().to_string()),
        "no local paths on the site"
    );
}

#[test]
fn published_runs_are_listed_but_not_rendered() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = ResultsStore::new(store_dir.path());
    store.write_report(&older_report()).unwrap();
    let stats = Dashboard::new()
        .render_site(
            &store,
            site.path(),
            &[
                RunSummary::of(&fixed_report()),
                RunSummary::of(&older_report()),
            ],
        )
        .unwrap();
    assert_eq!(stats.kept, [RunId::parse(RUN).unwrap()]);
    assert_eq!(stats.written, [RunId::parse(OLDER_RUN).unwrap()]);
    assert!(read(site.path().join("index.html")).contains(RUN));
    assert!(!site.path().join("runs").join(RUN).exists());
}

#[tokio::test]
async fn the_directory_publisher_renders_into_its_directory() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = fixed_store(store_dir.path());
    let publisher = DirectoryPublisher::new(site.path(), Dashboard::new());
    assert_eq!(publisher.id(), "directory");
    let published = publisher
        .publish(&store, &RunId::parse(RUN).unwrap())
        .await
        .unwrap();
    assert!(
        published
            .location
            .ends_with(&format!("runs/{RUN}/index.html"))
    );
    assert!(Path::new(&published.location).is_file());
    let missing = publisher
        .publish(&store, &RunId::parse("nope").unwrap())
        .await;
    assert!(matches!(missing, Err(PublishError::Store { .. })));
}

#[test]
fn durations_and_sizes_read_well() {
    assert_eq!(human_duration(0.42).unwrap(), "0.4 s");
    assert_eq!(human_duration(42.0).unwrap(), "42 s");
    assert_eq!(human_duration(245.0).unwrap(), "4m 05s");
    assert_eq!(human_duration(7384.0).unwrap(), "2h 03m");
    assert_eq!(human_duration(f64::NAN), None);
    assert_eq!(byte_count(12), "12 bytes");
    assert_eq!(byte_count(3 * 1024 * 1024), "3145728 bytes (3.0 MiB)");
}

#[test]
fn retention_keeps_the_newest_pages_and_older_runs_as_rows() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = fixed_store(store_dir.path());
    let dashboard = Dashboard::new();
    dashboard.render(&store, site.path()).unwrap();
    let older_dir = site.path().join("runs").join(OLDER_RUN);
    assert!(older_dir.join("index.html").is_file());

    let keeping_one = Dashboard::with_settings(DashboardSettings {
        keep_runs: Some(1),
        ..DashboardSettings::default()
    });
    let stats = keeping_one.render(&store, site.path()).unwrap();
    assert_eq!(stats.pruned, [RunId::parse(OLDER_RUN).unwrap()]);
    let left: Vec<String> = fs::read_dir(&older_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["summary.json"],
        "only the summary of a pruned run stays"
    );
    let index = read(site.path().join("index.html"));
    assert!(index.contains(&format!(
        "<code>{OLDER_RUN}</code> <span class=\"muted\">(page not kept)</span>"
    )));
    assert!(!index.contains(&format!("runs/{OLDER_RUN}/index.html")));
    assert!(
        site.path()
            .join("runs")
            .join(RUN)
            .join("index.html")
            .is_file()
    );
    assert_links_resolve(site.path());

    // A second render with the same setting changes nothing.
    let again = keeping_one.render(&store, site.path()).unwrap();
    assert_eq!(again.written.len(), 0);
    assert_eq!(again.site_files_written, 0);

    // Raising the limit brings the page back from the store, and the page
    // of the run compared with it links to it again.
    let stats = dashboard.render(&store, site.path()).unwrap();
    assert_eq!(
        stats.written,
        [RunId::parse(RUN).unwrap(), RunId::parse(OLDER_RUN).unwrap()]
    );
    assert!(older_dir.join("index.html").is_file());
}

/// A report written with credentials in its URLs (by an older btrfsqa, or
/// another tool writing the store's format) is published without them:
/// not on the run page, not in the copy of the report, not in the exports.
#[test]
fn pages_and_copies_hold_no_credentials_from_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ResultsStore::new(tmp.path().join("results"));
    let mut report = fixed_report();
    let url = "https://user:tok-1234567@example.com/fstests.git";
    report.suites[0].error = Some(format!("cannot fetch `{url}`"));
    report.suites[0].tests[1].message = Some(format!("clone of {url} failed"));
    report.error = Some(format!("giving up on {url}"));
    let run_dir = store.create_run(&report.run_id).unwrap();
    fs::write(
        run_dir.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    let out = tmp.path().join("site");
    Dashboard::new().render(&store, &out).unwrap();
    for file in [
        "index.html",
        "report.json",
        "junit.xml",
        "kcidb.json",
        "summary.json",
    ] {
        let path = out.join("runs").join(RUN).join(file);
        let text = if file.ends_with(".html") || file == SUMMARY_FILE {
            read(path)
        } else {
            read_gz(path)
        };
        assert!(!text.contains("tok-1234567"), "{file}: {text}");
        assert!(!text.contains("user:"), "{file}");
    }
    for page in ["index.html", "matrix.html"] {
        assert!(!read(out.join(page)).contains("tok-1234567"), "{page}");
    }
    let page = read(out.join("runs").join(RUN).join("index.html"));
    assert!(page.contains("https://example.com/fstests.git"), "{page}");
}

/// Test names with `/` (fstests' `btrfs/001`), names that differ only in
/// what a path cannot hold, and a name whose page would be another's
/// directory each get their own page, all beside each other.
#[test]
fn test_names_with_slashes_get_distinct_flat_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ResultsStore::new(tmp.path().join("results"));
    let names = [
        "btrfs/001",
        "btrfs_001",
        "btrfs//001",
        "x",
        "x.html/y",
        "../../up",
    ];
    let mut report = older_report();
    let mut suite = SuiteReport::new("xfstests");
    for name in names {
        suite
            .tests
            .push(outcome("xfstests", name, Verdict::Pass, 1.0));
    }
    report.suites.push(suite);
    store.write_report(&report).unwrap();
    let out = tmp.path().join("site");
    Dashboard::new().render(&store, &out).unwrap();
    let pages: Vec<_> = fs::read_dir(out.join("tests/xfstests"))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    assert!(
        pages.iter().all(|e| e.file_type().unwrap().is_file()),
        "{pages:?}"
    );
    assert_eq!(pages.len(), names.len(), "{pages:?}");
    assert!(out.join("tests/xfstests/btrfs~001.html").is_file());
    for name in names {
        let page = read(out.join(history::test_page_path("xfstests", name)));
        assert!(
            page.contains(&format!(
                "<code class=\"tn\">{}</code></h1>",
                escape_html(name)
            )),
            "{name}: {page}"
        );
    }
    assert_links_resolve(&out);
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// Pages of older runs list only what did not pass, with only its files;
/// a run that becomes one of the newest again gets its full page back.
#[test]
fn older_runs_pages_list_only_what_did_not_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ResultsStore::new(tmp.path().join("results"));
    let mut report = fixed_report();
    report.suites[0].tests[0]
        .artifacts
        .push(Artifact::new(ArtifactKind::Full, "xfstests/btrfs/001.full"));
    store.write_report(&report).unwrap();
    write_artifact(&store, RUN, "xfstests/btrfs/001.full", b"passed\n");
    write_artifact(&store, RUN, "xfstests/btrfs/011.full", b"scrub started\n");
    write_artifact(&store, RUN, "xfstests/check.log", b"btrfs/001 3s\n");
    let site = tmp.path().join("site");
    let run_dir = site.join("runs").join(RUN);

    let older = Dashboard::with_settings(DashboardSettings {
        full_pages: 0,
        ..DashboardSettings::default()
    });
    older.render(&store, &site).unwrap();
    let page = read(run_dir.join("index.html"));
    for listed in ["t-0-1", "t-0-3", "t-1-0"] {
        assert!(page.contains(&format!("<tr id=\"{listed}\"")), "{listed}");
    }
    for passed in ["t-0-0", "t-0-2"] {
        assert!(!page.contains(&format!("<tr id=\"{passed}\"")), "{passed}");
    }
    assert!(
        page.contains("lists only the 3 tests of 5 that did not pass"),
        "{page}"
    );
    assert!(run_dir.join("files/xfstests/btrfs/011.full").is_file());
    assert!(run_dir.join("files/xfstests/check.log").is_file());
    assert!(!run_dir.join("files/xfstests/btrfs/001.full").exists());
    assert_eq!(read_gz(run_dir.join("report.json")).len(), {
        read(store.report_path(&report.run_id)).len()
    });
    assert_links_resolve(&site);

    let stats = Dashboard::new().render(&store, &site).unwrap();
    assert_eq!(stats.written, [RunId::parse(RUN).unwrap()]);
    let page = read(run_dir.join("index.html"));
    assert!(page.contains("<tr id=\"t-0-0\""));
    assert!(run_dir.join("files/xfstests/btrfs/001.full").is_file());
    assert_links_resolve(&site);
}

/// A long history: a publish reads the tests of the newest runs only, and
/// the page of a test that ran only long ago stays, as do the counts of new
/// failures on the index.
#[test]
fn a_long_history_keeps_pages_of_tests_that_no_longer_run() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ResultsStore::new(tmp.path().join("results"));
    let run = |n: usize| {
        let started = at("2026-01-01T00:00:00Z") + chrono::Duration::hours(n as i64);
        let id = RunId::parse(&format!("r{n:04}")).unwrap();
        let mut report = RunReport::start(id, started, Provenance::default());
        let mut suite = SuiteReport::new("s");
        // `gone` ran only in the first runs; `flip` broke in run 3.
        if n < 2 {
            suite.tests.push(outcome("s", "gone", Verdict::Fail, 1.0));
        }
        let flip = if n == 3 { Verdict::Fail } else { Verdict::Pass };
        suite.tests.push(outcome("s", "flip", flip, 1.0));
        report.suites.push(suite);
        report.finish(RunStatus::Completed, started);
        report
    };
    let runs = super::history::TEST_HISTORY_RUNS + 5;
    for n in 0..runs {
        store.write_report(&run(n)).unwrap();
    }
    let site = tmp.path().join("site");
    Dashboard::new().render(&store, &site).unwrap();
    let gone = site.join("tests/s/gone.html");
    assert!(gone.is_file());
    store.write_report(&run(runs)).unwrap();
    let stats = Dashboard::new().render(&store, &site).unwrap();
    // The new run, and the run whose page now lists only what did not pass.
    let written: Vec<&str> = stats.written.iter().map(RunId::as_str).collect();
    assert_eq!(
        written,
        [format!("r{runs:04}"), format!("r{:04}", runs - 100)]
    );
    assert!(
        gone.is_file(),
        "the page of a test that no longer runs stays"
    );
    let archive = read(site.join("archive/1.html"));
    assert!(
        archive.contains("r0003</code></a></td>"),
        "the oldest runs are on the archive page"
    );
    // Run 3's new failure, counted when its page was written.
    let row = &archive[archive.find("r0003</code>").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("data-label=\"new failures\">1</td>"), "{row}");
    assert_links_resolve(&site);
}
