//! The tests a section runs, computed on the controller from the pinned
//! fstests tree the way `./check` computes them (pure: no I/O).
//!
//! fstests declares each test's groups on its `_begin_fstest` line, and its
//! build turns those lines into `tests/<dir>/group.list`. `./check` then:
//! takes the tests named on its command line and every member of each `-g`
//! group (`-g btrfs/quick` limits a group to one directory) from the
//! directories in `SRC_GROUPS` plus `$FSTYP`; removes the members of each
//! `-x` group; sorts and de-duplicates by path; and expunges, as it reaches
//! them, the tests whose id starts an `-E` / `-e` exclusion entry followed by
//! a word boundary. [`TestIndex::select`] does the same from the
//! `_begin_fstest` lines read out of the pinned commit, so a run can be split
//! per test before any machine exists.

use std::collections::{BTreeMap, BTreeSet};

use super::config::ResolvedSection;
use super::parse::is_test_name;

/// The directories `./check` takes tests from when `check` itself cannot be
/// read: upstream's `SRC_GROUPS` plus the filesystem's own.
const DEFAULT_SRC_GROUPS: &[&str] = &["generic", "shared"];

/// The filesystem whose test directory is searched besides `SRC_GROUPS`.
const FSTYP: &str = "btrfs";

/// Every test of a tree with its groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestIndex {
    /// `dir/name` → its groups, for the directories `./check` searches.
    tests: BTreeMap<String, BTreeSet<String>>,
}

impl TestIndex {
    /// Reads the output of `git grep -I -e '^_begin_fstest' <commit> --
    /// tests/` (`<commit>:tests/<dir>/<name>:_begin_fstest <groups>`, or the
    /// same without the commit prefix) keeping only tests of `dirs`.
    /// Lines that are not such lines are ignored.
    pub fn from_begin_lines(output: &str, dirs: &[String]) -> TestIndex {
        let mut tests: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in output.lines() {
            let Some(at) = line.find("tests/") else {
                continue;
            };
            let rest = &line[at + "tests/".len()..];
            let Some((path, declaration)) = rest.split_once(':') else {
                continue;
            };
            let Some(groups) = declaration.strip_prefix("_begin_fstest") else {
                continue;
            };
            let Some((dir, name)) = path.split_once('/') else {
                continue;
            };
            if !dirs.iter().any(|d| d == dir) || !is_valid_test_id(name) {
                continue;
            }
            // Text after a `#` is a comment in the generated group.list.
            let groups = groups.split('#').next().unwrap_or_default();
            tests
                .entry(format!("{dir}/{name}"))
                .or_default()
                .extend(groups.split_whitespace().map(str::to_owned));
        }
        TestIndex { tests }
    }

    /// How many tests the index holds.
    pub fn len(&self) -> usize {
        self.tests.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    /// Every member of `group` (`name` in every directory, or `dir/name`).
    fn members(&self, group: &str) -> Vec<&String> {
        let (dir, group) = match group.split_once('/') {
            Some((dir, group)) => (Some(dir), group),
            None => (None, group),
        };
        self.tests
            .iter()
            .filter(|(test, groups)| {
                dir.is_none_or(|d| test.split('/').next() == Some(d))
                    && (group == "all" || groups.contains(group))
            })
            .map(|(test, _)| test)
            .collect()
    }

    /// The tests `./check -s <section>` would run for `section`, in its
    /// order, less those `expunged` entries exclude (besides the section's
    /// own `exclude_tests`). Named tests the tree lacks are left out and
    /// returned second (`./check` ignores them too). A group with no member
    /// is an error, as `./check` stops on it.
    pub fn select(
        &self,
        section: &ResolvedSection,
        expunged: &[String],
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let mut chosen: BTreeSet<&String> = BTreeSet::new();
        let mut unknown = Vec::new();
        for test in &section.tests {
            match self.tests.get_key_value(test) {
                Some((name, _)) => {
                    chosen.insert(name);
                }
                None => unknown.push(test.clone()),
            }
        }
        for group in &section.groups {
            let members = self.members(group);
            if members.is_empty() {
                return Err(format!(
                    "group `{group}` of section `{}` has no test in this fstests tree",
                    section.name
                ));
            }
            chosen.extend(members);
        }
        for group in &section.exclude_groups {
            for member in self.members(group) {
                chosen.remove(member);
            }
        }
        let exclusions: Vec<&str> = section
            .exclude_tests
            .iter()
            .chain(expunged)
            .map(String::as_str)
            .collect();
        // A BTreeSet of `dir/name` is already `sort | uniq` of the paths.
        let selected = chosen
            .into_iter()
            .filter(|test| !exclusions.iter().any(|e| expunges(e, test)))
            .cloned()
            .collect();
        Ok((selected, unknown))
    }
}

/// Whether the exclusion entry `entry` expunges `test`: `./check` matches
/// `^<test>\b` against each entry.
pub fn expunges(entry: &str, test: &str) -> bool {
    let entry = entry.trim_start();
    match entry.strip_prefix(test) {
        Some(rest) => rest
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_')),
        None => false,
    }
}

/// fstests' `VALID_TEST_NAME`: three digits, then letters, digits and `-`.
fn is_valid_test_id(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= 3
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && bytes[3..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// The directories `./check` searches for btrfs: its `SRC_GROUPS` (read
/// from the `check` script of the pinned tree, when given) and `btrfs`.
pub fn search_dirs(check_script: Option<&str>) -> Vec<String> {
    let from_script = check_script.and_then(|text| {
        text.lines().find_map(|line| {
            let value = line.trim().strip_prefix("SRC_GROUPS=")?;
            Some(
                value
                    .trim_matches('"')
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            )
        })
    });
    let mut dirs = from_script
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT_SRC_GROUPS.iter().map(|d| (*d).to_owned()).collect());
    dirs.push(FSTYP.to_owned());
    dirs
}

/// The entries of an exclusion file as `./check -E` reads it: `#` starts a
/// comment, each remaining line is one entry.
pub fn exclusion_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` is an fstests test id the index could hold.
pub fn is_listed_name(name: &str) -> bool {
    is_test_name(name)
        && name
            .split_once('/')
            .is_some_and(|(_, id)| is_valid_test_id(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xfstests::XfstestsConfig;

    const GREP: &str = "\
63a29724:tests/btrfs/001:_begin_fstest auto quick subvol snapshot
63a29724:tests/btrfs/002:_begin_fstest auto snapshot
63a29724:tests/btrfs/011:_begin_fstest auto replace volume
63a29724:tests/btrfs/012:_begin_fstest auto convert
63a29724:tests/generic/001:_begin_fstest rw dir udf auto quick
63a29724:tests/generic/013:_begin_fstest other ioctl udf auto quick
63a29724:tests/xfs/001:_begin_fstest auto quick
63a29724:tests/btrfs/group.list:_begin_fstest nonsense
63a29724:tests/btrfs/003.out:_begin_fstest nonsense
";

    fn dirs() -> Vec<String> {
        search_dirs(Some("x=1\nSRC_GROUPS=\"generic\"\n"))
    }

    fn section(toml: serde_json::Value) -> ResolvedSection {
        let config: XfstestsConfig = serde_json::from_value(toml).unwrap();
        config.resolve().unwrap().remove(0)
    }

    #[test]
    fn groups_are_read_from_begin_lines_of_the_searched_directories() {
        let index = TestIndex::from_begin_lines(GREP, &dirs());
        assert_eq!(index.len(), 6, "{index:?}");
        assert_eq!(dirs(), ["generic", "btrfs"]);
        assert_eq!(search_dirs(None), ["generic", "shared", "btrfs"]);
    }

    #[test]
    fn a_section_selects_like_check() {
        let index = TestIndex::from_begin_lines(GREP, &dirs());
        // auto less convert, plus a named test; btrfs sorts before generic.
        let s = section(serde_json::json!({
            "exclude-groups": ["convert"],
            "groups": ["auto"],
            "exclude-tests": ["generic/013"],
        }));
        let (tests, unknown) = index.select(&s, &[]).unwrap();
        assert_eq!(
            tests,
            ["btrfs/001", "btrfs/002", "btrfs/011", "generic/001"]
        );
        assert!(unknown.is_empty());
        // A group limited to one directory; an expunge entry with a comment.
        let s = section(
            serde_json::json!({ "groups": ["btrfs/quick"], "tests": ["generic/013", "btrfs/999"] }),
        );
        let (tests, unknown) = index
            .select(&s, &exclusion_entries("btrfs/001 # flaky\n"))
            .unwrap();
        assert_eq!(tests, ["generic/013"]);
        assert_eq!(unknown, ["btrfs/999"]);
        // An empty group stops `./check`: an error here.
        let s = section(serde_json::json!({ "groups": ["nosuch"] }));
        assert!(
            index
                .select(&s, &[])
                .unwrap_err()
                .contains("group `nosuch`")
        );
    }

    #[test]
    fn an_exclusion_matches_the_test_id_then_a_word_boundary() {
        assert!(expunges("btrfs/012", "btrfs/012"));
        assert!(expunges("btrfs/012 # why", "btrfs/012"));
        assert!(expunges("btrfs/012-x", "btrfs/012"));
        assert!(!expunges("btrfs/01", "btrfs/012"));
        assert!(!expunges("btrfs/0123", "btrfs/012"));
        assert!(!expunges("xbtrfs/012", "btrfs/012"));
    }

    #[test]
    fn any_input_is_read_without_panicking() {
        // A deterministic sweep of hostile lines (the property test of the
        // parser: every prefix of each, plus random bytes).
        let lines = [
            "tests/",
            "tests/:",
            "tests/btrfs/:_begin_fstest",
            "tests/btrfs/00ä:_begin_fstest auto",
            "c:tests/generic/001:_begin_fstest # only a comment",
            "\u{0}tests/btrfs/001:_begin_fstest\u{7f}auto",
        ];
        for line in lines {
            for end in (0..=line.len()).filter(|i| line.is_char_boundary(*i)) {
                let _ = TestIndex::from_begin_lines(&line[..end], &dirs());
            }
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let text: String = (0..64)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    b"tests/btrfs0123:_begin_fstest auto#\n "[(seed % 37) as usize] as char
                })
                .collect();
            let index = TestIndex::from_begin_lines(&text, &dirs());
            let s = section(serde_json::json!({ "groups": ["auto"] }));
            let _ = index.select(&s, &exclusion_entries(&text));
        }
    }
}
