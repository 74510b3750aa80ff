//! The text sent to the machine: the private ssh configuration, and the
//! shell commands that wrap, kill, upload, download and detach, with every
//! value passed as an argument rather than spliced into code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::shell_quote;

/// What ssh is told, whatever the user's own configuration says (`-F` makes
/// ssh skip both `~/.ssh/config` and `/etc/ssh/ssh_config`). Host keys are
/// checked only against the host's own file, which ssh never rewrites.
pub(super) const SSH_CONFIG: &str = "\
# Written by btrfsqa for one machine; ssh reads no other configuration.
Host *
  BatchMode yes
  PasswordAuthentication no
  KbdInteractiveAuthentication no
  GlobalKnownHostsFile /dev/null
  HashKnownHosts no
  CheckHostIP no
  UpdateHostKeys no
  ServerAliveCountMax 3
  ForwardAgent no
  ForwardX11 no
  RequestTTY no
  LogLevel ERROR
";

/// `exec sh -c BODY NAME ARGS...`: the login shell of the remote user (bash,
/// zsh, fish...) only sees quoted words; everything else runs in `sh`, with
/// the values as positional parameters rather than spliced into code.
pub(super) fn sh_command(body: &str, name: &str, args: &[&str]) -> String {
    let mut command = format!("exec sh -c {} {}", shell_quote(body), name);
    for arg in args {
        command.push(' ');
        command.push_str(&shell_quote(arg));
    }
    command
}

/// The remote command line for `script` (see the module documentation).
/// `$1` names the file in `$TMPDIR` that receives the process group id, `$2`
/// is the script.
///
/// The channel's standard input is kept open by the controller for as long
/// as it waits for the command and never written: a watcher in the wrapper
/// reads it, and when it ends (the controller dropped the command, exited
/// or died, or the connection broke) kills the command's group. The script
/// itself reads `/dev/null`. (`exec 3<&0` first: a shell gives a background
/// job `/dev/null` as its standard input.)
pub(super) fn wrap_exec(script: &str, pgid_file: &str) -> String {
    const WRAPPER: &str = r#"f=${TMPDIR:-/tmp}/$1
exec 3<&0 </dev/null
setsid -w sh -c '{ echo $$ > "$1"; } 2>/dev/null; exec sh -c "$2"' btrfsqa-cmd "$f" "$2" 3<&- &
c=$!
(while read -r x <&3; do :; done; if [ -s "$f" ]; then kill -9 -"$(cat "$f")"; fi) >/dev/null 2>&1 &
w=$!
exec 3<&-
wait $c
s=$?
kill -9 $w 2>/dev/null
if [ -s "$f" ]; then kill -9 -"$(cat "$f")" 2>/dev/null; fi
rm -f "$f"
exit $s"#;
    sh_command(WRAPPER, "btrfsqa-exec", &[pgid_file, script])
}

/// Kills the group in `$1`, waiting a little for the file in case the
/// command is only just starting. (`kill -9 -PGID`: dash's `kill` takes no
/// `--`.)
pub(super) fn kill_group_command(pgid_file: &str) -> String {
    const KILL: &str = r#"f=${TMPDIR:-/tmp}/$1
i=0
while [ ! -s "$f" ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
if [ -s "$f" ]; then kill -9 -"$(cat "$f")"; fi"#;
    sh_command(KILL, "btrfsqa-kill", &[pgid_file])
}

pub(super) fn upload_command(remote: &str) -> String {
    sh_command(
        r#"mkdir -p -- "$(dirname -- "$1")" && exec cat > "$1""#,
        "btrfsqa-upload",
        &[remote],
    )
}

pub(super) fn download_command(remote: &str) -> String {
    sh_command(r#"exec cat -- "$1""#, "btrfsqa-download", &[remote])
}

/// Runs `command` in a new session after a second, detached from the
/// channel, so that the channel can report back before the network goes.
pub(super) fn detached_command(command: &str) -> String {
    format!(
        "setsid -f sh -c {} </dev/null >/dev/null 2>&1",
        shell_quote(&format!("sleep 1; {command}"))
    )
}

/// A name for the file (in the machine's `$TMPDIR`) that holds a command's
/// process group id.
pub(super) fn unique_pgid_file() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "btrfsqa-exec.{}.{}.{:08x}.pgid",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}
