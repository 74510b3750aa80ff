//! `btrfsqa reap`.

use btrfsqa_model::RunId;
use btrfsqa_runner::RunOverrides;

use super::{load_settings, print_error};
use crate::args::ReapArgs;
use crate::exit::Code;

pub async fn reap(args: ReapArgs) -> Code {
    let overrides = RunOverrides {
        provider: args
            .provider
            .as_deref()
            .map(|p| p.parse().expect("clap checked the value")),
        ..Default::default()
    };
    let mut settings = match load_settings(&args.config, overrides) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let run = match args.run.as_deref().map(RunId::parse).transpose() {
        Ok(run) => run,
        Err(err) => {
            print_error(&err);
            return Code::Usage;
        }
    };
    if !args.regions.is_empty() {
        settings.config.providers.aws.reap_regions = args.regions.clone();
    }
    let provider = match btrfsqa_runner::registry::provider(&settings).await {
        Ok(provider) => provider,
        Err(err) => {
            print_error(&err);
            return Code::Usage;
        }
    };
    match provider.reap(run, args.dry_run).await {
        Ok(items) => {
            if items.is_empty() {
                println!("nothing left behind by {} runs", provider.id());
                return Code::Ok;
            }
            println!(
                "{:<10} {:<14} {:<28} {:<50} action",
                "provider", "kind", "run", "id"
            );
            let mut failed = false;
            for item in &items {
                failed |= !matches!(item.action.as_str(), "deleted" | "would delete");
                println!(
                    "{:<10} {:<14} {:<28} {:<50} {}",
                    item.provider,
                    item.kind,
                    item.run_id.as_deref().unwrap_or("-"),
                    item.id,
                    item.action
                );
            }
            if failed {
                Code::Infrastructure
            } else {
                Code::Ok
            }
        }
        Err(err) => {
            print_error(&err);
            Code::Infrastructure
        }
    }
}
