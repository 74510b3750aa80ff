//! The harness of the `aws` provider's tests: moto's EC2 emulator on
//! 127.0.0.1, one server per test, an SDK configuration and settings for
//! it, and helpers that read what a run left in it.
//!
//! The emulator comes from PyPI (`scripts/moto-server.sh` installs it):
//! `BTRFSQA_MOTO_SERVER` names its `moto_server`, else
//! `/var/tmp/btrfsqa-moto/bin/moto_server` is used; without it the tests
//! say so and skip. moto boots nothing, so the instances never answer SSH:
//! the provider never connects, so that does not matter here. Nor do they
//! print host keys (its console is a canned kernel log): the tests put one
//! where an instance reports its own, its `btrfsqa:host-key` tag, as soon as
//! the instance exists.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use btrfsqa_cloud::{
    AmiSelector, AwsMachineState, AwsProvider, AwsSettings, CloudProvider, Machine, MachineSpec,
    RetryPolicy,
};
use btrfsqa_model::RunId;

pub(crate) const REGION: &str = "us-east-1";
pub(crate) const RUN_TAG: &str = "btrfsqa:run-id";
pub(crate) const SSH_CIDR: &str = "198.51.100.7/32";

/// A moto server on a free port of 127.0.0.1, stopped on drop.
pub(crate) struct Moto {
    child: Child,
    port: u16,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    pub(crate) fn binary() -> Option<PathBuf> {
        let path = std::env::var_os("BTRFSQA_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/btrfsqa-moto/bin/moto_server"));
        if path.exists() {
            Some(path)
        } else {
            eprintln!(
                "skipped: no EC2 emulator at `{}` (run scripts/moto-server.sh --install-only, \
                 or set BTRFSQA_MOTO_SERVER)",
                path.display()
            );
            None
        }
    }

    pub(crate) fn start() -> Option<Moto> {
        let binary = Moto::binary()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start `{}`: {error}", binary.display()));
        let mut moto = Moto {
            child,
            port,
            _log: log,
        };
        let started = Instant::now();
        while moto.reset().is_err() {
            if let Some(status) = moto.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(moto._log.path()).unwrap_or_default();
                panic!("moto_server exited with {status}:\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not answer in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `POST /moto-api/reset`: forget every resource.
    fn reset(&self) -> std::io::Result<()> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(std::io::Error::other(answer))
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SDK configuration for the emulator, with dummy credentials (nothing
/// here may ever reach AWS).
pub(crate) async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

pub(crate) fn settings(moto: &Moto, key_dir: &Path) -> AwsSettings {
    AwsSettings {
        region: Some(REGION.to_owned()),
        endpoint_url: Some(moto.endpoint()),
        // moto's own images include Ubuntu's: exercise the newest-by-name path.
        ami: AmiSelector::NameFilter {
            pattern: "ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*".to_owned(),
            owner: "099720109477".to_owned(),
        },
        ssh_cidr: Some(SSH_CIDR.to_owned()),
        ssh_user: "ubuntu".to_owned(),
        owner: "integration-test".to_owned(),
        key_dir: key_dir.to_owned(),
        host_key_wait: Duration::from_secs(30),
        launch_timeout: Duration::from_secs(30),
        teardown_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        ..AwsSettings::default()
    }
}

/// A fresh ed25519 public host key, `type base64`.
pub(crate) fn host_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.path().join("key"))
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(status.success());
    let public = std::fs::read_to_string(dir.path().join("key.pub")).unwrap();
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Provisions `spec` while playing the instance that reports its host key
/// `key`: its `btrfsqa:host-key` tag is set as soon as it exists.
pub(crate) async fn provision_reporting(
    provider: &AwsProvider,
    ec2: &aws_sdk_ec2::Client,
    spec: &MachineSpec,
    key: &str,
) -> Result<Machine, btrfsqa_cloud::ProvisionError> {
    let ec2 = ec2.clone();
    let run = spec.run_id.as_str().to_owned();
    let key = key.to_owned();
    let reporter = tokio::spawn(async move {
        loop {
            let found = ec2
                .describe_instances()
                .filters(run_filter(&run))
                .send()
                .await
                .unwrap();
            for instance in found.reservations().iter().flat_map(|r| r.instances()) {
                if tag(instance.tags(), "btrfsqa:host-key").is_none() {
                    ec2.create_tags()
                        .resources(instance.instance_id().unwrap())
                        .tags(
                            aws_sdk_ec2::types::Tag::builder()
                                .key("btrfsqa:host-key")
                                .value(&key)
                                .build(),
                        )
                        .send()
                        .await
                        .unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let machine = provider.provision(spec).await;
    reporter.abort();
    machine
}

pub(crate) fn spec(name: &str) -> MachineSpec {
    MachineSpec::new(RunId::generate(chrono::Utc::now()), name)
}

pub(crate) fn run_filter(run: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{RUN_TAG}"))
        .values(run)
        .build()
}

/// Every resource of `run` that still exists (instances not terminated).
pub(crate) async fn left_of_run(ec2: &aws_sdk_ec2::Client, run: &str) -> Vec<String> {
    let mut left = Vec::new();
    let instances = ec2
        .describe_instances()
        .filters(run_filter(run))
        .send()
        .await
        .unwrap();
    for instance in instances.reservations().iter().flat_map(|r| r.instances()) {
        let state = instance.state().and_then(|s| s.name()).unwrap().as_str();
        if state != "terminated" {
            left.push(format!(
                "instance {} ({state})",
                instance.instance_id().unwrap()
            ));
        }
    }
    let volumes = ec2
        .describe_volumes()
        .filters(run_filter(run))
        .send()
        .await
        .unwrap();
    left.extend(
        volumes
            .volumes()
            .iter()
            .map(|v| format!("volume {}", v.volume_id().unwrap())),
    );
    let keys = ec2
        .describe_key_pairs()
        .filters(run_filter(run))
        .send()
        .await
        .unwrap();
    left.extend(
        keys.key_pairs()
            .iter()
            .map(|k| format!("key pair {}", k.key_name().unwrap())),
    );
    let groups = ec2
        .describe_security_groups()
        .filters(run_filter(run))
        .send()
        .await
        .unwrap();
    left.extend(
        groups
            .security_groups()
            .iter()
            .map(|g| format!("security group {}", g.group_id().unwrap())),
    );
    let templates = ec2
        .describe_launch_templates()
        .filters(run_filter(run))
        .send()
        .await
        .unwrap();
    left.extend(
        templates
            .launch_templates()
            .iter()
            .map(|t| format!("launch template {}", t.launch_template_id().unwrap())),
    );
    let fleets = ec2.describe_fleets().send().await.unwrap();
    left.extend(
        fleets
            .fleets()
            .iter()
            .filter(|f| tag(f.tags(), RUN_TAG) == Some(run))
            .filter(|f| !f.fleet_state().unwrap().as_str().starts_with("deleted"))
            .map(|f| format!("fleet {}", f.fleet_id().unwrap())),
    );
    left
}

pub(crate) fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

pub(crate) fn state_of(machine: &Machine) -> AwsMachineState {
    AwsMachineState::from_machine(machine).expect("an aws machine")
}
