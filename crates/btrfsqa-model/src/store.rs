use std::fs;
use std::path::{Path, PathBuf};

use crate::{ModelError, RunId, RunReport, SCHEMA_VERSION};

/// The results store: one directory per run under a root.
///
/// ```text
/// ROOT/<run-id>/report.json        the RunReport
/// ROOT/<run-id>/<suite>/...        per-suite raw output and per-test artifacts
/// ```
///
/// Reports are written atomically (temporary file, fsync, rename), so a
/// reader never sees half a report and a crash leaves the previous one.
#[derive(Debug, Clone)]
pub struct ResultsStore {
    root: PathBuf,
}

/// The file name of a run's report.
const REPORT_FILE: &str = "report.json";

impl ResultsStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ResultsStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of run `id`.
    pub fn run_dir(&self, id: &RunId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// The path of run `id`'s report.
    pub fn report_path(&self, id: &RunId) -> PathBuf {
        self.run_dir(id).join(REPORT_FILE)
    }

    /// Creates run `id`'s directory and returns it.
    pub fn create_run(&self, id: &RunId) -> Result<PathBuf, ModelError> {
        let dir = self.run_dir(id);
        fs::create_dir_all(&dir).map_err(|source| ModelError::Io {
            action: "create directory",
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Writes `report` as its run's `report.json`, atomically and durably.
    /// URLs in it are written without their credentials
    /// ([`RunReport::redact_credentials`]), whatever field they are in.
    pub fn write_report(&self, report: &RunReport) -> Result<PathBuf, ModelError> {
        self.create_run(&report.run_id)?;
        let path = self.report_path(&report.run_id);
        let report = report.without_credentials();
        let json = serde_json::to_vec_pretty(&*report).expect("a report always serializes");
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Reads run `id`'s report.
    pub fn read_report(&self, id: &RunId) -> Result<RunReport, ModelError> {
        read_report_file(&self.report_path(id))
    }

    /// The ids of every run with a report, oldest first.
    pub fn list_runs(&self) -> Result<Vec<RunId>, ModelError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ModelError::Io {
                    action: "list",
                    path: self.root.clone(),
                    source,
                });
            }
        };
        let mut ids: Vec<RunId> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(|n| RunId::parse(n).ok())
            })
            .filter(|id| self.report_path(id).is_file())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every readable report, oldest first, with the errors of those that
    /// could not be read (a store must stay usable with one broken run in it).
    pub fn load_all(&self) -> Result<(Vec<RunReport>, Vec<ModelError>), ModelError> {
        let mut reports = Vec::new();
        let mut errors = Vec::new();
        for id in self.list_runs()? {
            match self.read_report(&id) {
                Ok(report) => reports.push(report),
                Err(err) => errors.push(err),
            }
        }
        Ok((reports, errors))
    }
}

/// Reads and checks one `report.json` file.
pub(crate) fn read_report_file(path: &Path) -> Result<RunReport, ModelError> {
    let bytes = fs::read(path).map_err(|source| ModelError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    // Look at the version first so a newer schema gets a precise error rather
    // than whatever field happens not to parse.
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: u32,
    }
    if let Ok(Version { schema_version }) = serde_json::from_slice::<Version>(&bytes)
        && schema_version > SCHEMA_VERSION
    {
        return Err(ModelError::UnsupportedSchema {
            path: path.to_owned(),
            found: schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| ModelError::BadReport {
        path: path.to_owned(),
        source,
    })
}

/// [`crate::fs::write_atomic`], its failure as the store's error.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    crate::fs::write_atomic(path, bytes).map_err(|source| ModelError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// Turns any text (a test name, a host name) into one safe path component:
/// only `[A-Za-z0-9._-]`, no leading dot, at most 100 bytes. Distinct names
/// that would collide after replacement get a short hash suffix.
pub fn safe_file_name(name: &str) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.starts_with('.') {
        safe.replace_range(0..1, "_");
    }
    let changed = safe != name || safe.is_empty() || safe.len() > 100;
    safe.truncate(100);
    if changed {
        // FNV-1a: stable across builds, unlike std's hasher.
        let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        safe.truncate(91);
        safe.push_str(&format!("-{:08x}", hash as u32));
    }
    safe
}

/// Turns a name (a test name such as fstests' `btrfs/001`, a suite id) into
/// one path component that is readable and distinct for every name, so
/// pages named after tests never nest and never collide:
///
/// - `[A-Za-z0-9._-]` stay (a leading `.` does not), `/` becomes `~`
///   (`btrfs/001` → `btrfs~001`);
/// - every other byte becomes `=XX` (hex), `~` and `=` included;
/// - the empty name is `=`; a result over 180 bytes is cut and ends in `==`
///   and a 64-bit hash of the whole name.
///
/// Each piece decodes one way and `=` is always followed by two hex digits
/// except in those two markers, so two names give the same result only
/// when they are the same (for names cut to length: unless their hashes
/// collide as well).
///
/// ```
/// use btrfsqa_model::escape_file_name;
///
/// assert_eq!(escape_file_name("btrfs/001"), "btrfs~001");
/// assert_eq!(escape_file_name("btrfs_001"), "btrfs_001");
/// assert_eq!(escape_file_name("../x"), "=2E.~x");
/// ```
pub fn escape_file_name(name: &str) -> String {
    const MAX: usize = 180;
    let mut out = String::with_capacity(name.len());
    // Where each piece ends, to cut between pieces.
    let mut ends = Vec::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        match byte {
            b'/' => out.push('~'),
            b'.' if i == 0 => out.push_str("=2E"),
            b if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') => {
                out.push(char::from(b))
            }
            b => out.push_str(&format!("={b:02X}")),
        }
        ends.push(out.len());
    }
    if out.is_empty() {
        return "=".to_owned();
    }
    if out.len() > MAX {
        let keep = ends
            .iter()
            .copied()
            .take_while(|end| *end <= MAX - 18)
            .last()
            .unwrap_or(0);
        out.truncate(keep);
        // FNV-1a: stable across builds, unlike std's hasher.
        let hash = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        out.push_str(&format!("=={hash:016x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Provenance, RunStatus};
    use chrono::Utc;

    #[test]
    fn concurrent_writers_of_one_report_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultsStore::new(dir.path());
        let report = RunReport::start(
            RunId::parse("r-busy").unwrap(),
            Utc::now(),
            Provenance::default(),
        );
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        store.write_report(&report).expect("a write never fails");
                    }
                });
            }
        });
        assert_eq!(
            store.read_report(&report.run_id).unwrap().run_id,
            report.run_id
        );
        let leftovers: Vec<_> = fs::read_dir(store.run_dir(&report.run_id))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn reports_round_trip_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultsStore::new(dir.path());
        assert!(store.list_runs().unwrap().is_empty());
        let mut report = RunReport::start(
            RunId::parse("r1").unwrap(),
            Utc::now(),
            Provenance::default(),
        );
        report.finish(RunStatus::Completed, Utc::now());
        store.write_report(&report).unwrap();
        assert_eq!(store.read_report(&report.run_id).unwrap(), report);
        assert_eq!(store.list_runs().unwrap(), vec![report.run_id.clone()]);
    }

    #[test]
    fn a_written_report_holds_no_credentials_from_urls() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultsStore::new(dir.path());
        let mut report = RunReport::start(
            RunId::parse("r1").unwrap(),
            Utc::now(),
            Provenance::default(),
        );
        // A URL that came from the command line, the environment or an
        // embedder, not from a config file (that one refuses secrets).
        let url = "https://user:tok-1234567@git.example.org/fstests.git";
        let mut suite = crate::SuiteReport::new("xfstests");
        suite.source = Some(crate::SourceInfo {
            name: "fstests".into(),
            url: url.into(),
            git_ref: Some("master".into()),
            commit: None,
        });
        suite.error = Some(format!("cannot fetch `{url}`"));
        report.suites.push(suite);
        report.provenance.kernel.source = Some(crate::SourceInfo {
            name: "kernel".into(),
            url: url.into(),
            git_ref: None,
            commit: None,
        });
        report.finish(RunStatus::Completed, Utc::now());
        let path = store.write_report(&report).unwrap();
        let written = fs::read_to_string(path).unwrap();
        assert!(!written.contains("tok-1234567"), "{written}");
        assert!(!written.contains("user:"), "{written}");
        assert!(
            written.contains("https://git.example.org/fstests.git"),
            "{written}"
        );
    }

    #[test]
    fn a_broken_report_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultsStore::new(dir.path());
        let good = RunReport::start(
            RunId::parse("a").unwrap(),
            Utc::now(),
            Provenance::default(),
        );
        store.write_report(&good).unwrap();
        fs::create_dir_all(dir.path().join("b")).unwrap();
        fs::write(dir.path().join("b/report.json"), b"{ truncated").unwrap();
        let (reports, errors) = store.load_all().unwrap();
        assert_eq!(reports.len(), 1);
        assert!(
            errors[0].to_string().contains("b/report.json"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn newer_schemas_are_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("x")).unwrap();
        fs::write(
            dir.path().join("x/report.json"),
            br#"{"schema_version": 99}"#,
        )
        .unwrap();
        let err = ResultsStore::new(dir.path())
            .read_report(&RunId::parse("x").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn safe_file_names_are_safe_and_distinct() {
        assert_eq!(safe_file_name("raid5-data_repair.1"), "raid5-data_repair.1");
        let a = safe_file_name("btrfs/011");
        let b = safe_file_name("btrfs_011");
        assert_ne!(a, b);
        for hostile in [
            "../../etc/passwd",
            ".",
            "..",
            "",
            "a\0b",
            "<img src=x>",
            &"y".repeat(300),
        ] {
            let safe = safe_file_name(hostile);
            assert!(
                !safe.is_empty() && !safe.starts_with('.') && safe.len() <= 100,
                "{safe}"
            );
            assert!(
                safe.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            );
        }
    }
}
