//! The `aws` provider: EC2 spot machines with six EBS volumes, locked down,
//! a run's machines from one instant fleet, and nothing ever leaked. See
//! [`AwsProvider`].

mod api;
mod config;
mod console;
mod error;
mod fleet;
mod launch;
mod local_files;
mod provision;
mod reap;
mod retry;
mod running;
mod sdk;
mod settings;
mod tags;
mod teardown;

#[cfg(test)]
mod test_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CloudProvider, Machine, MachineSpec, ProvisionError, ReapItem, TeardownError};

use api::Ec2Api;
pub use config::AwsConfig;
pub use error::{AwsError, Ec2Error};
pub use settings::{AmiSelector, AwsSettings, RetryPolicy};

const PROVIDER: &str = "aws";

/// Gives the EC2 client of a region.
type ApiFactory = Arc<dyn Fn(&str) -> Arc<dyn Ec2Api> + Send + Sync>;

/// The `aws` provider: EC2 spot machines with six EBS volumes, locked down,
/// and nothing ever leaked.
///
/// # What a machine is made of
///
/// For each [`MachineSpec`] the provider makes, in this order, and tags with
/// the run id, the machine name, the owner, the creation and expiry times
/// and a `Name`:
///
/// 1. an ed25519 key generated with `ssh-keygen` into a private directory
///    under [`AwsSettings::key_dir`], imported as a key pair (unless
///    [`AwsSettings::key_name`] names an existing one, which is never deleted);
/// 2. a security group that lets in TCP 22 only from
///    [`AwsSettings::ssh_cidr`] or, when unset, from the operator's detected
///    public address (never from the whole Internet unless configured so);
/// 3. one instance, one-time spot by default, trying each of
///    [`AwsSettings::instance_types`] in turn when EC2 has no capacity, then
///    on-demand if [`AwsSettings::allow_on_demand`]; with the root volume and
///    the data volumes (gp3, `DeleteOnTermination`) in its block device
///    mapping, IMDSv2 only, no instance role, shutdown behaviour
///    `terminate`, and user data that powers it off at the run's deadline on
///    every boot, so a lost controller still stops the bill.
///
/// If any step fails, everything made so far is removed before the error is
/// returned; what could not be removed is named in the error.
///
/// # A run's machines together
///
/// [`provision_many`](CloudProvider::provision_many) (what the runner calls
/// with all of a run's machines) asks EC2 for all of them in one request: an
/// instant fleet (CreateFleet of type `instant`) from a launch template
/// with the image, the volumes, the user data and the settings above, with
/// one override per instance type (in the configured subnet or zone), in the
/// configured order; spot first when [`AwsSettings::spot`], then, when
/// [`AwsSettings::allow_on_demand`], a second, on-demand fleet for what spot
/// could not give. One request cannot give its instances different key
/// pairs or security groups, so the machines of a fleet share one of each,
/// the run's (`btrfsqa-<run>`, tagged with the run and no machine), with the
/// launch template and the fleets (named in the template's and the group's
/// tags, `btrfsqa:fleet:<id>`: EC2 lists an instant fleet only by id). Each instance is then named after its
/// machine (tags on it and its volumes) and becomes its machine as one made
/// by [`provision`](CloudProvider::provision) does, in the order of the
/// specs. A machine EC2 gave no instance for is that machine's error, with
/// EC2's codes per instance type and market; one that fails later has its
/// instance terminated; the others go on. When no machine comes of it, what
/// the run shares is removed at once. Machines that need different volumes
/// are made one by one.
///
/// # Devices
///
/// The machine's devices are given as the guest sees them, derived from the
/// volume ids EC2 reports, never from attach order:
/// `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123…` (udev's name on
/// Nitro instances, which expose EBS volumes as NVMe disks whose serial is
/// the volume id). Xen instances (types older than the 5th generation) show
/// a volume mapped at `/dev/sdf` as `/dev/xvdf` instead; those names are kept
/// in [`AwsMachineState::xen_devices`] for such types.
///
/// # Host keys
///
/// Provisioning polls, for up to [`AwsSettings::host_key_wait`], the console
/// output for the host keys cloud-init prints there, and the instance's
/// tags for a key it reports itself (`btrfsqa:host-key`, `type base64`; set
/// by an image that does so, or by the tests: the EC2 emulator prints no
/// console), and writes them to the machine's `known_hosts` file, which the
/// SSH client checks strictly. A machine whose key cannot be learned in
/// time is a provisioning error: it is removed like any other failure, and
/// never connected to.
///
/// # Teardown and reaping
///
/// Teardown terminates the instance, waits until it is terminated, then
/// deletes the volumes, the key pair and the security group that carry this
/// run's and machine's tags, and nothing else. The teardown of a fleet's
/// machine that finds no other instance of the run left deletes the run's
/// fleets (and so its own instance with them), then what the run's machines
/// shared: its launch template, key pair and security group (kept while a
/// fleet they name cannot be deleted). `reap` finds, in every region of
/// [`AwsSettings::reap_regions`], what carries the run tag (fleets and
/// launch templates too) and is expired, or belongs to a run with no
/// instance left, or to the run asked for, and removes it.
///
/// # While the run uses a machine
///
/// [`reset`](CloudProvider::reset) reboots the instance (RebootInstances;
/// EC2 turns it into a hard reboot when the guest does not shut down
/// within a few minutes, as a hung kernel does not) and waits, polling
/// with growing pauses for up to five minutes (or
/// [`AwsSettings::launch_timeout`] if shorter), until it is `running`. An
/// instance that is terminated, shutting down, stopped or no longer known
/// cannot be reset and is reported as gone ([`AwsError::Gone`]); one that
/// does not carry the machine's tags is never touched.
/// [`console`](CloudProvider::console) is GetConsoleOutput (the latest
/// output on instance types that keep it), decoded.
/// [`interruption_notice`](CloudProvider::interruption_notice) reports an
/// instance that is `shutting-down`, `terminated`, `stopping` or `stopped`
/// (with EC2's reason), or no longer known, and a spot request whose status
/// says the instance is being taken back (`marked-for-termination`, the
/// two-minute warning, and the `instance-terminated-*` and
/// `instance-stopped-*` codes). A call that fails is no notice: the runner
/// asks again.
///
/// # Permissions
///
/// The credentials need `ec2:` `DescribeImages`, `DescribeVpcs`,
/// `DescribeSubnets`, `ImportKeyPair`, `DescribeKeyPairs`, `DeleteKeyPair`,
/// `CreateSecurityGroup`, `AuthorizeSecurityGroupIngress`,
/// `DescribeSecurityGroups`, `DeleteSecurityGroup`, `RunInstances`,
/// `CreateTags` (tags are set at creation), `DescribeInstances`,
/// `TerminateInstances`, `DescribeVolumes`, `DeleteVolume`,
/// `DescribeSpotPriceHistory`, `GetConsoleOutput`, `RebootInstances` (for
/// resets) and `DescribeSpotInstanceRequests` (for interruption notices);
/// for a run's fleet also `CreateLaunchTemplate`, `DescribeLaunchTemplates`,
/// `DeleteLaunchTemplate`, `CreateFleet`, `DescribeFleets`, `DeleteFleets`
/// and `CreateTags` on existing resources (each instance and its volumes
/// are named after their machine once launched; the run's launch template
/// and security group name its fleets, which EC2 lists only by id). The
/// account's first spot launch also needs
/// `iam:CreateServiceLinkedRole` for `spot.amazonaws.com`, and its first
/// fleet for `ec2fleet.amazonaws.com`. A missing one is reported by name
/// ([`Ec2Error::Unauthorized`]).
///
/// # Credentials
///
/// Only the standard AWS chain (environment, profiles, SSO, process
/// credentials, instance role), and the standard environment (`AWS_REGION`,
/// `AWS_PROFILE`, `AWS_ENDPOINT_URL`). btrfsqa never writes a credential
/// anywhere and the instance gets none.
///
/// ```no_run
/// use btrfsqa_cloud::{AwsProvider, AwsSettings, CloudProvider, MachineSpec};
/// use btrfsqa_model::RunId;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = AwsSettings {
///     region: Some("eu-west-1".to_owned()),
///     ssh_cidr: Some("203.0.113.7/32".to_owned()),
///     ..AwsSettings::default()
/// };
/// let provider = AwsProvider::new(settings).await?;
/// let spec = MachineSpec::new(RunId::generate(chrono::Utc::now()), "aws-0");
/// let machine = provider.provision(&spec).await?;
/// // ... run the suites over SSH ...
/// let cost = AwsProvider::cost_estimate(&machine, chrono::Utc::now());
/// provider.teardown(&machine).await?;
/// # let _ = cost; Ok(()) }
/// ```
pub struct AwsProvider {
    settings: AwsSettings,
    region: String,
    apis: ApiFactory,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("region", &self.region)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What an AWS machine's [`Machine::state`] holds: what teardown, the cost
/// estimate and the run report need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwsMachineState {
    /// Region of the instance.
    pub region: String,
    /// Instance id.
    pub instance_id: String,
    /// Instance type it was launched as.
    pub instance_type: String,
    /// `spot` or `on-demand`.
    pub market: String,
    /// Spot price per hour in USD at launch; `None` on-demand (EC2 does not
    /// tell on-demand prices) or when the price history could not be read.
    pub hourly_price_usd: Option<f64>,
    /// When the instance was launched.
    pub launched_at: DateTime<Utc>,
    /// When it powers itself off and its resources count as expired.
    pub expires_at: DateTime<Utc>,
    /// Its availability zone.
    pub availability_zone: Option<String>,
    /// Data volume ids, the test device's first.
    pub volume_ids: Vec<String>,
    /// The data devices' names on a Xen instance (`/dev/xvdf`, ...), same order.
    pub xen_devices: Vec<String>,
    /// The key pair's name.
    pub key_name: String,
    /// The key pair's id when this run made it (and teardown deletes it).
    pub key_pair_id: Option<String>,
    /// Security group id.
    pub security_group_id: String,
    /// The local directory with the generated key and known_hosts.
    pub local_dir: PathBuf,
    /// The pinned host keys (`type base64`), from the console or the
    /// instance's `btrfsqa:host-key` tag.
    pub host_keys: Vec<String>,
    /// The run's launch template, when the machine came from the run's
    /// fleet: then the key pair, the security group and the template are
    /// the run's, and go with its last machine.
    #[serde(default)]
    pub launch_template_id: Option<String>,
    /// The instant fleet that launched it, if one did.
    #[serde(default)]
    pub fleet_id: Option<String>,
}

impl AwsMachineState {
    /// Reads the state of a machine the `aws` provider made.
    pub fn from_machine(machine: &Machine) -> Option<Self> {
        if machine.provider != PROVIDER {
            return None;
        }
        serde_json::from_value(machine.state.clone()).ok()
    }
}

fn config_error(message: impl Into<String>) -> ProvisionError {
    ProvisionError::Config {
        provider: PROVIDER.to_owned(),
        message: message.into(),
    }
}

impl AwsProvider {
    /// A provider with the standard AWS configuration chain (environment,
    /// profiles, SSO, instance role), overridden by the settings' region,
    /// profile and endpoint. Makes no request yet.
    pub async fn new(settings: AwsSettings) -> Result<Self, ProvisionError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        Self::from_sdk_config(settings, &config)
    }

    /// A provider over an SDK configuration the caller built (an embedder
    /// with its own credential provider, or a test with dummy credentials).
    /// The settings' region and endpoint still take precedence.
    pub fn from_sdk_config(
        settings: AwsSettings,
        config: &aws_config::SdkConfig,
    ) -> Result<Self, ProvisionError> {
        let region = settings
            .region
            .clone()
            .or_else(|| config.region().map(ToString::to_string))
            .ok_or_else(|| {
                config_error("no region: set `region` in the configuration or `AWS_REGION`")
            })?;
        let mut base = aws_sdk_ec2::config::Builder::from(config)
            // The provider retries itself (retry.rs), knowing which errors
            // pass; two layers would multiply the waits.
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_ec2::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .operation_attempt_timeout(std::time::Duration::from_secs(60))
                    .build(),
            );
        if let Some(url) = &settings.endpoint_url {
            base = base.endpoint_url(url);
        }
        let clients: Mutex<HashMap<String, Arc<dyn Ec2Api>>> = Mutex::default();
        let apis: ApiFactory = Arc::new(move |region: &str| {
            let mut clients = clients.lock().unwrap_or_else(|poison| poison.into_inner());
            clients
                .entry(region.to_owned())
                .or_insert_with(|| {
                    let config = base
                        .clone()
                        .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
                        .build();
                    Arc::new(sdk::SdkEc2::new(aws_sdk_ec2::Client::from_conf(config)))
                })
                .clone()
        });
        Ok(AwsProvider {
            settings,
            region,
            apis,
        })
    }

    /// A provider over any [`Ec2Api`] (the tests' mocks).
    #[cfg(test)]
    pub(crate) fn with_api(settings: AwsSettings, region: &str, apis: ApiFactory) -> Self {
        AwsProvider {
            settings,
            region: region.to_owned(),
            apis,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// The region machines are launched in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The regions `reap` searches.
    pub fn reap_regions(&self) -> Vec<String> {
        if self.settings.reap_regions.is_empty() {
            vec![self.region.clone()]
        } else {
            self.settings.reap_regions.clone()
        }
    }

    fn api(&self, region: &str) -> Arc<dyn Ec2Api> {
        (self.apis)(region)
    }

    /// What the machine cost from launch to `ended_at`, in USD: the spot
    /// price at launch times the hours (EC2 bills spot per second). `None`
    /// when the price is unknown (on-demand, or not an AWS machine).
    pub fn cost_estimate(machine: &Machine, ended_at: DateTime<Utc>) -> Option<f64> {
        let state = AwsMachineState::from_machine(machine)?;
        let price = state.hourly_price_usd?;
        let seconds = (ended_at - state.launched_at).num_milliseconds().max(0) as f64 / 1000.0;
        Some(price * seconds / 3600.0)
    }

    /// The host keys the instance printed on its console, as `type base64`
    /// (best effort: empty while there are none, or on images that print
    /// none; an error when the console shows conflicting keys).
    pub async fn console_host_keys(
        &self,
        machine: &Machine,
    ) -> Result<Vec<String>, ProvisionError> {
        let state = AwsMachineState::from_machine(machine)
            .ok_or_else(|| config_error(format!("`{}` is not an aws machine", machine.name)))?;
        let api = self.api(&state.region);
        let output = retry::retry(&self.settings.retry, retry::transient, || {
            api.console_output(&state.instance_id)
        })
        .await
        .map_err(|error| ProvisionError::Failed {
            provider: PROVIDER.to_owned(),
            operation: format!("read the console of `{}`", state.instance_id),
            leftovers: Vec::new(),
            source: Box::new(AwsError::from(error)),
        })?;
        match output.as_deref().map(console::host_keys) {
            Some(console::ConsoleHostKeys::Keys(keys)) => Ok(keys),
            Some(console::ConsoleHostKeys::Conflicting) => Err(ProvisionError::Failed {
                provider: PROVIDER.to_owned(),
                operation: format!("read the host keys of `{}`", state.instance_id),
                leftovers: Vec::new(),
                source: Box::new(AwsError::ConflictingHostKeys {
                    instance: state.instance_id.clone(),
                }),
            }),
            Some(console::ConsoleHostKeys::NotYet) | None => Ok(Vec::new()),
        }
    }

    /// [`CloudProvider::reap`] as if the time were `now` (to see what would
    /// be reaped later, and for tests).
    pub async fn reap_at(
        &self,
        run: Option<btrfsqa_model::RunId>,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReapItem>, TeardownError> {
        self.reap_all(run.as_ref().map(|run| run.as_str()), dry_run, now)
            .await
    }
}

#[async_trait::async_trait]
impl CloudProvider for AwsProvider {
    fn id(&self) -> &str {
        PROVIDER
    }

    async fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        self.provision_machine(spec).await
    }

    async fn provision_many(&self, specs: &[MachineSpec]) -> Vec<Result<Machine, ProvisionError>> {
        self.provision_fleet(specs).await
    }

    async fn teardown(&self, machine: &Machine) -> Result<(), TeardownError> {
        self.teardown_machine(machine).await
    }

    async fn reap(
        &self,
        run: Option<btrfsqa_model::RunId>,
        dry_run: bool,
    ) -> Result<Vec<ReapItem>, TeardownError> {
        self.reap_at(run, dry_run, Utc::now()).await
    }

    async fn reset(&self, machine: &Machine) -> Result<(), ProvisionError> {
        self.reset_machine(machine).await
    }

    async fn console(&self, machine: &Machine) -> Option<String> {
        self.console_text(machine).await
    }

    async fn interruption_notice(&self, machine: &Machine) -> Option<String> {
        self.interruption(machine).await
    }
}
