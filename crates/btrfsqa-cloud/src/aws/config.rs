//! `[providers.aws]` and the provider it makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use btrfsqa_model::Section;
use serde::Deserialize;

use super::{AmiSelector, AwsProvider, AwsSettings};
use crate::{CloudProvider, ProviderContext, ProviderPlugin, ProvisionError};

/// `[providers.aws]`: EC2 spot machines. Credentials never come from here:
/// the standard AWS chain (environment, profiles, SSO, instance role)
/// provides them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AwsConfig {
    /// Region (else `AWS_REGION` / the profile's).
    pub region: Option<String>,
    /// Regions `btrfsqa reap` searches (default: `region`).
    #[serde(default)]
    pub reap_regions: Vec<String>,
    /// Named profile (else `AWS_PROFILE`).
    pub profile: Option<String>,
    /// Endpoint override (else `AWS_ENDPOINT_URL`), e.g. an emulator.
    pub endpoint_url: Option<String>,
    /// Instance types to try in order.
    pub instance_types: Option<Vec<String>>,
    /// Spot (default) or on-demand.
    pub spot: Option<bool>,
    /// Maximum spot price, USD per hour.
    pub max_price: Option<String>,
    /// Fall back to on-demand when no spot capacity is left.
    pub allow_on_demand: Option<bool>,
    /// An AMI id; overrides `ami-name`.
    pub ami: Option<String>,
    /// An AMI name filter (newest match), with `ami-owner`.
    pub ami_name: Option<String>,
    /// The AMI's owner account.
    pub ami_owner: Option<String>,
    /// Subnet.
    pub subnet_id: Option<String>,
    /// Availability zone.
    pub availability_zone: Option<String>,
    /// EBS volume type of the data devices.
    pub volume_type: Option<String>,
    /// Root volume size, GiB.
    pub root_volume_gib: Option<u32>,
    /// An existing key pair to use instead of one made for the run.
    pub key_name: Option<String>,
    /// The private key of `key-name`.
    pub identity_file: Option<PathBuf>,
    /// Who may reach SSH (default: the operator's address, never 0.0.0.0/0).
    pub ssh_cidr: Option<String>,
    /// Login user of the AMI.
    pub ssh_user: Option<String>,
    /// Owner tag (default: `$USER`).
    pub owner: Option<String>,
    /// The machine powers itself off after this long, whatever happens.
    pub max_run_hours: Option<u32>,
}

impl Section for AwsConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if let Some(cidr) = &self.ssh_cidr
            && (cidr == "0.0.0.0/0" || cidr == "::/0")
        {
            issues.push((
                "ssh-cidr".to_owned(),
                "refusing to open SSH to the whole internet: name your own address range"
                    .to_owned(),
            ));
        }
        if self.ami_name.is_some() != self.ami_owner.is_some() {
            issues.push((
                "ami-name".to_owned(),
                "`ami-name` and `ami-owner` go together".to_owned(),
            ));
        }
        issues
    }

    fn resolve_paths(&mut self, base: &Path) {
        btrfsqa_model::section::absolute_all(base, self.identity_file.iter_mut());
    }
}

impl AwsConfig {
    /// The provider's settings: these keys over its defaults, and no
    /// machine living much longer than a run of `run_timeout_minutes`.
    pub fn settings(&self, run_timeout_minutes: u64) -> AwsSettings {
        let mut out = AwsSettings {
            region: self.region.clone(),
            reap_regions: self.reap_regions.clone(),
            profile: self.profile.clone(),
            endpoint_url: self.endpoint_url.clone(),
            max_price: self.max_price.clone(),
            subnet_id: self.subnet_id.clone(),
            availability_zone: self.availability_zone.clone(),
            key_name: self.key_name.clone(),
            identity_file: self.identity_file.clone(),
            ssh_cidr: self.ssh_cidr.clone(),
            ..AwsSettings::default()
        };
        if let Some(types) = &self.instance_types {
            out.instance_types = types.clone();
        }
        if let Some(spot) = self.spot {
            out.spot = spot;
        }
        if let Some(allow) = self.allow_on_demand {
            out.allow_on_demand = allow;
        }
        if let Some(id) = &self.ami {
            out.ami = AmiSelector::Id(id.clone());
        } else if let (Some(pattern), Some(owner)) = (&self.ami_name, &self.ami_owner) {
            out.ami = AmiSelector::NameFilter {
                pattern: pattern.clone(),
                owner: owner.clone(),
            };
        }
        if let Some(kind) = &self.volume_type {
            out.volume_type = kind.clone();
        }
        if let Some(gib) = self.root_volume_gib {
            out.root_volume_gib = gib;
        }
        if let Some(user) = &self.ssh_user {
            out.ssh_user = user.clone();
        }
        if let Some(owner) = &self.owner {
            out.owner = owner.clone();
        }
        if let Some(hours) = self.max_run_hours {
            out.max_run_hours = hours;
        }
        // A machine must not outlive the run's own deadline by much.
        let run_hours = run_timeout_minutes.div_ceil(60) as u32 + 1;
        out.max_run_hours = out.max_run_hours.min(run_hours.max(1));
        out
    }
}

impl ProviderPlugin for AwsProvider {
    const ID: &'static str = super::PROVIDER;
    type Config = AwsConfig;

    async fn make(
        config: &AwsConfig,
        context: ProviderContext<'_>,
    ) -> Result<Arc<dyn CloudProvider>, ProvisionError> {
        let settings = config.settings(context.run_timeout_minutes);
        Ok(Arc::new(AwsProvider::new(settings).await?))
    }
}
