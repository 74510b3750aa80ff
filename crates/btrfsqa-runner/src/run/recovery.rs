//! Machines that hang or crash in the middle of a run: evidence, a verdict
//! for the test that was running, a reset, and the tests not yet run.
//!
//! The pieces are small and separately testable; [`recover`] strings them
//! together for a machine worker.

use std::time::Duration;

use chrono::Utc;

use btrfsqa_cloud::Machine;
use btrfsqa_model::{Event, Provenance, RunReport, SuiteReport, TestOutcome, Verdict};
use btrfsqa_remote::{ExecRequest, RemoteHost};

use super::machine::{Session, kernel_info, release_devices};
use super::runner::WorkerEnv;
use crate::error::error_chain;

/// How long a static host rebooted after a hang or crash may take to answer.
const REBOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// What [`recover`] keeps across one machine's recoveries.
#[derive(Default)]
pub(crate) struct Recovery {
    resets: usize,
    /// `suite/test` run again after a broken connection (once each).
    retried: std::collections::HashSet<String>,
}

impl Recovery {
    /// How many times the machine was reset (or cleaned up instead).
    pub(crate) fn resets(&self) -> usize {
        self.resets
    }
}

/// How many times one machine may be reset in a run before its remaining
/// tests are given up on (they keep no verdict: `btrfsqa resume` runs them).
pub(crate) const MAX_RESETS: usize = 3;

/// Why a suite stopped in a way that needs the machine looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trouble {
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

impl Trouble {
    /// The test the trouble was in, when one was running.
    pub(crate) fn test(&self) -> Option<&str> {
        match self {
            Trouble::Hung { test } => Some(test),
            Trouble::Lost { test, .. } => test.as_deref(),
        }
    }
}

/// Whether the machine runs a trivial command within `within`.
pub(crate) async fn answers(host: &dyn RemoteHost, within: Duration) -> bool {
    let probe = host.exec(ExecRequest::new("true").timeout(within), None);
    matches!(
        tokio::time::timeout(within + Duration::from_secs(5), probe).await,
        Ok(Ok(out)) if out.success()
    )
}

use btrfsqa_suites::kernel_log::hang_evidence;

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
pub(crate) fn text_after(text: &str, at: usize) -> &str {
    let start = (at.min(text.len())..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

/// A crash on `console`: its first line and an excerpt around it. `None`
/// when the console shows no crash.
pub(crate) fn console_crash(console: &str) -> Option<(String, String)> {
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
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

/// After a suite stopped on `trouble`: keeps the evidence with the test,
/// gives it its verdict in `part` (`hung`, `crashed`, or no verdict when
/// only the connection broke and the test should run again), and makes
/// the machine usable again (a reset and a new connection, or a clean-up
/// where the provider cannot reset). `Err` when the machine cannot be
/// used any more: its remaining tests keep no verdict (resumable).
pub(crate) async fn recover(
    env: &WorkerEnv<'_>,
    machine: &Machine,
    session: &mut Session,
    part: &mut SuiteReport,
    trouble: Trouble,
    recovery: &mut Recovery,
) -> Result<(), String> {
    let sink = env.sink;
    let stop = env.stop;
    let runner = env.runner;
    let name = machine.name.clone();
    let suite = part.id.clone();
    let host = session.host.clone();
    let alive = answers(host.as_ref(), Duration::from_secs(30)).await;
    let console = runner.provider.console(machine).await;
    let this_boot = console
        .as_deref()
        .map(|c| text_after(c, session.console_mark))
        .unwrap_or_default();
    let crash = console_crash(this_boot);
    let ctx = &session.ctx;
    let outcome_of = |part: &mut SuiteReport, test: &str| -> usize {
        match part.tests.iter().rposition(|t| t.name == test) {
            Some(at) => at,
            None => {
                let mut outcome = TestOutcome::new(&suite, test, Verdict::Error);
                outcome.machine = Some(name.clone());
                part.tests.push(outcome);
                part.tests.len() - 1
            }
        }
    };
    let reason = match &trouble {
        Trouble::Hung { test } => {
            let at = outcome_of(part, test);
            // A suite that kept its own evidence (fstests) keeps it alone.
            let kept = part.tests[at]
                .artifacts
                .iter()
                .any(|a| a.path.ends_with("hang-evidence.txt"));
            let mut evidence = match alive {
                _ if kept => String::new(),
                true => hang_evidence(host.as_ref())
                    .await
                    .unwrap_or_else(|| "(the evidence command did not finish)\n".into()),
                false => "(the machine does not answer: no kernel log)\n".into(),
            };
            if !this_boot.is_empty() {
                evidence.push_str("\n== btrfsqa: console (last 200 lines) ==\n");
                evidence.push_str(&tail(this_boot, 200));
            }
            if !kept
                && let Ok(artifact) = ctx.write_artifact(
                    &suite,
                    test,
                    "hang-evidence.txt",
                    btrfsqa_model::ArtifactKind::Log,
                    evidence.as_bytes(),
                )
            {
                part.tests[at].artifacts.push(artifact);
            }
            if let Some((headline, _)) = &crash {
                let outcome = &mut part.tests[at];
                outcome.message = Some(format!(
                    "{}\nthe console shows: {headline}",
                    outcome.message.as_deref().unwrap_or("hung")
                ));
            }
            format!("`{suite}/{test}` hung")
        }
        Trouble::Lost { test, error } => {
            if alive && crash.is_none() {
                // The connection broke; the machine did not.
                if let Some(test) = test {
                    let key = format!("{suite}/{test}");
                    if recovery.retried.insert(key) {
                        part.tests.retain(|t| &t.name != test);
                        sink(Event::Warning {
                            machine: Some(name.clone()),
                            message: format!(
                                "the connection to `{name}` broke during `{suite}/{test}` ({error}); the machine answers: running the test again"
                            ),
                        });
                    } else {
                        let at = outcome_of(part, test);
                        let outcome = &mut part.tests[at];
                        outcome.verdict = Verdict::Error;
                        outcome.message = Some(format!(
                            "the connection to `{name}` broke twice during this test (the machine answers): {error}"
                        ));
                    }
                } else {
                    part.error = Some(format!("the connection to `{name}` broke: {error}"));
                }
                return release_devices(host.as_ref(), machine)
                    .await
                    .map_err(|m| format!("cleaning up `{name}` after a broken connection: {m}"));
            }
            if let Some(test) = test {
                let at = outcome_of(part, test);
                let kept = match &crash {
                    Some((_, excerpt)) => Some(excerpt.clone()),
                    None if !this_boot.is_empty() => Some(tail(this_boot, 200)),
                    None => None,
                };
                if let Some(kept) = kept
                    && let Ok(artifact) = ctx.write_artifact(
                        &suite,
                        test,
                        "console.txt",
                        btrfsqa_model::ArtifactKind::Console,
                        kept.as_bytes(),
                    )
                {
                    part.tests[at].artifacts.push(artifact);
                }
                let outcome = &mut part.tests[at];
                outcome.verdict = Verdict::Crashed;
                outcome.message = Some(match &crash {
                    Some((headline, _)) => format!("the kernel crashed: {headline}"),
                    None => format!(
                        "the machine stopped answering while this test ran (no panic on the console): {error}"
                    ),
                });
                // The journal's last word on the test is its verdict.
                sink(Event::TestFinished {
                    machine: name.clone(),
                    outcome: outcome.clone(),
                });
            }
            match test {
                Some(test) => format!("`{suite}/{test}` crashed it"),
                None => format!("it stopped answering during `{suite}`"),
            }
        }
    };
    part.error = None;

    if recovery.resets >= MAX_RESETS {
        return Err(format!(
            "machine `{name}` needed more than {} resets ({reason}); its remaining tests were not run (`btrfsqa resume` runs them)",
            MAX_RESETS
        ));
    }
    recovery.resets += 1;
    sink(Event::Warning {
        machine: Some(name.clone()),
        message: format!("recovering machine `{name}`: {reason}"),
    });
    let host = match runner.provider.reset(machine).await {
        Ok(()) => {
            let host = tokio::select! {
                host = runner.connector.connect(machine) => host.map_err(|err| format!(
                    "machine `{name}` did not come back after its reset: {}",
                    error_chain(&err)
                ))?,
                () = stop.cancelled() => return Err("stopped while the machine was being reset".into()),
            };
            crate::recording::rewrap(session.recording.as_ref(), host)
        }
        // A static host that still answers: rebooted over SSH (the same
        // connection object comes back connected to the new boot).
        Err(btrfsqa_cloud::ProvisionError::Unsupported { .. })
            if alive && matches!(machine.access, btrfsqa_cloud::Access::Ssh(_)) =>
        {
            sink(Event::Warning {
                machine: Some(name.clone()),
                message: format!(
                    "provider `{}` cannot reset `{name}`: rebooting it over SSH",
                    runner.provider.id()
                ),
            });
            tokio::select! {
                rebooted = host.reboot_and_wait(REBOOT_TIMEOUT) => rebooted.map_err(|err| format!(
                    "machine `{name}` did not come back from its reboot ({reason}): {}",
                    error_chain(&err)
                ))?,
                () = stop.cancelled() => return Err("stopped while the machine was rebooting".into()),
            }
            host.clone()
        }
        Err(btrfsqa_cloud::ProvisionError::Unsupported { .. }) => {
            // This machine (or a static host that no longer answers).
            if !alive {
                return Err(format!(
                    "machine `{name}` does not answer and provider `{}` cannot reset it ({reason})",
                    runner.provider.id()
                ));
            }
            release_devices(host.as_ref(), machine)
                .await
                .map_err(|m| format!("cleaning up `{name}` after {reason}: {m}"))?;
            sink(Event::Warning {
                machine: Some(name.clone()),
                message: format!(
                    "provider `{}` cannot reset `{name}`: its devices were cleaned up instead; going on",
                    runner.provider.id()
                ),
            });
            return Ok(());
        }
        Err(err) => {
            return Err(format!(
                "resetting machine `{name}` failed ({reason}): {}",
                error_chain(&err)
            ));
        }
    };
    let mut host = host;
    let kernel = kernel_info(host.as_ref()).await;
    if let (Some(want), Some(got)) = (&session.kernel_release, &kernel.release)
        && want != got
    {
        // A machine that boots its own kernel after a reset (an EC2
        // reboot, a static host) gets the kernel under test again; the
        // build is in the results store, so this is an install and boot.
        if runner.settings.config.kernel.git_source().is_none() {
            return Err(format!(
                "machine `{name}` came back from its reset with kernel {got}, not {want}"
            ));
        }
        sink(Event::Warning {
            machine: Some(name.clone()),
            message: format!("machine `{name}` came back with kernel {got}: booting {want} again"),
        });
        let kernel_env = runner.kernel_env(&session.ctx.run_dir, sink, stop);
        // The stage's own record of this boot is not kept: the run's
        // report has the first one.
        let mut scratch =
            RunReport::start(machine.run_id.clone(), Utc::now(), Provenance::default());
        scratch.provenance.machines.push(machine.info());
        host = crate::kernel::run_stage(&kernel_env, machine, host, &mut scratch)
            .await
            .map_err(|m| {
                format!("booting the kernel under test on `{name}` after its reset failed: {m}")
            })?;
        host = crate::recording::rewrap(session.recording.as_ref(), host);
        let again = kernel_info(host.as_ref()).await;
        if again.release.as_ref() != Some(want) {
            return Err(format!(
                "machine `{name}` runs kernel {} after its reset, not {want}",
                again.release.as_deref().unwrap_or("(unknown)")
            ));
        }
    }
    session.console_mark = runner
        .provider
        .console(machine)
        .await
        .map_or(0, |c| c.len());
    session.host = host.clone();
    session.ctx.host = host;
    sink(Event::Warning {
        machine: Some(name),
        message: "machine is back after its reset; going on with the tests not yet run".into(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A property test: any console (random bytes around real panic and
    /// boot lines, cut anywhere, marks anywhere), 5000 of them, no panic;
    /// an excerpt is always part of the console.
    #[test]
    fn any_console_is_read_without_panicking() {
        let lines = [
            "[    1.000000] Linux version 6.18.0\n",
            "[   60.100000] Kernel panic - not syncing: sysrq triggered crash\n",
            "[   60.000000] BUG: unable to handle page fault\n",
            "watchdog: BUG: soft lockup - CPU#0 stuck\n",
            "\u{1b}[0m\r\n",
            "Oops:",
            "\u{0}\u{7f}é",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let mut console = String::new();
            for _ in 0..next() % 12 {
                if next() % 3 == 0 {
                    let noise: Vec<u8> = (0..next() % 40).map(|_| next() as u8).collect();
                    console.push_str(&String::from_utf8_lossy(&noise));
                } else {
                    console.push_str(lines[(next() % lines.len() as u64) as usize]);
                }
            }
            let mark = (next() as usize) % (console.len() + 2);
            let after = text_after(&console, mark);
            assert!(console.ends_with(after));
            if let Some((headline, excerpt)) = console_crash(after) {
                assert!(after.contains(headline.trim()) || !headline.is_empty());
                assert!(!excerpt.is_empty());
            }
            let _ = tail(&console, (next() % 300) as usize);
        }
    }

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
