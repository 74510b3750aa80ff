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
    let pidfile = shell_quote(pidfile);
    request.command = format!("echo $$ > {pidfile} || exit 125; {}", request.command);
    tokio::select! {
        biased;
        () = cancel.cancelled() => {}
        out = ctx.host.exec(request, sink) => return out.map(Finished::Done),
    }
    // `kill -KILL -PGID`, not `kill -KILL -- -PGID`: dash's kill has no `--`.
    let kill = format!(
        "p=$(cat {pidfile} 2>/dev/null) && [ -n \"$p\" ] && \
         {{ kill -KILL -\"$p\" 2>/dev/null || {{ pkill -KILL -P \"$p\"; kill -KILL \"$p\"; }}; }} 2>/dev/null; \
         rm -f {pidfile}; exit 0"
    );
    ctx.host
        .exec(
            ExecRequest::new(kill).timeout(Duration::from_secs(30)),
            None,
        )
        .await?;
    Ok(Finished::Cancelled)
}
