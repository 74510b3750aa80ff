//! `btrfsqa provision` and `btrfsqa teardown`: a machine by hand
//! ([`btrfsqa_runner::machine`]).

use btrfsqa_runner::machine::{MachineError, Teardown, provision_machine, teardown_run};
use btrfsqa_runner::{RunOverrides, error_chain};

use super::{Outcome, config_source, load_settings, print_error};
use crate::args::{ProvisionArgs, TeardownArgs};
use crate::exit::Code;

/// Provisions one machine, records it under a new run id, prints it as JSON
/// and leaves it up (`btrfsqa teardown RUN_ID` removes it).
pub async fn provision(args: ProvisionArgs) -> Outcome {
    let overrides = RunOverrides {
        provider: args.provider.clone(),
        ..Default::default()
    };
    let settings = load_settings(&args.config, overrides)?;
    let provisioned = provision_machine(&settings).await?;
    if let Some(err) = &provisioned.not_recorded {
        errln!(
            "warning: cannot record the machine in `{}`: {err}",
            provisioned.run_dir.display()
        );
    }
    outln!(
        "{}",
        serde_json::to_string_pretty(&provisioned.machine).expect("machines serialize")
    );
    errln!(
        "machine is up; remove it with: btrfsqa teardown {}",
        provisioned.run_id
    );
    Ok(Code::Ok)
}

/// Tears down every machine recorded for a run; with no record, reaps
/// whatever the provider finds tagged with the run.
pub async fn teardown(args: TeardownArgs) -> Outcome {
    let run_id = btrfsqa_runner::stored::run_id(&args.run_id)?;
    let overrides = RunOverrides {
        provider: args.provider.clone(),
        ..Default::default()
    };
    let (source, overrides) = config_source(&args.config, overrides)?;
    let teardown = teardown_run(&source, &overrides, &run_id).await?;
    match &teardown {
        Teardown::Reaped(reaped) => {
            errln!(
                "no machine recorded for {run_id}: reaping what `{}` finds tagged with it",
                reaped.provider
            );
            for item in &reaped.items {
                outln!(
                    "{:<10} {:<14} {:<50} {}",
                    item.provider,
                    item.kind,
                    item.id,
                    item.action
                );
            }
        }
        Teardown::Machines(machines) => {
            for torn in machines {
                let machine = &torn.machine;
                match &torn.result {
                    Ok(()) => outln!(
                        "torn down {} ({} {})",
                        machine.name,
                        machine.provider,
                        machine.provider_id
                    ),
                    Err(err @ MachineError::UnknownProvider { config, .. }) => {
                        print_error(config);
                        errln!("error: {err}");
                    }
                    Err(err @ MachineError::Teardown { .. }) => {
                        errln!("error: {}", error_chain(err));
                    }
                    Err(err) => print_error(err),
                }
            }
        }
    }
    Ok(if teardown.is_complete() {
        Code::Ok
    } else {
        Code::Infrastructure
    })
}
