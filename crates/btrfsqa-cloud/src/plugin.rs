//! What a provider declares so that the runner's registry can take it in
//! with one line: its id, its config section and how to make it.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use btrfsqa_model::Section;

use crate::{CloudProvider, ProvisionError};

/// What the runner hands a provider it makes.
#[derive(Debug, Clone, Copy)]
pub struct ProviderContext<'a> {
    /// The results store's root: consoles and other files of the run go
    /// below it.
    pub results_dir: &'a Path,
    /// The run's own deadline, minutes: no machine should outlive it by much.
    pub run_timeout_minutes: u64,
}

/// A provider as the registry knows it.
pub trait ProviderPlugin {
    /// Its id: `run.provider`, `--provider`, `[providers.ID]`, reports.
    const ID: &'static str;
    /// Its machines are VMs on virtio devices: a kernel built for them starts
    /// from `defconfig` with the virtio drivers built in, where one for real
    /// hardware starts from the machine's running config.
    const VIRTIO_GUEST: bool = false;
    /// `[providers.ID]`.
    type Config: Section;

    /// The provider `config` describes.
    fn make(
        config: &Self::Config,
        context: ProviderContext<'_>,
    ) -> impl Future<Output = Result<Arc<dyn CloudProvider>, ProvisionError>> + Send;

    /// Problems with a run of `shards` machines from this provider, as
    /// `(dotted key, message)`: checked only when the run uses it.
    fn check_run(config: &Self::Config, shards: u32) -> Vec<(String, String)> {
        let _ = (config, shards);
        Vec::new()
    }
}
