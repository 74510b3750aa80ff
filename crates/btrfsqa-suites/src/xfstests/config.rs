//! The configuration of the fstests suite, its built-in btrfs profiles, and
//! the `local.config` made from them (pure: no I/O).

use std::path::PathBuf;

use serde::Deserialize;

use crate::MachineDevices;

/// A test's timeout when none is configured and it has no history.
pub const DEFAULT_TEST_TIMEOUT_SECS: u64 = 3600;

/// Upstream fstests.
pub const DEFAULT_GIT_URL: &str = "git://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git";

/// The name of the section of `local.config` that only carries the settings
/// every section shares; it is never run.
const COMMON_SECTION: &str = "btrfsqa_common";

/// `[suites.xfstests]`: fstests (xfstests) on btrfs.
///
/// ```toml
/// [suites.xfstests]
/// git-url = "/srv/mirrors/xfstests-dev.git"
/// git-ref = "for-next"
/// profiles = ["default", "compress"]
/// groups = ["quick"]
/// exclude-tests = ["btrfs/012"]
///
/// [[suites.xfstests.sections]]
/// profile = "raid56-scrub"
/// exclude-tests = ["btrfs/297"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct XfstestsConfig {
    /// The fstests git repository (URL or local path).
    pub git_url: String,
    /// The branch, tag or commit to test with.
    pub git_ref: String,
    /// Where the controller keeps its git mirror and builds (default:
    /// `RESULTS-DIR/.cache`).
    pub cache_dir: Option<PathBuf>,
    /// Built-in profiles to run, one fstests section each, in this order
    /// (`--profile`): `default`, `compress`, `holes`, `no-free-space-tree`,
    /// `block-group-tree`, `nodatacow`, `discard`, `raid`, `raid56-scrub`
    /// (`btrfsqa config default` says what each tests).
    pub profiles: Vec<String>,
    /// Further sections, after the profiles.
    pub sections: Vec<SectionConfig>,
    /// Groups to run (`-g`). Unset: `auto`, or none when `tests` is set.
    pub groups: Option<Vec<String>>,
    /// Groups to leave out (`-x`).
    pub exclude_groups: Vec<String>,
    /// Tests to run by name (`btrfs/001`), besides the groups.
    pub tests: Vec<String>,
    /// Tests to leave out in every section.
    pub exclude_tests: Vec<String>,
    /// Exclusion files for every section, as `./check -E` reads them: one
    /// test per line (`btrfs/012`), `#` starts a comment (xfstests-bld's
    /// and fstests' own expunge lists work as they are). Paths on the
    /// controller, relative to the configuration file.
    pub exclude_files: Vec<PathBuf>,
    /// A test that runs longer than this is stopped and reported as hung.
    /// Unset: ten times the test's last duration in the results store (at
    /// least five minutes), else 3600 s.
    pub test_timeout_secs: Option<u64>,
    /// Per-test files larger than this are cut (their head and tail kept).
    pub max_artifact_bytes: u64,
    /// Install missing build and run-time packages and create fstests' users.
    pub install_packages: bool,
}

impl Default for XfstestsConfig {
    fn default() -> Self {
        XfstestsConfig {
            git_url: DEFAULT_GIT_URL.to_owned(),
            git_ref: "master".to_owned(),
            cache_dir: None,
            profiles: vec!["default".to_owned()],
            sections: Vec::new(),
            groups: None,
            exclude_groups: Vec::new(),
            tests: Vec::new(),
            exclude_tests: Vec::new(),
            exclude_files: Vec::new(),
            test_timeout_secs: None,
            max_artifact_bytes: 8 << 20,
            install_packages: true,
        }
    }
}

/// `[[suites.xfstests.sections]]`: one fstests section, from scratch or
/// based on a built-in profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SectionConfig {
    /// Its name (kebab-case; default: the profile's).
    pub name: Option<String>,
    /// A built-in profile to start from.
    pub profile: Option<String>,
    /// fstests' `MKFS_OPTIONS` (`-O ^no-holes`); replaces the profile's.
    pub mkfs_options: Option<String>,
    /// fstests' `MOUNT_OPTIONS` (`-o compress=zstd`); replaces the profile's.
    pub mount_options: Option<String>,
    /// Groups for this section; replaces the suite's and the profile's.
    pub groups: Option<Vec<String>>,
    /// Groups to leave out, besides the suite's.
    pub exclude_groups: Vec<String>,
    /// Tests to leave out in this section, besides the suite's.
    pub exclude_tests: Vec<String>,
    /// Exclusion files for this section, besides the suite's.
    pub exclude_files: Vec<PathBuf>,
    /// Use only the first N scratch devices as the pool (at least N needed).
    pub scratch_devs: Option<usize>,
}

/// A built-in btrfs profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Its name.
    pub name: &'static str,
    /// What it tests.
    pub description: &'static str,
    /// `MKFS_OPTIONS`.
    pub mkfs_options: &'static str,
    /// `MOUNT_OPTIONS` (also used for the test device).
    pub mount_options: &'static str,
    /// Groups it runs instead of the suite's, if any.
    pub groups: Option<&'static [&'static str]>,
    /// The scratch pool size it needs, if it uses a fixed one.
    pub scratch_devs: Option<usize>,
}

/// The built-in profiles.
///
/// fstests' `_scratch_mkfs` formats only `SCRATCH_DEV`, so a multi-device
/// RAID layout cannot be a `MKFS_OPTIONS`: the RAID profiles instead run the
/// groups whose tests build their own RAID layouts over `SCRATCH_DEV_POOL`.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "default",
        description: "mkfs.btrfs and mount defaults",
        mkfs_options: "",
        mount_options: "",
        groups: None,
        scratch_devs: None,
    },
    Profile {
        name: "compress",
        description: "zstd compression (mount -o compress=zstd)",
        mkfs_options: "",
        mount_options: "-o compress=zstd",
        groups: None,
        scratch_devs: None,
    },
    Profile {
        name: "holes",
        description: "without the no-holes feature (mkfs -O ^no-holes)",
        mkfs_options: "-O ^no-holes",
        mount_options: "",
        groups: None,
        scratch_devs: None,
    },
    Profile {
        name: "no-free-space-tree",
        description: "without the free space tree (mkfs -R ^free-space-tree)",
        mkfs_options: "-R ^free-space-tree",
        mount_options: "",
        groups: None,
        scratch_devs: None,
    },
    Profile {
        name: "block-group-tree",
        description: "with the block group tree (mkfs -O block-group-tree)",
        mkfs_options: "-O block-group-tree",
        mount_options: "",
        groups: None,
        scratch_devs: None,
    },
    Profile {
        name: "nodatacow",
        description: "no data copy-on-write (mount -o nodatacow)",
        mkfs_options: "",
        mount_options: "-o nodatacow",
        groups: None,
        scratch_devs: None,
    },
    Profile {
        name: "discard",
        description: "asynchronous discard (mount -o discard=async)",
        mkfs_options: "",
        mount_options: "-o discard=async",
        groups: None,
        scratch_devs: None,
    },
    Profile {
        name: "raid",
        description: "multi-device tests (groups volume, raid, replace) over the whole scratch pool",
        mkfs_options: "",
        mount_options: "",
        groups: Some(&["volume", "raid", "replace"]),
        scratch_devs: None,
    },
    Profile {
        name: "raid56-scrub",
        description: "RAID5/6 repair focus: groups raid and scrub on a five-device pool",
        mkfs_options: "",
        mount_options: "",
        groups: Some(&["raid", "scrub"]),
        scratch_devs: Some(5),
    },
];

/// The profile called `name`.
pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// A section with everything resolved: what one `./check -s` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSection {
    /// The name used in outcomes (`profile`) and the results store.
    pub name: String,
    /// The fstests section name (`[A-Za-z0-9_]`: `-` becomes `_`).
    pub fstests_name: String,
    /// `MKFS_OPTIONS`.
    pub mkfs_options: String,
    /// `MOUNT_OPTIONS`.
    pub mount_options: String,
    /// `-g` groups.
    pub groups: Vec<String>,
    /// `-x` groups.
    pub exclude_groups: Vec<String>,
    /// Tests named on the command line.
    pub tests: Vec<String>,
    /// Tests left out (`-E` file).
    pub exclude_tests: Vec<String>,
    /// Exclusion files whose entries are left out too.
    pub exclude_files: Vec<PathBuf>,
    /// Scratch pool size, when limited.
    pub scratch_devs: Option<usize>,
}

/// Whether `value` can go into `local.config` as it is: fstests `eval`s each
/// line inside double quotes and cuts at `#`, so quotes, `$`, backquotes,
/// backslashes, `#` and line breaks are out.
fn config_safe(value: &str) -> bool {
    !value.chars().any(|c| {
        matches!(
            c,
            '"' | '\'' | '$' | '`' | '\\' | '#' | ';' | '&' | '|' | '<' | '>'
        ) || c.is_control()
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A group name, or `dir/group` (a group of one test directory, as
/// `./check -g btrfs/quick` takes it).
fn valid_group(group: &str) -> bool {
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    match group.split_once('/') {
        Some((dir, group)) => word(dir) && word(group),
        None => word(group),
    }
}

impl XfstestsConfig {
    /// Checks what serde cannot; returns `(dotted key below the suite, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self.resolve() {
            Ok(_) => Vec::new(),
            Err(issues) => issues,
        }
    }

    /// The sections to run, or every problem found.
    pub fn resolve(&self) -> Result<Vec<ResolvedSection>, Vec<(String, String)>> {
        let mut issues: Vec<(String, String)> = Vec::new();
        if let Some(problem) = crate::git_url_problem(&self.git_url) {
            push(&mut issues, "git-url", problem);
        }
        if let Some(problem) = crate::git_ref_problem(&self.git_ref) {
            push(&mut issues, "git-ref", problem);
        }
        if self.test_timeout_secs == Some(0) {
            push(&mut issues, "test-timeout-secs", "must be at least 1");
        }
        if self.max_artifact_bytes < 1024 {
            push(&mut issues, "max-artifact-bytes", "must be at least 1024");
        }
        if let Some(groups) = &self.groups {
            check_groups(&mut issues, "groups", groups);
        }
        check_groups(&mut issues, "exclude-groups", &self.exclude_groups);
        check_tests(&mut issues, "tests", &self.tests);
        check_tests(&mut issues, "exclude-tests", &self.exclude_tests);

        let mut sections = Vec::new();
        for (i, name) in self.profiles.iter().enumerate() {
            let key = format!("profiles[{i}]");
            match profile(name) {
                Some(p) => {
                    sections.push(self.section(&mut issues, &key, name.clone(), Some(p), None))
                }
                None => push(
                    &mut issues,
                    &key,
                    format!("unknown profile `{name}` (known: {})", known_profiles()),
                ),
            }
        }
        for (i, custom) in self.sections.iter().enumerate() {
            let key = format!("sections[{i}]");
            let base = match &custom.profile {
                Some(name) => match profile(name) {
                    Some(p) => Some(p),
                    None => {
                        push(
                            &mut issues,
                            &format!("{key}.profile"),
                            format!("unknown profile `{name}` (known: {})", known_profiles()),
                        );
                        continue;
                    }
                },
                None => None,
            };
            let Some(name) = custom
                .name
                .clone()
                .or_else(|| base.map(|p| p.name.to_owned()))
            else {
                push(
                    &mut issues,
                    &format!("{key}.name"),
                    "a section without a profile needs a name",
                );
                continue;
            };
            sections.push(self.section(&mut issues, &key, name, base, Some(custom)));
        }
        if sections.is_empty() && issues.is_empty() {
            push(&mut issues, "profiles", "no profile or section to run");
        }
        let mut seen = std::collections::BTreeSet::new();
        for section in &sections {
            if !seen.insert(section.fstests_name.clone()) || section.fstests_name == COMMON_SECTION
            {
                push(
                    &mut issues,
                    "sections",
                    format!(
                        "section `{}` is given twice (or clashes with another once `-` becomes `_`)",
                        section.name
                    ),
                );
            }
        }
        if issues.is_empty() {
            Ok(sections)
        } else {
            Err(issues)
        }
    }

    /// Resolves one section from a profile, a custom section, or both.
    fn section(
        &self,
        issues: &mut Vec<(String, String)>,
        key: &str,
        name: String,
        base: Option<&Profile>,
        custom: Option<&SectionConfig>,
    ) -> ResolvedSection {
        if !valid_name(&name) {
            push(
                issues,
                key,
                format!("section name `{name}` may hold only a-z, 0-9, `-` and `_`"),
            );
        }
        let pick = |own: Option<&String>, from_profile: &str| {
            own.cloned().unwrap_or_else(|| from_profile.to_owned())
        };
        let mkfs_options = pick(
            custom.and_then(|c| c.mkfs_options.as_ref()),
            base.map_or("", |p| p.mkfs_options),
        );
        let mount_options = pick(
            custom.and_then(|c| c.mount_options.as_ref()),
            base.map_or("", |p| p.mount_options),
        );
        for (field, value) in [
            ("mkfs-options", &mkfs_options),
            ("mount-options", &mount_options),
        ] {
            if !config_safe(value) {
                push(
                    issues,
                    &format!("{key}.{field}"),
                    format!(
                        "`{value}` holds a character fstests' config cannot carry (quotes, `$`, `#`, `;`, ...)"
                    ),
                );
            }
        }
        let suite_groups = match &self.groups {
            Some(groups) => groups.clone(),
            None if self.tests.is_empty() => vec!["auto".to_owned()],
            None => Vec::new(),
        };
        let groups = custom
            .and_then(|c| c.groups.clone())
            .or_else(|| {
                base.and_then(|p| p.groups)
                    .map(|g| g.iter().map(|s| (*s).to_owned()).collect())
            })
            .unwrap_or(suite_groups);
        let mut exclude_groups = self.exclude_groups.clone();
        let mut exclude_tests = self.exclude_tests.clone();
        let mut exclude_files = self.exclude_files.clone();
        if let Some(custom) = custom {
            if let Some(groups) = &custom.groups {
                check_groups(issues, &format!("{key}.groups"), groups);
            }
            check_groups(
                issues,
                &format!("{key}.exclude-groups"),
                &custom.exclude_groups,
            );
            check_tests(
                issues,
                &format!("{key}.exclude-tests"),
                &custom.exclude_tests,
            );
            exclude_groups.extend(custom.exclude_groups.iter().cloned());
            exclude_tests.extend(custom.exclude_tests.iter().cloned());
            exclude_files.extend(custom.exclude_files.iter().cloned());
        }
        let scratch_devs = custom
            .and_then(|c| c.scratch_devs)
            .or(base.and_then(|p| p.scratch_devs));
        if scratch_devs == Some(0) {
            push(issues, &format!("{key}.scratch-devs"), "must be at least 1");
        }
        if groups.is_empty() && self.tests.is_empty() {
            push(issues, key, "selects no test: give groups or tests");
        }
        ResolvedSection {
            fstests_name: name.replace('-', "_"),
            name,
            mkfs_options,
            mount_options,
            groups,
            exclude_groups,
            tests: self.tests.clone(),
            exclude_tests,
            exclude_files,
            scratch_devs,
        }
    }
}

fn push(issues: &mut Vec<(String, String)>, key: &str, message: impl Into<String>) {
    issues.push((key.to_owned(), message.into()));
}

fn known_profiles() -> String {
    PROFILES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_groups(issues: &mut Vec<(String, String)>, key: &str, groups: &[String]) {
    for (i, g) in groups.iter().enumerate() {
        if !valid_group(g) {
            push(
                issues,
                &format!("{key}[{i}]"),
                format!("`{g}` is not an fstests group name"),
            );
        }
    }
}

fn check_tests(issues: &mut Vec<(String, String)>, key: &str, tests: &[String]) {
    for (i, t) in tests.iter().enumerate() {
        if !super::parse::is_test_name(t) {
            push(
                issues,
                &format!("{key}[{i}]"),
                format!("`{t}` is not an fstests test name like `btrfs/001`"),
            );
        }
    }
}

/// Where fstests mounts and keeps its results on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineLayout {
    /// `TEST_DIR`.
    pub test_dir: String,
    /// `SCRATCH_MNT`.
    pub scratch_mnt: String,
    /// `RESULT_BASE`.
    pub result_base: String,
}

impl MachineLayout {
    /// The layout under the machine's work directory.
    pub fn under(work_dir: &str) -> Self {
        let work = work_dir.trim_end_matches('/');
        MachineLayout {
            test_dir: format!("{work}/fstests/test"),
            scratch_mnt: format!("{work}/fstests/scratch"),
            result_base: format!("{work}/fstests/results"),
        }
    }
}

/// Renders `local.config`: a first section with what all share (devices,
/// mount points, results), then one section per profile.
///
/// The shared section comes first because fstests parses it before the one
/// selected with `-s`, and a section that leaves `MKFS_OPTIONS` or
/// `MOUNT_OPTIONS` unset inherits them from the one parsed before: from the
/// shared section they inherit nothing.
pub fn local_config(
    sections: &[ResolvedSection],
    devices: &MachineDevices,
    layout: &MachineLayout,
) -> Result<String, String> {
    for value in std::iter::once(&devices.test_dev)
        .chain(&devices.scratch_devs)
        .chain([&layout.test_dir, &layout.scratch_mnt, &layout.result_base])
    {
        if value.is_empty() || !config_safe(value) || value.contains(char::is_whitespace) {
            return Err(format!("`{value}` cannot be used in fstests' local.config"));
        }
    }
    if devices.scratch_devs.is_empty() {
        return Err("the machine has no scratch device".into());
    }
    let mut out = String::new();
    out.push_str("# Generated by btrfsqa; each run selects one section with `./check -s`.\n");
    out.push_str(&format!("[{COMMON_SECTION}]\n"));
    out.push_str("FSTYP=btrfs\n");
    out.push_str(&format!("TEST_DEV={}\n", devices.test_dev));
    out.push_str(&format!("TEST_DIR={}\n", layout.test_dir));
    out.push_str(&format!("SCRATCH_MNT={}\n", layout.scratch_mnt));
    out.push_str(&format!(
        "SCRATCH_DEV_POOL=\"{}\"\n",
        devices.scratch_devs.join(" ")
    ));
    out.push_str(&format!("RESULT_BASE={}\n", layout.result_base));
    for section in sections {
        out.push_str(&format!("\n[{}]\n", section.fstests_name));
        if !section.mkfs_options.is_empty() {
            out.push_str(&format!("MKFS_OPTIONS=\"{}\"\n", section.mkfs_options));
        }
        if !section.mount_options.is_empty() {
            out.push_str(&format!("MOUNT_OPTIONS=\"{}\"\n", section.mount_options));
            out.push_str(&format!(
                "TEST_FS_MOUNT_OPTS=\"{}\"\n",
                section.mount_options
            ));
        }
        if let Some(n) = section.scratch_devs {
            let pool = devices
                .scratch_devs
                .iter()
                .take(n)
                .cloned()
                .collect::<Vec<_>>();
            out.push_str(&format!("SCRATCH_DEV_POOL=\"{}\"\n", pool.join(" ")));
        }
    }
    Ok(out)
}

/// The `./check` arguments for `section`, with `exclude_file` holding its
/// excluded tests (when it has any). `only` replaces the selection (resume,
/// sharding).
pub fn check_args(
    section: &ResolvedSection,
    exclude_file: Option<&str>,
    only: Option<&[String]>,
) -> Vec<String> {
    let mut args = vec![
        "-R".to_owned(),
        "xunit".to_owned(),
        "-s".to_owned(),
        section.fstests_name.clone(),
    ];
    if let Some(file) = exclude_file {
        args.extend(["-E".to_owned(), file.to_owned()]);
    }
    match only {
        Some(tests) => args.extend(
            tests
                .iter()
                .filter(|t| super::parse::is_test_name(t))
                .cloned(),
        ),
        None => {
            if !section.groups.is_empty() {
                args.extend(["-g".to_owned(), section.groups.join(",")]);
            }
            if !section.exclude_groups.is_empty() {
                args.extend(["-x".to_owned(), section.exclude_groups.join(",")]);
            }
            args.extend(section.tests.iter().cloned());
        }
    }
    args
}
