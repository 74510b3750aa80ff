//! What the AWS provider is told: [`AwsSettings`], resolved by the runner from
//! its configuration (this type has no serde on purpose: the config file's
//! keys and their validation belong to the runner).

use std::path::PathBuf;
use std::time::Duration;

/// Which machine image to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiSelector {
    /// One image, by id (`ami-0123456789abcdef0`).
    Id(String),
    /// The newest available image whose name matches `pattern` (EC2 filter
    /// syntax: `*` and `?` wildcards) and that belongs to `owner` (an account
    /// id, or an alias such as `amazon`).
    NameFilter {
        /// Name pattern, e.g. `debian-12-amd64-*`.
        pattern: String,
        /// Owning account, e.g. `136693071363` (Debian's cloud team).
        owner: String,
    },
}

impl AmiSelector {
    /// Debian 12 (bookworm) for amd64, as published by Debian's cloud team.
    pub fn debian_12_amd64() -> Self {
        AmiSelector::NameFilter {
            pattern: "debian-12-amd64-*".to_owned(),
            owner: "136693071363".to_owned(),
        }
    }
}

/// Retries with exponential backoff and jitter for throttled and transient
/// EC2 errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 8 attempts, 500 ms doubling up to 20 s: about a minute and a half of
    /// patience, which outlasts EC2's usual throttling windows.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

/// Everything the AWS provider needs, already resolved.
///
/// Credentials are deliberately absent: they come from the standard AWS
/// chain (environment, profiles, SSO, instance role) and are never stored by
/// btrfsqa.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    /// Region to launch in; `None` takes the standard chain's (`AWS_REGION`,
    /// the profile).
    pub region: Option<String>,
    /// Regions `reap` searches; empty means just [`region`](Self::region).
    pub reap_regions: Vec<String>,
    /// Named profile; `None` takes `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
    /// Another EC2 endpoint (an emulator); `None` takes `AWS_ENDPOINT_URL` or
    /// the region's.
    pub endpoint_url: Option<String>,
    /// Instance types to try in order when one has no capacity.
    pub instance_types: Vec<String>,
    /// Launch one-time spot instances (the default).
    pub spot: bool,
    /// Highest spot price per hour, in USD (`"0.05"`); `None` means up to the
    /// on-demand price.
    pub max_price: Option<String>,
    /// When no spot capacity is found for any type, launch on-demand.
    pub allow_on_demand: bool,
    /// The image.
    pub ami: AmiSelector,
    /// Subnet to launch in; `None` uses the region's default VPC.
    pub subnet_id: Option<String>,
    /// Availability zone; `None` lets EC2 choose (ignored with a subnet,
    /// which has its own).
    pub availability_zone: Option<String>,
    /// Ask for a public address (needed unless the controller reaches the
    /// VPC privately).
    pub associate_public_ip: bool,
    /// Data volumes to attach; `None` takes the `MachineSpec`'s count (six by
    /// default: one test device and five scratch).
    pub volume_count: Option<u32>,
    /// Size of each data volume in GiB; `None` takes the `MachineSpec`'s
    /// (10 GiB by default).
    pub volume_size_gib: Option<u32>,
    /// EBS type of the data volumes.
    pub volume_type: String,
    /// Size of the root volume in GiB.
    pub root_volume_gib: u32,
    /// Use this existing key pair instead of making one for the run; it is
    /// never deleted. Pair it with [`identity_file`](Self::identity_file)
    /// unless the agent holds the key.
    pub key_name: Option<String>,
    /// Private key for [`key_name`](Self::key_name).
    pub identity_file: Option<PathBuf>,
    /// Who may reach port 22 (`203.0.113.7/32`); `None` detects the
    /// operator's public address and allows only it.
    pub ssh_cidr: Option<String>,
    /// Where the operator's public address is asked (plain text answer).
    pub address_check_url: String,
    /// The image's login user (`admin` on Debian's images).
    pub ssh_user: String,
    /// The `btrfsqa:owner` tag.
    pub owner: String,
    /// After this many hours an instance powers itself off (and so
    /// terminates) and everything of the run counts as expired for `reap`.
    pub max_run_hours: u32,
    /// Where generated keys and known_hosts files live (made mode 0700).
    pub key_dir: PathBuf,
    /// How long provisioning polls the console and the instance's tags for
    /// its host keys; a machine without one by then is not handed out
    /// (provisioning fails and removes it).
    pub host_key_wait: Duration,
    /// How long an instance may take to reach `running`.
    pub launch_timeout: Duration,
    /// How long teardown waits for termination and for dependent resources.
    pub teardown_timeout: Duration,
    /// Pause between two polls of a state.
    pub poll_interval: Duration,
    /// A key pair, security group or volume younger than this is left alone
    /// by `reap` when its run has no instance: its run may still be
    /// provisioning.
    pub reap_grace: Duration,
    /// Retries of throttled and transient calls.
    pub retry: RetryPolicy,
}

impl Default for AwsSettings {
    fn default() -> Self {
        let owner = std::env::var("USER")
            .ok()
            .filter(|user| !user.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        AwsSettings {
            region: None,
            reap_regions: Vec::new(),
            profile: None,
            endpoint_url: None,
            instance_types: vec!["m6i.large".to_owned(), "m5.large".to_owned()],
            spot: true,
            max_price: None,
            allow_on_demand: false,
            ami: AmiSelector::debian_12_amd64(),
            subnet_id: None,
            availability_zone: None,
            associate_public_ip: true,
            volume_count: None,
            volume_size_gib: None,
            volume_type: "gp3".to_owned(),
            root_volume_gib: 30,
            key_name: None,
            identity_file: None,
            ssh_cidr: None,
            address_check_url: "https://checkip.amazonaws.com".to_owned(),
            ssh_user: "admin".to_owned(),
            owner,
            max_run_hours: 12,
            key_dir: default_key_dir(),
            host_key_wait: Duration::from_secs(120),
            launch_timeout: Duration::from_secs(600),
            teardown_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
            reap_grace: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
        }
    }
}

/// `$XDG_STATE_HOME/btrfsqa/aws-keys`, else `~/.local/state/btrfsqa/aws-keys`.
fn default_key_dir() -> PathBuf {
    crate::state_home::state_dir("aws-keys")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let settings = AwsSettings::default();
        assert_eq!(settings.instance_types, ["m6i.large", "m5.large"]);
        assert!(settings.spot);
        assert!(!settings.allow_on_demand);
        assert_eq!(settings.volume_type, "gp3");
        assert_eq!(settings.root_volume_gib, 30);
        assert_eq!(settings.ssh_user, "admin");
        assert_eq!(
            settings.ssh_cidr, None,
            "never open to the world by default"
        );
        assert_eq!(settings.ami, AmiSelector::debian_12_amd64());
        assert!(settings.key_dir.ends_with("btrfsqa/aws-keys"));
    }
}
