//! Commands on the results store: `btrfsqa publish`, `btrfsqa show`.

use btrfsqa_model::ResultsStore;
use btrfsqa_runner::RunOverrides;
use btrfsqa_runner::stored;

use super::{Outcome, load_settings};
use crate::args::{PublishArgs, ShowArgs};
use crate::exit::Code;

pub async fn publish(args: PublishArgs) -> Outcome {
    let overrides = RunOverrides {
        site_repo: args.site_repo.clone(),
        ..Default::default()
    };
    let settings = load_settings(&args.config, overrides)?;
    let published = stored::publish_run(&settings, &args.run_id).await?;
    outln!(
        "published {} to {}{}",
        args.run_id,
        published.location,
        published
            .commit
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    Ok(Code::Ok)
}

pub fn show(args: ShowArgs) -> Outcome {
    let settings = load_settings(&args.config, RunOverrides::default())?;
    let store = ResultsStore::new(settings.results_dir());
    let report = stored::run_report(&store, args.run_id.as_deref())?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        );
    } else {
        out!("{}", crate::output::summary(&report));
    }
    Ok(Code::Ok)
}
