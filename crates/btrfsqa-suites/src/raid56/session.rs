//! A scenario's commands on the machine: run with the scenario's time budget,
//! logged, and their failures turned into the verdict of the phase they are in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use btrfsqa_model::Verdict;
use btrfsqa_remote::{ExecOutput, ExecRequest, RemoteError, shell_quote};

use crate::SuiteContext;
use crate::script::{Finished, exec_or_cancel, tail_lines};

use super::parse::{ScrubCounters, ScrubState};
use super::{DAMAGE, LOG_TAIL, parse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Before the damage: failures are the harness's (`error`).
    Setup,
    /// After the damage: failures are btrfs's (`fail`).
    Check,
}

/// Why a scenario stopped early.
#[derive(Debug)]
pub(super) enum Stop {
    Verdict(Verdict, String),
    Remote(RemoteError),
    Cancelled,
}

/// Runs a scenario's commands, keeps a log of them, and turns failures into
/// the verdict of the current phase.
pub(super) struct Session<'a> {
    pub(super) ctx: &'a SuiteContext,
    pub(super) mnt: String,
    pub(super) pidfile: String,
    /// The scenario's `timeout-secs`.
    pub(super) budget: Duration,
    /// When that budget runs out.
    pub(super) deadline: Instant,
    pub(super) phase: Phase,
    pub(super) log: String,
}

impl Session<'_> {
    pub(super) fn fail(&self, message: String) -> Stop {
        let verdict = match self.phase {
            Phase::Setup => Verdict::Error,
            Phase::Check => Verdict::Fail,
        };
        Stop::Verdict(verdict, message)
    }

    /// Runs `command`; a non-zero exit is returned, not an error.
    pub(super) async fn sh(&mut self, command: String) -> Result<ExecOutput, Stop> {
        self.log.push_str(&format!("$ {command}\n"));
        // Each command gets what is left of the scenario's budget.
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.hung(&command));
        }
        let request = ExecRequest::new(command.clone()).timeout(left);
        let out =
            match exec_or_cancel(self.ctx, &self.ctx.cancel, request, None, &self.pidfile).await {
                Err(e) => {
                    self.log.push_str(&format!("[machine error: {e}]\n"));
                    return Err(Stop::Remote(e));
                }
                Ok(Finished::Cancelled) => {
                    self.log.push_str("[cancelled]\n");
                    return Err(Stop::Cancelled);
                }
                Ok(Finished::Done(out)) => out,
            };
        for text in [out.stdout_text(), out.stderr_text()] {
            if text.len() > LOG_TAIL {
                let mut cut = text.len() - LOG_TAIL;
                while !text.is_char_boundary(cut) {
                    cut += 1;
                }
                self.log
                    .push_str(&format!("[... {cut} bytes left out]\n{}", &text[cut..]));
            } else {
                self.log.push_str(&text);
            }
            if !text.is_empty() && !text.ends_with('\n') {
                self.log.push('\n');
            }
        }
        let status = match (out.timed_out, out.code) {
            (true, _) => "timed out".to_owned(),
            (false, Some(code)) => format!("exit {code}"),
            (false, None) => "killed by a signal".to_owned(),
        };
        self.log.push_str(&format!(
            "[{status}, {:.1} s]\n",
            out.duration.as_secs_f64()
        ));
        if out.timed_out {
            return Err(self.hung(&command));
        }
        Ok(out)
    }

    pub(super) fn hung(&self, command: &str) -> Stop {
        Stop::Verdict(
            Verdict::Hung,
            format!(
                "the scenario did not finish within its timeout of {} s (`timeout-secs`); \
                 `{}` was still running and was killed",
                self.budget.as_secs(),
                short(command)
            ),
        )
    }

    /// Runs `command` and requires exit status 0.
    pub(super) async fn ok(&mut self, command: String) -> Result<ExecOutput, Stop> {
        let out = self.sh(command.clone()).await?;
        if out.success() {
            return Ok(out);
        }
        Err(self.fail(command_failed(&command, &out)))
    }

    pub(super) async fn map(
        &mut self,
        dev0: &str,
        logical: u64,
        len: u64,
    ) -> Result<Vec<parse::Mapping>, Stop> {
        let out = self
            .ok(format!(
                "btrfs-map-logical -l {logical} -b {len} {}",
                shell_quote(dev0)
            ))
            .await?;
        // Errors go to stderr with exit status 0; parse both.
        let text = out.stdout_text() + &out.stderr_text();
        parse::parse_map_logical(&text).map_err(|e| self.fail(e.to_string()))
    }

    /// sha256 of the damage-sized range at `physical`, read past the page cache.
    pub(super) async fn device_sha(&mut self, device: &str, physical: u64) -> Result<String, Stop> {
        let out = self
            .ok(format!(
                "dd if={} bs=4096 skip={} count={} iflag=direct status=none | sha256sum",
                shell_quote(device),
                physical / 4096,
                DAMAGE / 4096
            ))
            .await?;
        sha_of(&out).map_err(|m| self.fail(m))
    }

    /// Every file's sha256, by path relative to the mount point.
    pub(super) async fn checksums(&mut self) -> Result<BTreeMap<String, String>, Stop> {
        let out = self
            .ok(format!(
                "cd {} && find . -type f | LC_ALL=C sort | xargs sha256sum",
                shell_quote(&self.mnt)
            ))
            .await?;
        parse::parse_sha256sum(&out.stdout_text()).map_err(|e| self.fail(e.to_string()))
    }

    /// Scrubs one device and returns its counters.
    pub(super) async fn scrub(&mut self, target: &str) -> Result<ScrubCounters, Stop> {
        let command = format!("btrfs scrub start -B -R {}", shell_quote(target));
        let out = self.sh(command.clone()).await?;
        let report = parse::parse_scrub(&out.stdout_text())
            .map_err(|e| self.fail(format!("{e}; {}", command_failed(&command, &out))))?;
        if report.state != Some(ScrubState::Finished) {
            return Err(self.fail(format!(
                "scrub of `{target}` did not finish (state {:?}, {}); {}",
                report.state,
                report.counters.summary(),
                command_failed(&command, &out)
            )));
        }
        Ok(report.counters)
    }

    /// Scrubs the whole filesystem and requires no error of any kind.
    pub(super) async fn clean_scrub(&mut self, mnt: &str) -> Result<(), Stop> {
        let counters = self.scrub(mnt).await?;
        if !counters.is_clean() {
            return Err(self.fail(format!(
                "a second scrub of the whole filesystem still found errors: {}; expected none",
                counters.summary()
            )));
        }
        Ok(())
    }

    /// Drops caches, mounts `dev0`, and compares every file's sha256.
    pub(super) async fn remount_and_verify(
        &mut self,
        dev0: &str,
        expected: &BTreeMap<String, String>,
        when: &str,
    ) -> Result<(), Stop> {
        let m = shell_quote(&self.mnt);
        self.ok("sync && echo 3 > /proc/sys/vm/drop_caches".into())
            .await?;
        self.ok(format!("mount {} {m}", shell_quote(dev0))).await?;
        let out = self
            .sh(format!(
                "cd {m} && find . -type f | LC_ALL=C sort | xargs sha256sum"
            ))
            .await?;
        let actual = parse::parse_sha256sum(&out.stdout_text()).unwrap_or_default();
        let diffs = parse::diff_sums(expected, &actual);
        if diffs.is_empty() && out.success() {
            return Ok(());
        }
        let mut message = format!("file checksums changed {when}: ");
        let shown: Vec<&str> = diffs.iter().take(5).map(String::as_str).collect();
        message.push_str(&shown.join("; "));
        if diffs.len() > shown.len() {
            message.push_str(&format!("; and {} more", diffs.len() - shown.len()));
        }
        let stderr = tail_lines(&out.stderr_text(), 3);
        if !stderr.is_empty() {
            message.push_str(&format!("\nstderr:\n{stderr}"));
        }
        Err(self.fail(message))
    }
}

/// A command shortened for messages.
pub(super) fn short(command: &str) -> String {
    const MAX: usize = 160;
    if command.len() <= MAX {
        return command.to_owned();
    }
    let mut cut = MAX;
    while !command.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &command[..cut])
}

pub(super) fn command_failed(command: &str, out: &ExecOutput) -> String {
    let status = match out.code {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".to_owned(),
    };
    let mut tail = tail_lines(&out.stderr_text(), 5);
    if tail.is_empty() {
        tail = tail_lines(&out.stdout_text(), 5);
    }
    if tail.is_empty() {
        format!("`{}` {status} (no output)", short(command))
    } else {
        format!("`{}` {status}:\n{tail}", short(command))
    }
}

/// The digest from `... | sha256sum`.
pub(super) fn sha_of(out: &ExecOutput) -> Result<String, String> {
    parse::parse_sha256sum(&out.stdout_text())
        .map_err(|e| e.to_string())?
        .into_values()
        .next()
        .ok_or_else(|| "no checksum".to_owned())
}
