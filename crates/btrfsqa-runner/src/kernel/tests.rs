//! The stage's decisions against mocks: reuse, fallbacks, failures.

use std::sync::Mutex;

use super::*;
use btrfsqa_cloud::{CloudProvider, ProvisionError};
use btrfsqa_model::EventSink;
use tokio_util::sync::CancellationToken;

use super::console::first_panic;
use crate::config::ConfigSource;
use crate::connect::Connector;
use crate::connect::MockConnector;
use crate::settings::RunOverrides;
use crate::settings::Settings;
use btrfsqa_cloud::{Access, MockCloudProvider};
use btrfsqa_model::{Provenance, RunId};
use btrfsqa_remote::{ExecOutput, MockRemoteHost};

pub(crate) const COMMIT: &str = "b2758f5460530faf8d7df9673a620ae6f2564eaf";
pub(crate) const RELEASE: &str = "6.1.192";

fn settings(dir: &Path, kernel: &str) -> Settings {
    let source = ConfigSource {
        name: "test.toml".into(),
        base_dir: dir.to_owned(),
        text: format!(
            "[run]\nresults-dir = \"{}\"\n[kernel]\n{kernel}\n",
            dir.join("results").display()
        ),
    };
    Settings::resolve(&source, RunOverrides::default()).unwrap()
}

fn machine(provider: &str) -> Machine {
    Machine {
        run_id: RunId::parse("20261124-100000-ab12").unwrap(),
        name: format!("{provider}-0"),
        provider: provider.into(),
        provider_id: "m".into(),
        access: Access::Local,
        test_dev: "/dev/vdb".into(),
        scratch_devs: vec!["/dev/vdc".into()],
        work_dir: "/var/tmp/btrfsqa".into(),
        instance_type: None,
        state: serde_json::Value::Null,
    }
}

fn ok(stdout: &str) -> Result<ExecOutput, btrfsqa_remote::RemoteError> {
    Ok(ExecOutput {
        code: Some(0),
        stdout: stdout.as_bytes().to_vec(),
        ..Default::default()
    })
}

fn failed(code: i32, stderr: &str) -> Result<ExecOutput, btrfsqa_remote::RemoteError> {
    Ok(ExecOutput {
        code: Some(code),
        stderr: stderr.as_bytes().to_vec(),
        ..Default::default()
    })
}

/// A builder that answers every step; `build_fails` makes the build fail.
/// Counts the builds.
pub(crate) fn builder(builds: Arc<Mutex<u32>>, build_fails: bool) -> MockRemoteHost {
    slow_builder(builds, build_fails, std::time::Duration::ZERO)
}

/// [`builder`] whose builds take `build_time`.
fn slow_builder(
    builds: Arc<Mutex<u32>>,
    build_fails: bool,
    build_time: std::time::Duration,
) -> MockRemoteHost {
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("controller".to_owned());
    host.expect_exec().returning(move |request, _| {
        let c = &request.command;
        if c.contains("rev-parse HEAD") {
            ok(&format!("{COMMIT}\n"))
        } else if c.contains("olddefconfig") {
            ok("x86_64\n")
        } else if c.contains("kernelrelease") {
            *builds.lock().unwrap() += 1;
            std::thread::sleep(build_time);
            if build_fails {
                failed(2, "build failed: the last lines of build.log:\nfs/btrfs/ctree.c:1: error: expected ';'")
            } else {
                ok(&format!("ccache=yes\nrelease={RELEASE}\nimage=/b/arch/x86/boot/bzImage\n"))
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

/// The machine before the boot: installs modules (and images for kexec).
fn machine_host(commands: Arc<Mutex<Vec<String>>>, has_kexec: bool) -> MockRemoteHost {
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m-0".to_owned());
    host.expect_upload().returning(|_, _| Ok(()));
    host.expect_exec().returning(move |request, _| {
        commands.lock().unwrap().push(request.command.clone());
        if request.command == "command -v kexec" && !has_kexec {
            return failed(1, "");
        }
        if request.command.contains("boot_id") {
            return ok("old-boot\n");
        }
        ok("")
    });
    host
}

/// The machine after the boot, running `release`.
fn booted(release: &'static str) -> Arc<dyn RemoteHost> {
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m-0".to_owned());
    host.expect_exec().returning(move |request, _| {
        if request.command.contains("uname -r") {
            ok(&format!("release={release}\nbtrfs=yes\n"))
        } else if request.command.contains("boot_id") {
            ok("new-boot\n")
        } else {
            ok("#1 SMP PREEMPT_DYNAMIC\n")
        }
    });
    Arc::new(host)
}

fn report() -> RunReport {
    let mut report = RunReport::start(
        RunId::parse("20261124-100000-ab12").unwrap(),
        chrono::Utc::now(),
        Provenance::default(),
    );
    report.provenance.machines.push(machine("qemu").info());
    report
}

struct Harness {
    dir: tempfile::TempDir,
    settings: Settings,
    run_dir: PathBuf,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Harness {
    fn new(kernel: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), kernel);
        let run_dir = settings.results_dir().join("20261124-100000-ab12");
        std::fs::create_dir_all(&run_dir).unwrap();
        Harness {
            dir,
            settings,
            run_dir,
            events: Arc::default(),
        }
    }

    async fn run(
        &self,
        provider: MockCloudProvider,
        connector: MockConnector,
        builder: MockRemoteHost,
        machine: &Machine,
        host: MockRemoteHost,
        report: &mut RunReport,
    ) -> Result<Arc<dyn RemoteHost>, String> {
        let provider: Arc<dyn CloudProvider> = Arc::new(provider);
        let connector: Arc<dyn Connector> = Arc::new(connector);
        let events = self.events.clone();
        let sink: EventSink = Arc::new(move |e| events.lock().unwrap().push(e));
        let stop = CancellationToken::new();
        let env = StageEnv {
            settings: &self.settings,
            provider: &provider,
            connector: &connector,
            run_dir: &self.run_dir,
            sink: &sink,
            stop: &stop,
            builder: Some(Arc::new(builder)),
        };
        run_stage(&env, machine, Arc::new(host), report).await
    }
}

fn qemu_provider(boots: usize) -> MockCloudProvider {
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("qemu".to_owned());
    provider
        .expect_boot_kernel()
        .times(boots)
        .returning(|_, kernel| {
            assert!(kernel.image.ends_with("bzImage"));
            assert!(kernel.image.is_file(), "the image is in the store");
            assert_eq!(kernel.release, RELEASE);
            Ok(())
        });
    provider
}

fn connector_to(release: &'static str) -> MockConnector {
    let mut connector = MockConnector::new();
    connector
        .expect_connect()
        .returning(move |_| Ok(booted(release)));
    connector
}

const SOURCE: &str = "source = \"/srv/linux\"\nref = \"main\"";

#[tokio::test]
async fn installed_kernels_skip_the_stage() {
    let h = Harness::new("source = \"installed\"");
    let mut report = report();
    let mut builder = MockRemoteHost::new();
    builder.expect_exec().never();
    let result = h
        .run(
            MockCloudProvider::new(),
            MockConnector::new(),
            builder,
            &machine("qemu"),
            MockRemoteHost::new(),
            &mut report,
        )
        .await;
    assert!(result.is_ok());
    assert!(report.suites.is_empty());
    assert!(h.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_build_is_stored_then_reused_for_the_same_commit_and_config() {
    let h = Harness::new(SOURCE);
    let builds = Arc::new(Mutex::new(0));
    for round in 0..2 {
        let mut report = report();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let host = h
            .run(
                qemu_provider(1),
                connector_to(RELEASE),
                builder(builds.clone(), false),
                &machine("qemu"),
                machine_host(commands.clone(), true),
                &mut report,
            )
            .await
            .unwrap();
        assert_eq!(host.name(), "m-0");
        assert_eq!(
            *builds.lock().unwrap(),
            1,
            "round {round}: built once, then reused"
        );
        let suite = &report.suites[0];
        assert_eq!(suite.id, "kernel");
        assert_eq!(suite.error, None);
        let source = suite.source.as_ref().unwrap();
        assert_eq!(source.commit.as_deref(), Some(COMMIT));
        assert_eq!(source.url, "/srv/linux");
        assert_eq!(report.provenance.kernel.release.as_deref(), Some(RELEASE));
        assert_eq!(report.provenance.kernel.source, suite.source);
        assert_eq!(
            report.provenance.machines[0].kernel.release.as_deref(),
            Some(RELEASE)
        );
        assert!(
            suite
                .artifacts
                .iter()
                .any(|a| a.kind == ArtifactKind::BuildLog)
        );
        assert!(h.run_dir.join("kernel/build.log").is_file());
        // Modules go into their own directory before the boot.
        assert!(commands.lock().unwrap()[0].contains("/lib/modules/6.1.192"));
    }
    let kernels: Vec<_> = std::fs::read_dir(h.settings.results_dir().join(STORE_DIR))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(kernels.len(), 1, "one store entry, no temporary left");
    let meta = read_stored(&kernels[0].path()).unwrap();
    assert_eq!(meta.commit, COMMIT);
    assert_eq!(meta.arch, "x86_64");
    assert!(meta.ccache);
    let events = h.events.lock().unwrap();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::StageFinished { stage: Stage::Kernel, ok: true, message: Some(m), .. } if m.contains("reused")
    )));
}

/// Two machines of a run (or two btrfsqa processes) that build the same
/// source on the controller take turns in its build tree: the second waits
/// for the first's build, says so, and reuses it. Each machine's stage runs
/// on a thread of its own; the build takes 300 ms.
#[test]
fn two_machines_building_one_tree_take_turns_and_build_once() {
    let h = Harness::new(SOURCE);
    let builds = Arc::new(Mutex::new(0));
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let builder = slow_builder(builds.clone(), false, Duration::from_millis(300));
            let h = &h;
            scope.spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let mut report = report();
                runtime
                    .block_on(h.run(
                        qemu_provider(1),
                        connector_to(RELEASE),
                        builder,
                        &machine("qemu"),
                        machine_host(Arc::default(), true),
                        &mut report,
                    ))
                    .unwrap();
            });
        }
    });
    assert_eq!(*builds.lock().unwrap(), 1, "built once, then reused");
    let events = h.events.lock().unwrap();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Warning { message, .. } if message.contains("waiting for the kernel build tree")
        )),
        "{events:?}"
    );
}

#[tokio::test]
async fn another_config_is_another_build() {
    let h = Harness::new(SOURCE);
    let key_a = build_key(COMMIT, "x86_64", "CONFIG_BTRFS_FS=y\n");
    let key_b = build_key(COMMIT, "x86_64", "CONFIG_BTRFS_FS=m\n");
    let key_c = build_key(COMMIT, "aarch64", "CONFIG_BTRFS_FS=y\n");
    assert_ne!(key_a, key_b);
    assert_ne!(key_a, key_c);
    assert_eq!(key_a.len(), 64);
    drop(h);
}

#[tokio::test]
async fn a_failed_build_errors_the_run_with_its_log_and_boots_nothing() {
    let h = Harness::new(SOURCE);
    let mut report = report();
    let err = h
        .run(
            qemu_provider(0),
            MockConnector::new(),
            builder(Arc::default(), true),
            &machine("qemu"),
            machine_host(Arc::default(), true),
            &mut report,
        )
        .await
        .err()
        .expect("the stage fails");
    assert!(err.starts_with("kernel build failed: "), "{err}");
    assert!(err.contains("expected ';'"), "{err}");
    let suite = &report.suites[0];
    assert_eq!(suite.error.as_deref(), Some(err.as_str()));
    assert!(
        suite
            .artifacts
            .iter()
            .any(|a| a.kind == ArtifactKind::BuildLog)
    );
    assert_eq!(
        suite.source.as_ref().unwrap().commit.as_deref(),
        Some(COMMIT),
        "the commit is known even when the build fails"
    );
    assert!(!h.settings.results_dir().join(STORE_DIR).exists());
}

#[tokio::test]
async fn without_a_provider_boot_the_machine_kexecs() {
    let h = Harness::new(SOURCE);
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("static".to_owned());
    provider.expect_boot_kernel().times(1).returning(|m, _| {
        Err(ProvisionError::Unsupported {
            provider: m.provider.clone(),
            operation: "boot".into(),
        })
    });
    let commands = Arc::new(Mutex::new(Vec::new()));
    let mut report = report();
    h.run(
        provider,
        connector_to(RELEASE),
        builder(Arc::default(), false),
        &machine("static"),
        machine_host(commands.clone(), true),
        &mut report,
    )
    .await
    .unwrap();
    let commands = commands.lock().unwrap();
    // Off qemu the configuration starts from the machine's running kernel's.
    assert!(commands.iter().any(|c| c.contains("/proc/config.gz")));
    assert!(commands.iter().any(|c| c.contains("install -m 0644")));
    assert!(
        commands
            .iter()
            .any(|c| c.contains("kexec -l /boot/vmlinuz-6.1.192"))
    );
    assert!(!commands.iter().any(|c| c.contains("update-grub")));
}

#[tokio::test]
async fn without_kexec_the_bootloader_is_used() {
    let h = Harness::new(SOURCE);
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("static".to_owned());
    provider.expect_boot_kernel().returning(|m, _| {
        Err(ProvisionError::Unsupported {
            provider: m.provider.clone(),
            operation: "boot".into(),
        })
    });
    let commands = Arc::new(Mutex::new(Vec::new()));
    let mut host = machine_host(commands.clone(), false);
    host.expect_reboot_and_wait().times(1).returning(|_| Ok(()));
    let mut report = report();
    // After the reboot the same host answers, now with the new release.
    let err = h
        .run(
            provider,
            MockConnector::new(),
            builder(Arc::default(), false),
            &machine("static"),
            host,
            &mut report,
        )
        .await
        .err()
        .expect("the stage fails");
    let commands = commands.lock().unwrap();
    assert!(commands.iter().any(|c| c.contains("update-grub")));
    // The mock host never reports the new release: the check says so.
    assert!(err.starts_with("kernel boot check failed"), "{err}");
}

#[tokio::test]
async fn a_machine_running_another_release_fails_the_check() {
    let h = Harness::new(SOURCE);
    let mut report = report();
    let err = h
        .run(
            qemu_provider(1),
            connector_to("6.1.0-37-amd64"),
            builder(Arc::default(), false),
            &machine("qemu"),
            machine_host(Arc::default(), true),
            &mut report,
        )
        .await
        .err()
        .expect("the stage fails");
    assert_eq!(
        err,
        "kernel boot check failed: the machine runs `6.1.0-37-amd64`, not the built `6.1.192`"
    );
}

#[tokio::test]
async fn a_kernel_that_never_answers_did_not_boot_and_the_console_is_kept() {
    let h = Harness::new(SOURCE);
    let mut machine = machine("qemu");
    let console = h.run_dir.join("console-qemu-0.log");
    std::fs::write(
        &console,
        "Kernel panic - not syncing: VFS: Unable to mount root fs\n",
    )
    .unwrap();
    machine.state = serde_json::json!({ "console": console.display().to_string() });
    let mut connector = MockConnector::new();
    connector.expect_connect().returning(|m| {
        Err(btrfsqa_remote::RemoteError::Connect {
            host: m.name.clone(),
            source: "connection refused".into(),
        })
    });
    let mut report = report();
    let err = h
        .run(
            qemu_provider(1),
            connector,
            builder(Arc::default(), false),
            &machine,
            machine_host(Arc::default(), true),
            &mut report,
        )
        .await
        .err()
        .expect("the stage fails");
    assert!(err.starts_with("kernel `6.1.192` did not boot: "), "{err}");
    assert!(err.contains("Unable to mount root fs"), "{err}");
    let suite = &report.suites[0];
    assert!(
        suite
            .artifacts
            .iter()
            .any(|a| a.kind == ArtifactKind::Console && a.path == "console-qemu-0.log")
    );
    drop(h.dir);
}

#[tokio::test]
async fn a_fetch_that_fails_names_the_ref_and_url() {
    let h = Harness::new(SOURCE);
    let mut builder = MockRemoteHost::new();
    builder
        .expect_exec()
        .returning(|_, _| failed(128, "fatal: couldn't find remote ref main"));
    let mut report = report();
    let err = h
        .run(
            qemu_provider(0),
            MockConnector::new(),
            builder,
            &machine("qemu"),
            MockRemoteHost::new(),
            &mut report,
        )
        .await
        .err()
        .expect("the stage fails");
    assert!(
        err.starts_with("kernel source failed: cannot fetch `main` of `/srv/linux`"),
        "{err}"
    );
    assert!(err.contains("couldn't find remote ref"), "{err}");
}

/// A kernel source URL with a token (an embedder's setting: config files
/// refuse them) is fetched as given but never shown or stored with it.
#[tokio::test]
async fn a_kernel_url_with_credentials_is_shown_without_them() {
    let mut h = Harness::new(SOURCE);
    h.settings.config.kernel.source =
        Some("https://kdave:tok-1234567@git.example/linux.git".into());
    let mut builder = MockRemoteHost::new();
    let fetches = Arc::new(Mutex::new(Vec::new()));
    let seen = fetches.clone();
    builder.expect_exec().returning(move |request, _| {
        seen.lock().unwrap().push(request.clone());
        failed(128, "fatal: couldn't find remote ref main")
    });
    let mut report = report();
    let err = h
        .run(
            qemu_provider(0),
            MockConnector::new(),
            builder,
            &machine("qemu"),
            MockRemoteHost::new(),
            &mut report,
        )
        .await
        .err()
        .expect("the stage fails");
    assert!(!err.contains("tok-1234567"), "{err}");
    assert!(err.contains("`https://git.example/linux.git`"), "{err}");
    let shown = format!("{report:?} {:?}", h.events.lock().unwrap());
    assert!(!shown.contains("tok-1234567"), "{shown}");
    // git is given the bare URL; the credentials go in its environment as
    // a header, never on a command line (`sh -c SCRIPT` is one).
    let fetch = &fetches.lock().unwrap()[0];
    assert!(!fetch.command.contains("tok-1234567"), "{}", fetch.command);
    assert!(
        fetch.command.contains("https://git.example/linux.git"),
        "{}",
        fetch.command
    );
    assert!(
        fetch
            .env
            .iter()
            .any(|(k, v)| k == "GIT_CONFIG_VALUE_0" && v.starts_with("Authorization: Basic ")),
        "{:?}",
        fetch.env
    );
}

#[test]
fn fragment_file_names_are_safe() {
    assert_eq!(sanitize("/etc/btrfsqa/my frag.config"), "my_frag");
    assert_eq!(sanitize("kasan"), "kasan");
}

#[test]
fn a_panic_is_found_on_the_console_without_its_timestamp() {
    let console = "[    2.5] VFS: Cannot open root device \"nonexistent\"\n\
                   [    2.6] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n";
    assert_eq!(
        first_panic(console).as_deref(),
        Some("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)")
    );
    assert_eq!(first_panic("login:"), None);
}

#[tokio::test]
async fn a_panicking_kernel_ends_the_wait_for_ssh_at_once() {
    let h = Harness::new(SOURCE);
    let mut machine = machine("qemu");
    let console = h.run_dir.join("console-qemu-0.log");
    std::fs::write(
        &console,
        "old boot: Kernel panic - not syncing: an earlier one\n",
    )
    .unwrap();
    machine.state = serde_json::json!({ "console": console.display().to_string() });
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("qemu".to_owned());
    let appended = console.clone();
    provider.expect_boot_kernel().returning(move |_, _| {
        let mut text = std::fs::read_to_string(&appended).unwrap();
        text.push_str("[ 2.6] Kernel panic - not syncing: VFS: Unable to mount root fs\n");
        std::fs::write(&appended, text).unwrap();
        Ok(())
    });
    let mut report = report();
    let started = Instant::now();
    let provider: Arc<dyn CloudProvider> = Arc::new(provider);
    // SSH never answers.
    let connector: Arc<dyn Connector> = Arc::new(NeverConnects);
    let sink: EventSink = Arc::new(|_| {});
    let stop = CancellationToken::new();
    let env = StageEnv {
        settings: &h.settings,
        provider: &provider,
        connector: &connector,
        run_dir: &h.run_dir,
        sink: &sink,
        stop: &stop,
        builder: Some(Arc::new(builder(Arc::default(), false))),
    };
    let err = run_stage(
        &env,
        &machine,
        Arc::new(machine_host(Arc::default(), true)),
        &mut report,
    )
    .await
    .err()
    .expect("the stage fails");
    assert!(
        err.starts_with("kernel `6.1.192` did not boot: Kernel panic - not syncing: VFS: Unable to mount root fs"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

struct NeverConnects;

#[async_trait::async_trait]
impl Connector for NeverConnects {
    async fn connect(
        &self,
        _: &Machine,
    ) -> Result<Arc<dyn RemoteHost>, btrfsqa_remote::RemoteError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn build_on_machine_builds_under_the_machines_work_dir() {
    let h = Harness::new(&format!("{SOURCE}\nbuild-on = \"machine\""));
    let builds = Arc::new(Mutex::new(0));
    // The machine is the builder: it answers the build steps too.
    let inner = Arc::new(builder(builds.clone(), false));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut host = MockRemoteHost::new();
    host.expect_name().return_const("m-0".to_owned());
    let (log, exec_inner) = (seen.clone(), inner.clone());
    host.expect_exec().returning(move |request, sink| {
        log.lock().unwrap().push(request.command.clone());
        ready(exec_inner.exec(request, sink))
    });
    let up = inner.clone();
    host.expect_upload()
        .returning(move |local, remote| ready(up.upload(local, remote)));
    let down = inner.clone();
    host.expect_download()
        .returning(move |remote, local| ready(down.download(remote, local)));
    let provider: Arc<dyn CloudProvider> = Arc::new(qemu_provider(1));
    let connector: Arc<dyn Connector> = Arc::new(connector_to(RELEASE));
    let sink: EventSink = Arc::new(|_| {});
    let stop = CancellationToken::new();
    let env = StageEnv {
        settings: &h.settings,
        provider: &provider,
        connector: &connector,
        run_dir: &h.run_dir,
        sink: &sink,
        stop: &stop,
        builder: None,
    };
    let mut report = report();
    if let Err(e) = run_stage(&env, &machine("qemu"), Arc::new(host), &mut report).await {
        panic!("{e}");
    }
    assert_eq!(*builds.lock().unwrap(), 1);
    let seen = seen.lock().unwrap();
    let fetch = seen.iter().find(|c| c.contains("git -C")).unwrap();
    assert!(fetch.contains("src=/var/tmp/btrfsqa/kernel/"), "{fetch}");
}

/// The value of a mock's future, which never waits.
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("a mock future waited"),
    }
}
