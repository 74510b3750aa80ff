//! The README's commands, run as written.

use std::path::Path;

use crate::{btrfsqa, repo_root, run, text};

/// The first fenced block of `kind` after `heading` in the README.
fn block_after(readme: &str, heading: &str, kind: &str) -> String {
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no `{heading}`"));
    let fence = format!("```{kind}\n");
    let start = readme[at..].find(&fence).unwrap() + at + fence.len();
    let end = readme[start..].find("```").unwrap() + start;
    readme[start..end].to_owned()
}

/// "Running fstests": the configuration of the README with `git-url`
/// pointing at `BTRFSQA_FSTESTS_GIT`, and its command for the local
/// provider as written, in a directory of its own; every test of every
/// profile gets a verdict of its own.
#[test]
fn the_readme_fstests_command_runs_as_written() {
    let Some(mirror) = std::env::var_os("BTRFSQA_FSTESTS_GIT") else {
        eprintln!("skipping: set BTRFSQA_FSTESTS_GIT to an fstests repository (a mirror)");
        return;
    };
    if !crate::need_root("the_readme_fstests_command_runs_as_written") {
        return;
    }
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let config: String = block_after(&readme, "### Running fstests", "toml")
        .lines()
        .map(|line| {
            if line.starts_with("git-url = ") {
                format!("git-url = \"{}\"\n", Path::new(&mirror).display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let commands = block_after(&readme, "### Running fstests", "sh");
    let command = commands
        .lines()
        .find(|l| l.contains("--provider local"))
        .unwrap();
    let command = command.split('#').next().unwrap().trim();
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args[0], "btrfsqa", "{command}");
    let profiles: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--profile")
        .map(|w| w[1])
        .collect();
    assert!(!profiles.is_empty(), "{command}");

    let dir = tempfile::Builder::new()
        .prefix("btrfsqa-readme")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(dir.path().join("fstests.toml"), &config).unwrap();
    eprintln!("fstests.toml:\n{config}\n$ {command}");
    let out = run(btrfsqa().args(&args[1..]).current_dir(dir.path()));
    let (stdout, stderr) = text(&out);
    eprintln!("{stdout}");
    // 0: all passed; 1: some test failed. Anything else is not a run.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{:?}\n{stdout}\n{stderr}",
        out.status
    );
    let results = dir.path().join("btrfsqa-results");
    let run_dir = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("report.json").is_file())
        .expect("a run in ./btrfsqa-results");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    let tests = report["suites"][0]["tests"].as_array().unwrap();
    let named: Vec<&str> = config
        .lines()
        .find(|l| l.starts_with("tests = "))
        .unwrap()
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    for profile in &profiles {
        for test in &named {
            let outcome = tests
                .iter()
                .find(|t| t["name"] == *test && t["profile"] == *profile)
                .unwrap_or_else(|| panic!("{test} under {profile} has no verdict"));
            let verdict = outcome["verdict"].as_str().unwrap();
            assert!(
                matches!(verdict, "pass" | "fail" | "skip"),
                "{test} [{profile}]: {verdict}: {}",
                outcome["message"]
            );
        }
    }
    assert_eq!(tests.len(), profiles.len() * named.len());
}
