//! `btrfsqa import` of results made elsewhere: what the run page and the
//! report say equals what the results say (fstests' result.xml) or what the
//! harness printed (btrfs-progs).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{btrfsqa, repo_root, run, text};

fn fixture(path: &str) -> PathBuf {
    repo_root()
        .join("crates/btrfsqa-suites/fixtures")
        .join(path)
}

/// The value of `attribute="..."` at its first place in `text`.
fn attribute<'a>(text: &'a str, attribute: &str) -> &'a str {
    let start = text.find(&format!(" {attribute}=\"")).unwrap() + attribute.len() + 3;
    let end = text[start..].find('"').unwrap() + start;
    &text[start..end]
}

fn utc(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// `4m 01s`, `12 s`, as the run page writes durations of 10 s and more.
fn page_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        _ => format!("{}m {:02}s", secs / 60, secs % 60),
    }
}

/// The run's id, from the `report: .../<id>/report.json` line.
fn run_id(stdout: &str) -> String {
    let line = stdout.lines().find(|l| l.starts_with("report: ")).unwrap();
    let path = Path::new(line.trim_start_matches("report: "));
    path.parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn site_file(site: &Path, path: &str) -> String {
    let out = run(Command::new("git")
        .arg("--git-dir")
        .arg(site)
        .args(["show", &format!("gh-pages:{path}")]));
    assert!(out.status.success(), "{path}: {:?}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_fstests_import_shows_the_kernel_dates_and_durations_of_result_xml() {
    if !crate::which("git") {
        eprintln!("skipping: needs git");
        return;
    }
    let src = fixture("xfstests/btrfs-loop-30");
    let xml = std::fs::read_to_string(src.join("result.xml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site.git");
    let out = run(btrfsqa()
        .env("USER", "importer")
        .args(["import", "xfstests"])
        .arg(&src)
        .arg("--results-dir")
        .arg(tmp.path().join("store"))
        .arg("--site-repo")
        .arg(&site));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let id = run_id(&stdout);
    // The run's id says when its tests ran, not when they were imported.
    assert!(id.starts_with("20261124-134818-"), "{id}");

    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("store").join(&id).join("report.json")).unwrap(),
    )
    .unwrap();
    let kernel = attribute(&xml[xml.find("name=\"KERNEL\"").unwrap() - 1..], "value");
    assert_eq!(report["provenance"]["kernel"]["release"], kernel);
    assert_eq!(
        report["provenance"]["machines"][0]["name"],
        attribute(&xml, "hostname")
    );
    assert_eq!(report["import"]["kind"], "xfstests");
    // The version is the binary's, with its commit, as `--version` says it.
    let version = text(&run(btrfsqa().arg("--version"))).0;
    assert_eq!(
        report["provenance"]["btrfsqa_version"].as_str(),
        version.trim().strip_prefix("btrfsqa "),
    );
    assert_eq!(report["import"]["user"], "importer");
    assert!(
        report["import"]["source"]
            .as_str()
            .unwrap()
            .ends_with("btrfs-loop-30")
    );

    let page = site_file(&site, &format!("runs/{id}/index.html"));
    let started = utc(attribute(&xml, "start_timestamp"));
    let finished = utc(attribute(&xml, "report_timestamp"));
    let section_secs: u64 = attribute(&xml, "time").parse().unwrap();
    for fact in [
        format!("<dt>Started</dt><dd>{started}</dd>"),
        format!("<dt>Finished</dt><dd>{finished}</dd>"),
        format!("<dt>Duration</dt><dd>{}</dd>", page_duration(section_secs)),
        format!("<dt>Kernel</dt><dd>{kernel}"),
    ] {
        assert!(page.contains(&fact), "{fact} not on the run page");
    }
    assert!(
        page.contains("class=\"imported\">Imported from <code>") && page.contains("by importer@"),
        "no import block on the run page"
    );
    // Every test's duration is result.xml's.
    // The lists above the table name tests too: only table rows count.
    let rows: Vec<&str> = page.split("<tr").skip(1).collect();
    let mut checked = 0;
    for case in xml.split("<testcase ").skip(1) {
        let name = attribute(&format!(" {case}"), "name").to_owned();
        let secs: u64 = attribute(&format!(" {case}"), "time").parse().unwrap();
        let row = rows
            .iter()
            .find(|r| r.contains(&format!("<code class=\"tn\">{name}</code>")))
            .unwrap_or_else(|| panic!("{name} has no row"));
        let shown = if secs < 10 {
            format!("{secs}.0 s")
        } else {
            page_duration(secs)
        };
        assert!(
            row.contains(&format!(">{shown}</td>")),
            "{name}: {shown}: {row}"
        );
        checked += 1;
    }
    assert_eq!(checked, 30);
}

/// `[TEST/<suite>] <case>` starts a case; `[NOTRUN]`/`[SKIPPED]` skip it,
/// `test failed for case` fails it; nothing else passes it.
fn printed_verdicts(console: &str) -> Vec<(String, String)> {
    let mut cases: Vec<(String, String)> = Vec::new();
    for line in console.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("[TEST/") {
            let (suite, case) = rest.split_once(']').unwrap();
            cases.push((format!("{suite}/{}", case.trim()), "pass".into()));
        } else if line.starts_with("[NOTRUN]") || line.starts_with("[SKIPPED]") {
            cases.last_mut().unwrap().1 = "skip".into();
        } else if line.starts_with("test failed for case ") {
            cases.last_mut().unwrap().1 = "fail".into();
        }
    }
    cases.sort();
    cases
}

/// Imports `dir` with `console` and returns `(test, verdict)` sorted.
fn import_progs(dir: &Path, console: &Path, store: &Path) -> Vec<(String, String)> {
    let out = run(btrfsqa()
        .args(["import", "btrfs-progs"])
        .arg(dir)
        .arg("--console")
        .arg(console)
        .arg("--results-dir")
        .arg(store));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let id = run_id(&stdout);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(store.join(&id).join("report.json")).unwrap(),
    )
    .unwrap();
    let mut got: Vec<(String, String)> = report["suites"][0]["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    got
}

#[test]
fn a_btrfs_progs_import_gives_each_case_the_verdict_the_harness_printed() {
    let src = fixture("btrfs-progs/make-cli-mkfs-misc");
    let console = src.join("console.txt");
    let printed = printed_verdicts(&std::fs::read_to_string(&console).unwrap());
    assert_eq!(printed.len(), 45);
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        import_progs(&src, &console, &tmp.path().join("store")),
        printed
    );
    // --console is for btrfs-progs only.
    let out = run(btrfsqa()
        .args(["import", "xfstests"])
        .arg(fixture("xfstests/btrfs-loop-30"))
        .arg("--console")
        .arg(&console)
        .arg("--results-dir")
        .arg(tmp.path().join("store")));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}

/// A real btrfs-progs run made outside btrfsqa, as its own harness runs:
/// build the tree `BTRFSQA_BTRFS_PROGS_GIT` names, `make -k TEST=... test-cli
/// test-mkfs`, import it with its console; every case's verdict must be the
/// one the harness printed. The cases are chosen to hold a pass with
/// `failed:` lines (cli/003, mkfs/002) and a not-run case (mkfs/005).
#[test]
fn a_real_btrfs_progs_run_imports_with_the_harness_verdicts() {
    let Some(git_url) = std::env::var_os("BTRFSQA_BTRFS_PROGS_GIT") else {
        eprintln!("skipping: set BTRFSQA_BTRFS_PROGS_GIT to a btrfs-progs repository");
        return;
    };
    if !crate::need_root("a_real_btrfs_progs_run_imports_with_the_harness_verdicts") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("btrfsqa-progs-import")
        .tempdir_in("/var/tmp")
        .unwrap();
    let tree = tmp.path().join("btrfs-progs");
    let sh = |script: &str| {
        let out = run(Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(tmp.path()));
        assert!(out.status.success(), "{script}: {:?}", text(&out));
    };
    sh(&format!(
        "git clone -q {} btrfs-progs",
        git_url.to_string_lossy()
    ));
    sh("cd btrfs-progs && ./autogen.sh >/dev/null && \
        ./configure --disable-documentation --disable-python >/dev/null && \
        make -j\"$(nproc)\" >/dev/null");
    // Failing cases end their suite: the harness's own behaviour.
    let console = tmp.path().join("console.txt");
    let status = Command::new("bash")
        .arg("-c")
        .arg("cd btrfs-progs && make -k TEST='00[2-5]*' test-cli test-mkfs > ../console.txt 2>&1")
        .current_dir(tmp.path())
        .status()
        .unwrap();
    let printed_text = std::fs::read_to_string(&console).unwrap();
    eprintln!("make exited {status}:\n{printed_text}");
    let printed = printed_verdicts(&printed_text);
    assert!(printed.len() >= 5, "{printed_text}");
    let got = import_progs(&tree, &console, &tmp.path().join("store"));
    // Undo what a failed case left mounted in the tree.
    let _ = run(Command::new("bash").arg("-c").arg(format!(
        "findmnt -rn -o TARGET | grep '^{}' | xargs -r umount -l",
        tree.display()
    )));
    assert_eq!(got, printed);
}
