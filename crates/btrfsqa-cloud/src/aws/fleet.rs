//! A run's machines at once ([`CloudProvider::provision_many`]): one
//! instant EC2 fleet (CreateFleet of type `instant`) for all of them over
//! the configured instance types, spot first, then a second, on-demand
//! fleet for what spot could not give (when allowed). Each instance then
//! becomes its machine as a singly provisioned one does.
//!
//! One fleet request cannot give its instances different key pairs or
//! security groups, so the machines of a fleet share the run's: one key
//! pair, one security group and one launch template, named `btrfsqa-<run>`
//! and tagged with the run but no machine. Each instance is named after its
//! machine (`Name` and the machine tag, on it and its volumes) as soon as
//! it exists. What the machines share goes with the teardown of the run's
//! last machine, or with `reap`.
//!
//! A machine whose instance could not be had is that machine's error, with
//! EC2's reasons; the others go on. A machine that fails later has its
//! instance terminated. When no machine comes of it, what the run shares is
//! removed at once.
//!
//! [`CloudProvider::provision_many`]: crate::CloudProvider::provision_many

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use futures_util::future::join_all;

use super::api::{
    Ec2Api, Filter, FleetError, FleetInstance, FleetOverride, FleetRequest, ImageInfo,
    InstanceInfo, Market, TemplateRequest,
};
use super::error::{AwsError, Ec2Error};
use super::launch::{self, SshCidr};
use super::local_files;
use super::provision::{Kit, Plan, Step, StepResult, failed};
use super::retry::{retry, transient};
use super::tags::{FLEET_PREFIX, shared_by};
use super::{AwsProvider, PROVIDER};
use crate::{Machine, MachineSpec, ProvisionError};

/// EC2's limit on launch template names.
const TEMPLATE_NAME_MAX: usize = 128;

/// One failure that several machines share: shown as itself.
#[derive(Debug)]
struct Shared(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// `error` for each of `count` machines.
fn spread(error: ProvisionError, count: usize) -> Vec<ProvisionError> {
    match error {
        ProvisionError::Failed {
            provider,
            operation,
            leftovers,
            source,
        } => {
            let source: Arc<dyn std::error::Error + Send + Sync> = Arc::from(source);
            (0..count)
                .map(|_| ProvisionError::Failed {
                    provider: provider.clone(),
                    operation: operation.clone(),
                    leftovers: leftovers.clone(),
                    source: Box::new(Shared(source.clone())),
                })
                .collect()
        }
        ProvisionError::Config { provider, message } => (0..count)
            .map(|_| ProvisionError::Config {
                provider: provider.clone(),
                message: message.clone(),
            })
            .collect(),
        ProvisionError::Unsupported {
            provider,
            operation,
        } => (0..count)
            .map(|_| ProvisionError::Unsupported {
                provider: provider.clone(),
                operation: operation.clone(),
            })
            .collect(),
    }
}

/// An instance a fleet launched, and from which request.
#[derive(Debug, Clone)]
struct Launch {
    instance: FleetInstance,
    market: Market,
    fleet_id: Option<String>,
}

/// What the fleet requests gave.
#[derive(Default)]
struct Launched {
    instances: Vec<Launch>,
    /// EC2's reasons for what it did not launch, once each.
    refusals: Vec<String>,
    /// A request that failed as a whole (permission, bad parameter).
    failure: Option<Step>,
}

/// `m6i.large (spot): `InsufficientInstanceCapacity`: message`.
fn refusal(error: &FleetError, market: &Market) -> String {
    let what = match (&error.instance_type, &error.place) {
        (Some(kind), Some(place)) => format!("{kind} in {place}"),
        (Some(kind), None) => kind.clone(),
        (None, Some(place)) => place.clone(),
        (None, None) => "the fleet".to_owned(),
    };
    let lifecycle = error.lifecycle.as_deref().unwrap_or(market.label());
    let message = if error.message.is_empty() {
        String::new()
    } else {
        format!(": {}", error.message)
    };
    format!("{what} ({lifecycle}): `{}`{message}", error.code)
}

impl AwsProvider {
    /// [`CloudProvider::provision_many`](crate::CloudProvider::provision_many)
    /// for EC2: see the module's documentation.
    pub(super) async fn provision_fleet(
        &self,
        specs: &[MachineSpec],
    ) -> Vec<Result<Machine, ProvisionError>> {
        let Some(first) = specs.first() else {
            return Vec::new();
        };
        let one_template = specs.iter().all(|spec| {
            spec.run_id == first.run_id
                && spec.data_devices == first.data_devices
                && spec.device_size == first.device_size
        });
        if !one_template {
            // One launch template gives every instance the same volumes.
            return join_all(specs.iter().map(|spec| self.provision_machine(spec))).await;
        }
        let now = Utc::now();
        match specs
            .iter()
            .map(|spec| self.plan(spec, now))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(plans) => self.fleet_machines(&plans).await,
            Err(error) => spread(error, specs.len()).into_iter().map(Err).collect(),
        }
    }

    async fn fleet_machines(&self, plans: &[Plan]) -> Vec<Result<Machine, ProvisionError>> {
        let count = plans.len();
        let all = |error| spread(error, count).into_iter().map(Err).collect();
        let run = plans[0].run.as_str();
        let api = self.api(&self.region);
        let api = api.as_ref();
        let image = match self.resolve_image(api).await {
            Ok(image) => image,
            Err(error) => return all(failed("find the machine image", error)),
        };
        let cidr = match self.ssh_cidr().await {
            Ok(cidr) => cidr,
            Err(error) => return all(error),
        };
        let vpc = match self.resolve_vpc(api).await {
            Ok(vpc) => vpc,
            Err(error) => return all(error),
        };
        let kit = match self.make_common(api, &plans[0], &image, &cidr, &vpc).await {
            Ok(kit) => kit,
            Err(Step { operation, error }) => {
                tracing::warn!(%error, run, "provisioning failed; removing what was made");
                let leftovers = self.remove_run_shared(api, run, true).await;
                return all(ProvisionError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation,
                    leftovers,
                    source: Box::new(error),
                });
            }
        };
        let mut launched = self.ask_fleets(api, plans, &kit).await;

        let mut run_leftovers = Vec::new();
        if launched.instances.len() > count {
            let surplus: Vec<String> = launched
                .instances
                .split_off(count)
                .into_iter()
                .map(|launch| launch.instance.id)
                .collect();
            tracing::warn!(
                ?surplus,
                "the fleet launched more than asked; terminating the rest"
            );
            for (id, outcome) in self.terminate_and_wait(api, &surplus).await {
                if let Err(why) = outcome {
                    run_leftovers.push(format!("instance `{id}` ({why})"));
                }
            }
        }
        let got = launched.instances.len();
        let failure = launched
            .failure
            .take()
            .map(|Step { operation, error }| (operation, Arc::new(error)));
        let machines = plans.iter().enumerate().map(|(i, plan)| {
            let launch = launched.instances.get(i).cloned();
            let kit = kit.clone();
            let failure = failure.clone();
            let refusals = launched.refusals.clone();
            async move {
                match launch {
                    Some(launch) => {
                        let kit = Kit {
                            fleet_id: launch.fleet_id.clone(),
                            ..kit
                        };
                        self.fleet_machine(api, plan, &launch, kit).await
                    }
                    None => Err(match failure {
                        Some((operation, error)) => ProvisionError::Failed {
                            provider: PROVIDER.to_owned(),
                            operation,
                            leftovers: Vec::new(),
                            source: Box::new(Shared(error)),
                        },
                        None => failed(
                            "launch an instance",
                            AwsError::Unfulfilled {
                                asked: count,
                                launched: got,
                                refusals,
                            },
                        ),
                    }),
                }
            }
        });
        let mut machines = join_all(machines).await;

        if machines.iter().all(Result::is_err) {
            tracing::warn!(
                run,
                "no machine came of the fleet; removing what the run shares"
            );
            run_leftovers.extend(self.remove_run_shared(api, run, true).await);
        }
        if !run_leftovers.is_empty() {
            let mut told = false;
            for machine in &mut machines {
                if let Err(ProvisionError::Failed { leftovers, .. }) = machine {
                    leftovers.extend(run_leftovers.iter().cloned());
                    told = true;
                }
            }
            if !told {
                tracing::warn!(?run_leftovers, "left behind while provisioning");
            }
        }
        machines
    }

    /// The run's key pair, security group and launch template.
    async fn make_common(
        &self,
        api: &dyn Ec2Api,
        plan: &Plan,
        image: &ImageInfo,
        cidr: &SshCidr,
        vpc: &str,
    ) -> Result<Kit, Step> {
        let settings = &self.settings;
        let run = plan.run.as_str();
        let name = launch::run_resource_name(run);
        let tags = plan.tags.of_run(&name);
        let ours = |tags: &BTreeMap<String, String>| shared_by(tags, run);
        let (key_name, key_pair_id, identity_file) = match &settings.key_name {
            Some(existing) => (existing.clone(), None, settings.identity_file.clone()),
            None => {
                let dir = local_files::shared_dir(&settings.key_dir, run);
                local_files::make_private_dir(&settings.key_dir, &dir)
                    .await
                    .step("make the key directory")?;
                let (private, public) = local_files::generate_key(&dir, &name)
                    .await
                    .step("generate an SSH key")?;
                let id = self
                    .import_key(api, &name, &tags, &ours, &public)
                    .await
                    .step(format!("import key pair `{name}`"))?;
                (name.clone(), Some(id), Some(private))
            }
        };
        let description = format!("btrfsqa run {run}: ssh from the controller only");
        let group = self
            .make_security_group(api, &name, &description, &tags, &ours, vpc, cidr)
            .await
            .step(format!("make security group `{name}`"))?;
        let mut request = TemplateRequest {
            name: name.chars().take(TEMPLATE_NAME_MAX).collect(),
            image_id: image.id.clone(),
            key_name: key_name.clone(),
            security_group_id: group.clone(),
            in_subnet: settings.subnet_id.is_some(),
            associate_public_ip: settings.associate_public_ip,
            root_device_name: image
                .root_device_name
                .clone()
                .unwrap_or_else(|| "/dev/xvda".to_owned()),
            root_volume_gib: settings.root_volume_gib,
            data_device_names: plan.data_devices.clone(),
            volume_gib: plan.volume_gib,
            volume_type: settings.volume_type.clone(),
            user_data: launch::self_destruct_user_data(plan.tags.expires),
            tags,
            client_token: launch::client_token(&[run, "launch-template"], launch::random_u64()),
        };
        let template = self
            .make_template(api, run, &mut request)
            .await
            .step(format!("make launch template `{}`", request.name))?;
        Ok(Kit {
            key_name,
            key_pair_id,
            identity_file,
            security_group_id: group,
            launch_template_id: Some(template),
            fleet_id: None,
        })
    }

    /// Makes the launch template; one of the same name left by an earlier
    /// attempt of this run is replaced, any other is an error.
    async fn make_template(
        &self,
        api: &dyn Ec2Api,
        run: &str,
        request: &mut TemplateRequest,
    ) -> Result<String, Ec2Error> {
        let policy = &self.settings.retry;
        let first = retry(policy, transient, || api.create_launch_template(request)).await;
        match first {
            Err(error) if error.has_code("InvalidLaunchTemplateName.AlreadyExistsException") => {
                let by_name = [Filter::new("launch-template-name", [request.name.as_str()])];
                let found = retry(policy, transient, || {
                    api.describe_launch_templates(&by_name)
                })
                .await?;
                let Some(old) = found.iter().find(|template| shared_by(&template.tags, run)) else {
                    return Err(error);
                };
                retry(policy, transient, || api.delete_launch_template(&old.id)).await?;
                request.client_token =
                    launch::client_token(&[run, "launch-template"], launch::random_u64());
                retry(policy, transient, || api.create_launch_template(request)).await
            }
            other => other,
        }
    }

    /// One choice per instance type (in the subnet or zone configured), in
    /// the configured order.
    fn overrides(&self) -> Vec<FleetOverride> {
        let settings = &self.settings;
        settings
            .instance_types
            .iter()
            .zip(0..)
            .map(|(instance_type, priority)| FleetOverride {
                instance_type: instance_type.clone(),
                subnet_id: settings.subnet_id.clone(),
                // A subnet has its zone.
                availability_zone: settings
                    .availability_zone
                    .clone()
                    .filter(|_| settings.subnet_id.is_none()),
                priority,
            })
            .collect()
    }

    /// Asks one instant fleet per market, spot first, each for what the
    /// ones before could not give.
    async fn ask_fleets(&self, api: &dyn Ec2Api, plans: &[Plan], kit: &Kit) -> Launched {
        let settings = &self.settings;
        let template = kit
            .launch_template_id
            .as_deref()
            .expect("make_common makes a template");
        let run = plans[0].run.as_str();
        let overrides = self.overrides();
        let tags = plans[0].tags.of_run(&launch::run_resource_name(run));
        let nonce = launch::random_u64();
        let mut launched = Launched::default();
        let refuse = |launched: &mut Launched, text: String| {
            if !launched.refusals.contains(&text) {
                launched.refusals.push(text);
            }
        };
        for market in self.markets() {
            let wanted = plans.len().saturating_sub(launched.instances.len());
            if wanted == 0 {
                break;
            }
            let request = FleetRequest {
                launch_template_id: template.to_owned(),
                overrides: overrides.clone(),
                market: market.clone(),
                count: u32::try_from(wanted).unwrap_or(u32::MAX),
                tags: tags.clone(),
                client_token: launch::client_token(
                    &[run, "fleet", market.label(), &wanted.to_string()],
                    nonce,
                ),
            };
            match retry(&settings.retry, transient, || api.create_fleet(&request)).await {
                Ok(outcome) => {
                    tracing::info!(fleet = ?outcome.fleet_id, market = market.label(), asked = wanted,
                        launched = outcome.instances.len(), errors = outcome.errors.len(),
                        "instant fleet");
                    if let Some(fleet) = &outcome.fleet_id {
                        self.name_fleet(api, kit, fleet, &market).await;
                    }
                    for error in &outcome.errors {
                        refuse(&mut launched, refusal(error, &market));
                    }
                    launched
                        .instances
                        .extend(outcome.instances.into_iter().map(|instance| Launch {
                            instance,
                            market: market.clone(),
                            fleet_id: outcome.fleet_id.clone(),
                        }));
                }
                Err(error) if error.is_capacity() => {
                    tracing::info!(%error, market = market.label(), "no fleet capacity");
                    let kinds: Vec<String> = overrides.iter().map(FleetOverride::label).collect();
                    refuse(
                        &mut launched,
                        format!(
                            "{} ({}): `{}`",
                            kinds.join(", "),
                            market.label(),
                            error.code().unwrap_or_default()
                        ),
                    );
                }
                Err(error) => {
                    launched.failure = Some(Step {
                        operation: format!("launch a {} fleet", market.label()),
                        error: error.into(),
                    });
                    break;
                }
            }
        }
        launched
    }

    /// Names the fleet on the run's launch template and security group:
    /// EC2 lists an instant fleet only when asked by id, and this is how
    /// teardown and `reap` find it. Best effort: the machines record it too.
    async fn name_fleet(&self, api: &dyn Ec2Api, kit: &Kit, fleet: &str, market: &Market) {
        let shared: Vec<String> = kit
            .launch_template_id
            .iter()
            .chain(std::iter::once(&kit.security_group_id))
            .cloned()
            .collect();
        let tag = [(format!("{FLEET_PREFIX}{fleet}"), market.label().to_owned())];
        if let Err(error) = retry(&self.settings.retry, transient, || {
            api.create_tags(&shared, &tag)
        })
        .await
        {
            tracing::warn!(%error, fleet, "cannot name the fleet on the run's template and group; \
                `reap` may not find it once its instances are gone");
        }
    }

    /// Makes one launched instance the machine of `plan`, or terminates it
    /// and removes what was made for it.
    async fn fleet_machine(
        &self,
        api: &dyn Ec2Api,
        plan: &Plan,
        launch: &Launch,
        kit: Kit,
    ) -> Result<Machine, ProvisionError> {
        match self.become_machine(api, plan, launch, kit).await {
            Ok(machine) => Ok(machine),
            Err(Step { operation, error }) => {
                tracing::warn!(%error, run = %plan.run, machine = %plan.machine,
                    "provisioning failed; removing what was made");
                let leftovers = self
                    .remove_machine(
                        api,
                        &plan.run,
                        &plan.machine,
                        std::slice::from_ref(&launch.instance.id),
                        Some(&plan.dir),
                    )
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

    /// The instance once it lists every data volume of the template. A
    /// fleet's instance may be reported running before its mappings are
    /// (EC2's answers are eventually consistent, and the EC2 emulator
    /// attaches none from a template): it is looked at again, for up to
    /// `launch_timeout`; after that, `finish` says which volume is missing.
    async fn wait_volumes(
        &self,
        api: &dyn Ec2Api,
        plan: &Plan,
        mut instance: InstanceInfo,
    ) -> Result<InstanceInfo, AwsError> {
        let started = std::time::Instant::now();
        let ids = [instance.id.clone()];
        loop {
            let listed = plan.data_devices.iter().all(|device| {
                instance
                    .block_devices
                    .iter()
                    .any(|(name, _)| name == device)
            });
            if listed || started.elapsed() >= self.settings.launch_timeout {
                return Ok(instance);
            }
            tokio::time::sleep(self.settings.poll_interval).await;
            let found = retry(&self.settings.retry, transient, || {
                api.describe_instances(&ids, &[])
            })
            .await?;
            if let Some(again) = found.into_iter().find(|i| i.id == instance.id) {
                instance = again;
            }
        }
    }

    async fn become_machine(
        &self,
        api: &dyn Ec2Api,
        plan: &Plan,
        launch: &Launch,
        kit: Kit,
    ) -> Result<Machine, Step> {
        let policy = &self.settings.retry;
        let id = &launch.instance.id;
        local_files::make_private_dir(&self.settings.key_dir, &plan.dir)
            .await
            .step("make the key directory")?;
        tracing::info!(instance = %id, market = launch.market.label(), machine = %plan.machine,
            "launched by the fleet");
        // The machine's name, at once: the fleet gave every instance the
        // run's tags only. Just after CreateFleet, EC2 may not know the id.
        let tags = plan.tags.with_name(&plan.name);
        retry(
            policy,
            |error| error.has_code("InvalidInstanceID.NotFound"),
            || api.create_tags(std::slice::from_ref(id), &tags),
        )
        .await
        .step(format!("tag instance `{id}`"))?;
        let instance = self
            .wait_running(api, id)
            .await
            .step(format!("start instance `{id}`"))?;
        let instance = self
            .wait_volumes(api, plan, instance)
            .await
            .step(format!("find the volumes of `{id}`"))?;
        let volumes: Vec<String> = instance
            .block_devices
            .iter()
            .map(|(_, volume)| volume.clone())
            .collect();
        if !volumes.is_empty() {
            retry(
                policy,
                |error| error.has_code("InvalidVolume.NotFound"),
                || api.create_tags(&volumes, &tags),
            )
            .await
            .step(format!("tag the volumes of `{id}`"))?;
        }
        self.finish(api, plan, instance, &launch.market, kit).await
    }
}

#[cfg(test)]
mod tests;
