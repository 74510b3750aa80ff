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

use btrfsqa_model::{SuiteReport, TestOutcome, Verdict};
use btrfsqa_remote::{ExecRequest, RemoteError, shell_quote};
use serde::Deserialize;

use crate::{SuiteContext, SuiteError, TestList, TestSuite};

mod exec;
mod outcome;
mod run_one;

pub(crate) use exec::{Finished, exec_or_cancel};
pub(crate) use outcome::tail_lines;

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
}

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

#[cfg(test)]
mod tests;
