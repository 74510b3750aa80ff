use std::path::PathBuf;

use btrfsqa_model::{MachineInfo, RunId};
use serde::{Deserialize, Serialize};

/// What the runner asks a provider for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// The run the machine belongs to (tags, directory names).
    pub run_id: RunId,
    /// The machine's name within the run (`local-0`, `shard-3`).
    pub name: String,
    /// How many data devices: one test device plus a scratch pool of the rest.
    pub data_devices: u32,
    /// Size of each data device, in bytes.
    pub device_size: u64,
}

impl MachineSpec {
    /// Six 10 GiB devices, the design's default.
    pub fn new(run_id: RunId, name: impl Into<String>) -> Self {
        MachineSpec {
            run_id,
            name: name.into(),
            data_devices: 6,
            device_size: 10 << 30,
        }
    }
}

/// An SSH endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshEndpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User to log in as.
    pub user: String,
    /// Private key to use, if not the agent's or the default.
    pub identity_file: Option<PathBuf>,
    /// A known_hosts file pinning the host key, if the provider knows it.
    pub known_hosts_file: Option<PathBuf>,
}

impl SshEndpoint {
    /// `user@host:port`.
    pub fn address(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// How the runner reaches a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Access {
    /// It is this machine: run commands as local processes.
    Local,
    /// Over SSH.
    Ssh(SshEndpoint),
}

/// A machine ready for the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The run it belongs to.
    pub run_id: RunId,
    /// Its name within the run.
    pub name: String,
    /// The provider that made it.
    pub provider: String,
    /// The provider's own id for it (instance id, pid, host name).
    pub provider_id: String,
    /// How to reach it.
    pub access: Access,
    /// The test device (fstests' TEST_DEV).
    pub test_dev: String,
    /// The scratch pool (fstests' SCRATCH_DEV_POOL).
    pub scratch_devs: Vec<String>,
    /// A directory on the machine the run may use for work files and mounts.
    pub work_dir: String,
    /// Instance type or VM shape, when there is one.
    pub instance_type: Option<String>,
    /// Provider-specific state teardown needs (backing files, volume ids).
    #[serde(default)]
    pub state: serde_json::Value,
}

impl Machine {
    /// What the machine cost from its start to `ended_at`, in USD, when its
    /// provider prices machines (an AWS spot machine: the spot price at
    /// launch times the hours).
    pub fn cost_estimate(&self, ended_at: chrono::DateTime<chrono::Utc>) -> Option<f64> {
        #[cfg(feature = "aws")]
        if self.provider == <crate::AwsProvider as crate::ProviderPlugin>::ID {
            return crate::AwsProvider::cost_estimate(self, ended_at);
        }
        let _ = ended_at;
        None
    }

    /// The description that goes into the run report.
    pub fn info(&self) -> MachineInfo {
        MachineInfo {
            name: self.name.clone(),
            provider: self.provider.clone(),
            address: match &self.access {
                Access::Local => "local".to_owned(),
                Access::Ssh(endpoint) => endpoint.address(),
            },
            instance_type: self.instance_type.clone(),
            test_dev: Some(self.test_dev.clone()),
            scratch_devs: self.scratch_devs.clone(),
            kernel: Default::default(),
        }
    }
}

/// Something `reap` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapItem {
    /// The provider.
    pub provider: String,
    /// What kind of thing (`loop-device`, `backing-file`, `instance`, `volume`).
    pub kind: String,
    /// Its id or path.
    pub id: String,
    /// The run it belonged to, if known.
    pub run_id: Option<String>,
    /// What was done (or, in a dry run, would be done).
    pub action: ReapAction,
}

/// What `reap` did with one thing it found, the same for every provider.
/// Only [`ReapAction::Failed`] means something is still there that should
/// not be; shown as its [`Display`](std::fmt::Display) text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "detail")]
pub enum ReapAction {
    /// Removed (a file, a device, a process, a volume, a key), with a note
    /// when it took a last resort.
    Deleted(Option<String>),
    /// An instance was terminated.
    Terminated,
    /// A dry run: it would be removed.
    WouldDelete,
    /// A dry run: the instance would be terminated.
    WouldTerminate,
    /// It was gone by the time reap came to it (it went with its instance,
    /// or someone else removed it): nothing left, nothing to do.
    AlreadyGone,
    /// Left alone on purpose, and why (its controller is still running).
    Kept(String),
    /// Removing it failed; it is still there. Why.
    Failed(String),
}

impl ReapAction {
    /// Removed, without a note.
    pub fn deleted() -> Self {
        ReapAction::Deleted(None)
    }

    /// Whether this leaves behind something that should have gone.
    pub fn is_failure(&self) -> bool {
        matches!(self, ReapAction::Failed(_))
    }

    /// The kind of action in a word or two, without its details:
    /// `deleted`, `terminated`, `would delete`, `would terminate`,
    /// `already gone`, `kept`, `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReapAction::Deleted(_) => "deleted",
            ReapAction::Terminated => "terminated",
            ReapAction::WouldDelete => "would delete",
            ReapAction::WouldTerminate => "would terminate",
            ReapAction::AlreadyGone => "already gone",
            ReapAction::Kept(_) => "kept",
            ReapAction::Failed(_) => "failed",
        }
    }
}

impl std::fmt::Display for ReapAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReapAction::Deleted(Some(note)) => write!(f, "deleted ({note})"),
            ReapAction::Kept(why) => write!(f, "kept: {why}"),
            ReapAction::Failed(why) => write!(f, "failed: {why}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// An action equals the text it is shown as (`"deleted"`, `"kept: ..."`).
impl PartialEq<&str> for ReapAction {
    fn eq(&self, other: &&str) -> bool {
        let shown: String = self.to_string();
        shown.as_str() == *other
    }
}

/// A kernel for [`crate::CloudProvider::boot_kernel`], as files on the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootKernel {
    /// The kernel image (`bzImage`).
    pub image: PathBuf,
    /// Its initramfs, when it needs one (a test kernel with its root
    /// filesystem's drivers built in does not).
    pub initrd: Option<PathBuf>,
    /// Arguments added to the provider's own kernel command line.
    pub extra_args: Option<String>,
    /// The release it reports (`uname -r`), for messages.
    pub release: String,
}
