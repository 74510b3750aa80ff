//! Turning a provisioned [`Machine`] into a [`RemoteHost`].

use std::sync::Arc;
use std::time::Duration;

use btrfsqa_cloud::{Access, Machine};
use btrfsqa_remote::{LocalHost, OpenSshHost, RemoteError, RemoteHost, SshTarget};

/// Connects to machines. The runner's seam for tests and embedders.
#[mockall::automock]
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// A host for `machine`, once it answers.
    async fn connect(&self, machine: &Machine) -> Result<Arc<dyn RemoteHost>, RemoteError>;
}

/// Local machines become [`LocalHost`]s, SSH machines [`OpenSshHost`]s
/// (waiting up to `boot_timeout` for a fresh machine to answer).
#[derive(Debug, Clone)]
pub struct DefaultConnector {
    /// How long a new machine may take to answer SSH.
    pub boot_timeout: Duration,
}

impl Default for DefaultConnector {
    fn default() -> Self {
        DefaultConnector {
            boot_timeout: Duration::from_secs(600),
        }
    }
}

#[async_trait::async_trait]
impl Connector for DefaultConnector {
    async fn connect(&self, machine: &Machine) -> Result<Arc<dyn RemoteHost>, RemoteError> {
        match &machine.access {
            Access::Local => Ok(Arc::new(LocalHost::new(machine.name.clone()))),
            Access::Ssh(endpoint) => {
                let target = SshTarget {
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                    user: endpoint.user.clone(),
                    identity_file: endpoint.identity_file.clone(),
                    known_hosts_file: endpoint.known_hosts_file.clone(),
                };
                let host = OpenSshHost::wait_until_reachable(
                    machine.name.clone(),
                    target,
                    self.boot_timeout,
                )
                .await?;
                Ok(Arc::new(host))
            }
        }
    }
}
