//! The `aws` provider through the real aws-sdk-ec2 against moto's EC2
//! emulator (see `aws_moto.rs`), one machine at a time: provisioning and
//! teardown, reaping after a killed controller, the credential chain,
//! reset and console, and a machine whose host key never comes.

use std::collections::BTreeSet;
use std::time::Duration;

use btrfsqa_cloud::{Access, AwsProvider, CloudProvider};

use crate::aws_moto::{
    Moto, REGION, RUN_TAG, SSH_CIDR, host_key, left_of_run, provision_reporting, run_filter,
    sdk_config, settings, spec, state_of, tag,
};

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
