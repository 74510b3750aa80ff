//! Terminal recordings of everything a machine prints.
//!
//! [`CastRecorder`] writes an [asciicast v2] file: a header line with the
//! terminal size, then one line per event, `[seconds, "o", text]` for
//! output and `[seconds, "m", label]` for markers (asciinema-player shows
//! markers on its timeline and can jump to them). Each event is written and
//! flushed as it arrives, so the recording survives a crash of the machine
//! or of the controller up to its last event; nothing is installed on the
//! machine, the controller records what it streams.
//!
//! [`RecordingHost`] wraps any [`RemoteHost`]: every command it runs is
//! recorded as `$ command` followed by its output, and every secret the
//! [`Redactor`] knows is removed from the recording, from the chunks
//! streamed to the caller and from the returned [`ExecOutput`].
//!
//! [asciicast v2]: https://docs.asciinema.org/manual/asciicast/v2/
//!
//! ```no_run
//! use std::sync::Arc;
//! use btrfsqa_remote::{CastRecorder, ExecRequest, LocalHost, Redactor, RecordingHost, RemoteHost};
//!
//! # async fn demo() -> Result<(), btrfsqa_remote::RemoteError> {
//! let recorder = Arc::new(CastRecorder::create("run/casts/local-0.cast".as_ref(), 160, 48, Some("local-0"))?);
//! let host = RecordingHost::new(Arc::new(LocalHost::new("local-0")), recorder.clone(), Redactor::from_env(&["GITHUB_TOKEN"]));
//! recorder.marker("btrfs/011");
//! host.exec(ExecRequest::new("echo hello"), None).await?;
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::redact::{RedactingStream, Redactor};
use crate::{
    ExecOutput, ExecRequest, OutputChunk, OutputSink, RemoteError, RemoteHost, StreamKind,
};

/// Writes one asciicast v2 recording, event by event.
#[derive(Debug)]
pub struct CastRecorder {
    path: PathBuf,
    started: Instant,
    state: Mutex<RecorderState>,
}

#[derive(Debug)]
struct RecorderState {
    file: File,
    /// The end of the last output when it stopped inside a UTF-8 character.
    partial: Vec<u8>,
    /// The first write error; later events are dropped rather than retried.
    failed: bool,
}

impl CastRecorder {
    /// Creates `path` (and its directory) and writes the header: a terminal
    /// of `width` × `height`, the current time, and `title` when given.
    pub fn create(
        path: &Path,
        width: u16,
        height: u16,
        title: Option<&str>,
    ) -> Result<Self, RemoteError> {
        let fail = |source| RemoteError::Record {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut file = File::create(path).map_err(fail)?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = serde_json::json!({
            "version": 2,
            "width": width,
            "height": height,
            "timestamp": timestamp,
            "env": {"TERM": "xterm-256color", "SHELL": "/bin/sh"},
        });
        if let Some(title) = title {
            header["title"] = title.into();
        }
        let mut line = header.to_string();
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(fail)?;
        file.flush().map_err(fail)?;
        Ok(CastRecorder {
            path: path.to_owned(),
            started: Instant::now(),
            state: Mutex::new(RecorderState {
                file,
                partial: Vec::new(),
                failed: false,
            }),
        })
    }

    /// The file it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seconds since the recording started: where an event written now lands.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Records output. Bytes need not be whole characters: an incomplete
    /// UTF-8 sequence at the end waits for the next call; invalid bytes
    /// become U+FFFD.
    pub fn output(&self, data: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = std::mem::take(&mut state.partial);
        bytes.extend_from_slice(data);
        let keep = incomplete_utf8_tail(&bytes);
        state.partial = bytes.split_off(bytes.len() - keep);
        if bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&bytes);
        self.write_event(&mut state, "o", &text);
    }

    /// Records a marker (a test boundary) at the current time and returns
    /// that time, in seconds from the start of the recording.
    pub fn marker(&self, label: &str) -> f64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.write_event(&mut state, "m", label)
    }

    /// Whether every event so far reached the file.
    pub fn is_healthy(&self) -> bool {
        !self.state.lock().unwrap_or_else(|e| e.into_inner()).failed
    }

    fn write_event(&self, state: &mut RecorderState, code: &str, data: &str) -> f64 {
        let secs = self.elapsed_secs();
        if state.failed {
            return secs;
        }
        let mut line = serde_json::to_string(&(Rounded(secs), code, data))
            .expect("an event always serializes");
        line.push('\n');
        // One write per event, flushed: a crash loses at most the event
        // being written, never the ones before.
        if let Err(error) = state
            .file
            .write_all(line.as_bytes())
            .and_then(|()| state.file.flush())
        {
            tracing::warn!(path = %self.path.display(), %error, "recording stopped: cannot write");
            state.failed = true;
        }
        secs
    }
}

/// Seconds with microsecond precision, as asciinema writes them.
struct Rounded(f64);

impl serde::Serialize for Rounded {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64((self.0 * 1e6).round() / 1e6)
    }
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 character
/// that the next chunk completes.
fn incomplete_utf8_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back
        }
        let needed = match b {
            0b1100_0000..=0b1101_1111 => 2,
            0b1110_0000..=0b1110_1111 => 3,
            0b1111_0000..=0b1111_0111 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

/// A [`RemoteHost`] that records everything it runs and redacts secrets.
///
/// Commands are recorded as `$ command`, their output as it streams, and a
/// note when they fail or time out. Secrets are removed from the recording,
/// from the chunks forwarded to the caller's sink, and from the captured
/// output returned.
pub struct RecordingHost {
    inner: Arc<dyn RemoteHost>,
    recorder: Arc<CastRecorder>,
    redactor: Redactor,
}

impl std::fmt::Debug for RecordingHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingHost")
            .field("host", &self.inner.name())
            .field("recording", &self.recorder.path())
            .finish_non_exhaustive()
    }
}

impl RecordingHost {
    /// Wraps `inner`, recording into `recorder`.
    pub fn new(
        inner: Arc<dyn RemoteHost>,
        recorder: Arc<CastRecorder>,
        redactor: Redactor,
    ) -> Self {
        RecordingHost {
            inner,
            recorder,
            redactor,
        }
    }

    /// The recorder.
    pub fn recorder(&self) -> &Arc<CastRecorder> {
        &self.recorder
    }

    /// The redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    fn note(&self, text: &str) {
        let text = self.redactor.redact_str(text);
        self.recorder.output(terminal_lines(&text).as_bytes());
    }
}

/// `text` with line ends as a terminal needs them (`\r\n`).
fn terminal_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(line);
    }
    out.push_str("\r\n");
    out
}

/// The two redacting streams of one command.
struct Streams {
    stdout: RedactingStream,
    stderr: RedactingStream,
}

impl Streams {
    fn of(&mut self, kind: StreamKind) -> &mut RedactingStream {
        match kind {
            StreamKind::Stdout => &mut self.stdout,
            StreamKind::Stderr => &mut self.stderr,
        }
    }
}

#[async_trait::async_trait]
impl RemoteHost for RecordingHost {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn exec(
        &self,
        request: ExecRequest,
        sink: Option<OutputSink>,
    ) -> Result<ExecOutput, RemoteError> {
        // The environment is not shown: values passed there are often secrets.
        let shown = match &request.cwd {
            Some(cwd) => format!("$ cd {cwd} && {}", request.command),
            None => format!("$ {}", request.command),
        };
        self.note(&shown);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<OutputChunk>();
        let mut streams = Streams {
            stdout: self.redactor.stream(),
            stderr: self.redactor.stream(),
        };
        let forward = |chunk: OutputChunk, streams: &mut Streams| {
            let data = streams.of(chunk.stream).push(&chunk.data);
            self.emit(chunk.stream, data, sink.as_ref());
        };
        let exec = self.inner.exec(request, Some(tx));
        tokio::pin!(exec);
        let result = loop {
            tokio::select! {
                biased;
                chunk = rx.recv() => match chunk {
                    Some(chunk) => forward(chunk, &mut streams),
                    // Every sender is gone: only the result is left.
                    None => break exec.await,
                },
                result = &mut exec => break result,
            }
        };
        // What was sent just before the command ended.
        while let Ok(chunk) = rx.try_recv() {
            forward(chunk, &mut streams);
        }
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            let rest = streams.of(kind).finish();
            self.emit(kind, rest, sink.as_ref());
        }
        match result {
            Ok(mut output) => {
                if output.timed_out {
                    self.note(&format!(
                        "[btrfsqa: timed out after {}]",
                        seconds(output.duration)
                    ));
                } else if let Some(code) = output.code.filter(|&c| c != 0) {
                    self.note(&format!("[btrfsqa: exit status {code}]"));
                } else if output.code.is_none() {
                    self.note("[btrfsqa: killed by a signal]");
                }
                output.stdout = self.redactor.redact(&output.stdout);
                output.stderr = self.redactor.redact(&output.stderr);
                Ok(output)
            }
            Err(error) => {
                self.note(&format!("[btrfsqa: {error}]"));
                Err(error)
            }
        }
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RemoteError> {
        self.note(&format!("# upload {} -> {remote}", local.display()));
        self.inner.upload(local, remote).await
    }

    /// Downloads, then removes secrets from the local copy: logs fetched
    /// from the machine (`.full`, `dmesg`) are kept and published.
    async fn download(&self, remote: &str, local: &Path) -> Result<(), RemoteError> {
        self.note(&format!("# download {remote}"));
        self.inner.download(remote, local).await?;
        redact_file(&self.redactor, local).map_err(|source| RemoteError::Transfer {
            host: self.inner.name().to_owned(),
            direction: "from",
            remote: remote.to_owned(),
            local: local.to_owned(),
            source: Box::new(source),
        })
    }

    async fn reboot_and_wait(&self, timeout: Duration) -> Result<(), RemoteError> {
        self.recorder.marker("reboot");
        self.note("# reboot");
        let result = self.inner.reboot_and_wait(timeout).await;
        self.note(match &result {
            Ok(()) => "# back after reboot",
            Err(_) => "# did not come back after reboot",
        });
        result
    }
}

impl RecordingHost {
    /// Records redacted output and forwards it to the caller.
    fn emit(&self, stream: StreamKind, data: Vec<u8>, sink: Option<&OutputSink>) {
        if data.is_empty() {
            return;
        }
        self.recorder.output(&crlf(&data));
        if let Some(sink) = sink {
            // A caller that stopped listening does not stop the command.
            let _ = sink.send(OutputChunk { stream, data });
        }
    }
}

/// `data` with every bare `\n` made `\r\n`: commands write to pipes, not
/// to a terminal, so nothing did what a tty's `onlcr` would, and a player
/// would draw each line starting where the previous one ended.
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    let mut previous = 0u8;
    for &byte in data {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// Files larger than this are not scanned for secrets after a download:
/// reading them whole would cost more memory than a log should.
const MAX_REDACTED_FILE: u64 = 256 << 20;

/// Rewrites `path` without its secrets, when it has any.
fn redact_file(redactor: &Redactor, path: &Path) -> std::io::Result<()> {
    if std::fs::metadata(path)?.len() > MAX_REDACTED_FILE {
        return Ok(());
    }
    let data = std::fs::read(path)?;
    let clean = redactor.redact(&data);
    if clean != data {
        std::fs::write(path, clean)?;
    }
    Ok(())
}

fn seconds(duration: Duration) -> String {
    format!("{:.0} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockRemoteHost;

    fn events(path: &Path) -> (serde_json::Value, Vec<serde_json::Value>) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        let header = serde_json::from_str(lines.next().unwrap()).unwrap();
        let events = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
        (header, events)
    }

    fn output_text(events: &[serde_json::Value]) -> String {
        events
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_file_is_valid_asciicast_after_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("casts/m.cast");
        let recorder = CastRecorder::create(&path, 120, 40, Some("m")).unwrap();
        let (header, events_so_far) = events(&path);
        assert_eq!(header["version"], 2);
        assert_eq!(header["width"], 120);
        assert_eq!(header["height"], 40);
        assert_eq!(header["title"], "m");
        assert!(events_so_far.is_empty());

        recorder.output(b"hello \xe2\x9c");
        // Readable before anything else happens: written and flushed.
        assert_eq!(output_text(&events(&path).1), "hello ");
        recorder.output(b"\x93 done\r\n\xff");
        let at = recorder.marker("btrfs/011");
        recorder.output(b"!");
        let (_, all) = events(&path);
        assert_eq!(output_text(&all), "hello \u{2713} done\r\n\u{FFFD}!");
        let marker = all.iter().find(|e| e[1] == "m").unwrap();
        assert_eq!(marker[2], "btrfs/011");
        assert!((marker[0].as_f64().unwrap() - at).abs() < 1e-5);
        let times: Vec<f64> = all.iter().map(|e| e[0].as_f64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(recorder.is_healthy());
    }

    #[test]
    fn incomplete_characters_wait_for_their_end() {
        assert_eq!(incomplete_utf8_tail(b"ab"), 0);
        assert_eq!(incomplete_utf8_tail(b"a\xe2"), 1);
        assert_eq!(incomplete_utf8_tail(b"a\xe2\x9c"), 2);
        assert_eq!(incomplete_utf8_tail(b"a\xe2\x9c\x93"), 0);
        assert_eq!(incomplete_utf8_tail(b"\xf0\x9f\x98"), 3);
        assert_eq!(incomplete_utf8_tail(b"\xff"), 0);
    }

    const TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

    #[tokio::test]
    async fn commands_are_recorded_redacted_and_forwarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.cast");
        let recorder = Arc::new(CastRecorder::create(&path, 80, 24, None).unwrap());
        let mut inner = MockRemoteHost::new();
        inner.expect_name().return_const("m".to_owned());
        inner.expect_exec().returning(|_, sink| {
            let sink = sink.unwrap();
            // The secret arrives split across two chunks.
            for piece in [
                "token is my-s3cr".as_bytes(),
                b"et-value and ",
                &TOKEN.as_bytes()[..10],
                &TOKEN.as_bytes()[10..],
                b"\n",
            ] {
                sink.send(OutputChunk {
                    stream: StreamKind::Stdout,
                    data: piece.to_vec(),
                })
                .unwrap();
            }
            sink.send(OutputChunk {
                stream: StreamKind::Stderr,
                data: b"warn\n".to_vec(),
            })
            .unwrap();
            Ok(ExecOutput {
                code: Some(3),
                stdout: format!("token is my-s3cret-value and {TOKEN}\n").into_bytes(),
                stderr: b"warn\n".to_vec(),
                ..Default::default()
            })
        });
        let host = RecordingHost::new(
            Arc::new(inner),
            recorder.clone(),
            Redactor::new(["my-s3cret-value"]),
        );
        assert_eq!(host.name(), "m");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let output = host
            .exec(
                ExecRequest::new("echo $TOKEN my-s3cret-value").env("TOKEN", "my-s3cret-value"),
                Some(tx),
            )
            .await
            .unwrap();
        assert_eq!(output.stdout_text(), "token is [REDACTED] and [REDACTED]\n");
        let mut forwarded = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            if chunk.stream == StreamKind::Stdout {
                forwarded.extend(chunk.data);
            }
        }
        assert_eq!(
            String::from_utf8(forwarded).unwrap(),
            "token is [REDACTED] and [REDACTED]\n"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("ghp_"), "{text}");
        let (_, all) = events(&path);
        let shown = output_text(&all);
        assert!(shown.starts_with("$ echo $TOKEN [REDACTED]\r\n"), "{shown}");
        assert!(shown.contains("warn\r\n"), "{shown}");
        assert!(shown.contains("[REDACTED]\r\n"), "{shown}");
        assert_eq!(crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert!(shown.ends_with("[btrfsqa: exit status 3]\r\n"), "{shown}");
    }

    #[tokio::test]
    async fn downloaded_logs_lose_their_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let recorder =
            Arc::new(CastRecorder::create(&dir.path().join("m.cast"), 80, 24, None).unwrap());
        let mut inner = MockRemoteHost::new();
        inner.expect_name().return_const("m".to_owned());
        inner.expect_download().returning(|_, local| {
            std::fs::write(local, format!("ok\ntoken={TOKEN}\n")).unwrap();
            Ok(())
        });
        let host = RecordingHost::new(Arc::new(inner), recorder, Redactor::default());
        let local = dir.path().join("011.full");
        host.download("/var/lib/xfstests/results/btrfs/011.full", &local)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&local).unwrap(),
            "ok\ntoken=[REDACTED]\n"
        );
    }

    #[tokio::test]
    async fn errors_are_recorded_and_returned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.cast");
        let recorder = Arc::new(CastRecorder::create(&path, 80, 24, None).unwrap());
        let mut inner = MockRemoteHost::new();
        inner.expect_exec().returning(|_, _| {
            Err(RemoteError::Unsupported {
                host: "m".into(),
                operation: "run commands",
            })
        });
        let host = RecordingHost::new(Arc::new(inner), recorder, Redactor::default());
        assert!(host.exec(ExecRequest::new("true"), None).await.is_err());
        let shown = output_text(&events(&path).1);
        assert!(
            shown.contains("[btrfsqa: `m` cannot run commands]"),
            "{shown}"
        );
    }
}
