//! The `static` provider: machines that already exist, reached over SSH.
//!
//! It only hands out hosts and takes them back. It never changes anything on
//! a host: what a run mounts there, the runner unmounts through its
//! `RemoteHost`, and nothing is ever deleted.

use std::path::PathBuf;
use std::sync::Mutex;

use btrfsqa_model::RunId;

use crate::CloudProvider;
use crate::error::{ProvisionError, TeardownError};
use crate::machine::{Access, Machine, MachineSpec, ReapItem, SshEndpoint};

const PROVIDER: &str = "static";

/// One existing machine (the runner builds it from its config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticHost {
    /// Its name in the run.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key, if not the agent's or the default.
    pub identity_file: Option<PathBuf>,
    /// A known_hosts file pinning the host key.
    pub known_hosts_file: Option<PathBuf>,
    /// The test device.
    pub test_dev: String,
    /// The scratch pool.
    pub scratch_devs: Vec<String>,
    /// A work directory on the host.
    pub work_dir: String,
}

/// Hands out [`StaticHost`]s in order, each to at most one machine at a time.
#[derive(Debug)]
pub struct StaticProvider {
    hosts: Vec<StaticHost>,
    /// `claimed[i]`: host `i` is in use, by this run and machine name.
    claimed: Mutex<Vec<Option<(RunId, String)>>>,
}

impl StaticProvider {
    /// A provider over `hosts`.
    pub fn new(hosts: Vec<StaticHost>) -> Self {
        let claimed = Mutex::new(vec![None; hosts.len()]);
        StaticProvider { hosts, claimed }
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[StaticHost] {
        &self.hosts
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Vec<Option<(RunId, String)>>> {
        // A panic while holding the lock cannot leave the claims half-made:
        // each change is one assignment.
        self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl CloudProvider for StaticProvider {
    fn id(&self) -> &str {
        PROVIDER
    }

    async fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        let mut claims = self.claims();
        let Some(index) = claims.iter().position(Option::is_none) else {
            return Err(ProvisionError::Config {
                provider: PROVIDER.to_owned(),
                message: format!(
                    "no free host for machine `{}`: all {} configured hosts are in use",
                    spec.name,
                    self.hosts.len()
                ),
            });
        };
        let host = &self.hosts[index];
        if 1 + host.scratch_devs.len() < spec.data_devices as usize {
            // The host's devices are what they are; say so, do not refuse.
            tracing::warn!(
                host = %host.name,
                has = 1 + host.scratch_devs.len(),
                wanted = spec.data_devices,
                "static host has fewer data devices than asked for"
            );
        }
        claims[index] = Some((spec.run_id.clone(), spec.name.clone()));
        Ok(Machine {
            run_id: spec.run_id.clone(),
            name: spec.name.clone(),
            provider: PROVIDER.to_owned(),
            provider_id: host.name.clone(),
            access: Access::Ssh(SshEndpoint {
                host: host.host.clone(),
                port: host.port,
                user: host.user.clone(),
                identity_file: host.identity_file.clone(),
                known_hosts_file: host.known_hosts_file.clone(),
            }),
            test_dev: host.test_dev.clone(),
            scratch_devs: host.scratch_devs.clone(),
            work_dir: host.work_dir.clone(),
            instance_type: None,
            state: serde_json::json!({ "host-index": index, "host": host.name }),
        })
    }

    async fn teardown(&self, machine: &Machine) -> Result<(), TeardownError> {
        let mut claims = self.claims();
        let claim = Some((machine.run_id.clone(), machine.name.clone()));
        // Release only the claim this machine holds: a second teardown, or
        // one for a machine of another provider, finds none and does nothing.
        for (index, host) in self.hosts.iter().enumerate() {
            if host.name == machine.provider_id && claims[index] == claim {
                claims[index] = None;
            }
        }
        Ok(())
    }

    async fn reap(
        &self,
        _run: Option<RunId>,
        _dry_run: bool,
    ) -> Result<Vec<ReapItem>, TeardownError> {
        // Nothing is ever created on a static host.
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> StaticHost {
        StaticHost {
            name: name.into(),
            host: format!("{name}.example"),
            port: 2222,
            user: "root".into(),
            identity_file: Some("/keys/id".into()),
            known_hosts_file: None,
            test_dev: "/dev/vdb".into(),
            scratch_devs: vec!["/dev/vdc".into(), "/dev/vdd".into()],
            work_dir: "/var/tmp/btrfsqa".into(),
        }
    }

    fn spec(name: &str) -> MachineSpec {
        MachineSpec::new(RunId::parse("20261124-100000-ab12").unwrap(), name)
    }

    #[tokio::test]
    async fn hosts_are_handed_out_in_order_once_each() {
        let provider = StaticProvider::new(vec![host("a"), host("b")]);
        assert_eq!(provider.id(), "static");
        let first = provider.provision(&spec("m0")).await.unwrap();
        let second = provider.provision(&spec("m1")).await.unwrap();
        assert_eq!(first.provider_id, "a");
        assert_eq!(second.provider_id, "b");
        assert_eq!(first.name, "m0");
        let Access::Ssh(endpoint) = &first.access else {
            panic!("not ssh: {:?}", first.access);
        };
        assert_eq!(endpoint.address(), "root@a.example:2222");
        assert_eq!(endpoint.identity_file, Some(PathBuf::from("/keys/id")));
        assert_eq!(first.test_dev, "/dev/vdb");
        assert_eq!(first.scratch_devs, ["/dev/vdc", "/dev/vdd"]);
        assert_eq!(first.work_dir, "/var/tmp/btrfsqa");
        assert_eq!(first.info().address, "root@a.example:2222");

        let err = provider.provision(&spec("m2")).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no free host for machine `m2`"), "{text}");
        assert!(text.contains("all 2 configured hosts are in use"), "{text}");
    }

    #[tokio::test]
    async fn teardown_releases_the_claim_and_is_idempotent() {
        let provider = StaticProvider::new(vec![host("a"), host("b")]);
        let first = provider.provision(&spec("m0")).await.unwrap();
        let second = provider.provision(&spec("m1")).await.unwrap();
        provider.teardown(&first).await.unwrap();
        provider.teardown(&first).await.unwrap();
        let again = provider.provision(&spec("m2")).await.unwrap();
        assert_eq!(again.provider_id, "a");
        // A stale teardown of the first machine must not free the host that
        // now serves m2.
        provider.teardown(&first).await.unwrap();
        assert!(provider.provision(&spec("m3")).await.is_err());
        provider.teardown(&second).await.unwrap();
        assert_eq!(
            provider.provision(&spec("m4")).await.unwrap().provider_id,
            "b"
        );
    }

    #[tokio::test]
    async fn no_hosts_means_a_clear_error_and_reap_finds_nothing() {
        let provider = StaticProvider::new(Vec::new());
        assert!(matches!(
            provider.provision(&spec("m0")).await,
            Err(ProvisionError::Config { .. })
        ));
        assert!(provider.reap(None, false).await.unwrap().is_empty());
    }
}
