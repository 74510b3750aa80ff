//! The deployment files in the repository: systemd units for `btrfsqa
//! watch` that systemd itself accepts, and a GitHub Actions workflow whose
//! steps are the README's commands.

use std::process::Command;

use crate::{repo_root, which};

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    if !which("systemd-analyze") {
        eprintln!("skipped: no systemd-analyze (Debian's package `systemd`)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for unit in ["btrfsqa-watch.service", "btrfsqa-watch.timer"] {
        // The unit names /usr/local/bin/btrfsqa; verify checks that it is
        // executable, so the copy names the binary under test.
        let text = std::fs::read_to_string(repo_root().join("deploy/systemd").join(unit))
            .unwrap()
            .replace("/usr/local/bin/btrfsqa", env!("CARGO_BIN_EXE_btrfsqa"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("btrfsqa-watch.service"))
        .arg(dir.path().join("btrfsqa-watch.timer"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings about the host's own units are not ours.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("btrfsqa")).collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
    let service = std::fs::read_to_string(dir.path().join("btrfsqa-watch.service")).unwrap();
    assert!(service.contains("watch --once --config"));
}

#[test]
fn the_workflow_runs_on_a_schedule_and_on_push_and_its_steps_are_the_readmes() {
    let workflow = repo_root().join(".github/workflows/btrfsqa.yml");
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    // Parsed by a YAML parser (PyYAML), as GitHub would.
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&workflow)
        .output()
        .unwrap();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("No module named") {
        eprintln!("skipped: no PyYAML (Debian's package `python3-yaml`)");
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // PyYAML reads the key `on` as the boolean true.
    let on = parsed
        .get("on")
        .or_else(|| parsed.get("true"))
        .expect("triggers");
    assert!(
        on.get("push").is_some() && on.get("schedule").is_some(),
        "{on}"
    );
    let mut commands = Vec::new();
    for job in parsed["jobs"].as_object().unwrap().values() {
        for step in job["steps"].as_array().unwrap() {
            if let Some(command) = step["run"].as_str() {
                commands.push(command.trim().to_owned());
            }
        }
    }
    assert_eq!(commands, ["sudo scripts/qa-run.sh", "sudo scripts/test.sh"]);
    for command in &commands {
        assert!(
            readme.contains(command.as_str()),
            "the README does not show `{command}`"
        );
    }
}
