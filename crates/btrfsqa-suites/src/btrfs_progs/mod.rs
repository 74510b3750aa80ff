//! btrfs-progs' own test suites (fsck, cli, misc, fuzz, mkfs, convert), one
//! outcome per test case.
//!
//! [`BtrfsProgsTests`] pins btrfs-progs to a commit on the controller, builds
//! it on the machine (`./autogen.sh`, `./configure`, `make`), then runs every
//! selected case alone (`TEST=<case> bash tests/<suite>-tests.sh`), so one
//! failing case never hides the others. Before each case it undoes what an
//! earlier one left behind (mounts and loop devices of the tree), and after
//! it keeps the case's console and results file as artifacts; the results
//! file gives a failure's command and output.
//!
//! Test names are `<suite>/<case>` (`cli/001-btrfs`).

pub mod parse;
mod plugin;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use btrfsqa_model::{Artifact, ArtifactKind, SuiteReport, TestOutcome, Verdict, safe_file_name};
use btrfsqa_remote::{ExecRequest, RemoteError, shell_quote};
use serde::Deserialize;

use crate::build_cache::{self, Recipe};
use crate::setup::{Distro, detect_distro, install_packages, run_step};
use crate::source::{self, PinnedSource};
use crate::{ListedTest, SuiteContext, SuiteError, TestList, TestSuite};

/// The suite id.
pub const ID: &str = "btrfs-progs";

/// Upstream btrfs-progs.
pub const DEFAULT_GIT_URL: &str = "https://github.com/kdave/btrfs-progs.git";

/// The suites btrfs-progs has.
pub const SUITES: &[&str] = &["fsck", "cli", "misc", "fuzz", "mkfs", "convert"];

/// `[suites.btrfs-progs]`: btrfs-progs' test suites.
///
/// ```toml
/// [suites.btrfs-progs]
/// git-url = "file:///srv/mirrors/btrfs-progs"
/// suites = ["cli", "misc"]
/// exclude = ["cli/017-*"]   # renames device nodes in /dev
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BtrfsProgsConfig {
    /// The btrfs-progs git repository (URL or local path).
    pub git_url: String,
    /// The branch, tag or commit.
    pub git_ref: String,
    /// Where the controller keeps its git mirror and builds (default:
    /// `RESULTS-DIR/.cache`).
    pub cache_dir: Option<PathBuf>,
    /// The suites to run, in this order: of `fsck`, `cli`, `misc`, `fuzz`,
    /// `mkfs`, `convert`.
    pub suites: Vec<String>,
    /// Only cases matching one of these `<suite>/<case>` patterns (`*` and
    /// `?` wildcards); empty: all.
    pub include: Vec<String>,
    /// Cases to leave out, as patterns like `include`.
    pub exclude: Vec<String>,
    /// A case that runs longer than this is stopped and reported as hung.
    pub case_timeout_secs: u64,
    /// Extra arguments to `./configure`.
    pub configure_args: Vec<String>,
    /// Results files and consoles larger than this are cut (tail kept).
    pub max_artifact_bytes: u64,
    /// Install missing build and run-time packages.
    pub install_packages: bool,
}

impl Default for BtrfsProgsConfig {
    fn default() -> Self {
        BtrfsProgsConfig {
            git_url: DEFAULT_GIT_URL.to_owned(),
            git_ref: "master".to_owned(),
            cache_dir: None,
            suites: ["fsck", "cli", "misc", "fuzz"].map(str::to_owned).to_vec(),
            include: Vec::new(),
            exclude: Vec::new(),
            case_timeout_secs: 1800,
            configure_args: Vec::new(),
            max_artifact_bytes: 8 << 20,
            install_packages: true,
        }
    }
}

impl BtrfsProgsConfig {
    /// Checks what serde cannot; returns `(dotted key below the suite, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if let Some(problem) = crate::git_url_problem(&self.git_url) {
            issues.push(("git-url".to_owned(), problem));
        }
        if let Some(problem) = crate::git_ref_problem(&self.git_ref) {
            issues.push(("git-ref".to_owned(), problem));
        }
        if self.suites.is_empty() {
            issues.push((
                "suites".to_owned(),
                format!("names no suite (known: {})", SUITES.join(", ")),
            ));
        }
        for (i, suite) in self.suites.iter().enumerate() {
            if !SUITES.contains(&suite.as_str()) {
                issues.push((
                    format!("suites[{i}]"),
                    format!("unknown suite `{suite}` (known: {})", SUITES.join(", ")),
                ));
            } else if self.suites[..i].contains(suite) {
                issues.push((
                    format!("suites[{i}]"),
                    format!("suite `{suite}` is listed twice"),
                ));
            }
        }
        for (key, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, p) in patterns.iter().enumerate() {
                if !p.contains('/') {
                    issues.push((
                        format!("{key}[{i}]"),
                        format!("`{p}` is not a `<suite>/<case>` pattern like `cli/001-*`"),
                    ));
                }
            }
        }
        for (i, arg) in self.configure_args.iter().enumerate() {
            if !arg.starts_with("--") {
                issues.push((
                    format!("configure-args[{i}]"),
                    format!("`{arg}` is not a `--option`"),
                ));
            }
        }
        if self.case_timeout_secs == 0 {
            issues.push((
                "case-timeout-secs".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if self.max_artifact_bytes < 1024 {
            issues.push((
                "max-artifact-bytes".to_owned(),
                "must be at least 1024".to_owned(),
            ));
        }
        issues
    }

    /// Whether the case `<suite>/<case>` is selected by `include` and `exclude`.
    pub fn selects(&self, test: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, test)))
            && !self.exclude.iter().any(|p| glob_match(p, test))
    }
}

/// Shell-style matching with `*` and `?` (no classes), enough for case names.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Packages btrfs-progs needs to build and to run its tests.
pub(crate) fn packages(distro: Distro) -> &'static [&'static str] {
    match distro {
        Distro::Debian => &[
            "make",
            "gcc",
            "autoconf",
            "automake",
            "libtool",
            "pkg-config",
            "libblkid-dev",
            "uuid-dev",
            "zlib1g-dev",
            "libzstd-dev",
            "liblzo2-dev",
            "libudev-dev",
            "libext2fs-dev",
            "libaio-dev",
            "liburing-dev",
            "python3",
            "e2fsprogs",
            "util-linux",
            "acl",
            "attr",
            "xfsprogs",
            "dmsetup",
            "udev",
            "tar",
            "kmod",
        ],
        Distro::Fedora => &[
            "make",
            "gcc",
            "autoconf",
            "automake",
            "libtool",
            "pkgconf-pkg-config",
            "libblkid-devel",
            "libuuid-devel",
            "zlib-devel",
            "libzstd-devel",
            "lzo-devel",
            "systemd-devel",
            "e2fsprogs-devel",
            "libaio-devel",
            "liburing-devel",
            "python3",
            "e2fsprogs",
            "util-linux",
            "acl",
            "attr",
            "xfsprogs",
            "device-mapper",
            "systemd-udev",
            "tar",
            "kmod",
        ],
    }
}

/// The helper programs the test scripts call besides the default build.
const TEST_TARGETS: &str =
    "btrfs-corrupt-block btrfs-find-root btrfs-select-super fssum fsstress btrfs-convert";

/// Undoes what a case may have left in the tree: mounts under it (or of
/// loop devices backed by files in it), then those loop devices.
fn cleanup_command(tree: &str) -> String {
    let t = shell_quote(tree);
    format!(
        "T={t}; for i in 1 2 3 4; do \
           findmnt -rn -o TARGET,SOURCE | while read -r m s; do \
             case \"$m\" in \"$T\"/*) umount -l \"$m\" 2>/dev/null;; esac; \
             case \"$s\" in /dev/loop*) f=$(losetup -nO BACK-FILE \"$s\" 2>/dev/null); \
               case \"$f\" in \"$T\"/*) umount -l \"$m\" 2>/dev/null;; esac;; esac; \
           done; done; \
         losetup -nO NAME,BACK-FILE 2>/dev/null | while read -r d f; do \
           case \"$f\" in \"$T\"/*) losetup -d \"$d\";; esac; done; true"
    )
}

/// What in a case's script says it uses state the whole machine shares:
/// loop devices it lists (`cleanup_loopdevs` runs `losetup --all`, which
/// fails when another process's loop device goes away meanwhile), device
/// mapper targets, modules, `/proc/sys`. On machines that share one kernel
/// such a case runs alone. Found by running the cli, mkfs and misc suites
/// on two machines of one host: misc/021 failed in `losetup --all`.
const SHARED_HOST_STATE: &str =
    "setup_loopdevs|cleanup_loopdevs|losetup|dmsetup|modprobe|rmmod|null_blk|/proc/sys/";

/// The btrfs-progs test suites.
#[derive(Debug)]
pub struct BtrfsProgsTests {
    config: BtrfsProgsConfig,
    pinned: tokio::sync::OnceCell<PinnedSource>,
}

impl BtrfsProgsTests {
    /// A suite with `config` (check it first with [`BtrfsProgsConfig::validate`]).
    pub fn new(config: BtrfsProgsConfig) -> Self {
        BtrfsProgsTests {
            config,
            pinned: tokio::sync::OnceCell::new(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &BtrfsProgsConfig {
        &self.config
    }

    fn check_config(&self) -> Result<(), SuiteError> {
        let issues = self.config.validate();
        if issues.is_empty() {
            return Ok(());
        }
        Err(SuiteError::config_issues(ID, &issues))
    }

    async fn pinned(&self) -> Result<&PinnedSource, SuiteError> {
        source::pin_once(
            &self.pinned,
            ID,
            "btrfs-progs",
            &self.config.git_url,
            &self.config.git_ref,
            self.config.cache_dir.as_deref(),
        )
        .await
    }

    async fn is_built(&self, ctx: &SuiteContext, dir: &str) -> Result<bool, SuiteError> {
        source::is_built(ctx.host.as_ref(), dir)
            .await
            .map_err(remote_error)
    }

    /// Every case of the configured suites, as `(suite, case)`, in order.
    async fn list_cases(
        &self,
        ctx: &SuiteContext,
        dir: &str,
    ) -> Result<Vec<(String, String)>, SuiteError> {
        let mut cases = Vec::new();
        for suite in &self.config.suites {
            let out = run_step(
                ctx.host.as_ref(),
                ID,
                "list test cases",
                ExecRequest::new(format!(
                    "cd tests/{suite}-tests && find . -mindepth 1 -maxdepth 1 -type d -printf '%P\\n' | LC_ALL=C sort"
                ))
                .cwd(dir.to_owned())
                .timeout(Duration::from_secs(60)),
            )
            .await?;
            for case in out.stdout_text().lines() {
                // Helper directories (fuzz-tests/images) are not cases.
                if parse::is_case_name(case) && case.as_bytes()[0].is_ascii_digit() {
                    cases.push((suite.clone(), case.to_owned()));
                }
            }
        }
        Ok(cases)
    }
}

fn remote_error(source: RemoteError) -> SuiteError {
    SuiteError::Remote {
        suite: ID.to_owned(),
        source,
    }
}

#[async_trait::async_trait]
impl TestSuite for BtrfsProgsTests {
    fn id(&self) -> &str {
        ID
    }

    /// Each configured suite's case directories in the pinned commit, as
    /// `include` and `exclude` select them.
    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        self.check_config()?;
        let pinned = self.pinned().await?;
        let shared: std::collections::BTreeSet<String> =
            source::grep(ID, pinned, SHARED_HOST_STATE, "tests/", true)
                .await?
                .lines()
                .filter_map(|line| {
                    // `<commit>:tests/<suite>-tests/<case>/test.sh`
                    let path = line.split_once("tests/")?.1;
                    let (suite, rest) = path.split_once("-tests/")?;
                    let (case, _) = rest.split_once('/')?;
                    Some(format!("{suite}/{case}"))
                })
                .collect();
        let mut list = TestList::default();
        for suite in &self.config.suites {
            let mut cases =
                source::subdirectories(ID, pinned, &format!("tests/{suite}-tests")).await?;
            // The harness's own order (`LC_ALL=C sort`).
            cases.sort();
            list.tests.extend(
                cases
                    .into_iter()
                    // Helper directories (fuzz-tests/images) are not cases.
                    .filter(|case| parse::is_case_name(case) && case.as_bytes()[0].is_ascii_digit())
                    .map(|case| format!("{suite}/{case}"))
                    .filter(|test| self.config.selects(test))
                    .map(|test| ListedTest {
                        exclusive: shared.contains(&test),
                        ..ListedTest::new(test)
                    }),
            );
        }
        Ok(Some(list))
    }

    async fn prepare(&self, ctx: &SuiteContext) -> Result<(), SuiteError> {
        self.check_config()?;
        let pinned = self.pinned().await?;
        let host = ctx.host.as_ref();
        let distro = if self.config.install_packages {
            let distro = detect_distro(host, ID).await?;
            install_packages(host, ID, distro, packages(distro)).await?;
            Some(distro)
        } else {
            detect_distro(host, ID).await.ok()
        };
        let mut configure = vec![
            "--disable-documentation".to_owned(),
            "--disable-python".to_owned(),
        ];
        configure.extend(self.config.configure_args.iter().cloned());
        let configure = configure
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let recipe = Recipe {
            step: "build btrfs-progs",
            command: format!(
                "./autogen.sh && ./configure {configure} && make -j\"$(nproc)\" && \
                 make -j\"$(nproc)\" {TEST_TARGETS}"
            ),
            packages: distro.map_or(&[], packages),
            timeout: Duration::from_secs(3600),
        };
        let cache = self
            .config
            .cache_dir
            .clone()
            .unwrap_or_else(source::default_cache_dir);
        build_cache::place_built(host, ID, pinned, &ctx.devices.work_dir, &cache, &recipe).await?;
        Ok(())
    }

    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let started = Instant::now();
        self.check_config()?;
        let pinned = self.pinned().await?.clone();
        let dir = pinned.remote_dir(&ctx.devices.work_dir);
        if !self.is_built(ctx, &dir).await? {
            self.prepare(ctx).await?;
        }
        let mut report = SuiteReport::new(ID);
        report.source = Some(pinned.info.clone());
        let cases = self.list_cases(ctx, &dir).await?;
        let mut cancelled = false;
        let mut lost = None;
        for (suite, case) in cases {
            let test = format!("{suite}/{case}");
            if !self.config.selects(&test) || !ctx.selected(&test) {
                continue;
            }
            if ctx.cancel.is_cancelled() {
                cancelled = true;
                break;
            }
            match self.run_case(ctx, &dir, &suite, &case).await {
                Ok((outcome, stop)) => {
                    report.tests.push(outcome);
                    if stop {
                        cancelled = true;
                        break;
                    }
                }
                Err(err) => {
                    lost = Some(err.to_string());
                    let outcome = TestOutcome::new(ID, test.as_str(), Verdict::Crashed)
                        .with_message(format!("the machine was lost while this case ran: {err}"));
                    report.tests.push(ctx.test_finished(outcome));
                    break;
                }
            }
        }
        if lost.is_none() {
            let _ = ctx
                .host
                .exec(
                    ExecRequest::new(cleanup_command(&dir)).timeout(Duration::from_secs(300)),
                    None,
                )
                .await;
        }
        report.duration_secs = Some(started.elapsed().as_secs_f64());
        report.error = lost;
        if cancelled {
            return Err(SuiteError::Cancelled {
                suite: ID.to_owned(),
                partial: Box::new(report),
            });
        }
        Ok(report)
    }
}

impl BtrfsProgsTests {
    /// Runs one case alone; returns its outcome and whether the run was
    /// cancelled meanwhile. `Err` only when the machine could not be reached.
    async fn run_case(
        &self,
        ctx: &SuiteContext,
        dir: &str,
        suite: &str,
        case: &str,
    ) -> Result<(TestOutcome, bool), RemoteError> {
        let test = format!("{suite}/{case}");
        let host = ctx.host.as_ref();
        // What the kernel logs from here until the case ends is the case's.
        let kernel_cursor = crate::kernel_log::KernelLogCursor::start(host).await;
        host.exec(
            ExecRequest::new(cleanup_command(dir)).timeout(Duration::from_secs(300)),
            None,
        )
        .await?;
        let results_file = format!("tests/{suite}-tests-results.txt");
        ctx.test_started(ID, &test);
        let began = chrono::Utc::now();
        let pidfile = format!("{dir}/btrfsqa-case.pid");
        // `exec` keeps the script the process-group leader, so a stop can
        // take everything it started.
        let command = format!(
            "rm -f {results}; echo $$ > {pid}; exec env TEST={case} bash tests/{suite}-tests.sh 2>&1",
            results = shell_quote(&results_file),
            pid = shell_quote(&pidfile),
            case = shell_quote(case),
        );
        let timeout = Duration::from_secs(self.config.case_timeout_secs);
        let exec = host.exec(
            ExecRequest::new(command)
                .cwd(dir.to_owned())
                .timeout(timeout),
            None,
        );
        tokio::pin!(exec);
        let mut stopped = false;
        let out = loop {
            tokio::select! {
                out = &mut exec => break out?,
                _ = ctx.cancel.cancelled(), if !stopped => {
                    stopped = true;
                    // A case's own cleanup runs on SIGTERM: thirty seconds for it.
                    let kill = crate::stop::stop_group(&pidfile, 30);
                    host.exec(ExecRequest::new(kill).timeout(Duration::from_secs(60)), None).await?;
                }
            }
        };

        let rel_dir = format!(
            "{}/{}/{}",
            safe_file_name(ID),
            safe_file_name(suite),
            safe_file_name(case)
        );
        let mut outcome = TestOutcome::new(ID, test.as_str(), Verdict::Pass);
        outcome.started_at = Some(began);
        outcome.duration_secs = Some(out.duration.as_secs_f64());
        let console = out.stdout_text();
        let mut console_bytes = Vec::new();
        let limit = usize::try_from(self.config.max_artifact_bytes).unwrap_or(usize::MAX);
        btrfsqa_remote::push_capped(&mut console_bytes, &out.stdout, limit);
        let path = format!("{rel_dir}/console.log");
        if crate::context::write_file(&ctx.run_dir.join(&path), &console_bytes).is_ok() {
            let mut artifact = Artifact::new(ArtifactKind::Stdout, path);
            let left_out = out.stdout.len() - console_bytes.len();
            artifact.truncated_bytes = (left_out > 0).then_some(left_out as u64);
            outcome.artifacts.push(artifact);
        }
        let results = self.fetch_results(ctx, dir, &results_file, &rel_dir).await;
        let parsed_results = results.as_ref().and_then(|(_, text)| {
            parse::parse_results(text)
                .into_iter()
                .find(|c| c.name == case)
        });
        if let Some((artifact, _)) = results {
            outcome.artifacts.push(artifact);
        }
        let consoles = parse::parse_console(&console);
        let console_case = consoles.iter().find(|c| c.name == case);
        let (mut verdict, mut message) = parse::case_verdict(
            out.success(),
            out.timed_out,
            console_case,
            parsed_results.as_ref(),
            &console,
        );
        if stopped {
            verdict = Verdict::Interrupted;
            message = Some("the run was stopped while this case ran".to_owned());
        } else if console_case.is_none() && !out.timed_out {
            // The script never reached the case (a missing tool, a kernel
            // without btrfs): that is the harness, not the case.
            verdict = Verdict::Error;
            message = Some(format!(
                "the script did not run the case: {}",
                crate::setup::output_tail(&out)
                    .lines()
                    .last()
                    .unwrap_or("no output")
            ));
        }
        outcome.verdict = verdict;
        outcome.message = message;
        if !stopped && let Some(cursor) = kernel_cursor {
            cursor.apply_since(ctx, &mut outcome).await;
        }
        Ok((ctx.test_finished(outcome), stopped))
    }

    /// Downloads the suite's results file into the store (its tail, when it
    /// is over the size limit) and returns it with its text.
    async fn fetch_results(
        &self,
        ctx: &SuiteContext,
        dir: &str,
        file: &str,
        rel_dir: &str,
    ) -> Option<(Artifact, String)> {
        let remote = format!("{dir}/{file}");
        let size = ctx
            .host
            .exec(
                ExecRequest::new(format!("stat -c %s {}", shell_quote(&remote)))
                    .timeout(Duration::from_secs(60)),
                None,
            )
            .await
            .ok()
            .filter(|o| o.success())
            .and_then(|o| o.stdout_text().trim().parse::<u64>().ok())?;
        let rel = format!("{rel_dir}/results.txt");
        let local = ctx.run_dir.join(&rel);
        let max = self.config.max_artifact_bytes;
        let mut artifact = Artifact::new(ArtifactKind::Log, rel);
        if size <= max {
            ctx.host.download(&remote, &local).await.ok()?;
        } else {
            // The failure is at the end; keep the tail.
            let cut = format!("{remote}.btrfsqa-tail");
            let command = format!(
                "tail -c {max} {} > {}",
                shell_quote(&remote),
                shell_quote(&cut)
            );
            ctx.host
                .exec(
                    ExecRequest::new(command).timeout(Duration::from_secs(120)),
                    None,
                )
                .await
                .ok()?;
            let result = ctx.host.download(&cut, &local).await;
            let _ = ctx
                .host
                .exec(
                    ExecRequest::new(format!("rm -f {}", shell_quote(&cut)))
                        .timeout(Duration::from_secs(60)),
                    None,
                )
                .await;
            result.ok()?;
            artifact.truncated_bytes = Some(size - max);
        }
        let text = String::from_utf8_lossy(&std::fs::read(&local).ok()?).into_owned();
        Some((artifact, text))
    }
}

#[cfg(test)]
mod tests;
