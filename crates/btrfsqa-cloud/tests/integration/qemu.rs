//! `QemuProvider` booting the real guest image: provision, log in over the
//! forwarded port with the run's key, make a btrfs on a data disk, crash the
//! guest kernel and reset, kill QEMU and reset, tear down, and check that no
//! process or file of the run is left. Needs root, `qemu-system-x86_64` and
//! an image (`btrfsqa image build`, or the directory named by
//! `BTRFSQA_QEMU_IMAGE`). Three boots: about two to three minutes under TCG.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use btrfsqa_cloud::qemu::{ImagePaths, RESET_SEPARATOR};
use btrfsqa_cloud::{Access, CloudProvider, Machine, MachineSpec, QemuProvider, QemuSettings};
use btrfsqa_model::RunId;
use btrfsqa_remote::{ExecRequest, OpenSshHost, RemoteHost, SshTarget};

fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    for tool in ["qemu-system-x86_64", "qemu-img", "ssh-keygen", "ssh"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/bin", "/usr/sbin"].map(PathBuf::from))
            .any(|d| d.join(tool).is_file());
        if !found {
            return Some(format!(
                "`{tool}` is not installed (scripts/install-deps.sh qemu)"
            ));
        }
    }
    let image = ImagePaths::from_env_or_default();
    if !image.is_complete() {
        return Some(format!(
            "no guest image in `{}` (btrfsqa image build, or set BTRFSQA_QEMU_IMAGE)",
            image.dir.display()
        ));
    }
    None
}

/// Tears the machine down if the test fails halfway.
struct Guard<'a> {
    provider: &'a QemuProvider,
    machine: Option<btrfsqa_cloud::Machine>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(machine) = self.machine.take() {
            let provider = self.provider;
            let _ = std::thread::scope(|s| {
                s.spawn(|| {
                    tokio::runtime::Runtime::new()
                        .unwrap()
                        .block_on(provider.teardown(&machine))
                })
                .join()
            });
        }
    }
}

/// Logs in, waiting for the boot; the console is in the panic message.
async fn connect(machine: &Machine, target: &SshTarget) -> OpenSshHost {
    OpenSshHost::wait_until_reachable("qemu-0", target.clone(), Duration::from_secs(180))
        .await
        .unwrap_or_else(|e| {
            let console = QemuProvider::console_path(machine)
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!("no SSH: {e}\nconsole:\n{console}")
        })
}

/// Runs `command` and returns its stdout, trimmed.
async fn run(host: &OpenSshHost, command: &str) -> String {
    let out = host
        .exec(
            ExecRequest::new(command).timeout(Duration::from_secs(60)),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("`{command}`: {e}"));
    assert!(out.success(), "`{command}`: {}", out.stderr_text());
    out.stdout_text().trim().to_owned()
}

/// The pid of the VM now, from the state file (the `Machine` keeps the
/// first one).
fn current_pid(machine: &Machine) -> u32 {
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(PathBuf::from(&machine.provider_id).join("machine.json")).unwrap(),
    )
    .unwrap();
    state["pid"].as_u64().expect("a pid") as u32
}

fn runs_with(pid: u32, needle: &str) -> bool {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .contains(needle)
}

/// After a reset: SSH answers, it is another boot, and the data disks and
/// the btrfs made on the test device are still there.
async fn check_after_reset(
    machine: &Machine,
    target: &SshTarget,
    what: &str,
    boot_id: &str,
    uuid: &str,
) -> (OpenSshHost, String) {
    let started = Instant::now();
    let host = connect(machine, target).await;
    eprintln!(
        "{what}: ssh answered {:.1} s after the reset",
        started.elapsed().as_secs_f64()
    );
    let new_boot = run(&host, "cat /proc/sys/kernel/random/boot_id").await;
    assert_ne!(new_boot, boot_id, "{what}: a new boot");
    assert_eq!(run(&host, "ls /dev/vd? | wc -l").await, "7", "{what}");
    assert_eq!(
        run(
            &host,
            &format!("blkid -s UUID -o value {}", machine.test_dev)
        )
        .await,
        uuid,
        "{what}: the btrfs on the test device survived"
    );
    (host, new_boot)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_boots_answers_ssh_makes_a_btrfs_survives_resets_and_leaves_nothing() {
    if let Some(why) = missing() {
        eprintln!("skipping: {why}");
        return;
    }
    // The default work directory: runs live in their own subdirectories, and
    // the KVM probe's answer is cached there for every later run.
    let mut settings = QemuSettings::default();
    let work = settings.work_dir.clone();
    settings.memory_mib = 1024;
    let provider = QemuProvider::new(settings);
    let run_id = RunId::generate(chrono::Utc::now());
    let mut spec = MachineSpec::new(run_id.clone(), "qemu-0");
    spec.device_size = 1 << 30;

    let started = Instant::now();
    let machine = provider.provision(&spec).await.expect("provisioned");
    let mut guard = Guard {
        provider: &provider,
        machine: Some(machine.clone()),
    };
    let Access::Ssh(endpoint) = &machine.access else {
        panic!("qemu machines are reached over SSH: {:?}", machine.access);
    };
    assert_eq!(endpoint.host, "127.0.0.1");
    assert_eq!(machine.scratch_devs.len(), 5);
    let instance = machine.instance_type.clone().unwrap();
    eprintln!(
        "accelerator: {instance} ({})",
        machine.state["accel-detail"]
    );
    let pid = machine.state["pid"].as_u64().expect("a pid") as u32;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains(run_id.as_str()));

    let target = SshTarget {
        host: endpoint.host.clone(),
        port: endpoint.port,
        user: endpoint.user.clone(),
        identity_file: endpoint.identity_file.clone(),
        known_hosts_file: endpoint.known_hosts_file.clone(),
    };
    let host = connect(&machine, &target).await;
    eprintln!(
        "ssh answered after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let out = host
        .exec(
            ExecRequest::new(format!(
                "mkfs.btrfs -q -f {dev} && btrfs filesystem show {dev} | head -n 1; ls /dev/vd? | wc -l",
                dev = machine.test_dev
            ))
            .timeout(Duration::from_secs(60)),
            None,
        )
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr_text());
    let text = out.stdout_text();
    assert!(text.contains("uuid:"), "{text}");
    assert_eq!(
        text.lines().last(),
        Some("7"),
        "root and six data disks: {text}"
    );
    let uuid = run(
        &host,
        &format!("blkid -s UUID -o value {}", machine.test_dev),
    )
    .await;
    let boot_id = run(&host, "cat /proc/sys/kernel/random/boot_id").await;

    // 1. A kernel panic: on the console within seconds, then a reset.
    // In a session of its own (the exec wrapper kills the command's process
    // group when it ends), so that the command returns before the guest dies.
    let _ = host
        .exec(
            ExecRequest::new(
                "setsid -f sh -c 'sleep 1; echo c > /proc/sysrq-trigger' </dev/null >/dev/null 2>&1",
            )
            .timeout(Duration::from_secs(20)),
            None,
        )
        .await;
    drop(host);
    let crashed = Instant::now();
    let console = loop {
        let console = provider.console(&machine).await.unwrap_or_default();
        if console.contains("sysrq") && console.contains("Kernel panic") {
            break console;
        }
        assert!(
            crashed.elapsed() < Duration::from_secs(60),
            "no panic on the console:\n{console}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let panic_line = console
        .lines()
        .find(|l| l.contains("Kernel panic"))
        .unwrap();
    eprintln!(
        "panic on the console after {:.1} s: {}",
        crashed.elapsed().as_secs_f64(),
        panic_line.trim()
    );
    // panic=-1 with -no-reboot: QEMU ends by itself; reset works either way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "qemu after the panic: {}",
        if runs_with(pid, run_id.as_str()) {
            "still running"
        } else {
            "exited"
        }
    );
    let reset = Instant::now();
    provider.reset(&machine).await.expect("reset after a panic");
    eprintln!(
        "reset after the panic returned in {:.1} s",
        reset.elapsed().as_secs_f64()
    );
    let (host, boot_id) =
        check_after_reset(&machine, &target, "after a panic", &boot_id, &uuid).await;
    eprintln!(
        "reset boot after the panic: {:.1} s to ssh",
        reset.elapsed().as_secs_f64()
    );
    let console = provider.console(&machine).await.unwrap();
    let (crashed_boot, new_boot) = console.rsplit_once(RESET_SEPARATOR).unwrap();
    assert!(crashed_boot.contains("Kernel panic"));
    assert!(new_boot.contains("Linux version"), "{new_boot}");
    drop(host);

    // 2. QEMU killed from outside: a reset launches it again.
    let second = current_pid(&machine);
    assert_ne!(second, pid);
    assert!(runs_with(second, run_id.as_str()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let reset = Instant::now();
    provider.reset(&machine).await.expect("reset after kill -9");
    assert!(!runs_with(second, run_id.as_str()));
    let (host, _) = check_after_reset(&machine, &target, "after kill -9", &boot_id, &uuid).await;
    eprintln!(
        "reset boot after kill -9: {:.1} s to ssh",
        reset.elapsed().as_secs_f64()
    );
    assert_eq!(
        provider
            .console(&machine)
            .await
            .unwrap()
            .matches(RESET_SEPARATOR)
            .count(),
        2
    );
    drop(host);
    let pid = current_pid(&machine);

    let machine = guard.machine.take().unwrap();
    provider.teardown(&machine).await.expect("torn down");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || !String::from_utf8_lossy(
                &std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
            )
            .contains(run_id.as_str()),
        "the VM process is gone"
    );
    let run_dir = work.join(run_id.as_str());
    assert!(!run_dir.exists(), "left behind: {}", run_dir.display());
    provider
        .teardown(&machine)
        .await
        .expect("a second teardown is a no-op");
    eprintln!("whole test {:.1} s", started.elapsed().as_secs_f64());
}
