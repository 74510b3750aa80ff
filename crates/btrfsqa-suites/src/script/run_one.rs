//! Running one script on the machine: its command and environment, its
//! verdict, and the cleanup of what it left mounted.

use std::time::{Duration, Instant};

use btrfsqa_model::{ArtifactKind, Event, TestOutcome, Verdict};
use btrfsqa_remote::{ExecRequest, shell_quote};

use crate::{SuiteContext, SuiteError, kernel_log};

use super::exec::{Finished, exec_or_cancel};
use super::outcome::{OutputTail, last_line_of, output_tail, tail_lines, verdict_for};
use super::{MESSAGE_LINES, RemotePaths, Script, ScriptSuite, ScriptSuiteConfig};

impl ScriptSuite {
    pub(super) fn paths(&self, ctx: &SuiteContext) -> Result<RemotePaths, SuiteError> {
        let work = ctx.devices.work_dir.trim_end_matches('/');
        if !work.starts_with('/') {
            return Err(self.config_error(format!(
                "the machine's work directory `{}` is not an absolute path",
                ctx.devices.work_dir
            )));
        }
        Ok(RemotePaths {
            work_dir: work.to_owned(),
            scripts: format!("{work}/scripts/{}", self.id),
            pidfile: format!("{work}/scripts/{}.pid", self.id),
            test_dir: format!("{work}/mnt/test"),
            scratch_mnt: format!("{work}/mnt/scratch"),
        })
    }

    /// Runs one script and returns its outcome.
    pub(super) async fn run_one(
        &self,
        ctx: &SuiteContext,
        paths: &RemotePaths,
        script: &Script,
    ) -> Result<(TestOutcome, bool), SuiteError> {
        let started_at = chrono::Utc::now();
        let started = Instant::now();
        let mut outcome = TestOutcome::new(&self.id, &script.name, Verdict::Pass);
        outcome.started_at = Some(started_at);
        let timeout = ctx.timeout_for(
            &self.id,
            &script.name,
            self.config.configured_timeout(&script.name),
            ScriptSuiteConfig::default_timeout(),
        );
        let remote_script = format!("{}/{}", paths.scripts, script.name);

        let finish = |mut outcome: TestOutcome, verdict, message: String| {
            outcome.verdict = verdict;
            outcome.message = Some(message);
            outcome.duration_secs = Some(started.elapsed().as_secs_f64());
            outcome
        };

        if !script.executable {
            let message = format!(
                "`{}` is not executable (chmod +x it)",
                script.path.display()
            );
            return Ok((finish(outcome, Verdict::Error, message), false));
        }
        // The mount points are made here rather than in a separate command:
        // every command per test is overhead on every test.
        // The mount points are made and the cleanup done in the test's own
        // command rather than in commands of their own: every command per
        // test is overhead on every test. The cleanup reports on stderr, so
        // the test's log shows what it left mounted.
        // What the kernel logs meanwhile is appended to stderr and taken
        // back out below (crate::kernel_log).
        let mut request = ExecRequest::new(format!(
            "{}t={}; s={}; [ -d \"$t\" ] && [ -d \"$s\" ] || mkdir -p \"$t\" \"$s\" 2>/dev/null; ./{} 9<&-; rc=$?; {{ {}; }} >&2; {}exit $rc",
            kernel_log::follow_snippet(),
            shell_quote(&paths.test_dir),
            shell_quote(&paths.scratch_mnt),
            script.name,
            self.cleanup_snippet(ctx, paths),
            kernel_log::report_snippet(),
        ))
        .cwd(&paths.scripts)
        .timeout(timeout);
        for (key, value) in &self.config.env {
            request = request.env(key, value);
        }
        let pool = ctx.devices.scratch_devs.join(" ");
        let first = ctx
            .devices
            .scratch_devs
            .first()
            .cloned()
            .unwrap_or_default();
        request = request
            .env("TEST_DEV", &ctx.devices.test_dev)
            .env("SCRATCH_DEV_POOL", pool)
            .env("SCRATCH_DEV", first)
            .env("TEST_DIR", &paths.test_dir)
            .env("SCRATCH_MNT", &paths.scratch_mnt)
            .env("BTRFSQA_TEST", &script.name)
            .env("BTRFSQA_WORK_DIR", &paths.work_dir)
            .env("BTRFSQA_SCRIPT_DIR", &paths.scripts);

        let (sink, tail_task) = output_tail();
        let result = exec_or_cancel(ctx, &ctx.cancel, request, Some(sink), &paths.pidfile).await;
        let cancelled = matches!(result, Ok(Finished::Cancelled));
        let output = match result {
            Ok(Finished::Done(output)) => Some(output),
            Ok(Finished::Cancelled) => None,
            Err(e) => {
                tail_task.abort();
                return Err(self.remote_error(e));
            }
        };
        let seen = match &output {
            Some(_) => tail_task.await.unwrap_or_default(),
            None => {
                tail_task.abort();
                OutputTail::default()
            }
        };

        match &output {
            Some(output) if !output.timed_out => {
                self.warn_left_mounted(ctx, &script.name, &output.stderr_text());
            }
            _ => self.cleanup(ctx, paths, &script.name).await?,
        }

        let Some(mut output) = output else {
            let message = "the run was cancelled while the script ran; it was killed".to_owned();
            return Ok((finish(outcome, Verdict::Interrupted, message), cancelled));
        };
        let (own_stderr, kernel) = kernel_log::split_stderr(&output.stderr);
        let kernel_bytes = (output.stderr.len() - own_stderr.len()) as u64;
        output.stderr = own_stderr;
        let seen = OutputTail {
            stderr_bytes: seen.stderr_bytes.saturating_sub(kernel_bytes),
            ..seen
        };
        for (stream, data, kind, total) in [
            (
                "stdout",
                &output.stdout,
                ArtifactKind::Stdout,
                seen.stdout_bytes,
            ),
            (
                "stderr",
                &output.stderr,
                ArtifactKind::Stderr,
                seen.stderr_bytes,
            ),
        ] {
            if data.is_empty() {
                continue;
            }
            let mut artifact = ctx.write_artifact(&self.id, &script.name, stream, kind, data)?;
            let left_out = total.saturating_sub(data.len() as u64);
            if left_out > 0 {
                artifact.truncated_bytes = Some(left_out);
            }
            outcome.artifacts.push(artifact);
        }
        // Hosts that do not stream leave only the captured streams to go by.
        let last_line = seen
            .last_line()
            .or_else(|| last_line_of(&output.stdout_text()))
            .or_else(|| last_line_of(&output.stderr_text()));
        // 125-127 are also what a shell says when it cannot start the script:
        // only then is it worth another command to tell the two apart.
        if matches!(output.code, Some(125..=127))
            && let Some(message) = self.harness_problem(ctx, paths, &remote_script).await?
        {
            return Ok((finish(outcome, Verdict::Error, message), false));
        }
        let (verdict, message) = verdict_for(&output, timeout, &last_line);
        outcome.verdict = verdict;
        outcome.message = message;
        outcome.duration_secs = Some(started.elapsed().as_secs_f64());
        if let Some(kernel) = kernel {
            kernel_log::apply(ctx, &mut outcome, &kernel);
        }
        Ok((outcome, false))
    }

    /// Why the harness (not the script) failed to run `remote_script`, if it did.
    pub(super) async fn harness_problem(
        &self,
        ctx: &SuiteContext,
        paths: &RemotePaths,
        remote_script: &str,
    ) -> Result<Option<String>, SuiteError> {
        let check = ExecRequest::new(format!(
            "mkdir -p {} {} || exit 2; test -x {} || exit 3",
            shell_quote(&paths.test_dir),
            shell_quote(&paths.scratch_mnt),
            shell_quote(remote_script)
        ))
        .timeout(Duration::from_secs(60));
        let out = ctx
            .host
            .exec(check, None)
            .await
            .map_err(|e| self.remote_error(e))?;
        if !out.success() {
            let message = match out.code {
                Some(3) => format!(
                    "`{remote_script}` is missing or not executable on `{}` (did prepare run?)",
                    ctx.host.name()
                ),
                _ => format!(
                    "cannot create the mount points under `{}`: {}",
                    paths.work_dir,
                    tail_lines(&out.stderr_text(), MESSAGE_LINES)
                ),
            };
            return Ok(Some(message));
        }
        Ok(None)
    }

    /// A shell snippet that unmounts whatever a script left on or under the
    /// mount points, prints each mount point it found as `{LEFT_PREFIX}<path>`,
    /// and forgets btrfs registrations of the machine's devices when it
    /// found any. Shell builtins only, and no btrfs call in the common case:
    /// it runs after every test, so its cost is per-test overhead (the runner
    /// forgets every device at the end of the run anyway).
    pub(super) fn cleanup_snippet(&self, ctx: &SuiteContext, paths: &RemotePaths) -> String {
        let mut devices: Vec<String> = ctx
            .devices
            .scratch_devs
            .iter()
            .map(|d| shell_quote(d))
            .collect();
        if !ctx.devices.test_dev.is_empty() {
            devices.push(shell_quote(&ctx.devices.test_dev));
        }
        let forget = if devices.is_empty() {
            String::new()
        } else {
            format!(
                "command -v btrfs >/dev/null 2>&1 && btrfs device scan --forget {} >/dev/null 2>&1; ",
                devices.join(" ")
            )
        };
        format!(
            "a={}; b={}; left=; \
             while read -r _ _ _ _ m _; do case \"$m\" in \"$a\"|\"$a\"/*|\"$b\"|\"$b\"/*) left=\"$m $left\";; esac; done < /proc/self/mountinfo; \
             if [ -n \"$left\" ]; then \
               for m in $left; do \
                 echo \"{LEFT_PREFIX}$m\"; umount \"$m\" 2>/dev/null || {{ sleep 1; umount \"$m\" 2>/dev/null; }} || umount -l \"$m\"; \
               done; {forget}\
             fi",
            shell_quote(&paths.test_dir),
            shell_quote(&paths.scratch_mnt),
        )
    }

    /// Cleans up after a script in a command of its own: needed only when the
    /// script's own command could not (it timed out or was cancelled).
    pub(super) async fn cleanup(
        &self,
        ctx: &SuiteContext,
        paths: &RemotePaths,
        test: &str,
    ) -> Result<(), SuiteError> {
        let command = format!("{}; exit 0", self.cleanup_snippet(ctx, paths));
        let out = ctx
            .host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(120)),
                None,
            )
            .await
            .map_err(|e| self.remote_error(e))?;
        self.warn_left_mounted(ctx, test, &out.stdout_text());
        Ok(())
    }

    /// Emits a warning naming every mount point the cleanup reported in `text`.
    pub(super) fn warn_left_mounted(&self, ctx: &SuiteContext, test: &str, text: &str) {
        let left: Vec<String> = text
            .lines()
            .filter_map(|line| line.strip_prefix(LEFT_PREFIX))
            .map(|m| format!("`{m}`"))
            .collect();
        if !left.is_empty() {
            ctx.emit(Event::Warning {
                machine: Some(ctx.devices.name.clone()),
                message: format!(
                    "suite `{}`: `{test}` left {} mounted; unmounted",
                    self.id,
                    left.join(", ")
                ),
            });
        }
    }
}

/// Marks the lines in which the cleanup names a mount point it removed.
pub(super) const LEFT_PREFIX: &str = "btrfsqa: left mounted: ";
