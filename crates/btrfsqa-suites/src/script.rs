//! Script suites: a directory of executable scripts, one test each.
//!
//! A script is a file named `NNN_name` (digits, an underscore, then
//! `[A-Za-z0-9._-]+`) in the suite's directory on the controller; the test's
//! name is the file name. Scripts run in the order of their number (then
//! name); other files (a README, helpers they source) are uploaded beside
//! them but are not tests. Adding a test is dropping a file in: no code.
//!
//! The contract a script sees (also in `suites/smoke/README.md`):
//!
//! - environment: `TEST_DEV`, `SCRATCH_DEV_POOL` (space-separated),
//!   `SCRATCH_DEV` (the first of the pool), `TEST_DIR` and `SCRATCH_MNT`
//!   (empty mount points under the work directory), `BTRFSQA_TEST` (the test
//!   name), `BTRFSQA_WORK_DIR`, `BTRFSQA_SCRIPT_DIR` (where the scripts are,
//!   also the working directory), plus the suite's configured `env`;
//! - exit 0 passes, exit 77 skips (the automake convention; the last line of
//!   output is the reason), any other exit fails (the message shows the code
//!   and the last lines of standard error);
//! - a script still running at its timeout is killed with everything it
//!   started and is `hung`; a script that is not executable is an `error`;
//! - after every script, whatever is still mounted on or under `TEST_DIR`
//!   and `SCRATCH_MNT` is unmounted, so one script cannot poison the next.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use btrfsqa_model::{ArtifactKind, Event, SuiteReport, TestOutcome, Verdict};
use btrfsqa_remote::{ExecOutput, ExecRequest, OutputSink, RemoteError, StreamKind, shell_quote};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::{SuiteContext, SuiteError, TestList, TestSuite, kernel_log};

/// Exit status meaning "skipped" (automake's convention).
pub const SKIP_EXIT_CODE: i32 = 77;

/// Environment variables the suite sets itself; `env` may not override them.
pub const RESERVED_ENV: [&str; 8] = [
    "TEST_DEV",
    "SCRATCH_DEV_POOL",
    "SCRATCH_DEV",
    "TEST_DIR",
    "SCRATCH_MNT",
    "BTRFSQA_TEST",
    "BTRFSQA_WORK_DIR",
    "BTRFSQA_SCRIPT_DIR",
];

/// How many lines of standard error a failure message carries.
const MESSAGE_LINES: usize = 5;

fn default_timeout_secs() -> u64 {
    300
}

/// `[suites.scripts.NAME]`: a directory of scripts, run as the suite `NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScriptSuiteConfig {
    /// The directory of scripts, on the controller.
    pub dir: PathBuf,
    /// Default per-script timeout in seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Per-script timeouts in seconds, by test (file) name.
    #[serde(default)]
    pub timeouts: BTreeMap<String, u64>,
    /// Extra environment for every script.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ScriptSuiteConfig {
    /// The scripts in `dir`, with the default timeout and no extra environment.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ScriptSuiteConfig {
            dir: dir.into(),
            timeout_secs: None,
            timeouts: BTreeMap::new(),
            env: BTreeMap::new(),
        }
    }

    /// The configured timeout of test `name` (its own, else the suite's),
    /// if any.
    pub fn configured_timeout(&self, name: &str) -> Option<Duration> {
        self.timeouts
            .get(name)
            .copied()
            .or(self.timeout_secs)
            .map(Duration::from_secs)
    }

    /// The timeout of test `name` when nothing is configured and it has no
    /// history.
    pub fn default_timeout() -> Duration {
        Duration::from_secs(default_timeout_secs())
    }

    /// Checks what can be checked without looking at the directory: one
    /// `(key, message)` per problem, the key relative to the suite's table
    /// (`timeouts.001_x`), empty when all is well.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.timeout_secs == Some(0) {
            issues.push(("timeout-secs".to_owned(), "must be at least 1".to_owned()));
        }
        for (name, secs) in &self.timeouts {
            if !is_script_name(name) {
                issues.push((
                    format!("timeouts.{name}"),
                    format!("`{name}` is not a script name (`NNN_name`)"),
                ));
            }
            if *secs == 0 {
                issues.push((format!("timeouts.{name}"), "must be at least 1".to_owned()));
            }
        }
        for key in self.env.keys() {
            if !is_env_name(key) {
                issues.push((
                    format!("env.{key}"),
                    "is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)".to_owned(),
                ));
            } else if RESERVED_ENV.contains(&key.as_str()) {
                issues.push((
                    format!("env.{key}"),
                    "is set by the suite itself and cannot be overridden".to_owned(),
                ));
            }
        }
        issues
    }
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `name` is a script's file name: `NNN_name`.
pub fn is_script_name(name: &str) -> bool {
    let Some((number, rest)) = name.split_once('_') else {
        return false;
    };
    !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Sort key: the number's value (leading zeros ignored), then the name.
fn order_key(name: &str) -> (usize, String, String) {
    let digits = name.split('_').next().unwrap_or_default();
    let trimmed = digits.trim_start_matches('0');
    (trimmed.len(), trimmed.to_owned(), name.to_owned())
}

/// One script found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Its file name, which is the test's name.
    pub name: String,
    /// Its path on the controller.
    pub path: PathBuf,
    /// Whether it has an execute permission bit.
    pub executable: bool,
}

/// A suite that runs every script of a directory.
#[derive(Debug, Clone)]
pub struct ScriptSuite {
    id: String,
    config: ScriptSuiteConfig,
}

impl ScriptSuite {
    /// A suite called `id` (kebab-case) over `config.dir`.
    pub fn new(id: impl Into<String>, config: ScriptSuiteConfig) -> Self {
        ScriptSuite {
            id: id.into(),
            config,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ScriptSuiteConfig {
        &self.config
    }

    fn config_error(&self, message: impl Into<String>) -> SuiteError {
        SuiteError::Config {
            suite: self.id.clone(),
            message: message.into(),
        }
    }

    fn remote_error(&self, source: RemoteError) -> SuiteError {
        SuiteError::Remote {
            suite: self.id.clone(),
            source,
        }
    }

    /// Validates the configuration and lists the scripts in run order.
    ///
    /// A missing, unreadable or script-less directory is a
    /// [`SuiteError::Config`] naming the path, and so is a `timeouts` entry
    /// that names no script (a typo would otherwise silently keep the default).
    pub fn scripts(&self) -> Result<Vec<Script>, SuiteError> {
        if self.id.is_empty()
            || self.id.starts_with('.')
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(self.config_error(format!(
                "suite id `{}` must be made of [A-Za-z0-9._-] (it names directories)",
                self.id
            )));
        }
        if let Some((key, message)) = self.config.validate().into_iter().next() {
            return Err(self.config_error(format!("`{key}`: {message}")));
        }
        let dir = &self.config.dir;
        let mut scripts = Vec::new();
        for entry in self.entries()? {
            let Some(name) = entry
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if !is_script_name(&name) {
                continue;
            }
            let executable = std::fs::metadata(&entry)
                .map(|m| is_executable(&m))
                .unwrap_or(false);
            scripts.push(Script {
                name,
                path: entry,
                executable,
            });
        }
        if scripts.is_empty() {
            return Err(self.config_error(format!(
                "no scripts (files named `NNN_name`) in `{}`",
                dir.display()
            )));
        }
        scripts.sort_by_key(|s| order_key(&s.name));
        if let Some(unknown) = self
            .config
            .timeouts
            .keys()
            .find(|k| !scripts.iter().any(|s| &s.name == *k))
        {
            return Err(self.config_error(format!(
                "`timeouts.{unknown}` names no script in `{}`",
                dir.display()
            )));
        }
        Ok(scripts)
    }

    /// Every regular, non-hidden file of the directory (scripts and helpers).
    fn entries(&self) -> Result<Vec<PathBuf>, SuiteError> {
        let dir = &self.config.dir;
        let read = std::fs::read_dir(dir).map_err(|e| {
            self.config_error(format!(
                "cannot read script directory `{}`: {e}",
                dir.display()
            ))
        })?;
        let mut files = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| {
                self.config_error(format!(
                    "cannot read script directory `{}`: {e}",
                    dir.display()
                ))
            })?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            // `metadata` follows symlinks, so a linked script counts.
            if !hidden && std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    fn paths(&self, ctx: &SuiteContext) -> Result<RemotePaths, SuiteError> {
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
    async fn run_one(
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
    async fn harness_problem(
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
    fn cleanup_snippet(&self, ctx: &SuiteContext, paths: &RemotePaths) -> String {
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
    async fn cleanup(
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
    fn warn_left_mounted(&self, ctx: &SuiteContext, test: &str, text: &str) {
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
const LEFT_PREFIX: &str = "btrfsqa: left mounted: ";

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

struct RemotePaths {
    work_dir: String,
    scripts: String,
    pidfile: String,
    test_dir: String,
    scratch_mnt: String,
}

#[async_trait::async_trait]
impl TestSuite for ScriptSuite {
    fn id(&self) -> &str {
        &self.id
    }

    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        let scripts = self.scripts()?;
        Ok(Some(TestList::of(scripts.into_iter().map(|s| s.name))))
    }

    /// Uploads the directory's files to `<work_dir>/scripts/<id>/` and gives
    /// them the execute bit they have on the controller.
    async fn prepare(&self, ctx: &SuiteContext) -> Result<(), SuiteError> {
        self.scripts()?;
        let paths = self.paths(ctx)?;
        let files = self.entries()?;
        let reset = ExecRequest::new(format!(
            "rm -rf {dir} && mkdir -p {dir} {} {}",
            shell_quote(&paths.test_dir),
            shell_quote(&paths.scratch_mnt),
            dir = shell_quote(&paths.scripts)
        ))
        .timeout(Duration::from_secs(60));
        let out = ctx
            .host
            .exec(reset, None)
            .await
            .map_err(|e| self.remote_error(e))?;
        if !out.success() {
            return Err(SuiteError::Setup {
                suite: self.id.clone(),
                step: format!("creating `{}`", paths.scripts),
                message: tail_lines(&out.stderr_text(), MESSAGE_LINES),
            });
        }
        let mut executable = Vec::new();
        let mut plain = Vec::new();
        for file in &files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let remote = format!("{}/{name}", paths.scripts);
            ctx.host
                .upload(file, &remote)
                .await
                .map_err(|e| self.remote_error(e))?;
            let is_exec = std::fs::metadata(file)
                .map(|m| is_executable(&m))
                .unwrap_or(false);
            if is_exec { &mut executable } else { &mut plain }.push(shell_quote(&remote));
        }
        let mut chmod = String::from("true");
        if !executable.is_empty() {
            chmod.push_str(&format!(" && chmod 755 {}", executable.join(" ")));
        }
        if !plain.is_empty() {
            chmod.push_str(&format!(" && chmod 644 {}", plain.join(" ")));
        }
        let out = ctx
            .host
            .exec(
                ExecRequest::new(chmod).timeout(Duration::from_secs(60)),
                None,
            )
            .await
            .map_err(|e| self.remote_error(e))?;
        if !out.success() {
            return Err(SuiteError::Setup {
                suite: self.id.clone(),
                step: "setting script permissions".into(),
                message: tail_lines(&out.stderr_text(), MESSAGE_LINES),
            });
        }
        Ok(())
    }

    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let started = Instant::now();
        let scripts = self.scripts()?;
        let paths = self.paths(ctx)?;
        let mut report = SuiteReport::new(&self.id);
        for script in scripts.iter().filter(|s| ctx.selected(&s.name)) {
            if ctx.cancel.is_cancelled() {
                report.duration_secs = Some(started.elapsed().as_secs_f64());
                return Err(SuiteError::Cancelled {
                    suite: self.id.clone(),
                    partial: Box::new(report),
                });
            }
            ctx.test_started(&self.id, &script.name);
            let (outcome, cancelled) = match self.run_one(ctx, &paths, script).await {
                Ok(done) => done,
                Err(e) => {
                    // Close the test's events before giving up on the suite.
                    ctx.test_finished(
                        TestOutcome::new(&self.id, &script.name, Verdict::Error)
                            .with_message(e.to_string()),
                    );
                    return Err(e);
                }
            };
            let hung = (outcome.verdict == Verdict::Hung).then(|| outcome.name.clone());
            report.tests.push(ctx.test_finished(outcome));
            if let Some(test) = hung {
                report.duration_secs = Some(started.elapsed().as_secs_f64());
                return Err(SuiteError::Hung {
                    suite: self.id.clone(),
                    test,
                    partial: Box::new(report),
                });
            }
            if cancelled {
                report.duration_secs = Some(started.elapsed().as_secs_f64());
                return Err(SuiteError::Cancelled {
                    suite: self.id.clone(),
                    partial: Box::new(report),
                });
            }
        }
        report.duration_secs = Some(started.elapsed().as_secs_f64());
        Ok(report)
    }
}

/// Maps how a script ended to its verdict and message.
fn verdict_for(
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
struct OutputTail {
    stdout_bytes: u64,
    stderr_bytes: u64,
    combined: Vec<u8>,
}

impl OutputTail {
    fn last_line(&self) -> Option<String> {
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

fn last_line_of(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
}

/// A sink and the task that drains it as output arrives, so a chatty script
/// costs a bounded amount of memory.
fn output_tail() -> (OutputSink, tokio::task::JoinHandle<OutputTail>) {
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Mutex};

    use btrfsqa_remote::{MockRemoteHost, OutputChunk};

    use super::*;
    use crate::MachineDevices;

    fn output(code: Option<i32>, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            code,
            timed_out: false,
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            duration: Duration::from_millis(5),
        }
    }

    fn write(dir: &std::path::Path, name: &str, executable: bool) {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A directory with scripts `names` (executable) plus a README and a helper.
    fn script_dir(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            write(dir.path(), name, true);
        }
        write(dir.path(), "README.md", false);
        write(dir.path(), "common.sh", false);
        write(dir.path(), ".hidden_001", true);
        std::fs::create_dir(dir.path().join("010_a-directory")).unwrap();
        dir
    }

    fn devices() -> MachineDevices {
        MachineDevices {
            name: "m0".into(),
            test_dev: "/dev/vdb".into(),
            scratch_devs: vec!["/dev/vdc".into(), "/dev/vdd".into()],
            work_dir: "/var/tmp/bq".into(),
        }
    }

    /// What a script does on the fake machine.
    type Behaviour = Box<dyn Fn(&ExecRequest, Option<&OutputSink>) -> ExecOutput + Send + Sync>;

    /// A mock machine on which each script `name` behaves as given, and every
    /// other command (checks, cleanup) succeeds. Records the commands.
    /// The script a command runs, if it is a script's command.
    fn script_of(command: &str) -> Option<&str> {
        let (_, rest) = command.split_once(" 2>/dev/null; ./")?;
        rest.split_once(" 9<&-; rc=$?").map(|(name, _)| name)
    }

    fn machine(
        behaviours: Vec<(&'static str, Behaviour)>,
    ) -> (MockRemoteHost, Arc<Mutex<Vec<ExecRequest>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("m0".to_owned());
        host.expect_exec()
            .returning(move |req: ExecRequest, sink: Option<OutputSink>| {
                seen.lock().unwrap().push(req.clone());
                for (name, behaviour) in &behaviours {
                    if script_of(&req.command) == Some(name) {
                        return Ok(behaviour(&req, sink.as_ref()));
                    }
                }
                Ok(output(Some(0), "", ""))
            });
        host.expect_upload().returning(|_, _| Ok(()));
        (host, calls)
    }

    fn context(
        host: MockRemoteHost,
        run_dir: &std::path::Path,
    ) -> (SuiteContext, Arc<Mutex<Vec<Event>>>) {
        let mut ctx = SuiteContext::new(Arc::new(host), devices(), run_dir.to_owned());
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        ctx.events = Arc::new(move |e| sink.lock().unwrap().push(e));
        (ctx, events)
    }

    #[test]
    fn script_names() {
        for good in ["001_mkfs", "1_a", "042_send.receive-2", "000_x_y"] {
            assert!(is_script_name(good), "{good}");
        }
        for bad in [
            "README", "001", "001_", "_x", "a01_x", "001_a b", "001_a/b", "001-x", "",
        ] {
            assert!(!is_script_name(bad), "{bad}");
        }
        let mut names = vec!["10_b", "002_a", "9_c", "002_0", "0100_z"];
        names.sort_by_key(|n| order_key(n));
        assert_eq!(names, ["002_0", "002_a", "9_c", "10_b", "0100_z"]);
    }

    #[test]
    fn config_parses_kebab_case_with_defaults() {
        let config: ScriptSuiteConfig = toml_like(r#"{"dir": "suites/smoke"}"#);
        assert_eq!(config, ScriptSuiteConfig::new("suites/smoke"));
        assert_eq!(config.timeout_secs, None);
        assert_eq!(
            ScriptSuiteConfig::default_timeout(),
            Duration::from_secs(300)
        );
        let config: ScriptSuiteConfig = toml_like(
            r#"{"dir": "d", "timeout-secs": 10, "timeouts": {"001_a": 2}, "env": {"X": "1"}}"#,
        );
        assert_eq!(
            config.configured_timeout("001_a"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            config.configured_timeout("002_b"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            ScriptSuiteConfig::new("d").configured_timeout("001_a"),
            None
        );
        let err =
            serde_json::from_str::<ScriptSuiteConfig>(r#"{"dir": "d", "timeout": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
    }

    fn toml_like(json: &str) -> ScriptSuiteConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn config_validation_names_keys() {
        let mut config = ScriptSuiteConfig::new("d");
        assert!(config.validate().is_empty());
        config.timeout_secs = Some(0);
        config.timeouts.insert("001_a".into(), 0);
        config.timeouts.insert("README".into(), 5);
        config.env.insert("TEST_DEV".into(), "x".into());
        config.env.insert("1BAD".into(), "x".into());
        config.env.insert("GOOD_1".into(), "x".into());
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "timeout-secs",
                "timeouts.001_a",
                "timeouts.README",
                "env.1BAD",
                "env.TEST_DEV"
            ]
        );
    }

    #[test]
    fn discovery_orders_scripts_and_ignores_other_files() {
        let dir = script_dir(&["002_b", "010_c", "001_a"]);
        write(dir.path(), "003_not-exec", false);
        let suite = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()));
        let scripts = suite.scripts().unwrap();
        let names: Vec<&str> = scripts.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["001_a", "002_b", "003_not-exec", "010_c"]);
        assert!(!scripts[2].executable && scripts[0].executable);
    }

    #[test]
    fn missing_empty_or_mistyped_dirs_are_config_errors() {
        let suite = ScriptSuite::new(
            "smoke",
            ScriptSuiteConfig::new("/nonexistent/btrfsqa-scripts"),
        );
        let err = suite.scripts().unwrap_err();
        assert!(matches!(err, SuiteError::Config { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/btrfsqa-scripts"),
            "{err}"
        );

        let empty = script_dir(&[]);
        let err = ScriptSuite::new("smoke", ScriptSuiteConfig::new(empty.path()))
            .scripts()
            .unwrap_err();
        assert!(
            err.to_string().contains(&*empty.path().to_string_lossy()),
            "{err}"
        );
        assert!(err.to_string().contains("no scripts"), "{err}");

        let dir = script_dir(&["001_a"]);
        let mut config = ScriptSuiteConfig::new(dir.path());
        config.timeouts.insert("002_typo".into(), 5);
        let err = ScriptSuite::new("smoke", config).scripts().unwrap_err();
        assert!(
            err.to_string()
                .contains("`timeouts.002_typo` names no script"),
            "{err}"
        );

        let err = ScriptSuite::new("../up", ScriptSuiteConfig::new(dir.path()))
            .scripts()
            .unwrap_err();
        assert!(matches!(err, SuiteError::Config { .. }), "{err:?}");
    }

    #[test]
    fn exit_codes_map_to_verdicts() {
        let timeout = Duration::from_secs(30);
        let none = None;
        assert_eq!(
            verdict_for(&output(Some(0), "", ""), timeout, &none),
            (Verdict::Pass, None)
        );
        let (v, m) = verdict_for(&output(Some(77), "", ""), timeout, &Some("no frob".into()));
        assert_eq!((v, m.as_deref()), (Verdict::Skip, Some("no frob")));
        let (v, m) = verdict_for(&output(Some(77), "", ""), timeout, &none);
        assert_eq!(
            (v, m.as_deref()),
            (Verdict::Skip, Some("skipped (exit 77)"))
        );
        let stderr = "1\n2\n3\n4\n5\n6\nlast\n";
        let (v, m) = verdict_for(&output(Some(2), "out", stderr), timeout, &none);
        let m = m.unwrap();
        assert_eq!(v, Verdict::Fail);
        assert!(m.starts_with("exited with code 2; stderr:\n"), "{m}");
        assert!(m.ends_with("4\n5\n6\nlast") && !m.contains("\n2\n"), "{m}");
        let (_, m) = verdict_for(&output(Some(1), "only stdout\n", ""), timeout, &none);
        assert!(m.unwrap().contains("(no stderr); stdout:\nonly stdout"));
        let (v, m) = verdict_for(&output(None, "", ""), timeout, &none);
        assert_eq!(v, Verdict::Fail);
        assert!(m.unwrap().contains("killed by a signal"));
        let mut hung = output(None, "", "");
        hung.timed_out = true;
        let (v, m) = verdict_for(&hung, timeout, &none);
        assert_eq!(v, Verdict::Hung);
        assert!(m.unwrap().contains("timeout of 30 s"));
    }

    #[tokio::test]
    async fn prepare_uploads_everything_and_sets_modes() {
        let dir = script_dir(&["001_a", "002_b"]);
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let seen = uploads.clone();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let exec_calls = calls.clone();
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("m0".to_owned());
        host.expect_exec().returning(move |req: ExecRequest, _| {
            exec_calls.lock().unwrap().push(req);
            Ok(output(Some(0), "", ""))
        });
        host.expect_upload().returning(move |local, remote| {
            seen.lock().unwrap().push((
                local.file_name().unwrap().to_string_lossy().into_owned(),
                remote.to_owned(),
            ));
            Ok(())
        });
        let run = tempfile::tempdir().unwrap();
        let (ctx, _) = context(host, run.path());
        ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
            .prepare(&ctx)
            .await
            .unwrap();
        let uploads = uploads.lock().unwrap();
        let remote: Vec<&str> = uploads.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            remote,
            [
                "/var/tmp/bq/scripts/smoke/001_a",
                "/var/tmp/bq/scripts/smoke/002_b",
                "/var/tmp/bq/scripts/smoke/README.md",
                "/var/tmp/bq/scripts/smoke/common.sh",
            ]
        );
        let calls = calls.lock().unwrap();
        assert!(
            calls[0]
                .command
                .starts_with("rm -rf /var/tmp/bq/scripts/smoke && mkdir -p"),
            "{:?}",
            calls[0]
        );
        let chmod = &calls[1].command;
        assert!(
            chmod.contains(
                "chmod 755 /var/tmp/bq/scripts/smoke/001_a /var/tmp/bq/scripts/smoke/002_b"
            ) && chmod.contains("chmod 644 /var/tmp/bq/scripts/smoke/README.md"),
            "{chmod}"
        );
    }

    #[tokio::test]
    async fn scripts_run_in_order_with_their_verdicts_and_artifacts() {
        let dir = script_dir(&["003_hang", "001_pass", "002_skip", "004_fail"]);
        write(dir.path(), "005_noexec", false);
        let (host, calls) = machine(vec![
            (
                "001_pass",
                Box::new(|req: &ExecRequest, _: Option<&OutputSink>| {
                    let env: BTreeMap<_, _> = req.env.iter().cloned().collect();
                    assert_eq!(env["TEST_DEV"], "/dev/vdb");
                    assert_eq!(env["SCRATCH_DEV_POOL"], "/dev/vdc /dev/vdd");
                    assert_eq!(env["SCRATCH_DEV"], "/dev/vdc");
                    assert_eq!(env["TEST_DIR"], "/var/tmp/bq/mnt/test");
                    assert_eq!(env["SCRATCH_MNT"], "/var/tmp/bq/mnt/scratch");
                    assert_eq!(env["BTRFSQA_TEST"], "001_pass");
                    assert_eq!(env["BTRFSQA_WORK_DIR"], "/var/tmp/bq");
                    assert_eq!(env["MY_VAR"], "x y");
                    assert_eq!(req.cwd.as_deref(), Some("/var/tmp/bq/scripts/smoke"));
                    assert_eq!(req.timeout, Some(Duration::from_secs(300)));
                    output(Some(0), "fine\n", "")
                }) as Behaviour,
            ),
            (
                "002_skip",
                Box::new(|_: &ExecRequest, sink: Option<&OutputSink>| {
                    // Streamed in this order: the reason comes last, on stderr.
                    let sink = sink.expect("a sink");
                    sink.send(OutputChunk {
                        stream: StreamKind::Stdout,
                        data: b"checking\n".to_vec(),
                    })
                    .unwrap();
                    sink.send(OutputChunk {
                        stream: StreamKind::Stderr,
                        data: b"no frobnicator\n".to_vec(),
                    })
                    .unwrap();
                    output(Some(77), "checking\n", "no frobnicator\n")
                }),
            ),
            (
                "003_hang",
                Box::new(|req: &ExecRequest, _: Option<&OutputSink>| {
                    assert_eq!(req.timeout, Some(Duration::from_secs(7)));
                    ExecOutput {
                        timed_out: true,
                        ..output(None, "started\n", "")
                    }
                }),
            ),
            (
                "004_fail",
                Box::new(|_: &ExecRequest, _: Option<&OutputSink>| output(Some(1), "", "boom\n")),
            ),
        ]);
        let run = tempfile::tempdir().unwrap();
        let (ctx, events) = context(host, run.path());
        let mut config = ScriptSuiteConfig::new(dir.path());
        config.timeouts.insert("003_hang".into(), 7);
        config.env.insert("MY_VAR".into(), "x y".into());
        let suite = ScriptSuite::new("smoke", config);
        // The suite stops after the hung test; the runner resets the machine
        // and runs it again without the finished tests, as done here.
        let Err(SuiteError::Hung { test, partial, .. }) = suite.run(&ctx).await else {
            panic!("a hung script stops the suite");
        };
        assert_eq!(test, "003_hang");
        let mut report = *partial;
        let mut again = ctx.clone();
        again.skip = report.tests.iter().map(|t| t.name.clone()).collect();
        report.tests.extend(suite.run(&again).await.unwrap().tests);

        let verdicts: Vec<(&str, Verdict)> = report
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("001_pass", Verdict::Pass),
                ("002_skip", Verdict::Skip),
                ("003_hang", Verdict::Hung),
                ("004_fail", Verdict::Fail),
                ("005_noexec", Verdict::Error),
            ]
        );
        assert_eq!(report.tests[1].message.as_deref(), Some("no frobnicator"));
        assert!(report.tests[2].message.as_deref().unwrap().contains("7 s"));
        assert!(
            report.tests[3]
                .message
                .as_deref()
                .unwrap()
                .contains("code 1; stderr:\nboom")
        );
        assert!(
            report.tests[4]
                .message
                .as_deref()
                .unwrap()
                .contains("not executable")
        );
        assert!(
            report
                .tests
                .iter()
                .all(|t| t.duration_secs.is_some() && t.machine.as_deref() == Some("m0"))
        );

        let pass = &report.tests[0];
        assert_eq!(pass.artifacts.len(), 1, "empty stderr is not kept");
        assert_eq!(pass.artifacts[0].path, "smoke/001_pass/stdout");
        assert_eq!(
            std::fs::read_to_string(run.path().join("smoke/001_pass/stdout")).unwrap(),
            "fine\n"
        );
        let skip_files: Vec<&str> = report.tests[1]
            .artifacts
            .iter()
            .map(|a| a.path.as_str())
            .collect();
        assert_eq!(
            skip_files,
            ["smoke/002_skip/stdout", "smoke/002_skip/stderr"]
        );
        assert_eq!(report.tests[1].artifacts[1].truncated_bytes, None);

        // Every script's command cleans up after it; only the one that
        // timed out (and was killed with its cleanup) needed a command of
        // its own. The one that is not executable never ran.
        let calls = calls.lock().unwrap();
        let ran: Vec<&str> = calls.iter().filter_map(|c| script_of(&c.command)).collect();
        assert_eq!(ran, ["001_pass", "002_skip", "003_hang", "004_fail"]);
        assert!(
            calls
                .iter()
                .filter(|c| script_of(&c.command).is_some())
                .all(|c| c.command.contains("/proc/self/mountinfo"))
        );
        let separate_cleanups = calls
            .iter()
            .filter(|c| script_of(&c.command).is_none())
            .filter(|c| c.command.contains("/proc/self/mountinfo"))
            .count();
        assert_eq!(separate_cleanups, 1);
        let script_call = calls
            .iter()
            .find(|c| script_of(&c.command) == Some("001_pass"))
            .unwrap();
        assert!(
            script_call
                .command
                .starts_with("echo $$ > /var/tmp/bq/scripts/smoke.pid || exit 125; ")
        );

        let events = events.lock().unwrap();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                Event::TestStarted { .. } => "start",
                Event::TestFinished { .. } => "finish",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["start", "finish"].repeat(5));
    }

    #[tokio::test]
    async fn only_selected_scripts_run() {
        let dir = script_dir(&["001_a", "002_b", "003_c"]);
        let (host, calls) = machine(vec![]);
        let run = tempfile::tempdir().unwrap();
        let (mut ctx, _) = context(host, run.path());
        ctx.only = Some(vec!["002_b".into(), "999_absent".into()]);
        let report = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
            .run(&ctx)
            .await
            .unwrap();
        let names: Vec<&str> = report.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["002_b"]);
        assert!(
            !calls
                .lock()
                .unwrap()
                .iter()
                .any(|c| c.command.contains("001_a"))
        );
    }

    #[tokio::test]
    async fn cancel_between_scripts_returns_the_partial_report() {
        let dir = script_dir(&["001_a", "002_b", "003_c"]);
        let token = CancellationToken::new();
        let trigger = token.clone();
        let (host, calls) = machine(vec![(
            "001_a",
            Box::new(move |_: &ExecRequest, _: Option<&OutputSink>| {
                trigger.cancel();
                output(Some(0), "", "")
            }),
        )]);
        let run = tempfile::tempdir().unwrap();
        let (mut ctx, events) = context(host, run.path());
        ctx.cancel = token;
        let err = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
            .run(&ctx)
            .await
            .unwrap_err();
        let SuiteError::Cancelled { partial, suite } = err else {
            panic!("{err:?}")
        };
        assert_eq!(suite, "smoke");
        let names: Vec<(&str, Verdict)> = partial
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.verdict))
            .collect();
        assert_eq!(names, [("001_a", Verdict::Pass)]);
        assert!(
            !calls
                .lock()
                .unwrap()
                .iter()
                .any(|c| c.command.contains("002_b"))
        );
        // The script that finished still had its cleanup.
        assert!(
            calls
                .lock()
                .unwrap()
                .last()
                .unwrap()
                .command
                .contains("/proc/self/mountinfo")
        );
        assert_eq!(events.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_kernel_log_of_a_test_is_scanned_and_kept_out_of_its_stderr() {
        let dir = script_dir(&["001_warns", "002_quiet"]);
        let block = |records: &str| {
            format!(
                "own line\n\n{}\n{records}{}\n",
                kernel_log::BEGIN_MARKER,
                kernel_log::END_MARKER
            )
        };
        let warns = block(
            "4,7,100,-;WARNING: CPU: 0 PID: 1 at fs/btrfs/disk-io.c:4500 close_ctree+0x1/0x2\n",
        );
        let quiet = block("6,8,200,-;BTRFS info (device vdc): using crc32c\n");
        let (host, _) = machine(vec![
            (
                "001_warns",
                Box::new(move |_: &ExecRequest, _: Option<&OutputSink>| {
                    output(Some(0), "", &warns)
                }),
            ),
            (
                "002_quiet",
                Box::new(move |_: &ExecRequest, _: Option<&OutputSink>| {
                    output(Some(0), "", &quiet)
                }),
            ),
        ]);
        let run = tempfile::tempdir().unwrap();
        let (ctx, _) = context(host, run.path());
        let report = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
            .run(&ctx)
            .await
            .unwrap();
        let warned = &report.tests[0];
        assert_eq!(warned.verdict, Verdict::Fail);
        assert_eq!(
            warned.kernel_log,
            ["WARNING: CPU: 0 PID: 1 at fs/btrfs/disk-io.c:4500 close_ctree+0x1/0x2"]
        );
        let stderr = std::fs::read_to_string(run.path().join("smoke/001_warns/stderr")).unwrap();
        assert_eq!(stderr, "own line\n");
        let dmesg = std::fs::read_to_string(run.path().join("smoke/001_warns/dmesg")).unwrap();
        assert!(dmesg.contains("close_ctree"), "{dmesg}");
        let quiet = &report.tests[1];
        assert_eq!(quiet.verdict, Verdict::Pass);
        assert!(quiet.kernel_log.is_empty());
        assert!(!run.path().join("smoke/002_quiet/dmesg").exists());
    }

    #[tokio::test]
    async fn leftover_mounts_are_reported() {
        let dir = script_dir(&["001_a"]);
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("m0".to_owned());
        host.expect_exec().returning(|req: ExecRequest, _| {
            // The cleanup in the script's command reports on stderr.
            let stderr = if script_of(&req.command) == Some("001_a") {
                "btrfsqa: left mounted: /var/tmp/bq/mnt/test\n"
            } else {
                ""
            };
            Ok(output(Some(0), "", stderr))
        });
        let run = tempfile::tempdir().unwrap();
        let (ctx, events) = context(host, run.path());
        ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
            .run(&ctx)
            .await
            .unwrap();
        let events = events.lock().unwrap();
        let warning = events.iter().find_map(|e| match e {
            Event::Warning { message, .. } => Some(message.clone()),
            _ => None,
        });
        assert_eq!(
            warning.as_deref(),
            Some("suite `smoke`: `001_a` left `/var/tmp/bq/mnt/test` mounted; unmounted")
        );
    }

    #[tokio::test]
    async fn a_script_missing_on_the_machine_is_an_error() {
        let dir = script_dir(&["001_a"]);
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("m0".to_owned());
        host.expect_exec().returning(|req: ExecRequest, _| {
            // A shell says 127 when the script is not there; the check then
            // tells a missing script from a script that exits 127.
            let code = if req.command.contains("test -x") {
                3
            } else if script_of(&req.command) == Some("001_a") {
                127
            } else {
                0
            };
            Ok(output(Some(code), "", ""))
        });
        let run = tempfile::tempdir().unwrap();
        let (ctx, _) = context(host, run.path());
        let report = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
            .run(&ctx)
            .await
            .unwrap();
        assert_eq!(report.tests[0].verdict, Verdict::Error);
        assert!(
            report.tests[0]
                .message
                .as_deref()
                .unwrap()
                .contains("did prepare run?")
        );
    }

    #[tokio::test]
    async fn a_machine_failure_stops_the_suite() {
        let dir = script_dir(&["001_a", "002_b"]);
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("m0".to_owned());
        host.expect_exec().returning(|req: ExecRequest, _| {
            Err(RemoteError::Disconnected {
                host: "m0".into(),
                command: req.command,
                source: "gone".into(),
            })
        });
        let run = tempfile::tempdir().unwrap();
        let (ctx, events) = context(host, run.path());
        let err = ScriptSuite::new("smoke", ScriptSuiteConfig::new(dir.path()))
            .run(&ctx)
            .await
            .unwrap_err();
        assert!(matches!(err, SuiteError::Remote { .. }), "{err:?}");
        // The started test was closed with an error outcome.
        assert_eq!(events.lock().unwrap().len(), 2);
    }
}
