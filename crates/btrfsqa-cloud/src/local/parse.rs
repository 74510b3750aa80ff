//! Pure parsers for what the local provider reads from the system:
//! `losetup -l -J`, `losetup -j FILE`, `/proc/self/mountinfo` and
//! `/proc/PID/stat`. No I/O here; tested on captured output in `fixtures/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The suffix the kernel appends to a loop device's backing file once the
/// file has been unlinked.
const DELETED_SUFFIX: &str = " (deleted)";

/// One attached loop device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoopDevice {
    /// `/dev/loopN`.
    pub name: String,
    /// The backing file, without the ` (deleted)` suffix.
    pub back_file: PathBuf,
    /// Whether the kernel reports the backing file as unlinked.
    pub deleted: bool,
    /// Whether the device goes away by itself when its last user closes it
    /// (what `losetup -d` on a device someone holds open does).
    pub autoclear: bool,
}

#[derive(Deserialize)]
struct LosetupList {
    #[serde(default)]
    loopdevices: Vec<LosetupEntry>,
}

#[derive(Deserialize)]
struct LosetupEntry {
    name: String,
    #[serde(rename = "back-file")]
    back_file: Option<String>,
    #[serde(default)]
    autoclear: bool,
}

/// Parses `losetup -l -J`. Devices without a backing file (possible for a
/// device set up from a file descriptor of another namespace) are skipped:
/// they can never be ours.
pub(crate) fn losetup_list(json: &str) -> Result<Vec<LoopDevice>, serde_json::Error> {
    // losetup prints nothing at all when no device is attached.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let list: LosetupList = serde_json::from_str(json)?;
    Ok(list
        .loopdevices
        .into_iter()
        .filter_map(|entry| {
            let back = entry.back_file?;
            let (path, deleted) = match back.strip_suffix(DELETED_SUFFIX) {
                Some(path) => (path.to_owned(), true),
                None => (back, false),
            };
            Some(LoopDevice {
                name: entry.name,
                back_file: PathBuf::from(path),
                deleted,
                autoclear: entry.autoclear,
            })
        })
        .collect())
}

/// Parses `losetup -j FILE` (`/dev/loop0: [65024]:10010883 (/path)` per
/// line) into the device names.
pub(crate) fn losetup_associated(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_once(": ").map(|(dev, _)| dev.trim().to_owned()))
        .filter(|dev| dev.starts_with("/dev/"))
        .collect()
}

/// One line of `/proc/self/mountinfo`, the fields the provider needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Where it is mounted (escapes decoded).
    pub mount_point: PathBuf,
    /// The filesystem type (`btrfs`).
    pub fs_type: String,
    /// The mount source (`/dev/loop6`). For a multi-device btrfs this is only
    /// ONE of its devices.
    pub source: String,
}

/// Parses `/proc/self/mountinfo`, in file order (a later line is a later
/// mount, so unmounting goes in reverse). Malformed lines are skipped.
pub(crate) fn mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(mountinfo_line).collect()
}

fn mountinfo_line(line: &str) -> Option<Mount> {
    // id parent major:minor root mount-point options [optional...] - type source super-options
    let (left, right) = line.split_once(" - ")?;
    let mount_point = left.split(' ').nth(4)?;
    let mut right = right.split(' ');
    let fs_type = right.next()?;
    let source = right.next()?;
    Some(Mount {
        mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
        fs_type: unescape_mountinfo(fs_type),
        source: unescape_mountinfo(source),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// Start time in clock ticks since boot: with the pid, it tells a
    /// process from a later one that reused its pid.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may
/// itself hold spaces and `)`, so the fields are counted from the LAST `)`.
pub(crate) fn proc_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields after the name start at field 3 (state); starttime is field 22.
    let start_time = text
        .get(close + 1..)?
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()?;
    Some(ProcStat { comm, start_time })
}

/// Whether `path` lies inside `dir` (or is `dir`), comparing whole components.
pub(crate) fn is_under(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    const RUN: &str = "/tmp/lt/work dir/20261124-100000-ab12";

    #[test]
    fn losetup_list_reads_real_output_with_deleted_files() {
        let devices = losetup_list(&fixture("losetup-list.json")).unwrap();
        assert_eq!(devices.len(), 10);
        let ours: Vec<_> = devices
            .iter()
            .filter(|d| is_under(&d.back_file, Path::new(RUN)))
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(ours, ["/dev/loop8", "/dev/loop6", "/dev/loop7"]);
        let gone = devices.iter().find(|d| d.name == "/dev/loop9").unwrap();
        assert!(gone.deleted);
        assert_eq!(gone.back_file, Path::new("/tmp/lt/gone.img"));
        assert!(!devices[0].deleted);
        assert!(!devices[0].autoclear);
    }

    #[test]
    fn losetup_list_accepts_empty_output() {
        assert!(losetup_list("").unwrap().is_empty());
        assert!(
            losetup_list("{\n   \"loopdevices\": [\n\n   ]\n}\n")
                .unwrap()
                .is_empty()
        );
        assert!(losetup_list("not json").is_err());
    }

    #[test]
    fn losetup_associated_reads_real_output() {
        assert_eq!(
            losetup_associated(&fixture("losetup-j.txt")),
            ["/dev/loop7", "/dev/loop6"]
        );
        assert!(losetup_associated("").is_empty());
    }

    #[test]
    fn mountinfo_reads_real_output_and_decodes_spaces() {
        let mounts = mountinfo(&fixture("mountinfo.txt"));
        assert_eq!(mounts.len(), 9);
        let scratch = &mounts[7];
        assert_eq!(
            scratch.mount_point,
            Path::new("/tmp/lt/work dir/20261124-100000-ab12/local-0/mnt/scratch")
        );
        assert_eq!(scratch.fs_type, "btrfs");
        // Mounted through /dev/loop8, shown as the lowest devid: /dev/loop7.
        assert_eq!(scratch.source, "/dev/loop7");
        assert_eq!(mounts[5].mount_point, Path::new("/"));
        assert_eq!(mounts[5].source, "/dev/vda");
    }

    #[test]
    fn mountinfo_handles_optional_fields_and_odd_escapes() {
        let line =
            "36 35 98:0 /mnt1 /mnt/a\\134b\\011c rw,noatime master:1 shared:2 - ext3 /dev/root rw";
        let mounts = mountinfo(line);
        assert_eq!(mounts[0].mount_point, Path::new("/mnt/a\\b\tc"));
        assert_eq!(mounts[0].fs_type, "ext3");
        assert_eq!(mounts[0].source, "/dev/root");
        assert_eq!(unescape_mountinfo("a\\"), "a\\");
        assert_eq!(unescape_mountinfo("a\\04"), "a\\04");
        assert_eq!(unescape_mountinfo("a\\999"), "a\\999");
        assert!(mountinfo("garbage\n").is_empty());
    }

    #[test]
    fn proc_stat_reads_names_with_parentheses() {
        let stat = proc_stat(&fixture("proc-stat.txt")).unwrap();
        assert_eq!(stat.comm, "btrfsqa x) y");
        assert_eq!(stat.start_time, 60593);
        assert_eq!(proc_stat("12 (short"), None);
    }

    #[test]
    fn is_under_compares_components() {
        assert!(is_under(Path::new("/w/run/a.img"), Path::new("/w/run")));
        assert!(is_under(Path::new("/w/run"), Path::new("/w/run")));
        assert!(!is_under(Path::new("/w/run2/a.img"), Path::new("/w/run")));
    }
}
