//! One scenario on the machine: make the filesystem, find where its data and
//! leaves live, damage them, then scrub or replace and check what came back.

use std::collections::BTreeMap;
use std::time::Duration;

use btrfsqa_remote::{ExecRequest, RemoteError, shell_quote};

use crate::SuiteContext;
use crate::script::tail_lines;

use super::parse::ScrubCounters;
use super::session::{Phase, Session, Stop, sha_of};
use super::{DAMAGE, Damage, LEAVES, Raid56Scrub, STRIPE, Scenario, parse};

impl Raid56Scrub {
    /// Runs one scenario (cleanup excluded) and returns its pass message.
    pub(super) async fn scenario(
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
    pub(super) async fn locate_data(
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
    pub(super) async fn degraded_replace(
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
    pub(super) async fn cleanup(
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

pub(super) fn quote_all(items: &[String]) -> String {
    items
        .iter()
        .map(|d| shell_quote(d))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn describe(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| format!("{} on `{}`", t.what, t.device))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Chooses fs-tree leaves below the root that live on one device; the
/// filesystem is unmounted. A mount reads the root but not these, so the
/// damage stays for scrub to find (a read at mount would repair it first).
pub(super) async fn locate_leaves(s: &mut Session<'_>, dev0: &str) -> Result<Vec<Target>, Stop> {
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

/// A place that gets damaged.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) what: String,
    pub(super) device: String,
    pub(super) physical: u64,
    pub(super) logical: u64,
    pub(super) original_sha: String,
}
