//! Drives a run on machines of your own: a provider that hands out block
//! devices you already have on this machine (named in `BTRFSQA_DEVICES`,
//! the first the test device, the rest the scratch pool) instead of making
//! loop devices, and runs the raid56-scrub suite on them. Needs root; the
//! suite reformats every device named.
//!
//!     BTRFSQA_DEVICES="/dev/vdb /dev/vdc /dev/vdd /dev/vde /dev/vdf" \
//!         cargo run -p btrfsqa-runner --example custom_provider

use std::sync::Arc;

use btrfsqa_cloud::{
    Access, CloudProvider, Machine, MachineSpec, ProvisionError, ReapItem, TeardownError,
};
use btrfsqa_runner::{ConfigSource, DefaultConnector, RunOverrides, Runner, Settings};

/// This machine with the devices given; nothing to make or remove.
struct OwnDevices {
    devices: Vec<String>,
}

#[async_trait::async_trait]
impl CloudProvider for OwnDevices {
    fn id(&self) -> &str {
        "own-devices"
    }

    async fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        let Some((test_dev, scratch)) = self.devices.split_first().filter(|(_, s)| !s.is_empty())
        else {
            return Err(ProvisionError::Config {
                provider: self.id().into(),
                message: "BTRFSQA_DEVICES names fewer than two devices".into(),
            });
        };
        Ok(Machine {
            run_id: spec.run_id.clone(),
            name: spec.name.clone(),
            provider: self.id().into(),
            provider_id: "localhost".into(),
            access: Access::Local,
            test_dev: test_dev.clone(),
            scratch_devs: scratch.to_vec(),
            work_dir: format!("/var/tmp/btrfsqa-own/{}", spec.run_id),
            instance_type: None,
            state: serde_json::Value::Null,
        })
    }

    async fn teardown(&self, _machine: &Machine) -> Result<(), TeardownError> {
        // The runner has unmounted the devices; they are the user's to keep.
        Ok(())
    }

    async fn reap(
        &self,
        _run: Option<btrfsqa_model::RunId>,
        _dry_run: bool,
    ) -> Result<Vec<ReapItem>, TeardownError> {
        Ok(Vec::new())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices: Vec<String> = std::env::var("BTRFSQA_DEVICES")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let source = ConfigSource::load(None)?; // the embedded default: raid56-scrub
    let settings = Settings::resolve(&source, RunOverrides::default())?;
    let suites = btrfsqa_runner::registry::suites(&settings)?;
    let runner = Runner::with_parts(
        settings,
        Arc::new(OwnDevices { devices }),
        Arc::new(DefaultConnector::default()),
        suites,
        None,
    );
    let outcome = runner
        .run(Arc::new(|event| eprintln!("{event:?}")), Default::default())
        .await?;
    println!(
        "{:?}: {} tests",
        outcome.verdict(),
        outcome.report.summary.total()
    );
    Ok(())
}
