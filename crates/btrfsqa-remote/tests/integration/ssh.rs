//! `OpenSshHost` against a real sshd: the shared contract, then what only a
//! network connection has (host keys, lost connections, one master).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use btrfsqa_model::error_chain as chain;
use btrfsqa_remote::testsupport::TestSshd;
use btrfsqa_remote::{ExecRequest, OpenSshHost, RemoteError, RemoteHost, SshTarget};

use crate::contract;

/// A server and a host connected to it, or `None` (the reason printed).
async fn connected() -> Option<(TestSshd, OpenSshHost)> {
    let sshd = TestSshd::start()?;
    let host = OpenSshHost::connect("sshd", sshd.target())
        .await
        .unwrap_or_else(|e| panic!("{}\nsshd log:\n{}", chain(&e), sshd.log()));
    Some((sshd, host))
}

#[tokio::test]
async fn ssh_exit_codes_and_streams() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    contract::exit_codes_and_streams(&host, dir.path()).await;
}

#[tokio::test]
async fn ssh_env_and_cwd() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    contract::env_and_cwd(&host, dir.path()).await;

    // Specific to the remote script: a missing directory is status 125,
    // and a name that is no shell variable is refused before anything runs.
    let out = host
        .exec(
            ExecRequest::new("pwd").cwd(dir.path().join("missing").to_str().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.code, Some(125));
    let error = host
        .exec(ExecRequest::new("true").env("A;touch /tmp/x", "1"), None)
        .await
        .unwrap_err();
    assert!(matches!(error, RemoteError::Spawn { .. }), "{error:?}");
}

#[tokio::test]
async fn ssh_timeout_kills_the_tree() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    contract::timeout_kills_the_tree(&host, dir.path()).await;
}

#[tokio::test]
async fn ssh_timeout_applies_after_output_closes() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    contract::timeout_applies_after_output_closes(&host, dir.path()).await;
}

#[tokio::test]
async fn ssh_background_children_end_with_the_command() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    contract::background_children_end_with_the_command(&host, dir.path()).await;
}

#[tokio::test]
async fn ssh_output_is_complete_and_capture_capped() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    contract::output_is_complete_and_capture_capped(&host).await;
}

#[tokio::test]
async fn ssh_upload_and_download() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    contract::upload_and_download(&host, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_concurrent_execs_share_one_master() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    let host = Arc::new(host);
    contract::concurrent_execs(host.clone()).await;

    // Every command came over the same TCP connection (same client port).
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let host = host.clone();
        tasks.spawn(async move {
            host.exec(ExecRequest::new("echo \"$SSH_CLIENT\"; sleep 0.5"), None)
                .await
                .unwrap()
        });
    }
    let mut clients = Vec::new();
    while let Some(out) = tasks.join_next().await {
        let out = out.unwrap();
        assert!(out.success(), "{out:?}");
        clients.push(out.stdout_text());
    }
    clients.dedup();
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert!(clients[0].starts_with("127.0.0.1 "), "{clients:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_abandoned_command_is_killed() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let command = format!(
        "sleep 60 & echo $! > {}; sleep 60",
        contract::shell(&pid_file)
    );
    // The caller gives up (its future is dropped) without a timeout of ours.
    let abandoned = tokio::time::timeout(
        Duration::from_secs(3),
        host.exec(ExecRequest::new(command), None),
    )
    .await;
    assert!(abandoned.is_err());
    contract::assert_dies(&pid_file).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_dropped_command_leaves_no_process() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    contract::dropped_command_leaves_no_process(&host).await;
}

/// The controller gives up on a command and exits at once (Ctrl-C): the
/// runtime that would have run a cleanup task is gone with it. The remote
/// command and its children die all the same.
#[test]
fn ssh_command_dies_with_a_controller_that_exits() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let mark = contract::unique_mark();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let host = OpenSshHost::connect("sshd", sshd.target())
            .await
            .unwrap_or_else(|e| panic!("{}\nsshd log:\n{}", chain(&e), sshd.log()));
        let request = ExecRequest::new("sleep 600 & sleep 600 & echo started; wait")
            .env("BTRFSQA_TEST_MARK", &mark);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut exec = Box::pin(host.exec(request, Some(tx)));
        tokio::select! {
            result = &mut exec => panic!("the command ended by itself: {result:?}"),
            first = tokio::time::timeout(Duration::from_secs(30), rx.recv()) => {
                assert_eq!(first.expect("no output in 30 s").unwrap().data, b"started\n");
            }
        }
        contract::wait_for_sleepers(&mark, 2).await;
        // Returning drops the command and the host with the runtime.
    });
    drop(runtime);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(contract::assert_no_sleepers(&mark));
}

#[tokio::test]
async fn ssh_host_key_mismatch_is_refused() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), key.join(" ")),
    )
    .unwrap();
    let target = SshTarget {
        known_hosts_file: Some(known_hosts.clone()),
        ..sshd.target()
    };

    let error = OpenSshHost::connect("sshd", target.clone())
        .await
        .unwrap_err();
    assert!(matches!(error, RemoteError::Connect { .. }), "{error:?}");
    assert!(
        chain(&error).contains("Host key verification failed"),
        "{}",
        chain(&error)
    );

    // Waiting for the machine does not retry a wrong key for a minute.
    let error = OpenSshHost::wait_until_reachable("sshd", target, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        !chain(&error).contains("no answer within"),
        "{}",
        chain(&error)
    );

    // The pinned file is checked, never rewritten.
    let after = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(after.lines().count(), 1);
    assert!(after.contains(key[1]));
}

#[tokio::test]
async fn ssh_never_connects_without_a_pinned_host_key() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "# nothing pinned yet\n").unwrap();
    for file in [None, Some(empty.clone()), Some(dir.path().join("missing"))] {
        let target = SshTarget {
            known_hosts_file: file.clone(),
            ..sshd.target()
        };
        let error = OpenSshHost::connect("sshd", target.clone())
            .await
            .map(|_| ())
            .unwrap_err();
        let text = chain(&error);
        assert!(matches!(error, RemoteError::Connect { .. }), "{error:?}");
        let address = format!("127.0.0.1:{}", sshd.port());
        assert!(text.contains(&address), "{file:?}: {text}");
        assert!(text.contains("no host key is pinned"), "{file:?}: {text}");
        assert!(text.contains("known-hosts-file"), "{file:?}: {text}");
        // Refused at once, not retried until the machine "answers".
        let started = std::time::Instant::now();
        let error = OpenSshHost::wait_until_reachable("sshd", target, Duration::from_secs(60))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            chain(&error)
        );
    }
    // ssh was never even started against the server.
    assert!(!sshd.log().contains("Connection from"), "{}", sshd.log());
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "# nothing pinned yet\n"
    );
}

#[tokio::test]
async fn ssh_a_changed_host_key_is_refused_with_how_to_fix_it() {
    let Some((mut sshd, host)) = connected().await else {
        return;
    };
    let pinned = sshd.known_hosts();
    let before = std::fs::read_to_string(&pinned).unwrap();
    let user_known_hosts = Path::new("/root/.ssh/known_hosts");
    let user_before = std::fs::read_to_string(user_known_hosts).ok();
    let out = host
        .exec(ExecRequest::new("echo pinned"), None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "pinned\n");

    // A machine that comes back with another key is not trusted. (The
    // server rewrites its own file: put the old key back.)
    sshd.rotate_host_key();
    std::fs::write(&pinned, &before).unwrap();
    let error = host.exec(ExecRequest::new("true"), None).await.unwrap_err();
    let text = chain(&error);
    assert!(text.contains("Host key verification failed"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", sshd.port()))
            && text.contains(&pinned.display().to_string()),
        "{text}"
    );
    // The user's own known_hosts was left alone.
    assert_eq!(std::fs::read_to_string(user_known_hosts).ok(), user_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_lost_connection_is_an_error_then_reconnects() {
    let Some((mut sshd, host)) = connected().await else {
        return;
    };
    let host = Arc::new(host);

    // Mid-command: the server dies while the command runs.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let running = {
        let host = host.clone();
        tokio::spawn(async move {
            host.exec(ExecRequest::new("echo started; sleep 30"), Some(tx))
                .await
        })
    };
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.data, b"started\n");
    sshd.kill();
    let error = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("a lost connection must end the command")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(error, RemoteError::Disconnected { .. }),
        "{error:?}"
    );

    // Down: the next call tries to reconnect once, and says it cannot.
    let error = host.exec(ExecRequest::new("true"), None).await.unwrap_err();
    assert!(matches!(error, RemoteError::Connect { .. }), "{error:?}");

    // Back on the same port: the same host works again.
    sshd.restart();
    let out = host
        .exec(ExecRequest::new("echo back"), None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "back\n");

    // Lost while idle: nothing fails, the next command reconnects by itself.
    sshd.restart();
    let out = host
        .exec(ExecRequest::new("echo again"), None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "again\n");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    sshd.restart();
    host.upload(&file, dir.path().join("g").to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(std::fs::read(dir.path().join("g")).unwrap(), b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_wait_until_reachable_waits_for_the_server() {
    let Some(mut sshd) = TestSshd::start() else {
        return;
    };
    let target = sshd.target();
    sshd.kill();
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        sshd.restart();
        sshd
    });
    let host = OpenSshHost::wait_until_reachable("sshd", target, Duration::from_secs(40))
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let _sshd = server.join().unwrap();
    let out = host.exec(ExecRequest::new("echo up"), None).await.unwrap();
    assert_eq!(out.stdout_text(), "up\n");
}

#[tokio::test]
async fn ssh_unreachable_machine_times_out() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let key = std::fs::read_to_string(sshd.target().identity_file.unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = SshTarget {
        port,
        ..sshd.target()
    };
    let error = OpenSshHost::wait_until_reachable("nowhere", target, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(error, RemoteError::Connect { .. }), "{error:?}");
    let text = chain(&error);
    assert!(text.contains("no answer within 2 s"), "{text}");
    // No credential in what a user reads.
    let secret = key.lines().nth(1).unwrap();
    assert!(!text.contains(secret) && !format!("{error:?}").contains(secret));
}

#[tokio::test]
async fn ssh_reboot_wait_gives_up_when_the_boot_id_stays() {
    let Some((_sshd, host)) = connected().await else {
        return;
    };
    // `true` does not reboot: the boot id never changes.
    let host = host.with_reboot_command("true");
    let error = host
        .reboot_and_wait(Duration::from_secs(3))
        .await
        .unwrap_err();
    assert!(
        matches!(error, RemoteError::RebootTimeout { secs: 3, .. }),
        "{error:?}"
    );
    let out = host
        .exec(ExecRequest::new("echo still"), None)
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "still\n");
}
