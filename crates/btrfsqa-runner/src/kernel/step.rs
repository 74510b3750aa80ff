//! What every step of the kernel stage shares: its environment, its error
//! and running a command with a one-line reason when it fails.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use btrfsqa_cloud::CloudProvider;
use btrfsqa_model::EventSink;
use btrfsqa_remote::{ExecRequest, RemoteHost};

use crate::connect::Connector;
use crate::settings::Settings;

/// What the stage needs from the runner.
pub(crate) struct StageEnv<'a> {
    pub settings: &'a Settings,
    pub provider: &'a Arc<dyn CloudProvider>,
    pub connector: &'a Arc<dyn Connector>,
    pub run_dir: &'a Path,
    pub sink: &'a EventSink,
    pub stop: &'a CancellationToken,
    /// Replaces the builder (tests); `None` picks by `kernel.build-on`.
    pub builder: Option<Arc<dyn RemoteHost>>,
}

/// A failed step; the message starts with what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageError(pub String);

impl StageError {
    pub(super) fn new(what: &str, detail: impl std::fmt::Display) -> Self {
        StageError(format!("{what}: {detail}"))
    }
}

pub(super) const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `script`; its stdout, or a one-line reason.
pub(super) async fn exec(
    host: &dyn RemoteHost,
    script: String,
    timeout: Duration,
) -> Result<String, String> {
    exec_request(host, ExecRequest::new(script).timeout(timeout)).await
}

/// [`exec`] of a request of one's own (one with an environment).
pub(super) async fn exec_request(
    host: &dyn RemoteHost,
    request: ExecRequest,
) -> Result<String, String> {
    let timeout = request.timeout;
    match host.exec(request, None).await {
        Ok(out) if out.success() => Ok(out.stdout_text()),
        Ok(out) if out.timed_out => Err(format!(
            "no result within {} s",
            timeout.unwrap_or_default().as_secs()
        )),
        Ok(out) => Err(format!(
            "exit status {}: {}",
            out.code.map_or("none".to_owned(), |c| c.to_string()),
            last_lines(&format!("{}\n{}", out.stdout_text(), out.stderr_text()), 4)
        )),
        Err(e) => Err(crate::error::error_chain(&e)),
    }
}

pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

pub(super) fn write_file(path: &Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| {
        StageError::new(
            "kernel stage failed",
            format!("cannot write `{}`: {e}", path.display()),
        )
    })
}
