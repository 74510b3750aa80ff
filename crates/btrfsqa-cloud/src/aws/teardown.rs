//! Teardown: terminate, wait until terminated, then delete the volumes, key
//! pair and security group that carry the run's tags, and nothing else.
//! For a machine of a run's fleet, the teardown that finds no other
//! instance of the run left deletes the run's fleets first (EC2 deletes an
//! instant fleet with the instances it still has), and after its own
//! instance is gone, what the run's machines shared: its launch template,
//! its key pair and security group.
//! The deletion steps are shared with `reap` and with the cleanup after a
//! failed provisioning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use super::api::{Ec2Api, Filter, InstanceInfo, ResourceInfo};
use super::error::Ec2Error;
use super::local_files;
use super::retry::{polling, retry, retry_if, transient};
use super::tags::{MACHINE, RUN, belongs_to, fleet_ids, run_of, shared_by};
use super::{AwsMachineState, AwsProvider, PROVIDER};
use crate::{Machine, TeardownError};

/// Instance states that still cost or still hold resources.
pub(super) const NOT_TERMINATED: [&str; 5] =
    ["pending", "running", "shutting-down", "stopping", "stopped"];

impl AwsProvider {
    pub(super) async fn teardown_machine(&self, machine: &Machine) -> Result<(), TeardownError> {
        let state = AwsMachineState::from_machine(machine);
        let region = state
            .as_ref()
            .map_or_else(|| self.region.clone(), |state| state.region.clone());
        let run = machine.run_id.as_str();
        // The recorded directory is trusted only if it has the shape this
        // provider gives (`…/<run>/<machine>`): a damaged record must not
        // make teardown delete some other directory.
        let expected = local_files::machine_dir(&self.settings.key_dir, run, &machine.name);
        let dir = state
            .as_ref()
            .map(|state| state.local_dir.clone())
            .filter(|recorded| {
                recorded.is_absolute()
                    && recorded
                        .components()
                        .rev()
                        .take(2)
                        .eq(expected.components().rev().take(2))
            })
            .unwrap_or(expected);
        let known: Vec<String> = Some(machine.provider_id.clone())
            .filter(|id| id.starts_with("i-"))
            .into_iter()
            .collect();
        let api = self.api(&region);
        let of_fleet = state
            .as_ref()
            .is_some_and(|state| state.launch_template_id.is_some());
        if of_fleet {
            self.end_fleets_if_last(api.as_ref(), run, &known).await;
        }
        let mut leftovers = self
            .remove_machine(api.as_ref(), run, &machine.name, &known, Some(&dir))
            .await;
        if of_fleet {
            leftovers.extend(self.remove_run_shared(api.as_ref(), run, false).await);
        }
        if leftovers.is_empty() {
            Ok(())
        } else {
            Err(TeardownError::Leftovers {
                provider: PROVIDER.to_owned(),
                leftovers,
            })
        }
    }

    /// Removes everything tagged with `run` and `machine` (plus the
    /// `known` instances if they carry the run's tag) and the local key
    /// directory; returns what is left, with why. Safe to repeat.
    pub(super) async fn remove_machine(
        &self,
        api: &dyn Ec2Api,
        run: &str,
        machine: &str,
        known: &[String],
        dir: Option<&Path>,
    ) -> Vec<String> {
        let policy = &self.settings.retry;
        let mut leftovers = Vec::new();
        let scope = [Filter::tag(RUN, run), Filter::tag(MACHINE, machine)];
        let what = format!("run `{run}` machine `{machine}`");

        let live = [
            scope[0].clone(),
            scope[1].clone(),
            Filter::new("instance-state-name", NOT_TERMINATED),
        ];
        let mut instances: Vec<InstanceInfo> =
            match retry(policy, transient, || api.describe_instances(&[], &live)).await {
                Ok(found) => found,
                Err(error) => {
                    leftovers.push(format!("instances of {what} (cannot list them: {error})"));
                    Vec::new()
                }
            };
        let ours = [Filter::tag(RUN, run)];
        for id in known {
            if instances.iter().any(|instance| &instance.id == id) {
                continue;
            }
            // The filter on the run tag keeps an instance that is not ours
            // out of reach even if its id was passed in.
            match retry(policy, transient, || {
                api.describe_instances(std::slice::from_ref(id), &ours)
            })
            .await
            {
                Ok(found) => instances.extend(found),
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    leftovers.push(format!("instance `{id}` (cannot look it up: {error})"))
                }
            }
        }
        instances.retain(|instance| {
            belongs_to(&instance.tags, run, None) && instance.state != "terminated"
        });
        let ids: Vec<String> = instances.into_iter().map(|instance| instance.id).collect();
        for (id, outcome) in self.terminate_and_wait(api, &ids).await {
            if let Err(why) = outcome {
                leftovers.push(format!("instance `{id}` ({why})"));
            }
        }

        match retry(policy, transient, || api.describe_volumes(&scope)).await {
            Ok(volumes) => {
                for volume in volumes
                    .iter()
                    .filter(|v| belongs_to(&v.tags, run, Some(machine)))
                {
                    if let Err(error) = self.delete_volume(api, volume).await {
                        leftovers.push(format!("volume `{}` ({error})", volume.id));
                    }
                }
            }
            Err(error) => leftovers.push(format!("volumes of {what} (cannot list them: {error})")),
        }
        match retry(policy, transient, || api.describe_key_pairs(&scope)).await {
            Ok(keys) => {
                for key in keys
                    .iter()
                    .filter(|k| belongs_to(&k.tags, run, Some(machine)))
                {
                    if let Err(error) = self.delete_key_pair(api, key).await {
                        leftovers.push(format!("key pair `{}` ({error})", key_label(key)));
                    }
                }
            }
            Err(error) => {
                leftovers.push(format!("key pairs of {what} (cannot list them: {error})"))
            }
        }
        match retry(policy, transient, || api.describe_security_groups(&scope)).await {
            Ok(groups) => {
                for group in groups
                    .iter()
                    .filter(|g| belongs_to(&g.tags, run, Some(machine)))
                {
                    if let Err(error) = self.delete_security_group(api, group).await {
                        leftovers.push(format!("security group `{}` ({error})", group.id));
                    }
                }
            }
            Err(error) => {
                leftovers.push(format!(
                    "security groups of {what} (cannot list them: {error})"
                ));
            }
        }
        if let Some(dir) = dir {
            if let Err(error) = local_files::remove_machine_dir(dir).await {
                leftovers.push(format!("local key directory `{}` ({error})", dir.display()));
            }
        }
        leftovers
    }

    /// Removes what the machines of `run`'s fleet share (fleets, launch
    /// templates, the run's key pair and security group, the local key)
    /// once no instance of the run is left, or at once when `now`; returns
    /// what is left, with why. Safe to repeat, and to call from two
    /// teardowns at once (what the other removed is gone, which is fine).
    /// The launch template and the security group name the run's fleets
    /// (EC2 lists an instant fleet only by id): while a fleet cannot be
    /// deleted, they are kept, so that `reap` finds it later.
    pub(super) async fn remove_run_shared(
        &self,
        api: &dyn Ec2Api,
        run: &str,
        now: bool,
    ) -> Vec<String> {
        let policy = &self.settings.retry;
        let mut leftovers = Vec::new();
        let what = format!("run `{run}`");
        if !now {
            match self.live_instances(api, run).await {
                Ok(live) if !live.is_empty() => {
                    // Not the last machine: the last one's teardown does it.
                    return leftovers;
                }
                Ok(_) => {}
                Err(error) => {
                    leftovers.push(format!(
                        "the key pair, security group, launch template and fleets of {what} \
                         (cannot tell whether its machines are gone: {error})"
                    ));
                    return leftovers;
                }
            }
        }
        let scope = [Filter::tag(RUN, run)];
        let shared = |found: Vec<ResourceInfo>| -> Vec<ResourceInfo> {
            found
                .into_iter()
                .filter(|r| shared_by(&r.tags, run))
                .collect()
        };
        let templates = retry(policy, transient, || api.describe_launch_templates(&scope))
            .await
            .map(shared);
        let groups = retry(policy, transient, || api.describe_security_groups(&scope))
            .await
            .map(shared);
        let naming: Vec<&BTreeMap<String, String>> = templates
            .iter()
            .chain(groups.iter())
            .flatten()
            .map(|r| &r.tags)
            .collect();
        let mut fleets_left = false;
        match self.run_fleets(api, Some(run), &naming).await {
            Ok(fleets) => {
                for fleet in &fleets {
                    if let Err(error) = self.delete_fleet(api, fleet).await {
                        leftovers.push(format!("fleet `{}` ({error})", fleet.id));
                        fleets_left = true;
                    }
                }
            }
            Err(error) => {
                leftovers.push(format!("fleets of {what} (cannot list them: {error})"));
                fleets_left = true;
            }
        }
        let kept = "kept: it names fleets of the run that are left";
        match retry(policy, transient, || api.describe_key_pairs(&scope)).await {
            Ok(keys) => {
                for key in keys.iter().filter(|k| shared_by(&k.tags, run)) {
                    if let Err(error) = self.delete_key_pair(api, key).await {
                        leftovers.push(format!("key pair `{}` ({error})", key_label(key)));
                    }
                }
            }
            Err(error) => {
                leftovers.push(format!("key pairs of {what} (cannot list them: {error})"))
            }
        }
        match groups {
            Ok(groups) => {
                for group in &groups {
                    if fleets_left {
                        leftovers.push(format!("security group `{}` ({kept})", group.id));
                    } else if let Err(error) = self.delete_security_group(api, group).await {
                        leftovers.push(format!("security group `{}` ({error})", group.id));
                    }
                }
            }
            Err(error) => leftovers.push(format!(
                "security groups of {what} (cannot list them: {error})"
            )),
        }
        match templates {
            Ok(templates) => {
                for template in &templates {
                    if fleets_left {
                        leftovers.push(format!("launch template `{}` ({kept})", template.id));
                    } else if let Err(error) = self.delete_launch_template(api, template).await {
                        leftovers.push(format!("launch template `{}` ({error})", template.id));
                    }
                }
            }
            Err(error) => leftovers.push(format!(
                "launch templates of {what} (cannot list them: {error})"
            )),
        }
        let dir = local_files::shared_dir(&self.settings.key_dir, run);
        if let Err(error) = local_files::remove_machine_dir(&dir).await {
            leftovers.push(format!("local key directory `{}` ({error})", dir.display()));
        }
        leftovers
    }

    /// The instances of `run` that are not terminated.
    async fn live_instances(&self, api: &dyn Ec2Api, run: &str) -> Result<Vec<String>, Ec2Error> {
        let live = [
            Filter::tag(RUN, run),
            Filter::new("instance-state-name", NOT_TERMINATED),
        ];
        let found = retry(&self.settings.retry, transient, || {
            api.describe_instances(&[], &live)
        })
        .await?;
        Ok(found
            .into_iter()
            .filter(|i| belongs_to(&i.tags, run, None))
            .map(|i| i.id)
            .collect())
    }

    /// When `mine` are all that is left of `run`, deletes the run's fleets,
    /// which terminates them: EC2 deletes an instant fleet with the
    /// instances it still has. Best effort: `remove_run_shared` says what
    /// is left.
    async fn end_fleets_if_last(&self, api: &dyn Ec2Api, run: &str, mine: &[String]) {
        match self.live_instances(api, run).await {
            Ok(live) if live.iter().all(|id| mine.contains(id)) => {}
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(%error, run, "cannot tell whether this is the run's last machine");
                return;
            }
        }
        let scope = [Filter::tag(RUN, run)];
        let policy = &self.settings.retry;
        let mut naming = Vec::new();
        if let Ok(found) = retry(policy, transient, || api.describe_launch_templates(&scope)).await
        {
            naming.extend(found);
        }
        if let Ok(found) = retry(policy, transient, || api.describe_security_groups(&scope)).await {
            naming.extend(found);
        }
        let naming: Vec<_> = naming
            .iter()
            .filter(|r| shared_by(&r.tags, run))
            .map(|r| &r.tags)
            .collect();
        if let Ok(fleets) = self.run_fleets(api, Some(run), &naming).await {
            for fleet in &fleets {
                if let Err(error) = self.delete_fleet(api, fleet).await {
                    tracing::debug!(%error, fleet = %fleet.id, "cannot delete the fleet yet");
                }
            }
        }
    }

    /// The fleets of `run` (of every run when `None`) that are not deleted
    /// yet: those EC2 lists, and those `naming` names (the tags of the
    /// run's launch templates, security groups or instances), asked for by
    /// id as EC2 wants for instant fleets. Only fleets that carry the run
    /// tag themselves are returned.
    pub(super) async fn run_fleets(
        &self,
        api: &dyn Ec2Api,
        run: Option<&str>,
        naming: &[&BTreeMap<String, String>],
    ) -> Result<Vec<ResourceInfo>, Ec2Error> {
        let policy = &self.settings.retry;
        let mut fleets = retry(policy, transient, || api.describe_fleets(&[])).await?;
        let named: BTreeSet<String> = naming
            .iter()
            .flat_map(|tags| fleet_ids(tags))
            .filter(|id| !fleets.iter().any(|fleet| fleet.id == *id))
            .map(str::to_owned)
            .collect();
        for id in named {
            match retry(policy, transient, || {
                api.describe_fleets(std::slice::from_ref(&id))
            })
            .await
            {
                Ok(found) => fleets.extend(found),
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        fleets.retain(|fleet| live_fleet_of(fleet, run));
        Ok(fleets)
    }

    /// Deletes an instant fleet (and so whatever instance it still has);
    /// one already gone is fine.
    pub(super) async fn delete_fleet(
        &self,
        api: &dyn Ec2Api,
        fleet: &ResourceInfo,
    ) -> Result<bool, Ec2Error> {
        gone_is_fine(
            retry(&self.settings.retry, transient, || {
                api.delete_fleet(&fleet.id)
            })
            .await,
        )
    }

    pub(super) async fn delete_launch_template(
        &self,
        api: &dyn Ec2Api,
        template: &ResourceInfo,
    ) -> Result<bool, Ec2Error> {
        gone_is_fine(
            retry(&self.settings.retry, transient, || {
                api.delete_launch_template(&template.id)
            })
            .await,
        )
    }

    /// Terminates `ids` and waits until they are terminated; the outcome of
    /// each, in order.
    pub(super) async fn terminate_and_wait(
        &self,
        api: &dyn Ec2Api,
        ids: &[String],
    ) -> Vec<(String, Result<(), String>)> {
        let policy = &self.settings.retry;
        let mut outcomes: Vec<(String, Result<(), String>)> = Vec::new();
        let mut waiting = Vec::new();
        for id in ids {
            match retry(policy, transient, || {
                api.terminate_instances(std::slice::from_ref(id))
            })
            .await
            {
                Ok(()) => waiting.push(id.clone()),
                Err(error) if error.is_not_found() => outcomes.push((id.clone(), Ok(()))),
                Err(error) => {
                    outcomes.push((id.clone(), Err(format!("cannot terminate: {error}"))))
                }
            }
        }
        let started = Instant::now();
        while !waiting.is_empty() {
            match retry(policy, transient, || api.describe_instances(&waiting, &[])).await {
                Ok(found) => {
                    waiting.retain(|id| {
                        let gone = found
                            .iter()
                            .find(|instance| &instance.id == id)
                            .is_none_or(|instance| instance.state == "terminated");
                        if gone {
                            outcomes.push((id.clone(), Ok(())));
                        }
                        !gone
                    });
                }
                // Terminated long enough ago to be forgotten.
                Err(error) if error.is_not_found() && waiting.len() == 1 => {
                    outcomes.push((waiting.remove(0), Ok(())));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot see whether instances are terminated yet");
                }
            }
            if waiting.is_empty() {
                break;
            }
            if started.elapsed() >= self.settings.teardown_timeout {
                let waited = started.elapsed().as_secs();
                outcomes.extend(
                    waiting
                        .drain(..)
                        .map(|id| (id, Err(format!("not terminated after {waited} s")))),
                );
                break;
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
        outcomes
    }

    fn patient(&self) -> super::settings::RetryPolicy {
        polling(self.settings.poll_interval, self.settings.teardown_timeout)
    }

    /// Deletes a volume; one still detaching from a terminated instance is
    /// waited for, one already gone is fine.
    pub(super) async fn delete_volume(
        &self,
        api: &dyn Ec2Api,
        volume: &ResourceInfo,
    ) -> Result<bool, Ec2Error> {
        let busy =
            |error: &Ec2Error| error.has_code("VolumeInUse") || error.has_code("IncorrectState");
        let patient = self.patient();
        gone_is_fine(
            retry_if(&patient, busy, || {
                retry(&self.settings.retry, transient, || {
                    api.delete_volume(&volume.id)
                })
            })
            .await,
        )
    }

    pub(super) async fn delete_key_pair(
        &self,
        api: &dyn Ec2Api,
        key: &ResourceInfo,
    ) -> Result<bool, Ec2Error> {
        gone_is_fine(
            retry(&self.settings.retry, transient, || {
                api.delete_key_pair(&key.id, key.name.clone())
            })
            .await,
        )
    }

    /// Deletes a security group; while a terminating instance's network
    /// interface still holds it, EC2 says `DependencyViolation`: wait.
    pub(super) async fn delete_security_group(
        &self,
        api: &dyn Ec2Api,
        group: &ResourceInfo,
    ) -> Result<bool, Ec2Error> {
        let patient = self.patient();
        gone_is_fine(
            retry_if(
                &patient,
                |error| error.has_code("DependencyViolation"),
                || {
                    retry(&self.settings.retry, transient, || {
                        api.delete_security_group(&group.id)
                    })
                },
            )
            .await,
        )
    }
}

/// `true` when deleted now, `false` when it was already gone (a volume
/// deleted with its instance).
fn gone_is_fine(outcome: Result<(), Ec2Error>) -> Result<bool, Ec2Error> {
    match outcome {
        Ok(()) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}

/// A fleet that carries a run tag (of `run`, when given) and is not
/// deleted yet: EC2 lists deleted fleets for a while, and has no tag filter
/// for fleets.
fn live_fleet_of(fleet: &ResourceInfo, run: Option<&str>) -> bool {
    let deleted = fleet
        .state
        .as_deref()
        .is_some_and(|state| state.starts_with("deleted"));
    let owner = run_of(&fleet.tags);
    !deleted && owner.is_some() && run.is_none_or(|run| owner == Some(run))
}

/// A key pair's name, else its id.
pub(super) fn key_label(key: &ResourceInfo) -> &str {
    key.name.as_deref().unwrap_or(&key.id)
}

/// The run of a resource; resources without one never get here (every
/// listing filters on the tag), this is the second check.
pub(super) fn owned_run(tags: &std::collections::BTreeMap<String, String>) -> Option<String> {
    run_of(tags).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::super::api::MockEc2Api;
    use super::super::test_support::{RUN, Setup, ec2_error, provider, settings, spec, tag_map};
    use super::*;
    use crate::CloudProvider;
    use crate::aws::tags::RUN as RUN_TAG;

    #[tokio::test]
    async fn teardown_removes_only_what_carries_the_run() {
        let Some(setup) = Setup::with_ssh_keygen() else {
            return;
        };
        let (foreign, other_run) = {
            let mut w = setup.world.lock().unwrap();
            (
                w.add_volume(&[("Name", format!("btrfsqa-{RUN}-aws-0").as_str())]),
                w.add_volume(&[(RUN_TAG, "another-run"), (MACHINE, "aws-0")]),
            )
        };
        let (_keys, world, provider) = setup.wire();
        let machine = provider.provision(&spec()).await.unwrap();

        provider.teardown(&machine).await.unwrap();

        let w = world.lock().unwrap();
        assert_eq!(w.of_run(RUN), Vec::<String>::new());
        let left: Vec<_> = w.volumes.iter().map(|v| v.id.clone()).collect();
        assert_eq!(left, [foreign.clone(), other_run.clone()]);
        assert!(
            !w.removed
                .iter()
                .any(|r| r.contains(&foreign) || r.contains(&other_run))
        );
        // Terminated first, then the rest.
        assert!(w.removed[0].starts_with("instance "), "{:?}", w.removed);
    }

    #[tokio::test]
    async fn an_instance_not_tagged_as_ours_is_never_terminated() {
        let setup = Setup::new();
        let (_keys, world, provider) = setup.wire();
        // Someone else's instance, named as this machine's provider id.
        let id = {
            let mut w = world.lock().unwrap();
            w.instances.push(InstanceInfo {
                id: "i-00000000000000abc".to_owned(),
                state: "running".to_owned(),
                tags: tag_map(&[("Name", "production")]),
                ..InstanceInfo::default()
            });
            "i-00000000000000abc".to_owned()
        };
        let machine = Machine {
            run_id: spec().run_id,
            name: "aws-0".to_owned(),
            provider: PROVIDER.to_owned(),
            provider_id: id,
            access: crate::Access::Local,
            test_dev: String::new(),
            scratch_devs: Vec::new(),
            work_dir: String::new(),
            instance_type: None,
            state: serde_json::Value::Null,
        };

        provider.teardown(&machine).await.unwrap();

        let w = world.lock().unwrap();
        assert_eq!(w.instances[0].state, "running");
        assert!(w.removed.is_empty(), "{:?}", w.removed);
    }

    #[tokio::test]
    async fn a_damaged_record_cannot_point_teardown_at_another_directory() {
        let Some(setup) = Setup::with_ssh_keygen() else {
            return;
        };
        let precious = tempfile::tempdir().unwrap();
        let (_keys, _world, provider) = setup.wire();
        let mut machine = provider.provision(&spec()).await.unwrap();
        let mut state = AwsMachineState::from_machine(&machine).unwrap();
        let real_dir = state.local_dir.clone();
        state.local_dir = precious.path().to_owned();
        machine.state = serde_json::to_value(&state).unwrap();

        provider.teardown(&machine).await.unwrap();

        assert!(precious.path().exists());
        assert!(
            !real_dir.exists(),
            "the machine's own directory went instead"
        );
    }

    #[tokio::test]
    async fn teardown_waits_while_the_group_is_still_in_use() {
        let Some(mut setup) = Setup::with_ssh_keygen() else {
            return;
        };
        setup
            .mock
            .expect_delete_security_group()
            .times(3)
            .returning(|_| Err(ec2_error("DeleteSecurityGroup", "DependencyViolation")));
        setup
            .mock
            .expect_delete_volume()
            .times(1)
            .returning(|_| Err(ec2_error("DeleteVolume", "RequestLimitExceeded")));
        let (_keys, world, provider) = setup.wire();
        let machine = provider.provision(&spec()).await.unwrap();
        // A volume that outlived its instance (DeleteOnTermination undone).
        world
            .lock()
            .unwrap()
            .add_volume(&[(RUN_TAG, RUN), (MACHINE, "aws-0")]);

        provider.teardown(&machine).await.unwrap();

        assert_eq!(world.lock().unwrap().of_run(RUN), Vec::<String>::new());
    }

    #[tokio::test]
    async fn teardown_errors_name_what_is_left() {
        let Some(mut setup) = Setup::with_ssh_keygen() else {
            return;
        };
        setup
            .mock
            .expect_delete_key_pair()
            .returning(|_, _| Err(ec2_error("DeleteKeyPair", "UnauthorizedOperation")));
        setup
            .mock
            .expect_terminate_instances()
            .times(2)
            .returning(|_| Err(ec2_error("TerminateInstances", "ServiceUnavailable")));
        let (_keys, world, provider) = setup.wire();
        let machine = provider.provision(&spec()).await.unwrap();

        let error = provider.teardown(&machine).await.unwrap_err();

        let TeardownError::Leftovers { leftovers, .. } = &error else {
            panic!("{error:?}");
        };
        let key = format!("btrfsqa-{RUN}-aws-0");
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        assert!(
            leftovers[0].contains(&format!("key pair `{key}`")),
            "{leftovers:?}"
        );
        assert!(
            leftovers[0].contains("not permitted to call `ec2:DeleteKeyPair`"),
            "{leftovers:?}"
        );
        let left = world.lock().unwrap().of_run(RUN);
        assert_eq!(left.len(), 1, "only the key pair is left: {left:?}");
    }

    #[tokio::test]
    async fn an_unreachable_api_is_reported_not_ignored() {
        let keys = tempfile::tempdir().unwrap();
        let mut mock = MockEc2Api::new();
        let down = |action: &str| Ec2Error::Transport {
            action: action.to_owned(),
            source: "connection refused".into(),
        };
        mock.expect_describe_instances()
            .returning(move |_, _| Err(down("DescribeInstances")));
        mock.expect_describe_volumes()
            .returning(move |_| Err(down("DescribeVolumes")));
        mock.expect_describe_key_pairs()
            .returning(move |_| Err(down("DescribeKeyPairs")));
        mock.expect_describe_security_groups()
            .returning(move |_| Err(down("DescribeSecurityGroups")));
        let provider = provider(settings(keys.path()), mock);
        let mut machine_spec = spec();
        machine_spec.name = "aws-1".to_owned();
        let machine = Machine {
            run_id: machine_spec.run_id,
            name: machine_spec.name,
            provider: PROVIDER.to_owned(),
            provider_id: "i-0123".to_owned(),
            access: crate::Access::Local,
            test_dev: String::new(),
            scratch_devs: Vec::new(),
            work_dir: String::new(),
            instance_type: None,
            state: serde_json::Value::Null,
        };

        let error = provider.teardown(&machine).await.unwrap_err();

        let TeardownError::Leftovers { leftovers, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(leftovers.len(), 5, "{leftovers:?}");
        assert!(
            leftovers.iter().all(|l| l.contains("got no answer")),
            "{leftovers:?}"
        );
    }
}
