//! `RecordingHost` around a real local host: it keeps the `RemoteHost`
//! contract, its recording is on disk while a command still runs (so it
//! survives a crash), and secrets split across output chunks never reach
//! the recording or the caller.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use btrfsqa_remote::{
    CastRecorder, ExecRequest, LocalHost, RecordingHost, Redactor, RemoteHost, StreamKind,
};

use crate::contract;

const TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

fn recording_host(dir: &Path) -> RecordingHost {
    let recorder = CastRecorder::create(&dir.join("casts/local.cast"), 120, 36, Some("local"))
        .expect("recording created");
    RecordingHost::new(
        Arc::new(LocalHost::new("local")),
        Arc::new(recorder),
        Redactor::new(["s3cret-from-env"]),
    )
}

#[tokio::test]
async fn a_recording_host_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let host = recording_host(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    contract::exit_codes_and_streams(&host, &work).await;
    contract::env_and_cwd(&host, &work).await;
    contract::timeout_kills_the_tree(&host, &work).await;
    contract::output_is_complete_and_capture_capped(&host).await;
    contract::upload_and_download(&host, &work).await;
    let cast = std::fs::read_to_string(dir.path().join("casts/local.cast")).unwrap();
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    for line in lines {
        let event: (f64, String, String) =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event.1 == "o" || event.1 == "m");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_is_on_disk_while_the_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(recording_host(dir.path()));
    let cast = dir.path().join("casts/local.cast");
    let running = {
        let host = host.clone();
        tokio::spawn(async move {
            host.exec(
                ExecRequest::new("printf 'first line\\n'; sleep 3; printf 'second %s\\n' line")
                    .timeout(Duration::from_secs(20)),
                None,
            )
            .await
        })
    };
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&cast).unwrap_or_default();
        if text.contains("first line") {
            assert!(!running.is_finished(), "seen before the command ended");
            assert!(!text.contains("second line"));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the first line never reached the file while the command ran: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = running.await.unwrap().unwrap();
    assert!(output.success());
    assert!(
        std::fs::read_to_string(&cast)
            .unwrap()
            .contains("second line")
    );
}

#[tokio::test]
async fn secrets_split_across_chunks_reach_neither_the_recording_nor_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let host = recording_host(dir.path());
    let (head, tail) = TOKEN.split_at(12);
    // The pieces come from the environment, which the recording never shows.
    let script = "printf 'tok=%s' \"$HEAD\"; sleep 0.3; printf '%s and s3cret-' \"$TAIL\"; sleep 0.3; \
         printf 'from-env\\n'; printf 'AWS_SECRET_ACCESS_KEY=%s\\n' \"$AWS\" >&2";
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let output = host
        .exec(
            ExecRequest::new(script)
                .env("HEAD", head)
                .env("TAIL", tail)
                .env("AWS", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
                .timeout(Duration::from_secs(20)),
            Some(tx),
        )
        .await
        .unwrap();
    assert_eq!(output.stdout_text(), "tok=[REDACTED] and [REDACTED]\n");
    assert_eq!(output.stderr_text(), "AWS_SECRET_ACCESS_KEY=[REDACTED]\n");
    let chunks = contract::drain(&mut rx);
    let streamed: Vec<u8> = chunks
        .iter()
        .filter(|c| c.stream == StreamKind::Stdout)
        .flat_map(|c| c.data.clone())
        .collect();
    assert_eq!(
        String::from_utf8(streamed).unwrap(),
        "tok=[REDACTED] and [REDACTED]\n"
    );
    assert!(chunks.len() >= 2, "the output did arrive in pieces");
    let cast = std::fs::read_to_string(dir.path().join("casts/local.cast")).unwrap();
    // After the header and the command line (which holds only `s3cret-`,
    // half of the secret): what the command printed.
    let printed: String = cast.lines().skip(2).collect();
    for secret in [head, tail, "s3cret", "wJalrXUtnFEMI"] {
        assert!(
            !printed.contains(secret),
            "`{secret}` in the recording:\n{cast}"
        );
    }
    let shown: String = cast
        .lines()
        .skip(2)
        .map(|line| {
            serde_json::from_str::<(f64, String, String)>(line)
                .unwrap()
                .2
        })
        .collect();
    assert!(
        shown.starts_with("tok=[REDACTED] and [REDACTED]\r\n"),
        "{cast}"
    );
}
