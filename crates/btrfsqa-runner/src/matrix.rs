//! A kernel matrix: the kernels of `[[kernel.matrix]]` tested by one
//! command, one run per kernel, at the same time, each on its own machines.
//!
//! Each kernel's run is an ordinary run (its own id, report, journal and
//! teardown) whose `kernel` label names the kernel and whose `matrix` label
//! is shared by the matrix: baselines, flakiness and durations are then
//! reckoned per kernel line (see [`btrfsqa_model::compare::ProfileKey`]),
//! and the dashboard sets the kernels of a matrix side by side.

use btrfsqa_model::EventSink;
use btrfsqa_model::RunId;
use btrfsqa_model::compare::{KERNEL_LABEL, MATRIX_LABEL};
use chrono::Utc;

use crate::{CancellationToken, RunError, RunOutcome, Runner, Settings};

/// One kernel's run of a matrix.
#[derive(Debug, Clone)]
pub struct MatrixRun {
    /// The kernel's name in the matrix.
    pub kernel: String,
    /// The run's settings: `[kernel]` is this kernel's, labels name it.
    pub settings: Settings,
}

/// A new matrix's id: the value of its runs' `matrix` label.
pub fn new_id() -> String {
    RunId::generate(Utc::now()).to_string()
}

/// The runs of the matrix `settings` configure, labelled with `matrix_id`;
/// `None` when there is no matrix.
///
/// A kernel built from git gets a build tree of its own (below the
/// configured `kernel.work-dir`, by its name): the kernels are built at the
/// same time.
pub fn split(settings: &Settings, matrix_id: &str) -> Option<Vec<MatrixRun>> {
    let kernels = settings.config.kernel.matrix_kernels();
    if kernels.is_empty() {
        return None;
    }
    let work_dir = settings
        .config
        .kernel
        .work_dir
        .clone()
        .unwrap_or_else(|| settings.results_dir().join(".cache").join("kernel"));
    Some(
        kernels
            .into_iter()
            .map(|(name, mut kernel)| {
                if kernel.git_source().is_some() {
                    kernel.work_dir = Some(work_dir.join(&name));
                }
                let mut settings = settings.clone();
                settings.config.kernel = kernel;
                let labels = &mut settings.config.run.labels;
                labels.insert(KERNEL_LABEL.to_owned(), name.clone());
                labels.insert(MATRIX_LABEL.to_owned(), matrix_id.to_owned());
                settings.config_hash = format!("{}+kernel={name}", settings.config_hash);
                MatrixRun {
                    kernel: name,
                    settings,
                }
            })
            .collect(),
    )
}

/// How one kernel's run ended.
#[derive(Debug)]
pub struct MatrixOutcome {
    /// The kernel's name in the matrix.
    pub kernel: String,
    /// Its run's outcome, or why it could not run.
    pub result: Result<RunOutcome, RunError>,
}

/// Runs every kernel's runner at once; `cancel` stops them all. The
/// outcomes come in the matrix's order.
pub async fn run(
    runners: Vec<(String, Runner)>,
    events: EventSink,
    cancel: CancellationToken,
) -> Vec<MatrixOutcome> {
    let runs = runners.iter().map(|(kernel, runner)| {
        let events = events.clone();
        let cancel = cancel.clone();
        async move {
            MatrixOutcome {
                kernel: kernel.clone(),
                result: runner.run(events, cancel).await,
            }
        }
    });
    futures_util::future::join_all(runs).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigSource, RunOverrides};

    fn settings(text: &str) -> Settings {
        let source = ConfigSource {
            name: "m.toml".into(),
            base_dir: "/etc/btrfsqa".into(),
            text: text.into(),
        };
        Settings::resolve(&source, RunOverrides::default()).unwrap()
    }

    #[test]
    fn each_kernel_gets_a_run_labelled_with_it_and_the_matrix() {
        let base = settings(
            "[run]\nresults-dir = \"/srv/r\"\nlabels = { team = \"btrfs\" }\n\
             [[kernel.matrix]]\nname = \"installed\"\n\
             [[kernel.matrix]]\nname = \"for-next\"\nsource = \"/srv/linux\"\nref = \"for-next\"\n",
        );
        let runs = split(&base, "m1").unwrap();
        let names: Vec<_> = runs.iter().map(|r| r.kernel.as_str()).collect();
        assert_eq!(names, ["installed", "for-next"]);
        for run in &runs {
            let labels = &run.settings.config.run.labels;
            assert_eq!(labels["kernel"], run.kernel);
            assert_eq!(labels["matrix"], "m1");
            assert_eq!(labels["team"], "btrfs");
            assert!(run.settings.config.kernel.matrix.is_empty());
        }
        assert_eq!(runs[0].settings.config.kernel.git_source(), None);
        assert_eq!(runs[0].settings.config.kernel.work_dir, None);
        let next = &runs[1].settings.config.kernel;
        assert_eq!(next.git_source().unwrap().git_ref, "for-next");
        assert_eq!(
            next.work_dir.as_deref(),
            Some(std::path::Path::new("/srv/r/.cache/kernel/for-next")),
            "a build tree of its own"
        );
        assert_ne!(
            runs[0].settings.config_hash, runs[1].settings.config_hash,
            "two kernels are two configurations"
        );
    }

    #[test]
    fn without_a_matrix_there_is_nothing_to_split() {
        assert!(split(&settings(""), "m1").is_none());
    }
}
