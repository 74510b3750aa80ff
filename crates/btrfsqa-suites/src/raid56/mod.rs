//! The RAID5/6 scrub suite: damage a RAID5/6 filesystem on purpose and check
//! that btrfs repairs it.
//!
//! Each scenario is one test on the machine's scratch pool
//! ([`MachineDevices::scratch_devs`](crate::MachineDevices)): make a fresh
//! filesystem, write files and record their sha256, find where some of their
//! bytes (or some metadata) live on one device with `filefrag`,
//! `btrfs inspect-internal dump-tree` and `btrfs-map-logical`, overwrite them
//! with `dd` while unmounted, mount, scrub, and check:
//!
//! - the scrub of each damaged device reports `uncorrectable 0` and, in
//!   total, `corrected >= 1`;
//! - the damaged bytes on disk are back to what they were;
//! - a second scrub of the whole filesystem finds nothing;
//! - every file's sha256 matches after dropping caches and remounting, and
//!   `btrfs check --readonly` is happy.
//!
//! Why each damaged *device* is scrubbed rather than the filesystem at once:
//! a filesystem scrub runs all devices in parallel, and the parity pass of
//! another device reads the data stripes of its full stripes with reporting
//! turned off; when it gets there first it rewrites the bad data silently
//! and the scrub says "no errors found" (seen on 6.18). A device scrub
//! reports what it repairs. The whole-filesystem scrub comes after, and must
//! be clean.
//!
//! A scenario that fails before the damage is done (mkfs, mount, locating
//! the bytes) is an `error`: the harness could not run it. After the damage,
//! anything that goes wrong is a `fail`, and a scenario that outlives its
//! `timeout-secs` is `hung`. Every scenario unmounts, wipes and
//! forgets its devices afterwards, also when it failed or was cancelled.

pub mod parse;
mod plugin;
mod scenario;
mod session;

use std::time::{Duration, Instant};

use btrfsqa_model::{ArtifactKind, Event, SuiteReport, TestOutcome, Verdict};
use btrfsqa_remote::{ExecRequest, shell_quote};
use serde::Deserialize;

use crate::kernel_log::KernelLogCursor;
use crate::script::tail_lines;
use crate::{SuiteContext, SuiteError, TestList, TestSuite};
use session::{Phase, Session, Stop};

/// The suite's id.
pub const ID: &str = "raid56-scrub";

/// Every scenario, in the order they run.
pub const SCENARIOS: [&str; 5] = [
    "raid5-data-repair",
    "raid6-data-repair",
    "raid5-metadata-repair",
    "raid6-two-devices-damaged",
    "raid5-degraded-replace",
];

/// Tools the machine needs.
pub const REQUIRED_TOOLS: [&str; 9] = [
    "mkfs.btrfs",
    "btrfs",
    "btrfs-map-logical",
    "filefrag",
    "sha256sum",
    "wipefs",
    "dd",
    "od",
    "mountpoint",
];

/// RAID5/6 stripe length (fixed in btrfs).
const STRIPE: u64 = 64 * 1024;
/// Bytes overwritten per damaged place: one 16 KiB tree block, or four 4 KiB data sectors.
const DAMAGE: u64 = 16 * 1024;
/// How many leaves the metadata scenario damages on its device.
const LEAVES: usize = 3;
/// How much of each command's output the scenario log keeps.
const LOG_TAIL: usize = 8 * 1024;

fn default_file_count() -> u32 {
    4
}
fn default_file_size_kib() -> u64 {
    1024
}
fn default_metadata_files() -> u32 {
    400
}
fn default_timeout_secs() -> u64 {
    300
}

/// `[suites.raid56-scrub]`: RAID5/6 scrub and repair scenarios on the scratch pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Raid56ScrubConfig {
    /// Run only these scenarios (see [`SCENARIOS`]); all when absent.
    #[serde(default)]
    pub scenarios: Option<Vec<String>>,
    /// How many data files each scenario writes.
    #[serde(default = "default_file_count")]
    pub file_count: u32,
    /// The size of each data file, in KiB (at least 256, so a file spans
    /// several 64 KiB stripes).
    #[serde(default = "default_file_size_kib")]
    pub file_size_kib: u64,
    /// How many small (inline) files the metadata scenario adds so the fs
    /// tree has leaves below its root (leaves a mount does not read).
    #[serde(default = "default_metadata_files")]
    pub metadata_files: u32,
    /// Seconds each scenario may take before it is recorded as hung (the
    /// command running then is killed and the devices are cleaned up).
    /// Unset: derived from the scenario's history, else 300.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl Default for Raid56ScrubConfig {
    fn default() -> Self {
        Raid56ScrubConfig {
            scenarios: None,
            file_count: default_file_count(),
            file_size_kib: default_file_size_kib(),
            metadata_files: default_metadata_files(),
            timeout_secs: None,
        }
    }
}

impl Raid56ScrubConfig {
    /// Checks the values: one `(key, message)` per problem, the key relative
    /// to `[suites.raid56-scrub]`, empty when all is well.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut issue = |key: String, message: String| issues.push((key, message));
        if let Some(scenarios) = &self.scenarios {
            if scenarios.is_empty() {
                issue(
                    "scenarios".into(),
                    "is empty; leave it out to run every scenario".into(),
                );
            }
            for (i, name) in scenarios.iter().enumerate() {
                if !SCENARIOS.contains(&name.as_str()) {
                    issue(
                        format!("scenarios[{i}]"),
                        format!(
                            "unknown scenario `{name}` (known: {})",
                            SCENARIOS.join(", ")
                        ),
                    );
                }
            }
        }
        if !(1..=1000).contains(&self.file_count) {
            issue(
                "file-count".into(),
                format!("is {}; must be 1 to 1000", self.file_count),
            );
        }
        if !(256..=65536).contains(&self.file_size_kib) {
            issue(
                "file-size-kib".into(),
                format!("is {}; must be 256 to 65536", self.file_size_kib),
            );
        }
        if !(100..=20000).contains(&self.metadata_files) {
            issue(
                "metadata-files".into(),
                format!("is {}; must be 100 to 20000", self.metadata_files),
            );
        }
        if self.timeout_secs == Some(0) {
            issue("timeout-secs".into(), "must be at least 1".into());
        }
        issues
    }

    fn wants(&self, scenario: &str) -> bool {
        self.scenarios
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n == scenario))
    }
}

#[derive(Debug, Clone, Copy)]
enum Profile {
    Raid5,
    Raid6,
}

impl Profile {
    fn as_str(self) -> &'static str {
        match self {
            Profile::Raid5 => "raid5",
            Profile::Raid6 => "raid6",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Overwrite `stripes` data stripes of one full stripe (each on its own device).
    Data { stripes: usize },
    /// Overwrite fs-tree leaves on one device.
    TreeBlocks,
    /// Wipe one device, mount degraded, replace it with the spare.
    MissingDevice,
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    profile: Profile,
    damage: Damage,
    min_devices: usize,
}

const ALL: [Scenario; 5] = [
    Scenario {
        name: SCENARIOS[0],
        profile: Profile::Raid5,
        damage: Damage::Data { stripes: 1 },
        min_devices: 3,
    },
    Scenario {
        name: SCENARIOS[1],
        profile: Profile::Raid6,
        damage: Damage::Data { stripes: 1 },
        min_devices: 4,
    },
    Scenario {
        name: SCENARIOS[2],
        profile: Profile::Raid5,
        damage: Damage::TreeBlocks,
        min_devices: 3,
    },
    Scenario {
        name: SCENARIOS[3],
        profile: Profile::Raid6,
        damage: Damage::Data { stripes: 2 },
        min_devices: 4,
    },
    Scenario {
        name: SCENARIOS[4],
        profile: Profile::Raid5,
        damage: Damage::MissingDevice,
        // Three in the filesystem, one spare.
        min_devices: 4,
    },
];

/// RAID5/6 repair by scrub (and by replace) on the scratch pool.
#[derive(Debug, Clone, Default)]
pub struct Raid56Scrub {
    config: Raid56ScrubConfig,
}

impl Raid56Scrub {
    /// The suite with `config`.
    pub fn new(config: Raid56ScrubConfig) -> Self {
        Raid56Scrub { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &Raid56ScrubConfig {
        &self.config
    }

    fn validate(&self, ctx: &SuiteContext) -> Result<Paths, SuiteError> {
        if let Some((key, message)) = self.config.validate().into_iter().next() {
            return Err(config_error(format!("`{key}`: {message}")));
        }
        let work = ctx.devices.work_dir.trim_end_matches('/');
        if !work.starts_with('/') {
            return Err(config_error(format!(
                "the machine's work directory `{}` is not an absolute path",
                ctx.devices.work_dir
            )));
        }
        Ok(Paths {
            mnt: format!("{work}/mnt/{ID}"),
            pidfile: format!("{work}/{ID}.pid"),
        })
    }
}

fn config_error(message: impl Into<String>) -> SuiteError {
    SuiteError::Config {
        suite: ID.to_owned(),
        message: message.into(),
    }
}

struct Paths {
    mnt: String,
    pidfile: String,
}

#[async_trait::async_trait]
impl TestSuite for Raid56Scrub {
    fn id(&self) -> &str {
        ID
    }

    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        Ok(Some(TestList::of(
            SCENARIOS
                .iter()
                .filter(|s| self.config.wants(s))
                .map(|s| (*s).to_owned()),
        )))
    }

    /// Checks the configuration and that the tools are on the machine.
    async fn prepare(&self, ctx: &SuiteContext) -> Result<(), SuiteError> {
        let paths = self.validate(ctx)?;
        let tools = REQUIRED_TOOLS.join(" ");
        let command = format!(
            "for t in {tools}; do command -v \"$t\" >/dev/null 2>&1 || echo \"$t\"; done; mkdir -p {}",
            shell_quote(&paths.mnt)
        );
        let out = ctx
            .host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(60)),
                None,
            )
            .await
            .map_err(|source| SuiteError::Remote {
                suite: ID.to_owned(),
                source,
            })?;
        let missing: Vec<String> = out
            .stdout_text()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !missing.is_empty() {
            return Err(SuiteError::Setup {
                suite: ID.to_owned(),
                step: "checking tools".into(),
                message: format!(
                    "missing on `{}`: {} (install btrfs-progs, e2fsprogs, util-linux, coreutils)",
                    ctx.host.name(),
                    missing.join(", ")
                ),
            });
        }
        if !out.success() {
            return Err(SuiteError::Setup {
                suite: ID.to_owned(),
                step: format!("creating `{}`", paths.mnt),
                message: tail_lines(&out.stderr_text(), 5),
            });
        }
        Ok(())
    }

    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let started = Instant::now();
        let paths = self.validate(ctx)?;
        let devs = &ctx.devices.scratch_devs;
        let mut report = SuiteReport::new(ID);
        let remote = |source| SuiteError::Remote {
            suite: ID.to_owned(),
            source,
        };
        for scenario in ALL
            .iter()
            .filter(|s| self.config.wants(s.name) && ctx.selected(s.name))
        {
            if ctx.cancel.is_cancelled() {
                report.duration_secs = Some(started.elapsed().as_secs_f64());
                return Err(SuiteError::Cancelled {
                    suite: ID.to_owned(),
                    partial: Box::new(report),
                });
            }
            ctx.test_started(ID, scenario.name);
            let test_started = Instant::now();
            let mut outcome = TestOutcome::new(ID, scenario.name, Verdict::Pass);
            outcome.started_at = Some(chrono::Utc::now());
            if devs.len() < scenario.min_devices {
                outcome.verdict = Verdict::Skip;
                outcome.message = Some(format!(
                    "needs {} scratch devices, the machine has {}",
                    scenario.min_devices,
                    devs.len()
                ));
                report.tests.push(ctx.test_finished(outcome));
                continue;
            }
            let budget = ctx.timeout_for(
                ID,
                scenario.name,
                self.config.timeout_secs.map(Duration::from_secs),
                Duration::from_secs(default_timeout_secs()),
            );
            let mut session = Session {
                ctx,
                mnt: paths.mnt.clone(),
                pidfile: paths.pidfile.clone(),
                budget,
                deadline: Instant::now() + budget,
                phase: Phase::Setup,
                log: String::new(),
            };
            let kernel_cursor = KernelLogCursor::start(ctx.host.as_ref()).await;
            // Start from clean devices whatever ran before.
            let result = match self.cleanup(ctx, &paths.mnt, devs).await {
                Ok(_) => self.scenario(&mut session, scenario, devs).await,
                Err(e) => Err(Stop::Remote(e)),
            };
            let cleanup = self.cleanup(ctx, &paths.mnt, devs).await;
            let mut stop = None;
            match result {
                Ok(message) => outcome.message = Some(message),
                Err(Stop::Verdict(verdict, message)) => {
                    outcome.verdict = verdict;
                    outcome.message = Some(message);
                }
                Err(Stop::Cancelled) => {
                    outcome.verdict = Verdict::Interrupted;
                    outcome.message = Some(
                        "the run was cancelled during the scenario; devices cleaned up".into(),
                    );
                    stop = Some(None);
                }
                Err(Stop::Remote(e)) => {
                    outcome.verdict = Verdict::Error;
                    outcome.message = Some(format!("machine error: {e}"));
                    stop = Some(Some(e));
                }
            }
            match cleanup {
                Ok(None) => {}
                Ok(Some(note)) => {
                    ctx.emit(Event::Warning {
                        machine: Some(ctx.devices.name.clone()),
                        message: format!("suite `{ID}`: cleanup after `{}`: {note}", scenario.name),
                    });
                    session.log.push_str(&format!("[cleanup: {note}]\n"));
                }
                Err(e) => {
                    if stop.is_none() {
                        stop = Some(Some(e));
                    }
                }
            }
            if !session.log.is_empty() {
                let artifact = ctx.write_artifact(
                    ID,
                    scenario.name,
                    "commands.log",
                    ArtifactKind::Log,
                    session.log.as_bytes(),
                )?;
                outcome.artifacts.push(artifact);
            }
            if stop.is_none()
                && let Some(cursor) = kernel_cursor
            {
                cursor.apply_since(ctx, &mut outcome).await;
            }
            outcome.duration_secs = Some(test_started.elapsed().as_secs_f64());
            let hung = outcome.verdict == Verdict::Hung;
            report.tests.push(ctx.test_finished(outcome));
            if hung && stop.is_none() {
                report.duration_secs = Some(started.elapsed().as_secs_f64());
                return Err(SuiteError::Hung {
                    suite: ID.to_owned(),
                    test: scenario.name.to_owned(),
                    partial: Box::new(report),
                });
            }
            match stop {
                None => {}
                Some(None) => {
                    report.duration_secs = Some(started.elapsed().as_secs_f64());
                    return Err(SuiteError::Cancelled {
                        suite: ID.to_owned(),
                        partial: Box::new(report),
                    });
                }
                Some(Some(e)) => return Err(remote(e)),
            }
        }
        report.duration_secs = Some(started.elapsed().as_secs_f64());
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
