//! `QemuProvider` booting the real guest image: provision, log in over the
//! forwarded port with the run's key, make a btrfs on a data disk, tear
//! down, and check that no process or file of the run is left. Needs root,
//! `qemu-system-x86_64` and an image (`btrfsqa image build`, or the
//! directory named by `BTRFSQA_QEMU_IMAGE`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use btrfsqa_cloud::qemu::ImagePaths;
use btrfsqa_cloud::{Access, CloudProvider, MachineSpec, QemuProvider, QemuSettings};
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

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_boots_answers_ssh_makes_a_btrfs_and_leaves_nothing() {
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
    let host = OpenSshHost::wait_until_reachable("qemu-0", target, Duration::from_secs(180))
        .await
        .unwrap_or_else(|e| {
            let console = QemuProvider::console_path(&machine)
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!("no SSH: {e}\nconsole:\n{console}")
        });
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
    drop(host);

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
