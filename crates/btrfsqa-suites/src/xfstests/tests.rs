use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btrfsqa_model::{ArtifactKind, Event, Verdict};
use btrfsqa_remote::{ExecOutput, MockRemoteHost, OutputChunk, StreamKind};

use super::parse::ParsedTest;
use super::*;
use crate::MachineDevices;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/xfstests")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A one-commit repository standing in for fstests; returns its commit.
fn fake_fstests(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "master"]);
    std::fs::write(dir.join("check"), "#!/bin/bash\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "fstests"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn devices(scratch: usize) -> MachineDevices {
    MachineDevices {
        name: "vm-1".into(),
        test_dev: "/dev/vdb".into(),
        scratch_devs: (0..scratch)
            .map(|i| format!("/dev/vd{}", (b'c' + i as u8) as char))
            .collect(),
        work_dir: "/srv/btrfsqa".into(),
    }
}

/// The console `./check -s <section>` prints for the fixture run.
fn console(section: &str) -> String {
    format!(
        "SECTION       -- {section}\nFSTYP         -- btrfs\nPLATFORM      -- Linux/x86_64 vm 6.18.44-fc-v657\n\
         MKFS_OPTIONS  -- /dev/vdc\nMOUNT_OPTIONS -- /dev/vdc /srv/btrfsqa/fstests/scratch\n\n\
         btrfs/001         1s\nbtrfs/002         11s\ngeneric/001       2s\n\
         generic/034       [not run] This test requires dm flakey support\n\
         Ran: btrfs/001 btrfs/002 generic/001 generic/034\nNot run: generic/034\nPassed all 4 tests\n\n"
    )
}

/// `size path` lines of the fixture section directory, as `find -printf` gives them.
fn listing(section: &str, skip: &[&str]) -> String {
    let root = fixtures().join("sections").join(section);
    let mut lines = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if !skip.contains(&rel.as_str()) {
                    lines.push(format!("{} {rel}", entry.metadata().unwrap().len()));
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

fn ok(stdout: &str) -> ExecOutput {
    ExecOutput {
        code: Some(0),
        stdout: stdout.as_bytes().to_vec(),
        ..ExecOutput::default()
    }
}

/// A host that plays back the fixture run; records commands and uploads.
struct Script {
    commands: Arc<Mutex<Vec<String>>>,
    uploads: Arc<Mutex<Vec<(PathBuf, String)>>>,
    host: MockRemoteHost,
}

fn scripted(skip_files: &'static [&'static str]) -> Script {
    let commands = Arc::new(Mutex::new(Vec::new()));
    let uploads = Arc::new(Mutex::new(Vec::new()));
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("vm-1".to_owned());
    let seen = commands.clone();
    host.expect_exec().returning(move |request, sink| {
        let command = request.command.clone();
        seen.lock().unwrap().push(command.clone());
        let section = ["default", "compress", "raid56_scrub"]
            .into_iter()
            .find(|s| {
                command.contains(&format!("-s {s} ")) || command.contains(&format!("results/{s} "))
            });
        if command.starts_with("setsid -w sh -c") {
            let text = console(section.unwrap());
            for piece in text.as_bytes().chunks(7) {
                let _ = sink.as_ref().unwrap().send(OutputChunk {
                    stream: StreamKind::Stdout,
                    data: piece.to_vec(),
                });
            }
            return Ok(ok(""));
        }
        if command.contains("find . -type f -printf") {
            let section = if command.contains("results/compress") {
                "compress"
            } else {
                "default"
            };
            return Ok(ok(&listing(section, skip_files)));
        }
        Ok(ok(""))
    });
    let up = uploads.clone();
    host.expect_upload().returning(move |local, remote| {
        up.lock()
            .unwrap()
            .push((local.to_owned(), remote.to_owned()));
        Ok(())
    });
    host.expect_download().returning(|remote, local| {
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        if remote.ends_with(".btrfsqa-cut") {
            std::fs::write(local, b"head\n[... btrfsqa cut ...]\ntail\n").unwrap();
            return Ok(());
        }
        let rel = remote
            .split("/fstests/results/")
            .nth(1)
            .expect("a results path");
        std::fs::copy(fixtures().join("sections").join(rel), local).unwrap();
        Ok(())
    });
    Script {
        commands,
        uploads,
        host,
    }
}

fn config(git_url: &Path, cache: &Path) -> XfstestsConfig {
    XfstestsConfig {
        git_url: git_url.to_string_lossy().into_owned(),
        cache_dir: Some(cache.to_owned()),
        profiles: vec!["default".into(), "compress".into()],
        tests: ["btrfs/001", "btrfs/002", "generic/001", "generic/034"]
            .map(String::from)
            .to_vec(),
        install_packages: false,
        ..XfstestsConfig::default()
    }
}

struct Run {
    report: SuiteReport,
    commands: Vec<String>,
    uploads: Vec<(PathBuf, String)>,
    events: Vec<Event>,
    run_dir: tempfile::TempDir,
    commit: String,
}

async fn run_with(
    config_edit: impl FnOnce(&mut XfstestsConfig),
    scratch: usize,
    skip_files: &'static [&'static str],
) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let commit = fake_fstests(&tmp.path().join("fstests"));
    let mut cfg = config(&tmp.path().join("fstests"), &tmp.path().join("cache"));
    config_edit(&mut cfg);
    let script = scripted(skip_files);
    let run_dir = tempfile::tempdir().unwrap();
    let mut ctx = SuiteContext::new(
        Arc::new(script.host),
        devices(scratch),
        run_dir.path().to_owned(),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    ctx.events = Arc::new(move |e| sink.lock().unwrap().push(e));
    let report = Xfstests::new(cfg).run(&ctx).await.expect("run");
    let commands = script.commands.lock().unwrap().clone();
    let uploads = script.uploads.lock().unwrap().clone();
    let events = events.lock().unwrap().clone();
    Run {
        report,
        commands,
        uploads,
        events,
        run_dir,
        commit,
    }
}

#[tokio::test]
async fn a_run_gives_one_outcome_per_test_and_section_with_its_files() {
    let run = run_with(|_| {}, 5, &[]).await;
    let report = &run.report;
    assert_eq!(
        report.source.as_ref().unwrap().commit.as_deref(),
        Some(run.commit.as_str())
    );
    assert_eq!(report.source.as_ref().unwrap().name, "fstests");
    let got: Vec<(&str, &str, Verdict)> = report
        .tests
        .iter()
        .map(|t| (t.profile.as_deref().unwrap(), t.name.as_str(), t.verdict))
        .collect();
    let mut expected = Vec::new();
    for profile in ["default", "compress"] {
        expected.extend([
            (profile, "btrfs/001", Verdict::Pass),
            (profile, "btrfs/002", Verdict::Pass),
            (profile, "generic/001", Verdict::Pass),
            (profile, "generic/034", Verdict::Skip),
        ]);
    }
    assert_eq!(got, expected);
    let skipped = &report.tests[3];
    assert_eq!(
        skipped.message.as_deref(),
        Some("This test requires dm flakey support")
    );
    assert_eq!(report.tests[1].duration_secs, Some(11.0));
    assert_eq!(report.tests[0].machine.as_deref(), Some("vm-1"));
    assert!(report.tests[0].started_at.is_some());
    for test in &report.tests {
        let full = test
            .artifacts
            .iter()
            .find(|a| a.kind == ArtifactKind::Full)
            .expect("a .full");
        assert!(run.run_dir.path().join(&full.path).is_file(), "{full:?}");
        assert!(
            full.path
                .starts_with(&format!("xfstests/{}/", test.profile.as_deref().unwrap()))
        );
    }
    for artifact in &report.artifacts {
        assert!(
            run.run_dir.path().join(&artifact.path).is_file(),
            "{artifact:?}"
        );
    }
    assert!(
        report
            .artifacts
            .iter()
            .any(|a| a.path == "xfstests/compress/console.log")
    );

    // The machine got a fresh test device before the first section, then
    // one `./check -s` per section, in order, and nothing mounted at the end.
    let commands = &run.commands;
    let mkfs = commands
        .iter()
        .position(|c| c.contains("mkfs.btrfs -f -q /dev/vdb"))
        .unwrap();
    let checks: Vec<usize> = commands
        .iter()
        .enumerate()
        .filter(|(_, c)| c.starts_with("setsid"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(checks.len(), 2);
    assert!(mkfs < checks[0]);
    assert!(
        commands[checks[0]]
            .contains("./check -R xunit -s default btrfs/001 btrfs/002 generic/001 generic/034")
    );
    assert!(commands[checks[1]].contains("-s compress "));
    assert!(
        commands
            .last()
            .unwrap()
            .starts_with("umount /srv/btrfsqa/fstests/test")
    );

    let (local, remote) = &run.uploads[0];
    assert!(
        remote.ends_with("/local.config")
            && remote.starts_with("/srv/btrfsqa/btrfsqa-src/fstests-")
    );
    let uploaded = std::fs::read_to_string(local).unwrap();
    assert!(
        uploaded.contains("[compress]\nMOUNT_OPTIONS=\"-o compress=zstd\""),
        "{uploaded}"
    );

    let count = |f: fn(&Event) -> bool| run.events.iter().filter(|e| f(e)).count();
    assert_eq!(count(|e| matches!(e, Event::TestStarted { .. })), 8);
    assert_eq!(count(|e| matches!(e, Event::TestFinished { .. })), 8);
}

#[tokio::test]
async fn without_result_xml_check_log_and_the_console_give_the_verdicts() {
    let run = run_with(|_| {}, 5, &["result.xml"]).await;
    let verdicts: Vec<Verdict> = run.report.tests.iter().map(|t| t.verdict).collect();
    assert_eq!(verdicts.len(), 8);
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Skip).count(), 2);
    assert!(
        run.report
            .tests
            .iter()
            .filter(|t| t.verdict == Verdict::Pass)
            .all(|t| t.duration_secs.is_some())
    );
}

#[tokio::test]
async fn big_files_are_cut_on_the_machine_before_download() {
    let run = run_with(|c| c.max_artifact_bytes = 1024, 5, &[]).await;
    let cut: Vec<_> = run
        .report
        .tests
        .iter()
        .flat_map(|t| &t.artifacts)
        .filter(|a| a.truncated_bytes.is_some())
        .collect();
    assert!(!cut.is_empty());
    assert!(
        run.commands
            .iter()
            .any(|c| c.starts_with("{ head -c 512 ") && c.contains("tail -c 512"))
    );
    assert!(
        run.commands
            .iter()
            .any(|c| c.starts_with("rm -f ") && c.ends_with(".btrfsqa-cut"))
    );
}

#[tokio::test]
async fn a_section_that_needs_more_devices_is_reported_and_the_others_run() {
    let run = run_with(
        |c| c.profiles = vec!["raid56-scrub".into(), "default".into()],
        3,
        &[],
    )
    .await;
    let error = run.report.error.as_deref().unwrap();
    assert!(
        error.contains("section `raid56-scrub` needs 5 scratch devices, the machine has 3"),
        "{error}"
    );
    assert_eq!(run.report.tests.len(), 4);
    assert!(
        run.report
            .tests
            .iter()
            .all(|t| t.profile.as_deref() == Some("default"))
    );
}

#[tokio::test]
async fn prepare_installs_places_and_builds_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    fake_fstests(&tmp.path().join("fstests"));
    let mut cfg = config(&tmp.path().join("fstests"), &tmp.path().join("cache"));
    cfg.install_packages = true;
    let commands = Arc::new(Mutex::new(Vec::new()));
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("vm-1".to_owned());
    let seen = commands.clone();
    host.expect_exec().returning(move |request, _| {
        seen.lock().unwrap().push(request.command.clone());
        if request.command == "cat /etc/os-release" {
            return Ok(ok("ID=fedora\nVERSION_ID=41\n"));
        }
        if request.command.starts_with("test -f") {
            // Not built yet.
            return Ok(ExecOutput {
                code: Some(1),
                ..ExecOutput::default()
            });
        }
        Ok(ok(""))
    });
    host.expect_upload().times(1).returning(|local, remote| {
        assert!(local.is_file());
        assert!(remote.ends_with(".tar"));
        Ok(())
    });
    // The built tree goes to the controller's build cache.
    host.expect_download().times(1).returning(|remote, _| {
        assert!(remote.ends_with(".btrfsqa-build.tar.gz"), "{remote}");
        Ok(())
    });
    let ctx = SuiteContext::new(Arc::new(host), devices(5), tmp.path().join("run"));
    Xfstests::new(cfg).prepare(&ctx).await.unwrap();
    let commands = commands.lock().unwrap();
    let step = |needle: &str| {
        commands
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in {commands:#?}"))
    };
    let order = [
        step("cat /etc/os-release"),
        step("dnf install -y"),
        step("useradd -m -g fsgqa fsgqa"),
        step("/.btrfsqa-built ] && cat"),
        step("uname -m"),
        step("/.btrfsqa-commit 2>/dev/null || true"),
        step("tar -xf"),
        step("make -j"),
        step("tar -czf"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?} in {commands:#?}"
    );
    assert!(commands[step("dnf install")].contains("xfsprogs-devel"));
}

#[tokio::test]
async fn a_missing_ref_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    fake_fstests(&tmp.path().join("fstests"));
    let mut cfg = config(&tmp.path().join("fstests"), &tmp.path().join("cache"));
    cfg.git_ref = "no-such-branch".into();
    let ctx = SuiteContext::new(
        Arc::new(MockRemoteHost::new()),
        devices(5),
        tmp.path().join("run"),
    );
    let err = Xfstests::new(cfg).run(&ctx).await.unwrap_err();
    assert!(matches!(err, SuiteError::Config { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("`no-such-branch` is not a branch, tag or commit"),
        "{err}"
    );
}

#[test]
fn local_config_has_a_shared_section_then_one_per_profile() {
    let cfg = XfstestsConfig {
        profiles: vec![
            "default".into(),
            "compress".into(),
            "holes".into(),
            "raid56-scrub".into(),
        ],
        ..XfstestsConfig::default()
    };
    let sections = cfg.resolve().unwrap();
    let text = config::local_config(
        &sections,
        &devices(5),
        &MachineLayout::under("/srv/btrfsqa/"),
    )
    .unwrap();
    assert_eq!(
        text,
        "# Generated by btrfsqa; each run selects one section with `./check -s`.\n\
         [btrfsqa_common]\n\
         FSTYP=btrfs\n\
         TEST_DEV=/dev/vdb\n\
         TEST_DIR=/srv/btrfsqa/fstests/test\n\
         SCRATCH_MNT=/srv/btrfsqa/fstests/scratch\n\
         SCRATCH_DEV_POOL=\"/dev/vdc /dev/vdd /dev/vde /dev/vdf /dev/vdg\"\n\
         RESULT_BASE=/srv/btrfsqa/fstests/results\n\
         \n[default]\n\
         \n[compress]\n\
         MOUNT_OPTIONS=\"-o compress=zstd\"\n\
         TEST_FS_MOUNT_OPTS=\"-o compress=zstd\"\n\
         \n[holes]\n\
         MKFS_OPTIONS=\"-O ^no-holes\"\n\
         \n[raid56_scrub]\n\
         SCRATCH_DEV_POOL=\"/dev/vdc /dev/vdd /dev/vde /dev/vdf /dev/vdg\"\n"
    );
    let mut hostile = devices(5);
    hostile.test_dev = "/dev/vdb\"; rm -rf /".into();
    assert!(config::local_config(&sections, &hostile, &MachineLayout::under("/srv")).is_err());
    assert!(config::local_config(&sections, &devices(0), &MachineLayout::under("/srv")).is_err());
}

#[test]
fn check_arguments_follow_the_selection() {
    let cfg: XfstestsConfig = serde_json::from_value(serde_json::json!({
        "profiles": ["raid56-scrub"],
        "exclude-groups": ["dangerous"],
        "sections": [{"name": "lzo", "mount-options": "-o compress=lzo", "exclude-tests": ["btrfs/012"]}],
    }))
    .unwrap();
    let sections = cfg.resolve().unwrap();
    assert_eq!(
        config::check_args(&sections[0], None, None).join(" "),
        "-R xunit -s raid56_scrub -g raid,scrub -x dangerous"
    );
    assert_eq!(sections[1].exclude_tests, ["btrfs/012"]);
    assert_eq!(
        config::check_args(&sections[1], Some("/x/exclude"), None).join(" "),
        "-R xunit -s lzo -E /x/exclude -g auto -x dangerous"
    );
    let only = ["btrfs/001".to_owned(), "../../x".to_owned()];
    assert_eq!(
        config::check_args(&sections[1], None, Some(&only)).join(" "),
        "-R xunit -s lzo btrfs/001"
    );
}

#[test]
fn the_default_config_is_valid_and_runs_the_auto_group() {
    let cfg = XfstestsConfig::default();
    assert!(cfg.validate().is_empty());
    let sections = cfg.resolve().unwrap();
    assert_eq!(sections.len(), 1);
    assert_eq!(
        (sections[0].name.as_str(), sections[0].groups.clone()),
        ("default", vec!["auto".to_owned()])
    );
    assert_eq!(cfg.git_url, config::DEFAULT_GIT_URL);
    // Every built-in profile resolves, and their fstests names are distinct.
    let all = XfstestsConfig {
        profiles: PROFILES.iter().map(|p| p.name.to_owned()).collect(),
        ..XfstestsConfig::default()
    };
    assert_eq!(all.resolve().unwrap().len(), PROFILES.len());
}

#[test]
fn config_mistakes_are_named_by_key() {
    let cfg: XfstestsConfig = serde_json::from_value(serde_json::json!({
        "git-url": " ",
        "profiles": ["default", "compresion"],
        "tests": ["btrfs/001", "../etc"],
        "sections": [
            {"mount-options": "-o x"},
            {"name": "bad", "mkfs-options": "-O \"$(reboot)\""},
            {"profile": "default"},
            {"profile": "nope"},
        ],
    }))
    .unwrap();
    let issues = cfg.validate();
    let keys: Vec<&str> = issues.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "git-url",
        "profiles[1]",
        "tests[1]",
        "sections[0].name",
        "sections[1].mkfs-options",
        "sections",
        "sections[3].profile",
    ] {
        assert!(keys.contains(&key), "no `{key}` in {issues:#?}");
    }
    let message = &issues.iter().find(|(k, _)| k == "profiles[1]").unwrap().1;
    assert!(
        message.contains("unknown profile `compresion`") && message.contains("compress"),
        "{message}"
    );
    let unknown =
        serde_json::from_value::<XfstestsConfig>(serde_json::json!({"profile": ["default"]}));
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown field `profile`")
    );
}

#[test]
fn results_merge_prefers_result_xml_and_fills_gaps() {
    let t = |name: &str, verdict, secs: Option<f64>| ParsedTest {
        name: name.into(),
        verdict,
        duration_secs: secs,
        message: None,
    };
    let merged = merge_results(
        Some(vec![t("btrfs/001", Verdict::Pass, None)]),
        Some(vec![
            t("btrfs/001", Verdict::Fail, Some(3.0)),
            t("btrfs/002", Verdict::Pass, Some(1.0)),
            t("btrfs/004", Verdict::Interrupted, None),
        ]),
        vec![t("btrfs/003", Verdict::Fail, None)],
        Some(t("btrfs/004", Verdict::Hung, Some(600.0))),
    );
    let got: Vec<(&str, Verdict, Option<f64>)> = merged
        .iter()
        .map(|t| (t.name.as_str(), t.verdict, t.duration_secs))
        .collect();
    assert_eq!(
        got,
        [
            ("btrfs/001", Verdict::Pass, Some(3.0)),
            ("btrfs/002", Verdict::Pass, Some(1.0)),
            ("btrfs/004", Verdict::Hung, Some(600.0)),
            ("btrfs/003", Verdict::Fail, None),
        ]
    );
}

/// Stands in for fstests' `./check`: prints its console for three tests,
/// honours `-s` and `-E`, and hangs in the test named in the file `hang`.
const FAKE_CHECK: &str = r#"#!/bin/bash
sec=; excl=/dev/null
while [ $# -gt 0 ]; do case "$1" in -s) sec=$2; shift;; -E) excl=$2; shift;; esac; shift; done
base=$(sed -n 's/^RESULT_BASE=//p' local.config)
mkdir -p "$base/$sec/btrfs"
echo "SECTION       -- $sec"
echo
for t in btrfs/001 btrfs/002 btrfs/003; do
  printf '%-12s' "$t"
  if grep -qx "$t" "$excl"; then echo " [expunged]"; continue; fi
  echo "output of $t" > "$base/$sec/$t.full"
  if [ "$(cat hang 2>/dev/null)" = "$t" ]; then sleep 60; fi
  echo " 1s"
done
"#;

/// A fake fstests tree with [`FAKE_CHECK`], a sparse file as TEST_DEV, and a
/// context on this machine; `None` (with the reason printed) without mkfs.btrfs.
fn fake_local_run(tmp: &Path, hang: &str) -> Option<(XfstestsConfig, SuiteContext)> {
    let have_mkfs = std::process::Command::new("sh")
        .args(["-c", "command -v mkfs.btrfs"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_mkfs {
        eprintln!("skipped: no mkfs.btrfs");
        return None;
    }
    let repo = tmp.join("fstests");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "master"]);
    std::fs::write(repo.join("check"), FAKE_CHECK).unwrap();
    std::fs::write(repo.join("Makefile"), "all:\n\ttrue\n").unwrap();
    std::fs::write(repo.join("hang"), format!("{hang}\n")).unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["update-index", "--chmod=+x", "check"]);
    git(&repo, &["commit", "-q", "-m", "fake"]);
    let dev = tmp.join("test.img");
    std::fs::File::create(&dev)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    let devices = MachineDevices {
        name: "local".into(),
        test_dev: dev.to_string_lossy().into_owned(),
        scratch_devs: vec!["/dev/null".into()],
        work_dir: tmp.join("work").to_string_lossy().into_owned(),
    };
    let config = XfstestsConfig {
        tests: vec!["btrfs/001".into()],
        test_timeout_secs: Some(1),
        ..config(&repo, &tmp.join("cache"))
    };
    let config = XfstestsConfig {
        profiles: vec!["default".into()],
        ..config
    };
    let ctx = SuiteContext::new(
        Arc::new(btrfsqa_remote::LocalHost::new("local")),
        devices,
        tmp.join("run"),
    );
    Some((config, ctx))
}

#[tokio::test]
async fn a_hung_test_is_stopped_and_the_suite_stops_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((config, ctx)) = fake_local_run(tmp.path(), "btrfs/002") else {
        return;
    };
    let suite = Xfstests::new(config);
    suite.prepare(&ctx).await.unwrap();
    let started = std::time::Instant::now();
    // The runner resets the machine and hands out the rest.
    let Err(SuiteError::Hung { test, partial, .. }) = suite.run(&ctx).await else {
        panic!("the suite did not stop at the hung test");
    };
    assert_eq!(test, "btrfs/002");
    let got: Vec<(&str, Verdict)> = partial
        .tests
        .iter()
        .map(|t| (t.name.as_str(), t.verdict))
        .collect();
    assert_eq!(
        got,
        [("btrfs/001", Verdict::Pass), ("btrfs/002", Verdict::Hung)]
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the hung test was not stopped"
    );
    let hung = &partial.tests[1];
    assert_eq!(
        hung.message.as_deref(),
        Some("still running after 1 s: stopped")
    );
    assert!(hung.artifacts.iter().any(|a| a.kind == ArtifactKind::Full));
}

#[tokio::test]
async fn cancelling_stops_check_and_returns_what_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((config, mut ctx)) = fake_local_run(tmp.path(), "btrfs/002") else {
        return;
    };
    let config = XfstestsConfig {
        test_timeout_secs: None,
        ..config
    };
    let cancel = ctx.cancel.clone();
    ctx.events = Arc::new(move |event| {
        if matches!(&event, Event::TestStarted { test, .. } if test == "btrfs/002") {
            cancel.cancel();
        }
    });
    let suite = Xfstests::new(config);
    suite.prepare(&ctx).await.unwrap();
    let started = std::time::Instant::now();
    let err = suite.run(&ctx).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancel did not stop check"
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
            ("btrfs/001", Verdict::Pass),
            ("btrfs/002", Verdict::Interrupted)
        ]
    );
}

#[tokio::test]
async fn a_check_silent_outside_a_test_is_stopped_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((config, ctx)) = fake_local_run(tmp.path(), "none") else {
        return;
    };
    // Stuck before the first test, as in a mkfs that never returns.
    let repo = tmp.path().join("fstests");
    let check = FAKE_CHECK.replace("echo \"SECTION       -- $sec\"", "sleep 60");
    std::fs::write(repo.join("check"), check).unwrap();
    git(&repo, &["update-index", "--chmod=+x", "check"]);
    git(&repo, &["commit", "-q", "-m", "stuck"]);
    let suite = Xfstests::new(config);
    suite.prepare(&ctx).await.unwrap();
    let started = std::time::Instant::now();
    let report = suite.run(&ctx).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(report.tests.is_empty());
    let error = report.error.unwrap();
    assert!(
        error.contains("printed nothing for 1 s outside a test"),
        "{error}"
    );
}

#[tokio::test]
async fn a_check_that_cannot_start_is_an_error_with_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((config, ctx)) = fake_local_run(tmp.path(), "none") else {
        return;
    };
    let repo = tmp.path().join("fstests");
    std::fs::write(
        repo.join("check"),
        "#!/bin/bash\necho 'common/config: Error: $SCRATCH_DEV should be unset' >&2\nexit 1\n",
    )
    .unwrap();
    git(&repo, &["update-index", "--chmod=+x", "check"]);
    git(&repo, &["commit", "-q", "-m", "refuses"]);
    let suite = Xfstests::new(config);
    suite.prepare(&ctx).await.unwrap();
    let report = suite.run(&ctx).await.unwrap();
    let error = report.error.unwrap();
    assert!(
        error.contains("exit status 1") && error.contains("should be unset"),
        "{error}"
    );
}
