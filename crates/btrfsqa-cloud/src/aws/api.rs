//! The EC2 calls the provider makes, as a small trait over plain types.
//!
//! The provider's logic (fallbacks, cleanup, reaping) is written against
//! [`Ec2Api`] so that every error path can be tested with `MockEc2Api`; the
//! one real implementation is a thin adapter over `aws_sdk_ec2::Client`
//! (`sdk.rs`). No retrying happens here: the caller decides what to retry.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::error::Ec2Error;

/// An EC2 filter (`tag:btrfsqa:run-id` = `[run]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(
        name: impl Into<String>,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Filter {
            name: name.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// Resources whose tag `key` is `value`.
    pub fn tag(key: &str, value: &str) -> Self {
        Filter::new(format!("tag:{key}"), [value])
    }

    /// Resources that carry tag `key`, whatever its value.
    pub fn tag_key(key: &str) -> Self {
        Filter::new("tag-key", [key])
    }
}

/// A machine image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ImageInfo {
    pub id: String,
    pub name: Option<String>,
    /// ISO 8601, as EC2 gives it; compares correctly as text.
    pub creation_date: Option<String>,
    /// The device name the root volume must be mapped to (`/dev/xvda`).
    pub root_device_name: Option<String>,
}

/// Spot or on-demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Market {
    /// One-time spot, terminated on interruption.
    Spot {
        max_price: Option<String>,
    },
    OnDemand,
}

impl Market {
    pub fn label(&self) -> &'static str {
        match self {
            Market::Spot { .. } => "spot",
            Market::OnDemand => "on-demand",
        }
    }
}

/// One RunInstances request: one instance, its volumes and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaunchRequest {
    pub image_id: String,
    pub instance_type: String,
    pub market: Market,
    pub key_name: String,
    pub security_group_id: String,
    pub subnet_id: Option<String>,
    pub availability_zone: Option<String>,
    pub associate_public_ip: bool,
    pub root_device_name: String,
    pub root_volume_gib: u32,
    /// Device names of the data volumes (`/dev/sdf`, ...), in order.
    pub data_device_names: Vec<String>,
    pub volume_gib: u32,
    pub volume_type: String,
    /// Plain text; the adapter encodes it.
    pub user_data: String,
    /// Put on the instance and on its volumes.
    pub tags: Vec<(String, String)>,
    /// Makes a retried request idempotent.
    pub client_token: String,
}

/// One CreateLaunchTemplate request: what every instance of a run's fleet
/// shares (the instance type and market are the fleet's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateRequest {
    pub name: String,
    pub image_id: String,
    pub key_name: String,
    pub security_group_id: String,
    /// The fleet launches into a configured subnet: the public address is
    /// asked for through the network interface (the overrides name the
    /// subnet).
    pub in_subnet: bool,
    pub associate_public_ip: bool,
    pub root_device_name: String,
    pub root_volume_gib: u32,
    /// Device names of the data volumes (`/dev/sdf`, ...), in order.
    pub data_device_names: Vec<String>,
    pub volume_gib: u32,
    pub volume_type: String,
    /// Plain text; the adapter encodes it.
    pub user_data: String,
    /// Put on the template, and on the instances and volumes launched from it.
    pub tags: Vec<(String, String)>,
    /// Makes a retried request idempotent.
    pub client_token: String,
}

/// One choice an instant fleet has: an instance type, in the configured
/// subnet or zone, by priority (0 first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FleetOverride {
    pub instance_type: String,
    pub subnet_id: Option<String>,
    pub availability_zone: Option<String>,
    pub priority: u32,
}

impl FleetOverride {
    /// `m6i.large`, or `m6i.large in subnet-1`.
    pub fn label(&self) -> String {
        match self.subnet_id.as_ref().or(self.availability_zone.as_ref()) {
            Some(place) => format!("{} in {place}", self.instance_type),
            None => self.instance_type.clone(),
        }
    }
}

/// One CreateFleet request of type `instant`: `count` instances of one
/// market from a launch template, over its overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FleetRequest {
    pub launch_template_id: String,
    pub overrides: Vec<FleetOverride>,
    pub market: Market,
    pub count: u32,
    /// Put on the fleet.
    pub tags: Vec<(String, String)>,
    /// Makes a retried request idempotent.
    pub client_token: String,
}

/// An instance an instant fleet launched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FleetInstance {
    pub id: String,
    pub instance_type: Option<String>,
    /// `spot` or `on-demand`, as EC2 says.
    pub lifecycle: Option<String>,
}

/// Why an instant fleet launched nothing from one of its overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FleetError {
    pub instance_type: Option<String>,
    /// The override's subnet or zone, when it names one.
    pub place: Option<String>,
    /// `spot` or `on-demand`, as EC2 says.
    pub lifecycle: Option<String>,
    /// EC2's error code (`InsufficientInstanceCapacity`).
    pub code: String,
    pub message: String,
}

/// What an instant fleet did: the instances it launched, and why it
/// launched no more.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FleetOutcome {
    pub fleet_id: Option<String>,
    pub instances: Vec<FleetInstance>,
    pub errors: Vec<FleetError>,
}

/// An instance as DescribeInstances shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct InstanceInfo {
    pub id: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`.
    pub state: String,
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub launch_time: Option<DateTime<Utc>>,
    pub tags: BTreeMap<String, String>,
    /// (device name, volume id) of every attached EBS volume.
    pub block_devices: Vec<(String, String)>,
    /// Why it is in its state (`StateReason`'s message, e.g.
    /// `Server.SpotInstanceTermination: Spot instance termination`); `None`
    /// when EC2 gives none or an empty one.
    pub state_reason: Option<String>,
    /// The spot request behind a spot instance.
    pub spot_request_id: Option<String>,
}

/// A spot instance request as DescribeSpotInstanceRequests shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SpotRequestInfo {
    pub id: String,
    /// `open`, `active`, `closed`, `cancelled`, `failed`.
    pub state: Option<String>,
    /// The status code (`fulfilled`, `marked-for-termination`, ...).
    pub status_code: Option<String>,
    /// The status message, when EC2 gives a non-empty one.
    pub status_message: Option<String>,
    pub instance_id: Option<String>,
}

/// A volume, key pair, security group, launch template or fleet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ResourceInfo {
    /// Volume id, key pair id, group id, template id, fleet id.
    pub id: String,
    /// Key name, group name or template name.
    pub name: Option<String>,
    /// Volume state (`available`, `in-use`) or fleet state (`active`,
    /// `deleted_terminating`), when there is one.
    pub state: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// The EC2 calls btrfsqa needs, one method per API action.
#[cfg_attr(test, mockall::automock)]
#[async_trait::async_trait]
pub(crate) trait Ec2Api: Send + Sync {
    /// DescribeImages by ids, or by filters and owners.
    async fn describe_images(
        &self,
        ids: &[String],
        owners: &[String],
        filters: &[Filter],
    ) -> Result<Vec<ImageInfo>, Ec2Error>;

    /// DescribeVpcs: the region's default VPC, if it has one.
    async fn default_vpc(&self) -> Result<Option<String>, Ec2Error>;

    /// DescribeSubnets: the VPC a subnet belongs to.
    async fn subnet_vpc(&self, subnet_id: &str) -> Result<String, Ec2Error>;

    /// ImportKeyPair with tags; returns the key pair id.
    async fn import_key_pair(
        &self,
        name: &str,
        public_key: &str,
        tags: &[(String, String)],
    ) -> Result<String, Ec2Error>;

    /// DescribeKeyPairs.
    async fn describe_key_pairs(&self, filters: &[Filter]) -> Result<Vec<ResourceInfo>, Ec2Error>;

    /// DeleteKeyPair, by name when there is one (every implementation
    /// knows names; some emulators ignore ids), else by id.
    async fn delete_key_pair(
        &self,
        key_pair_id: &str,
        key_name: Option<String>,
    ) -> Result<(), Ec2Error>;

    /// CreateSecurityGroup with tags; returns the group id.
    async fn create_security_group(
        &self,
        name: &str,
        description: &str,
        vpc_id: &str,
        tags: &[(String, String)],
    ) -> Result<String, Ec2Error>;

    /// AuthorizeSecurityGroupIngress: TCP 22 from `cidr` (IPv4 or IPv6).
    async fn authorize_ssh(&self, group_id: &str, cidr: &str) -> Result<(), Ec2Error>;

    /// DescribeSecurityGroups.
    async fn describe_security_groups(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<ResourceInfo>, Ec2Error>;

    /// DeleteSecurityGroup by id.
    async fn delete_security_group(&self, group_id: &str) -> Result<(), Ec2Error>;

    /// RunInstances for one instance; returns its id.
    async fn run_instance(&self, request: &LaunchRequest) -> Result<String, Ec2Error>;

    /// DescribeInstances by ids and/or filters (all pages).
    async fn describe_instances(
        &self,
        ids: &[String],
        filters: &[Filter],
    ) -> Result<Vec<InstanceInfo>, Ec2Error>;

    /// TerminateInstances.
    async fn terminate_instances(&self, ids: &[String]) -> Result<(), Ec2Error>;

    /// RebootInstances.
    async fn reboot_instances(&self, ids: &[String]) -> Result<(), Ec2Error>;

    /// DescribeSpotInstanceRequests by ids (all pages).
    async fn describe_spot_instance_requests(
        &self,
        ids: &[String],
    ) -> Result<Vec<SpotRequestInfo>, Ec2Error>;

    /// DescribeVolumes (all pages).
    async fn describe_volumes(&self, filters: &[Filter]) -> Result<Vec<ResourceInfo>, Ec2Error>;

    /// DeleteVolume.
    async fn delete_volume(&self, volume_id: &str) -> Result<(), Ec2Error>;

    /// DescribeSpotPriceHistory: the latest Linux price per hour in USD.
    async fn spot_price(
        &self,
        instance_type: &str,
        availability_zone: &str,
    ) -> Result<Option<f64>, Ec2Error>;

    /// GetConsoleOutput, decoded; `None` while there is none yet.
    async fn console_output(&self, instance_id: &str) -> Result<Option<String>, Ec2Error>;

    /// CreateLaunchTemplate with tags; returns the template id.
    async fn create_launch_template(&self, request: &TemplateRequest) -> Result<String, Ec2Error>;

    /// DescribeLaunchTemplates (all pages).
    async fn describe_launch_templates(
        &self,
        filters: &[Filter],
    ) -> Result<Vec<ResourceInfo>, Ec2Error>;

    /// DeleteLaunchTemplate by id.
    async fn delete_launch_template(&self, template_id: &str) -> Result<(), Ec2Error>;

    /// CreateFleet of type `instant`: the instances launched, and the
    /// errors of the overrides that launched fewer than asked.
    async fn create_fleet(&self, request: &FleetRequest) -> Result<FleetOutcome, Ec2Error>;

    /// DescribeFleets, with their state and tags (all pages): the fleets
    /// `ids` names, or with none, every fleet EC2 lists. EC2 cannot filter
    /// fleets by tag, and lists an `instant` fleet only when asked by id.
    async fn describe_fleets(&self, ids: &[String]) -> Result<Vec<ResourceInfo>, Ec2Error>;

    /// DeleteFleets for one fleet, terminating its instances (the only way
    /// an instant fleet can be deleted). A refusal is an error with EC2's
    /// code (`fleetIdDoesNotExist`).
    async fn delete_fleet(&self, fleet_id: &str) -> Result<(), Ec2Error>;

    /// CreateTags on existing resources.
    async fn create_tags(
        &self,
        resources: &[String],
        tags: &[(String, String)],
    ) -> Result<(), Ec2Error>;
}
