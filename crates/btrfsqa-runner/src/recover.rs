//! Machines that hang or crash in the middle of a run: evidence, a verdict
//! for the test that was running, a reset, and the tests not yet run.
//!
//! The pieces here are small and separately testable; the pipeline strings
//! them together (`Runner::recover`).

use std::time::Duration;

use btrfsqa_remote::{ExecRequest, RemoteHost};

/// How many times one machine may be reset in a run before its remaining
/// tests are given up on (they keep no verdict: `btrfsqa resume` runs them).
pub const MAX_RESETS: usize = 3;

/// How often the provider is asked whether a machine is being taken away
/// (a spot interruption notice).
pub const NOTICE_POLL: Duration = Duration::from_secs(15);

/// Why a suite stopped in a way that needs the machine looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// `test` ran past its timeout.
    Hung {
        /// The test.
        test: String,
    },
    /// The machine stopped answering (a crash, a killed VM, a cut
    /// connection) while `test` ran.
    Lost {
        /// The test, when one was running.
        test: Option<String>,
        /// What the connection said.
        error: String,
    },
}

/// Whether the machine runs a trivial command within `within`.
pub async fn answers(host: &dyn RemoteHost, within: Duration) -> bool {
    let probe = host.exec(ExecRequest::new("true").timeout(within), None);
    matches!(
        tokio::time::timeout(within + Duration::from_secs(5), probe).await,
        Ok(Ok(out)) if out.success()
    )
}

pub use btrfsqa_suites::kernel_log::hang_evidence;

/// Lines on a console that say the kernel died or is dying.
const CRASH_MARKERS: [&str; 8] = [
    "Kernel panic",
    "Oops:",
    "BUG:",
    "kernel BUG at",
    "general protection fault",
    "sysrq: Trigger a crash",
    "Unable to handle kernel",
    "watchdog: BUG: soft lockup",
];

/// How many console lines an excerpt keeps before the first crash line, and
/// at most in all.
const EXCERPT_BEFORE: usize = 20;
const EXCERPT_LINES: usize = 120;

/// `text` from byte `at` on (moved forward to a character boundary: a
/// console read lossily may have changed its length around `at`).
pub fn text_after(text: &str, at: usize) -> &str {
    let start = (at.min(text.len())..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

/// A crash on `console`: its first line and an excerpt around it. `None`
/// when the console shows no crash.
pub fn console_crash(console: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = console.lines().collect();
    let first = lines
        .iter()
        .position(|line| CRASH_MARKERS.iter().any(|m| line.contains(m)))?;
    let from = first.saturating_sub(EXCERPT_BEFORE);
    let to = (from + EXCERPT_LINES).min(lines.len());
    let headline = lines[first].trim().to_owned();
    Some((headline, lines[from..to].join("\n") + "\n"))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    1.000000] Linux version 6.18.0\n\
[    9.000000] systemd[1]: Started ssh.service\n\
[   60.000000] sysrq: Trigger a crash\n\
[   60.000100] Kernel panic - not syncing: sysrq triggered crash\n\
[   60.000200] CPU: 0 UID: 0 PID: 812 Comm: sh Not tainted 6.18.0 #1\n\
[   60.000300] Call Trace:\n";

    #[test]
    fn a_crash_after_the_mark_is_found_with_its_context() {
        let (headline, excerpt) = console_crash(CONSOLE).unwrap();
        assert_eq!(headline, "[   60.000000] sysrq: Trigger a crash");
        assert!(excerpt.contains("Kernel panic - not syncing"));
        assert!(
            excerpt.contains("Linux version"),
            "lines before the crash are kept"
        );
    }

    #[test]
    fn a_crash_before_the_mark_is_an_earlier_boot_and_not_this_test() {
        let mark = CONSOLE.find("[   60.000300]").unwrap();
        assert!(console_crash(text_after(CONSOLE, mark)).is_none());
        assert!(console_crash(text_after(CONSOLE, CONSOLE.len() + 10)).is_none());
        assert!(console_crash("").is_none());
    }

    #[test]
    fn a_mark_inside_a_character_does_not_panic() {
        let console = "é\nKernel panic - not syncing\n";
        assert!(console_crash(text_after(console, 1)).is_some());
    }

    #[test]
    fn long_consoles_give_bounded_excerpts() {
        let mut console = String::new();
        for i in 0..1000 {
            console.push_str(&format!("line {i}\n"));
        }
        console.push_str("BUG: kernel NULL pointer dereference\n");
        for i in 0..1000 {
            console.push_str(&format!("after {i}\n"));
        }
        let (_, excerpt) = console_crash(&console).unwrap();
        assert_eq!(excerpt.lines().count(), EXCERPT_LINES);
        assert!(excerpt.starts_with("line 980\n"));
    }

    #[tokio::test]
    async fn a_machine_that_answers_and_one_that_does_not() {
        let host = btrfsqa_remote::LocalHost::new("m");
        assert!(answers(&host, Duration::from_secs(10)).await);
        let mut dead = btrfsqa_remote::MockRemoteHost::new();
        dead.expect_exec().returning(|_, _| {
            Err(btrfsqa_remote::RemoteError::Disconnected {
                host: "m".into(),
                command: "true".into(),
                source: "connection reset".into(),
            })
        });
        assert!(!answers(&dead, Duration::from_secs(1)).await);
    }
}
