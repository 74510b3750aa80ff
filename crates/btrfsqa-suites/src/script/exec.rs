//! Running a command on the machine that a cancelled run stops, with every
//! process it started; shared with the raid56 suite.

use std::time::Duration;

use btrfsqa_remote::{ExecOutput, ExecRequest, OutputSink, RemoteError, shell_quote};
use tokio_util::sync::CancellationToken;

use crate::SuiteContext;

/// How [`exec_or_cancel`] ended.
#[derive(Debug)]
pub(crate) enum Finished {
    /// The command ended (or hit its timeout).
    Done(ExecOutput),
    /// The token fired first; the command's processes were killed.
    Cancelled,
}

/// Runs `request` on the machine, racing it against `cancel` (the run's
/// [`SuiteContext::cancel`], or a token derived from it).
///
/// The command first writes its shell's pid to `pidfile`; `RemoteHost::exec`
/// runs it in its own process group, so on cancel the whole group is killed
/// through that pid (dropping the exec future alone would only end the
/// shell, and not on every host). Used by the raid56 suite as well.
pub(crate) async fn exec_or_cancel(
    ctx: &SuiteContext,
    cancel: &CancellationToken,
    mut request: ExecRequest,
    sink: Option<OutputSink>,
    pidfile: &str,
) -> Result<Finished, RemoteError> {
    if cancel.is_cancelled() {
        return Ok(Finished::Cancelled);
    }
    let quoted = shell_quote(pidfile);
    request.command = format!("echo $$ > {quoted} || exit 125; {}", request.command);
    tokio::select! {
        biased;
        () = cancel.cancelled() => {}
        out = ctx.host.exec(request, sink) => return out.map(Finished::Done),
    }
    let kill = format!(
        "{}; rm -f {quoted}; exit 0",
        crate::stop::stop_group(pidfile, 0)
    );
    ctx.host
        .exec(
            ExecRequest::new(kill).timeout(Duration::from_secs(30)),
            None,
        )
        .await?;
    Ok(Finished::Cancelled)
}
