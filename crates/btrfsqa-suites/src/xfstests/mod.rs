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

mod check;
mod common;
pub mod config;
pub mod list;
pub mod parse;
mod plugin;
mod results;
mod section;
mod setup;

use std::time::Instant;

use btrfsqa_model::{ArtifactKind, SuiteReport};

pub use common::ID;

/// What one `./check` costs besides its tests, milliseconds: a fresh
/// filesystem on the test device, `./check` starting and the results
/// collected; about a second on loop devices (`bench/shard-live.sh`), with
/// room for a machine reached over SSH.
pub const BATCH_SETUP_MS: u64 = 1500;
use common::remote_error;
pub use config::{
    MachineLayout, PROFILES, Profile, ResolvedSection, SectionConfig, XfstestsConfig,
};
pub(crate) use results::merge_results;
use section::{SectionEnd, SectionRunner};

use crate::source::{self, PinnedSource};
use crate::{ListedTest, SuiteContext, SuiteError, TestList, TestSuite};

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
        let mut list = TestList {
            batch_setup_ms: BATCH_SETUP_MS,
            ..TestList::default()
        };
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
        setup::prepare_machine(ctx, pinned, self.config.install_packages, &self.cache_dir()).await
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

#[cfg(test)]
mod tests;
