//! Tests of the script suite: names, configuration, discovery, verdicts, and
//! whole runs on a mock machine.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use btrfsqa_model::Event;
use btrfsqa_remote::{ExecOutput, MockRemoteHost, OutputChunk, OutputSink, StreamKind};
use tokio_util::sync::CancellationToken;

use super::outcome::verdict_for;
use super::*;
use crate::{MachineDevices, kernel_log};

fn output(code: Option<i32>, stdout: &str, stderr: &str) -> ExecOutput {
    ExecOutput {
        code,
        timed_out: false,
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
        duration: Duration::from_millis(5),
    }
}

fn write(dir: &std::path::Path, name: &str, executable: bool) {
    let path = dir.join(name);
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory with scripts `names` (executable) plus a README and a helper.
fn script_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        write(dir.path(), name, true);
    }
    write(dir.path(), "README.md", false);
    write(dir.path(), "common.sh", false);
    write(dir.path(), ".hidden_001", true);
    std::fs::create_dir(dir.path().join("010_a-directory")).unwrap();
    dir
}

fn devices() -> MachineDevices {
    MachineDevices {
        name: "m0".into(),
        test_dev: "/dev/vdb".into(),
        scratch_devs: vec!["/dev/vdc".into(), "/dev/vdd".into()],
        work_dir: "/var/tmp/bq".into(),
    }
}

/// What a script does on the fake machine.
type Behaviour = Box<dyn Fn(&ExecRequest, Option<&OutputSink>) -> ExecOutput + Send + Sync>;

/// A mock machine on which each script `name` behaves as given, and every
/// other command (checks, cleanup) succeeds. Records the commands.
/// The script a command runs, if it is a script's command.
fn script_of(command: &str) -> Option<&str> {
    let (_, rest) = command.split_once(" 2>/dev/null; ./")?;
    rest.split_once(" 9<&-; rc=$?").map(|(name, _)| name)
}

fn machine(
    behaviours: Vec<(&'static str, Behaviour)>,
) -> (MockRemoteHost, Arc<Mutex<Vec<ExecRequest>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m0".to_owned());
    host.expect_exec()
        .returning(move |req: ExecRequest, sink: Option<OutputSink>| {
            seen.lock().unwrap().push(req.clone());
            for (name, behaviour) in &behaviours {
                if script_of(&req.command) == Some(name) {
                    return Ok(behaviour(&req, sink.as_ref()));
                }
            }
            Ok(output(Some(0), "", ""))
        });
    host.expect_upload().returning(|_, _| Ok(()));
    (host, calls)
}

fn context(
    host: MockRemoteHost,
    run_dir: &std::path::Path,
) -> (SuiteContext, Arc<Mutex<Vec<Event>>>) {
    let mut ctx = SuiteContext::new(Arc::new(host), devices(), run_dir.to_owned());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    ctx.events = Arc::new(move |e| sink.lock().unwrap().push(e));
    (ctx, events)
}

#[test]
fn script_names() {
    for good in ["001_mkfs", "1_a", "042_send.receive-2", "000_x_y"] {
        assert!(is_script_name(good), "{good}");
    }
    for bad in [
        "README", "001", "001_", "_x", "a01_x", "001_a b", "001_a/b", "001-x", "",
    ] {
        assert!(!is_script_name(bad), "{bad}");
    }
    let mut names = vec!["10_b", "002_a", "9_c", "002_0", "0100_z"];
    names.sort_by_key(|n| order_key(n));
    assert_eq!(names, ["002_0", "002_a", "9_c", "10_b", "0100_z"]);
}

#[test]
fn config_parses_kebab_case_with_defaults() {
    let config: ScriptSuiteConfig = toml_like(r#"{"dir": "suites/smoke"}"#);
    assert_eq!(config, ScriptSuiteConfig::new("suites/smoke"));
    assert_eq!(config.timeout_secs, None);
    assert_eq!(
        ScriptSuiteConfig::default_timeout(),
        Duration::from_secs(300)
    );
    let config: ScriptSuiteConfig = toml_like(
        r#"{"dir": "d", "timeout-secs": 10, "timeouts": {"001_a": 2}, "env": {"X": "1"}}"#,
    );
    assert_eq!(
        config.configured_timeout("001_a"),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        config.configured_timeout("002_b"),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        ScriptSuiteConfig::new("d").configured_timeout("001_a"),
        None
    );
    let err =
        serde_json::from_str::<ScriptSuiteConfig>(r#"{"dir": "d", "timeout": 3}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
}

fn toml_like(json: &str) -> ScriptSuiteConfig {
    serde_json::from_str(json).unwrap()
}

#[test]
fn config_validation_names_keys() {
    let mut config = ScriptSuiteConfig::new("d");
    assert!(config.validate().is_empty());
    config.timeout_secs = Some(0);
    config.timeouts.insert("001_a".into(), 0);
    config.timeouts.insert("README".into(), 5);
    config.env.insert("TEST_DEV".into(), "x".into());
    config.env.insert("1BAD".into(), "x".into());
    config.env.insert("GOOD_1".into(), "x".into());
    let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "timeout-secs",
            "timeouts.001_a",
            "timeouts.README",
            "env.1BAD",
            "env.TEST_DEV"
        ]
    );
}

#[test]
fn discovery_orders_scripts_and_ignores_other_files() {
    let dir = script_dir(&["002_b", "010_c", "001_a"]);
    write(dir.path(), "003_not-exec", false);
    let suite = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()));
    let scripts = suite.scripts().unwrap();
    let names: Vec<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["001_a", "002_b", "003_not-exec", "010_c"]);
    assert!(!scripts[2].executable && scripts[0].executable);
}

#[test]
fn missing_empty_or_mistyped_dirs_are_config_errors() {
    let suite = ScriptSuite::new(
        "smoke",
        ScriptSuiteConfig::new("/nonexistent/btrfsqa-scripts"),
    );
    let err = suite.scripts().unwrap_err();
    assert!(matches!(err, SuiteError::Config { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/btrfsqa-scripts"),
        "{err}"
    );

    let empty = script_dir(&[]);
    let err = ScriptSuite::new("smoke", ScriptSuiteConfig::new(empty.path()))
        .scripts()
        .unwrap_err();
    assert!(
        err.to_string().contains(&*empty.path().to_string_lossy()),
        "{err}"
    );
    assert!(err.to_string().contains("no scripts"), "{err}");

    let dir = script_dir(&["001_a"]);
    let mut config = ScriptSuiteConfig::new(dir.path());
    config.timeouts.insert("002_typo".into(), 5);
    let err = ScriptSuite::new("smoke", config).scripts().unwrap_err();
    assert!(
        err.to_string()
            .contains("`timeouts.002_typo` names no script"),
        "{err}"
    );

    let err = ScriptSuite::new("../up", ScriptSuiteConfig::new(dir.path()))
        .scripts()
        .unwrap_err();
    assert!(matches!(err, SuiteError::Config { .. }), "{err:?}");
}

#[test]
fn exit_codes_map_to_verdicts() {
    let timeout = Duration::from_secs(30);
    let none = None;
    assert_eq!(
        verdict_for(&output(Some(0), "", ""), timeout, &none),
        (Verdict::Pass, None)
    );
    let (v, m) = verdict_for(&output(Some(77), "", ""), timeout, &Some("no frob".into()));
    assert_eq!((v, m.as_deref()), (Verdict::Skip, Some("no frob")));
    let (v, m) = verdict_for(&output(Some(77), "", ""), timeout, &none);
    assert_eq!(
        (v, m.as_deref()),
        (Verdict::Skip, Some("skipped (exit 77)"))
    );
    let stderr = "1\n2\n3\n4\n5\n6\nlast\n";
    let (v, m) = verdict_for(&output(Some(2), "out", stderr), timeout, &none);
    let m = m.unwrap();
    assert_eq!(v, Verdict::Fail);
    assert!(m.starts_with("exited with code 2; stderr:\n"), "{m}");
    assert!(m.ends_with("4\n5\n6\nlast") && !m.contains("\n2\n"), "{m}");
    let (_, m) = verdict_for(&output(Some(1), "only stdout\n", ""), timeout, &none);
    assert!(m.unwrap().contains("(no stderr); stdout:\nonly stdout"));
    let (v, m) = verdict_for(&output(None, "", ""), timeout, &none);
    assert_eq!(v, Verdict::Fail);
    assert!(m.unwrap().contains("killed by a signal"));
    let mut hung = output(None, "", "");
    hung.timed_out = true;
    let (v, m) = verdict_for(&hung, timeout, &none);
    assert_eq!(v, Verdict::Hung);
    assert!(m.unwrap().contains("timeout of 30 s"));
}

#[tokio::test]
async fn prepare_uploads_everything_and_sets_modes() {
    let dir = script_dir(&["001_a", "002_b"]);
    let uploads = Arc::new(Mutex::new(Vec::new()));
    let seen = uploads.clone();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let exec_calls = calls.clone();
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m0".to_owned());
    host.expect_exec().returning(move |req: ExecRequest, _| {
        exec_calls.lock().unwrap().push(req);
        Ok(output(Some(0), "", ""))
    });
    host.expect_upload().returning(move |local, remote| {
        seen.lock().unwrap().push((
            local.file_name().unwrap().to_string_lossy().into_owned(),
            remote.to_owned(),
        ));
        Ok(())
    });
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, run.path());
    ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
        .prepare(&ctx)
        .await
        .unwrap();
    let uploads = uploads.lock().unwrap();
    let remote: Vec<&str> = uploads.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        remote,
        [
            "/var/tmp/bq/scripts/smoke/001_a",
            "/var/tmp/bq/scripts/smoke/002_b",
            "/var/tmp/bq/scripts/smoke/README.md",
            "/var/tmp/bq/scripts/smoke/common.sh",
        ]
    );
    let calls = calls.lock().unwrap();
    assert!(
        calls[0]
            .command
            .starts_with("rm -rf /var/tmp/bq/scripts/smoke && mkdir -p"),
        "{:?}",
        calls[0]
    );
    let chmod = &calls[1].command;
    assert!(
        chmod.contains("chmod 755 /var/tmp/bq/scripts/smoke/001_a /var/tmp/bq/scripts/smoke/002_b")
            && chmod.contains("chmod 644 /var/tmp/bq/scripts/smoke/README.md"),
        "{chmod}"
    );
}

#[tokio::test]
async fn scripts_run_in_order_with_their_verdicts_and_artifacts() {
    let dir = script_dir(&["003_hang", "001_pass", "002_skip", "004_fail"]);
    write(dir.path(), "005_noexec", false);
    let (host, calls) = machine(vec![
        (
            "001_pass",
            Box::new(|req: &ExecRequest, _: Option<&OutputSink>| {
                let env: BTreeMap<_, _> = req.env.iter().cloned().collect();
                assert_eq!(env["TEST_DEV"], "/dev/vdb");
                assert_eq!(env["SCRATCH_DEV_POOL"], "/dev/vdc /dev/vdd");
                assert_eq!(env["SCRATCH_DEV"], "/dev/vdc");
                assert_eq!(env["TEST_DIR"], "/var/tmp/bq/mnt/test");
                assert_eq!(env["SCRATCH_MNT"], "/var/tmp/bq/mnt/scratch");
                assert_eq!(env["BTRFSQA_TEST"], "001_pass");
                assert_eq!(env["BTRFSQA_WORK_DIR"], "/var/tmp/bq");
                assert_eq!(env["MY_VAR"], "x y");
                assert_eq!(req.cwd.as_deref(), Some("/var/tmp/bq/scripts/smoke"));
                assert_eq!(req.timeout, Some(Duration::from_secs(300)));
                output(Some(0), "fine\n", "")
            }) as Behaviour,
        ),
        (
            "002_skip",
            Box::new(|_: &ExecRequest, sink: Option<&OutputSink>| {
                // Streamed in this order: the reason comes last, on stderr.
                let sink = sink.expect("a sink");
                sink.send(OutputChunk {
                    stream: StreamKind::Stdout,
                    data: b"checking\n".to_vec(),
                })
                .unwrap();
                sink.send(OutputChunk {
                    stream: StreamKind::Stderr,
                    data: b"no frobnicator\n".to_vec(),
                })
                .unwrap();
                output(Some(77), "checking\n", "no frobnicator\n")
            }),
        ),
        (
            "003_hang",
            Box::new(|req: &ExecRequest, _: Option<&OutputSink>| {
                assert_eq!(req.timeout, Some(Duration::from_secs(7)));
                ExecOutput {
                    timed_out: true,
                    ..output(None, "started\n", "")
                }
            }),
        ),
        (
            "004_fail",
            Box::new(|_: &ExecRequest, _: Option<&OutputSink>| output(Some(1), "", "boom\n")),
        ),
    ]);
    let run = tempfile::tempdir().unwrap();
    let (ctx, events) = context(host, run.path());
    let mut config = ScriptSuiteConfig::new(dir.path());
    config.timeouts.insert("003_hang".into(), 7);
    config.env.insert("MY_VAR".into(), "x y".into());
    let suite = ScriptSuite::new("smoke", config);
    // The suite stops after the hung test; the runner resets the machine
    // and runs it again without the finished tests, as done here.
    let Err(SuiteError::Hung { test, partial, .. }) = suite.run(&ctx).await else {
        panic!("a hung script stops the suite");
    };
    assert_eq!(test, "003_hang");
    let mut report = *partial;
    let mut again = ctx.clone();
    again.skip = report.tests.iter().map(|t| t.name.clone()).collect();
    report.tests.extend(suite.run(&again).await.unwrap().tests);

    let verdicts: Vec<(&str, Verdict)> = report
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("001_pass", Verdict::Pass),
            ("002_skip", Verdict::Skip),
            ("003_hang", Verdict::Hung),
            ("004_fail", Verdict::Fail),
            ("005_noexec", Verdict::Error),
        ]
    );
    assert_eq!(report.tests[1].message.as_deref(), Some("no frobnicator"));
    assert!(report.tests[2].message.as_deref().unwrap().contains("7 s"));
    assert!(
        report.tests[3]
            .message
            .as_deref()
            .unwrap()
            .contains("code 1; stderr:\nboom")
    );
    assert!(
        report.tests[4]
            .message
            .as_deref()
            .unwrap()
            .contains("not executable")
    );
    assert!(
        report
            .tests
            .iter()
            .all(|t| t.duration_secs.is_some() && t.machine.as_deref() == Some("m0"))
    );

    let pass = &report.tests[0];
    assert_eq!(pass.artifacts.len(), 1, "empty stderr is not kept");
    assert_eq!(pass.artifacts[0].path, "smoke/001_pass/stdout");
    assert_eq!(
        std::fs::read_to_string(run.path().join("smoke/001_pass/stdout")).unwrap(),
        "fine\n"
    );
    let skip_files: Vec<&str> = report.tests[1]
        .artifacts
        .iter()
        .map(|a| a.path.as_str())
        .collect();
    assert_eq!(
        skip_files,
        ["smoke/002_skip/stdout", "smoke/002_skip/stderr"]
    );
    assert_eq!(report.tests[1].artifacts[1].truncated_bytes, None);

    // Every script's command cleans up after it; only the one that
    // timed out (and was killed with its cleanup) needed a command of
    // its own. The one that is not executable never ran.
    let calls = calls.lock().unwrap();
    let ran: Vec<&str> = calls.iter().filter_map(|c| script_of(&c.command)).collect();
    assert_eq!(ran, ["001_pass", "002_skip", "003_hang", "004_fail"]);
    assert!(
        calls
            .iter()
            .filter(|c| script_of(&c.command).is_some())
            .all(|c| c.command.contains("/proc/self/mountinfo"))
    );
    let separate_cleanups = calls
        .iter()
        .filter(|c| script_of(&c.command).is_none())
        .filter(|c| c.command.contains("/proc/self/mountinfo"))
        .count();
    assert_eq!(separate_cleanups, 1);
    let script_call = calls
        .iter()
        .find(|c| script_of(&c.command) == Some("001_pass"))
        .unwrap();
    assert!(
        script_call
            .command
            .starts_with("echo $$ > /var/tmp/bq/scripts/smoke.pid || exit 125; ")
    );

    let events = events.lock().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::TestStarted { .. } => "start",
            Event::TestFinished { .. } => "finish",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["start", "finish"].repeat(5));
}

#[tokio::test]
async fn only_selected_scripts_run() {
    let dir = script_dir(&["001_a", "002_b", "003_c"]);
    let (host, calls) = machine(vec![]);
    let run = tempfile::tempdir().unwrap();
    let (mut ctx, _) = context(host, run.path());
    ctx.only = Some(vec!["002_b".into(), "999_absent".into()]);
    let report = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
        .run(&ctx)
        .await
        .unwrap();
    let names: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["002_b"]);
    assert!(
        !calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.command.contains("001_a"))
    );
}

#[tokio::test]
async fn cancel_between_scripts_returns_the_partial_report() {
    let dir = script_dir(&["001_a", "002_b", "003_c"]);
    let token = CancellationToken::new();
    let trigger = token.clone();
    let (host, calls) = machine(vec![(
        "001_a",
        Box::new(move |_: &ExecRequest, _: Option<&OutputSink>| {
            trigger.cancel();
            output(Some(0), "", "")
        }),
    )]);
    let run = tempfile::tempdir().unwrap();
    let (mut ctx, events) = context(host, run.path());
    ctx.cancel = token;
    let err = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
        .run(&ctx)
        .await
        .unwrap_err();
    let SuiteError::Cancelled { partial, suite } = err else {
        panic!("{err:?}")
    };
    assert_eq!(suite, "smoke");
    let names: Vec<(&str, Verdict)> = partial
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    assert_eq!(names, [("001_a", Verdict::Pass)]);
    assert!(
        !calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.command.contains("002_b"))
    );
    // The script that finished still had its cleanup.
    assert!(
        calls
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .command
            .contains("/proc/self/mountinfo")
    );
    assert_eq!(events.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_kernel_log_of_a_test_is_scanned_and_kept_out_of_its_stderr() {
    let dir = script_dir(&["001_warns", "002_quiet"]);
    let block = |records: &str| {
        format!(
            "own line\n\n{}\n{records}{}\n",
            kernel_log::BEGIN_MARKER,
            kernel_log::END_MARKER
        )
    };
    let warns =
        block("4,7,100,-;WARNING: CPU: 0 PID: 1 at fs/btrfs/disk-io.c:4500 close_ctree+0x1/0x2\n");
    let quiet = block("6,8,200,-;BTRFS info (device vdc): using crc32c\n");
    let (host, _) = machine(vec![
        (
            "001_warns",
            Box::new(move |_: &ExecRequest, _: Option<&OutputSink>| output(Some(0), "", &warns)),
        ),
        (
            "002_quiet",
            Box::new(move |_: &ExecRequest, _: Option<&OutputSink>| output(Some(0), "", &quiet)),
        ),
    ]);
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, run.path());
    let report = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
        .run(&ctx)
        .await
        .unwrap();
    let warned = &report.tests[0];
    assert_eq!(warned.verdict, Verdict::Fail);
    assert_eq!(
        warned.kernel_log,
        ["WARNING: CPU: 0 PID: 1 at fs/btrfs/disk-io.c:4500 close_ctree+0x1/0x2"]
    );
    let stderr = std::fs::read_to_string(run.path().join("smoke/001_warns/stderr")).unwrap();
    assert_eq!(stderr, "own line\n");
    let dmesg = std::fs::read_to_string(run.path().join("smoke/001_warns/dmesg")).unwrap();
    assert!(dmesg.contains("close_ctree"), "{dmesg}");
    let quiet = &report.tests[1];
    assert_eq!(quiet.verdict, Verdict::Pass);
    assert!(quiet.kernel_log.is_empty());
    assert!(!run.path().join("smoke/002_quiet/dmesg").exists());
}

#[tokio::test]
async fn leftover_mounts_are_reported() {
    let dir = script_dir(&["001_a"]);
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m0".to_owned());
    host.expect_exec().returning(|req: ExecRequest, _| {
        // The cleanup in the script's command reports on stderr.
        let stderr = if script_of(&req.command) == Some("001_a") {
            "btrfsqa: left mounted: /var/tmp/bq/mnt/test\n"
        } else {
            ""
        };
        Ok(output(Some(0), "", stderr))
    });
    let run = tempfile::tempdir().unwrap();
    let (ctx, events) = context(host, run.path());
    ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
        .run(&ctx)
        .await
        .unwrap();
    let events = events.lock().unwrap();
    let warning = events.iter().find_map(|e| match e {
        Event::Warning { message, .. } => Some(message.clone()),
        _ => None,
    });
    assert_eq!(
        warning.as_deref(),
        Some("suite `smoke`: `001_a` left `/var/tmp/bq/mnt/test` mounted; unmounted")
    );
}

#[tokio::test]
async fn a_script_missing_on_the_machine_is_an_error() {
    let dir = script_dir(&["001_a"]);
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m0".to_owned());
    host.expect_exec().returning(|req: ExecRequest, _| {
        // A shell says 127 when the script is not there; the check then
        // tells a missing script from a script that exits 127.
        let code = if req.command.contains("test -x") {
            3
        } else if script_of(&req.command) == Some("001_a") {
            127
        } else {
            0
        };
        Ok(output(Some(code), "", ""))
    });
    let run = tempfile::tempdir().unwrap();
    let (ctx, _) = context(host, run.path());
    let report = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
        .run(&ctx)
        .await
        .unwrap();
    assert_eq!(report.tests[0].verdict, Verdict::Error);
    assert!(
        report.tests[0]
            .message
            .as_deref()
            .unwrap()
            .contains("did prepare run?")
    );
}

#[tokio::test]
async fn a_machine_failure_stops_the_suite() {
    let dir = script_dir(&["001_a", "002_b"]);
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m0".to_owned());
    host.expect_exec().returning(|req: ExecRequest, _| {
        Err(RemoteError::Disconnected {
            host: "m0".into(),
            command: req.command,
            source: "gone".into(),
        })
    });
    let run = tempfile::tempdir().unwrap();
    let (ctx, events) = context(host, run.path());
    let err = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
        .run(&ctx)
        .await
        .unwrap_err();
    assert!(matches!(err, SuiteError::Remote { .. }), "{err:?}");
    // The started test was closed with an error outcome.
    assert_eq!(events.lock().unwrap().len(), 2);
}
