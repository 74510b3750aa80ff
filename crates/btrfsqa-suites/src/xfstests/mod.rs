//! fstests (xfstests) on btrfs: one outcome per test and profile.
//!
//! [`Xfstests`] pins fstests to a commit on the controller, builds it on the
//! machine (installing its build and run-time packages and creating its users
//! on Debian, Ubuntu and Fedora), writes a `local.config` with one fstests
//! section per btrfs profile ([`config::PROFILES`]), and runs `./check -R xunit
//! -s <section>` once per section. Each section's `result.xml` (with
//! `check.log` and the console as fallbacks) becomes the outcomes, and each
//! test's `.full`, `.out.bad` and `.dmesg` land in the results store as its
//! artifacts.
//!
//! The console is read as it streams: tests are reported as they start and
//! end, and a test that runs past `test-timeout-secs` has its `./check`
//! stopped, is reported as hung, and the suite stops for the runner to reset
//! the machine ([`SuiteError::Hung`]).
//!
//! The controller lists the tests of each section from the pinned commit
//! ([`list`]), so a run splits fstests per test over its machines; a batch is
//! one `./check -s <section> t1 t2 ...` ([`SuiteContext::only`] and
//! [`SuiteContext::profile`]). The built tree is kept on the controller per
//! commit and machine image, so later machines and runs unpack it instead of
//! building.

pub mod config;
pub mod list;
pub mod parse;
mod plugin;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use btrfsqa_model::{
    Artifact, ArtifactKind, Event, SuiteReport, TestOutcome, Verdict, safe_file_name,
};
use btrfsqa_remote::{ExecRequest, RemoteError, shell_quote};
use chrono::{DateTime, Utc};

pub use config::{
    MachineLayout, PROFILES, Profile, ResolvedSection, SectionConfig, XfstestsConfig,
};
use parse::{ConsoleEvent, ConsoleParser, ParsedTest};

use crate::build_cache::{self, Recipe};
use crate::setup::{Distro, detect_distro, install_packages, run_step};
use crate::source::{self, PinnedSource};
use crate::{ListedTest, SuiteContext, SuiteError, TestList, TestSuite};

/// The suite id.
pub const ID: &str = "xfstests";

/// Packages fstests needs to build and run, per distribution family.
fn packages(distro: Distro) -> &'static [&'static str] {
    match distro {
        Distro::Debian => &[
            "make",
            "gcc",
            "autoconf",
            "automake",
            "libtool",
            "pkg-config",
            "xfslibs-dev",
            "uuid-dev",
            "libattr1-dev",
            "libacl1-dev",
            "libaio-dev",
            "liburing-dev",
            "libgdbm-dev",
            "libcap-dev",
            "xfsprogs",
            "attr",
            "acl",
            "bc",
            "fio",
            "dbench",
            "psmisc",
            "quota",
            "dmsetup",
            "duperemove",
            "btrfs-progs",
            "e2fsprogs",
            "util-linux",
            "kmod",
            "gawk",
            "python3",
            "tar",
        ],
        Distro::Fedora => &[
            "make",
            "gcc",
            "autoconf",
            "automake",
            "libtool",
            "pkgconf-pkg-config",
            "xfsprogs-devel",
            "libuuid-devel",
            "libattr-devel",
            "libacl-devel",
            "libaio-devel",
            "liburing-devel",
            "gdbm-devel",
            "libcap-devel",
            "xfsprogs",
            "attr",
            "acl",
            "bc",
            "fio",
            "dbench",
            "psmisc",
            "quota",
            "device-mapper",
            "duperemove",
            "btrfs-progs",
            "e2fsprogs",
            "util-linux",
            "kmod",
            "gawk",
            "python3",
            "tar",
        ],
    }
}

/// What in a test's source says it uses state the whole kernel shares:
/// global `/proc/sys` knobs, the global fail_make_request settings, module
/// loading, and btrfs' list of known devices (`btrfs device scan` with no
/// device scans, and `--forget` forgets, every device of the host;
/// `filesystem show` lists every filesystem). On machines that share one
/// kernel such a test runs alone. Found by running tests two at a time on
/// one kernel: btrfs/006 failed with "cannot scan /dev/loop3" (the other
/// machine's device) when it ran beside another test.
const SHARED_KERNEL_STATE: &str = "/proc/sys/|sysctl|fail_make_request|_reload_fs_module|\
    _reload_module|_require_loadable|modprobe|rmmod|device scan|filesystem show|fi show|\
    _btrfs_forget_or_module_reload|_btrfs_rescan_devices|_require_btrfs_forget";

/// Creates the users and group fstests' tests switch to.
const CREATE_USERS: &str = "getent group fsgqa >/dev/null || groupadd fsgqa; \
    id -u fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa fsgqa; \
    id -u fsgqa2 >/dev/null 2>&1 || useradd -m fsgqa2; \
    id -u 123456-fsgqa >/dev/null 2>&1 || useradd -m 123456-fsgqa 2>/dev/null \
    || useradd --badname -m 123456-fsgqa";

/// The per-test files collected as artifacts.
const TEST_FILES: &[(&str, ArtifactKind)] = &[
    (".full", ArtifactKind::Full),
    (".out.bad", ArtifactKind::OutBad),
    (".dmesg", ArtifactKind::Dmesg),
];

/// The fstests suite.
#[derive(Debug)]
pub struct Xfstests {
    config: XfstestsConfig,
    pinned: tokio::sync::OnceCell<PinnedSource>,
    /// How many times `run` was called (each batch's files get its number).
    invocations: std::sync::atomic::AtomicUsize,
}

impl Xfstests {
    /// A suite with `config` (check it first with [`XfstestsConfig::validate`]).
    pub fn new(config: XfstestsConfig) -> Self {
        Xfstests {
            config,
            pinned: tokio::sync::OnceCell::new(),
            invocations: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &XfstestsConfig {
        &self.config
    }

    fn sections(&self) -> Result<Vec<ResolvedSection>, SuiteError> {
        self.config
            .resolve()
            .map_err(|issues| SuiteError::config_issues(ID, &issues))
    }

    /// Pins the source once per suite (every machine of a run uses the same commit).
    async fn pinned(&self) -> Result<&PinnedSource, SuiteError> {
        source::pin_once(
            &self.pinned,
            ID,
            "fstests",
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

    fn cache_dir(&self) -> std::path::PathBuf {
        self.config
            .cache_dir
            .clone()
            .unwrap_or_else(source::default_cache_dir)
    }

    /// The entries of the section's exclusion files (`exclude-files`).
    fn expunged(&self, section: &ResolvedSection) -> Result<Vec<String>, SuiteError> {
        let mut entries = Vec::new();
        for file in &section.exclude_files {
            let text = std::fs::read_to_string(file).map_err(|err| SuiteError::Config {
                suite: ID.to_owned(),
                message: format!("cannot read the exclusion file `{}`: {err}", file.display()),
            })?;
            entries.extend(list::exclusion_entries(&text));
        }
        Ok(entries)
    }
}

fn remote_error(source: RemoteError) -> SuiteError {
    SuiteError::Remote {
        suite: ID.to_owned(),
        source,
    }
}

#[async_trait::async_trait]
impl TestSuite for Xfstests {
    fn id(&self) -> &str {
        ID
    }

    /// Every section's tests as `./check` would select them from the
    /// pinned commit (see [`list`]).
    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        let sections = self.sections()?;
        let pinned = self.pinned().await?;
        let check = source::show(ID, pinned, "check").await.ok();
        let dirs = list::search_dirs(check.as_deref());
        let begin = source::grep(ID, pinned, "^_begin_fstest", "tests/", false).await?;
        let index = list::TestIndex::from_begin_lines(&begin, &dirs);
        let short: String = pinned.commit.chars().take(12).collect();
        if index.is_empty() {
            return Err(SuiteError::Config {
                suite: ID.to_owned(),
                message: format!(
                    "`{}` at {short} has no fstests test (no `_begin_fstest` line under tests/)",
                    self.config.git_url
                ),
            });
        }
        let shared: std::collections::BTreeSet<String> =
            source::grep(ID, pinned, SHARED_KERNEL_STATE, "tests/", true)
                .await?
                .lines()
                .filter_map(|line| line.split_once("tests/").map(|(_, t)| t.to_owned()))
                .collect();
        let mut list = TestList::default();
        for section in &sections {
            let expunged = self.expunged(section)?;
            let (tests, unknown) =
                index
                    .select(section, &expunged)
                    .map_err(|message| SuiteError::Config {
                        suite: ID.to_owned(),
                        message,
                    })?;
            list.warnings.extend(unknown.into_iter().map(|test| {
                format!(
                    "`{test}` (section `{}`) is not a test of fstests at {short}: left out",
                    section.name
                )
            }));
            list.tests.extend(tests.into_iter().map(|name| ListedTest {
                profile: Some(section.name.clone()),
                exclusive: shared.contains(&name),
                name,
            }));
        }
        Ok(Some(list))
    }

    async fn prepare(&self, ctx: &SuiteContext) -> Result<(), SuiteError> {
        self.sections()?;
        let pinned = self.pinned().await?;
        let host = ctx.host.as_ref();
        let distro = if self.config.install_packages {
            let distro = detect_distro(host, ID).await?;
            install_packages(host, ID, distro, packages(distro)).await?;
            run_step(
                host,
                ID,
                "create fstests' users",
                ExecRequest::new(CREATE_USERS).timeout(Duration::from_secs(120)),
            )
            .await?;
            Some(distro)
        } else {
            detect_distro(host, ID).await.ok()
        };
        let recipe = Recipe {
            step: "build fstests",
            command: "make -j\"$(nproc)\"".to_owned(),
            packages: distro.map_or(&[], packages),
            timeout: Duration::from_secs(3600),
        };
        build_cache::place_built(
            host,
            ID,
            pinned,
            &ctx.devices.work_dir,
            &self.cache_dir(),
            &recipe,
        )
        .await?;
        Ok(())
    }

    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let started = Instant::now();
        let sections = self.sections()?;
        let pinned = self.pinned().await?.clone();
        let dir = pinned.remote_dir(&ctx.devices.work_dir);
        if !self.is_built(ctx, &dir).await? {
            self.prepare(ctx).await?;
        }
        let mut report = SuiteReport::new(ID);
        report.source = Some(pinned.info.clone());

        let layout = MachineLayout::under(&ctx.devices.work_dir);
        let local_config =
            config::local_config(&sections, &ctx.devices, &layout).map_err(|message| {
                SuiteError::Config {
                    suite: ID.to_owned(),
                    message,
                }
            })?;
        // One per machine: machines of one run have different devices.
        let config_artifact = ctx.write_artifact(
            ID,
            "_suite",
            &format!("local.config.{}", ctx.devices.name),
            ArtifactKind::Other,
            local_config.as_bytes(),
        )?;
        ctx.host
            .upload(
                &ctx.run_dir.join(&config_artifact.path),
                &format!("{dir}/local.config"),
            )
            .await
            .map_err(remote_error)?;
        report.artifacts.push(config_artifact);

        let runner = SectionRunner {
            ctx,
            config: &self.config,
            dir: &dir,
            layout: &layout,
            invocation: self
                .invocations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        runner.reset_machine().await?;
        let mut errors = Vec::new();
        let mut cancelled = false;
        let mut hung = None;
        for section in sections.iter().filter(|s| ctx.selected_profile(&s.name)) {
            if ctx.cancel.is_cancelled() {
                cancelled = true;
                break;
            }
            if let Some(needed) = section.scratch_devs
                && needed > ctx.devices.scratch_devs.len()
            {
                errors.push(format!(
                    "section `{}` needs {needed} scratch devices, the machine has {}",
                    section.name,
                    ctx.devices.scratch_devs.len()
                ));
                continue;
            }
            let expunged = self.expunged(section)?;
            match runner.run(section, &expunged, &mut report).await {
                Ok(SectionEnd::Done) => {}
                Ok(SectionEnd::Cancelled) => {
                    cancelled = true;
                    break;
                }
                Ok(SectionEnd::Hung(test)) => {
                    hung = Some(test);
                    break;
                }
                Err(err) => {
                    errors.push(format!("section `{}`: {err}", section.name));
                    if matches!(err, SuiteError::Remote { .. }) {
                        // The machine is gone: the next sections cannot run either.
                        break;
                    }
                }
            }
        }
        runner.unmount().await;
        report.duration_secs = Some(started.elapsed().as_secs_f64());
        if !errors.is_empty() {
            report.error = Some(errors.join("; "));
        }
        if cancelled {
            return Err(SuiteError::Cancelled {
                suite: ID.to_owned(),
                partial: Box::new(report),
            });
        }
        if let Some(test) = hung {
            return Err(SuiteError::Hung {
                suite: ID.to_owned(),
                test,
                partial: Box::new(report),
            });
        }
        Ok(report)
    }
}

/// What one `./check` invocation gave.
struct Invocation {
    live: LiveState,
    stopped: Option<Verdict>,
    lost: Option<RemoteError>,
    interrupted: Option<ParsedTest>,
    /// Stopped for printing nothing outside a test.
    idle_stop: bool,
    /// Exited with an error before running any test: its status and output.
    refused: Option<String>,
    /// What the machine showed after a hung test was stopped.
    evidence: Option<String>,
}

fn exit_status(out: &btrfsqa_remote::ExecOutput) -> String {
    match out.code {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    }
}

/// How a section ended.
enum SectionEnd {
    Done,
    Cancelled,
    /// This test hung: `./check` was stopped after it.
    Hung(String),
}

/// Runs the sections of one run on one machine.
struct SectionRunner<'a> {
    ctx: &'a SuiteContext,
    config: &'a XfstestsConfig,
    dir: &'a str,
    layout: &'a MachineLayout,
    /// This `run`'s number within the suite (names a batch's files).
    invocation: usize,
}

impl SectionRunner<'_> {
    /// Clears earlier results and mounts, and makes a btrfs on TEST_DEV (fstests expects one).
    async fn reset_machine(&self) -> Result<(), SuiteError> {
        let d = &self.ctx.devices;
        let l = self.layout;
        run_step(
            self.ctx.host.as_ref(),
            ID,
            "prepare the test device",
            ExecRequest::new(format!(
                "umount {test} 2>/dev/null; umount {scratch} 2>/dev/null; \
                 rm -rf {results} && mkdir -p {test} {scratch} {results} && mkfs.btrfs -f -q {dev}",
                test = shell_quote(&l.test_dir),
                scratch = shell_quote(&l.scratch_mnt),
                results = shell_quote(&l.result_base),
                dev = shell_quote(&d.test_dev),
            ))
            .timeout(Duration::from_secs(300)),
        )
        .await
        .map(drop)
    }

    /// Leaves no fstests mount behind (best effort: the run is over either way).
    async fn unmount(&self) {
        let command = format!(
            "umount {} 2>/dev/null; umount {} 2>/dev/null; true",
            shell_quote(&self.layout.test_dir),
            shell_quote(&self.layout.scratch_mnt)
        );
        let _ = self
            .ctx
            .host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(120)),
                None,
            )
            .await;
    }

    fn pidfile(&self, section: &ResolvedSection) -> String {
        format!(
            "{}/check-{}.pid",
            self.layout.result_base, section.fstests_name
        )
    }

    /// Stops a running `./check` and everything it started (its own session).
    async fn stop_check(&self, section: &ResolvedSection) {
        let pidfile = shell_quote(&self.pidfile(section));
        let command = format!(
            "p=$(cat {pidfile} 2>/dev/null) && [ -n \"$p\" ] || exit 0; kill -TERM -\"$p\" 2>/dev/null; \
             for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 -\"$p\" 2>/dev/null || exit 0; sleep 1; done; \
             kill -KILL -\"$p\" 2>/dev/null; true"
        );
        let _ = self
            .ctx
            .host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(60)),
                None,
            )
            .await;
    }

    /// Runs one section's `./check` once; a hung test stops it.
    async fn run(
        &self,
        section: &ResolvedSection,
        expunged: &[String],
        report: &mut SuiteReport,
    ) -> Result<SectionEnd, SuiteError> {
        let ctx = self.ctx;
        let only = ctx.only.as_deref();
        if only.is_some_and(|o| !o.iter().any(|t| parse::is_test_name(t))) {
            return Ok(SectionEnd::Done);
        }
        let section_rel = format!("{ID}/{}", safe_file_name(&section.name));
        // A batch's own files (console, results) beside the other batches'
        // of the section, which other machines may be writing right now.
        let batch_rel = match only {
            Some(_) => format!(
                "{section_rel}/{}-{}",
                safe_file_name(&ctx.devices.name),
                self.invocation
            ),
            None => section_rel.clone(),
        };
        let local_dir = ctx.run_dir.join(&batch_rel);
        std::fs::create_dir_all(&local_dir).map_err(|source| SuiteError::Store {
            path: local_dir.clone(),
            source,
        })?;
        let console_path = local_dir.join("console.log");
        let mut console =
            std::fs::File::create(&console_path).map_err(|source| SuiteError::Store {
                path: console_path.clone(),
                source,
            })?;
        report.artifacts.push(Artifact::new(
            ArtifactKind::Stdout,
            format!("{batch_rel}/console.log"),
        ));

        let mut done: BTreeSet<String> = BTreeSet::new();
        {
            let mut excluded: Vec<String> = section.exclude_tests.clone();
            excluded.extend(expunged.iter().cloned());
            // A resumed run's finished tests (by name) are not run again.
            excluded.extend(ctx.skip.iter().filter(|t| parse::is_test_name(t)).cloned());
            let exclude_file = if excluded.is_empty() {
                None
            } else {
                let local = local_dir.join("exclude");
                crate::context::write_file(
                    &local,
                    format!("{}\n", excluded.join("\n")).as_bytes(),
                )?;
                let remote = format!("{}/btrfsqa-exclude-{}", self.dir, section.fstests_name);
                ctx.host
                    .upload(&local, &remote)
                    .await
                    .map_err(remote_error)?;
                Some(remote)
            };
            let invocation = self
                .invoke(section, exclude_file.as_deref(), &mut console)
                .await;
            let tests = if invocation.lost.is_none() {
                self.collect(section, &section_rel, &batch_rel, &done, report)
                    .await
            } else {
                CollectedTests::default()
            };
            let merged = merge_results(
                tests.xunit.clone(),
                tests.check_log_tests.clone(),
                invocation.live.finished.clone(),
                invocation.interrupted.clone(),
            );
            for test in merged {
                if done.contains(&test.name) {
                    continue;
                }
                let mut outcome = TestOutcome::new(ID, test.name.clone(), test.verdict);
                outcome.profile = Some(section.name.clone());
                outcome.duration_secs = test.duration_secs;
                outcome.message = test.message.clone();
                outcome.machine = Some(ctx.devices.name.clone());
                outcome.started_at = invocation.live.started.get(&test.name).map(|(at, _)| *at);
                if let Some(files) = tests.files.get(&test.name) {
                    outcome.artifacts = files.clone();
                }
                if test.verdict == Verdict::Hung
                    && let Some(evidence) = &invocation.evidence
                    && invocation
                        .interrupted
                        .as_ref()
                        .is_some_and(|t| t.name == test.name)
                {
                    let artifact = ctx.write_artifact(
                        ID,
                        &test.name,
                        "hang-evidence.txt",
                        ArtifactKind::Log,
                        evidence.as_bytes(),
                    )?;
                    outcome.artifacts.push(artifact);
                }
                // fstests fails a test whose kernel log shows a problem and
                // keeps that log as `.dmesg`: name the problems.
                if let Some(dmesg) = outcome
                    .artifacts
                    .iter()
                    .find(|a| a.kind == ArtifactKind::Dmesg)
                    && let Ok(bytes) = std::fs::read(ctx.run_dir.join(&dmesg.path))
                {
                    let text = String::from_utf8_lossy(&bytes);
                    outcome.kernel_log =
                        crate::kernel_log::problems(&crate::kernel_log::parse_records(&text));
                }
                if !invocation.live.finished.iter().any(|t| t.name == test.name) {
                    // Not seen to end on the console (stopped, or a line the
                    // console parser did not read): reported now.
                    ctx.test_finished(outcome.clone());
                }
                done.insert(test.name.clone());
                report.tests.push(outcome);
            }
            if let Some(err) = invocation.lost {
                return Err(remote_error(err));
            }
            if let Some(message) = invocation.refused {
                return Err(SuiteError::Setup {
                    suite: ID.to_owned(),
                    step: format!("`./check` for section `{}`", section.name),
                    message,
                });
            }
            if invocation.idle_stop {
                self.unmount().await;
                return Err(SuiteError::Setup {
                    suite: ID.to_owned(),
                    step: format!("section `{}`", section.name),
                    message: format!(
                        "`./check` printed nothing for {} s outside a test: stopped",
                        self.config
                            .test_timeout_secs
                            .unwrap_or(config::DEFAULT_TEST_TIMEOUT_SECS)
                    ),
                });
            }
            match (invocation.stopped, invocation.interrupted) {
                (Some(Verdict::Interrupted), _) => Ok(SectionEnd::Cancelled),
                (Some(Verdict::Hung), Some(test)) => {
                    // What the stopped test left mounted would fail the next one.
                    self.unmount().await;
                    Ok(SectionEnd::Hung(test.name))
                }
                _ => Ok(SectionEnd::Done),
            }
        }
    }

    /// Runs `./check` once for `section`, reading its console as it streams.
    async fn invoke(
        &self,
        section: &ResolvedSection,
        exclude_file: Option<&str>,
        console: &mut std::fs::File,
    ) -> Invocation {
        let ctx = self.ctx;
        let host = ctx.host.as_ref();
        let args = config::check_args(section, exclude_file, ctx.only.as_deref());
        let check = std::iter::once("./check".to_owned())
            .chain(args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ");
        // A session of its own, so a hung test can be stopped with all it
        // started; its pid goes to a file because the command runs remotely.
        let inner = format!(
            "echo $$ > {}; exec {check}",
            shell_quote(&self.pidfile(section))
        );
        let command = format!("setsid -w sh -c {}", shell_quote(&inner));

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let exec = host.exec(ExecRequest::new(command).cwd(self.dir.to_owned()), Some(tx));
        tokio::pin!(exec);
        let mut parser = ConsoleParser::new();
        let mut live = LiveState::default();
        // Between tests (no per-test timeout applies) the configured or
        // default one does.
        let timeout = Duration::from_secs(
            self.config
                .test_timeout_secs
                .unwrap_or(config::DEFAULT_TEST_TIMEOUT_SECS),
        );
        live.configured = self.config.test_timeout_secs.map(Duration::from_secs);
        let mut stopped: Option<Verdict> = None;
        // Between tests (set-up, mkfs, the summary) `./check` is stopped
        // after the same time without any output.
        let mut last_output = tokio::time::Instant::now();
        let mut idle_stop = false;
        let mut evidence = None;
        let result = loop {
            let deadline = live.deadline.unwrap_or(last_output + timeout);
            tokio::select! {
                result = &mut exec => break result,
                Some(chunk) = rx.recv() => {
                    last_output = tokio::time::Instant::now();
                    let _ = console.write_all(&chunk.data);
                    for event in parser.push(&chunk.data) {
                        live.event(ctx, section, event, timeout);
                    }
                }
                _ = ctx.cancel.cancelled(), if stopped.is_none() => {
                    stopped = Some(Verdict::Interrupted);
                    live.stopped = parser.running().map(str::to_owned);
                    self.stop_check(section).await;
                }
                _ = tokio::time::sleep_until(deadline), if stopped.is_none() => {
                    stopped = Some(Verdict::Hung);
                    live.stopped = parser.running().map(str::to_owned);
                    idle_stop = live.stopped.is_none();
                    self.stop_check(section).await;
                    // What stays blocked after the kill is what matters.
                    if live.stopped.is_some() {
                        evidence = crate::kernel_log::hang_evidence(host).await;
                    }
                }
            }
        };
        while let Ok(chunk) = rx.try_recv() {
            let _ = console.write_all(&chunk.data);
            for event in parser.push(&chunk.data) {
                live.event(ctx, section, event, timeout);
            }
        }
        for event in parser.finish() {
            live.event(ctx, section, event, timeout);
        }
        // `./check` that ran no test and failed (a broken build, a config
        // fstests refused) is a harness error, with what it printed.
        let refused = match &result {
            Ok(out) if !out.success() && live.started.is_empty() && stopped.is_none() => Some(
                format!("{}: {}", exit_status(out), crate::setup::output_tail(out)),
            ),
            _ => None,
        };
        let lost = result.err();
        // The test that was running when `./check` was stopped (or when the
        // machine was lost) gets the reason; whatever the console printed
        // for it after the stop (`Terminated`) is not its result.
        let running = live
            .stopped
            .clone()
            .or_else(|| parser.running().map(str::to_owned));
        let interrupted = running.as_deref().and_then(|name| {
            let (verdict, message) = match (&lost, stopped) {
                (Some(err), _) => (
                    Verdict::Crashed,
                    format!("the machine was lost while this test ran: {err}"),
                ),
                (None, Some(Verdict::Hung)) => (
                    Verdict::Hung,
                    format!(
                        "still running after {} s: stopped",
                        live.test_timeout.unwrap_or(timeout).as_secs()
                    ),
                ),
                (None, Some(v)) => (v, "the run was stopped while this test ran".to_owned()),
                (None, None) => return None,
            };
            Some(ParsedTest {
                name: name.to_owned(),
                verdict,
                duration_secs: live
                    .started
                    .get(name)
                    .map(|(_, at)| at.elapsed().as_secs_f64()),
                message: Some(message),
            })
        });
        Invocation {
            live,
            stopped,
            lost,
            interrupted,
            idle_stop,
            refused,
            evidence,
        }
    }

    /// Brings the section's results into the store and parses them.
    async fn collect(
        &self,
        section: &ResolvedSection,
        section_rel: &str,
        batch_rel: &str,
        done: &BTreeSet<String>,
        report: &mut SuiteReport,
    ) -> CollectedTests {
        let ctx = self.ctx;
        let remote_dir = format!("{}/{}", self.layout.result_base, section.fstests_name);
        let listing = self.list_files(&remote_dir).await;
        let mut collected = CollectedTests::default();
        for (file, kind) in [
            ("result.xml", ArtifactKind::Other),
            ("check.log", ArtifactKind::Log),
            ("check.time", ArtifactKind::Other),
        ] {
            if !listing.contains_key(file) {
                continue;
            }
            let rel = format!("{batch_rel}/{file}");
            let local = ctx.run_dir.join(&rel);
            if ctx
                .host
                .download(&format!("{remote_dir}/{file}"), &local)
                .await
                .is_err()
            {
                continue;
            }
            if !report.artifacts.iter().any(|a| a.path == rel) {
                report.artifacts.push(Artifact::new(kind, rel));
            }
            let Ok(bytes) = std::fs::read(&local) else {
                continue;
            };
            match file {
                "result.xml" => match parse::parse_xunit(&bytes) {
                    Ok(x) => collected.xunit = Some(x.tests),
                    Err(err) => ctx.emit(Event::Warning {
                        machine: Some(ctx.devices.name.clone()),
                        message: format!(
                            "xfstests section `{}`: result.xml unreadable ({err}); using check.log",
                            section.name
                        ),
                    }),
                },
                "check.log" => {
                    collected.check_log = parse::parse_check_log(&String::from_utf8_lossy(&bytes));
                }
                _ => collected.times = parse::parse_check_time(&String::from_utf8_lossy(&bytes)),
            }
        }
        let mut names: BTreeSet<String> = BTreeSet::new();
        if let Some(tests) = &collected.xunit {
            names.extend(tests.iter().map(|t| t.name.clone()));
        }
        if let Some(log) = &collected.check_log {
            names.extend(log.ran.iter().cloned());
        }
        names.extend(listing.keys().filter_map(|f| {
            TEST_FILES
                .iter()
                .find_map(|(suffix, _)| f.strip_suffix(suffix))
                .map(str::to_owned)
        }));
        for name in names
            .into_iter()
            .filter(|n| parse::is_test_name(n) && !done.contains(n))
        {
            let mut artifacts = Vec::new();
            // A test run again in this run (a rerun of a new failure) keeps
            // its earlier attempts' files.
            let first = format!("{section_rel}/{}", safe_file_name(&name));
            let test_rel = (1..)
                .map(|n| match n {
                    1 => first.clone(),
                    n => format!("{first}/attempt-{n}"),
                })
                .find(|rel| !ctx.run_dir.join(rel).exists())
                .unwrap_or(first);
            for (suffix, kind) in TEST_FILES {
                let file = format!("{name}{suffix}");
                let Some(&size) = listing.get(&file) else {
                    continue;
                };
                let rel = format!(
                    "{test_rel}/{}",
                    safe_file_name(&format!(
                        "{}{suffix}",
                        name.rsplit('/').next().unwrap_or(&name)
                    ))
                );
                match self
                    .fetch(&format!("{remote_dir}/{file}"), &rel, size)
                    .await
                {
                    Ok(artifact) => artifacts.push(artifact.with_kind(*kind)),
                    Err(err) => ctx.emit(Event::Warning {
                        machine: Some(ctx.devices.name.clone()),
                        message: format!("xfstests: cannot collect `{file}`: {err}"),
                    }),
                }
            }
            collected.files.insert(name, artifacts);
        }
        if let Some(log) = collected.check_log.take() {
            collected.check_log_tests = Some(log.tests(&collected.times));
        }
        collected
    }

    /// `relative path -> size` of every file under `dir` on the machine.
    async fn list_files(&self, dir: &str) -> BTreeMap<String, u64> {
        let command = format!(
            "cd {} 2>/dev/null && find . -type f -printf '%s %P\\n'",
            shell_quote(dir)
        );
        let Ok(out) = self
            .ctx
            .host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(120)),
                None,
            )
            .await
        else {
            return BTreeMap::new();
        };
        out.stdout_text()
            .lines()
            .filter_map(|line| {
                let (size, path) = line.split_once(' ')?;
                Some((path.to_owned(), size.parse().ok()?))
            })
            .collect()
    }

    /// Downloads `remote` into the store at `rel`, cut to the size limit.
    async fn fetch(&self, remote: &str, rel: &str, size: u64) -> Result<Artifact, RemoteError> {
        let ctx = self.ctx;
        let local = ctx.run_dir.join(rel);
        let max = self.config.max_artifact_bytes;
        if size <= max {
            ctx.host.download(remote, &local).await?;
            return Ok(Artifact::new(ArtifactKind::Other, rel));
        }
        // Keep the head (setup, mkfs output) and the tail (where it failed).
        let cut = format!("{remote}.btrfsqa-cut");
        let (head, tail) = (max / 2, max - max / 2);
        let command = format!(
            "{{ head -c {head} {r}; printf '\\n[... btrfsqa cut %s bytes ...]\\n' {left}; tail -c {tail} {r}; }} > {c}",
            r = shell_quote(remote),
            c = shell_quote(&cut),
            left = size - max,
        );
        ctx.host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(300)),
                None,
            )
            .await?;
        let result = ctx.host.download(&cut, &local).await;
        let _ = ctx
            .host
            .exec(
                ExecRequest::new(format!("rm -f {}", shell_quote(&cut)))
                    .timeout(Duration::from_secs(60)),
                None,
            )
            .await;
        result?;
        let mut artifact = Artifact::new(ArtifactKind::Other, rel);
        artifact.truncated_bytes = Some(size - max);
        Ok(artifact)
    }
}

trait WithKind {
    fn with_kind(self, kind: ArtifactKind) -> Self;
}

impl WithKind for Artifact {
    fn with_kind(mut self, kind: ArtifactKind) -> Self {
        self.kind = kind;
        self
    }
}

/// What a section's results files said.
#[derive(Debug, Default)]
struct CollectedTests {
    xunit: Option<Vec<ParsedTest>>,
    check_log: Option<parse::CheckLog>,
    check_log_tests: Option<Vec<ParsedTest>>,
    times: BTreeMap<String, f64>,
    files: BTreeMap<String, Vec<Artifact>>,
}

/// What the console said while the section ran.
#[derive(Debug, Default)]
struct LiveState {
    /// Per test: when it started (wall clock, monotonic).
    started: BTreeMap<String, (DateTime<Utc>, Instant)>,
    finished: Vec<ParsedTest>,
    deadline: Option<tokio::time::Instant>,
    /// The test that ran when btrfsqa stopped `./check`.
    stopped: Option<String>,
    /// The configured per-test timeout, if any.
    configured: Option<Duration>,
    /// The running test's timeout.
    test_timeout: Option<Duration>,
}

impl LiveState {
    fn event(
        &mut self,
        ctx: &SuiteContext,
        section: &ResolvedSection,
        event: ConsoleEvent,
        timeout: Duration,
    ) {
        match event {
            ConsoleEvent::Section(_) => {}
            ConsoleEvent::TestStarted(name) => {
                ctx.test_started(ID, &name);
                let timeout = ctx.timeout_for(ID, &name, self.configured, timeout);
                self.test_timeout = Some(timeout);
                self.deadline = Some(tokio::time::Instant::now() + timeout);
                self.started.insert(name, (Utc::now(), Instant::now()));
            }
            ConsoleEvent::TestFinished(test) if self.stopped.as_ref() == Some(&test.name) => {}
            ConsoleEvent::TestFinished(test) => {
                self.deadline = None;
                let mut outcome = TestOutcome::new(ID, test.name.clone(), test.verdict);
                outcome.profile = Some(section.name.clone());
                outcome.duration_secs = test.duration_secs;
                outcome.message = test.message.clone();
                outcome.started_at = self.started.get(&test.name).map(|(at, _)| *at);
                // Live progress; the report's outcome adds what result.xml
                // and the collected files say.
                ctx.test_finished(outcome);
                self.finished.push(test);
            }
        }
    }
}

/// One result per test: result.xml first, then check.log, then the console,
/// then the test that was running when `./check` stopped. Each source only
/// adds tests the earlier ones lack (a truncated result.xml or a crash leaves
/// gaps), and a later source fills in a duration an earlier one lacks. The
/// stopped test is the exception: what btrfsqa saw (hung, lost machine)
/// beats what check.log and the console guessed, as fstests never finished
/// that test.
pub(crate) fn merge_results(
    xunit: Option<Vec<ParsedTest>>,
    check_log: Option<Vec<ParsedTest>>,
    console: Vec<ParsedTest>,
    interrupted: Option<ParsedTest>,
) -> Vec<ParsedTest> {
    let mut merged: Vec<ParsedTest> = xunit.unwrap_or_default();
    let from_xunit = merged.len();
    for test in check_log.unwrap_or_default().into_iter().chain(console) {
        match merged.iter_mut().find(|t| t.name == test.name) {
            Some(existing) => {
                if existing.duration_secs.is_none() {
                    existing.duration_secs = test.duration_secs;
                }
            }
            None => merged.push(test),
        }
    }
    if let Some(stopped) = interrupted {
        match merged.iter().position(|t| t.name == stopped.name) {
            Some(i) if i >= from_xunit => merged[i] = stopped,
            Some(_) => {}
            None => merged.push(stopped),
        }
    }
    merged
}

#[cfg(test)]
mod tests;
