//! The `RemoteHost` contract, as shared test functions that every
//! implementation runs: here for `LocalHost`, in `ssh.rs` for `OpenSshHost`.
//! The commands run on this machine in both cases, so the tests can look at
//! files and processes directly.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use btrfsqa_remote::{ExecRequest, LocalHost, OutputChunk, RemoteError, RemoteHost, StreamKind};
use tokio::sync::mpsc::UnboundedReceiver;

/// Exit codes, both streams captured apart, and chunks that reach the sink
/// while the command still runs.
pub async fn exit_codes_and_streams(host: &dyn RemoteHost, dir: &Path) {
    let out = host
        .exec(ExecRequest::new("echo out; echo err >&2; exit 3"), None)
        .await
        .unwrap();
    assert_eq!(out.code, Some(3));
    assert!(!out.timed_out && !out.success());
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr_text(), "err\n");

    let out = host.exec(ExecRequest::new("true"), None).await.unwrap();
    assert!(out.success(), "{out:?}");

    let out = host
        .exec(ExecRequest::new("btrfsqa-no-such-command"), None)
        .await
        .unwrap();
    assert_eq!(out.code, Some(127));
    assert!(out.stderr_text().contains("not found"), "{out:?}");

    // The command waits for a file that the test creates only once the
    // first line has come through the sink: no streaming, no progress.
    let go = dir.join("go");
    let command = format!(
        "echo first; while [ ! -e {go} ]; do sleep 0.05; done; echo second >&2",
        go = shell(&go)
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let run = host.exec(
        ExecRequest::new(command).timeout(Duration::from_secs(40)),
        Some(tx),
    );
    let watch = async {
        let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the first line was not streamed")
            .expect("sink open");
        assert_eq!(first.stream, StreamKind::Stdout);
        assert_eq!(first.data, b"first\n");
        std::fs::write(&go, "").unwrap();
    };
    let (out, ()) = tokio::join!(run, watch);
    let out = out.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_text(), "first\n");
    assert_eq!(out.stderr_text(), "second\n");
    let rest = drain(&mut rx);
    assert!(
        rest.iter()
            .any(|c| c.stream == StreamKind::Stderr && c.data == b"second\n")
    );
}

/// Environment variables and the working directory apply, values quoted.
pub async fn env_and_cwd(host: &dyn RemoteHost, dir: &Path) {
    let cwd = dir.join("a dir");
    std::fs::create_dir_all(&cwd).unwrap();
    let request = ExecRequest::new("echo \"$V\"; echo \"$W\"; pwd")
        .env("V", "x y'z $HOME")
        .env("W", "")
        .cwd(cwd.to_str().unwrap());
    let out = host.exec(request, None).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(
        out.stdout_text(),
        format!("x y'z $HOME\n\n{}\n", cwd.display())
    );
}

/// A timeout kills the whole process tree and returns what was printed.
pub async fn timeout_kills_the_tree(host: &dyn RemoteHost, dir: &Path) {
    let pid_file = dir.join("child.pid");
    let command = format!(
        "sleep 60 & echo $! > {}; echo started; sleep 60",
        shell(&pid_file)
    );
    let out = host
        .exec(
            ExecRequest::new(command).timeout(Duration::from_secs(3)),
            None,
        )
        .await
        .unwrap();
    assert!(out.timed_out && out.code.is_none(), "{out:?}");
    assert!(!out.success());
    assert_eq!(out.stdout_text(), "started\n");
    assert_dies(&pid_file).await;
}

/// The timeout covers the command's whole life, also after it closed its
/// output.
pub async fn timeout_applies_after_output_closes(host: &dyn RemoteHost, dir: &Path) {
    let pid_file = dir.join("quiet.pid");
    let command = format!(
        "echo bye; exec >/dev/null 2>&1; sleep 60 & echo $! > {}; sleep 60",
        shell(&pid_file)
    );
    let out = host
        .exec(
            ExecRequest::new(command).timeout(Duration::from_secs(3)),
            None,
        )
        .await
        .unwrap();
    assert!(out.timed_out && out.code.is_none(), "{out:?}");
    assert_eq!(out.stdout_text(), "bye\n");
    assert_dies(&pid_file).await;
}

/// Background children die with the command, and do not hold it open.
pub async fn background_children_end_with_the_command(host: &dyn RemoteHost, dir: &Path) {
    let pid_file = dir.join("bg.pid");
    let command = format!("sleep 60 & echo $! > {}; echo done", shell(&pid_file));
    let out = host
        .exec(
            ExecRequest::new(command).timeout(Duration::from_secs(30)),
            None,
        )
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_text(), "done\n");
    assert_dies(&pid_file).await;
}

/// Big output reaches the sink whole; the capture keeps only the tail.
pub async fn output_is_complete_and_capture_capped(host: &dyn RemoteHost) {
    let lines = 1_000_000u32;
    let expected: usize = (1..=lines).map(|n| n.to_string().len() + 1).sum();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut request = ExecRequest::new(format!("seq 1 {lines}; echo end >&2"));
    request.capture_limit = 4096;
    let out = host.exec(request, Some(tx)).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.len(), 4096);
    assert!(out.stdout_text().ends_with(&format!("\n{lines}\n")));
    assert_eq!(out.stderr_text(), "end\n");
    let streamed: Vec<u8> = drain(&mut rx)
        .into_iter()
        .filter(|c| c.stream == StreamKind::Stdout)
        .flat_map(|c| c.data)
        .collect();
    assert_eq!(streamed.len(), expected);
    assert!(streamed.starts_with(b"1\n2\n3\n"));
}

/// A multi-megabyte file goes there and back unchanged; parents are
/// created; a missing remote file is a transfer error that leaves nothing.
pub async fn upload_and_download(host: &dyn RemoteHost, dir: &Path) {
    let original = dir.join("original.bin");
    let data = pseudo_random(12 << 20);
    std::fs::write(&original, &data).unwrap();

    let remote = dir.join("remote dir/sub/it's here.bin");
    host.upload(&original, remote.to_str().unwrap())
        .await
        .unwrap();
    assert!(
        std::fs::read(&remote).unwrap() == data,
        "uploaded bytes differ"
    );

    let back = dir.join("back/copy.bin");
    host.download(remote.to_str().unwrap(), &back)
        .await
        .unwrap();
    assert!(
        std::fs::read(&back).unwrap() == data,
        "downloaded bytes differ"
    );

    let missing = dir.join("nothing-here");
    let local = dir.join("back/missing.bin");
    let error = host
        .download(missing.to_str().unwrap(), &local)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RemoteError::Transfer {
                direction: "from",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!local.exists());
    let error = host
        .upload(&dir.join("no-such-local-file"), remote.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RemoteError::Transfer {
                direction: "to",
                ..
            }
        ),
        "{error:?}"
    );
}

/// Ten commands at once each get their own output.
pub async fn concurrent_execs(host: Arc<dyn RemoteHost>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let host = host.clone();
        tasks.spawn(async move {
            let out = host
                .exec(ExecRequest::new(format!("sleep 0.5; echo {i}")), None)
                .await
                .unwrap();
            (i, out)
        });
    }
    let mut seen = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, out) = done.unwrap();
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout_text(), format!("{i}\n"));
        seen.push(i);
    }
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
}

/// A command's future is dropped mid-way (the caller gave up, or was
/// cancelled): neither the command nor the `sleep 600` children it started
/// in the background are left running.
pub async fn dropped_command_leaves_no_process(host: &dyn RemoteHost) {
    let mark = unique_mark();
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
    wait_for_sleepers(&mark, 2).await;
    drop(exec);
    assert_no_sleepers(&mark).await;
}

/// A value to find a test's processes by (in their environment).
pub fn unique_mark() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "btrfsqa-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The live `sleep 600` processes whose environment holds
/// `BTRFSQA_TEST_MARK=mark`, from /proc.
pub fn sleepers(mark: &str) -> Vec<u32> {
    let needle = format!("BTRFSQA_TEST_MARK={mark}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline != b"sleep\x00600\x00" {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// Waits (10 s at most) until `count` processes of `mark` run: a child
/// started with `&` may not have reached `exec` yet when its parent goes on.
pub async fn wait_for_sleepers(mark: &str, count: usize) {
    for _ in 0..100 {
        if sleepers(mark).len() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} `sleep 600` processes, not {count}",
        sleepers(mark).len()
    );
}

/// Waits (10 s at most) until no process of `mark` is left.
pub async fn assert_no_sleepers(mark: &str) {
    for _ in 0..100 {
        if sleepers(mark).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = sleepers(mark);
    for pid in &left {
        // Do not leave them behind for the next test either.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    panic!("`sleep 600` processes {left:?} outlived their command");
}

/// Waits until the process whose pid is in `pid_file` is gone (or a zombie
/// about to be reaped): it must die with the command, not run on.
pub async fn assert_dies(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let pid = pid.trim();
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat)
                if stat
                    .rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) =>
            {
                return;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("process {pid} outlived its command");
}

pub fn drain(rx: &mut UnboundedReceiver<OutputChunk>) -> Vec<OutputChunk> {
    let mut chunks = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        chunks.push(chunk);
    }
    chunks
}

pub fn shell(path: &Path) -> String {
    btrfsqa_remote::shell_quote(path.to_str().unwrap())
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn local() -> LocalHost {
    LocalHost::new("local")
}

#[tokio::test]
async fn local_exit_codes_and_streams() {
    let dir = tempfile::tempdir().unwrap();
    exit_codes_and_streams(&local(), dir.path()).await;
}

#[tokio::test]
async fn local_env_and_cwd() {
    let dir = tempfile::tempdir().unwrap();
    env_and_cwd(&local(), dir.path()).await;
}

#[tokio::test]
async fn local_timeout_kills_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    timeout_kills_the_tree(&local(), dir.path()).await;
}

#[tokio::test]
async fn local_timeout_applies_after_output_closes() {
    let dir = tempfile::tempdir().unwrap();
    timeout_applies_after_output_closes(&local(), dir.path()).await;
}

#[tokio::test]
async fn local_background_children_end_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    background_children_end_with_the_command(&local(), dir.path()).await;
}

#[tokio::test]
async fn local_output_is_complete_and_capture_capped() {
    output_is_complete_and_capture_capped(&local()).await;
}

#[tokio::test]
async fn local_upload_and_download() {
    let dir = tempfile::tempdir().unwrap();
    upload_and_download(&local(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_concurrent_execs() {
    concurrent_execs(Arc::new(local())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dropped_command_leaves_no_process() {
    dropped_command_leaves_no_process(&local()).await;
}

/// The controller's credentials never reach a command: run in a child
/// process of this test binary whose environment holds some.
#[test]
fn local_controller_secrets_do_not_reach_commands() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "contract::local_environment_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BTRFSQA_TEST_ENV_CHILD", "1")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("GITHUB_TOKEN", "ghp_0123456789abcdefghijABCDEFGHIJ012345")
        .env("SOME_OTHER_SETTING", "not for tests")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

#[tokio::test]
#[ignore = "run by local_controller_secrets_do_not_reach_commands, in a child process"]
async fn local_environment_child() {
    assert!(std::env::var_os("BTRFSQA_TEST_ENV_CHILD").is_some());
    let out = local()
        .exec(ExecRequest::new("env").env("ASKED_FOR", "yes"), None)
        .await
        .unwrap();
    let env = out.stdout_text();
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for secret in [
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "SOME_OTHER_SETTING",
        "BTRFSQA_TEST_ENV_CHILD",
    ] {
        assert!(
            !names.contains(&secret),
            "`{secret}` reached the command: {names:?}"
        );
    }
    assert!(
        !env.contains("wJalrXUtnFEMI") && !env.contains("ghp_"),
        "{env}"
    );
    for kept in ["PATH", "LC_ALL", "TZ", "ASKED_FOR"] {
        assert!(names.contains(&kept), "`{kept}` is missing: {names:?}");
    }
    assert!(env.lines().any(|l| l == "ASKED_FOR=yes"), "{env}");
}
