//! The `aws` provider's fleets against moto's EC2 emulator (see
//! `aws_moto.rs`): a run's machines come from one CreateFleet.
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

use std::time::Duration;

use btrfsqa_cloud::{Access, AwsProvider, CloudProvider, Machine, MachineSpec};
use btrfsqa_model::RunId;

use crate::aws_moto::{
    Moto, RUN_TAG, SSH_CIDR, host_key, left_of_run, run_filter, sdk_config, settings, state_of, tag,
};

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
