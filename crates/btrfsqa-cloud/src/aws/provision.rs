//! Provisioning: key pair, security group, instance with its volumes; and
//! on any failure, removal of everything made so far.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::api::{Ec2Api, Filter, ImageInfo, InstanceInfo, LaunchRequest, Market};
use super::console::{ConsoleHostKeys, host_keys, known_hosts_lines, tag_host_keys};
use super::error::{AwsError, Ec2Error};
use super::launch::{self, SshCidr};
use super::local_files;
use super::retry::{retry, transient};
use super::settings::AmiSelector;
use super::tags::{RunTags, belongs_to};
use super::{AwsMachineState, AwsProvider, PROVIDER, config_error};
use crate::{Access, Machine, MachineSpec, ProvisionError, SshEndpoint};

/// Where the run may work on the machine.
const WORK_DIR: &str = "/var/tmp/btrfsqa";

/// What is decided before anything is made.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub run: String,
    pub machine: String,
    pub name: String,
    pub tags: RunTags,
    pub data_devices: Vec<String>,
    pub volume_gib: u32,
    pub dir: PathBuf,
}

/// What a machine was made with besides its instance: how it is logged
/// into and what teardown looks for.
#[derive(Debug, Clone)]
pub(super) struct Kit {
    pub key_name: String,
    pub key_pair_id: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub security_group_id: String,
    /// The run's launch template, when the machine came from its fleet.
    pub launch_template_id: Option<String>,
    pub fleet_id: Option<String>,
}

/// A failed step: what was being done, and why.
pub(super) struct Step {
    pub operation: String,
    pub error: AwsError,
}

pub(super) trait StepResult<T> {
    fn step(self, operation: impl Into<String>) -> Result<T, Step>;
}

impl<T, E: Into<AwsError>> StepResult<T> for Result<T, E> {
    fn step(self, operation: impl Into<String>) -> Result<T, Step> {
        self.map_err(|error| Step {
            operation: operation.into(),
            error: error.into(),
        })
    }
}

pub(super) fn failed(operation: impl Into<String>, error: impl Into<AwsError>) -> ProvisionError {
    ProvisionError::Failed {
        provider: PROVIDER.to_owned(),
        operation: operation.into(),
        leftovers: Vec::new(),
        source: Box::new(error.into()),
    }
}

impl AwsProvider {
    pub(super) fn plan(
        &self,
        spec: &MachineSpec,
        now: DateTime<Utc>,
    ) -> Result<Plan, ProvisionError> {
        let settings = &self.settings;
        if settings.instance_types.is_empty() {
            return Err(config_error("`instance-types` is empty"));
        }
        if settings.max_run_hours == 0 {
            return Err(config_error("`max-run-hours` must be at least 1"));
        }
        let count = settings.volume_count.unwrap_or(spec.data_devices);
        let data_devices = launch::data_device_names(count).map_err(config_error)?;
        let volume_gib = settings
            .volume_size_gib
            .unwrap_or_else(|| {
                u32::try_from(spec.device_size.div_ceil(1 << 30)).unwrap_or(u32::MAX)
            })
            .max(1);
        let run = spec.run_id.as_str().to_owned();
        let tags = RunTags {
            run: run.clone(),
            machine: spec.name.clone(),
            owner: settings.owner.clone(),
            created: now,
            expires: now + chrono::Duration::hours(i64::from(settings.max_run_hours)),
        };
        Ok(Plan {
            name: launch::resource_name(&run, &spec.name),
            dir: local_files::machine_dir(&settings.key_dir, &run, &spec.name),
            machine: spec.name.clone(),
            run,
            tags,
            data_devices,
            volume_gib,
        })
    }

    pub(super) async fn provision_machine(
        &self,
        spec: &MachineSpec,
    ) -> Result<Machine, ProvisionError> {
        let plan = self.plan(spec, Utc::now())?;
        let api = self.api(&self.region);
        let api = api.as_ref();
        let image = self
            .resolve_image(api)
            .await
            .map_err(|error| failed("find the machine image", error))?;
        let cidr = self.ssh_cidr().await?;
        let vpc = self.resolve_vpc(api).await?;
        let mut launched = Vec::new();
        match self
            .create(api, &plan, &image, &cidr, &vpc, &mut launched)
            .await
        {
            Ok(machine) => Ok(machine),
            Err(Step { operation, error }) => {
                tracing::warn!(%error, run = %plan.run, machine = %plan.machine,
                    "provisioning failed; removing what was made");
                let leftovers = self
                    .remove_machine(api, &plan.run, &plan.machine, &launched, Some(&plan.dir))
                    .await;
                Err(ProvisionError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation,
                    leftovers,
                    source: Box::new(error),
                })
            }
        }
    }

    pub(super) async fn resolve_image(&self, api: &dyn Ec2Api) -> Result<ImageInfo, AwsError> {
        let policy = &self.settings.retry;
        let (images, selector) = match &self.settings.ami {
            AmiSelector::Id(id) => (
                retry(policy, transient, || {
                    api.describe_images(std::slice::from_ref(id), &[], &[])
                })
                .await?,
                format!("id `{id}`"),
            ),
            AmiSelector::NameFilter { pattern, owner } => {
                let filters = [
                    Filter::new("name", [pattern.as_str()]),
                    Filter::new("state", ["available"]),
                ];
                (
                    retry(policy, transient, || {
                        api.describe_images(&[], std::slice::from_ref(owner), &filters)
                    })
                    .await?,
                    format!("name `{pattern}` of owner `{owner}`"),
                )
            }
        };
        // ISO 8601 dates in one format compare as text; an image without a
        // date sorts first and so is chosen last.
        images
            .into_iter()
            .max_by(|a, b| a.creation_date.cmp(&b.creation_date).then(a.id.cmp(&b.id)))
            .ok_or(AwsError::NoImage { selector })
    }

    /// The SSH source range: configured, or the operator's own address.
    pub(super) async fn ssh_cidr(&self) -> Result<SshCidr, ProvisionError> {
        if let Some(text) = &self.settings.ssh_cidr {
            let cidr = launch::parse_cidr(text)
                .map_err(|message| config_error(format!("`ssh-cidr`: {message}")))?;
            if cidr.open_to_world {
                tracing::warn!(cidr = %cidr.text, "ssh-cidr opens port 22 to the whole Internet");
            }
            return Ok(cidr);
        }
        let address = local_files::detect_public_address(&self.settings.address_check_url)
            .await
            .map_err(|why| {
                config_error(format!(
                    "cannot find this machine's public address to allow SSH from ({why}); \
                     set `ssh-cidr` (e.g. `203.0.113.7/32`) to the range the controller connects from"
                ))
            })?;
        Ok(SshCidr {
            text: launch::single_address(address),
            open_to_world: false,
        })
    }

    pub(super) async fn resolve_vpc(&self, api: &dyn Ec2Api) -> Result<String, ProvisionError> {
        let policy = &self.settings.retry;
        match &self.settings.subnet_id {
            Some(subnet) => retry(policy, transient, || api.subnet_vpc(subnet))
                .await
                .map_err(|error| failed(format!("find the VPC of subnet `{subnet}`"), error)),
            None => retry(policy, transient, || api.default_vpc())
                .await
                .map_err(|error| failed("find the default VPC", error))?
                .ok_or_else(|| {
                    config_error(format!(
                        "region `{}` has no default VPC: set `subnet-id`",
                        self.region
                    ))
                }),
        }
    }

    async fn create(
        &self,
        api: &dyn Ec2Api,
        plan: &Plan,
        image: &ImageInfo,
        cidr: &SshCidr,
        vpc: &str,
        launched: &mut Vec<String>,
    ) -> Result<Machine, Step> {
        let settings = &self.settings;
        local_files::make_private_dir(&settings.key_dir, &plan.dir)
            .await
            .step("make the key directory")?;
        let owned =
            |tags: &BTreeMap<String, String>| belongs_to(tags, &plan.run, Some(&plan.machine));
        let tags = plan.tags.with_name(&plan.name);
        let (key_name, key_pair_id, identity_file) = match &settings.key_name {
            Some(name) => (name.clone(), None, settings.identity_file.clone()),
            None => {
                let (private, public) = local_files::generate_key(&plan.dir, &plan.name)
                    .await
                    .step("generate an SSH key")?;
                let id = self
                    .import_key(api, &plan.name, &tags, &owned, &public)
                    .await
                    .step(format!("import key pair `{}`", plan.name))?;
                (plan.name.clone(), Some(id), Some(private))
            }
        };
        let description = format!("btrfsqa run {}: ssh from the controller only", plan.run);
        let group = self
            .make_security_group(api, &plan.name, &description, &tags, &owned, vpc, cidr)
            .await
            .step(format!("make security group `{}`", plan.name))?;
        let (instance, market) = self
            .launch(api, plan, image, &key_name, &group, launched)
            .await?;
        let kit = Kit {
            key_name,
            key_pair_id,
            identity_file,
            security_group_id: group,
            launch_template_id: None,
            fleet_id: None,
        };
        self.finish(api, plan, instance, &market, kit).await
    }

    /// Makes a running instance the machine of `plan`: its data volumes by
    /// device name, its address, its spot price, its pinned host keys and
    /// the machine record.
    pub(super) async fn finish(
        &self,
        api: &dyn Ec2Api,
        plan: &Plan,
        instance: InstanceInfo,
        market: &Market,
        kit: Kit,
    ) -> Result<Machine, Step> {
        let settings = &self.settings;
        let instance_type = instance
            .instance_type
            .clone()
            .unwrap_or_else(|| settings.instance_types[0].clone());

        let volume_ids = plan
            .data_devices
            .iter()
            .map(|device| {
                instance
                    .block_devices
                    .iter()
                    .find(|(name, _)| name == device)
                    .map(|(_, volume)| volume.clone())
                    .ok_or_else(|| Ec2Error::MissingField {
                        action: "DescribeInstances".to_owned(),
                        field: format!("BlockDeviceMappings[{device}]"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .step(format!("find the volumes of `{}`", instance.id))?;
        let host = instance
            .public_ip
            .clone()
            .filter(|_| settings.associate_public_ip)
            .or_else(|| instance.private_ip.clone())
            .or_else(|| instance.public_ip.clone())
            .ok_or_else(|| Ec2Error::MissingField {
                action: "DescribeInstances".to_owned(),
                field: "PublicIpAddress".to_owned(),
            })
            .step(format!("find the address of `{}`", instance.id))?;

        let hourly_price_usd = match (market, &instance.availability_zone) {
            (Market::Spot { .. }, Some(zone)) => {
                match retry(&settings.retry, transient, || {
                    api.spot_price(&instance_type, zone)
                })
                .await
                {
                    Ok(price) => price,
                    Err(error) => {
                        tracing::warn!(%error, "no spot price: the run's cost will be unknown");
                        None
                    }
                }
            }
            _ => None,
        };

        let host_keys = self
            .wait_host_keys(api, &instance.id)
            .await
            .step(format!("read the host keys of `{}`", instance.id))?;
        let known_hosts = plan.dir.join("known_hosts");
        local_files::write_private_file(&known_hosts, &known_hosts_lines(&host, &host_keys))
            .await
            .step("write known_hosts")?;

        let devices: Vec<String> = volume_ids
            .iter()
            .map(|id| launch::nitro_device_path(id))
            .collect();
        let state = AwsMachineState {
            region: self.region.clone(),
            instance_id: instance.id.clone(),
            instance_type: instance_type.clone(),
            market: market.label().to_owned(),
            hourly_price_usd,
            launched_at: instance.launch_time.unwrap_or(plan.tags.created),
            expires_at: plan.tags.expires,
            availability_zone: instance.availability_zone.clone(),
            volume_ids,
            xen_devices: plan
                .data_devices
                .iter()
                .map(|d| launch::xen_device_path(d))
                .collect(),
            key_name: kit.key_name,
            key_pair_id: kit.key_pair_id,
            security_group_id: kit.security_group_id,
            local_dir: plan.dir.clone(),
            host_keys,
            launch_template_id: kit.launch_template_id,
            fleet_id: kit.fleet_id,
        };
        Ok(Machine {
            run_id: btrfsqa_model::RunId::parse(&plan.run).expect("the run id came from a RunId"),
            name: plan.machine.clone(),
            provider: PROVIDER.to_owned(),
            provider_id: instance.id.clone(),
            access: Access::Ssh(SshEndpoint {
                host,
                port: 22,
                user: settings.ssh_user.clone(),
                identity_file: kit.identity_file,
                known_hosts_file: Some(known_hosts),
            }),
            test_dev: devices[0].clone(),
            scratch_devs: devices[1..].to_vec(),
            work_dir: WORK_DIR.to_owned(),
            instance_type: Some(instance_type),
            state: serde_json::to_value(&state).expect("the state serializes"),
        })
    }

    /// Imports the public key as key pair `name`; one of the same name left
    /// by an earlier attempt (`ours` says so from its tags) is replaced, any
    /// other is an error (never touched).
    pub(super) async fn import_key(
        &self,
        api: &dyn Ec2Api,
        name: &str,
        tags: &[(String, String)],
        ours: &(dyn Fn(&BTreeMap<String, String>) -> bool + Sync),
        public: &str,
    ) -> Result<String, Ec2Error> {
        let policy = &self.settings.retry;
        let import = || {
            retry(policy, transient, || {
                api.import_key_pair(name, public, tags)
            })
        };
        match import().await {
            Err(error) if error.has_code("InvalidKeyPair.Duplicate") => {
                let by_name = [Filter::new("key-name", [name])];
                let found = retry(policy, transient, || api.describe_key_pairs(&by_name)).await?;
                let Some(old) = found.iter().find(|key| ours(&key.tags)) else {
                    return Err(error);
                };
                retry(policy, transient, || {
                    api.delete_key_pair(&old.id, old.name.clone())
                })
                .await?;
                import().await
            }
            other => other,
        }
    }

    /// Makes security group `name` that lets in SSH from `cidr` only; one
    /// of the same name left by an earlier attempt (`ours` says so from its
    /// tags) is reused, any other is an error.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn make_security_group(
        &self,
        api: &dyn Ec2Api,
        name: &str,
        description: &str,
        tags: &[(String, String)],
        ours: &(dyn Fn(&BTreeMap<String, String>) -> bool + Sync),
        vpc: &str,
        cidr: &SshCidr,
    ) -> Result<String, Ec2Error> {
        let policy = &self.settings.retry;
        let created = retry(policy, transient, || {
            api.create_security_group(name, description, vpc, tags)
        })
        .await;
        let group = match created {
            Err(error) if error.has_code("InvalidGroup.Duplicate") => {
                // Made by an earlier attempt for this machine: reuse it.
                let by_name = [
                    Filter::new("group-name", [name]),
                    Filter::new("vpc-id", [vpc]),
                ];
                let found =
                    retry(policy, transient, || api.describe_security_groups(&by_name)).await?;
                match found.into_iter().find(|group| ours(&group.tags)) {
                    Some(group) => group.id,
                    None => return Err(error),
                }
            }
            other => other?,
        };
        match retry(policy, transient, || api.authorize_ssh(&group, &cidr.text)).await {
            Err(error) if error.has_code("InvalidPermission.Duplicate") => {}
            other => other?,
        }
        Ok(group)
    }

    /// The markets to try, in order: spot (when on), then on-demand (when
    /// spot is off, or as the fallback when allowed).
    pub(super) fn markets(&self) -> Vec<Market> {
        let settings = &self.settings;
        let mut markets = Vec::new();
        if settings.spot {
            markets.push(Market::Spot {
                max_price: settings.max_price.clone(),
            });
        }
        if !settings.spot || settings.allow_on_demand {
            markets.push(Market::OnDemand);
        }
        markets
    }

    /// Tries each instance type, spot first, then on-demand when allowed,
    /// until one runs. Ids of launched instances go to `launched` at once,
    /// so that a failure later removes them.
    async fn launch(
        &self,
        api: &dyn Ec2Api,
        plan: &Plan,
        image: &ImageInfo,
        key_name: &str,
        group: &str,
        launched: &mut Vec<String>,
    ) -> Result<(InstanceInfo, Market), Step> {
        let settings = &self.settings;
        let markets = self.markets();
        let nonce = launch::random_u64();
        let user_data = launch::self_destruct_user_data(plan.tags.expires);
        let tags = plan.tags.with_name(&plan.name);
        let mut attempts = Vec::new();
        let mut last = None;
        for market in &markets {
            for instance_type in &settings.instance_types {
                let request = LaunchRequest {
                    image_id: image.id.clone(),
                    instance_type: instance_type.clone(),
                    market: market.clone(),
                    key_name: key_name.to_owned(),
                    security_group_id: group.to_owned(),
                    subnet_id: settings.subnet_id.clone(),
                    availability_zone: settings.availability_zone.clone(),
                    associate_public_ip: settings.associate_public_ip,
                    root_device_name: image
                        .root_device_name
                        .clone()
                        .unwrap_or_else(|| "/dev/xvda".to_owned()),
                    root_volume_gib: settings.root_volume_gib,
                    data_device_names: plan.data_devices.clone(),
                    volume_gib: plan.volume_gib,
                    volume_type: settings.volume_type.clone(),
                    user_data: user_data.clone(),
                    tags: tags.clone(),
                    client_token: launch::client_token(
                        &[&plan.run, &plan.machine, instance_type, market.label()],
                        nonce,
                    ),
                };
                let label = format!("{instance_type} ({})", market.label());
                match retry(&settings.retry, transient, || api.run_instance(&request)).await {
                    Ok(id) => {
                        tracing::info!(instance = %id, %label, "launched");
                        launched.push(id.clone());
                        match self.wait_running(api, &id).await {
                            Ok(instance) => return Ok((instance, market.clone())),
                            // Spot capacity can be taken back before boot.
                            Err(AwsError::Ended { state, .. })
                                if matches!(market, Market::Spot { .. }) =>
                            {
                                attempts.push(format!("{label}: `{id}` went to `{state}`"));
                            }
                            Err(error) => {
                                return Err(Step {
                                    operation: format!("start instance `{id}`"),
                                    error,
                                });
                            }
                        }
                    }
                    Err(error) if error.is_capacity() => {
                        tracing::info!(%error, %label, "no capacity; trying the next choice");
                        attempts.push(format!("{label}: `{}`", error.code().unwrap_or_default()));
                        last = Some(Box::new(error));
                    }
                    Err(error) => {
                        return Err(Step {
                            operation: format!("launch a {label} instance"),
                            error: error.into(),
                        });
                    }
                }
            }
        }
        Err(Step {
            operation: "launch an instance".to_owned(),
            error: AwsError::NoCapacity { attempts, last },
        })
    }

    pub(super) async fn wait_running(
        &self,
        api: &dyn Ec2Api,
        id: &str,
    ) -> Result<InstanceInfo, AwsError> {
        let started = Instant::now();
        let ids = [id.to_owned()];
        loop {
            // Just after RunInstances, DescribeInstances may not know the id yet.
            let found = retry(
                &self.settings.retry,
                |error| error.has_code("InvalidInstanceID.NotFound"),
                || api.describe_instances(&ids, &[]),
            )
            .await?;
            let state = match found.into_iter().find(|instance| instance.id == id) {
                Some(instance) if instance.state == "running" => return Ok(instance),
                Some(instance) if instance.state == "pending" => instance.state,
                Some(instance) => {
                    return Err(AwsError::Ended {
                        instance: id.to_owned(),
                        state: instance.state,
                    });
                }
                None => "unknown".to_owned(),
            };
            if started.elapsed() >= self.settings.launch_timeout {
                return Err(AwsError::Timeout {
                    instance: id.to_owned(),
                    state,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Polls the console and the instance's tags for its host keys, for up
    /// to `host_key_wait`. None in time is an error: the machine is never
    /// handed out with nothing to check its key against.
    pub(super) async fn wait_host_keys(
        &self,
        api: &dyn Ec2Api,
        id: &str,
    ) -> Result<Vec<String>, AwsError> {
        let started = Instant::now();
        let ids = [id.to_owned()];
        let mut last = None;
        loop {
            match retry(&self.settings.retry, transient, || api.console_output(id)).await {
                Ok(output) => match output.as_deref().map(host_keys) {
                    Some(ConsoleHostKeys::Keys(keys)) => return Ok(keys),
                    Some(ConsoleHostKeys::Conflicting) => {
                        return Err(AwsError::ConflictingHostKeys {
                            instance: id.to_owned(),
                        });
                    }
                    Some(ConsoleHostKeys::NotYet) | None => {}
                },
                Err(error) => {
                    tracing::debug!(%error, instance = id, "cannot read the console yet");
                    last = Some(Box::new(error));
                }
            }
            match retry(&self.settings.retry, transient, || {
                api.describe_instances(&ids, &[])
            })
            .await
            {
                Ok(found) => {
                    let keys = found
                        .iter()
                        .filter(|instance| instance.id == id)
                        .flat_map(|instance| tag_host_keys(&instance.tags))
                        .collect::<Vec<_>>();
                    if !keys.is_empty() {
                        return Ok(keys);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, instance = id, "cannot read the tags yet");
                    last = Some(Box::new(error));
                }
            }
            let waited = started.elapsed();
            if waited >= self.settings.host_key_wait {
                return Err(AwsError::NoHostKey {
                    instance: id.to_owned(),
                    waited_secs: waited.as_secs(),
                    last,
                });
            }
            tokio::time::sleep(
                self.settings
                    .poll_interval
                    .min(self.settings.host_key_wait - waited),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests;
