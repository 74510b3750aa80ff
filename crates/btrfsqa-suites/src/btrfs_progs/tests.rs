use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btrfsqa_model::{ArtifactKind, Event, Verdict};
use btrfsqa_remote::{ExecOutput, MockRemoteHost};

use super::*;
use crate::MachineDevices;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/btrfs-progs")
            .join(name),
    )
    .unwrap()
}

fn fake_progs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    git(&["init", "-q", "-b", "master"]);
    std::fs::write(dir.join("autogen.sh"), "#!/bin/sh\n").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "btrfs-progs"]);
}

fn exec_result(code: i32, stdout: &[u8]) -> ExecOutput {
    ExecOutput {
        code: Some(code),
        stdout: stdout.to_vec(),
        ..ExecOutput::default()
    }
}

/// The case command for `case`, if `command` is one.
fn case_of(command: &str) -> Option<String> {
    let rest = command.split("exec env TEST=").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

#[tokio::test]
async fn each_case_runs_alone_after_a_cleanup_and_gets_its_own_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    fake_progs(&tmp.path().join("progs"));
    let config: BtrfsProgsConfig = serde_json::from_value(serde_json::json!({
        "git-url": tmp.path().join("progs"),
        "cache-dir": tmp.path().join("cache"),
        "suites": ["cli"],
        "exclude": ["cli/017-*"],
        "install-packages": false,
    }))
    .unwrap();
    let commands = Arc::new(Mutex::new(Vec::<String>::new()));
    let last_case = Arc::new(Mutex::new(String::new()));
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("vm-1".to_owned());
    let (seen, current) = (commands.clone(), last_case.clone());
    host.expect_exec().returning(move |request, _| {
        let command = request.command.clone();
        seen.lock().unwrap().push(command.clone());
        if command.starts_with("test -f") {
            return Ok(exec_result(0, b""));
        }
        if command.contains("cd tests/cli-tests && find") {
            return Ok(exec_result(
                0,
                b"001-btrfs\n002-balance-full-no-filters\n004-notrun\n006-no-such\n017-fi-show-missing\n",
            ));
        }
        if let Some(case) = case_of(&command) {
            *current.lock().unwrap() = case.clone();
            return Ok(match case.as_str() {
                "001-btrfs" => exec_result(0, &fixture("cli-001-btrfs.console")),
                "002-balance-full-no-filters" => exec_result(1, &fixture("cli-002-balance-full-no-filters.console")),
                "004-notrun" => exec_result(0, b"    [TEST/cli]   004-notrun\n    [NOTRUN] Need to validate root privileges\n"),
                // The script stops before the case (a missing helper).
                _ => exec_result(1, b"ERROR: cannot execute btrfs from TOP=/x\n"),
            });
        }
        if command.starts_with("stat -c %s") {
            let case = current.lock().unwrap().clone();
            return Ok(match case.as_str() {
                "001-btrfs" | "002-balance-full-no-filters" => exec_result(0, b"1000\n"),
                _ => exec_result(1, b""),
            });
        }
        Ok(exec_result(0, b""))
    });
    let current = last_case.clone();
    host.expect_download().returning(move |_remote, local| {
        let case = current.lock().unwrap().clone();
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(local, fixture(&format!("cli-{case}.results"))).unwrap();
        Ok(())
    });
    let run_dir = tmp.path().join("run");
    let mut ctx = SuiteContext::new(
        Arc::new(host),
        MachineDevices {
            name: "vm-1".into(),
            work_dir: "/srv/w".into(),
            ..MachineDevices::default()
        },
        run_dir.clone(),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    ctx.events = Arc::new(move |e| sink.lock().unwrap().push(e));

    let report = BtrfsProgsTests::new(config).run(&ctx).await.unwrap();
    let got: Vec<(&str, Verdict)> = report
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    assert_eq!(
        got,
        [
            ("cli/001-btrfs", Verdict::Pass),
            ("cli/002-balance-full-no-filters", Verdict::Fail),
            ("cli/004-notrun", Verdict::Skip),
            ("cli/006-no-such", Verdict::Error),
        ]
    );
    let failed = &report.tests[1];
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.starts_with("failed: umount ") && message.contains("target is busy"),
        "{message}"
    );
    assert_eq!(
        report.tests[2].message.as_deref(),
        Some("Need to validate root privileges")
    );
    assert!(
        report.tests[3]
            .message
            .as_deref()
            .unwrap()
            .contains("cannot execute btrfs")
    );
    for artifact in report.tests.iter().flat_map(|t| &t.artifacts) {
        assert!(run_dir.join(&artifact.path).is_file(), "{artifact:?}");
    }
    let kinds: Vec<ArtifactKind> = failed.artifacts.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [ArtifactKind::Stdout, ArtifactKind::Log]);

    // A cleanup before every case and one at the end; cases in order.
    let commands = commands.lock().unwrap();
    let cases: Vec<String> = commands.iter().filter_map(|c| case_of(c)).collect();
    assert_eq!(
        cases,
        [
            "001-btrfs",
            "002-balance-full-no-filters",
            "004-notrun",
            "006-no-such"
        ]
    );
    for (i, c) in commands.iter().enumerate() {
        if case_of(c).is_some() {
            assert!(
                commands[i - 1].contains("losetup -d"),
                "no cleanup before {c}"
            );
            assert!(c.contains("rm -f tests/cli-tests-results.txt"));
        }
    }
    assert!(commands.last().unwrap().contains("losetup -d"));
    assert_eq!(report.source.as_ref().unwrap().name, "btrfs-progs");
    let finished = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::TestFinished { .. }))
        .count();
    assert_eq!(finished, 4);
}

#[test]
fn config_defaults_validate_and_mistakes_are_named() {
    let config = BtrfsProgsConfig::default();
    assert!(config.validate().is_empty());
    assert_eq!(config.suites, ["fsck", "cli", "misc", "fuzz"]);
    let bad: BtrfsProgsConfig = serde_json::from_value(serde_json::json!({
        "git-url": "",
        "suites": ["cli", "clii", "cli"],
        "exclude": ["017"],
        "configure-args": ["rm -rf /"],
        "case-timeout-secs": 0,
    }))
    .unwrap();
    let keys: Vec<String> = bad.validate().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "git-url",
            "suites[1]",
            "suites[2]",
            "exclude[0]",
            "configure-args[0]",
            "case-timeout-secs"
        ]
    );
    assert!(serde_json::from_value::<BtrfsProgsConfig>(serde_json::json!({"suite": []})).is_err());
}

#[test]
fn selection_by_patterns() {
    let config = BtrfsProgsConfig {
        include: vec!["cli/*".into(), "misc/04?-*".into()],
        exclude: vec!["cli/017-*".into()],
        ..BtrfsProgsConfig::default()
    };
    assert!(config.selects("cli/001-btrfs"));
    assert!(!config.selects("cli/017-fi-show-missing"));
    assert!(config.selects("misc/047-raid5-convert"));
    assert!(!config.selects("misc/015-dump-super-garbage"));
    assert!(!config.selects("fsck/001-bad-file-extent-bytenr"));
    assert!(glob_match("*", ""));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b", "ac"));
}

#[test]
fn cleanup_quotes_the_tree() {
    let command = cleanup_command("/srv/w/it's here");
    assert!(
        command.starts_with("T='/srv/w/it'\\''s here';"),
        "{command}"
    );
}

/// Stands in for `tests/cli-tests.sh`: one case per directory, selected by
/// `TEST`; a case named `*fail*` fails like `_fail` and the harness's own
/// `_fail "test failed for case ..."` (both `tee -a` the results file),
/// `*hang*` never ends.
const FAKE_CLI: &str = r#"#!/bin/bash
RESULTS=tests/cli-tests-results.txt
for i in $(find tests/cli-tests -mindepth 1 -maxdepth 1 -type d ${TEST:+-name "$TEST"} | sort); do
  name=$(basename "$i")
  echo "=== START TEST $i" >> "$RESULTS"
  echo "    [TEST/cli]   $name"
  case $name in
    *hang*) sleep 60;;
    *loud*) head -c 3000 /dev/zero | tr '\0' x; echo; echo "the end of $name";;
    *fail*) echo "====== RUN CHECK /bin/false --flag" >> "$RESULTS"; echo "boom" >> "$RESULTS"
            echo "failed: /bin/false --flag" | tee -a "$RESULTS"; echo "test failed for case $name" | tee -a "$RESULTS"; exit 1;;
  esac
done
"#;

fn fake_tree(dir: &Path, cases: &[&str]) {
    fake_progs(dir);
    for case in cases {
        std::fs::create_dir_all(dir.join("tests/cli-tests").join(case)).unwrap();
        std::fs::write(dir.join("tests/cli-tests").join(case).join("test.sh"), "").unwrap();
    }
    std::fs::write(dir.join("tests/cli-tests.sh"), FAKE_CLI).unwrap();
    std::fs::write(dir.join("autogen.sh"), "#!/bin/sh\n").unwrap();
    std::fs::write(dir.join("configure"), "#!/bin/sh\n").unwrap();
    std::fs::write(dir.join("Makefile"), "all:\n\ttrue\nbtrfs-corrupt-block btrfs-find-root btrfs-select-super fssum fsstress btrfs-convert:\n\ttrue\n").unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("git add -A && git update-index --chmod=+x autogen.sh configure && git -c user.name=t -c user.email=t@t commit -q -m tree")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn local_ctx(tmp: &Path) -> SuiteContext {
    SuiteContext::new(
        Arc::new(btrfsqa_remote::LocalHost::new("local")),
        MachineDevices {
            name: "local".into(),
            work_dir: tmp.join("work").to_string_lossy().into_owned(),
            ..MachineDevices::default()
        },
        tmp.join("run"),
    )
}

fn local_config(tmp: &Path) -> BtrfsProgsConfig {
    BtrfsProgsConfig {
        git_url: tmp.join("progs").to_string_lossy().into_owned(),
        cache_dir: Some(tmp.join("cache")),
        suites: vec!["cli".into()],
        install_packages: false,
        case_timeout_secs: 2,
        ..BtrfsProgsConfig::default()
    }
}

#[tokio::test]
async fn real_processes_pass_fail_and_hang_case_by_case() {
    let tmp = tempfile::tempdir().unwrap();
    fake_tree(
        &tmp.path().join("progs"),
        &["001-pass", "002-fail", "003-hang", "004-pass"],
    );
    let ctx = local_ctx(tmp.path());
    let suite = BtrfsProgsTests::new(local_config(tmp.path()));
    suite.prepare(&ctx).await.unwrap();
    let started = std::time::Instant::now();
    let report = suite.run(&ctx).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the hung case was not stopped"
    );
    let got: Vec<(&str, Verdict)> = report
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    assert_eq!(
        got,
        [
            ("cli/001-pass", Verdict::Pass),
            ("cli/002-fail", Verdict::Fail),
            ("cli/003-hang", Verdict::Hung),
            ("cli/004-pass", Verdict::Pass),
        ]
    );
    assert_eq!(
        report.tests[1].message.as_deref(),
        Some("failed: /bin/false --flag\nboom")
    );
}

#[tokio::test]
async fn cancelling_stops_the_running_case() {
    let tmp = tempfile::tempdir().unwrap();
    fake_tree(
        &tmp.path().join("progs"),
        &["001-pass", "002-hang", "003-pass"],
    );
    let mut ctx = local_ctx(tmp.path());
    let cancel = ctx.cancel.clone();
    ctx.events = Arc::new(move |event| {
        if matches!(&event, Event::TestStarted { test, .. } if test == "cli/002-hang") {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                cancel.cancel();
            });
        }
    });
    let config = BtrfsProgsConfig {
        case_timeout_secs: 600,
        ..local_config(tmp.path())
    };
    let suite = BtrfsProgsTests::new(config);
    suite.prepare(&ctx).await.unwrap();
    let started = std::time::Instant::now();
    let err = suite.run(&ctx).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancel did not stop the case"
    );
    let SuiteError::Cancelled { partial, .. } = err else {
        panic!("{err:?}")
    };
    let got: Vec<(&str, Verdict)> = partial
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    assert_eq!(
        got,
        [
            ("cli/001-pass", Verdict::Pass),
            ("cli/002-hang", Verdict::Interrupted)
        ]
    );
}

#[tokio::test]
async fn a_long_console_keeps_its_tail_and_says_how_much_was_cut() {
    let tmp = tempfile::tempdir().unwrap();
    fake_tree(&tmp.path().join("progs"), &["001-loud"]);
    let ctx = local_ctx(tmp.path());
    let config = BtrfsProgsConfig {
        max_artifact_bytes: 1024,
        ..local_config(tmp.path())
    };
    let suite = BtrfsProgsTests::new(config);
    suite.prepare(&ctx).await.unwrap();
    let report = suite.run(&ctx).await.unwrap();
    let console = report.tests[0]
        .artifacts
        .iter()
        .find(|a| a.path.ends_with("console.log"))
        .expect("a console artifact");
    let kept = std::fs::read(ctx.run_dir.join(&console.path)).unwrap();
    // The case printed its name line, 3000 bytes and a last line: the last
    // 1024 bytes are kept, and the artifact says how many were cut.
    assert_eq!(kept.len(), 1024);
    assert!(kept.ends_with(b"the end of 001-loud\n"));
    assert!(
        console
            .truncated_bytes
            .is_some_and(|cut| cut >= 3000 - 1024),
        "{console:?}"
    );
}
