//! The `aws` provider through the real aws-sdk-ec2 against moto's EC2
//! emulator on 127.0.0.1, one server per test.
//!
//! The emulator comes from PyPI (`scripts/moto-server.sh` installs it):
//! `BTRFSQA_MOTO_SERVER` names its `moto_server`, else
//! `/var/tmp/btrfsqa-moto/bin/moto_server` is used; without it the tests
//! say so and skip. moto boots nothing, so the instances never answer SSH:
//! the provider never connects, so that does not matter here. Nor do they
//! print host keys (its console is a canned kernel log): the tests put one
//! where an instance reports its own, its `btrfsqa:host-key` tag, as soon as
//! the instance exists.
//!
//! moto's CreateFleet (type `instant`) launches from the launch template its
//! image, key pair, user data and tags, with the override's instance type,
//! but attaches none of the template's block device mappings (an instance
//! gets moto's own 8 GiB root volume only), applies none of its security
//! groups, shutdown behaviour or metadata options, and never refuses
//! capacity. It ignores CreateTags on a launch template, and cannot delete
//! an instant fleet whose instances are all terminated already
//! (DeleteFleets answers `InvalidParameterCombination: No instances
//! specified`). The fleet tests play EC2's part for the volumes (they
//! attach the template's data volumes to each instance, through the API,
//! before the instance reports its host key), check the template's
//! contents, and tear the machines down one after the other, so that the
//! last teardown deletes the fleet while its instance still runs (the
//! runner's teardowns at once are tested with mocks). Capacity refusals and
//! the on-demand fallback are tested with mocks only (`src/aws/fleet.rs`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;
use btrfsqa_cloud::{
    Access, AmiSelector, AwsMachineState, AwsProvider, AwsSettings, CloudProvider, Machine,
    MachineSpec, RetryPolicy,
};
use btrfsqa_model::RunId;

const REGION: &str = "us-east-1";
const RUN_TAG: &str = "btrfsqa:run-id";
const SSH_CIDR: &str = "198.51.100.7/32";

/// A moto server on a free port of 127.0.0.1, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    fn binary() -> Option<PathBuf> {
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

    fn start() -> Option<Moto> {
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
async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

fn settings(moto: &Moto, key_dir: &Path) -> AwsSettings {
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
fn host_key() -> String {
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
async fn provision_reporting(
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

fn spec(name: &str) -> MachineSpec {
    MachineSpec::new(RunId::generate(chrono::Utc::now()), name)
}

fn run_filter(run: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{RUN_TAG}"))
        .values(run)
        .build()
}

/// Every resource of `run` that still exists (instances not terminated).
async fn left_of_run(ec2: &aws_sdk_ec2::Client, run: &str) -> Vec<String> {
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

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn state_of(machine: &Machine) -> AwsMachineState {
    AwsMachineState::from_machine(machine).expect("an aws machine")
}

#[tokio::test]
async fn provision_is_locked_down_and_teardown_leaves_nothing() {
    let Some(moto) = Moto::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let config = sdk_config(&moto).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let provider = AwsProvider::from_sdk_config(settings(&moto, keys.path()), &config).unwrap();
    let spec = spec("aws-0");
    let run = spec.run_id.as_str().to_owned();
    let key = host_key();

    let machine = provision_reporting(&provider, &ec2, &spec, &key)
        .await
        .unwrap();

    // The instance: tagged, spot, terminates on shutdown, powers itself off.
    let state = state_of(&machine);
    assert_eq!(machine.provider_id, state.instance_id);
    let described = ec2
        .describe_instances()
        .instance_ids(&state.instance_id)
        .send()
        .await
        .unwrap();
    let instance = &described.reservations()[0].instances()[0];
    assert_eq!(tag(instance.tags(), RUN_TAG), Some(run.as_str()));
    assert_eq!(
        tag(instance.tags(), "btrfsqa:owner"),
        Some("integration-test")
    );
    assert_eq!(
        tag(instance.tags(), "Name"),
        Some(format!("btrfsqa-{run}-aws-0").as_str())
    );
    assert!(tag(instance.tags(), "btrfsqa:expires").is_some());
    assert_eq!(state.market, "spot");
    let shutdown = ec2
        .describe_instance_attribute()
        .instance_id(&state.instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shutdown
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value()),
        Some("terminate")
    );
    let user_data = ec2
        .describe_instance_attribute()
        .instance_id(&state.instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .unwrap();
    let user_data = user_data.user_data().and_then(|v| v.value()).unwrap();
    let user_data =
        String::from_utf8(aws_smithy_types::base64::decode(user_data).unwrap()).unwrap();
    assert!(user_data.contains("shutdown -h"), "{user_data}");

    // Seven volumes (root + six), all deleted with the instance, all tagged;
    // the machine's devices are the data volumes', by id, in order.
    let mappings = instance.block_device_mappings();
    assert_eq!(mappings.len(), 7);
    assert!(
        mappings
            .iter()
            .all(|m| m.ebs().unwrap().delete_on_termination() == Some(true))
    );
    let volumes = ec2
        .describe_volumes()
        .filters(run_filter(&run))
        .send()
        .await
        .unwrap();
    assert_eq!(volumes.volumes().len(), 7);
    let data: Vec<_> = volumes
        .volumes()
        .iter()
        .filter(|v| v.size() == Some(10))
        .collect();
    assert_eq!(data.len(), 6);
    assert!(
        data.iter()
            .all(|v| v.volume_type().map(|t| t.as_str()) == Some("gp3"))
    );
    let by_device = |device: &str| {
        mappings
            .iter()
            .find(|m| m.device_name() == Some(device))
            .and_then(|m| m.ebs()?.volume_id())
            .unwrap()
            .replace('-', "")
    };
    assert_eq!(
        machine.test_dev,
        format!(
            "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}",
            by_device("/dev/sdf")
        )
    );
    assert_eq!(machine.scratch_devs.len(), 5);
    assert!(machine.scratch_devs[0].ends_with(&by_device("/dev/sdg")));
    assert_eq!(
        state.volume_ids.iter().collect::<BTreeSet<_>>(),
        data.iter()
            .map(|v| v.volume_id().unwrap().to_owned())
            .collect::<BTreeSet<_>>()
            .iter()
            .collect()
    );

    // The key pair made for the run, and the key beside it.
    let key_pairs = ec2
        .describe_key_pairs()
        .filters(run_filter(&run))
        .send()
        .await
        .unwrap();
    assert_eq!(key_pairs.key_pairs().len(), 1);
    assert_eq!(
        key_pairs.key_pairs()[0].key_name(),
        Some(state.key_name.as_str())
    );
    let Access::Ssh(endpoint) = &machine.access else {
        panic!("an aws machine is reached over ssh")
    };
    assert_eq!(instance.key_name(), Some(state.key_name.as_str()));
    let identity = endpoint.identity_file.clone().unwrap();
    assert!(identity.starts_with(keys.path()) && identity.exists());
    assert_eq!(endpoint.port, 22);
    assert_eq!(endpoint.user, "ubuntu");
    // The host key the instance reported, pinned to its address.
    assert_eq!(
        std::fs::read_to_string(endpoint.known_hosts_file.as_ref().unwrap()).unwrap(),
        format!("{} {key}\n", endpoint.host)
    );

    // The security group: SSH from the configured range only.
    let groups = ec2
        .describe_security_groups()
        .group_ids(&state.security_group_id)
        .send()
        .await
        .unwrap();
    let group = &groups.security_groups()[0];
    assert_eq!(tag(group.tags(), RUN_TAG), Some(run.as_str()));
    let rules = group.ip_permissions();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(
        (rules[0].from_port(), rules[0].to_port()),
        (Some(22), Some(22))
    );
    let ranges: Vec<_> = rules[0]
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(ranges, [SSH_CIDR]);
    assert!(rules[0].ipv6_ranges().is_empty());

    provider.teardown(&machine).await.unwrap();

    assert_eq!(left_of_run(&ec2, &run).await, Vec::<String>::new());
    assert!(!identity.exists(), "the generated key is deleted too");
    provider.teardown(&machine).await.unwrap();
}

#[tokio::test]
async fn reap_after_a_killed_controller_leaves_only_what_is_not_ours() {
    let Some(moto) = Moto::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let config = sdk_config(&moto).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let provider = AwsProvider::from_sdk_config(settings(&moto, keys.path()), &config).unwrap();

    // Someone else's volume, named like ours but without the run tag.
    let foreign = ec2
        .create_volume()
        .availability_zone(format!("{REGION}a"))
        .size(1)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("Name")
                        .value("btrfsqa-lookalike")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_owned();

    let key = host_key();
    let expired = provision_reporting(&provider, &ec2, &spec("aws-0"), &key)
        .await
        .unwrap();
    let named = provision_reporting(&provider, &ec2, &spec("aws-1"), &key)
        .await
        .unwrap();
    let expires_at = state_of(&expired).expires_at;
    // The controller dies: nothing will tear these down.
    let (expired_run, named_run) = (expired.run_id.clone(), named.run_id.clone());
    drop((expired, named));

    // Nothing has ended yet: a plain reap touches nothing.
    let items = provider.reap(None, false).await.unwrap();
    assert!(items.is_empty(), "{items:?}");

    // `btrfsqa teardown RUN` / `reap --run RUN`: that run, at once.
    let items = provider.reap(Some(named_run.clone()), false).await.unwrap();
    assert!(
        items
            .iter()
            .any(|i| i.kind == "instance" && i.action == "terminated"),
        "{items:?}"
    );
    assert!(
        items
            .iter()
            .all(|i| i.run_id.as_deref() == Some(named_run.as_str())),
        "{items:?}"
    );
    assert_eq!(
        left_of_run(&ec2, named_run.as_str()).await,
        Vec::<String>::new()
    );
    assert!(!left_of_run(&ec2, expired_run.as_str()).await.is_empty());

    // After the expiry: a dry run says what would go and removes nothing...
    let later = expires_at + chrono::Duration::minutes(1);
    let planned = provider.reap_at(None, true, later).await.unwrap();
    assert!(
        planned
            .iter()
            .any(|i| i.kind == "instance" && i.action == "would terminate"),
        "{planned:?}"
    );
    assert!(
        planned
            .iter()
            .all(|i| i.action.to_string().starts_with("would ")),
        "{planned:?}"
    );
    assert!(!left_of_run(&ec2, expired_run.as_str()).await.is_empty());

    // ...and the real one removes it all.
    let items = provider.reap_at(None, false, later).await.unwrap();
    assert!(items.iter().all(|i| !i.action.is_failure()), "{items:?}");
    assert_eq!(
        left_of_run(&ec2, expired_run.as_str()).await,
        Vec::<String>::new()
    );

    // What is not tagged as ours survives.
    let still = ec2
        .describe_volumes()
        .volume_ids(&foreign)
        .send()
        .await
        .unwrap();
    assert_eq!(still.volumes().len(), 1);
    assert!(!keys.path().join(expired_run.as_str()).exists());
}

#[tokio::test]
async fn the_standard_credential_chain_reaches_the_endpoint() {
    // Credentials only ever come from the environment here; without them
    // the chain would wait on the instance metadata service.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        eprintln!("skipped: AWS_ACCESS_KEY_ID is not set (CI sets dummy ones for the emulator)");
        return;
    }
    let Some(moto) = Moto::start() else { return };
    let keys = tempfile::tempdir().unwrap();

    let provider = AwsProvider::new(settings(&moto, keys.path()))
        .await
        .unwrap();

    assert_eq!(provider.region(), REGION);
    let items = provider.reap(None, true).await.unwrap();
    assert!(items.is_empty(), "{items:?}");
}

async fn instance_state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let described = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    described.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .unwrap()
        .as_str()
        .to_owned()
}

#[tokio::test]
async fn reset_console_and_a_termination_nobody_in_the_run_asked_for() {
    let Some(moto) = Moto::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let config = sdk_config(&moto).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let provider = AwsProvider::from_sdk_config(settings(&moto, keys.path()), &config).unwrap();
    let spec = spec("aws-0");
    let run = spec.run_id.as_str().to_owned();
    let machine = provision_reporting(&provider, &ec2, &spec, &host_key())
        .await
        .unwrap();
    let id = machine.provider_id.clone();

    // RebootInstances, then running again.
    provider.reset(&machine).await.unwrap();
    assert_eq!(instance_state(&ec2, &id).await, "running");

    // The emulator prints a canned kernel log, or may print nothing; what
    // comes is decoded text, not base64 (which has no spaces).
    if let Some(console) = provider.console(&machine).await {
        assert!(console.trim().contains(' '), "{console}");
    }

    assert_eq!(provider.interruption_notice(&machine).await, None);

    // Someone terminates the instance behind the run's back.
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let notice = provider.interruption_notice(&machine).await.unwrap();
    assert!(notice.contains(&id), "{notice}");
    assert!(
        notice.contains("`terminated`") || notice.contains("`shutting-down`"),
        "{notice}"
    );

    // A gone machine cannot be reset (and the emulator, which would bring a
    // terminated instance back on RebootInstances, is never asked to).
    let error = provider.reset(&machine).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("reset instance `{id}`")),
        "{error}"
    );
    assert_ne!(instance_state(&ec2, &id).await, "running");

    provider.teardown(&machine).await.unwrap();
    assert_eq!(left_of_run(&ec2, &run).await, Vec::<String>::new());
}

/// The emulator prints no host key and nothing reports one: provisioning
/// fails once the wait is over, terminates the instance and leaves nothing,
/// never a machine with an empty known_hosts.
#[tokio::test]
async fn a_machine_whose_host_key_cannot_be_learned_is_not_handed_out() {
    let Some(moto) = Moto::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let config = sdk_config(&moto).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let mut settings = settings(&moto, keys.path());
    settings.host_key_wait = Duration::from_secs(2);
    let provider = AwsProvider::from_sdk_config(settings, &config).unwrap();
    let spec = spec("aws-0");
    let run = spec.run_id.as_str().to_owned();

    let error = provider.provision(&spec).await.unwrap_err();

    let text = {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    };
    assert!(text.contains("host key"), "{text}");
    assert!(!text.contains("may be left behind"), "{text}");
    assert_eq!(left_of_run(&ec2, &run).await, Vec::<String>::new());
    assert!(
        !keys.path().join(&run).exists(),
        "no key directory (and no empty known_hosts) is left"
    );
}

/// The launch template of `run`, as EC2 keeps it.
async fn template_of(
    ec2: &aws_sdk_ec2::Client,
    run: &str,
) -> Option<aws_sdk_ec2::types::ResponseLaunchTemplateData> {
    let templates = ec2
        .describe_launch_templates()
        .filters(run_filter(run))
        .send()
        .await
        .unwrap();
    let id = templates.launch_templates().first()?.launch_template_id()?;
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_id(id)
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    versions.launch_template_versions()[0]
        .launch_template_data()
        .cloned()
}

/// Plays, for every instance of `run`, what EC2 and the machine would do
/// and the emulator does not: attach the data volumes of the launch
/// template (its mappings after the first, the root, which moto makes
/// itself), tagged as the template says, then report the host key `key` in
/// the instance's `btrfsqa:host-key` tag.
fn stand_in_for_fleet(
    ec2: &aws_sdk_ec2::Client,
    run: &str,
    key: &str,
) -> tokio::task::JoinHandle<()> {
    let (ec2, run, key) = (ec2.clone(), run.to_owned(), key.to_owned());
    tokio::spawn(async move {
        loop {
            let found = ec2
                .describe_instances()
                .filters(run_filter(&run))
                .send()
                .await
                .unwrap();
            for instance in found.reservations().iter().flat_map(|r| r.instances()) {
                let state = instance.state().and_then(|s| s.name()).unwrap().as_str();
                if state != "running" || tag(instance.tags(), "btrfsqa:host-key").is_some() {
                    continue;
                }
                let Some(template) = template_of(&ec2, &run).await else {
                    continue;
                };
                let id = instance.instance_id().unwrap();
                let zone = instance
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap();
                let volume_tags: Vec<aws_sdk_ec2::types::Tag> = template
                    .tag_specifications()
                    .iter()
                    .filter(|spec| {
                        spec.resource_type() == Some(&aws_sdk_ec2::types::ResourceType::Volume)
                    })
                    .flat_map(|spec| spec.tags().iter().cloned())
                    .collect();
                for mapping in template.block_device_mappings().iter().skip(1) {
                    let device = mapping.device_name().unwrap();
                    let attached = instance
                        .block_device_mappings()
                        .iter()
                        .any(|m| m.device_name() == Some(device));
                    if attached {
                        continue;
                    }
                    let ebs = mapping.ebs().unwrap();
                    let volume = ec2
                        .create_volume()
                        .availability_zone(zone)
                        .size(ebs.volume_size().unwrap())
                        .volume_type(ebs.volume_type().unwrap().clone())
                        .tag_specifications(
                            aws_sdk_ec2::types::TagSpecification::builder()
                                .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
                                .set_tags(Some(volume_tags.clone()))
                                .build(),
                        )
                        .send()
                        .await
                        .unwrap();
                    ec2.attach_volume()
                        .instance_id(id)
                        .volume_id(volume.volume_id().unwrap())
                        .device(device)
                        .send()
                        .await
                        .unwrap();
                }
                ec2.create_tags()
                    .resources(id)
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
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// `count` specs of one run: `aws-0`, `aws-1`, ...
fn run_specs(count: usize) -> Vec<MachineSpec> {
    let run = RunId::generate(chrono::Utc::now());
    (0..count)
        .map(|i| MachineSpec::new(run.clone(), format!("aws-{i}")))
        .collect()
}

/// `provision_many` while the test stands in for what the emulator does not do.
async fn provision_fleet(
    provider: &AwsProvider,
    ec2: &aws_sdk_ec2::Client,
    specs: &[MachineSpec],
    key: &str,
) -> Vec<Machine> {
    let stand_in = stand_in_for_fleet(ec2, specs[0].run_id.as_str(), key);
    let results = provider.provision_many(specs).await;
    stand_in.abort();
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|error| panic!("{error:?}")))
        .collect()
}

#[tokio::test]
async fn a_runs_machines_come_from_one_fleet_and_teardown_leaves_nothing() {
    let Some(moto) = Moto::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let config = sdk_config(&moto).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let provider = AwsProvider::from_sdk_config(settings(&moto, keys.path()), &config).unwrap();
    let specs = run_specs(3);
    let run = specs[0].run_id.as_str().to_owned();
    let key = host_key();

    let machines = provision_fleet(&provider, &ec2, &specs, &key).await;

    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["aws-0", "aws-1", "aws-2"]);
    let shared = format!("btrfsqa-{run}");

    // One instant fleet of the run, from one launch template.
    let fleets = ec2.describe_fleets().send().await.unwrap();
    let fleets: Vec<_> = fleets
        .fleets()
        .iter()
        .filter(|f| tag(f.tags(), RUN_TAG) == Some(run.as_str()))
        .collect();
    assert_eq!(fleets.len(), 1, "{fleets:?}");
    assert_eq!(
        fleets[0].r#type(),
        Some(&aws_sdk_ec2::types::FleetType::Instant)
    );
    let template = template_of(&ec2, &run).await.expect("the run's template");
    assert_eq!(template.key_name(), Some(shared.as_str()));
    let group = state_of(&machines[0]).security_group_id;
    assert_eq!(template.security_group_ids(), std::slice::from_ref(&group));
    let mappings = template.block_device_mappings();
    assert_eq!(mappings.len(), 7, "root and six data volumes");
    for mapping in &mappings[1..] {
        let ebs = mapping.ebs().unwrap();
        assert_eq!(
            (
                ebs.volume_size(),
                ebs.volume_type().map(|t| t.as_str()),
                ebs.delete_on_termination()
            ),
            (Some(10), Some("gp3"), Some(true))
        );
    }
    assert_eq!(
        template
            .instance_initiated_shutdown_behavior()
            .map(|b| b.as_str()),
        Some("terminate")
    );
    assert_eq!(
        template
            .metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required")
    );
    let user_data = aws_smithy_types::base64::decode(template.user_data().unwrap()).unwrap();
    assert!(
        String::from_utf8(user_data)
            .unwrap()
            .contains("shutdown -h")
    );

    // Three running instances, each named after its machine, with six data
    // volumes tagged likewise.
    for machine in &machines {
        let state = state_of(machine);
        assert_eq!(state.market, "spot");
        assert_eq!(state.security_group_id, group, "the run's group");
        let described = ec2
            .describe_instances()
            .instance_ids(&machine.provider_id)
            .send()
            .await
            .unwrap();
        let instance = &described.reservations()[0].instances()[0];
        assert_eq!(
            instance.state().and_then(|s| s.name()).map(|s| s.as_str()),
            Some("running")
        );
        assert_eq!(tag(instance.tags(), RUN_TAG), Some(run.as_str()));
        assert_eq!(
            tag(instance.tags(), "btrfsqa:machine"),
            Some(machine.name.as_str())
        );
        assert_eq!(
            tag(instance.tags(), "Name"),
            Some(format!("btrfsqa-{run}-{}", machine.name).as_str())
        );
        assert_eq!(instance.key_name(), Some(shared.as_str()));
        assert_eq!(state.volume_ids.len(), 6);
        let volumes = ec2
            .describe_volumes()
            .set_volume_ids(Some(state.volume_ids.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(volumes.volumes().len(), 6);
        for volume in volumes.volumes() {
            assert_eq!(volume.size(), Some(10));
            assert_eq!(
                volume.attachments()[0].instance_id(),
                Some(instance.instance_id().unwrap())
            );
            assert_eq!(
                tag(volume.tags(), "btrfsqa:machine"),
                Some(machine.name.as_str())
            );
            assert_eq!(tag(volume.tags(), RUN_TAG), Some(run.as_str()));
        }
        let Access::Ssh(endpoint) = &machine.access else {
            panic!("an aws machine is reached over ssh")
        };
        assert_eq!(
            std::fs::read_to_string(endpoint.known_hosts_file.as_ref().unwrap()).unwrap(),
            format!("{} {key}\n", endpoint.host)
        );
    }
    let identity = |machine: &Machine| match &machine.access {
        Access::Ssh(endpoint) => endpoint.identity_file.clone().unwrap(),
        Access::Local => unreachable!(),
    };
    let key_file = identity(&machines[0]);
    assert!(key_file.exists());
    assert!(
        machines.iter().all(|m| identity(m) == key_file),
        "one key pair for the run"
    );
    let rules = ec2
        .describe_security_groups()
        .group_ids(&group)
        .send()
        .await
        .unwrap();
    let ranges: Vec<_> = rules.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(ranges, [SSH_CIDR]);

    for (i, machine) in machines.iter().enumerate() {
        provider.teardown(machine).await.unwrap();
        if i < 2 {
            // What the run shares stays while one of its machines does.
            let left = left_of_run(&ec2, &run).await;
            assert!(
                left.iter().any(|l| l.starts_with("launch template")),
                "{left:?}"
            );
            assert!(key_file.exists());
        }
    }

    assert_eq!(left_of_run(&ec2, &run).await, Vec::<String>::new());
    assert!(!key_file.exists());
    assert!(!keys.path().join(&run).exists());
}

#[tokio::test]
async fn reap_after_a_killed_controller_removes_a_runs_fleet_and_all_it_made() {
    let Some(moto) = Moto::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let config = sdk_config(&moto).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let provider = AwsProvider::from_sdk_config(settings(&moto, keys.path()), &config).unwrap();
    let specs = run_specs(2);
    let run = specs[0].run_id.as_str().to_owned();

    let machines = provision_fleet(&provider, &ec2, &specs, &host_key()).await;
    let expires_at = state_of(&machines[0]).expires_at;
    // The controller dies: nothing will tear these down.
    drop(machines);

    assert!(provider.reap(None, false).await.unwrap().is_empty());
    let later = expires_at + chrono::Duration::minutes(1);
    let planned = provider.reap_at(None, true, later).await.unwrap();
    for kind in [
        "instance",
        "fleet",
        "launch-template",
        "key-pair",
        "security-group",
    ] {
        assert!(
            planned.iter().any(|i| i.kind == kind),
            "{kind}: {planned:?}"
        );
    }
    assert!(left_of_run(&ec2, &run).await.len() > 5);

    let items = provider.reap_at(None, false, later).await.unwrap();

    assert!(items.iter().all(|i| !i.action.is_failure()), "{items:?}");
    assert_eq!(
        items
            .iter()
            .filter(|i| i.kind == "instance" && i.action == "terminated")
            .count(),
        2,
        "{items:?}"
    );
    assert!(
        items
            .iter()
            .filter(|i| i.kind != "key-directory")
            .all(|i| i.run_id.as_deref() == Some(run.as_str())),
        "{items:?}"
    );
    assert_eq!(left_of_run(&ec2, &run).await, Vec::<String>::new());
    assert!(!keys.path().join(&run).exists());
}
