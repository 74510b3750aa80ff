//! Helpers for the provider tests: a `MockEc2Api` whose default answers come
//! from a small in-memory EC2 ([`World`]), so that a test sets only the
//! expectations that make its error path happen (mockall tries expectations
//! in the order they were set: set the failures first, then [`wire`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btrfsqa_model::RunId;

use super::AwsProvider;
use super::api::{
    Filter, FleetError, FleetInstance, FleetOutcome, FleetRequest, ImageInfo, InstanceInfo,
    LaunchRequest, MockEc2Api, ResourceInfo, SpotRequestInfo, TemplateRequest,
};
use super::error::Ec2Error;
use super::settings::{AmiSelector, AwsSettings, RetryPolicy};
use crate::MachineSpec;

pub(crate) const REGION: &str = "us-east-1";

/// EC2's state as the fake sees it.
#[derive(Debug, Default)]
pub(crate) struct World {
    next_id: u32,
    pub images: Vec<ImageInfo>,
    pub default_vpc: Option<String>,
    pub keys: Vec<ResourceInfo>,
    pub groups: Vec<ResourceInfo>,
    /// (group id, cidr) of every SSH rule.
    pub rules: Vec<(String, String)>,
    pub instances: Vec<InstanceInfo>,
    pub volumes: Vec<ResourceInfo>,
    pub launches: Vec<LaunchRequest>,
    pub console: Option<String>,
    /// Tags every launched instance gets besides the launch's own (what
    /// the instance would report about itself).
    pub instance_tags: Vec<(String, String)>,
    pub spot_price: Option<f64>,
    pub spot_requests: Vec<SpotRequestInfo>,
    /// Every instance rebooted, in order.
    pub reboots: Vec<String>,
    /// Launch templates, with what they were made from.
    pub templates: Vec<(ResourceInfo, TemplateRequest)>,
    /// Fleets (state `active` or `deleted_terminating`).
    pub fleets: Vec<ResourceInfo>,
    /// Every CreateFleet request, in order.
    pub fleet_requests: Vec<FleetRequest>,
    /// How many instances one fleet request of a market (`spot`,
    /// `on-demand`) gets at most; unlimited when absent. What is missing is
    /// refused with `InsufficientInstanceCapacity` for every override.
    pub fleet_capacity: BTreeMap<&'static str, usize>,
    /// The security group of every instance.
    pub group_of: BTreeMap<String, String>,
    /// The instances of every fleet.
    pub fleet_instances: BTreeMap<String, Vec<String>>,
    /// Fleet instances are first seen running without their data volumes,
    /// which are listed from the next look on.
    pub volumes_listed_late: bool,
    /// DescribeFleets without ids lists instant fleets (EC2 does not; the
    /// emulator does).
    pub list_instant_fleets: bool,
    /// The data volumes not listed yet, per instance.
    hidden_volumes: BTreeMap<String, Vec<(String, String)>>,
    /// Every deletion and termination, in order (`volume vol-1`).
    pub removed: Vec<String>,
}

impl World {
    /// A region with one Debian image and a default VPC.
    pub fn new() -> Arc<Mutex<World>> {
        Arc::new(Mutex::new(World {
            images: vec![
                ImageInfo {
                    id: "ami-old".to_owned(),
                    name: Some("debian-12-amd64-20240101-1".to_owned()),
                    creation_date: Some("2024-01-01T00:00:00.000Z".to_owned()),
                    root_device_name: Some("/dev/xvda".to_owned()),
                },
                ImageInfo {
                    id: "ami-new".to_owned(),
                    name: Some("debian-12-amd64-20250201-2".to_owned()),
                    creation_date: Some("2025-02-01T00:00:00.000Z".to_owned()),
                    root_device_name: Some("/dev/xvda".to_owned()),
                },
            ],
            default_vpc: Some("vpc-1".to_owned()),
            spot_price: Some(0.0321),
            // cloud-init's block of host keys, as a Debian image prints it.
            console: Some(include_str!("../../fixtures/aws/console-cloud-init.txt").to_owned()),
            ..World::default()
        }))
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:017x}", self.next_id)
    }

    /// Launches an instance with `tags`, the root volume and `data` volumes
    /// tagged like it, in `group`; returns its id.
    fn launch(
        &mut self,
        instance_type: &str,
        root: &str,
        data: &[String],
        group: &str,
        tags: &[(String, String)],
    ) -> String {
        let id = self.id("i");
        let mut block_devices = Vec::new();
        for device in std::iter::once(root).chain(data.iter().map(String::as_str)) {
            let volume = self.id("vol");
            self.volumes.push(ResourceInfo {
                id: volume.clone(),
                state: Some("in-use".to_owned()),
                tags: tags.iter().cloned().collect(),
                ..ResourceInfo::default()
            });
            block_devices.push((device.to_owned(), volume));
        }
        let tags_of_instance = tags.iter().chain(&self.instance_tags).cloned().collect();
        self.instances.push(InstanceInfo {
            id: id.clone(),
            state: "pending".to_owned(),
            instance_type: Some(instance_type.to_owned()),
            availability_zone: Some(format!("{REGION}a")),
            public_ip: Some("203.0.113.10".to_owned()),
            private_ip: Some("172.31.0.10".to_owned()),
            launch_time: Some(chrono::Utc::now()),
            tags: tags_of_instance,
            block_devices,
            ..InstanceInfo::default()
        });
        self.group_of.insert(id.clone(), group.to_owned());
        id
    }

    /// A resource made outside btrfsqa, or by another run.
    pub fn add_volume(&mut self, tags: &[(&str, &str)]) -> String {
        let id = self.id("vol");
        self.volumes.push(ResourceInfo {
            id: id.clone(),
            state: Some("available".to_owned()),
            tags: tag_map(tags),
            ..ResourceInfo::default()
        });
        id
    }

    /// Everything still there that carries `run`'s tag.
    pub fn of_run(&self, run: &str) -> Vec<String> {
        let ours = |tags: &BTreeMap<String, String>| {
            tags.get(super::tags::RUN).map(String::as_str) == Some(run)
        };
        let mut left = Vec::new();
        left.extend(
            self.instances
                .iter()
                .filter(|i| ours(&i.tags) && i.state != "terminated")
                .map(|i| format!("instance {}", i.id)),
        );
        left.extend(
            self.volumes
                .iter()
                .filter(|v| ours(&v.tags))
                .map(|v| format!("volume {}", v.id)),
        );
        left.extend(
            self.keys
                .iter()
                .filter(|k| ours(&k.tags))
                .map(|k| format!("key {}", k.id)),
        );
        left.extend(
            self.groups
                .iter()
                .filter(|g| ours(&g.tags))
                .map(|g| format!("group {}", g.id)),
        );
        left.extend(
            self.templates
                .iter()
                .filter(|(t, _)| ours(&t.tags))
                .map(|(t, _)| format!("template {}", t.id)),
        );
        left.extend(
            self.fleets
                .iter()
                .filter(|f| ours(&f.tags) && f.state.as_deref() == Some("active"))
                .map(|f| format!("fleet {}", f.id)),
        );
        left
    }
}

pub(crate) fn tag_map(tags: &[(&str, &str)]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn matches(tags: &BTreeMap<String, String>, fields: &[(&str, &str)], filters: &[Filter]) -> bool {
    filters.iter().all(|filter| {
        let value = if let Some(key) = filter.name.strip_prefix("tag:") {
            tags.get(key).cloned()
        } else if filter.name == "tag-key" {
            return filter.values.iter().any(|key| tags.contains_key(key));
        } else {
            fields
                .iter()
                .find(|(name, _)| *name == filter.name)
                .map(|(_, value)| (*value).to_owned())
        };
        value.is_some_and(|value| {
            filter.values.iter().any(|wanted| {
                wanted
                    .strip_suffix('*')
                    .map_or(*wanted == value, |prefix| value.starts_with(prefix))
            })
        })
    })
}

fn not_found(action: &str, code: &str) -> Ec2Error {
    Ec2Error::from_code(action, code, "does not exist", Some(400))
}

/// EC2's answers to a code, as the adapter would sort them.
pub(crate) fn ec2_error(action: &str, code: &str) -> Ec2Error {
    Ec2Error::from_code(action, code, "from the test", Some(400))
}

/// Makes every method of `mock` answer from `world`.
pub(crate) fn wire(world: &Arc<Mutex<World>>, mock: &mut MockEc2Api) {
    let w = world.clone();
    mock.expect_describe_images()
        .returning(move |ids, owners, filters| {
            let _ = owners;
            let world = w.lock().unwrap();
            Ok(world
                .images
                .iter()
                .filter(|image| ids.is_empty() || ids.contains(&image.id))
                .filter(|image| {
                    let name = image.name.clone().unwrap_or_default();
                    matches(
                        &BTreeMap::new(),
                        &[("name", &name), ("state", "available")],
                        filters,
                    )
                })
                .cloned()
                .collect())
        });
    let w = world.clone();
    mock.expect_default_vpc()
        .returning(move || Ok(w.lock().unwrap().default_vpc.clone()));
    mock.expect_subnet_vpc()
        .returning(|_| Ok("vpc-of-subnet".to_owned()));
    let w = world.clone();
    mock.expect_import_key_pair()
        .returning(move |name, _, tags| {
            let mut world = w.lock().unwrap();
            if world.keys.iter().any(|k| k.name.as_deref() == Some(name)) {
                return Err(ec2_error("ImportKeyPair", "InvalidKeyPair.Duplicate"));
            }
            let id = world.id("key");
            world.keys.push(ResourceInfo {
                id: id.clone(),
                name: Some(name.to_owned()),
                state: None,
                tags: tags.iter().cloned().collect(),
            });
            Ok(id)
        });
    let w = world.clone();
    mock.expect_describe_key_pairs().returning(move |filters| {
        let world = w.lock().unwrap();
        Ok(world
            .keys
            .iter()
            .filter(|k| {
                matches(
                    &k.tags,
                    &[("key-name", k.name.as_deref().unwrap_or_default())],
                    filters,
                )
            })
            .cloned()
            .collect())
    });
    let w = world.clone();
    mock.expect_delete_key_pair().returning(move |id, _| {
        let mut world = w.lock().unwrap();
        let before = world.keys.len();
        world.keys.retain(|k| k.id != id);
        if world.keys.len() == before {
            return Err(not_found("DeleteKeyPair", "InvalidKeyPair.NotFound"));
        }
        world.removed.push(format!("key {id}"));
        Ok(())
    });
    let w = world.clone();
    mock.expect_create_security_group()
        .returning(move |name, _, _, tags| {
            let mut world = w.lock().unwrap();
            if world.groups.iter().any(|g| g.name.as_deref() == Some(name)) {
                return Err(ec2_error("CreateSecurityGroup", "InvalidGroup.Duplicate"));
            }
            let id = world.id("sg");
            world.groups.push(ResourceInfo {
                id: id.clone(),
                name: Some(name.to_owned()),
                state: None,
                tags: tags.iter().cloned().collect(),
            });
            Ok(id)
        });
    let w = world.clone();
    mock.expect_authorize_ssh().returning(move |group, cidr| {
        w.lock()
            .unwrap()
            .rules
            .push((group.to_owned(), cidr.to_owned()));
        Ok(())
    });
    let w = world.clone();
    mock.expect_describe_security_groups()
        .returning(move |filters| {
            let world = w.lock().unwrap();
            Ok(world
                .groups
                .iter()
                .filter(|g| {
                    matches(
                        &g.tags,
                        &[
                            ("group-name", g.name.as_deref().unwrap_or_default()),
                            ("vpc-id", "vpc-1"),
                        ],
                        filters,
                    )
                })
                .cloned()
                .collect())
        });
    let w = world.clone();
    mock.expect_delete_security_group().returning(move |id| {
        let mut world = w.lock().unwrap();
        let in_use = world.instances.iter().any(|i| {
            i.state != "terminated" && world.group_of.get(&i.id).map(String::as_str) == Some(id)
        });
        if in_use {
            return Err(ec2_error("DeleteSecurityGroup", "DependencyViolation"));
        }
        let before = world.groups.len();
        world.groups.retain(|g| g.id != id);
        if world.groups.len() == before {
            return Err(not_found("DeleteSecurityGroup", "InvalidGroup.NotFound"));
        }
        world.removed.push(format!("group {id}"));
        Ok(())
    });
    let w = world.clone();
    mock.expect_run_instance().returning(move |request| {
        let mut world = w.lock().unwrap();
        let id = world.launch(
            &request.instance_type,
            &request.root_device_name,
            &request.data_device_names,
            &request.security_group_id,
            &request.tags,
        );
        world.launches.push(request.clone());
        Ok(id)
    });
    let w = world.clone();
    mock.expect_describe_instances()
        .returning(move |ids, filters| {
            let mut world = w.lock().unwrap();
            if ids
                .iter()
                .any(|id| !world.instances.iter().any(|i| &i.id == id))
            {
                return Err(not_found("DescribeInstances", "InvalidInstanceID.NotFound"));
            }
            let mut found = Vec::new();
            let mut volumes_gone = Vec::new();
            let world = &mut *world;
            let world_hidden = &mut world.hidden_volumes;
            for instance in &mut world.instances {
                if !ids.is_empty() && !ids.contains(&instance.id) {
                    continue;
                }
                // Each look moves an instance one state further, as time would.
                let moved = match instance.state.as_str() {
                    "pending" => Some("running"),
                    "shutting-down" => Some("terminated"),
                    _ => None,
                };
                let state = instance.state.clone();
                if matches(&instance.tags, &[("instance-state-name", &state)], filters) {
                    found.push(instance.clone());
                }
                if state == "running" {
                    if let Some(late) = world_hidden.remove(&instance.id) {
                        instance.block_devices.extend(late);
                    }
                }
                if let Some(next) = moved {
                    instance.state = next.to_owned();
                    if next == "terminated" {
                        volumes_gone.extend(instance.block_devices.iter().map(|(_, v)| v.clone()));
                    }
                }
            }
            // DeleteOnTermination.
            world.volumes.retain(|v| !volumes_gone.contains(&v.id));
            Ok(found)
        });
    let w = world.clone();
    mock.expect_terminate_instances().returning(move |ids| {
        let mut world = w.lock().unwrap();
        for id in ids {
            let instance = world
                .instances
                .iter_mut()
                .find(|i| &i.id == id)
                .ok_or_else(|| not_found("TerminateInstances", "InvalidInstanceID.NotFound"))?;
            if instance.state != "terminated" {
                instance.state = "shutting-down".to_owned();
                instance.state_reason =
                    Some("Client.UserInitiatedShutdown: User initiated shutdown".to_owned());
            }
            world.removed.push(format!("instance {id}"));
        }
        Ok(())
    });
    let w = world.clone();
    mock.expect_reboot_instances().returning(move |ids| {
        let mut world = w.lock().unwrap();
        for id in ids {
            let instance = world
                .instances
                .iter()
                .find(|i| &i.id == id)
                .ok_or_else(|| not_found("RebootInstances", "InvalidInstanceID.NotFound"))?;
            if instance.state != "running" {
                return Err(ec2_error("RebootInstances", "IncorrectState"));
            }
            world.reboots.push(id.clone());
        }
        Ok(())
    });
    let w = world.clone();
    mock.expect_describe_spot_instance_requests()
        .returning(move |ids| {
            let world = w.lock().unwrap();
            ids.iter()
                .map(|id| {
                    world
                        .spot_requests
                        .iter()
                        .find(|r| &r.id == id)
                        .cloned()
                        .ok_or_else(|| {
                            not_found(
                                "DescribeSpotInstanceRequests",
                                "InvalidSpotInstanceRequestID.NotFound",
                            )
                        })
                })
                .collect()
        });
    let w = world.clone();
    mock.expect_describe_volumes().returning(move |filters| {
        let world = w.lock().unwrap();
        Ok(world
            .volumes
            .iter()
            .filter(|v| matches(&v.tags, &[], filters))
            .cloned()
            .collect())
    });
    let w = world.clone();
    mock.expect_delete_volume().returning(move |id| {
        let mut world = w.lock().unwrap();
        let Some(volume) = world.volumes.iter().find(|v| v.id == id) else {
            return Err(not_found("DeleteVolume", "InvalidVolume.NotFound"));
        };
        if volume.state.as_deref() == Some("in-use") {
            return Err(ec2_error("DeleteVolume", "VolumeInUse"));
        }
        world.volumes.retain(|v| v.id != id);
        world.removed.push(format!("volume {id}"));
        Ok(())
    });
    let w = world.clone();
    mock.expect_spot_price()
        .returning(move |_, _| Ok(w.lock().unwrap().spot_price));
    let w = world.clone();
    mock.expect_console_output()
        .returning(move |_| Ok(w.lock().unwrap().console.clone()));
    wire_fleets(world, mock);
}

/// Launch templates, instant fleets and tags.
fn wire_fleets(world: &Arc<Mutex<World>>, mock: &mut MockEc2Api) {
    let w = world.clone();
    mock.expect_create_launch_template()
        .returning(move |request| {
            let mut world = w.lock().unwrap();
            if world
                .templates
                .iter()
                .any(|(t, _)| t.name.as_deref() == Some(request.name.as_str()))
            {
                return Err(ec2_error(
                    "CreateLaunchTemplate",
                    "InvalidLaunchTemplateName.AlreadyExistsException",
                ));
            }
            let id = world.id("lt");
            world.templates.push((
                ResourceInfo {
                    id: id.clone(),
                    name: Some(request.name.clone()),
                    state: None,
                    tags: request.tags.iter().cloned().collect(),
                },
                request.clone(),
            ));
            Ok(id)
        });
    let w = world.clone();
    mock.expect_describe_launch_templates()
        .returning(move |filters| {
            let world = w.lock().unwrap();
            Ok(world
                .templates
                .iter()
                .map(|(t, _)| t)
                .filter(|t| {
                    let name = t.name.clone().unwrap_or_default();
                    matches(&t.tags, &[("launch-template-name", &name)], filters)
                })
                .cloned()
                .collect())
        });
    let w = world.clone();
    mock.expect_delete_launch_template().returning(move |id| {
        let mut world = w.lock().unwrap();
        let before = world.templates.len();
        world.templates.retain(|(t, _)| t.id != id);
        if world.templates.len() == before {
            return Err(not_found(
                "DeleteLaunchTemplate",
                "InvalidLaunchTemplateId.NotFound",
            ));
        }
        world.removed.push(format!("template {id}"));
        Ok(())
    });
    let w = world.clone();
    mock.expect_create_fleet().returning(move |request| {
        let mut world = w.lock().unwrap();
        let Some((_, template)) = world
            .templates
            .iter()
            .find(|(t, _)| t.id == request.launch_template_id)
            .cloned()
        else {
            return Err(not_found("CreateFleet", "InvalidLaunchTemplateId.NotFound"));
        };
        let label = request.market.label();
        let count = request.count as usize;
        let room = world.fleet_capacity.get(label).copied().unwrap_or(count);
        let fleet = world.id("fleet");
        let mut instances = Vec::new();
        for _ in 0..count.min(room) {
            // EC2 takes the first override that has capacity.
            let instance_type = request.overrides[0].instance_type.clone();
            let id = world.launch(
                &instance_type,
                &template.root_device_name,
                &template.data_device_names,
                &template.security_group_id,
                &template.tags,
            );
            if world.volumes_listed_late {
                let instance = world.instances.iter_mut().find(|i| i.id == id).unwrap();
                let late = instance.block_devices.split_off(1);
                world.hidden_volumes.insert(id.clone(), late);
            }
            instances.push(FleetInstance {
                id,
                instance_type: Some(instance_type),
                lifecycle: Some(label.to_owned()),
            });
        }
        let errors = if room < count {
            request
                .overrides
                .iter()
                .map(|choice| FleetError {
                    instance_type: Some(choice.instance_type.clone()),
                    place: choice.subnet_id.clone(),
                    lifecycle: Some(label.to_owned()),
                    code: "InsufficientInstanceCapacity".to_owned(),
                    message: "There is not enough capacity to fulfill your request.".to_owned(),
                })
                .collect()
        } else {
            Vec::new()
        };
        world.fleets.push(ResourceInfo {
            id: fleet.clone(),
            name: None,
            state: Some("active".to_owned()),
            tags: request.tags.iter().cloned().collect(),
        });
        world.fleet_instances.insert(
            fleet.clone(),
            instances.iter().map(|i| i.id.clone()).collect(),
        );
        world.fleet_requests.push(request.clone());
        Ok(FleetOutcome {
            fleet_id: Some(fleet),
            instances,
            errors,
        })
    });
    let w = world.clone();
    mock.expect_describe_fleets().returning(move |ids| {
        let world = w.lock().unwrap();
        if ids.is_empty() {
            // All of btrfsqa's fleets are instant ones.
            return Ok(if world.list_instant_fleets {
                world.fleets.clone()
            } else {
                Vec::new()
            });
        }
        ids.iter()
            .map(|id| {
                world
                    .fleets
                    .iter()
                    .find(|f| &f.id == id)
                    .cloned()
                    .ok_or_else(|| not_found("DescribeFleets", "InvalidFleetId.NotFound"))
            })
            .collect()
    });
    let w = world.clone();
    mock.expect_delete_fleet().returning(move |id| {
        let mut world = w.lock().unwrap();
        let Some(fleet) = world.fleets.iter_mut().find(|f| f.id == id) else {
            return Err(ec2_error("DeleteFleets", "fleetIdDoesNotExist"));
        };
        fleet.state = Some("deleted_terminating".to_owned());
        let doomed = world.fleet_instances.get(id).cloned().unwrap_or_default();
        for instance in &mut world.instances {
            if doomed.contains(&instance.id) && instance.state != "terminated" {
                instance.state = "shutting-down".to_owned();
            }
        }
        world.removed.push(format!("fleet {id}"));
        Ok(())
    });
    let w = world.clone();
    mock.expect_create_tags().returning(move |resources, tags| {
        let mut world = w.lock().unwrap();
        for id in resources {
            if let Some(instance) = world.instances.iter_mut().find(|i| &i.id == id) {
                instance.tags.extend(tags.iter().cloned());
            } else if let Some(volume) = world.volumes.iter_mut().find(|v| &v.id == id) {
                volume.tags.extend(tags.iter().cloned());
            } else if let Some((template, _)) =
                world.templates.iter_mut().find(|(t, _)| &t.id == id)
            {
                template.tags.extend(tags.iter().cloned());
            } else if let Some(group) = world.groups.iter_mut().find(|g| &g.id == id) {
                group.tags.extend(tags.iter().cloned());
            } else {
                return Err(not_found("CreateTags", "InvalidID.NotFound"));
            }
        }
        Ok(())
    });
}

/// Settings for tests: no waiting, a fixed SSH range, keys under `key_dir`.
pub(crate) fn settings(key_dir: &Path) -> AwsSettings {
    AwsSettings {
        region: Some(REGION.to_owned()),
        ssh_cidr: Some("198.51.100.7/32".to_owned()),
        owner: "tester".to_owned(),
        key_dir: key_dir.to_owned(),
        ami: AmiSelector::debian_12_amd64(),
        host_key_wait: Duration::ZERO,
        launch_timeout: Duration::from_secs(5),
        teardown_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(1),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
        ..AwsSettings::default()
    }
}

pub(crate) fn provider(settings: AwsSettings, mock: MockEc2Api) -> AwsProvider {
    let api: Arc<dyn super::api::Ec2Api> = Arc::new(mock);
    AwsProvider::with_api(settings, REGION, Arc::new(move |_| api.clone()))
}

pub(crate) const RUN: &str = "20250301-100000-ab12";

pub(crate) fn spec() -> MachineSpec {
    MachineSpec::new(RunId::parse(RUN).unwrap(), "aws-0")
}

/// The set-up most provider tests share: a key directory, an empty
/// [`World`], a mock for the test's own expectations (set before [`wire`]'s,
/// so they are tried first) and the test [`settings`], which a test may
/// change before [`Setup::wire`].
pub(crate) struct Setup {
    pub keys: tempfile::TempDir,
    pub world: Arc<Mutex<World>>,
    pub mock: MockEc2Api,
    pub settings: AwsSettings,
}

impl Setup {
    /// The set-up, for tests that make no SSH key.
    pub fn new() -> Setup {
        let keys = tempfile::tempdir().unwrap();
        let settings = settings(keys.path());
        Setup {
            keys,
            world: World::new(),
            mock: MockEc2Api::new(),
            settings,
        }
    }

    /// The set-up, or `None` (the test skipped) where there is no
    /// `ssh-keygen` to make a key with.
    pub fn with_ssh_keygen() -> Option<Setup> {
        have_ssh_keygen().then(Setup::new)
    }

    /// Wires the mock to the world and makes the provider: the key
    /// directory (kept as long as the test holds it), the world, the provider.
    pub fn wire(mut self) -> (tempfile::TempDir, Arc<Mutex<World>>, AwsProvider) {
        wire(&self.world, &mut self.mock);
        let provider = provider(self.settings, self.mock);
        (self.keys, self.world, provider)
    }
}

/// ssh-keygen is needed to make a key; tests that make one skip without it.
pub(crate) fn have_ssh_keygen() -> bool {
    let found = std::process::Command::new("ssh-keygen")
        .arg("-?")
        .output()
        .is_ok();
    if !found {
        eprintln!("skipped: no ssh-keygen on PATH");
    }
    found
}

/// An error and all its sources, one line.
pub(crate) use btrfsqa_model::error_chain as chain;
