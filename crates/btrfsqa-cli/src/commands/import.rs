//! `btrfsqa import`: results made elsewhere become a run in the store.

use std::sync::Arc;

use chrono::Utc;

use btrfsqa_model::{Provenance, ResultsStore, RunId, RunReport, RunStatus};
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
    let store = ResultsStore::new(settings.results_dir());
    let started_at = Utc::now();
    let run_id = RunId::generate(started_at);
    let run_dir = match store.create_run(&run_id) {
        Ok(dir) => dir,
        Err(err) => {
            print_error(&err);
            return Code::Infrastructure;
        }
    };
    // What is copied loses the run's secrets, as recordings of runs do.
    let redactor = btrfsqa_remote::Redactor::from_env(btrfsqa_runner::SECRET_ENV_VARS);
    let imported = match args.kind {
        ImportKindArg::Xfstests => import::xfstests(&args.dir, &run_dir, &redactor),
        ImportKindArg::BtrfsProgs => import::btrfs_progs(&args.dir, &run_dir, &redactor),
    };
    let suite = match imported {
        Ok(imported) => {
            for warning in &imported.warnings {
                errln!("warning: {warning}");
            }
            imported.report
        }
        Err(err) => {
            // Nothing was imported: leave no empty run behind.
            let _ = std::fs::remove_dir_all(&run_dir);
            print_error(&err);
            return Code::Usage;
        }
    };
    let provenance = Provenance {
        btrfsqa_version: env!("CARGO_PKG_VERSION").to_owned(),
        provider: "import".to_owned(),
        ..Provenance::default()
    };
    let mut report = RunReport::start(run_id.clone(), started_at, provenance);
    report
        .labels
        .insert("imported-from".to_owned(), args.dir.display().to_string());
    report.suites.push(suite);
    report.finish(RunStatus::Completed, Utc::now());
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
