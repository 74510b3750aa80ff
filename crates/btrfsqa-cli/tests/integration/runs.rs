//! Whole runs on the `local` provider: loop devices, btrfs, git, signals.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{btrfsqa, need_root, repo_root, run, text};

/// A scratch area: results store, provider work dir, site repo, config.
pub(crate) struct Area {
    dir: tempfile::TempDir,
}

impl Area {
    pub(crate) fn new() -> Area {
        // /var/tmp: the loop devices' backing files must not live on a small tmpfs.
        let dir = tempfile::Builder::new()
            .prefix("btrfsqa-it-")
            .tempdir_in("/var/tmp")
            .unwrap();
        Area { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn config(&self, suites: &str, extra: &str) -> PathBuf {
        let text = format!(
            r#"[run]
provider = "local"
suites = [{suites}]
results-dir = "results"

[machine]
data-devices = 6
device-size-gib = 2

[providers.local]
work-dir = "work"

[publish]
site-repo = "site.git"
{extra}"#
        );
        let file = self.path("btrfsqa.toml");
        std::fs::write(&file, text).unwrap();
        file
    }

    pub(crate) fn scripts(&self, name: &str, scripts: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, body) in scripts {
            let path = dir.join(file);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    pub(crate) fn report(&self) -> serde_json::Value {
        let results = self.path("results");
        let run = std::fs::read_dir(&results)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.path().join("report.json").is_file())
            .expect("a run directory with report.json");
        serde_json::from_slice(&std::fs::read(run.path().join("report.json")).unwrap()).unwrap()
    }

    /// Fails when any loop device, mount or backing file of the area remains.
    pub(crate) fn assert_nothing_left(&self) {
        let work = self.path("work");
        let loops = std::process::Command::new("losetup")
            .args(["-l", "-n", "-O", "NAME,BACK-FILE"])
            .output()
            .unwrap();
        let loops = String::from_utf8_lossy(&loops.stdout);
        let ours: Vec<_> = loops
            .lines()
            .filter(|l| l.contains(work.to_str().unwrap()))
            .collect();
        assert!(ours.is_empty(), "loop devices left: {ours:?}");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let ours: Vec<_> = mounts
            .lines()
            .filter(|l| l.contains(work.to_str().unwrap()))
            .collect();
        assert!(ours.is_empty(), "mounts left: {ours:?}");
        let images: Vec<_> = walk(&work)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "img"))
            .collect();
        assert!(images.is_empty(), "backing files left: {images:?}");
    }

    pub(crate) fn site_log(&self) -> String {
        let out = run(std::process::Command::new("git")
            .arg("-C")
            .arg(self.path("site.git"))
            .args(["log", "--oneline", "gh-pages"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // A failed test must not leave loop devices behind for the next one.
        let _ = btrfsqa()
            .args(["reap", "--config"])
            .arg(self.path("btrfsqa.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// `(name, verdict)` pairs as [`verdicts`] gives them.
pub(crate) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

pub(crate) fn verdicts(report: &serde_json::Value) -> Vec<(String, String)> {
    report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tests"].as_array().unwrap().iter())
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_script_suite_run_reports_each_test_publishes_and_leaves_nothing() {
    if !need_root("a_script_suite_run_reports_each_test_publishes_and_leaves_nothing") {
        return;
    }
    let area = Area::new();
    area.scripts(
        "checks",
        &[
            ("001_mkfs-mount", "mkfs.btrfs -q -f \"$TEST_DEV\" && mount \"$TEST_DEV\" \"$TEST_DIR\" && echo hi > \"$TEST_DIR/f\" && umount \"$TEST_DIR\""),
            ("002_fails", "echo 'expected 1, got 2' >&2; exit 1"),
            ("003_skips", "echo 'no null_blk here'; exit 77"),
            ("004_left-mounted", "mkfs.btrfs -q -f \"$SCRATCH_DEV\" && mount \"$SCRATCH_DEV\" \"$SCRATCH_MNT\""),
            ("README.md", "not a test"),
        ],
    );
    let config = area.config(
        "\"checks\"",
        "\n[suites.scripts.checks]\ndir = \"checks\"\ntimeout-secs = 60\n",
    );
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one test fails\n{stdout}\n{stderr}"
    );
    let report = area.report();
    assert_eq!(
        verdicts(&report),
        [
            ("001_mkfs-mount".into(), "pass".into()),
            ("002_fails".into(), "fail".into()),
            ("003_skips".into(), "skip".into()),
            ("004_left-mounted".into(), "pass".into()),
        ]
    );
    assert_eq!(report["status"], "completed");
    assert!(report["provenance"]["kernel"]["release"].as_str().is_some());
    assert!(
        stdout.contains("002_fails"),
        "the summary names the failure: {stdout}"
    );
    assert_eq!(
        area.site_log().lines().count(),
        1,
        "one commit in the site repository"
    );
    area.assert_nothing_left();
}

#[test]
fn the_default_raid56_scrub_suite_reports_every_scenario() {
    if !need_root("the_default_raid56_scrub_suite_reports_every_scenario") {
        return;
    }
    let area = Area::new();
    let config = area.config("\"raid56-scrub\"", "");
    let out = run(btrfsqa()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--message-format", "json"]));
    let (stdout, stderr) = text(&out);
    let report = area.report();
    let verdicts = verdicts(&report);
    assert!(
        verdicts.len() >= 4,
        "each scenario is its own test: {verdicts:?}\n{stderr}"
    );
    assert!(
        verdicts.iter().all(|(_, v)| v == "pass"),
        "{verdicts:?}\n{stdout}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // --message-format json: every stdout line is one event.
    for line in stdout.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(event["event"].is_string());
    }
    area.assert_nothing_left();
}

pub(crate) fn spawn_run(config: &Path) -> Child {
    btrfsqa()
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run's journal shows `needle`.
pub(crate) fn wait_for_journal(area: &Area, needle: &str) {
    wait_for_journal_within(area, needle, Duration::from_secs(60));
}

/// Waits up to `limit` until the run's journal shows `needle`.
pub(crate) fn wait_for_journal_within(area: &Area, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        for path in walk(&area.path("results")) {
            if path.ends_with("journal.jsonl")
                && std::fs::read_to_string(&path).is_ok_and(|j| j.contains(needle))
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the journal never showed {needle}");
}

fn interrupted_run_is_torn_down(signal: &str) {
    let area = Area::new();
    area.scripts(
        "slow",
        &[
            ("001_quick", "true"),
            (
                "002_sleeps",
                "mkfs.btrfs -q -f \"$TEST_DEV\" && mount \"$TEST_DEV\" \"$TEST_DIR\" && sleep 600",
            ),
            ("003_never", "true"),
        ],
    );
    let config = area.config("\"slow\"", "\n[suites.scripts.slow]\ndir = \"slow\"\n");
    let child = spawn_run(&config);
    wait_for_journal(&area, "\"test\":\"002_sleeps\"");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "teardown took {:?}",
        started.elapsed()
    );
    let report = area.report();
    assert_eq!(report["status"], "interrupted");
    assert_eq!(
        verdicts(&report),
        [
            ("001_quick".into(), "pass".into()),
            ("002_sleeps".into(), "interrupted".into())
        ]
    );
    area.assert_nothing_left();
}

#[test]
fn sigint_interrupts_tears_down_and_keeps_results() {
    if need_root("sigint_interrupts_tears_down_and_keeps_results") {
        interrupted_run_is_torn_down("-INT");
    }
}

#[test]
fn sigterm_interrupts_tears_down_and_keeps_results() {
    if need_root("sigterm_interrupts_tears_down_and_keeps_results") {
        interrupted_run_is_torn_down("-TERM");
    }
}

#[test]
fn sighup_interrupts_tears_down_and_keeps_results() {
    // A closed terminal or ssh session: the same as SIGTERM.
    if need_root("sighup_interrupts_tears_down_and_keeps_results") {
        interrupted_run_is_torn_down("-HUP");
    }
}

/// The processes whose command line mentions `needle` (other than ours).
pub(crate) fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

/// `btrfsqa run --message-format json | head -1`: the reader goes away
/// after the first line. The run goes on to its end without stdout (no
/// panic, no message about a broken pipe), tears down, keeps its results
/// and exits with its usual code.
#[test]
fn a_closed_stdout_neither_panics_nor_stops_the_teardown() {
    if !need_root("a_closed_stdout_neither_panics_nor_stops_the_teardown") {
        return;
    }
    let area = Area::new();
    area.scripts(
        "quick",
        &[
            ("001_mkfs", "mkfs.btrfs -q -f \"$TEST_DEV\" && mount \"$TEST_DEV\" \"$TEST_DIR\" && umount \"$TEST_DIR\""),
            ("002_ok", "echo fine"),
            ("003_ok", "sleep 1"),
        ],
    );
    let config = area.config("\"quick\"", "\n[suites.scripts.quick]\ndir = \"quick\"\n");
    let mut child = btrfsqa()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--message-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `head -1`: one line, then the reader is gone.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    drop(stdout);
    assert!(first.contains("\"event\":\"run-started\""), "{first}");
    let out = child.wait_with_output().unwrap();
    let (_, stderr) = text(&out);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report = area.report();
    assert_eq!(report["status"], "completed", "{stderr}");
    assert_eq!(verdicts(&report).len(), 3);
    area.assert_nothing_left();
    let left = processes_mentioning(area.path("quick").to_str().unwrap());
    assert!(left.is_empty(), "processes left: {left:?}");
}

#[test]
fn reap_removes_what_a_killed_controller_left() {
    if !need_root("reap_removes_what_a_killed_controller_left") {
        return;
    }
    let area = Area::new();
    area.scripts("slow", &[("001_sleeps", "sleep 600")]);
    let config = area.config("\"slow\"", "\n[suites.scripts.slow]\ndir = \"slow\"\n");
    let mut child = spawn_run(&config);
    wait_for_journal(&area, "\"test\":\"001_sleeps\"");
    child.kill().unwrap(); // SIGKILL: no teardown possible
    child.wait().unwrap();
    let _ = std::process::Command::new("pkill")
        .args(["-f", "001_sleeps"])
        .status();

    let out = run(btrfsqa()
        .args(["reap", "--dry-run", "--config"])
        .arg(&config));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("would delete"), "{stdout}");
    assert!(stdout.contains("loop"), "{stdout}");

    let out = run(btrfsqa().args(["reap", "--config"]).arg(&config));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    area.assert_nothing_left();
}

#[test]
fn the_readme_scripts_exist_and_are_executable() {
    for script in ["scripts/qa-run.sh", "scripts/test.sh", ".ci/run"] {
        let path = repo_root().join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|_| panic!("{script} missing"))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
    }
}

#[test]
fn a_run_sharded_over_two_machines_reports_what_one_machine_reports() {
    if !need_root("a_run_sharded_over_two_machines_reports_what_one_machine_reports") {
        return;
    }
    let scripts: &[(&str, &str)] = &[
        ("001_mkfs", "mkfs.btrfs -q -f \"$TEST_DEV\""),
        (
            "002_raid1",
            "mkfs.btrfs -q -f -d raid1 -m raid1 $SCRATCH_DEV_POOL && mount \"$SCRATCH_DEV\" \"$SCRATCH_MNT\" && umount \"$SCRATCH_MNT\"",
        ),
        ("003_fails", "echo broken >&2; exit 1"),
        ("004_skips", "echo 'not here'; exit 77"),
        ("005_slow", "sleep 1"),
        ("006_slow", "sleep 1"),
    ];
    let mut reports = Vec::new();
    for shards in ["1", "2"] {
        let area = Area::new();
        area.scripts("mix", scripts);
        let config = area.config("\"mix\"", "\n[suites.scripts.mix]\ndir = \"mix\"\n");
        let out = run(btrfsqa()
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(["--shards", shards]));
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "shards={shards}\n{stdout}\n{stderr}"
        );
        let report = area.report();
        let machines: std::collections::BTreeSet<String> = report["suites"][0]["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["machine"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(machines.len().to_string(), shards, "{machines:?}");
        assert_eq!(
            report["provenance"]["machines"]
                .as_array()
                .unwrap()
                .len()
                .to_string(),
            shards
        );
        area.assert_nothing_left();
        reports.push(verdicts(&report));
    }
    assert_eq!(
        reports[0], reports[1],
        "the merged report differs from one machine's"
    );
}

#[test]
fn resume_runs_only_the_tests_without_a_verdict() {
    if !need_root("resume_runs_only_the_tests_without_a_verdict") {
        return;
    }
    let area = Area::new();
    area.scripts(
        "slow",
        &[
            ("001_quick", "true"),
            ("002_sleeps", "sleep 600"),
            ("003_after", "true"),
        ],
    );
    let config = area.config("\"slow\"", "\n[suites.scripts.slow]\ndir = \"slow\"\n");
    let child = spawn_run(&config);
    wait_for_journal(&area, "\"test\":\"002_sleeps\"");
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let run_id = area.report()["run_id"].as_str().unwrap().to_owned();

    // The cause of the hang is fixed; the run goes on where it stopped.
    area.scripts("slow", &[("002_sleeps", "true")]);
    let out = run(btrfsqa().args(["resume", &run_id, "--config"]).arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report = area.report();
    assert_eq!(report["run_id"], run_id.as_str());
    assert_eq!(report["status"], "completed");
    assert_eq!(
        verdicts(&report),
        [
            ("001_quick".into(), "pass".into()),
            ("002_sleeps".into(), "pass".into()),
            ("003_after".into(), "pass".into()),
        ]
    );
    let journal =
        std::fs::read_to_string(area.path("results").join(&run_id).join("journal.jsonl")).unwrap();
    assert_eq!(
        journal.matches("\"test\":\"001_quick\"").count(),
        1,
        "a finished test ran again"
    );
    area.assert_nothing_left();
}
