//! `[kernel]`: which kernel a run tests, and how it is built and booted.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The btrfs development tree, built when `source = "git"`.
pub const DEFAULT_URL: &str = "https://github.com/btrfs/linux.git";
/// Its branch of patches queued for the next merge window.
pub const DEFAULT_REF: &str = "for-next";

/// `[kernel]`.
///
/// ```toml
/// [kernel]
/// source = "git"                 # "installed" (default), "git" (the btrfs tree), or a git URL/path
/// ref = "for-next"               # branch, tag or commit
/// base = "defconfig"             # or "running"; ignored with config-file
/// fragments = ["virtio-guest", "btrfs-debug", "fstests", "minimal"]
/// build-on = "controller"        # or "machine"
/// ccache = true
/// boot = "auto"                  # provider relaunch, else kexec, else the bootloader
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelConfig {
    /// `installed` (test the machine's own kernel; the default), `git` (the
    /// btrfs development tree), or a git URL or local repository path.
    #[serde(default)]
    pub source: Option<String>,
    /// The branch, tag or commit to build (default `for-next`).
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    /// A complete `.config` to start from (fragments still apply on top).
    pub config_file: Option<PathBuf>,
    /// What to start from without `config-file`: `defconfig`, or the test
    /// machine's `running` kernel config. Default: `defconfig` on the qemu
    /// provider, `running` elsewhere (it knows the machine's hardware).
    pub base: Option<KernelBase>,
    /// Fragments merged in order: names of shipped ones (`btrfs-debug`,
    /// `virtio-guest`, `fstests`, `minimal`, `kasan`, `lockdep`) or file
    /// paths. Default: `virtio-guest`, `btrfs-debug`, `fstests`, `minimal`
    /// on qemu; `btrfs-debug`, `fstests` elsewhere.
    pub fragments: Option<Vec<String>>,
    /// Where to build (default the controller).
    #[serde(default)]
    pub build_on: BuildOn,
    /// Parallel jobs (default: the builder's CPU count).
    pub jobs: Option<u32>,
    /// Use ccache when the builder has it (default true).
    pub ccache: Option<bool>,
    /// How to boot it (default `auto`).
    #[serde(default)]
    pub boot: BootMethod,
    /// Source and build trees on the controller (default
    /// `RESULTS-DIR/.cache/kernel`); on the machine they go under its work
    /// directory.
    pub work_dir: Option<PathBuf>,
    /// Bound on the build (default 240 minutes).
    pub build_timeout_minutes: Option<u64>,
    /// Bound on the boot into the new kernel (default 600 s).
    pub boot_timeout_secs: Option<u64>,
    /// Added to the kernel command line (VM relaunch only).
    pub extra_args: Option<String>,
    /// `[[kernel.matrix]]`: test several kernels in one run, each on its
    /// own machines; the rest of `[kernel]` applies to each.
    #[serde(default)]
    pub matrix: Vec<MatrixKernel>,
}

/// `[[kernel.matrix]]`: one kernel of a matrix.
///
/// ```toml
/// [[kernel.matrix]]
/// name = "installed"             # source defaults to "installed"
///
/// [[kernel.matrix]]
/// name = "for-next"
/// source = "git"
/// ref = "for-next"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MatrixKernel {
    /// What its runs are called (their `kernel` label): 1 to 40 of
    /// `[A-Za-z0-9._-]`, unique in the matrix. Runs of one name are
    /// compared with each other.
    pub name: String,
    /// `installed`, `git` or a git URL or path, as `kernel.source`
    /// (default `installed`, whatever `kernel.source` says).
    pub source: Option<String>,
    /// The branch, tag or commit to build, as `kernel.ref`.
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
    /// Replaces `kernel.config-file` for this kernel.
    pub config_file: Option<PathBuf>,
    /// Replaces `kernel.fragments` for this kernel.
    pub fragments: Option<Vec<String>>,
    /// Replaces `kernel.extra-args` for this kernel.
    pub extra_args: Option<String>,
}

/// Whether `name` may name a kernel of a matrix (a label value, a word in
/// file names and on the dashboard).
fn matrix_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 40 {
        Some("must be 1 to 40 characters")
    } else if name.starts_with(['.', '-']) {
        Some("must not start with `.` or `-`")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Some("may hold only letters, digits, `.`, `_` and `-`")
    } else {
        None
    }
}

/// `kernel.base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelBase {
    /// `make defconfig`.
    Defconfig,
    /// The test machine's running kernel's configuration.
    Running,
}

/// `kernel.build-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildOn {
    /// The machine running btrfsqa.
    #[default]
    Controller,
    /// The test machine.
    Machine,
}

/// `kernel.boot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMethod {
    /// The provider's own way (a VM relaunch), else kexec, else the bootloader.
    #[default]
    Auto,
    /// Only the provider's way.
    Provider,
    /// kexec on the machine.
    Kexec,
    /// Install for the bootloader and reboot.
    Bootloader,
}

/// A git source to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// URL or local path.
    pub url: String,
    /// Branch, tag or commit.
    pub git_ref: String,
}

impl KernelConfig {
    /// The source to build, or `None` for the installed kernel.
    pub fn git_source(&self) -> Option<GitSource> {
        let source = self.source.as_deref().map(str::trim).unwrap_or("installed");
        let url = match source {
            "" | "installed" => return None,
            "git" => DEFAULT_URL.to_owned(),
            url => url.to_owned(),
        };
        Some(GitSource {
            url,
            git_ref: self
                .git_ref
                .clone()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_REF.to_owned()),
        })
    }

    /// The kernels of the matrix, each as a `[kernel]` of its own (the
    /// matrix's keys over the rest of this one, without a matrix), by name;
    /// empty without a matrix.
    pub fn matrix_kernels(&self) -> Vec<(String, KernelConfig)> {
        self.matrix
            .iter()
            .map(|entry| {
                let kernel = KernelConfig {
                    source: Some(entry.source.clone().unwrap_or_else(|| "installed".into())),
                    git_ref: entry.git_ref.clone(),
                    config_file: entry
                        .config_file
                        .clone()
                        .or_else(|| self.config_file.clone()),
                    fragments: entry.fragments.clone().or_else(|| self.fragments.clone()),
                    extra_args: entry.extra_args.clone().or_else(|| self.extra_args.clone()),
                    matrix: Vec::new(),
                    ..self.clone()
                };
                // What builds a kernel means nothing to an installed one.
                let kernel = if kernel.git_source().is_none()
                    && entry.config_file.is_none()
                    && entry.fragments.is_none()
                {
                    KernelConfig {
                        config_file: None,
                        fragments: None,
                        base: None,
                        ..kernel
                    }
                } else {
                    kernel
                };
                (entry.name.clone(), kernel)
            })
            .collect()
    }

    /// Problems serde cannot see, as `(key below kernel, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if !self.matrix.is_empty() {
            issues.extend(self.validate_matrix());
        }
        if let Some(fragments) = &self.fragments {
            for (i, name) in fragments.iter().enumerate() {
                if !super::fragments::is_shipped(name) && !looks_like_path(name) {
                    issues.push((
                        format!("fragments[{i}]"),
                        format!(
                            "`{name}` is neither a shipped fragment ({}) nor a file path",
                            super::fragments::names().join(", ")
                        ),
                    ));
                }
            }
        }
        if self.jobs == Some(0) {
            issues.push((
                "jobs".into(),
                "must be at least 1 (or unset for all CPUs)".into(),
            ));
        }
        if self.matrix.is_empty()
            && self.git_source().is_none()
            && (self.config_file.is_some() || self.fragments.is_some() || self.base.is_some())
        {
            issues.push((
                "source".into(),
                "`config-file`, `base` and `fragments` need a source to build (`source = \"git\"` or a URL)".into(),
            ));
        }
        if let Some(source) = &self.source
            && let Some(problem) = btrfsqa_suites::git_url_problem(source)
        {
            issues.push((
                "source".into(),
                format!(
                    "`{}` is not a git URL or path: it {problem}",
                    btrfsqa_model::redact_url(source)
                ),
            ));
        }
        if let Some(r) = &self.git_ref
            && let Some(problem) = btrfsqa_suites::git_ref_problem(r)
        {
            issues.push((
                "ref".into(),
                format!("`{r}` is not a git ref: it {problem}"),
            ));
        }
        issues
    }

    fn validate_matrix(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, entry) in self.matrix.iter().enumerate() {
            if let Some(problem) = matrix_name_problem(&entry.name) {
                issues.push((
                    format!("matrix[{i}].name"),
                    format!("`{}` {problem}", entry.name.escape_debug()),
                ));
            } else if !seen.insert(entry.name.as_str()) {
                issues.push((
                    format!("matrix[{i}].name"),
                    format!("`{}` names another kernel of the matrix too", entry.name),
                ));
            }
        }
        // Each kernel as the run would see it, its keys named in the matrix.
        for (i, (_, kernel)) in self.matrix_kernels().iter().enumerate() {
            for (key, message) in kernel.validate() {
                issues.push((format!("matrix[{i}].{key}"), message));
            }
        }
        if self.source.is_some() || self.git_ref.is_some() {
            issues.push((
                "source".into(),
                "with `[[kernel.matrix]]`, each kernel names its own `source` and `ref`: remove them from `[kernel]`".into(),
            ));
        }
        issues
    }

    /// Makes relative paths absolute against the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for entry in &mut self.matrix {
            let mut kernel = KernelConfig {
                source: entry.source.take(),
                config_file: entry.config_file.take(),
                fragments: entry.fragments.take(),
                ..KernelConfig::default()
            };
            kernel.resolve_paths(base);
            entry.source = kernel.source;
            entry.config_file = kernel.config_file;
            entry.fragments = kernel.fragments;
        }
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        if let Some(file) = &self.config_file {
            self.config_file = Some(resolve(file));
        }
        if let Some(dir) = &self.work_dir {
            self.work_dir = Some(resolve(dir));
        }
        if let Some(fragments) = &mut self.fragments {
            for name in fragments.iter_mut() {
                if looks_like_path(name) {
                    *name = resolve(Path::new(name.as_str())).display().to_string();
                }
            }
        }
        // A local repository given relative to the config file.
        if let Some(source) = &self.source
            && (source.starts_with("./") || source.starts_with("../"))
        {
            self.source = Some(resolve(Path::new(source.as_str())).display().to_string());
        }
    }
}

fn looks_like_path(name: &str) -> bool {
    name.contains('/') || name.ends_with(".config")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KernelConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn installed_is_the_default_and_builds_nothing() {
        assert_eq!(KernelConfig::default().git_source(), None);
        assert_eq!(parse("source = \"installed\"").git_source(), None);
    }

    #[test]
    fn git_means_the_btrfs_tree_for_next() {
        assert_eq!(
            parse("source = \"git\"").git_source(),
            Some(GitSource {
                url: DEFAULT_URL.into(),
                git_ref: "for-next".into()
            })
        );
        let custom = parse("source = \"/srv/linux\"\nref = \"v6.1\"")
            .git_source()
            .unwrap();
        assert_eq!(custom.url, "/srv/linux");
        assert_eq!(custom.git_ref, "v6.1");
    }

    #[test]
    fn every_key_parses() {
        let config = parse(
            r#"
source = "git"
ref = "for-next"
config-file = "k.config"
base = "running"
fragments = ["btrfs-debug", "./extra.config"]
build-on = "machine"
jobs = 4
ccache = false
boot = "kexec"
work-dir = "/var/tmp/k"
build-timeout-minutes = 60
boot-timeout-secs = 300
extra-args = "slub_debug=FZ"
"#,
        );
        assert_eq!(config.base, Some(KernelBase::Running));
        assert_eq!(config.build_on, BuildOn::Machine);
        assert_eq!(config.boot, BootMethod::Kexec);
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert!(toml::from_str::<KernelConfig>("sauce = \"git\"").is_err());
    }

    #[test]
    fn unknown_fragments_and_orphan_options_are_reported() {
        let config = parse("source = \"git\"\nfragments = [\"btrfs-debugg\"]\njobs = 0");
        let issues = config.validate();
        assert!(
            issues
                .iter()
                .any(|(k, m)| k == "fragments[0]" && m.contains("btrfs-debug"))
        );
        assert!(issues.iter().any(|(k, _)| k == "jobs"));
        let orphan = parse("fragments = [\"kasan\"]").validate();
        assert!(orphan.iter().any(|(k, _)| k == "source"));
        let bad_ref = parse("source = \"git\"\nref = \"--upload-pack=x\"").validate();
        assert!(bad_ref.iter().any(|(k, _)| k == "ref"));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let mut config = parse(
            "source = \"../linux\"\nconfig-file = \"k.config\"\nfragments = [\"kasan\", \"frag/x.config\"]",
        );
        config.resolve_paths(Path::new("/etc/btrfsqa"));
        assert_eq!(config.source.as_deref(), Some("/etc/btrfsqa/../linux"));
        assert_eq!(
            config.config_file,
            Some(PathBuf::from("/etc/btrfsqa/k.config"))
        );
        assert_eq!(
            config.fragments,
            Some(vec!["kasan".into(), "/etc/btrfsqa/frag/x.config".into()])
        );
    }

    #[test]
    fn a_matrix_gives_each_kernel_the_rest_of_the_table() {
        let mut config = parse(
            "fragments = [\"kasan\"]\nboot-timeout-secs = 900\n\
             [[matrix]]\nname = \"installed\"\n\
             [[matrix]]\nname = \"for-next\"\nsource = \"../linux\"\nref = \"for-next\"\n\
             [[matrix]]\nname = \"stable\"\nsource = \"git\"\nref = \"v6.12\"\nfragments = [\"lockdep\"]\n",
        );
        config.resolve_paths(Path::new("/etc/btrfsqa"));
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        let kernels = config.matrix_kernels();
        let names: Vec<_> = kernels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["installed", "for-next", "stable"]);
        let (_, installed) = &kernels[0];
        assert_eq!(installed.git_source(), None);
        assert_eq!(installed.fragments, None, "nothing to build");
        assert_eq!(installed.boot_timeout_secs, Some(900));
        let (_, next) = &kernels[1];
        assert_eq!(
            next.git_source(),
            Some(GitSource {
                url: "/etc/btrfsqa/../linux".into(),
                git_ref: "for-next".into()
            })
        );
        assert_eq!(next.fragments, Some(vec!["kasan".into()]));
        assert!(next.matrix.is_empty());
        assert_eq!(kernels[2].1.fragments, Some(vec!["lockdep".into()]));
    }

    #[test]
    fn a_matrix_with_bad_names_or_kernels_is_refused_by_key() {
        let config = parse(
            "source = \"git\"\n\
             [[matrix]]\nname = \"a b\"\n\
             [[matrix]]\nname = \"x\"\nref = \"--upload-pack=y\"\nsource = \"git\"\n\
             [[matrix]]\nname = \"x\"\n",
        );
        let issues = config.validate();
        let keys: Vec<_> = issues.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"matrix[0].name"), "{issues:?}");
        assert!(keys.contains(&"matrix[1].ref"), "{issues:?}");
        assert!(keys.contains(&"matrix[2].name"), "{issues:?}");
        assert!(keys.contains(&"source"), "{issues:?}");
        assert!(
            issues
                .iter()
                .any(|(k, m)| k == "matrix[2].name" && m.contains("another kernel")),
            "{issues:?}"
        );
    }
}
