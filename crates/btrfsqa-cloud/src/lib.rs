//! Where btrfsqa test machines come from.
//!
//! A [`CloudProvider`] turns a [`MachineSpec`] into a [`Machine`]: a way to
//! reach it ([`Access`]) and its data devices (one test device and a scratch
//! pool). It never connects to the machine itself: the runner does that
//! through `btrfsqa-remote`. Teardown removes everything the provider made,
//! and [`CloudProvider::reap`] finds what a crashed controller left behind.
//!
//! Providers here: [`LocalProvider`] (this machine, loop devices on sparse
//! files), [`StaticProvider`] (existing SSH hosts) and [`QemuProvider`] (a
//! disposable local VM; [`qemu::image`] makes its image). With the `aws` feature
//! (on by default): `AwsProvider` (EC2 spot machines with EBS volumes).
//!
//! ```no_run
//! use btrfsqa_cloud::{CloudProvider, LocalProvider, LocalSettings, MachineSpec};
//! use btrfsqa_model::RunId;
//!
//! # async fn demo() -> Result<(), btrfsqa_cloud::ProvisionError> {
//! let provider = LocalProvider::new(LocalSettings::new("/var/tmp/btrfsqa"));
//! let spec = MachineSpec::new(RunId::parse("demo").unwrap(), "local-0");
//! let machine = provider.provision(&spec).await?;
//! println!("test device {}", machine.test_dev);
//! provider.teardown(&machine).await.ok();
//! # Ok(()) }
//! ```

#[cfg(feature = "aws")]
mod aws;
mod error;
mod hosts_file;
mod local;
mod machine;
mod plugin;
pub mod qemu;
mod state_home;
mod static_hosts;
mod tool;

#[cfg(feature = "aws")]
pub use aws::{
    AmiSelector, AwsConfig, AwsError, AwsMachineState, AwsProvider, AwsSettings, Ec2Error,
    RetryPolicy,
};
pub use error::{CommandError, ProvisionError, TeardownError};
pub use hosts_file::{HostsFileConfig, HostsFileProvider};
pub use local::{LocalConfig, LocalProvider, LocalSettings};
pub use machine::{Access, BootKernel, Machine, MachineSpec, ReapAction, ReapItem, SshEndpoint};
pub use plugin::{ProviderContext, ProviderPlugin};
pub use qemu::{Accel, QemuConfig, QemuProvider, QemuSettings};
pub use static_hosts::{StaticHost, StaticProvider, StaticSettings};

/// A source of test machines.
///
/// Implementers: `provision` must either return a usable machine or leave
/// nothing behind (undo what it made before returning the error; when even
/// that fails, say in the error what may be left). `teardown` must be
/// idempotent and must only ever remove what this run made. Everything a
/// provider creates is labelled with the run id so `reap` can find it after
/// a crash of the controller.
#[mockall::automock]
#[async_trait::async_trait]
pub trait CloudProvider: Send + Sync {
    /// The provider's id (`local`, `static`, `aws`, `qemu`).
    fn id(&self) -> &str;

    /// Makes (or claims) one machine.
    async fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError>;

    /// Makes the machines of a run at once, one result per spec, in order:
    /// a run's machines come up together, and a provider that can ask for
    /// them in one request (an EC2 fleet) does. The default provisions them
    /// concurrently, one by one. A machine that fails leaves the others.
    async fn provision_many(&self, specs: &[MachineSpec]) -> Vec<Result<Machine, ProvisionError>> {
        futures_util::future::join_all(specs.iter().map(|spec| self.provision(spec))).await
    }

    /// Removes everything made for `machine`. Safe to call twice.
    async fn teardown(&self, machine: &Machine) -> Result<(), TeardownError>;

    /// Finds what earlier runs left behind (all runs, or only `run`), and
    /// removes it unless `dry_run`. Returns what was found.
    async fn reap(
        &self,
        run: Option<btrfsqa_model::RunId>,
        dry_run: bool,
    ) -> Result<Vec<ReapItem>, TeardownError>;

    /// Boots `machine` into `kernel` in the provider's own way (a VM
    /// relaunched with `-kernel`; its disks keep their contents). Returns once
    /// the machine is starting; the caller connects again and checks
    /// `uname -r`. Providers whose machines install and reboot kernels
    /// themselves (cloud and static hosts) keep this default, which answers
    /// [`ProvisionError::Unsupported`].
    async fn boot_kernel(
        &self,
        machine: &Machine,
        kernel: &BootKernel,
    ) -> Result<(), ProvisionError> {
        let _ = kernel;
        Err(ProvisionError::Unsupported {
            provider: machine.provider.clone(),
            operation: "boot a kernel from the controller".to_owned(),
        })
    }

    /// Resets a machine that crashed or hung: a hard reset (VM reset, EC2
    /// reboot) that keeps its disks and, for a VM booted with
    /// [`CloudProvider::boot_kernel`], boots the same kernel again. Returns once
    /// the machine is starting; the caller connects again. Providers that
    /// cannot reset their machines (this machine, static hosts) keep this
    /// default, which answers [`ProvisionError::Unsupported`].
    async fn reset(&self, machine: &Machine) -> Result<(), ProvisionError> {
        Err(ProvisionError::Unsupported {
            provider: machine.provider.clone(),
            operation: "reset a machine".to_owned(),
        })
    }

    /// The machine's console output so far (serial console of a VM, EC2
    /// console output), or `None` when the provider has no console. The
    /// runner looks for panics and oopses in it and keeps an excerpt.
    async fn console(&self, machine: &Machine) -> Option<String> {
        let _ = machine;
        None
    }

    /// Why the machine is about to go away or is gone without the run asking
    /// (a spot interruption notice, a terminated instance), or `None`. Polled
    /// by the runner while tests run; a notice interrupts the run, which
    /// stays resumable.
    async fn interruption_notice(&self, machine: &Machine) -> Option<String> {
        let _ = machine;
        None
    }
}
