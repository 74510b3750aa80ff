//! `btrfsqa reap`.

use btrfsqa_cloud::ReapItem;
use btrfsqa_model::RunId;
use btrfsqa_runner::RunOverrides;

use super::{Outcome, load_settings, print_error};
use crate::args::ReapArgs;
use crate::exit::Code;

pub async fn reap(args: ReapArgs) -> Outcome {
    let overrides = RunOverrides {
        provider: args.provider.clone(),
        ..Default::default()
    };
    let mut settings = load_settings(&args.config, overrides)?;
    let run = match args.run.as_deref().map(RunId::parse).transpose() {
        Ok(run) => run,
        Err(err) => {
            print_error(&err);
            return Ok(Code::Usage);
        }
    };
    if !args.regions.is_empty()
        && let Some(aws) = settings
            .config
            .providers
            .get_mut::<btrfsqa_cloud::AwsConfig>()
    {
        aws.reap_regions = args.regions.clone();
    }
    let reaped = btrfsqa_runner::machine::reap(&settings, run, args.dry_run).await?;
    let items = &reaped.items;
    if items.is_empty() {
        outln!("nothing left behind by {} runs", reaped.provider);
        return Ok(Code::Ok);
    }
    outln!(
        "{:<10} {:<14} {:<28} {:<50} action",
        "provider",
        "kind",
        "run",
        "id"
    );
    for item in items {
        outln!(
            "{:<10} {:<14} {:<28} {:<50} {}",
            item.provider,
            item.kind,
            item.run_id.as_deref().unwrap_or("-"),
            item.id,
            item.action
        );
    }
    Ok(exit_code(items))
}

/// 3 when anything is still there that should have gone (a failed
/// removal), else 0: deleted, terminated, already gone, would be removed in
/// a dry run, or kept because its run is still going are all as they
/// should be.
fn exit_code(items: &[ReapItem]) -> Code {
    if items.iter().any(|item| item.action.is_failure()) {
        Code::Infrastructure
    } else {
        Code::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_cloud::ReapAction;

    fn item(action: ReapAction) -> ReapItem {
        ReapItem {
            provider: "aws".into(),
            kind: "instance".into(),
            id: "us-east-1/i-0123".into(),
            run_id: Some("20261124-100000-ab12".into()),
            action,
        }
    }

    #[test]
    fn only_a_failed_removal_fails_the_reap() {
        for (action, code) in [
            (ReapAction::deleted(), Code::Ok),
            (ReapAction::Deleted(Some("lazily".into())), Code::Ok),
            (ReapAction::Terminated, Code::Ok),
            (ReapAction::WouldDelete, Code::Ok),
            (ReapAction::WouldTerminate, Code::Ok),
            (ReapAction::AlreadyGone, Code::Ok),
            (
                ReapAction::Kept("its controller is running".into()),
                Code::Ok,
            ),
            (
                ReapAction::Failed("access denied".into()),
                Code::Infrastructure,
            ),
        ] {
            let shown = action.to_string();
            assert_eq!(exit_code(&[item(action)]), code, "{shown}");
        }
        assert_eq!(
            exit_code(&[
                item(ReapAction::Terminated),
                item(ReapAction::Failed("busy".into()))
            ]),
            Code::Infrastructure
        );
        assert_eq!(exit_code(&[]), Code::Ok);
    }
}
