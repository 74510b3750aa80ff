//! A kernel bisection with the build and the boot mocked: each step's run
//! goes through the real kernel stage (fetch, configure, build, store, boot
//! on a VM-like provider, `uname -r` check) against mocks, and a suite that
//! fails on the kernels from the culprit on.

// SuiteError carries RemoteError (the contract); mocks return it by value.
#![expect(clippy::result_large_err)]

use std::sync::{Arc, Mutex};

use btrfsqa_cloud::{Access, Machine, MachineSpec, MockCloudProvider};
use btrfsqa_model::{SuiteReport, TestOutcome};
use btrfsqa_remote::{ExecOutput, MockRemoteHost, RemoteHost};
use btrfsqa_suites::{MockTestSuite, TestList, TestSuite};

use super::*;
use crate::connect::MockConnector;
use crate::{ConfigSource, RunOverrides};

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn ok(stdout: &str) -> Result<ExecOutput, btrfsqa_remote::RemoteError> {
    Ok(ExecOutput {
        code: Some(0),
        stdout: stdout.as_bytes().to_vec(),
        ..ExecOutput::default()
    })
}

/// The controller's build of `commit`: fails for a commit that does not build.
fn builder(commit: String, builds: Arc<Mutex<Vec<String>>>, fails: bool) -> MockRemoteHost {
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("controller".to_owned());
    host.expect_exec().returning(move |request, _| {
        let c = &request.command;
        if c.contains("rev-parse HEAD") {
            ok(&format!("{commit}\n"))
        } else if c.contains("olddefconfig") {
            ok("x86_64\n")
        } else if c.contains("kernelrelease") {
            builds.lock().unwrap().push(commit.clone());
            if fails {
                Ok(ExecOutput {
                    code: Some(2),
                    stdout: b"fs/btrfs/ctree.c:1: error: expected ';'\n".to_vec(),
                    ..ExecOutput::default()
                })
            } else {
                ok(&format!(
                    "ccache=yes\nrelease=6.19.0-{}\nimage=/b/arch/x86/boot/bzImage\n",
                    &commit[..8]
                ))
            }
        } else {
            ok("")
        }
    });
    host.expect_upload().returning(|_, _| Ok(()));
    host.expect_download().returning(|remote, local| {
        let text = if remote.ends_with(".config") {
            "CONFIG_BTRFS_FS=y\n".to_owned()
        } else {
            format!("contents of {remote}\n")
        };
        std::fs::write(local, text).unwrap();
        Ok(())
    });
    host
}

/// A VM that boots what it is given and then runs release `release`.
fn vm(release: String) -> (MockCloudProvider, MockConnector) {
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("vm".to_owned());
    provider
        .expect_provision_many()
        .returning(|specs: &[MachineSpec]| {
            specs
                .iter()
                .map(|spec| {
                    Ok(Machine {
                        run_id: spec.run_id.clone(),
                        name: spec.name.clone(),
                        provider: "vm".into(),
                        provider_id: "vm-1".into(),
                        access: Access::Local,
                        test_dev: "/dev/vdb".into(),
                        scratch_devs: vec!["/dev/vdc".into()],
                        work_dir: "/var/tmp/btrfsqa".into(),
                        instance_type: None,
                        state: serde_json::Value::Null,
                    })
                })
                .collect()
        });
    provider.expect_boot_kernel().returning(|_, _| Ok(()));
    provider.expect_teardown().returning(|_| Ok(()));
    provider.expect_console().returning(|_| None);
    provider.expect_interruption_notice().returning(|_| None);
    let boots = Arc::new(Mutex::new(0));
    let mut connector = MockConnector::new();
    connector.expect_connect().returning(move |_| {
        let release = release.clone();
        let boot = {
            let mut n = boots.lock().unwrap();
            *n += 1;
            *n
        };
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("vm-0".to_owned());
        host.expect_upload().returning(|_, _| Ok(()));
        host.expect_exec().returning(move |request, _| {
            let c = request.command.as_str();
            if c.starts_with("uname -r; uname -v") {
                ok(&format!("{release}\n#1 SMP\n"))
            } else if c.contains("uname -r") {
                ok(&format!("release={release}\nbtrfs=yes\n"))
            } else if c.contains("boot_id") {
                ok(&format!("boot-{boot}\n"))
            } else {
                ok("")
            }
        });
        Ok(Arc::new(host) as Arc<dyn RemoteHost>)
    });
    (provider, connector)
}

/// A suite of one test that fails on kernels of `bad` commits.
fn suite(failing: bool) -> MockTestSuite {
    let mut suite = MockTestSuite::new();
    suite.expect_id().return_const("kt".to_owned());
    suite
        .expect_list_tests()
        .returning(|| Ok(Some(TestList::of(["btrfs-check".to_owned()]))));
    suite.expect_prepare().returning(|_| Ok(()));
    suite.expect_run().returning(move |ctx| {
        ctx.test_started("kt", "btrfs-check");
        let verdict = if failing {
            Verdict::Fail
        } else {
            Verdict::Pass
        };
        let mut report = SuiteReport::new("kt");
        report
            .tests
            .push(ctx.test_finished(TestOutcome::new("kt", "btrfs-check", verdict)));
        Ok(report)
    });
    suite
}

#[tokio::test]
async fn a_kernel_bisection_builds_boots_and_finds_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("linux");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "master"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "v6.18"]);
    let good = git(&repo, &["rev-parse", "HEAD"]);
    let commits: Vec<String> = (1..=8)
        .map(|i| {
            git(
                &repo,
                &[
                    "commit",
                    "-q",
                    "--allow-empty",
                    "-m",
                    &format!("change {i}"),
                ],
            );
            git(&repo, &["rev-parse", "HEAD"])
        })
        .collect();
    // Commit 3 (index 2) breaks btrfs; commit 4 (index 3) does not build.
    let (culprit, broken) = (commits[2].clone(), commits[3].clone());
    let source = ConfigSource {
        name: "bisect.toml".into(),
        base_dir: dir.path().to_owned(),
        text: format!(
            "[run]\nresults-dir = \"results\"\n[kernel]\nsource = \"{}\"\nref = \"master\"\n",
            repo.display()
        ),
    };
    let mut settings = Settings::resolve(&source, RunOverrides::default()).unwrap();
    settings.config.run.suites = vec!["kt".into()];
    let builds: Arc<Mutex<Vec<String>>> = Arc::default();
    let order = commits.clone();
    let made = builds.clone();
    let make = move |settings: Settings| -> futures_util::future::BoxFuture<'static, Result<Runner, RunError>> {
        let commit = settings.config.kernel.git_ref.clone().unwrap();
        let index = order.iter().position(|c| *c == commit);
        let failing = index.is_some_and(|i| i >= 2);
        let (provider, connector) = vm(format!("6.19.0-{}", &commit[..8]));
        let mut runner = Runner::with_parts(
            settings,
            Arc::new(provider),
            Arc::new(connector),
            vec![Arc::new(suite(failing)) as Arc<dyn TestSuite>],
            None,
        );
        runner.kernel_builder = Some(Arc::new(builder(
            commit.clone(),
            made.clone(),
            index == Some(3),
        )));
        Box::pin(async move { Ok(runner) })
    };
    let request = BisectRequest {
        suite: "kt".into(),
        test: "btrfs-check".into(),
        profile: None,
        source: WatchSource::Kernel,
        good: good.clone(),
        bad: "master".into(),
        runs: 1,
    };
    let steps: Arc<Mutex<Vec<(String, Mark)>>> = Arc::default();
    let seen = steps.clone();
    let on_step = move |_: &Bisection, step: &Step| {
        seen.lock().unwrap().push((step.commit.clone(), step.mark));
    };
    let bisection = bisect_with(
        &settings,
        &request,
        Arc::new(|_| {}),
        CancellationToken::new(),
        &on_step,
        &make,
    )
    .await
    .unwrap();
    assert_eq!(
        bisection.outcome,
        Some(Outcome::Found {
            commit: culprit.clone(),
            subject: "change 3".into()
        })
    );
    let steps = steps.lock().unwrap();
    assert!(
        steps.contains(&(broken.clone(), Mark::Skip)),
        "the commit that does not build is skipped: {steps:?}"
    );
    assert!(
        bisection.test_runs() <= search::budget(commits.len()),
        "{steps:?}"
    );
    // Each commit was built once: the confirmations reuse the stored builds.
    let builds = builds.lock().unwrap();
    let mut unique = builds.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(builds.len(), unique.len(), "{builds:?}");
    // The journal holds every step; the same request resumes, finished.
    let journal = settings
        .results_dir()
        .join(".bisect")
        .join(&bisection.id)
        .join("bisect.json");
    let stored: Bisection = serde_json::from_slice(&std::fs::read(journal).unwrap()).unwrap();
    assert_eq!(stored.steps.len(), steps.len());
}
