//! `btrfsqa provision` and `btrfsqa teardown`: a machine by hand.

use chrono::Utc;

use btrfsqa_cloud::MachineSpec;
use btrfsqa_model::{ResultsStore, RunId};
use btrfsqa_runner::{RunOverrides, error_chain, read_machine_records, write_machine_record};

use super::{load_settings, print_error};
use crate::args::{ProvisionArgs, TeardownArgs};
use crate::exit::Code;

/// Provisions one machine, records it under a new run id, prints it as JSON
/// and leaves it up (`btrfsqa teardown RUN_ID` removes it).
pub async fn provision(args: ProvisionArgs) -> Code {
    let overrides = RunOverrides {
        provider: args
            .provider
            .as_deref()
            .map(|p| p.parse().expect("clap checked the value")),
        ..Default::default()
    };
    let settings = match load_settings(&args.config, overrides) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let provider = match btrfsqa_runner::registry::provider(&settings).await {
        Ok(provider) => provider,
        Err(err) => {
            print_error(&err);
            return Code::Usage;
        }
    };
    let store = ResultsStore::new(settings.results_dir());
    let run_id = RunId::generate(Utc::now());
    let run_dir = match store.create_run(&run_id) {
        Ok(dir) => dir,
        Err(err) => {
            print_error(&err);
            return Code::Infrastructure;
        }
    };
    let config = &settings.config;
    let spec = MachineSpec {
        run_id: run_id.clone(),
        name: format!("{}-0", provider.id()),
        data_devices: config.machine.data_devices,
        device_size: config.machine.device_size_gib << 30,
    };
    match provider.provision(&spec).await {
        Ok(machine) => {
            if let Err(err) = write_machine_record(&run_dir, &machine) {
                errln!(
                    "warning: cannot record the machine in `{}`: {err}",
                    run_dir.display()
                );
            }
            outln!(
                "{}",
                serde_json::to_string_pretty(&machine).expect("machines serialize")
            );
            errln!("machine is up; remove it with: btrfsqa teardown {run_id}");
            Code::Ok
        }
        Err(err) => {
            print_error(&err);
            Code::Infrastructure
        }
    }
}

/// Tears down every machine recorded for a run; with no record, reaps
/// whatever the provider finds tagged with the run.
pub async fn teardown(args: TeardownArgs) -> Code {
    let run_id = match RunId::parse(&args.run_id) {
        Ok(run) => run,
        Err(err) => {
            print_error(&err);
            return Code::Usage;
        }
    };
    let base = match load_settings(&args.config, RunOverrides::default()) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let store = ResultsStore::new(base.results_dir());
    let machines = read_machine_records(&store.run_dir(&run_id));
    let mut code = Code::Ok;
    if machines.is_empty() {
        let provider_kind = args
            .provider
            .as_deref()
            .map(|p| p.parse().expect("clap checked the value"));
        let settings = match load_settings(
            &args.config,
            RunOverrides {
                provider: provider_kind,
                ..Default::default()
            },
        ) {
            Ok(settings) => settings,
            Err(code) => return code,
        };
        let provider = match btrfsqa_runner::registry::provider(&settings).await {
            Ok(provider) => provider,
            Err(err) => {
                print_error(&err);
                return Code::Usage;
            }
        };
        errln!(
            "no machine recorded for {run_id}: reaping what `{}` finds tagged with it",
            provider.id()
        );
        match provider.reap(Some(run_id), false).await {
            Ok(items) => {
                for item in items {
                    outln!(
                        "{:<10} {:<14} {:<50} {}",
                        item.provider,
                        item.kind,
                        item.id,
                        item.action
                    );
                    if item.action.is_failure() {
                        code = Code::Infrastructure;
                    }
                }
            }
            Err(err) => {
                print_error(&err);
                code = Code::Infrastructure;
            }
        }
        return code;
    }
    for machine in machines {
        let settings = match machine.provider.parse() {
            Ok(kind) => load_settings(
                &args.config,
                RunOverrides {
                    provider: Some(kind),
                    ..Default::default()
                },
            ),
            Err(_) => Err(Code::Usage),
        };
        let Ok(settings) = settings else {
            errln!(
                "error: machine `{}` has unknown provider `{}`",
                machine.name,
                machine.provider
            );
            code = Code::Infrastructure;
            continue;
        };
        let provider = match btrfsqa_runner::registry::provider(&settings).await {
            Ok(provider) => provider,
            Err(err) => {
                print_error(&err);
                code = Code::Infrastructure;
                continue;
            }
        };
        match provider.teardown(&machine).await {
            Ok(()) => outln!(
                "torn down {} ({} {})",
                machine.name,
                machine.provider,
                machine.provider_id
            ),
            Err(err) => {
                errln!(
                    "error: teardown of `{}`: {}",
                    machine.name,
                    error_chain(&err)
                );
                code = Code::Infrastructure;
            }
        }
    }
    code
}
