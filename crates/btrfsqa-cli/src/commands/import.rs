//! `btrfsqa import`: results made elsewhere become a run in the store
//! ([`btrfsqa_runner::import`]), published when a site repository is set.

use btrfsqa_model::ResultsStore;
use btrfsqa_runner::RunOverrides;
use btrfsqa_runner::import::{ImportRequest, ImportSource, import_results};

use super::{Outcome, load_settings, usage};
use crate::args::{ImportArgs, ImportKindArg};
use crate::exit::Code;

pub async fn import(args: ImportArgs) -> Outcome {
    let overrides = RunOverrides {
        site_repo: args.site_repo.clone(),
        ..Default::default()
    };
    let settings = load_settings(&args.config, overrides)?;
    let dir = args.dir.clone();
    let source = match (args.kind, args.console) {
        (ImportKindArg::Xfstests, None) => ImportSource::Xfstests { dir },
        (ImportKindArg::Xfstests, Some(_)) => {
            return usage(
                "--console is for btrfs-progs results (fstests keeps what it needs in its results directory)",
            );
        }
        (ImportKindArg::BtrfsProgs, console) => ImportSource::BtrfsProgs { dir, console },
    };
    let request = ImportRequest {
        source,
        version: crate::VERSION.to_owned(),
    };
    let imported = import_results(&settings, &request)?;
    for warning in &imported.warnings {
        errln!("warning: {warning}");
    }
    let report = &imported.report;
    out!("{}", crate::output::summary(report));
    outln!("report: {}", imported.run_dir.join("report.json").display());
    if let Some(publisher) = btrfsqa_runner::registry::publisher(&settings) {
        let store = ResultsStore::new(settings.results_dir());
        let published = publisher.publish(&store, &report.run_id).await?;
        outln!("published: {}", published.location);
    }
    Ok(Code::Ok)
}
