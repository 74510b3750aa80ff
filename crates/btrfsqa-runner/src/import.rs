//! Importing results made elsewhere: an fstests results directory or a
//! btrfs-progs tree becomes a run in the results store, with the kernel,
//! host and times the results say, and labels saying where it came from.
//!
//! Reading the results is [`btrfsqa_suites::import`]'s; this module makes
//! the run around them. It never publishes: the caller decides (`btrfsqa
//! import` publishes when a site repository is configured).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use btrfsqa_model::{
    ImportOrigin, KernelInfo, MachineInfo, ModelError, Provenance, ResultsStore, RunId, RunReport,
    RunStatus,
};
use btrfsqa_suites::SuiteError;
use btrfsqa_suites::import;

use crate::error::ErrorKind;
use crate::settings::Settings;

/// What to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportSource {
    /// An fstests results directory (`RESULT_BASE`); it holds everything.
    Xfstests {
        /// The directory.
        dir: PathBuf,
    },
    /// A btrfs-progs tree (or its `tests/`) after a test run.
    BtrfsProgs {
        /// The tree.
        dir: PathBuf,
        /// What the harness printed (`make test-* > console.txt`): the only
        /// place that says which cases passed.
        console: Option<PathBuf>,
    },
}

impl ImportSource {
    /// The directory the results are in.
    pub fn dir(&self) -> &Path {
        match self {
            ImportSource::Xfstests { dir } | ImportSource::BtrfsProgs { dir, .. } => dir,
        }
    }
}

/// An import to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    /// The results.
    pub source: ImportSource,
    /// What the report records as `provenance.btrfsqa_version`: the
    /// caller's version (the CLI's names its commit).
    pub version: String,
}

/// A run made from imported results, written to the store.
#[derive(Debug, Clone)]
pub struct ImportedRun {
    /// The run's report, as written.
    pub report: RunReport,
    /// Its directory in the store.
    pub run_dir: PathBuf,
    /// Files left out, and why (a symbolic link out of the directory).
    pub warnings: Vec<String>,
}

/// Why results could not be imported. Nothing is left in the store then.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The results directory is not one.
    #[error("`{}` is not a directory", dir.display())]
    NotADirectory {
        /// The path given.
        dir: PathBuf,
    },
    /// The console file could not be read.
    // The cause is in the message (not a source): what users saw before
    // this error had a type.
    #[error("cannot read `{}`: {error}", path.display())]
    Console {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The results could not be read.
    #[error(transparent)]
    Read(Box<SuiteError>),
    /// The results store could not be written.
    #[error(transparent)]
    Store(#[from] ModelError),
    /// The run's directory could not get its name (the run's start time).
    #[error("cannot move `{}` to `{}`: {error}", from.display(), to.display())]
    Rename {
        /// The staging directory.
        from: PathBuf,
        /// The run's directory.
        to: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

impl ImportError {
    /// Unusable results are the request's fault; the store is the
    /// infrastructure's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImportError::NotADirectory { .. }
            | ImportError::Console { .. }
            | ImportError::Read(_) => ErrorKind::Usage,
            ImportError::Store(_) | ImportError::Rename { .. } => ErrorKind::Infrastructure,
        }
    }
}

/// Imports `request` into the results store of `settings` as a new run and
/// writes its report.
pub fn import_results(
    settings: &Settings,
    request: &ImportRequest,
) -> Result<ImportedRun, ImportError> {
    let dir = request.source.dir();
    if !dir.is_dir() {
        return Err(ImportError::NotADirectory {
            dir: dir.to_path_buf(),
        });
    }
    let console = match &request.source {
        ImportSource::BtrfsProgs {
            console: Some(path),
            ..
        } => match std::fs::read(path) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(error) => {
                return Err(ImportError::Console {
                    path: path.clone(),
                    error,
                });
            }
        },
        _ => None,
    };
    let store = ResultsStore::new(settings.results_dir());
    let imported_at = Utc::now();
    let staging_id = RunId::generate(imported_at);
    // The run's id says when its tests ran, known only once they are read:
    // they are read into a directory of their own first.
    let staging = store.create_run(&staging_id)?;
    // What is copied loses the run's secrets (the known ones and those
    // `run.secret-env` names), as recordings of runs do.
    let redactor = crate::registry::redactor(settings);
    let imported = match &request.source {
        ImportSource::Xfstests { dir } => import::xfstests(dir, &staging, &redactor),
        ImportSource::BtrfsProgs { dir, .. } => {
            import::btrfs_progs(dir, console.as_deref(), &staging, &redactor)
        }
    };
    let imported = match imported {
        Ok(imported) => imported,
        Err(err) => {
            // Nothing was imported: leave no empty run behind.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(ImportError::Read(Box::new(err)));
        }
    };
    let origin = &imported.run;
    let (started_at, finished_at) = run_times(origin, imported_at);
    let run_id = if origin.started_at.is_some() {
        RunId::generate(started_at)
    } else {
        staging_id.clone()
    };
    let run_dir = store.run_dir(&run_id);
    if run_id != staging_id
        && let Err(error) = std::fs::rename(&staging, &run_dir)
    {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(ImportError::Rename {
            from: staging,
            to: run_dir,
            error,
        });
    }
    let source = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let import_origin = ImportOrigin {
        source: source.display().to_string(),
        kind: imported.report.id.clone(),
        host: local_hostname(),
        user: std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty()),
        imported_at,
    };
    let provenance = provenance(origin, &request.version);
    let mut report = RunReport::start(run_id, started_at, provenance);
    label(&mut report, &import_origin);
    report.import = Some(import_origin);
    report.suites.push(imported.report);
    report.finish(RunStatus::Completed, finished_at);
    store.write_report(&report)?;
    Ok(ImportedRun {
        report,
        run_dir,
        warnings: imported.warnings,
    })
}

/// The run's own start and end when the results say them (fstests'
/// result.xml), else the import's time.
fn run_times(
    origin: &import::ImportedRun,
    imported_at: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let started_at = origin.started_at.unwrap_or(imported_at);
    let finished_at = origin
        .finished_at
        .filter(|end| *end >= started_at)
        .unwrap_or(if origin.started_at.is_some() {
            started_at
        } else {
            imported_at
        });
    (started_at, finished_at)
}

/// The machine and kernel the results name; the provider is `import`.
fn provenance(origin: &import::ImportedRun, version: &str) -> Provenance {
    let kernel = KernelInfo {
        release: origin.kernel.clone(),
        ..KernelInfo::default()
    };
    Provenance {
        btrfsqa_version: version.to_owned(),
        provider: "import".to_owned(),
        machines: origin
            .host
            .iter()
            .map(|host| MachineInfo {
                name: host.clone(),
                provider: "import".to_owned(),
                address: host.clone(),
                kernel: kernel.clone(),
                ..MachineInfo::default()
            })
            .collect(),
        kernel,
        ..Provenance::default()
    }
}

/// Labels show on the run page as they are; `report.import` says the same
/// for tools.
fn label(report: &mut RunReport, origin: &ImportOrigin) {
    report
        .labels
        .insert("imported-from".to_owned(), origin.source.clone());
    report.labels.insert(
        "imported-at".to_owned(),
        origin
            .imported_at
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    );
    let by = match (&origin.user, &origin.host) {
        (Some(user), Some(host)) => Some(format!("{user}@{host}")),
        (user, host) => user.clone().or_else(|| host.clone()),
    };
    if let Some(by) = by {
        report.labels.insert("imported-by".to_owned(), by);
    }
}

/// This machine's host name.
fn local_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigSource, RunOverrides};

    fn settings(store: &Path) -> Settings {
        let overrides = RunOverrides {
            results_dir: Some(store.to_path_buf()),
            ..RunOverrides::default()
        };
        Settings::resolve(&ConfigSource::load(None).unwrap(), overrides).unwrap()
    }

    fn fixture(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../btrfsqa-suites/fixtures")
            .join(path)
    }

    #[test]
    fn an_fstests_import_is_a_run_named_after_its_start_with_the_callers_version() {
        let tmp = tempfile::tempdir().unwrap();
        let request = ImportRequest {
            source: ImportSource::Xfstests {
                dir: fixture("xfstests/btrfs-loop-30"),
            },
            version: "9.9.9 (abc1234)".to_owned(),
        };
        let run = import_results(&settings(tmp.path()), &request).unwrap();
        let report = &run.report;
        assert!(report.run_id.as_str().starts_with("20261124-134818-"));
        assert_eq!(run.run_dir, tmp.path().join(report.run_id.as_str()));
        assert!(run.run_dir.join("report.json").is_file());
        assert_eq!(report.provenance.btrfsqa_version, "9.9.9 (abc1234)");
        assert_eq!(report.provenance.provider, "import");
        assert!(report.labels["imported-from"].ends_with("btrfs-loop-30"));
        assert!(report.labels.contains_key("imported-at"));
        assert_eq!(report.import.as_ref().unwrap().kind, "xfstests");
        // Only the run is in the store: the staging directory was renamed.
        let runs = ResultsStore::new(tmp.path()).list_runs().unwrap();
        assert_eq!(runs, std::slice::from_ref(&report.run_id));
    }

    #[test]
    fn unusable_results_are_the_requests_fault_and_leave_no_run() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = settings(&tmp.path().join("store"));
        let missing = tmp.path().join("missing");
        let request = |source| ImportRequest {
            source,
            version: String::new(),
        };
        let err = import_results(
            &settings,
            &request(ImportSource::Xfstests {
                dir: missing.clone(),
            }),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("`{}` is not a directory", missing.display())
        );
        assert_eq!(err.kind(), ErrorKind::Usage);
        let err = import_results(
            &settings,
            &request(ImportSource::BtrfsProgs {
                dir: tmp.path().to_path_buf(),
                console: Some(missing.clone()),
            }),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read `{}`: ", missing.display())),
            "{err}"
        );
        // An empty directory holds no fstests results.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let err =
            import_results(&settings, &request(ImportSource::Xfstests { dir: empty })).unwrap_err();
        assert!(matches!(err, ImportError::Read(_)), "{err}");
        assert_eq!(err.kind(), ErrorKind::Usage);
        let runs = ResultsStore::new(settings.results_dir()).list_runs();
        assert!(runs.map_or(true, |runs| runs.is_empty()));
    }
}
