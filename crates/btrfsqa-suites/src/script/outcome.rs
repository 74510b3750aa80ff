//! How a script's exit and output become its verdict and message.

use std::time::Duration;

use btrfsqa_model::Verdict;
use btrfsqa_remote::{ExecOutput, OutputSink, StreamKind};

use crate::kernel_log;

use super::{MESSAGE_LINES, SKIP_EXIT_CODE};

/// Maps how a script ended to its verdict and message.
pub(super) fn verdict_for(
    output: &ExecOutput,
    timeout: Duration,
    last_line: &Option<String>,
) -> (Verdict, Option<String>) {
    if output.timed_out {
        return (
            Verdict::Hung,
            Some(format!(
                "did not finish within its timeout of {} s; killed with every process it started",
                timeout.as_secs()
            )),
        );
    }
    match output.code {
        Some(0) => (Verdict::Pass, None),
        Some(SKIP_EXIT_CODE) => (
            Verdict::Skip,
            Some(
                last_line
                    .clone()
                    .unwrap_or_else(|| "skipped (exit 77)".into()),
            ),
        ),
        // The wrapping shell reports a script killed by signal N as 128 + N.
        Some(code @ 129..=159) => (
            Verdict::Fail,
            Some(failure_message(
                &format!("was killed by signal {}", code - 128),
                output,
            )),
        ),
        Some(code) => (
            Verdict::Fail,
            Some(failure_message(&format!("exited with code {code}"), output)),
        ),
        None => (
            Verdict::Fail,
            Some(failure_message("was killed by a signal", output)),
        ),
    }
}

fn failure_message(what: &str, output: &ExecOutput) -> String {
    let stderr = tail_lines(&output.stderr_text(), MESSAGE_LINES);
    if !stderr.is_empty() {
        return format!("{what}; stderr:\n{stderr}");
    }
    let stdout = tail_lines(&output.stdout_text(), MESSAGE_LINES);
    if !stdout.is_empty() {
        return format!("{what} (no stderr); stdout:\n{stdout}");
    }
    format!("{what} (no output)")
}

/// The last `n` non-empty lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What the streamed output showed: byte counts per stream and the tail of
/// both streams interleaved in arrival order (for the skip reason).
#[derive(Debug, Default)]
pub(super) struct OutputTail {
    pub(super) stdout_bytes: u64,
    pub(super) stderr_bytes: u64,
    pub(super) combined: Vec<u8>,
}

impl OutputTail {
    pub(super) fn last_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.combined);
        // The kernel log appended after the script is not the script's.
        let own = match text.rfind(&format!("\n{}\n", kernel_log::BEGIN_MARKER)) {
            Some(at) => &text[..at],
            // A kernel log longer than the tail pushed the script's own
            // lines out: the captured streams tell them instead.
            None if text.contains(kernel_log::END_MARKER) => return None,
            None => &text[..],
        };
        last_line_of(own)
    }
}

pub(super) fn last_line_of(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
}

/// A sink and the task that drains it as output arrives, so a chatty script
/// costs a bounded amount of memory.
pub(super) fn output_tail() -> (OutputSink, tokio::task::JoinHandle<OutputTail>) {
    const KEEP: usize = 64 * 1024;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<btrfsqa_remote::OutputChunk>();
    let task = tokio::spawn(async move {
        let mut tail = OutputTail::default();
        while let Some(chunk) = rx.recv().await {
            match chunk.stream {
                StreamKind::Stdout => tail.stdout_bytes += chunk.data.len() as u64,
                StreamKind::Stderr => tail.stderr_bytes += chunk.data.len() as u64,
            }
            tail.combined.extend_from_slice(&chunk.data);
            if tail.combined.len() > KEEP {
                let excess = tail.combined.len() - KEEP;
                tail.combined.drain(..excess);
            }
        }
        tail
    });
    (tx, task)
}
