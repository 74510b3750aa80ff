//! Machines by hand, outside a run: one provisioned and recorded under a
//! run id of its own, left up, and torn down later by that id; and what
//! runs left behind, reaped.
//!
//! A run's own machines are the run controller's (`run/machine.rs`); this
//! module uses the same records, so a run's id tears its machines down too.

use std::path::PathBuf;

use chrono::Utc;

use btrfsqa_cloud::{Machine, MachineSpec, ProvisionError, ReapItem, TeardownError};
use btrfsqa_model::{ModelError, ResultsStore, RunId};

use crate::config::ConfigSource;
use crate::error::{ConfigError, ErrorKind, RunError};
use crate::run::{read_machine_records, write_machine_record};
use crate::settings::{RunOverrides, Settings};

/// A machine that is up, recorded under a run id of its own.
#[derive(Debug)]
pub struct Provisioned {
    /// The run id it is recorded under (what tears it down).
    pub run_id: RunId,
    /// That run's directory.
    pub run_dir: PathBuf,
    /// The machine.
    pub machine: Machine,
    /// Why the machine could not be recorded, if it could not: it is up all
    /// the same, and only the provider's reaping finds it then.
    pub not_recorded: Option<std::io::Error>,
}

/// What a provider found left behind by runs, and what it did with each.
#[derive(Debug)]
pub struct Reaped {
    /// The provider that looked.
    pub provider: String,
    /// What it found.
    pub items: Vec<ReapItem>,
}

impl Reaped {
    /// Whether nothing is still there that should have gone (a failed
    /// removal); deleted, already gone, would be removed in a dry run or
    /// kept because its run is still going are all as they should be.
    pub fn is_complete(&self) -> bool {
        !self.items.iter().any(|item| item.action.is_failure())
    }
}

/// How a run's machines were torn down.
#[derive(Debug)]
pub enum Teardown {
    /// Each recorded machine, with how its teardown went.
    Machines(Vec<MachineTeardown>),
    /// None was recorded: what the provider found tagged with the run.
    Reaped(Reaped),
}

impl Teardown {
    /// Whether everything that should be gone is gone.
    pub fn is_complete(&self) -> bool {
        match self {
            Teardown::Machines(machines) => machines.iter().all(|m| m.result.is_ok()),
            Teardown::Reaped(reaped) => reaped.is_complete(),
        }
    }
}

/// One recorded machine's teardown.
#[derive(Debug)]
pub struct MachineTeardown {
    /// The machine, as recorded.
    pub machine: Machine,
    /// How it went.
    pub result: Result<(), MachineError>,
}

/// Why a machine could not be provisioned or torn down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MachineError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The provider could not be set up.
    #[error(transparent)]
    Provider(RunError),
    /// The results store could not be written.
    #[error(transparent)]
    Store(#[from] ModelError),
    /// The provider could not provision the machine.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The provider could not look for what the run left behind.
    #[error(transparent)]
    Reap(TeardownError),
    /// A recorded machine names a provider the configuration cannot make.
    // The configuration's own error is kept apart (not a source): users
    // see it first, then this line, as before this error had a type.
    #[error("machine `{machine}` has unknown provider `{provider}`")]
    UnknownProvider {
        /// The machine.
        machine: String,
        /// Its provider.
        provider: String,
        /// Why the configuration cannot make it.
        config: ConfigError,
    },
    /// The provider could not tear a machine down.
    #[error("teardown of `{machine}`")]
    Teardown {
        /// The machine.
        machine: String,
        /// The cause.
        #[source]
        source: TeardownError,
    },
}

impl MachineError {
    /// A configuration or provider that cannot be set up is the user's to
    /// fix; anything the provider or the store does after is the
    /// infrastructure's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MachineError::Config(_) | MachineError::Provider(_) => ErrorKind::Usage,
            MachineError::Store(_)
            | MachineError::Provision(_)
            | MachineError::Reap(_)
            | MachineError::UnknownProvider { .. }
            | MachineError::Teardown { .. } => ErrorKind::Infrastructure,
        }
    }
}

/// Provisions one machine of the configured provider (`machine.*` sizes
/// its devices) and records it under a new run id. It stays up.
pub async fn provision_machine(settings: &Settings) -> Result<Provisioned, MachineError> {
    let provider = crate::registry::provider(settings)
        .await
        .map_err(MachineError::Provider)?;
    let store = ResultsStore::new(settings.results_dir());
    let run_id = RunId::generate(Utc::now());
    let run_dir = store.create_run(&run_id)?;
    let config = &settings.config;
    let spec = MachineSpec {
        run_id: run_id.clone(),
        name: format!("{}-0", provider.id()),
        data_devices: config.machine.data_devices,
        device_size: config.machine.device_size_gib << 30,
    };
    let machine = provider.provision(&spec).await?;
    let not_recorded = write_machine_record(&run_dir, &machine).err();
    Ok(Provisioned {
        run_id,
        run_dir,
        machine,
        not_recorded,
    })
}

/// Finds, with the configured provider, what earlier runs (every run, or
/// only `run`) left behind, and removes it unless `dry_run`.
pub async fn reap(
    settings: &Settings,
    run: Option<RunId>,
    dry_run: bool,
) -> Result<Reaped, MachineError> {
    let provider = crate::registry::provider(settings)
        .await
        .map_err(MachineError::Provider)?;
    let items = provider
        .reap(run, dry_run)
        .await
        .map_err(MachineError::Reap)?;
    Ok(Reaped {
        provider: provider.id().to_owned(),
        items,
    })
}

/// Tears down every machine recorded for `run`, each with its own provider;
/// with no record, reaps whatever the provider `overrides` names (or the
/// configured one) finds tagged with the run.
///
/// The configuration is resolved once per provider, which is why this
/// takes its source rather than [`Settings`].
pub async fn teardown_run(
    config: &ConfigSource,
    overrides: &RunOverrides,
    run: &RunId,
) -> Result<Teardown, MachineError> {
    // Where the records are does not depend on the provider.
    let base = Settings::resolve(
        config,
        RunOverrides {
            provider: None,
            ..overrides.clone()
        },
    )?;
    let store = ResultsStore::new(base.results_dir());
    let machines = read_machine_records(&store.run_dir(run));
    if machines.is_empty() {
        let settings = Settings::resolve(config, overrides.clone())?;
        return Ok(Teardown::Reaped(
            reap(&settings, Some(run.clone()), false).await?,
        ));
    }
    let mut torn_down = Vec::new();
    for machine in machines {
        let result = teardown_machine(config, overrides, &machine).await;
        torn_down.push(MachineTeardown { machine, result });
    }
    Ok(Teardown::Machines(torn_down))
}

/// Tears `machine` down with the provider it was made by.
async fn teardown_machine(
    config: &ConfigSource,
    overrides: &RunOverrides,
    machine: &Machine,
) -> Result<(), MachineError> {
    let overrides = RunOverrides {
        provider: Some(machine.provider.clone()),
        ..overrides.clone()
    };
    let settings =
        Settings::resolve(config, overrides).map_err(|config| MachineError::UnknownProvider {
            machine: machine.name.clone(),
            provider: machine.provider.clone(),
            config,
        })?;
    let provider = crate::registry::provider(&settings)
        .await
        .map_err(MachineError::Provider)?;
    provider
        .teardown(machine)
        .await
        .map_err(|source| MachineError::Teardown {
            machine: machine.name.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(results: &std::path::Path) -> (ConfigSource, RunOverrides) {
        let overrides = RunOverrides {
            results_dir: Some(results.to_path_buf()),
            ..RunOverrides::default()
        };
        (ConfigSource::load(None).unwrap(), overrides)
    }

    #[tokio::test]
    async fn a_recorded_machine_of_an_unknown_provider_is_named_and_not_torn_down() {
        let tmp = tempfile::tempdir().unwrap();
        let (config, overrides) = source(tmp.path());
        let run = RunId::generate(Utc::now());
        let run_dir = ResultsStore::new(tmp.path()).create_run(&run).unwrap();
        let machine = Machine {
            run_id: run.clone(),
            name: "gone-0".into(),
            provider: "no-such-provider".into(),
            provider_id: "m-1".into(),
            access: btrfsqa_cloud::Access::Local,
            test_dev: "/dev/loop90".into(),
            scratch_devs: vec![],
            work_dir: "/tmp/btrfsqa-test-work".into(),
            instance_type: None,
            state: serde_json::Value::Null,
        };
        write_machine_record(&run_dir, &machine).unwrap();
        let teardown = teardown_run(&config, &overrides, &run).await.unwrap();
        assert!(!teardown.is_complete());
        let Teardown::Machines(machines) = teardown else {
            panic!("the recorded machine was not used");
        };
        let err = machines[0].result.as_ref().unwrap_err();
        assert_eq!(
            err.to_string(),
            "machine `gone-0` has unknown provider `no-such-provider`"
        );
        assert_eq!(err.kind(), ErrorKind::Infrastructure);
    }
}
