//! Pure parsers for what btrfs-progs prints during the RAID5/6 scenarios.
//!
//! No I/O here: each function turns captured text into values, and each is
//! tested on real output captured with btrfs-progs 6.2 (kept in the crate's
//! `fixtures/`), plus truncated and garbage input. Anything the scenario
//! asserts on (error counters, device and physical offsets) must come out of
//! these functions or be an error: a parser never guesses a zero.

use std::collections::BTreeMap;

/// Text that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {what}: {message}")]
pub struct ParseError {
    /// Which output (`btrfs scrub`, `btrfs-map-logical`, ...).
    pub what: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn error(what: &'static str, message: impl Into<String>) -> ParseError {
    ParseError {
        what,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// btrfs scrub start -B / btrfs scrub status (with -d and -R)

const SCRUB: &str = "`btrfs scrub` output";

/// The error counters of one scrub (of a device, or summed over a filesystem).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubCounters {
    /// Read errors (I/O errors from the device).
    pub read_errors: u64,
    /// Checksum mismatches in data or metadata.
    pub csum_errors: u64,
    /// Metadata that failed verification (bad bytenr, generation, fsid...).
    pub verify_errors: u64,
    /// Bad superblock copies.
    pub super_errors: u64,
    /// Errors that were repaired.
    pub corrected_errors: u64,
    /// Errors that could not be repaired.
    pub uncorrectable_errors: u64,
    /// Errors that went away on re-read (not verified as repaired).
    pub unverified_errors: u64,
    /// Bytes of data checked (raw output only).
    pub data_bytes_scrubbed: Option<u64>,
    /// Bytes of metadata checked (raw output only).
    pub tree_bytes_scrubbed: Option<u64>,
}

impl ScrubCounters {
    /// Whether every error counter is zero.
    pub fn is_clean(&self) -> bool {
        self.read_errors == 0
            && self.csum_errors == 0
            && self.verify_errors == 0
            && self.super_errors == 0
            && self.corrected_errors == 0
            && self.uncorrectable_errors == 0
            && self.unverified_errors == 0
    }

    /// Adds `other`'s counters to these.
    pub fn add(&mut self, other: &ScrubCounters) {
        self.read_errors += other.read_errors;
        self.csum_errors += other.csum_errors;
        self.verify_errors += other.verify_errors;
        self.super_errors += other.super_errors;
        self.corrected_errors += other.corrected_errors;
        self.uncorrectable_errors += other.uncorrectable_errors;
        self.unverified_errors += other.unverified_errors;
        self.data_bytes_scrubbed = sum_opt(self.data_bytes_scrubbed, other.data_bytes_scrubbed);
        self.tree_bytes_scrubbed = sum_opt(self.tree_bytes_scrubbed, other.tree_bytes_scrubbed);
    }

    /// A one-line summary for messages
    /// (`corrected 16, uncorrectable 0, csum 16, verify 0, read 0, super 0, unverified 0`).
    pub fn summary(&self) -> String {
        format!(
            "corrected {}, uncorrectable {}, csum {}, verify {}, read {}, super {}, unverified {}",
            self.corrected_errors,
            self.uncorrectable_errors,
            self.csum_errors,
            self.verify_errors,
            self.read_errors,
            self.super_errors,
            self.unverified_errors
        )
    }
}

fn sum_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// The `Status:` of a scrub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScrubState {
    /// It ran to its end.
    Finished,
    /// It stopped early (cancelled, or a device failed).
    Aborted,
    /// It is still running.
    Running,
    /// It was interrupted (unmount, crash) and can be resumed.
    Interrupted,
    /// Something this parser does not know.
    Other(String),
}

impl ScrubState {
    fn parse(text: &str) -> Self {
        match text {
            "finished" => ScrubState::Finished,
            "aborted" => ScrubState::Aborted,
            "running" => ScrubState::Running,
            "interrupted" => ScrubState::Interrupted,
            other => ScrubState::Other(other.to_owned()),
        }
    }
}

/// One device's part of `btrfs scrub status -d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubDevice {
    /// The device path as printed.
    pub path: String,
    /// Its devid.
    pub devid: u64,
    /// Its state, when it has stats.
    pub state: Option<ScrubState>,
    /// Its counters; `None` for "no stats available".
    pub counters: Option<ScrubCounters>,
}

/// A parsed `btrfs scrub start -B` or `btrfs scrub status` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubReport {
    /// The filesystem UUID.
    pub uuid: Option<String>,
    /// The state of the scrub (of the filesystem or, without `-d`, the device
    /// scrubbed); `None` with `-d`, where each device has its own.
    pub state: Option<ScrubState>,
    /// The counters for the whole output: the summary when printed without
    /// `-d`, else the sum over the devices that have stats.
    pub counters: ScrubCounters,
    /// Per-device sections (`-d` only).
    pub devices: Vec<ScrubDevice>,
}

/// Fills counters from one section's lines, in either the summary format
/// (`Error summary:    csum=16` + `Corrected:` ...) or the raw `-R` format
/// (`\tcorrected_errors: 16`).
#[derive(Default)]
struct SectionParser {
    state: Option<ScrubState>,
    counters: ScrubCounters,
    no_stats: bool,
    summary_errors: bool,
    seen: BTreeMap<&'static str, bool>,
}

impl SectionParser {
    fn line(&mut self, line: &str) -> Result<(), ParseError> {
        let trimmed = line.trim();
        if trimmed == "no stats available" {
            self.no_stats = true;
            return Ok(());
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            return Ok(());
        };
        let value = value.trim();
        match key {
            "Status" => self.state = Some(ScrubState::parse(value)),
            "Error summary" => {
                self.seen.insert("summary", true);
                if value != "no errors found" {
                    self.summary_errors = true;
                    for part in value.split_whitespace() {
                        let (name, count) = part.split_once('=').ok_or_else(|| {
                            error(SCRUB, format!("unexpected error summary `{value}`"))
                        })?;
                        let count = number(count, "error summary")?;
                        match name {
                            "read" => self.counters.read_errors = count,
                            "super" => self.counters.super_errors = count,
                            "verify" => self.counters.verify_errors = count,
                            "csum" => self.counters.csum_errors = count,
                            // Newer progs may add kinds; they do not change
                            // the corrected/uncorrectable verdict.
                            _ => {}
                        }
                    }
                }
            }
            "Corrected" => self.summary_count("corrected", value)?,
            "Uncorrectable" => self.summary_count("uncorrectable", value)?,
            "Unverified" => self.summary_count("unverified", value)?,
            raw => self.raw(raw, value)?,
        }
        Ok(())
    }

    fn summary_count(&mut self, name: &'static str, value: &str) -> Result<(), ParseError> {
        let count = number(value, name)?;
        match name {
            "corrected" => self.counters.corrected_errors = count,
            "uncorrectable" => self.counters.uncorrectable_errors = count,
            _ => self.counters.unverified_errors = count,
        }
        self.seen.insert(name, true);
        Ok(())
    }

    fn raw(&mut self, key: &str, value: &str) -> Result<(), ParseError> {
        let field: &mut u64 = match key {
            "read_errors" => &mut self.counters.read_errors,
            "csum_errors" => &mut self.counters.csum_errors,
            "verify_errors" => &mut self.counters.verify_errors,
            "super_errors" => &mut self.counters.super_errors,
            "corrected_errors" => &mut self.counters.corrected_errors,
            "uncorrectable_errors" => &mut self.counters.uncorrectable_errors,
            "unverified_errors" => &mut self.counters.unverified_errors,
            "data_bytes_scrubbed" => {
                self.counters.data_bytes_scrubbed = Some(number(value, key)?);
                return Ok(());
            }
            "tree_bytes_scrubbed" => {
                self.counters.tree_bytes_scrubbed = Some(number(value, key)?);
                return Ok(());
            }
            _ => return Ok(()),
        };
        *field = number(value, key)?;
        self.seen.insert("raw", true);
        if key == "corrected_errors" {
            self.seen.insert("raw-corrected", true);
        }
        if key == "uncorrectable_errors" {
            self.seen.insert("raw-uncorrectable", true);
        }
        Ok(())
    }

    /// The counters, or why the section is incomplete.
    fn finish(
        self,
        section: &str,
    ) -> Result<(Option<ScrubState>, Option<ScrubCounters>), ParseError> {
        let seen = |k| self.seen.get(k).copied().unwrap_or(false);
        if seen("raw") {
            if !(seen("raw-corrected") && seen("raw-uncorrectable")) {
                return Err(error(
                    SCRUB,
                    format!(
                        "{section}: raw counters end before `corrected_errors` and `uncorrectable_errors` (truncated?)"
                    ),
                ));
            }
            return Ok((self.state, Some(self.counters)));
        }
        if seen("summary") {
            if self.summary_errors && !(seen("corrected") && seen("uncorrectable")) {
                return Err(error(
                    SCRUB,
                    format!(
                        "{section}: error summary without `Corrected:` and `Uncorrectable:` lines (truncated?)"
                    ),
                ));
            }
            return Ok((self.state, Some(self.counters)));
        }
        if self.no_stats {
            return Ok((self.state, None));
        }
        Err(error(
            SCRUB,
            format!("{section}: no `Error summary:` line and no raw counters"),
        ))
    }
}

fn number(text: &str, what: &str) -> Result<u64, ParseError> {
    text.trim().parse().map_err(|_| {
        error(
            SCRUB,
            format!("`{}` is not a count (in `{what}`)", text.trim()),
        )
    })
}

/// Parses `Scrub device /dev/loop1 (id 1) history` (or `status`, or nothing).
fn device_header(line: &str) -> Option<(String, u64)> {
    let rest = line.strip_prefix("Scrub device ")?;
    let open = rest.rfind(" (id ")?;
    let path = rest[..open].to_owned();
    let after = &rest[open + 5..];
    let close = after.find(')')?;
    let devid = after[..close].trim().parse().ok()?;
    Some((path, devid))
}

/// Parses the output of `btrfs scrub start -B [-R] [-d]` or
/// `btrfs scrub status [-R] [-d]` (standard output; warnings printed on
/// standard error may be appended, they are ignored).
///
/// Errors when the output holds no counters at all (a failed command, a
/// truncated output) rather than reporting zero errors it never saw.
pub fn parse_scrub(text: &str) -> Result<ScrubReport, ParseError> {
    let mut uuid = None;
    let mut top = SectionParser::default();
    let mut devices: Vec<(String, u64, SectionParser)> = Vec::new();
    for line in text.lines() {
        if let Some((path, devid)) = device_header(line) {
            devices.push((path, devid, SectionParser::default()));
            continue;
        }
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("UUID:") {
            uuid = Some(rest.trim().to_owned());
            continue;
        }
        // `scrub done for UUID`, `scrub canceled for UUID`, `scrub started on ...`
        if let Some(rest) = trimmed
            .strip_prefix("scrub done for ")
            .or_else(|| trimmed.strip_prefix("scrub canceled for "))
        {
            uuid = Some(rest.trim().to_owned());
            continue;
        }
        match devices.last_mut() {
            Some((_, _, section)) => section.line(line)?,
            None => top.line(line)?,
        }
    }
    if devices.is_empty() {
        let (state, counters) = top.finish("filesystem")?;
        return Ok(ScrubReport {
            uuid,
            state,
            // "no stats available" without -d: nothing scrubbed yet.
            counters: counters.unwrap_or_default(),
            devices: Vec::new(),
        });
    }
    let mut total = ScrubCounters::default();
    let mut parsed = Vec::new();
    for (path, devid, section) in devices {
        let (state, counters) = section.finish(&format!("device `{path}` (id {devid})"))?;
        if let Some(counters) = &counters {
            total.add(counters);
        }
        parsed.push(ScrubDevice {
            path,
            devid,
            state,
            counters,
        });
    }
    Ok(ScrubReport {
        uuid,
        state: None,
        counters: total,
        devices: parsed,
    })
}

// ---------------------------------------------------------------------------
// btrfs-map-logical

const MAP: &str = "`btrfs-map-logical` output";

/// One line of `btrfs-map-logical`: where a piece of a logical range lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The copy: 1 is the data itself; for RAID5/6, 2 is the P stripe and 3
    /// the Q stripe of the same full stripe; for mirrored profiles, the mirror.
    pub mirror: u32,
    /// The logical address of this piece.
    pub logical: u64,
    /// Its byte offset on the device.
    pub physical: u64,
    /// The device path as printed.
    pub device: String,
}

/// Parses `btrfs-map-logical -l LOGICAL [-b BYTES] DEV` output (standard
/// output and error together).
///
/// Errors when no mapping line is present, quoting its `ERROR:` lines (it
/// prints them with exit status 0 for a range with no extent). `ERROR:` lines
/// beside mappings are ignored: btrfs-map-logical scans every block device
/// of the machine and reports the ones it cannot read (another user's loop
/// device going away, say), then maps anyway.
pub fn parse_map_logical(text: &str) -> Result<Vec<Mapping>, ParseError> {
    let mut mappings = Vec::new();
    let mut errors = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(message) = trimmed.strip_prefix("ERROR:") {
            errors.push(format!("`{}`", message.trim()));
            continue;
        }
        if !trimmed.starts_with("mirror ") {
            continue;
        }
        let words: Vec<&str> = trimmed.splitn(8, ' ').collect();
        let parsed = match words.as_slice() {
            [
                "mirror",
                mirror,
                "logical",
                logical,
                "physical",
                physical,
                "device",
                device,
            ] => mirror
                .parse()
                .ok()
                .zip(logical.parse().ok())
                .zip(physical.parse().ok())
                .map(|((mirror, logical), physical)| Mapping {
                    mirror,
                    logical,
                    physical,
                    device: device.trim().to_owned(),
                }),
            _ => None,
        };
        let mapping = parsed.ok_or_else(|| error(MAP, format!("unexpected line `{trimmed}`")))?;
        if mapping.device.is_empty() {
            return Err(error(MAP, format!("no device in `{trimmed}`")));
        }
        mappings.push(mapping);
    }
    if mappings.is_empty() {
        if !errors.is_empty() {
            return Err(error(
                MAP,
                format!("btrfs-map-logical said {}", errors.join(", ")),
            ));
        }
        return Err(error(
            MAP,
            "no `mirror N logical L physical P device D` line",
        ));
    }
    Ok(mappings)
}

// ---------------------------------------------------------------------------
// filefrag -v

const FILEFRAG: &str = "`filefrag -v` output";

/// One extent of `filefrag -v`, in filesystem blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileExtent {
    /// First block of the file it covers.
    pub file_block: u64,
    /// First block on the filesystem; on btrfs, the logical address divided
    /// by the block size.
    pub physical_block: u64,
    /// Its length in blocks.
    pub blocks: u64,
    /// Its flags (`last`, `eof`, `inline`, `delalloc`, `unknown_loc`, ...).
    pub flags: Vec<String>,
}

impl FileExtent {
    /// Whether the extent has a real, final location on disk (not inline,
    /// not delayed allocation, not encoded).
    pub fn is_located(&self) -> bool {
        !self.flags.iter().any(|f| {
            matches!(
                f.as_str(),
                "inline" | "delalloc" | "unknown_loc" | "encoded" | "not_aligned" | "data_inline"
            )
        })
    }
}

/// A parsed `filefrag -v FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFrag {
    /// The block size the numbers are in.
    pub block_size: u64,
    /// The extents in file order.
    pub extents: Vec<FileExtent>,
}

/// Parses `filefrag -v FILE` for one file.
pub fn parse_filefrag(text: &str) -> Result<FileFrag, ParseError> {
    let mut block_size = None;
    let mut extents = Vec::new();
    let mut in_table = false;
    let mut found_line = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("File size of ") {
            // `File size of f is 1048576 (256 blocks of 4096 bytes)`
            block_size = trimmed
                .rsplit_once(" blocks of ")
                .or_else(|| trimmed.rsplit_once(" block of "))
                .and_then(|(_, rest)| rest.strip_suffix(" bytes)"))
                .and_then(|n| n.trim().parse().ok());
            if block_size.is_none() {
                return Err(error(FILEFRAG, format!("no block size in `{trimmed}`")));
            }
            continue;
        }
        if trimmed.starts_with("ext:") {
            in_table = true;
            continue;
        }
        if trimmed.contains(" extent found") || trimmed.contains(" extents found") {
            found_line = true;
            in_table = false;
            continue;
        }
        if !in_table || trimmed.is_empty() {
            continue;
        }
        extents.push(extent_line(line)?);
    }
    let block_size = block_size.ok_or_else(|| error(FILEFRAG, "no `File size of` line"))?;
    if !found_line {
        return Err(error(FILEFRAG, "no `N extents found` line (truncated?)"));
    }
    Ok(FileFrag {
        block_size,
        extents,
    })
}

/// `   1:       75..     149:      27232..     27306:     75:      27147: last,eof`
fn extent_line(line: &str) -> Result<FileExtent, ParseError> {
    let bad = || {
        error(
            FILEFRAG,
            format!("unexpected extent line `{}`", line.trim()),
        )
    };
    let fields: Vec<&str> = line.split(':').map(str::trim).collect();
    if fields.len() < 5 {
        return Err(bad());
    }
    let range = |text: &str| -> Option<(u64, u64)> {
        let (a, b) = text.split_once("..")?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    };
    let (file_block, _) = range(fields[1]).ok_or_else(bad)?;
    let (physical_block, _) = range(fields[2]).ok_or_else(bad)?;
    let blocks = fields[3].parse().map_err(|_| bad())?;
    // With an `expected:` value the flags are the sixth field, else the fifth.
    let flags_field = if fields.len() >= 6 {
        fields[5]
    } else {
        fields[4]
    };
    let flags = flags_field
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(FileExtent {
        file_block,
        physical_block,
        blocks,
        flags,
    })
}

// ---------------------------------------------------------------------------
// sha256sum

const SHA: &str = "`sha256sum` output";

/// Parses `sha256sum FILE...` output into file name -> hex digest.
pub fn parse_sha256sum(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let (hash, name) = line
            .split_once(' ')
            .ok_or_else(|| error(SHA, format!("unexpected line `{line}`")))?;
        // Text mode separates with two spaces, binary mode with ` *`.
        let name = name
            .strip_prefix(' ')
            .or_else(|| name.strip_prefix('*'))
            .ok_or_else(|| error(SHA, format!("unexpected line `{line}`")))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || name.is_empty() {
            return Err(error(SHA, format!("unexpected line `{line}`")));
        }
        sums.insert(name.to_owned(), hash.to_ascii_lowercase());
    }
    if sums.is_empty() {
        return Err(error(SHA, "no checksums"));
    }
    Ok(sums)
}

/// How two checksum lists differ, one line per file, empty when they agree.
pub fn diff_sums(
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (name, want) in expected {
        match actual.get(name) {
            None => diffs.push(format!("`{name}`: missing (expected sha256 {want})")),
            Some(got) if got != want => {
                diffs.push(format!("`{name}`: sha256 {got}, expected {want}"));
            }
            Some(_) => {}
        }
    }
    for name in actual.keys().filter(|n| !expected.contains_key(*n)) {
        diffs.push(format!("`{name}`: unexpected file"));
    }
    diffs
}

// ---------------------------------------------------------------------------
// btrfs inspect-internal dump-tree

const DUMP: &str = "`btrfs inspect-internal dump-tree` output";

/// A tree block named by `dump-tree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeBlock {
    /// Its logical address.
    pub bytenr: u64,
    /// Its level (0 for a leaf).
    pub level: u8,
    /// Its owner tree as printed (`FS_TREE`, `CSUM_TREE`, `256`...).
    pub owner: String,
}

/// Parses the block headers of `dump-tree` output (`leaf N items ... owner X`
/// and `node N level L items ... owner X`), in the order printed, each once.
pub fn parse_tree_blocks(text: &str) -> Result<Vec<TreeBlock>, ParseError> {
    let mut blocks: Vec<TreeBlock> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (kind, rest) = match words.split_first() {
            Some((kind @ (&"leaf" | &"node"), rest)) => (*kind, rest),
            _ => continue,
        };
        // The second header line (`leaf N flags 0x1(WRITTEN) ...`) repeats the address.
        if rest.get(1) == Some(&"flags") {
            continue;
        }
        let bad = || error(DUMP, format!("unexpected block header `{}`", line.trim()));
        let bytenr: u64 = rest.first().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let level = if kind == "node" {
            match rest.get(1..3) {
                Some(["level", level]) => level.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        } else {
            0
        };
        let owner = rest
            .iter()
            .position(|w| *w == "owner")
            .and_then(|i| rest.get(i + 1))
            .ok_or_else(bad)?;
        if !blocks.iter().any(|b| b.bytenr == bytenr) {
            blocks.push(TreeBlock {
                bytenr,
                level,
                owner: (*owner).to_owned(),
            });
        }
    }
    if blocks.is_empty() {
        return Err(error(DUMP, "no `leaf` or `node` header"));
    }
    Ok(blocks)
}

// ---------------------------------------------------------------------------
// btrfs replace status -1

const REPLACE: &str = "`btrfs replace status` output";

/// A parsed one-line `btrfs replace status -1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceStatus {
    /// `finished`, `canceled`, `suspended`, `running` or `never started`.
    pub state: String,
    /// Write errors on the target.
    pub write_errors: u64,
    /// Read errors that could not be corrected from other copies.
    pub uncorrectable_read_errors: u64,
}

/// Parses `btrfs replace status -1 MNT`
/// (`Started on 24.Nov 15:46:18, finished on 24.Nov 15:46:18, 0 write errs, 0 uncorr. read errs`).
pub fn parse_replace_status(text: &str) -> Result<ReplaceStatus, ParseError> {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or_else(|| error(REPLACE, "empty output"))?;
    if line == "Never started" {
        return Ok(ReplaceStatus {
            state: "never started".into(),
            write_errors: 0,
            uncorrectable_read_errors: 0,
        });
    }
    let bad = || error(REPLACE, format!("unexpected line `{line}`"));
    let parts: Vec<&str> = line.split(", ").collect();
    let count = |suffix: &str| -> Result<u64, ParseError> {
        parts
            .iter()
            .find_map(|p| p.strip_suffix(suffix))
            .ok_or_else(bad)?
            .trim()
            .parse()
            .map_err(|_| bad())
    };
    let write_errors = count(" write errs")?;
    let uncorrectable_read_errors = count(" uncorr. read errs")?;
    let state = ["finished", "canceled", "suspended"]
        .into_iter()
        .find(|s| parts.iter().any(|p| p.starts_with(&format!("{s} on "))))
        .map(str::to_owned)
        .or_else(|| {
            parts
                .iter()
                .any(|p| p.ends_with("% done"))
                .then(|| "running".to_owned())
        })
        .ok_or_else(bad)?;
    Ok(ReplaceStatus {
        state,
        write_errors,
        uncorrectable_read_errors,
    })
}

#[cfg(test)]
mod tests;
