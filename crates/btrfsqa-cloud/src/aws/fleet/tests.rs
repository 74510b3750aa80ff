//! Tests of provisioning several machines through an EC2 fleet on a mocked
//! EC2: spot and on-demand capacity, partial failures, and what a failure
//! leaves.

use super::super::AwsMachineState;
use std::collections::BTreeSet;

use super::super::tags::{MACHINE, RUN as RUN_TAG};
use super::super::test_support::{RUN, Setup, chain, ec2_error, spec};
use super::*;
use crate::{Access, CloudProvider};

fn specs(count: usize) -> Vec<MachineSpec> {
    (0..count)
        .map(|i| {
            let mut spec = spec();
            spec.name = format!("aws-{i}");
            spec
        })
        .collect()
}

fn state(machine: &Machine) -> AwsMachineState {
    AwsMachineState::from_machine(machine).expect("an aws machine")
}

fn identity(machine: &Machine) -> std::path::PathBuf {
    match &machine.access {
        Access::Ssh(endpoint) => endpoint.identity_file.clone().unwrap(),
        Access::Local => panic!("an aws machine is reached over ssh"),
    }
}

async fn teardown_all(provider: &AwsProvider, machines: &[Machine]) {
    let done = join_all(machines.iter().map(|m| provider.teardown(m))).await;
    for result in done {
        result.unwrap();
    }
}

#[tokio::test]
async fn three_machines_come_from_one_spot_fleet() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup.mock.expect_run_instance().never();
    let (keys, world, provider) = setup.wire();

    let machines: Vec<Machine> = provider
        .provision_many(&specs(3))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();

    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["aws-0", "aws-1", "aws-2"], "in spec order");
    {
        let w = world.lock().unwrap();
        assert_eq!(w.fleet_requests.len(), 1, "{:?}", w.fleet_requests);
        let request = &w.fleet_requests[0];
        assert_eq!(request.market, Market::Spot { max_price: None });
        assert_eq!(request.count, 3);
        let choices: Vec<(&str, u32)> = request
            .overrides
            .iter()
            .map(|o| (o.instance_type.as_str(), o.priority))
            .collect();
        assert_eq!(choices, [("m6i.large", 0), ("m5.large", 1)]);
        assert_eq!(w.templates.len(), 1);
        let (template, data) = &w.templates[0];
        assert_eq!(request.launch_template_id, template.id);
        assert_eq!(data.name, format!("btrfsqa-{RUN}"));
        assert_eq!(data.image_id, "ami-new");
        assert_eq!(data.data_device_names.len(), 6);
        assert_eq!((data.volume_gib, data.volume_type.as_str()), (10, "gp3"));
        assert!(data.user_data.contains("shutdown -h"), "{}", data.user_data);
        assert!(!data.in_subnet);
        // The run's, not a machine's.
        assert!(shared_by(&template.tags, RUN), "{:?}", template.tags);
        assert!(shared_by(&w.fleets[0].tags, RUN));
        assert!(shared_by(&w.keys[0].tags, RUN) && w.keys.len() == 1);
        assert!(shared_by(&w.groups[0].tags, RUN) && w.groups.len() == 1);
        assert_eq!(
            w.rules,
            [(data.security_group_id.clone(), "198.51.100.7/32".to_owned())]
        );

        for machine in &machines {
            let instance = w
                .instances
                .iter()
                .find(|i| i.id == machine.provider_id)
                .unwrap();
            assert_eq!(instance.tags[MACHINE], machine.name);
            assert_eq!(
                instance.tags["Name"],
                format!("btrfsqa-{RUN}-{}", machine.name)
            );
            assert_eq!(instance.tags[RUN_TAG], RUN);
            assert_eq!(instance.block_devices.len(), 7, "root and six data volumes");
            for (_, volume) in &instance.block_devices {
                let volume = w.volumes.iter().find(|v| &v.id == volume).unwrap();
                assert_eq!(volume.tags[MACHINE], machine.name);
                assert_eq!(volume.tags[RUN_TAG], RUN);
            }
            let state = state(machine);
            assert_eq!(state.market, "spot");
            assert_eq!(state.volume_ids.len(), 6);
            assert_eq!(machine.scratch_devs.len(), 5);
            assert_eq!(
                state.launch_template_id.as_deref(),
                Some(template.id.as_str())
            );
            assert_eq!(state.fleet_id.as_deref(), Some(w.fleets[0].id.as_str()));
            assert_eq!(state.key_name, format!("btrfsqa-{RUN}"));
            assert_eq!(state.hourly_price_usd, Some(0.0321));
            let Access::Ssh(endpoint) = &machine.access else {
                unreachable!()
            };
            let known_hosts =
                std::fs::read_to_string(endpoint.known_hosts_file.as_ref().unwrap()).unwrap();
            assert_eq!(known_hosts.lines().count(), 3, "{known_hosts}");
        }
    }
    let key = identity(&machines[0]);
    assert!(key.exists() && key.starts_with(keys.path()));
    assert!(
        machines.iter().all(|m| identity(m) == key),
        "one key for the run"
    );

    // The first two go: what the run shares stays for the third.
    teardown_all(&provider, &machines[..2]).await;
    {
        let w = world.lock().unwrap();
        let left = w.of_run(RUN);
        assert!(left.iter().any(|r| r.starts_with("template ")), "{left:?}");
        assert!(left.iter().any(|r| r.starts_with("key ")), "{left:?}");
        assert!(left.iter().any(|r| r.starts_with("group ")), "{left:?}");
        assert!(key.exists());
    }
    provider.teardown(&machines[2]).await.unwrap();
    {
        let w = world.lock().unwrap();
        assert_eq!(w.of_run(RUN), Vec::<String>::new());
        // The last machine's teardown deletes the fleet, which takes the
        // instance with it; the emulator cannot delete a fleet whose
        // instances are all gone.
        let at = |what: &str| w.removed.iter().position(|r| r == what).unwrap();
        assert!(
            at(&format!("fleet {}", w.fleets[0].id))
                < at(&format!("instance {}", machines[2].provider_id)),
            "{:?}",
            w.removed
        );
    }
    assert!(!keys.path().join(RUN).exists(), "the run's keys are gone");
    // Safe to repeat.
    teardown_all(&provider, &machines).await;
}

#[tokio::test]
async fn what_spot_cannot_give_comes_on_demand() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup.world.lock().unwrap().fleet_capacity.insert("spot", 1);
    setup.settings.allow_on_demand = true;
    let (keys, world, provider) = setup.wire();

    let machines: Vec<Machine> = provider
        .provision_many(&specs(3))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();

    let markets: Vec<String> = machines.iter().map(|m| state(m).market).collect();
    assert_eq!(markets, ["spot", "on-demand", "on-demand"]);
    {
        let w = world.lock().unwrap();
        let asked: Vec<(&str, u32)> = w
            .fleet_requests
            .iter()
            .map(|r| (r.market.label(), r.count))
            .collect();
        assert_eq!(asked, [("spot", 3), ("on-demand", 2)]);
        assert_eq!(
            w.fleet_requests[0].launch_template_id, w.fleet_requests[1].launch_template_id,
            "one template for both"
        );
        assert_eq!(state(&machines[1]).hourly_price_usd, None);
    }
    teardown_all(&provider, &machines).await;
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
    assert!(!keys.path().join(RUN).exists());
}

#[tokio::test]
async fn without_on_demand_the_machines_spot_cannot_give_are_errors() {
    let Some(setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup.world.lock().unwrap().fleet_capacity.insert("spot", 1);
    let (keys, world, provider) = setup.wire();

    let mut results = provider.provision_many(&specs(3)).await;

    assert_eq!(results.len(), 3);
    let machine = results.remove(0).unwrap();
    assert_eq!(machine.name, "aws-0");
    for result in results {
        let error = result.unwrap_err();
        let text = chain(&error);
        assert!(text.contains("launched 1 of the 3 instances"), "{text}");
        assert!(
            text.contains("m6i.large (spot): `InsufficientInstanceCapacity`")
                && text.contains("m5.large (spot): `InsufficientInstanceCapacity`"),
            "{text}"
        );
        assert!(!text.contains("on-demand"), "{text}");
        let ProvisionError::Failed { leftovers, .. } = &error else {
            panic!("{error:?}")
        };
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    {
        let w = world.lock().unwrap();
        assert_eq!(w.fleet_requests.len(), 1, "no on-demand fleet");
        let live: Vec<&str> = w
            .instances
            .iter()
            .filter(|i| i.state != "terminated")
            .map(|i| i.id.as_str())
            .collect();
        assert_eq!(live, [machine.provider_id.as_str()]);
    }
    assert!(!keys.path().join(RUN).join("aws-1").exists());
    assert!(!keys.path().join(RUN).join("aws-2").exists());

    provider.teardown(&machine).await.unwrap();
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
    assert!(!keys.path().join(RUN).exists());
}

#[tokio::test]
async fn no_capacity_anywhere_is_every_machines_error_and_leaves_nothing() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    {
        let mut w = setup.world.lock().unwrap();
        w.fleet_capacity.insert("spot", 0);
        w.fleet_capacity.insert("on-demand", 0);
    }
    setup.settings.allow_on_demand = true;
    let (keys, world, provider) = setup.wire();

    let results = provider.provision_many(&specs(3)).await;

    assert_eq!(results.len(), 3);
    for result in results {
        let error = result.unwrap_err();
        let text = chain(&error);
        assert!(text.starts_with("aws: cannot launch an instance"), "{text}");
        for refused in [
            "m6i.large (spot): `InsufficientInstanceCapacity`: There is not enough capacity",
            "m5.large (spot): `InsufficientInstanceCapacity`",
            "m6i.large (on-demand): `InsufficientInstanceCapacity`",
            "m5.large (on-demand): `InsufficientInstanceCapacity`",
        ] {
            assert!(text.contains(refused), "{refused}: {text}");
        }
        assert!(text.contains("launched 0 of the 3"), "{text}");
        let ProvisionError::Failed {
            leftovers, source, ..
        } = &error
        else {
            panic!("{error:?}")
        };
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(matches!(
            source.downcast_ref::<AwsError>(),
            Some(AwsError::Unfulfilled { refusals, .. }) if refusals.len() == 4
        ));
    }
    let w = world.lock().unwrap();
    assert_eq!(w.of_run(RUN), Vec::<String>::new());
    let removed: BTreeSet<&str> = w
        .removed
        .iter()
        .map(|r| r.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        removed,
        ["fleet", "group", "key", "template"].into(),
        "{:?}",
        w.removed
    );
    assert!(!keys.path().join(RUN).exists());
}

#[tokio::test]
async fn a_machine_that_fails_after_launch_is_terminated_and_the_others_go_on() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_create_tags()
        .withf(|_, tags| tags.iter().any(|(k, v)| k == MACHINE && v == "aws-1"))
        .returning(|_, _| Err(ec2_error("CreateTags", "UnauthorizedOperation")));
    let (keys, world, provider) = setup.wire();

    let mut results = provider.provision_many(&specs(3)).await;

    let error = results.remove(1).unwrap_err();
    let text = chain(&error);
    assert!(text.contains("cannot tag instance `i-"), "{text}");
    assert!(
        text.contains("not permitted to call `ec2:CreateTags`"),
        "{text}"
    );
    let machines: Vec<Machine> = results.into_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        machines.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["aws-0", "aws-2"]
    );
    {
        let w = world.lock().unwrap();
        let terminated: Vec<&String> = w
            .removed
            .iter()
            .filter(|r| r.starts_with("instance "))
            .collect();
        assert_eq!(terminated.len(), 1, "{:?}", w.removed);
        assert!(
            !machines
                .iter()
                .any(|m| terminated[0].ends_with(&m.provider_id))
        );
        assert!(!keys.path().join(RUN).join("aws-1").exists());
    }
    teardown_all(&provider, &machines).await;
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
}

#[tokio::test]
async fn a_fleet_that_cannot_be_deleted_keeps_what_names_it() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_delete_fleet()
        .returning(|_| Err(ec2_error("DeleteFleets", "UnauthorizedOperation")));
    let (_keys, world, provider) = setup.wire();
    let machines: Vec<Machine> = provider
        .provision_many(&specs(1))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();

    let error = provider.teardown(&machines[0]).await.unwrap_err();

    let crate::TeardownError::Leftovers { leftovers, .. } = &error else {
        panic!("{error:?}")
    };
    let w = world.lock().unwrap();
    let fleet = &w.fleets[0].id;
    assert!(
        leftovers[0].starts_with(&format!("fleet `{fleet}`"))
            && leftovers[0].contains("not permitted to call `ec2:DeleteFleets`"),
        "{leftovers:?}"
    );
    assert_eq!(leftovers.len(), 3, "{leftovers:?}");
    assert!(
        leftovers[1..]
            .iter()
            .all(|l| l.contains("kept: it names fleets")),
        "{leftovers:?}"
    );
    // What names it is still there for `reap`.
    let naming = format!("{FLEET_PREFIX}{fleet}");
    assert!(w.templates[0].0.tags.contains_key(&naming));
    assert!(w.groups[0].tags.contains_key(&naming));
    assert!(w.keys.is_empty(), "the key pair names nothing");
}

#[tokio::test]
async fn a_refused_fleet_request_is_every_machines_error() {
    let Some(mut setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup
        .mock
        .expect_create_fleet()
        .returning(|_| Err(ec2_error("CreateFleet", "UnauthorizedOperation")));
    let (keys, world, provider) = setup.wire();

    let results = provider.provision_many(&specs(2)).await;

    for result in results {
        let text = chain(&result.unwrap_err());
        assert!(
            text.contains("cannot launch a spot fleet")
                && text.contains("not permitted to call `ec2:CreateFleet`"),
            "{text}"
        );
    }
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
    assert!(!keys.path().join(RUN).exists());
}

#[tokio::test]
async fn machines_that_need_different_volumes_are_made_one_by_one() {
    let Some(setup) = Setup::with_ssh_keygen() else {
        return;
    };
    let (_keys, world, provider) = setup.wire();
    let mut specs = specs(2);
    specs[1].data_devices = 3;

    let machines: Vec<Machine> = provider
        .provision_many(&specs)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();

    assert_eq!(machines[1].scratch_devs.len(), 2);
    {
        let w = world.lock().unwrap();
        assert!(w.fleet_requests.is_empty());
        assert_eq!(w.launches.len(), 2);
    }
    teardown_all(&provider, &machines).await;
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
}

#[tokio::test]
async fn an_instance_seen_running_before_its_volumes_is_looked_at_again() {
    let Some(setup) = Setup::with_ssh_keygen() else {
        return;
    };
    setup.world.lock().unwrap().volumes_listed_late = true;
    let (_keys, world, provider) = setup.wire();

    let machines: Vec<Machine> = provider
        .provision_many(&specs(2))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();

    for machine in &machines {
        assert_eq!(state(machine).volume_ids.len(), 6);
    }
    teardown_all(&provider, &machines).await;
    assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
}

#[test]
fn refusals_name_the_type_the_market_and_the_code() {
    let error = FleetError {
        instance_type: Some("m6i.large".to_owned()),
        place: Some("subnet-1".to_owned()),
        lifecycle: None,
        code: "InsufficientInstanceCapacity".to_owned(),
        message: "no room".to_owned(),
    };
    assert_eq!(
        refusal(&error, &Market::OnDemand),
        "m6i.large in subnet-1 (on-demand): `InsufficientInstanceCapacity`: no room"
    );
    let bare = FleetError {
        code: "UnfulfillableCapacity".to_owned(),
        lifecycle: Some("spot".to_owned()),
        ..FleetError::default()
    };
    assert_eq!(
        refusal(&bare, &Market::OnDemand),
        "the fleet (spot): `UnfulfillableCapacity`"
    );
}
