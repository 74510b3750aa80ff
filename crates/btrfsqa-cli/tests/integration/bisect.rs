//! `btrfsqa bisect` for real: a history of btrfs-progs (Debian's source
//! package, then eight commits: one breaks `btrfs version` and so the cli
//! test 001-btrfs, an unrelated one does not build and the next fixes it),
//! bisected on the local provider. Needs root and `BTRFSQA_BTRFS_PROGS_GIT`
//! (`scripts/test.sh` makes the mirror).

use std::process::Command;

use crate::runs::Area;
use crate::{btrfsqa, need_root, run, text};

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Edits `file` of `repo` (replacing `from` by `to`) and commits.
fn commit(repo: &std::path::Path, file: &str, from: &str, to: &str, message: &str) -> String {
    let path = repo.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    git(repo, &["commit", "-q", "-a", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

#[test]
fn bisect_names_the_commit_that_broke_a_test_and_steps_around_one_that_does_not_build() {
    if !need_root(
        "bisect_names_the_commit_that_broke_a_test_and_steps_around_one_that_does_not_build",
    ) {
        return;
    }
    let Some(mirror) = std::env::var("BTRFSQA_BTRFS_PROGS_GIT")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!("skipped: set BTRFSQA_BTRFS_PROGS_GIT to a btrfs-progs git repository");
        return;
    };
    let area = Area::new();
    let repo = area.path("progs");
    run(Command::new("git")
        .args(["clone", "-q", &mirror])
        .arg(&repo));
    let good = git(&repo, &["rev-parse", "HEAD"]);
    let mut commits = Vec::new();
    commits.push(commit(
        &repo,
        "README.md",
        "btrfs-progs",
        "btrfs-progs (patched)",
        "README: patched",
    ));
    commits.push(commit(
        &repo,
        "btrfs.c",
        "static DEFINE_SIMPLE_COMMAND(version, \"version\");",
        "static DEFINE_SIMPLE_COMMAND(version, \"version\");\n/* tidied */",
        "btrfs.c: a comment",
    ));
    let culprit = commit(
        &repo,
        "btrfs.c",
        "printf(\"%s\\n\", PACKAGE_STRING);\n\treturn 0;",
        "printf(\"%s\\n\", PACKAGE_STRING);\n\treturn 1;",
        "btrfs: version exits 1",
    );
    commits.push(culprit.clone());
    let broken = commit(
        &repo,
        "cmds/subvolume.c",
        "#include <sys/ioctl.h>",
        "#include <sys/ioctl.h>\nthis does not compile;",
        "subvolume: work in progress",
    );
    commits.push(broken.clone());
    commits.push(commit(
        &repo,
        "cmds/subvolume.c",
        "\nthis does not compile;",
        "",
        "subvolume: build again",
    ));
    for n in 1..=3 {
        commits.push(commit(
            &repo,
            "README.md",
            "btrfs-progs (patched",
            &format!("btrfs-progs (patched {n}"),
            &format!("README: note {n}"),
        ));
    }
    let bad = commits.last().unwrap().clone();
    let config = area.config(
        "\"btrfs-progs\"",
        &format!(
            "\n[suites.btrfs-progs]\ngit-url = {:?}\nsuites = [\"cli\"]\ncase-timeout-secs = 300\n",
            repo.display().to_string()
        ),
    );
    let out = run(btrfsqa()
        .args([
            "bisect",
            "--suite",
            "btrfs-progs",
            "--test",
            "cli/001-btrfs",
        ])
        .args(["--good", &good, "--bad", &bad, "--config"])
        .arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().last(), Some(culprit.as_str()), "{stderr}");
    let journal = std::fs::read_dir(area.path("results/.bisect"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("bisect.json");
    let bisection: serde_json::Value =
        serde_json::from_slice(&std::fs::read(journal).unwrap()).unwrap();
    let steps = bisection["steps"].as_array().unwrap();
    let skipped: Vec<&str> = steps
        .iter()
        .filter(|s| s["mark"] == "skip")
        .map(|s| s["commit"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, [broken.as_str()], "{stderr}");
    let test_runs = steps
        .iter()
        .flat_map(|s| s["verdicts"].as_array().unwrap())
        .filter(|v| !v.is_null())
        .count();
    let n = commits.len();
    let budget = (n as f64).log2().ceil() as usize + 3;
    assert!(
        test_runs <= budget,
        "{test_runs} test runs for {n} commits: {stderr}"
    );
    // The dashboard has the bisection's page, with how it ended.
    let id = bisection["id"].as_str().unwrap();
    let page = run(Command::new("git")
        .arg("-C")
        .arg(area.path("site.git"))
        .args(["show", &format!("gh-pages:bisect/{id}/index.html")]));
    assert!(
        page.status.success(),
        "the bisection's page is published: {stderr}"
    );
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains(&format!("first bad commit {}", &culprit[..12])),
        "{page}"
    );
    assert!(
        page.contains("<span class=\"badge bisect-skip\">skip</span>"),
        "{page}"
    );
    // Every step's runs are in the store, with their logs.
    for step in steps {
        for run_id in step["runs"].as_array().unwrap() {
            assert!(
                area.path("results")
                    .join(run_id.as_str().unwrap())
                    .join("report.json")
                    .is_file()
            );
        }
    }
    area.assert_nothing_left();
}
