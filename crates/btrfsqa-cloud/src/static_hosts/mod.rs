//! The `static` provider: machines that already exist, reached over SSH.
//!
//! It only hands out hosts and takes them back. It never changes anything on
//! a host: what a run mounts there, the runner unmounts through its
//! `RemoteHost`, and nothing is ever deleted.
//!
//! Two things it keeps on the controller, under its state directory
//! ([`StaticSettings::state_dir`]):
//!
//! ```text
//! STATE/claims/<host>-<port>.lock   flock(2)ed while a machine uses the host;
//!                                   holds the holder's pid, run and machine
//! STATE/known-hosts/<host>-<port>   the host key learned at first use
//! ```
//!
//! **Claims.** A host is claimed by taking an exclusive lock on its file for
//! as long as the machine lives, so two btrfsqa processes on one controller
//! (sharing the state directory) never use one host at once; a process that
//! dies lets go of its claims with it. A host another process holds is
//! skipped; when none is free the error names each host and the pid that
//! holds it.
//!
//! **Host keys.** Every machine is handed out with its host key pinned: the
//! host's `known_hosts_file` when configured (it must hold a key), else the
//! key recorded at the host's first use (trust on first use: read with
//! `ssh-keyscan`, which does not log in, and written to
//! `STATE/known-hosts/`). Once recorded it is never replaced: a host that
//! later shows another key is refused by the SSH client, with the file to
//! fix named in its error.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use btrfsqa_model::{RunId, safe_file_name};
use nix::fcntl::{Flock, FlockArg};

use crate::CloudProvider;
use crate::error::{CommandError, ProvisionError, TeardownError};
use crate::machine::{Access, Machine, MachineSpec, ReapItem, SshEndpoint};

mod config;

pub(crate) use config::validate_hosts;
pub use config::{StaticHost, StaticSettings};

const PROVIDER: &str = "static";

/// How long `ssh-keyscan` may wait for a host's answer (`-T`).
const KEYSCAN_TIMEOUT: Duration = Duration::from_secs(10);

/// Public key types recorded at first use.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// Hands out [`StaticHost`]s in order, each to at most one machine at a
/// time, across processes too (see the module documentation).
#[derive(Debug)]
pub struct StaticProvider {
    /// Its id in machines and errors (another provider may hand out hosts
    /// through this one).
    id: &'static str,
    hosts: Vec<StaticHost>,
    state_dir: PathBuf,
    /// `claimed[i]`: host `i` is in use by this run and machine name, and
    /// its claim file is locked.
    claimed: Mutex<Vec<Option<Claim>>>,
}

#[derive(Debug)]
struct Claim {
    run: RunId,
    machine: String,
    /// Held while the machine lives; dropping it lets go of the host.
    _lock: Flock<File>,
}

/// Why a host could not be claimed.
enum Unavailable {
    /// This provider already gave it to a machine.
    Ours,
    /// Another process holds it (what its claim file says).
    Held(String),
}

impl StaticProvider {
    /// A provider over `hosts`, with the default state directory.
    pub fn new(hosts: Vec<StaticHost>) -> Self {
        StaticProvider::with_settings(StaticSettings {
            hosts,
            state_dir: None,
        })
    }

    /// A provider with these settings.
    pub fn with_settings(settings: StaticSettings) -> Self {
        let claimed = Mutex::new(settings.hosts.iter().map(|_| None).collect());
        let mut hosts = settings.hosts;
        for host in &mut hosts {
            if host.name.is_empty() {
                host.name = host.host.clone();
            }
        }
        StaticProvider {
            id: PROVIDER,
            state_dir: settings.state_dir.unwrap_or_else(default_state_dir),
            hosts,
            claimed,
        }
    }

    /// The same provider under the id `id`: for a provider that finds its
    /// hosts elsewhere and hands them out this way.
    pub fn with_id(mut self, id: &'static str) -> Self {
        self.id = id;
        self
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[StaticHost] {
        &self.hosts
    }

    /// Where claims and learned host keys live.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Vec<Option<Claim>>> {
        // A panic while holding the lock cannot leave the claims half-made:
        // each change is one assignment.
        self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failed(
        &self,
        operation: String,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> ProvisionError {
        ProvisionError::Failed {
            provider: self.id.to_owned(),
            operation,
            leftovers: Vec::new(),
            source: source.into(),
        }
    }

    /// Locks host `index`'s claim file for `spec`, or says who holds it.
    fn try_claim(
        &self,
        index: usize,
        spec: &MachineSpec,
    ) -> Result<Result<Flock<File>, Unavailable>, ProvisionError> {
        let host = &self.hosts[index];
        let dir = self.state_dir.join("claims");
        make_private_dir(&dir).map_err(|e| {
            self.failed(format!("make the claims directory `{}`", dir.display()), e)
        })?;
        let path = dir.join(format!("{}.lock", host_file_name(host)));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.failed(format!("open the claim file `{}`", path.display()), e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let holder = format!(
                    "pid {}, run `{}`, machine `{}`",
                    std::process::id(),
                    spec.run_id.as_str(),
                    spec.name
                );
                let written = lock
                    .set_len(0)
                    .and_then(|()| lock.rewind())
                    .and_then(|()| lock.write_all(holder.as_bytes()));
                written.map_err(|e| {
                    self.failed(format!("write the claim file `{}`", path.display()), e)
                })?;
                Ok(Ok(lock))
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                Ok(Err(Unavailable::Held(if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    holder.to_owned()
                })))
            }
            Err((_, errno)) => Err(self.failed(
                format!("lock the claim file `{}`", path.display()),
                std::io::Error::from(errno),
            )),
        }
    }

    /// The known_hosts file that pins `host`'s key: the configured one, or
    /// the one recorded at first use (made now if there is none yet).
    async fn pinned_key(&self, host: &StaticHost) -> Result<PathBuf, ProvisionError> {
        if let Some(file) = &host.known_hosts_file {
            if !holds_a_key(file) {
                return Err(ProvisionError::Config {
                    provider: self.id.to_owned(),
                    message: format!(
                        "the `known-hosts-file` of host `{}` (`{}`) is missing or holds no key",
                        host.name,
                        file.display()
                    ),
                });
            }
            return Ok(file.clone());
        }
        let dir = self.state_dir.join("known-hosts");
        let file = dir.join(host_file_name(host));
        if holds_a_key(&file) {
            return Ok(file);
        }
        let operation = format!(
            "learn the host key of `{}` (`{}`) at its first use",
            host.name,
            address(host)
        );
        let lines = keyscan(host)
            .await
            .map_err(|e| self.failed(operation.clone(), e))?;
        make_private_dir(&dir)
            .and_then(|()| btrfsqa_model::fs::write_atomic(&file, lines.as_bytes()))
            .map_err(|e| self.failed(operation, e))?;
        tracing::info!(host = %host.name, file = %file.display(), "host key recorded at first use");
        Ok(file)
    }
}

#[async_trait::async_trait]
impl CloudProvider for StaticProvider {
    fn id(&self) -> &str {
        self.id
    }

    async fn provision(&self, spec: &MachineSpec) -> Result<Machine, ProvisionError> {
        let index = {
            let mut claims = self.claims();
            let mut unavailable = Vec::new();
            let mut chosen = None;
            for index in 0..self.hosts.len() {
                let why = if claims[index].is_some() {
                    Unavailable::Ours
                } else {
                    match self.try_claim(index, spec)? {
                        Ok(lock) => {
                            chosen = Some((index, lock));
                            break;
                        }
                        Err(why) => why,
                    }
                };
                unavailable.push((index, why));
            }
            let Some((index, lock)) = chosen else {
                let held: Vec<String> = unavailable
                    .iter()
                    .filter_map(|(index, why)| match why {
                        Unavailable::Ours => None,
                        Unavailable::Held(holder) => Some(format!(
                            "`{}` (`{}`) is held by another btrfsqa process ({holder})",
                            self.hosts[*index].name,
                            address(&self.hosts[*index])
                        )),
                    })
                    .collect();
                let mut message = format!(
                    "no free host for machine `{}`: all {} configured hosts are in use",
                    spec.name,
                    self.hosts.len()
                );
                if !held.is_empty() {
                    message.push_str(&format!("; {}", held.join("; ")));
                }
                return Err(ProvisionError::Config {
                    provider: self.id.to_owned(),
                    message,
                });
            };
            // Marked at once, so a concurrent provision of this provider
            // moves on to the next host while this one learns its key.
            claims[index] = Some(Claim {
                run: spec.run_id.clone(),
                machine: spec.name.clone(),
                _lock: lock,
            });
            index
        };
        let host = &self.hosts[index];
        let known_hosts = match self.pinned_key(host).await {
            Ok(file) => file,
            Err(error) => {
                self.claims()[index] = None;
                return Err(error);
            }
        };
        if 1 + host.scratch_devs.len() < spec.data_devices as usize {
            // The host's devices are what they are; say so, do not refuse.
            tracing::warn!(
                host = %host.name,
                has = 1 + host.scratch_devs.len(),
                wanted = spec.data_devices,
                "static host has fewer data devices than asked for"
            );
        }
        Ok(Machine {
            run_id: spec.run_id.clone(),
            name: spec.name.clone(),
            provider: self.id.to_owned(),
            provider_id: host.name.clone(),
            access: Access::Ssh(SshEndpoint {
                host: host.host.clone(),
                port: host.port,
                user: host.user.clone(),
                identity_file: host.identity_file.clone(),
                known_hosts_file: Some(known_hosts),
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
        // Release only the claim this machine holds: a second teardown, or
        // one for a machine of another provider, finds none and does nothing.
        for (index, host) in self.hosts.iter().enumerate() {
            let ours = claims[index]
                .as_ref()
                .is_some_and(|c| c.run == machine.run_id && c.machine == machine.name);
            if host.name == machine.provider_id && ours {
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
        // Nothing is ever created on a static host, and a dead process's
        // claims went with it.
        Ok(Vec::new())
    }
}

/// `host:port` (`[host]:port` for an IPv6 address), as messages show it.
fn address(host: &StaticHost) -> String {
    if host.host.contains(':') {
        format!("[{}]:{}", host.host, host.port)
    } else {
        format!("{}:{}", host.host, host.port)
    }
}

/// The file name of a host's claim and key: the machine, not the name a
/// config gives it, so two configs naming one host differently still share.
fn host_file_name(host: &StaticHost) -> String {
    safe_file_name(&format!("{}-{}", host.host, host.port))
}

/// known_hosts' name for a host: `host`, or `[host]:port` off port 22.
fn known_hosts_pattern(host: &StaticHost) -> String {
    if host.port == 22 {
        host.host.clone()
    } else {
        format!("[{}]:{}", host.host, host.port)
    }
}

/// Whether a known_hosts file exists and holds at least one entry.
fn holds_a_key(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.lines()
            .map(str::trim)
            .any(|line| !line.is_empty() && !line.starts_with('#'))
    })
}

/// The host's public keys as known_hosts lines, read with `ssh-keyscan`.
async fn keyscan(host: &StaticHost) -> Result<String, CommandError> {
    let command = format!(
        "ssh-keyscan -T {} -p {} {}",
        KEYSCAN_TIMEOUT.as_secs(),
        host.port,
        host.host
    );
    let fail = |status: Option<i32>, stderr: String| CommandError {
        command: command.clone(),
        status,
        stderr,
    };
    if host.host.starts_with('-') || host.host.is_empty() {
        return Err(fail(None, "not a host name or address".to_owned()));
    }
    let output = tokio::process::Command::new("ssh-keyscan")
        .arg("-T")
        .arg(KEYSCAN_TIMEOUT.as_secs().to_string())
        .arg("-p")
        .arg(host.port.to_string())
        .arg("--")
        .arg(&host.host)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| fail(None, e.to_string()))?;
    let pattern = known_hosts_pattern(host);
    let mut lines = String::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut fields = line.split_whitespace();
        let (Some(_), Some(kind), Some(blob)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !line.starts_with('#') && KEY_TYPES.contains(&kind) {
            lines.push_str(&format!("{pattern} {kind} {blob}\n"));
        }
    }
    if lines.is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        return Err(fail(
            output.status.code(),
            if stderr.is_empty() {
                "no host key came back".to_owned()
            } else {
                stderr.join("; ")
            },
        ));
    }
    Ok(lines)
}

/// Makes `dir` (mode 0700) and its parents, if missing.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// `$XDG_STATE_HOME/btrfsqa/static-hosts`, else
/// `~/.local/state/btrfsqa/static-hosts`.
fn default_state_dir() -> PathBuf {
    crate::state_home::state_dir("static-hosts")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state directory and a known_hosts file for the hosts below.
    struct Area {
        dir: tempfile::TempDir,
    }

    impl Area {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("known_hosts"),
                "[a.example]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGXlnAxnutnMkdmWjHhB7aPOS3MhgbFtScZxc1cunpUr\n",
            )
            .unwrap();
            Area { dir }
        }

        fn host(&self, name: &str) -> StaticHost {
            StaticHost {
                name: name.into(),
                host: format!("{name}.example"),
                port: 2222,
                user: "root".into(),
                identity_file: Some("/keys/id".into()),
                known_hosts_file: Some(self.dir.path().join("known_hosts")),
                test_dev: "/dev/vdb".into(),
                scratch_devs: vec!["/dev/vdc".into(), "/dev/vdd".into()],
                work_dir: "/var/tmp/btrfsqa".into(),
            }
        }

        fn provider(&self, hosts: Vec<StaticHost>) -> StaticProvider {
            StaticProvider::with_settings(StaticSettings {
                hosts,
                state_dir: Some(self.dir.path().join("state")),
            })
        }
    }

    fn spec(name: &str) -> MachineSpec {
        MachineSpec::new(RunId::parse("20261124-100000-ab12").unwrap(), name)
    }

    #[tokio::test]
    async fn hosts_are_handed_out_in_order_once_each() {
        let area = Area::new();
        let provider = area.provider(vec![area.host("a"), area.host("b")]);
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
        assert_eq!(
            endpoint.known_hosts_file,
            Some(area.dir.path().join("known_hosts"))
        );
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
        let area = Area::new();
        let provider = area.provider(vec![area.host("a"), area.host("b")]);
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
    async fn two_providers_never_claim_the_same_host() {
        let area = Area::new();
        let first = area.provider(vec![area.host("a")]);
        // Another process's provider, with the host under another name.
        let mut renamed = area.host("a");
        renamed.name = "the-same-machine".into();
        let second = area.provider(vec![renamed, area.host("b")]);
        let machine = first.provision(&spec("m0")).await.unwrap();

        // The host in use is skipped...
        let other = second.provision(&spec("m1")).await.unwrap();
        assert_eq!(other.provider_id, "b");
        // ...and when none is left, the error names it and its holder.
        let error = second.provision(&spec("m2")).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(
                "`the-same-machine` (`a.example:2222`) is held by another btrfsqa process"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "pid {}, run `20261124-100000-ab12`, machine `m0`",
                std::process::id()
            )),
            "{text}"
        );
        first.teardown(&machine).await.unwrap();
        assert_eq!(
            second.provision(&spec("m2")).await.unwrap().provider_id,
            "the-same-machine"
        );
    }

    #[tokio::test]
    async fn a_configured_known_hosts_file_must_hold_a_key() {
        let area = Area::new();
        let mut host = area.host("a");
        host.known_hosts_file = Some(area.dir.path().join("missing"));
        let provider = area.provider(vec![host]);
        let error = provider.provision(&spec("m0")).await.unwrap_err();
        assert!(matches!(error, ProvisionError::Config { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("`known-hosts-file` of host `a`"), "{text}");
        // The claim went with the failure.
        std::fs::write(
            area.dir.path().join("missing"),
            "a.example ssh-ed25519 AAAA\n",
        )
        .unwrap();
        provider.provision(&spec("m0")).await.unwrap();
    }

    #[tokio::test]
    async fn an_unknown_key_that_cannot_be_learned_is_an_error() {
        let area = Area::new();
        let mut host = area.host("a");
        host.known_hosts_file = None;
        // Nothing listens there.
        host.host = "127.0.0.1".into();
        host.port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let provider = area.provider(vec![host]);
        let error = provider.provision(&spec("m0")).await.unwrap_err();
        let text = error.to_string();
        assert!(text.contains("learn the host key of `a`"), "{text}");
        assert!(
            !area.dir.path().join("state/known-hosts").exists()
                || std::fs::read_dir(area.dir.path().join("state/known-hosts"))
                    .unwrap()
                    .next()
                    .is_none(),
            "nothing recorded"
        );
    }

    #[tokio::test]
    async fn no_hosts_means_a_clear_error_and_reap_finds_nothing() {
        let area = Area::new();
        let provider = area.provider(Vec::new());
        assert!(matches!(
            provider.provision(&spec("m0")).await,
            Err(ProvisionError::Config { .. })
        ));
        assert!(provider.reap(None, false).await.unwrap().is_empty());
    }
}
