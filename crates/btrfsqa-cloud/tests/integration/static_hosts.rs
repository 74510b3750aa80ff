//! The `static` provider against a real sshd (`TestSshd`: root and
//! openssh-server, else the tests say why and skip) and other processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use btrfsqa_cloud::{
    Access, CloudProvider, MachineSpec, SshEndpoint, StaticHost, StaticProvider, StaticSettings,
};
use btrfsqa_model::{RunId, error_chain as chain};
use btrfsqa_remote::testsupport::TestSshd;
use btrfsqa_remote::{ExecRequest, OpenSshHost, RemoteHost, SshTarget};

fn spec(name: &str) -> MachineSpec {
    MachineSpec::new(RunId::generate(chrono::Utc::now()), name)
}

fn provider(state: &Path, host: StaticHost) -> StaticProvider {
    StaticProvider::with_settings(StaticSettings {
        hosts: vec![host],
        state_dir: Some(state.to_owned()),
    })
}

fn target(endpoint: &SshEndpoint) -> SshTarget {
    SshTarget {
        host: endpoint.host.clone(),
        port: endpoint.port,
        user: endpoint.user.clone(),
        identity_file: endpoint.identity_file.clone(),
        known_hosts_file: endpoint.known_hosts_file.clone(),
    }
}

/// A host with no `known-hosts-file`: its key is learned at first use,
/// kept, and a later change of key is refused.
#[tokio::test]
async fn static_host_key_is_recorded_at_first_use_and_refused_when_changed() {
    let Some(mut sshd) = TestSshd::start() else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let host = StaticHost {
        name: "sshd".into(),
        host: "127.0.0.1".into(),
        port: sshd.port(),
        user: "root".into(),
        identity_file: sshd.target().identity_file,
        known_hosts_file: None,
        test_dev: "/dev/null".into(),
        scratch_devs: Vec::new(),
        work_dir: "/tmp".into(),
    };
    let provider = provider(state.path(), host);

    let machine = provider.provision(&spec("m0")).await.unwrap();
    let Access::Ssh(endpoint) = &machine.access else {
        panic!("{:?}", machine.access)
    };
    let recorded = endpoint.known_hosts_file.clone().unwrap();
    assert!(recorded.starts_with(state.path()), "{}", recorded.display());
    let pinned = std::fs::read_to_string(&recorded).unwrap();
    let real = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    let real_key: Vec<&str> = real.split_whitespace().skip(1).take(2).collect();
    assert!(pinned.contains(&real_key.join(" ")), "{pinned}\nvs\n{real}");
    let host = OpenSshHost::connect("m0", target(endpoint)).await.unwrap();
    let out = host.exec(ExecRequest::new("echo in"), None).await.unwrap();
    assert_eq!(out.stdout_text(), "in\n");
    drop(host);
    provider.teardown(&machine).await.unwrap();

    // The machine is reinstalled (or someone is in between): new key.
    sshd.rotate_host_key();
    let machine = provider.provision(&spec("m1")).await.unwrap();
    let Access::Ssh(endpoint) = &machine.access else {
        unreachable!()
    };
    assert_eq!(endpoint.known_hosts_file.as_ref(), Some(&recorded));
    assert_eq!(
        std::fs::read_to_string(&recorded).unwrap(),
        pinned,
        "never replaced"
    );
    let error = OpenSshHost::connect("m1", target(endpoint))
        .await
        .unwrap_err();
    let text = chain(&error);
    assert!(text.contains("is not the one pinned in"), "{text}");
    assert!(text.contains(&recorded.display().to_string()), "{text}");
    provider.teardown(&machine).await.unwrap();
}

/// Two btrfsqa processes on one controller: the second cannot claim the
/// host while the first holds it, is told who does, and gets it once that
/// process is gone.
#[test]
fn static_host_claimed_by_another_process_is_refused_until_it_exits() {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "static_hosts::claim_holder",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BTRFSQA_TEST_STATE_DIR", state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let holder = loop {
        let line = lines
            .next()
            .expect("the holder ended before claiming")
            .unwrap();
        // libtest prints the test's name on the same line.
        if let Some((_, pid)) = line.split_once("claimed by pid ") {
            break pid.trim().to_owned();
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let provider = provider(state.path(), claim_host(state.path()));
    let error = runtime
        .block_on(provider.provision(&spec("m1")))
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "`shared` (`192.0.2.1:22`) is held by another btrfsqa process (pid {holder}"
        )),
        "{text}"
    );
    // The holder goes away (here killed, as a crash would end it).
    child.kill().unwrap();
    child.wait().unwrap();
    let machine = runtime.block_on(provider.provision(&spec("m1"))).unwrap();
    assert_eq!(machine.provider_id, "shared");
}

fn claim_host(state: &Path) -> StaticHost {
    let known_hosts = state.join("pinned");
    std::fs::write(
        &known_hosts,
        "192.0.2.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXlnAxnutnMkdmWjHhB7aPOS3MhgbFtScZxc1cunpUr\n",
    )
    .unwrap();
    StaticHost {
        name: "shared".into(),
        host: "192.0.2.1".into(),
        port: 22,
        user: "root".into(),
        identity_file: None,
        known_hosts_file: Some(known_hosts),
        test_dev: "/dev/vdb".into(),
        scratch_devs: Vec::new(),
        work_dir: "/var/tmp/btrfsqa".into(),
    }
}

/// The other process: claims the host, says so, and holds it until its
/// standard input ends.
#[tokio::test]
#[ignore = "run by static_host_claimed_by_another_process_is_refused_until_it_exits"]
async fn claim_holder() {
    let state = std::env::var_os("BTRFSQA_TEST_STATE_DIR").expect("run by the parent test");
    let state = Path::new(&state);
    let provider = provider(state, claim_host(state));
    let _machine = provider.provision(&spec("m0")).await.unwrap();
    println!("claimed by pid {}", std::process::id());
    let _ = std::io::stdin().read_line(&mut String::new());
}
