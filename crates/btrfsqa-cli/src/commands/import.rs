//! `btrfsqa import`: results made elsewhere become a run in the store.

use std::sync::Arc;

use chrono::Utc;

use btrfsqa_model::{
    ImportOrigin, KernelInfo, MachineInfo, Provenance, ResultsStore, RunId, RunReport, RunStatus,
};
use btrfsqa_runner::RunOverrides;
use btrfsqa_suites::import;

use super::{load_settings, print_error};
use crate::args::{ImportArgs, ImportKindArg};
use crate::exit::Code;

pub async fn import(args: ImportArgs) -> Code {
    let overrides = RunOverrides {
        site_repo: args.site_repo.clone(),
        ..Default::default()
    };
    let settings = match load_settings(&args.config, overrides) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if !args.dir.is_dir() {
        errln!("error: `{}` is not a directory", args.dir.display());
        return Code::Usage;
    }
    let console = match (&args.console, args.kind) {
        (None, _) => None,
        (Some(file), ImportKindArg::BtrfsProgs) => match std::fs::read(file) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(err) => {
                errln!("error: cannot read `{}`: {err}", file.display());
                return Code::Usage;
            }
        },
        (Some(_), ImportKindArg::Xfstests) => {
            errln!(
                "error: --console is for btrfs-progs results (fstests keeps what it needs in its results directory)"
            );
            return Code::Usage;
        }
    };
    let store = ResultsStore::new(settings.results_dir());
    let imported_at = Utc::now();
    let staging_id = RunId::generate(imported_at);
    // The run's id says when its tests ran, known only once they are read:
    // they are read into a directory of their own first.
    let staging = match store.create_run(&staging_id) {
        Ok(dir) => dir,
        Err(err) => {
            print_error(&err);
            return Code::Infrastructure;
        }
    };
    // What is copied loses the run's secrets, as recordings of runs do.
    let redactor = btrfsqa_remote::Redactor::from_env(btrfsqa_runner::SECRET_ENV_VARS);
    let imported = match args.kind {
        ImportKindArg::Xfstests => import::xfstests(&args.dir, &staging, &redactor),
        ImportKindArg::BtrfsProgs => {
            import::btrfs_progs(&args.dir, console.as_deref(), &staging, &redactor)
        }
    };
    let imported = match imported {
        Ok(imported) => {
            for warning in &imported.warnings {
                errln!("warning: {warning}");
            }
            imported
        }
        Err(err) => {
            // Nothing was imported: leave no empty run behind.
            let _ = std::fs::remove_dir_all(&staging);
            print_error(&err);
            return Code::Usage;
        }
    };
    let origin = &imported.run;
    // The run's own start and end when the results say them (fstests'
    // result.xml), else the import's.
    let started_at = origin.started_at.unwrap_or(imported_at);
    let finished_at = origin
        .finished_at
        .filter(|end| *end >= started_at)
        .unwrap_or(if origin.started_at.is_some() {
            started_at
        } else {
            imported_at
        });
    let run_id = if origin.started_at.is_some() {
        RunId::generate(started_at)
    } else {
        staging_id.clone()
    };
    let run_dir = store.run_dir(&run_id);
    if run_id != staging_id
        && let Err(err) = std::fs::rename(&staging, &run_dir)
    {
        let _ = std::fs::remove_dir_all(&staging);
        errln!(
            "error: cannot move `{}` to `{}`: {err}",
            staging.display(),
            run_dir.display()
        );
        return Code::Infrastructure;
    }
    let kernel = KernelInfo {
        release: origin.kernel.clone(),
        ..KernelInfo::default()
    };
    let provenance = Provenance {
        btrfsqa_version: crate::VERSION.to_owned(),
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
    };
    let source = std::path::absolute(&args.dir).unwrap_or_else(|_| args.dir.clone());
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
    let mut report = RunReport::start(run_id.clone(), started_at, provenance);
    // Labels show on the run page as they are; `import` is the same for tools.
    report
        .labels
        .insert("imported-from".to_owned(), import_origin.source.clone());
    report.labels.insert(
        "imported-at".to_owned(),
        imported_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    );
    let by = match (&import_origin.user, &import_origin.host) {
        (Some(user), Some(host)) => Some(format!("{user}@{host}")),
        (user, host) => user.clone().or_else(|| host.clone()),
    };
    if let Some(by) = by {
        report.labels.insert("imported-by".to_owned(), by);
    }
    report.import = Some(import_origin);
    report.suites.push(imported.report);
    report.finish(RunStatus::Completed, finished_at);
    if let Err(err) = store.write_report(&report) {
        print_error(&err);
        return Code::Infrastructure;
    }
    out!("{}", crate::output::summary(&report));
    outln!("report: {}", run_dir.join("report.json").display());
    if let Some(publisher) = btrfsqa_runner::registry::publisher(&settings) {
        let publisher: Arc<dyn btrfsqa_publish::Publisher> = publisher;
        match publisher.publish(&store, &run_id).await {
            Ok(published) => outln!("published: {}", published.location),
            Err(err) => {
                print_error(&err);
                return Code::PublishFailed;
            }
        }
    }
    Code::Ok
}

/// This machine's host name.
fn local_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}
