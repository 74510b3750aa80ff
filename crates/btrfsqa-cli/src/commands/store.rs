//! Commands on the results store: `btrfsqa publish`, `btrfsqa show`.

use btrfsqa_model::{ResultsStore, RunId};
use btrfsqa_runner::RunOverrides;

use super::{failed, load_settings, print_error};
use crate::args::{PublishArgs, ShowArgs};
use crate::exit::Code;

pub async fn publish(args: PublishArgs) -> Code {
    let overrides = RunOverrides {
        site_repo: args.site_repo.clone(),
        ..Default::default()
    };
    let settings = match load_settings(&args.config, overrides) {
        Ok(settings) => settings,
        Err(err) => return failed(&err),
    };
    let run = match RunId::parse(&args.run_id) {
        Ok(run) => run,
        Err(err) => {
            print_error(&err);
            return Code::Usage;
        }
    };
    let store = ResultsStore::new(settings.results_dir());
    if let Err(err) = store.read_report(&run) {
        print_error(&err);
        return Code::Usage;
    }
    let Some(publisher) = btrfsqa_runner::registry::publisher(&settings) else {
        errln!("error: no site repository: set `publish.site-repo` or pass --site-repo");
        return Code::Usage;
    };
    match publisher.publish(&store, &run).await {
        Ok(published) => {
            outln!(
                "published {run} to {}{}",
                published.location,
                published
                    .commit
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            );
            Code::Ok
        }
        Err(err) => {
            print_error(&err);
            Code::PublishFailed
        }
    }
}

pub fn show(args: ShowArgs) -> Code {
    let settings = match load_settings(&args.config, RunOverrides::default()) {
        Ok(settings) => settings,
        Err(err) => return failed(&err),
    };
    let store = ResultsStore::new(settings.results_dir());
    let run = match &args.run_id {
        Some(id) => match RunId::parse(id) {
            Ok(run) => run,
            Err(err) => {
                print_error(&err);
                return Code::Usage;
            }
        },
        None => match store.list_runs() {
            Ok(runs) if !runs.is_empty() => runs.last().expect("not empty").clone(),
            Ok(_) => {
                errln!("error: no runs in `{}`", store.root().display());
                return Code::Usage;
            }
            Err(err) => {
                print_error(&err);
                return Code::Infrastructure;
            }
        },
    };
    match store.read_report(&run) {
        Ok(report) => {
            if args.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("reports serialize")
                );
            } else {
                out!("{}", crate::output::summary(&report));
            }
            Code::Ok
        }
        Err(err) => {
            print_error(&err);
            Code::Usage
        }
    }
}
