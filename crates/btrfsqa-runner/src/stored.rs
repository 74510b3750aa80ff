//! Finished runs in the results store, as commands ask for them: one run by
//! its id (or the newest), every readable run, and one run published again.

use std::path::PathBuf;

use btrfsqa_model::{ModelError, ResultsStore, RunId, RunReport};
use btrfsqa_publish::Published;

use crate::error::ErrorKind;
use crate::settings::Settings;

/// A stored run that cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoredError {
    /// The id is not a run id.
    #[error(transparent)]
    BadId(ModelError),
    /// The store holds no run at all.
    #[error("no runs in `{}`", store.display())]
    NoRuns {
        /// The store.
        store: PathBuf,
    },
    /// No run of that id, among the readable ones.
    #[error("no run `{id}` in `{}`{}", store.display(), newest_note(newest))]
    NotFound {
        /// The id asked for.
        id: RunId,
        /// The store.
        store: PathBuf,
        /// The newest runs it does hold, newest first (at most three).
        newest: Vec<String>,
    },
    /// The run's report is there but cannot be read.
    #[error(transparent)]
    Unreadable(ModelError),
    /// The store itself cannot be read.
    #[error(transparent)]
    Store(ModelError),
    /// A run of a kernel matrix is resumed with a configuration whose
    /// matrix no longer has its kernel.
    #[error(
        "run {run} tested kernel `{kernel}` of a matrix, and the configuration's [[kernel.matrix]] has no kernel of that name"
    )]
    NoMatrixKernel {
        /// The run.
        run: RunId,
        /// Its kernel's name in the matrix.
        kernel: String,
    },
    /// Publishing was asked for without a site repository.
    #[error("no site repository: set `publish.site-repo` or pass --site-repo")]
    NoSiteRepo,
    /// Publishing failed; the run stays in the store.
    #[error(transparent)]
    Publish(#[from] btrfsqa_publish::PublishError),
}

fn newest_note(newest: &[String]) -> String {
    if newest.is_empty() {
        String::new()
    } else {
        format!(" (newest: {})", newest.join(", "))
    }
}

impl StoredError {
    /// What kind of failure it is: a run the user named wrongly is the
    /// user's, a store that cannot be read the infrastructure's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoredError::BadId(_)
            | StoredError::NoRuns { .. }
            | StoredError::NotFound { .. }
            | StoredError::Unreadable(_)
            | StoredError::NoMatrixKernel { .. }
            | StoredError::NoSiteRepo => ErrorKind::Usage,
            StoredError::Store(_) => ErrorKind::Infrastructure,
            StoredError::Publish(_) => ErrorKind::PublishFailed,
        }
    }
}

/// The report of the run `id` in `store`, or of its newest run.
pub fn run_report(store: &ResultsStore, id: Option<&str>) -> Result<RunReport, StoredError> {
    let id = match id {
        Some(id) => RunId::parse(id).map_err(StoredError::BadId)?,
        None => store
            .list_runs()
            .map_err(StoredError::Store)?
            .pop()
            .ok_or_else(|| StoredError::NoRuns {
                store: store.root().to_owned(),
            })?,
    };
    store.read_report(&id).map_err(StoredError::Unreadable)
}

/// Every readable report in `store`, with why each unreadable one is not.
pub fn history(store: &ResultsStore) -> Result<(Vec<RunReport>, Vec<ModelError>), StoredError> {
    store.load_all().map_err(StoredError::Store)
}

/// The run `id` among `history` (the store's readable runs); when it is not
/// there, whether it is absent or its report broken.
pub fn find_run<'a>(
    store: &ResultsStore,
    history: &'a [RunReport],
    id: &str,
) -> Result<&'a RunReport, StoredError> {
    let id = RunId::parse(id).map_err(StoredError::BadId)?;
    if let Some(report) = history.iter().find(|r| r.run_id == id) {
        return Ok(report);
    }
    match store.read_report(&id) {
        Err(err) if store.report_path(&id).exists() => Err(StoredError::Unreadable(err)),
        _ => Err(StoredError::NotFound {
            id,
            store: store.root().to_owned(),
            newest: history
                .iter()
                .rev()
                .take(3)
                .map(|r| r.run_id.to_string())
                .collect(),
        }),
    }
}

/// The id `id` names, as a [`StoredError`] when it is not a run id.
pub fn run_id(id: &str) -> Result<RunId, StoredError> {
    RunId::parse(id).map_err(StoredError::BadId)
}

/// The stored run `id` and the settings to resume it with: `settings`, or
/// for a run of a kernel matrix, those of its own kernel in the matrix.
pub fn resume_settings(settings: Settings, id: &str) -> Result<(RunId, Settings), StoredError> {
    use btrfsqa_model::compare::{KERNEL_LABEL, MATRIX_LABEL};
    let run = run_id(id)?;
    let store = ResultsStore::new(settings.results_dir());
    let stored = store.read_report(&run).map_err(StoredError::Unreadable)?;
    let (Some(matrix), Some(kernel)) = (
        stored.labels.get(MATRIX_LABEL),
        stored.labels.get(KERNEL_LABEL),
    ) else {
        return Ok((run, settings));
    };
    crate::matrix::split(&settings, matrix)
        .unwrap_or_default()
        .into_iter()
        .find(|matrix_run| &matrix_run.kernel == kernel)
        .map(|matrix_run| (run.clone(), matrix_run.settings))
        .ok_or_else(|| StoredError::NoMatrixKernel {
            run,
            kernel: kernel.clone(),
        })
}

/// Publishes the stored run `id` again, to the configured site.
pub async fn publish_run(settings: &Settings, id: &str) -> Result<Published, StoredError> {
    let run = run_id(id)?;
    let store = ResultsStore::new(settings.results_dir());
    store.read_report(&run).map_err(StoredError::Unreadable)?;
    let publisher = crate::registry::publisher(settings).ok_or(StoredError::NoSiteRepo)?;
    Ok(publisher.publish(&store, &run).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_named_wrongly_is_the_users_and_says_what_there_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = ResultsStore::new(dir.path());
        let err = run_report(&store, None).unwrap_err();
        assert!(matches!(err, StoredError::NoRuns { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::Usage);
        let err = run_report(&store, Some("../x")).unwrap_err();
        assert!(matches!(err, StoredError::BadId(_)), "{err}");
        let err = find_run(&store, &[], "20260101-000000-abcd").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no run `20260101-000000-abcd` in `{}`",
                dir.path().display()
            )
        );
        assert_eq!(err.kind(), ErrorKind::Usage);
    }

    #[test]
    fn a_matrix_run_resumes_with_its_own_kernel_or_says_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let source = crate::ConfigSource {
            name: "m.toml".into(),
            base_dir: dir.path().to_owned(),
            text: "[run]\nresults-dir = \"r\"\n[[kernel.matrix]]\nname = \"installed\"\n".into(),
        };
        let settings = Settings::resolve(&source, crate::RunOverrides::default()).unwrap();
        let store = ResultsStore::new(settings.results_dir());
        let id = RunId::generate(chrono::Utc::now());
        let mut report = RunReport::start(id.clone(), chrono::Utc::now(), Default::default());
        report.labels.insert("matrix".into(), "m1".into());
        report.labels.insert("kernel".into(), "installed".into());
        store.create_run(&id).unwrap();
        store.write_report(&report).unwrap();
        let (run, resumed) = resume_settings(settings.clone(), id.as_str()).unwrap();
        assert_eq!(run, id);
        assert_eq!(resumed.config.run.labels["kernel"], "installed");
        report.labels.insert("kernel".into(), "for-next".into());
        store.write_report(&report).unwrap();
        let err = resume_settings(settings, id.as_str()).unwrap_err();
        assert!(matches!(err, StoredError::NoMatrixKernel { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::Usage);
    }
}
