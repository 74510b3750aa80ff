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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use btrfsqa_model::{ArtifactKind, Event, SuiteReport, TestOutcome, Verdict};
use btrfsqa_remote::{ExecOutput, ExecRequest, RemoteError, shell_quote};
use serde::Deserialize;

use crate::kernel_log::KernelLogCursor;
use crate::script::{Finished, exec_or_cancel, tail_lines};
use crate::{SuiteContext, SuiteError, TestList, TestSuite};
use parse::{ScrubCounters, ScrubState};

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

    /// Runs one scenario (cleanup excluded) and returns its pass message.
    async fn scenario(
        &self,
        s: &mut Session<'_>,
        scenario: &Scenario,
        devs: &[String],
    ) -> Result<String, Stop> {
        let (fs_devs, spare) = match scenario.damage {
            Damage::MissingDevice => (&devs[..devs.len() - 1], devs.last()),
            _ => (devs, None),
        };
        let mnt = s.mnt.clone();
        let m = shell_quote(&mnt);
        let dev0 = fs_devs[0].clone();
        let d0 = shell_quote(&dev0);
        let profile = scenario.profile.as_str();
        s.ok(format!(
            "mkfs.btrfs -f --nodesize 16384 -d {profile} -m {profile} {}",
            quote_all(fs_devs)
        ))
        .await?;
        s.ok(format!("mkdir -p {m} && mount {d0} {m}")).await?;
        s.ok(format!(
            "mkdir -p {m}/data && i=1 && while [ $i -le {n} ]; do \
             head -c {bytes} /dev/urandom > {m}/data/f$i || exit 1; i=$((i+1)); done",
            n = self.config.file_count,
            bytes = self.config.file_size_kib * 1024
        ))
        .await?;
        if let Damage::TreeBlocks = scenario.damage {
            // Inline files fill fs-tree leaves quickly, so the tree gets a
            // level above its leaves.
            s.ok(format!(
                "mkdir -p {m}/meta && i=1 && while [ $i -le {n} ]; do \
                 head -c 2000 /dev/urandom > {m}/meta/s$i || exit 1; i=$((i+1)); done",
                n = self.config.metadata_files
            ))
            .await?;
        }
        s.ok("sync".into()).await?;
        let sums = s.checksums().await?;
        if sums.is_empty() {
            return Err(s.fail("no files to check after writing them".into()));
        }

        if let Damage::MissingDevice = scenario.damage {
            let spare = spare.expect("the replace scenario keeps a spare");
            return self.degraded_replace(s, fs_devs, spare, &sums).await;
        }

        let targets = match scenario.damage {
            Damage::Data { stripes } => {
                let targets = self.locate_data(s, &dev0, stripes).await?;
                s.ok(format!("umount {m}")).await?;
                targets
            }
            _ => {
                s.ok(format!("umount {m}")).await?;
                locate_leaves(s, &dev0).await?
            }
        };

        // The bytes must be what the mapping says before they are damaged,
        // or a mapping mistake would be blamed on btrfs.
        for t in &targets {
            let on_disk = s.device_sha(&t.device, t.physical).await?;
            if on_disk != t.original_sha {
                return Err(s.fail(format!(
                    "btrfs-map-logical placed {} (logical {}) at `{}` physical {}, but the bytes there \
                     differ (sha256 {on_disk}, expected {})",
                    t.what, t.logical, t.device, t.physical, t.original_sha
                )));
            }
        }
        for t in &targets {
            s.ok(format!(
                "dd if=/dev/urandom of={} bs=4096 seek={} count={} conv=notrunc,fsync status=none",
                shell_quote(&t.device),
                t.physical / 4096,
                DAMAGE / 4096
            ))
            .await?;
            if s.device_sha(&t.device, t.physical).await? == t.original_sha {
                return Err(s.fail(format!(
                    "overwriting {} on `{}` changed nothing",
                    t.what, t.device
                )));
            }
        }

        s.phase = Phase::Check;
        s.ok(format!("mount {d0} {m}")).await?;
        let mut devices: Vec<&str> = Vec::new();
        for t in &targets {
            if !devices.contains(&t.device.as_str()) {
                devices.push(&t.device);
            }
        }
        let mut total = ScrubCounters::default();
        let mut per_device = Vec::new();
        for device in &devices {
            let counters = s.scrub(device).await?;
            if counters.uncorrectable_errors > 0 {
                return Err(s.fail(format!(
                    "scrub of damaged device `{device}` reported {}; expected uncorrectable 0",
                    counters.summary()
                )));
            }
            total.add(&counters);
            per_device.push(format!("`{device}`: {}", counters.summary()));
        }
        if total.corrected_errors == 0 {
            return Err(s.fail(format!(
                "scrub of the damaged device(s) reported corrected 0 after {} were overwritten; \
                 expected corrected >= 1 ({})",
                describe(&targets),
                per_device.join("; ")
            )));
        }
        for t in &targets {
            let now = s.device_sha(&t.device, t.physical).await?;
            if now != t.original_sha {
                return Err(s.fail(format!(
                    "{} on `{}` at physical {} was not rewritten by scrub: sha256 {now}, expected {} \
                     (scrub reported {})",
                    t.what,
                    t.device,
                    t.physical,
                    t.original_sha,
                    per_device.join("; ")
                )));
            }
        }
        s.clean_scrub(&mnt).await?;
        s.ok(format!("umount {m}")).await?;
        s.remount_and_verify(&dev0, &sums, "after scrub").await?;
        s.ok(format!("umount {m}")).await?;
        s.ok(format!("btrfs check --readonly {d0}")).await?;
        Ok(format!(
            "scrub repaired {}: {}; {} files intact",
            describe(&targets),
            per_device.join("; "),
            sums.len()
        ))
    }

    /// Finds `stripes` data stripes of one full stripe, each on its own device,
    /// inside the data files; the filesystem is mounted and synced.
    async fn locate_data(
        &self,
        s: &mut Session<'_>,
        dev0: &str,
        stripes: usize,
    ) -> Result<Vec<Target>, Stop> {
        let mnt = s.mnt.clone();
        let span = (stripes as u64 - 1) * STRIPE + DAMAGE;
        for i in 1..=self.config.file_count {
            let name = format!("data/f{i}");
            let file = format!("{mnt}/{name}");
            let out = s.ok(format!("filefrag -v {}", shell_quote(&file))).await?;
            let frag =
                parse::parse_filefrag(&out.stdout_text()).map_err(|e| s.fail(e.to_string()))?;
            for extent in frag.extents.iter().filter(|e| e.is_located()) {
                let start = extent.physical_block * frag.block_size;
                let end = start + extent.blocks * frag.block_size;
                let file_start = extent.file_block * frag.block_size;
                let mut logical = start.next_multiple_of(STRIPE);
                while logical + span <= end {
                    let mut found: Vec<(String, u64, u64)> = Vec::new();
                    let mut parity: Option<(String, u64)> = None;
                    for k in 0..stripes as u64 {
                        let piece = logical + k * STRIPE;
                        let maps = s.map(dev0, piece, DAMAGE).await?;
                        let data = maps.iter().find(|m| m.mirror == 1 && m.logical == piece);
                        let p = maps.iter().find(|m| m.mirror == 2 && m.logical == piece);
                        let (Some(data), Some(p)) = (data, p) else {
                            return Err(s.fail(format!(
                                "btrfs-map-logical gave no data and parity location for logical {piece}"
                            )));
                        };
                        // The same parity location means the same full stripe.
                        let p = (p.device.clone(), p.physical);
                        if parity.as_ref().is_some_and(|first| *first != p)
                            || found.iter().any(|(d, _, _)| *d == data.device)
                        {
                            break;
                        }
                        parity = Some(p);
                        found.push((data.device.clone(), data.physical, piece));
                    }
                    if found.len() == stripes {
                        let mut targets = Vec::new();
                        for (device, physical, piece) in found {
                            let offset = file_start + (piece - start);
                            let out = s
                                .ok(format!(
                                    "dd if={} bs=4096 skip={} count={} status=none | sha256sum",
                                    shell_quote(&file),
                                    offset / 4096,
                                    DAMAGE / 4096
                                ))
                                .await?;
                            let original_sha = sha_of(&out).map_err(|m| s.fail(m))?;
                            targets.push(Target {
                                what: format!(
                                    "{} KiB of `{name}` at offset {offset}",
                                    DAMAGE / 1024
                                ),
                                device,
                                physical,
                                logical: piece,
                                original_sha,
                            });
                        }
                        return Ok(targets);
                    }
                    logical += STRIPE;
                }
            }
        }
        Err(s.fail(format!(
            "found no {stripes} data stripe(s) of one full stripe on distinct devices in the files' extents \
             (file-size-kib {})",
            self.config.file_size_kib
        )))
    }

    /// Wipes one device, mounts degraded, replaces it with the spare.
    async fn degraded_replace(
        &self,
        s: &mut Session<'_>,
        fs_devs: &[String],
        spare: &str,
        sums: &BTreeMap<String, String>,
    ) -> Result<String, Stop> {
        let mnt = s.mnt.clone();
        let m = shell_quote(&mnt);
        let dev0 = &fs_devs[0];
        let d0 = shell_quote(dev0);
        // mkfs numbers devices in the order given: the second one is devid 2.
        let victim = &fs_devs[1];
        let victim_devid = 2;
        let remaining: Vec<String> = fs_devs.iter().filter(|d| *d != victim).cloned().collect();
        s.ok(format!("umount {m}")).await?;
        s.ok(format!("wipefs -a {}", shell_quote(victim))).await?;
        // Stale registrations would let the kernel find the wiped device.
        s.ok(format!("btrfs device scan --forget {}", quote_all(fs_devs)))
            .await?;
        s.ok(format!("btrfs device scan {}", quote_all(&remaining)))
            .await?;

        s.phase = Phase::Check;
        s.ok(format!("mount -o degraded {d0} {m}")).await?;
        s.ok(format!(
            "btrfs replace start -B -f {victim_devid} {} {m}",
            shell_quote(spare)
        ))
        .await?;
        let out = s.ok(format!("btrfs replace status -1 {m}")).await?;
        let status =
            parse::parse_replace_status(&out.stdout_text()).map_err(|e| s.fail(e.to_string()))?;
        if status.state != "finished"
            || status.write_errors != 0
            || status.uncorrectable_read_errors != 0
        {
            return Err(s.fail(format!(
                "replace of devid {victim_devid} (`{victim}`) by `{spare}` ended {}, {} write errors, \
                 {} uncorrectable read errors; expected finished with none",
                status.state, status.write_errors, status.uncorrectable_read_errors
            )));
        }
        let out = s.ok(format!("btrfs filesystem show {m}")).await?;
        let show = out.stdout_text();
        if show.to_ascii_lowercase().contains("missing") || !show.contains(spare) {
            return Err(s.fail(format!(
                "after replace, `btrfs filesystem show` should list `{spare}` and nothing missing:\n{}",
                tail_lines(&show, 8)
            )));
        }
        s.clean_scrub(&mnt).await?;
        s.ok(format!("umount {m}")).await?;
        s.remount_and_verify(dev0, sums, "after replace (degraded mount)")
            .await?;
        s.ok(format!("umount {m}")).await?;
        // Now the filesystem must stand on its own again: no degraded option.
        let mut members = remaining.clone();
        members.push(spare.to_owned());
        let mut all = fs_devs.to_vec();
        all.push(spare.to_owned());
        s.ok(format!("btrfs device scan --forget {}", quote_all(&all)))
            .await?;
        s.ok(format!("btrfs device scan {}", quote_all(&members)))
            .await?;
        s.remount_and_verify(dev0, sums, "mounted without -o degraded after replace")
            .await?;
        s.ok(format!("umount {m}")).await?;
        s.ok(format!("btrfs check --readonly {d0}")).await?;
        Ok(format!(
            "replaced wiped devid {victim_devid} (`{victim}`) with `{spare}` on a degraded mount; \
             scrub clean; {} files intact",
            sums.len()
        ))
    }

    /// Unmounts, wipes and forgets every pool device. Not cancellable: it is
    /// what makes a cancelled run leave nothing behind. Returns notes for
    /// anything unusual.
    async fn cleanup(
        &self,
        ctx: &SuiteContext,
        mnt: &str,
        devs: &[String],
    ) -> Result<Option<String>, RemoteError> {
        let m = shell_quote(mnt);
        let d = quote_all(devs);
        let command = format!(
            "if mountpoint -q {m}; then btrfs scrub cancel {m} >/dev/null 2>&1; btrfs replace cancel {m} >/dev/null 2>&1; fi; \
             n=0; while mountpoint -q {m} && [ $n -lt 5 ]; do umount {m} 2>/dev/null || sleep 1; n=$((n+1)); done; \
             if mountpoint -q {m}; then umount -l {m} && echo \"{mnt} was busy; detached it lazily\"; fi; \
             wipefs -a -q {d} >/dev/null 2>&1 || echo \"wipefs -a failed on one of {devs_text}\"; \
             btrfs device scan --forget {d} >/dev/null 2>&1; exit 0",
            devs_text = devs.join(" ")
        );
        let timeout = Duration::from_secs(120);
        let out = ctx
            .host
            .exec(ExecRequest::new(command).timeout(timeout), None)
            .await?;
        let notes = out.stdout_text().trim().to_owned();
        if out.timed_out {
            return Ok(Some(format!(
                "cleanup did not finish within {} s",
                timeout.as_secs()
            )));
        }
        Ok((!notes.is_empty()).then_some(notes))
    }
}

fn config_error(message: impl Into<String>) -> SuiteError {
    SuiteError::Config {
        suite: ID.to_owned(),
        message: message.into(),
    }
}

fn quote_all(items: &[String]) -> String {
    items
        .iter()
        .map(|d| shell_quote(d))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| format!("{} on `{}`", t.what, t.device))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The digest from `... | sha256sum`.
fn sha_of(out: &ExecOutput) -> Result<String, String> {
    parse::parse_sha256sum(&out.stdout_text())
        .map_err(|e| e.to_string())?
        .into_values()
        .next()
        .ok_or_else(|| "no checksum".to_owned())
}

/// Chooses fs-tree leaves below the root that live on one device; the
/// filesystem is unmounted. A mount reads the root but not these, so the
/// damage stays for scrub to find (a read at mount would repair it first).
async fn locate_leaves(s: &mut Session<'_>, dev0: &str) -> Result<Vec<Target>, Stop> {
    let out = s
        .ok(format!(
            "btrfs inspect-internal dump-tree -t 5 {}",
            shell_quote(dev0)
        ))
        .await?;
    let blocks = parse::parse_tree_blocks(&out.stdout_text()).map_err(|e| s.fail(e.to_string()))?;
    let root = &blocks[0];
    if root.level == 0 {
        return Err(s.fail(
            "the fs tree is a single leaf; raise `metadata-files` so it has leaves below a node"
                .into(),
        ));
    }
    let mut by_device: Vec<(String, Vec<(u64, u64)>)> = Vec::new();
    for leaf in blocks
        .iter()
        .filter(|b| b.level == 0 && b.bytenr != root.bytenr)
    {
        let maps = s.map(dev0, leaf.bytenr, DAMAGE).await?;
        let Some(data) = maps
            .iter()
            .find(|m| m.mirror == 1 && m.logical == leaf.bytenr)
        else {
            return Err(s.fail(format!(
                "btrfs-map-logical gave no location for tree block {}",
                leaf.bytenr
            )));
        };
        if data.physical % 4096 != 0 {
            return Err(s.fail(format!(
                "tree block {} maps to unaligned physical {} on `{}`",
                leaf.bytenr, data.physical, data.device
            )));
        }
        let slot = match by_device.iter().position(|(d, _)| d == &data.device) {
            Some(i) => i,
            None => {
                by_device.push((data.device.clone(), Vec::new()));
                by_device.len() - 1
            }
        };
        by_device[slot].1.push((leaf.bytenr, data.physical));
        if by_device[slot].1.len() == LEAVES {
            break;
        }
    }
    let Some((device, leaves)) = by_device.into_iter().max_by_key(|(_, l)| l.len()) else {
        return Err(s.fail("the fs tree has no leaf below its root".into()));
    };
    let mut targets = Vec::new();
    for (bytenr, physical) in leaves {
        // A tree block's header holds its own logical address at byte 48.
        let out = s
            .ok(format!(
                "dd if={} bs=4096 skip={} count={} iflag=direct status=none | od -An -tu8 -j48 -N8",
                shell_quote(&device),
                physical / 4096,
                DAMAGE / 4096
            ))
            .await?;
        let header: Option<u64> = out.stdout_text().trim().parse().ok();
        if header != Some(bytenr) {
            return Err(s.fail(format!(
                "btrfs-map-logical placed tree block {bytenr} at `{device}` physical {physical}, \
                 but the header there says {}",
                header.map_or_else(
                    || format!("`{}`", out.stdout_text().trim()),
                    |h| h.to_string()
                )
            )));
        }
        let original_sha = s.device_sha(&device, physical).await?;
        targets.push(Target {
            what: format!("fs-tree leaf {bytenr}"),
            device: device.clone(),
            physical,
            logical: bytenr,
            original_sha,
        });
    }
    Ok(targets)
}

struct Paths {
    mnt: String,
    pidfile: String,
}

/// A place that gets damaged.
#[derive(Debug, Clone)]
struct Target {
    what: String,
    device: String,
    physical: u64,
    logical: u64,
    original_sha: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the damage: failures are the harness's (`error`).
    Setup,
    /// After the damage: failures are btrfs's (`fail`).
    Check,
}

/// Why a scenario stopped early.
#[derive(Debug)]
enum Stop {
    Verdict(Verdict, String),
    Remote(RemoteError),
    Cancelled,
}

/// Runs a scenario's commands, keeps a log of them, and turns failures into
/// the verdict of the current phase.
struct Session<'a> {
    ctx: &'a SuiteContext,
    mnt: String,
    pidfile: String,
    /// The scenario's `timeout-secs`.
    budget: Duration,
    /// When that budget runs out.
    deadline: Instant,
    phase: Phase,
    log: String,
}

impl Session<'_> {
    fn fail(&self, message: String) -> Stop {
        let verdict = match self.phase {
            Phase::Setup => Verdict::Error,
            Phase::Check => Verdict::Fail,
        };
        Stop::Verdict(verdict, message)
    }

    /// Runs `command`; a non-zero exit is returned, not an error.
    async fn sh(&mut self, command: String) -> Result<ExecOutput, Stop> {
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

    fn hung(&self, command: &str) -> Stop {
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
    async fn ok(&mut self, command: String) -> Result<ExecOutput, Stop> {
        let out = self.sh(command.clone()).await?;
        if out.success() {
            return Ok(out);
        }
        Err(self.fail(command_failed(&command, &out)))
    }

    async fn map(
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
    async fn device_sha(&mut self, device: &str, physical: u64) -> Result<String, Stop> {
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
    async fn checksums(&mut self) -> Result<BTreeMap<String, String>, Stop> {
        let out = self
            .ok(format!(
                "cd {} && find . -type f | LC_ALL=C sort | xargs sha256sum",
                shell_quote(&self.mnt)
            ))
            .await?;
        parse::parse_sha256sum(&out.stdout_text()).map_err(|e| self.fail(e.to_string()))
    }

    /// Scrubs one device and returns its counters.
    async fn scrub(&mut self, target: &str) -> Result<ScrubCounters, Stop> {
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
    async fn clean_scrub(&mut self, mnt: &str) -> Result<(), Stop> {
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
    async fn remount_and_verify(
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
fn short(command: &str) -> String {
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

fn command_failed(command: &str, out: &ExecOutput) -> String {
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
