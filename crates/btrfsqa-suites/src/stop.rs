//! Stopping a command a suite started on the machine together with every
//! process it started: the command runs as its own process group, whose
//! leader's pid it wrote to a file on the machine.

use btrfsqa_remote::shell_quote;

/// Shell text that succeeds while the group `$p` has a member that is not a
/// zombie: `kill -0` counts zombies, which stay while nothing reaps them (a
/// container whose init does not), and would make every stop wait its
/// whole grace.
const LIVE_MEMBER: &str = "ps -e -o pgid= -o stat= | awk -v g=\"$p\" '$1 == g && $2 !~ /^Z/ { live = 1 } END { exit !live }'";

/// Shell text that stops the process group whose leader's pid is in
/// `pidfile`: `SIGTERM` to the group, up to `grace_secs` for it to end
/// (a harness cleans up after a `SIGTERM`), then `SIGKILL` to what is left.
/// With no grace, `SIGKILL` at once. Nothing happens without a pid, and the
/// text always succeeds: the group may have ended on its own meanwhile.
///
/// `kill -SIG -PGID`, never `kill -SIG -- -PGID`: dash's `kill` has no
/// `--`. A leader that is no group leader (a host that ran the command
/// without its own session) is reached through its children and itself.
pub(crate) fn stop_group(pidfile: &str, grace_secs: u32) -> String {
    let pidfile = shell_quote(pidfile);
    let gentle = if grace_secs == 0 {
        String::new()
    } else {
        format!(
            "{{ kill -TERM -\"$p\" || kill -TERM \"$p\"; }} 2>/dev/null; \
             i=0; while [ $i -lt {grace_secs} ] && {LIVE_MEMBER}; do sleep 1; i=$((i+1)); done; "
        )
    };
    format!(
        "p=$(cat {pidfile} 2>/dev/null); if [ -n \"$p\" ]; then {gentle}\
         {{ kill -KILL -\"$p\" || {{ pkill -KILL -P \"$p\"; kill -KILL \"$p\"; }}; }} 2>/dev/null; fi; true"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// A real process group (a shell and a child of it) stopped by the text.
    fn stop_real_group(grace_secs: u32, ignore_term: bool) -> Duration {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let trap = if ignore_term { "trap '' TERM; " } else { "" };
        let script = format!(
            "{trap}echo $$ > {}; sleep 300 & sleep 300; wait",
            shell_quote(pidfile.to_str().unwrap())
        );
        let mut child = Command::new("setsid")
            .args(["-w", "sh", "-c", &script])
            .spawn()
            .unwrap();
        while std::fs::read_to_string(&pidfile).map_or(true, |p| p.trim().is_empty()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        let status = Command::new("sh")
            .args(["-c", &stop_group(pidfile.to_str().unwrap(), grace_secs)])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap();
        let pgid = std::fs::read_to_string(&pidfile).unwrap();
        let alive = Command::new("sh")
            .args(["-c", &format!("p={}; {LIVE_MEMBER}", pgid.trim())])
            .status()
            .unwrap()
            .success();
        assert!(!alive, "the group outlived the stop");
        started.elapsed()
    }

    #[test]
    fn a_group_is_stopped_gently_or_at_once() {
        // A group that ends on SIGTERM ends before its grace runs out.
        assert!(stop_real_group(10, false) < Duration::from_secs(5));
        // One that ignores SIGTERM is killed when the grace is over.
        assert!(stop_real_group(1, true) >= Duration::from_secs(1));
        // Without a grace, at once.
        assert!(stop_real_group(0, true) < Duration::from_secs(5));
    }

    #[test]
    fn nothing_happens_without_a_pid() {
        let status = Command::new("sh")
            .args(["-c", &stop_group("/nonexistent/pid", 5)])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
