//! Tests of provisioning one machine on a mocked EC2: what is made, host
//! keys, retries, capacity fallbacks, and the cleanup of a failed attempt.

use super::super::api::MockEc2Api;
use super::super::tags::{EXPIRES, OWNER, RUN as RUN_TAG};
use super::super::test_support::{
    RUN, Setup, World, chain, ec2_error, provider, settings, spec, wire,
};
use super::*;
use crate::CloudProvider;
use std::time::Duration;

fn endpoint(machine: &Machine) -> &SshEndpoint {
    match &machine.access {
        Access::Ssh(endpoint) => endpoint,
        Access::Local => panic!("an aws machine is reached over ssh"),
    }
}

#[tokio::test]
async fn a_spot_machine_with_six_volumes_locked_down() {
    let Some(setup) = Setup::with_ssh_keygen() else {
        return;
    };
    let (keys, world, provider) = setup.wire();

    let machine = provider.provision(&spec()).await.unwrap();

    {
        let w = world.lock().unwrap();
        let launch = &w.launches[0];
        assert_eq!(launch.market, Market::Spot { max_price: None });
        assert_eq!(launch.instance_type, "m6i.large");
        assert_eq!(
            launch.image_id, "ami-new",
            "the newest image of the name filter"
        );
        assert_eq!(launch.root_device_name, "/dev/xvda");
        assert_eq!(launch.root_volume_gib, 30);
        assert_eq!(launch.data_device_names.len(), 6);
        assert_eq!(
            (launch.volume_gib, launch.volume_type.as_str()),
            (10, "gp3")
        );
        assert!(
            launch.user_data.contains("shutdown -h"),
            "{}",
            launch.user_data
        );
        let tags: std::collections::BTreeMap<_, _> = launch.tags.iter().cloned().collect();
        assert_eq!(tags["Name"], format!("btrfsqa-{RUN}-aws-0"));
        assert_eq!(tags[RUN_TAG], RUN);
        assert_eq!(tags[OWNER], "tester");
        assert!(tags.contains_key(EXPIRES));
        assert_eq!(
            w.rules,
            [(
                launch.security_group_id.clone(),
                "198.51.100.7/32".to_owned()
            )]
        );
        assert!(w.keys[0].tags.get(RUN_TAG).is_some_and(|run| run == RUN));
        assert!(w.groups[0].tags.get(RUN_TAG).is_some_and(|run| run == RUN));

        // Devices by volume id, in the order of the mapping.
        let instance = &w.instances[0];
        let volume_of = |device: &str| {
            instance
                .block_devices
                .iter()
                .find(|(name, _)| name == device)
                .unwrap()
                .1
                .replace('-', "")
        };
        assert_eq!(
            machine.test_dev,
            format!(
                "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}",
                volume_of("/dev/sdf")
            )
        );
        assert_eq!(machine.scratch_devs.len(), 5);
        assert!(machine.scratch_devs[4].ends_with(&volume_of("/dev/sdk")));
        assert_eq!(machine.provider_id, instance.id);
        assert_eq!(machine.instance_type.as_deref(), Some("m6i.large"));
    }

    let endpoint = endpoint(&machine);
    assert_eq!(
        (endpoint.host.as_str(), endpoint.port),
        ("203.0.113.10", 22)
    );
    assert_eq!(endpoint.user, "admin");
    let identity = endpoint.identity_file.as_ref().unwrap();
    assert!(identity.starts_with(keys.path()) && identity.exists());
    let known_hosts = endpoint.known_hosts_file.as_ref().unwrap();
    let known_hosts = std::fs::read_to_string(known_hosts).unwrap();
    assert_eq!(known_hosts.lines().count(), 3, "{known_hosts}");

    let state = AwsMachineState::from_machine(&machine).unwrap();
    assert_eq!(state.market, "spot");
    assert_eq!(state.hourly_price_usd, Some(0.0321));
    assert_eq!(state.xen_devices[0], "/dev/xvdf");
    let cost = AwsProvider::cost_estimate(&machine, state.launched_at + chrono::Duration::hours(2));
    assert!((cost.unwrap() - 0.0642).abs() < 1e-9);

    provider.teardown(&machine).await.unwrap();
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
    assert!(!identity.exists());
    provider.teardown(&machine).await.unwrap();
}

#[tokio::test]
async fn host_keys_from_the_console_are_pinned() {
    let Some(setup) = Setup::with_ssh_keygen() else {
        return;
    };
    let console = include_str!("../../../fixtures/aws/console-cloud-init.txt");
    setup.world.lock().unwrap().console = Some(console.to_owned());
    let (_keys, _world, provider) = setup.wire();

    let machine = provider.provision(&spec()).await.unwrap();

    let known_hosts =
        std::fs::read_to_string(endpoint(&machine).known_hosts_file.as_ref().unwrap()).unwrap();
    assert_eq!(known_hosts.lines().count(), 3, "{known_hosts}");
    assert!(
        known_hosts
            .lines()
            .all(|line| line.starts_with("203.0.113.10 "))
    );
    assert_eq!(provider.console_host_keys(&machine).await.unwrap().len(), 3);
    provider.teardown(&machine).await.unwrap();
}

#[tokio::test]
async fn no_host_key_in_time_is_a_provisioning_error_that_leaves_nothing() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    // What the EC2 emulator prints: a kernel log and no cloud-init.
    setup.world.lock().unwrap().console = Some("Linux version 2.6.16-xenU\n".to_owned());
    setup.settings.host_key_wait = Duration::from_millis(50);
    let (keys, world, provider) = setup.wire();

    let error = provider.provision(&spec()).await.unwrap_err();

    let text = chain(&error);
    assert!(text.contains("host key"), "{text}");
    let ProvisionError::Failed { leftovers, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let w = world.lock().unwrap();
    assert!(
        w.removed.iter().any(|r| r.starts_with("instance ")),
        "{:?}",
        w.removed
    );
    assert_eq!(w.of_run(RUN), Vec::<String>::new());
    assert!(
        !keys.path().join(RUN).exists(),
        "no empty known_hosts is left either"
    );
}

#[tokio::test]
async fn a_host_key_the_instance_reports_in_its_tags_is_pinned() {
    let Some(setup) = Setup::with_ssh_keygen() else {
        return;
    };
    let key = {
        let console = include_str!("../../../fixtures/aws/console-cloud-init.txt");
        let ConsoleHostKeys::Keys(keys) = host_keys(console) else {
            unreachable!()
        };
        keys.into_iter()
            .find(|k| k.starts_with("ssh-ed25519 "))
            .unwrap()
    };
    {
        let mut w = setup.world.lock().unwrap();
        w.console = None;
        w.instance_tags = vec![
            (
                "btrfsqa:host-key".to_owned(),
                format!("{key} root@instance"),
            ),
            // Not a key: ignored.
            (
                "btrfsqa:host-key-2".to_owned(),
                "ssh-rsa bm90IGEga2V5".to_owned(),
            ),
        ];
    }
    let (_keys, _world, provider) = setup.wire();

    let machine = provider.provision(&spec()).await.unwrap();

    let known_hosts =
        std::fs::read_to_string(endpoint(&machine).known_hosts_file.as_ref().unwrap()).unwrap();
    assert_eq!(known_hosts, format!("203.0.113.10 {key}\n"));
    let state = AwsMachineState::from_machine(&machine).unwrap();
    assert_eq!(state.host_keys, [key]);
    provider.teardown(&machine).await.unwrap();
}

#[tokio::test]
async fn throttling_is_retried_with_backoff() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_describe_images()
        .times(1)
        .returning(|_, _, _| Err(ec2_error("DescribeImages", "RequestLimitExceeded")));
    setup
        .mock
        .expect_import_key_pair()
        .times(2)
        .returning(|_, _, _| Err(ec2_error("ImportKeyPair", "Throttling")));
    setup
        .mock
        .expect_run_instance()
        .times(1)
        .returning(|_| Err(ec2_error("RunInstances", "InternalError")));
    let (_keys, world, provider) = setup.wire();

    let machine = provider.provision(&spec()).await.unwrap();

    assert_eq!(world.lock().unwrap().keys.len(), 1);
    assert_eq!(world.lock().unwrap().instances.len(), 1);
    provider.teardown(&machine).await.unwrap();
}

#[tokio::test]
async fn throttling_that_does_not_pass_fails_cleanly() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_create_security_group()
        .returning(|_, _, _, _| Err(ec2_error("CreateSecurityGroup", "RequestLimitExceeded")));
    let (_keys, world, provider) = setup.wire();

    let error = provider.provision(&spec()).await.unwrap_err();

    assert!(chain(&error).contains("was throttled"), "{}", chain(&error));
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
}

#[tokio::test]
async fn no_capacity_moves_on_to_the_next_type() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_run_instance()
        .withf(|request| request.instance_type == "m6i.large")
        .returning(|_| Err(ec2_error("RunInstances", "InsufficientInstanceCapacity")));
    let (_keys, _world, provider) = setup.wire();

    let machine = provider.provision(&spec()).await.unwrap();

    assert_eq!(machine.instance_type.as_deref(), Some("m5.large"));
    let state = AwsMachineState::from_machine(&machine).unwrap();
    assert_eq!(state.market, "spot");
    provider.teardown(&machine).await.unwrap();
}

#[tokio::test]
async fn no_spot_capacity_falls_back_to_on_demand_when_allowed() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_run_instance()
        .withf(|request| matches!(request.market, Market::Spot { .. }))
        .times(2)
        .returning(|_| Err(ec2_error("RunInstances", "SpotMaxPriceTooLow")));
    setup.settings.allow_on_demand = true;
    setup.settings.max_price = Some("0.01".to_owned());
    let (_keys, _world, provider) = setup.wire();

    let machine = provider.provision(&spec()).await.unwrap();

    let state = AwsMachineState::from_machine(&machine).unwrap();
    assert_eq!(
        (state.market.as_str(), state.instance_type.as_str()),
        ("on-demand", "m6i.large")
    );
    assert_eq!(
        state.hourly_price_usd, None,
        "EC2 does not tell on-demand prices"
    );
    assert_eq!(AwsProvider::cost_estimate(&machine, Utc::now()), None);
    provider.teardown(&machine).await.unwrap();
}

#[tokio::test]
async fn no_capacity_anywhere_leaves_nothing() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_run_instance()
        .returning(|_| Err(ec2_error("RunInstances", "InsufficientInstanceCapacity")));
    let (keys, world, provider) = setup.wire();

    let error = provider.provision(&spec()).await.unwrap_err();

    let ProvisionError::Failed {
        leftovers, source, ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let text = chain(&error);
    assert!(
        text.contains("m6i.large (spot)") && text.contains("m5.large (spot)"),
        "{text}"
    );
    assert!(
        !text.contains("on-demand"),
        "on-demand was not allowed: {text}"
    );
    assert!(matches!(
        source.downcast_ref::<AwsError>(),
        Some(AwsError::NoCapacity { .. })
    ));
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
    assert!(!keys.path().join(RUN).exists(), "the local key is gone too");
}

#[tokio::test]
async fn a_failure_halfway_removes_what_was_made() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup.mock.expect_authorize_ssh().returning(|_, _| {
        Err(ec2_error(
            "AuthorizeSecurityGroupIngress",
            "UnauthorizedOperation",
        ))
    });
    let (_keys, world, provider) = setup.wire();

    let error = provider.provision(&spec()).await.unwrap_err();

    let text = chain(&error);
    assert!(
        text.contains("not permitted to call `ec2:AuthorizeSecurityGroupIngress`"),
        "{text}"
    );
    let w = world.lock().unwrap();
    assert_eq!(w.of_run(RUN), Vec::<String>::new());
    assert!(
        w.removed.iter().any(|r| r.starts_with("key ")),
        "{:?}",
        w.removed
    );
    assert!(
        w.removed.iter().any(|r| r.starts_with("group ")),
        "{:?}",
        w.removed
    );
}

#[tokio::test]
async fn a_failure_after_launch_terminates_the_instance() {
    let Some(setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup.world.lock().unwrap().console =
        Some(include_str!("../../../fixtures/aws/console-conflicting-keys.txt").to_owned());
    let (_keys, world, provider) = setup.wire();

    let error = provider.provision(&spec()).await.unwrap_err();

    assert!(
        chain(&error).contains("conflicting host keys"),
        "{}",
        chain(&error)
    );
    let w = world.lock().unwrap();
    assert!(
        w.removed.iter().any(|r| r.starts_with("instance ")),
        "{:?}",
        w.removed
    );
    assert_eq!(w.of_run(RUN), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_permission_names_the_ec2_action() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_run_instance()
        .returning(|_| Err(ec2_error("RunInstances", "UnauthorizedOperation")));
    let (_keys, world, provider) = setup.wire();

    let error = provider.provision(&spec()).await.unwrap_err();

    let text = chain(&error);
    assert!(
        text.contains("not permitted to call `ec2:RunInstances`"),
        "{text}"
    );
    assert_eq!(world.lock().unwrap().launches.len(), 0);
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
}

#[tokio::test]
async fn what_cleanup_cannot_remove_is_named() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_run_instance()
        .returning(|_| Err(ec2_error("RunInstances", "InsufficientInstanceCapacity")));
    setup
        .mock
        .expect_delete_security_group()
        .returning(|_| Err(ec2_error("DeleteSecurityGroup", "UnauthorizedOperation")));
    let (_keys, world, provider) = setup.wire();

    let error = provider.provision(&spec()).await.unwrap_err();

    let ProvisionError::Failed { leftovers, .. } = &error else {
        panic!("{error:?}");
    };
    let group = world.lock().unwrap().groups[0].id.clone();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert!(
        leftovers[0].contains(&format!("security group `{group}`")),
        "{leftovers:?}"
    );
    assert!(error.to_string().contains("may be left behind"), "{error}");
    assert_eq!(world.lock().unwrap().keys.len(), 0, "the rest went");
}

#[tokio::test]
async fn ssh_is_never_opened_to_the_world_by_default() {
    let mut setup = Setup::new();
    setup.settings.ssh_cidr = None;
    // Nothing answers there: the address cannot be detected.
    setup.settings.address_check_url = "http://127.0.0.1:1/".to_owned();
    let (_keys, world, provider) = setup.wire();

    let error = provider.provision(&spec()).await.unwrap_err();

    assert!(matches!(error, ProvisionError::Config { .. }), "{error:?}");
    assert!(error.to_string().contains("`ssh-cidr`"), "{error}");
    let w = world.lock().unwrap();
    assert!(w.keys.is_empty() && w.groups.is_empty() && w.instances.is_empty());
}

#[tokio::test]
async fn a_named_key_pair_is_used_and_kept() {
    let mut setup = Setup::new();
    setup.mock.expect_import_key_pair().never();
    setup.settings.key_name = Some("my-key".to_owned());
    setup.settings.identity_file = Some("/home/me/.ssh/id_ed25519".into());
    setup.settings.subnet_id = Some("subnet-1".to_owned());
    let (_keys, world, provider) = setup.wire();

    let machine = provider.provision(&spec()).await.unwrap();

    assert_eq!(
        endpoint(&machine).identity_file.as_deref(),
        Some(std::path::Path::new("/home/me/.ssh/id_ed25519"))
    );
    let launch = world.lock().unwrap().launches[0].clone();
    assert_eq!(launch.key_name, "my-key");
    assert_eq!(launch.subnet_id.as_deref(), Some("subnet-1"));
    provider.teardown(&machine).await.unwrap();
}

#[tokio::test]
async fn bad_settings_are_refused_before_anything_is_made() {
    let keys = tempfile::tempdir().unwrap();
    let mock = MockEc2Api::new();
    let mut settings = settings(keys.path());
    settings.volume_count = Some(0);
    let error = provider(settings.clone(), MockEc2Api::new())
        .provision(&spec())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("volume-count"), "{error}");
    settings.volume_count = None;
    settings.ssh_cidr = Some("everyone".to_owned());
    let world = World::new();
    let mut wired = mock;
    wire(&world, &mut wired);
    let error = provider(settings, wired)
        .provision(&spec())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("ssh-cidr"), "{error}");
}
