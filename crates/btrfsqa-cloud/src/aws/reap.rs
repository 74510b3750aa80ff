//! `reap`: find what crashed controllers left behind, in every configured
//! region, and remove it.
//!
//! A resource is reaped when it carries the run tag and
//! - it belongs to the run asked for (`btrfsqa reap --run ID`, or
//!   `btrfsqa teardown ID`), or
//! - its expiry time has passed, or
//! - it is an instance that is stopped or shutting down, or
//! - it is a volume, key pair, security group, launch template or fleet
//!   whose run has no instance left in the region and that is older than
//!   the grace period (younger ones may belong to a run that is still
//!   provisioning).
//!
//! Anything without the run tag is never even listed, except fleets: EC2
//! cannot filter them by tag, and lists an instant fleet only when asked
//! by id. The fleets looked at are those EC2 lists and those named in the
//! tags of the run's launch templates, security groups and instances, and
//! only those that carry the run tag themselves (and are not deleted yet).
//! They go first (EC2 deletes an instant fleet with the instances it still
//! has); while one cannot be deleted, the launch templates and security
//! groups of its run, which name it, are kept.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::api::{Filter, InstanceInfo, ResourceInfo};
use super::error::Ec2Error;
use super::retry::{retry, transient};
use super::tags::{RUN, created_at, expires_at};
use super::teardown::{NOT_TERMINATED, key_label, owned_run};
use super::{AwsProvider, PROVIDER};
use crate::{ReapAction, ReapItem, TeardownError};

/// Whether an instance is to go.
pub(super) fn instance_is_done(
    instance: &InstanceInfo,
    run: Option<&str>,
    now: DateTime<Utc>,
) -> bool {
    let Some(owner_run) = owned_run(&instance.tags) else {
        return false;
    };
    run.is_some_and(|run| run == owner_run)
        || expires_at(&instance.tags).is_some_and(|expiry| expiry <= now)
        || matches!(instance.state.as_str(), "stopped" | "shutting-down")
}

/// Whether a volume, key pair or security group is to go.
pub(super) fn resource_is_done(
    tags: &BTreeMap<String, String>,
    run: Option<&str>,
    live_runs: &BTreeSet<String>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> bool {
    let Some(owner_run) = owned_run(tags) else {
        return false;
    };
    run.is_some_and(|run| run == owner_run)
        || expires_at(tags).is_some_and(|expiry| expiry <= now)
        || (!live_runs.contains(&owner_run)
            && created_at(tags).is_none_or(|created| created + grace <= now))
}

fn item(kind: &str, id: String, run: Option<String>, action: ReapAction) -> ReapItem {
    ReapItem {
        provider: PROVIDER.to_owned(),
        kind: kind.to_owned(),
        id,
        run_id: run,
        action,
    }
}

fn outcome(done: ReapAction, result: Result<(), impl std::fmt::Display>) -> ReapAction {
    match result {
        Ok(()) => done,
        Err(error) => ReapAction::Failed(error.to_string()),
    }
}

fn deletion(result: Result<bool, Ec2Error>) -> ReapAction {
    match result {
        Ok(true) => ReapAction::deleted(),
        Ok(false) => ReapAction::AlreadyGone,
        Err(error) => ReapAction::Failed(error.to_string()),
    }
}

/// What one region holds of btrfsqa's.
struct Found {
    instances: Vec<InstanceInfo>,
    volumes: Vec<ResourceInfo>,
    keys: Vec<ResourceInfo>,
    groups: Vec<ResourceInfo>,
    templates: Vec<ResourceInfo>,
    fleets: Vec<ResourceInfo>,
}

impl AwsProvider {
    pub(super) async fn reap_all(
        &self,
        run: Option<&str>,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReapItem>, TeardownError> {
        let regions = self.reap_regions();
        let mut items = Vec::new();
        let mut first_failure = None;
        let mut failures = 0;
        let mut live_runs = BTreeSet::new();
        for region in &regions {
            match self
                .reap_region(region, run, dry_run, now, &mut live_runs)
                .await
            {
                Ok(found) => items.extend(found),
                Err(error) => {
                    failures += 1;
                    items.push(item(
                        "region",
                        region.clone(),
                        None,
                        ReapAction::Failed(format!("cannot list: {error}")),
                    ));
                    first_failure.get_or_insert((region.clone(), error));
                }
            }
        }
        if failures == regions.len() {
            if let Some((region, error)) = first_failure {
                return Err(TeardownError::Failed {
                    provider: PROVIDER.to_owned(),
                    operation: format!("list btrfsqa's resources in `{region}`"),
                    source: Box::new(error),
                });
            }
        }
        // The local keys of runs whose cloud resources were reaped.
        let runs: BTreeSet<String> = items
            .iter()
            .filter(|item| item.kind != "region")
            .filter_map(|item| item.run_id.clone())
            .chain(run.map(str::to_owned))
            .filter(|run| !live_runs.contains(run))
            .collect();
        for run in runs {
            let dir = self.settings.key_dir.join(&run);
            if run.is_empty() || run.contains('/') || run.starts_with('.') || !dir.is_dir() {
                continue;
            }
            let action = if dry_run {
                ReapAction::WouldDelete
            } else {
                outcome(ReapAction::deleted(), tokio::fs::remove_dir_all(&dir).await)
            };
            items.push(item(
                "key-directory",
                dir.display().to_string(),
                Some(run),
                action,
            ));
        }
        Ok(items)
    }

    async fn list(&self, region: &str, run: Option<&str>) -> Result<Found, Ec2Error> {
        let api = self.api(region);
        let api = api.as_ref();
        let policy = &self.settings.retry;
        let scope = [match run {
            Some(run) => Filter::tag(RUN, run),
            None => Filter::tag_key(RUN),
        }];
        let instance_filters = [
            scope[0].clone(),
            Filter::new("instance-state-name", NOT_TERMINATED),
        ];
        let mut found = Found {
            instances: retry(policy, transient, || {
                api.describe_instances(&[], &instance_filters)
            })
            .await?,
            volumes: retry(policy, transient, || api.describe_volumes(&scope)).await?,
            keys: retry(policy, transient, || api.describe_key_pairs(&scope)).await?,
            groups: retry(policy, transient, || api.describe_security_groups(&scope)).await?,
            templates: retry(policy, transient, || api.describe_launch_templates(&scope)).await?,
            fleets: Vec::new(),
        };
        let naming: Vec<&BTreeMap<String, String>> = found
            .templates
            .iter()
            .chain(&found.groups)
            .map(|r| &r.tags)
            .chain(found.instances.iter().map(|i| &i.tags))
            .filter(|tags| owned_run(tags).is_some())
            .collect();
        found.fleets = self.run_fleets(api, run, &naming).await?;
        Ok(found)
    }

    async fn reap_region(
        &self,
        region: &str,
        run: Option<&str>,
        dry_run: bool,
        now: DateTime<Utc>,
        live_everywhere: &mut BTreeSet<String>,
    ) -> Result<Vec<ReapItem>, Ec2Error> {
        let found = self.list(region, run).await?;
        let grace =
            chrono::Duration::from_std(self.settings.reap_grace).unwrap_or(chrono::Duration::MAX);
        let (doomed, alive): (Vec<_>, Vec<_>) = found
            .instances
            .into_iter()
            .filter(|instance| owned_run(&instance.tags).is_some())
            .partition(|instance| instance_is_done(instance, run, now));
        let live_runs: BTreeSet<String> = alive.iter().filter_map(|i| owned_run(&i.tags)).collect();
        live_everywhere.extend(live_runs.iter().cloned());
        let done =
            |resource: &ResourceInfo| resource_is_done(&resource.tags, run, &live_runs, now, grace);
        let volumes: Vec<_> = found.volumes.into_iter().filter(done).collect();
        let keys: Vec<_> = found.keys.into_iter().filter(done).collect();
        let groups: Vec<_> = found.groups.into_iter().filter(done).collect();
        let templates: Vec<_> = found.templates.into_iter().filter(done).collect();
        let fleets: Vec<_> = found.fleets.into_iter().filter(done).collect();
        let at = |id: &str| format!("{region}/{id}");

        let mut items = Vec::new();
        if dry_run {
            items.extend(doomed.iter().map(|i| {
                item(
                    "instance",
                    at(&i.id),
                    owned_run(&i.tags),
                    ReapAction::WouldTerminate,
                )
            }));
            items.extend(volumes.iter().map(|v| {
                item(
                    "volume",
                    at(&v.id),
                    owned_run(&v.tags),
                    ReapAction::WouldDelete,
                )
            }));
            items.extend(keys.iter().map(|k| {
                item(
                    "key-pair",
                    at(key_label(k)),
                    owned_run(&k.tags),
                    ReapAction::WouldDelete,
                )
            }));
            items.extend(groups.iter().map(|g| {
                item(
                    "security-group",
                    at(&g.id),
                    owned_run(&g.tags),
                    ReapAction::WouldDelete,
                )
            }));
            items.extend(templates.iter().map(|t| {
                item(
                    "launch-template",
                    at(&t.id),
                    owned_run(&t.tags),
                    ReapAction::WouldDelete,
                )
            }));
            items.extend(fleets.iter().map(|f| {
                item(
                    "fleet",
                    at(&f.id),
                    owned_run(&f.tags),
                    ReapAction::WouldDelete,
                )
            }));
            return Ok(items);
        }

        let api = self.api(region);
        let api = api.as_ref();
        // Deleting an instant fleet also terminates what it still has.
        let mut fleets_left = BTreeSet::new();
        for fleet in &fleets {
            let result = self.delete_fleet(api, fleet).await;
            if result.is_err() {
                fleets_left.extend(owned_run(&fleet.tags));
            }
            items.push(item(
                "fleet",
                at(&fleet.id),
                owned_run(&fleet.tags),
                deletion(result),
            ));
        }
        let kept = |tags: &BTreeMap<String, String>| {
            owned_run(tags).is_some_and(|run| fleets_left.contains(&run))
        };
        let names_fleets =
            || ReapAction::Kept("it names a fleet of its run that could not be deleted".to_owned());
        let runs_of: BTreeMap<String, Option<String>> = doomed
            .iter()
            .map(|i| (i.id.clone(), owned_run(&i.tags)))
            .collect();
        let ids: Vec<String> = doomed.iter().map(|i| i.id.clone()).collect();
        for (id, result) in self.terminate_and_wait(api, &ids).await {
            let run = runs_of.get(&id).cloned().flatten();
            items.push(item(
                "instance",
                at(&id),
                run,
                outcome(ReapAction::Terminated, result),
            ));
        }
        for volume in &volumes {
            let result = self.delete_volume(api, volume).await;
            items.push(item(
                "volume",
                at(&volume.id),
                owned_run(&volume.tags),
                deletion(result),
            ));
        }
        for key in &keys {
            let result = self.delete_key_pair(api, key).await;
            items.push(item(
                "key-pair",
                at(key_label(key)),
                owned_run(&key.tags),
                deletion(result),
            ));
        }
        for group in &groups {
            let action = if kept(&group.tags) {
                names_fleets()
            } else {
                deletion(self.delete_security_group(api, group).await)
            };
            items.push(item(
                "security-group",
                at(&group.id),
                owned_run(&group.tags),
                action,
            ));
        }
        for template in &templates {
            let action = if kept(&template.tags) {
                names_fleets()
            } else {
                deletion(self.delete_launch_template(api, template).await)
            };
            items.push(item(
                "launch-template",
                at(&template.id),
                owned_run(&template.tags),
                action,
            ));
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::tags::{CREATED, EXPIRES};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn tags(run: &str, created: &str, expires: &str) -> BTreeMap<String, String> {
        [(RUN, run), (CREATED, created), (EXPIRES, expires)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    use super::super::api::MockEc2Api;
    use super::super::test_support::{RUN as TEST_RUN, Setup, provider, settings, spec};
    use crate::CloudProvider;
    use crate::aws::tags::MACHINE;
    use btrfsqa_model::RunId;

    #[tokio::test]
    async fn a_killed_controller_leaves_nothing_once_expired() {
        let Some(setup) = Setup::with_ssh_keygen() else {
            return;
        };
        let foreign = setup
            .world
            .lock()
            .unwrap()
            .add_volume(&[("Name", "not ours")]);
        let (keys, world, provider) = setup.wire();
        let machine = provider.provision(&spec()).await.unwrap();
        let expires = crate::AwsMachineState::from_machine(&machine)
            .unwrap()
            .expires_at;
        drop(machine); // the controller is gone

        // Before the expiry, a running run is left alone.
        let items = provider.reap(None, false).await.unwrap();
        assert!(items.is_empty(), "{items:?}");

        let items = provider.reap_at(None, true, expires).await.unwrap();
        assert!(
            items.iter().all(|i| matches!(
                i.action,
                ReapAction::WouldTerminate | ReapAction::WouldDelete
            )),
            "{items:?}"
        );
        assert_eq!(
            world.lock().unwrap().removed,
            Vec::<String>::new(),
            "a dry run removes nothing"
        );

        let items = provider.reap_at(None, false, expires).await.unwrap();

        let kinds: BTreeSet<&str> = items.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "instance",
                "key-directory",
                "key-pair",
                "security-group",
                "volume"
            ]
            .into(),
            "{items:?}"
        );
        assert!(
            items
                .iter()
                .all(|i| ["terminated", "deleted", "already gone"].contains(&i.action.as_str())),
            "{items:?}"
        );
        // The data volumes went with the instance (DeleteOnTermination).
        assert!(
            items
                .iter()
                .filter(|i| i.kind == "volume")
                .all(|i| i.action == "already gone")
        );
        assert!(
            items.iter().all(|i| i.run_id.as_deref() == Some(TEST_RUN)),
            "{items:?}"
        );
        assert!(
            items
                .iter()
                .filter(|i| i.kind != "key-directory")
                .all(|i| i.id.starts_with("us-east-1/"))
        );
        let w = world.lock().unwrap();
        assert_eq!(w.of_run(TEST_RUN), Vec::<String>::new());
        assert_eq!(w.volumes.len(), 1);
        assert_eq!(w.volumes[0].id, foreign, "not tagged as ours: kept");
        assert!(!keys.path().join(TEST_RUN).exists());
    }

    fn fleet_specs() -> Vec<crate::MachineSpec> {
        (0..2)
            .map(|i| {
                let mut spec = spec();
                spec.name = format!("aws-{i}");
                spec
            })
            .collect()
    }

    #[tokio::test]
    async fn a_dead_runs_fleet_and_launch_template_are_reaped_by_their_tags() {
        let Some(setup) = Setup::with_ssh_keygen() else {
            return;
        };
        let (keys, world, provider) = setup.wire();
        let machines: Vec<_> = provider
            .provision_many(&fleet_specs())
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        let expires = crate::AwsMachineState::from_machine(&machines[0])
            .unwrap()
            .expires_at;
        drop(machines); // the controller is gone

        assert!(provider.reap(None, false).await.unwrap().is_empty());
        let planned = provider.reap_at(None, true, expires).await.unwrap();
        for kind in ["fleet", "launch-template"] {
            assert!(
                planned
                    .iter()
                    .any(|i| i.kind == kind && i.action == ReapAction::WouldDelete),
                "{kind}: {planned:?}"
            );
        }

        let items = provider.reap_at(None, false, expires).await.unwrap();

        let kinds: BTreeSet<&str> = items.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "fleet",
                "instance",
                "key-directory",
                "key-pair",
                "launch-template",
                "security-group",
                "volume"
            ]
            .into(),
            "{items:?}"
        );
        assert!(items.iter().all(|i| !i.action.is_failure()), "{items:?}");
        assert!(
            items
                .iter()
                .filter(|i| i.kind == "fleet" || i.kind == "launch-template")
                .all(|i| i.action == ReapAction::deleted()
                    && i.run_id.as_deref() == Some(TEST_RUN)),
            "{items:?}"
        );
        assert_eq!(world.lock().unwrap().of_run(TEST_RUN), Vec::<String>::new());
        assert!(!keys.path().join(TEST_RUN).exists());
    }

    #[tokio::test]
    async fn a_fleet_and_template_whose_instances_are_gone_go_after_the_grace_period() {
        let Some(setup) = Setup::with_ssh_keygen() else {
            return;
        };
        let (_keys, world, provider) = setup.wire();
        let machines: Vec<_> = provider
            .provision_many(&fleet_specs())
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        // The instances end (their deadline's power-off) with nobody to
        // tear the run down.
        {
            let mut w = world.lock().unwrap();
            for instance in &mut w.instances {
                instance.state = "terminated".to_owned();
            }
            w.volumes.retain(|v| !v.tags.contains_key(MACHINE));
        }
        drop(machines);
        let grace = chrono::Duration::from_std(provider.settings().reap_grace).unwrap();

        let early = provider.reap(None, false).await.unwrap();
        assert!(early.is_empty(), "within the grace period: {early:?}");
        let items = provider
            .reap_at(None, false, Utc::now() + grace)
            .await
            .unwrap();

        let kinds: BTreeSet<&str> = items.iter().map(|i| i.kind.as_str()).collect();
        assert!(
            kinds.is_superset(&["fleet", "launch-template", "key-pair", "security-group"].into()),
            "{items:?}"
        );
        assert_eq!(world.lock().unwrap().of_run(TEST_RUN), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_fleet_that_cannot_be_reaped_keeps_the_template_and_group_that_name_it() {
        let Some(mut setup) = Setup::with_ssh_keygen() else {
            return;
        };
        setup.mock.expect_delete_fleet().returning(|_| {
            Err(Ec2Error::from_code(
                "DeleteFleets",
                "unexpectedError",
                "try later",
                None,
            ))
        });
        let (_keys, world, provider) = setup.wire();
        let machines: Vec<_> = provider
            .provision_many(&fleet_specs())
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        drop(machines);

        let items = provider
            .reap(Some(RunId::parse(TEST_RUN).unwrap()), false)
            .await
            .unwrap();

        let action_of = |kind: &str| {
            items
                .iter()
                .find(|i| i.kind == kind)
                .map(|i| i.action.as_str())
        };
        assert_eq!(action_of("fleet"), Some("failed"), "{items:?}");
        assert_eq!(action_of("launch-template"), Some("kept"), "{items:?}");
        assert_eq!(action_of("security-group"), Some("kept"), "{items:?}");
        assert_eq!(action_of("key-pair"), Some("deleted"), "{items:?}");
        let w = world.lock().unwrap();
        assert_eq!(w.templates.len(), 1);
        assert_eq!(w.groups.len(), 1);
    }

    #[tokio::test]
    async fn a_named_run_is_reaped_at_once() {
        let Some(setup) = Setup::with_ssh_keygen() else {
            return;
        };
        let (_keys, world, provider) = setup.wire();
        let mut other = spec();
        other.run_id = RunId::parse("other-run").unwrap();
        let _ours = provider.provision(&spec()).await.unwrap();
        let _theirs = provider.provision(&other).await.unwrap();

        let items = provider
            .reap(Some(RunId::parse(TEST_RUN).unwrap()), false)
            .await
            .unwrap();

        assert!(!items.is_empty());
        let w = world.lock().unwrap();
        assert_eq!(w.of_run(TEST_RUN), Vec::<String>::new());
        assert_eq!(
            w.of_run("other-run").len(),
            10,
            "{:?}",
            w.of_run("other-run")
        );
    }

    #[tokio::test]
    async fn orphans_of_an_ended_run_go_after_the_grace_period() {
        let setup = Setup::new();
        let now = Utc::now();
        let stamp = |t: DateTime<Utc>| t.to_rfc3339();
        let (old, young) = {
            let mut w = setup.world.lock().unwrap();
            let far = stamp(now + chrono::Duration::hours(10));
            (
                w.add_volume(&[
                    (RUN, "ended"),
                    (MACHINE, "m"),
                    (CREATED, &stamp(now - chrono::Duration::hours(2))),
                    (EXPIRES, &far),
                ]),
                w.add_volume(&[
                    (RUN, "starting"),
                    (MACHINE, "m"),
                    (CREATED, &stamp(now)),
                    (EXPIRES, &far),
                ]),
            )
        };
        let (_keys, world, provider) = setup.wire();

        let items = provider.reap(None, false).await.unwrap();

        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].id, format!("us-east-1/{old}"));
        let w = world.lock().unwrap();
        assert_eq!(
            w.volumes.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
            [young]
        );
    }

    #[tokio::test]
    async fn regions_that_cannot_be_listed_are_reported() {
        let keys = tempfile::tempdir().unwrap();
        let mut mock = MockEc2Api::new();
        mock.expect_describe_instances().returning(|_, _| {
            Err(Ec2Error::from_code(
                "DescribeInstances",
                "UnauthorizedOperation",
                "no",
                Some(403),
            ))
        });
        let provider = provider(settings(keys.path()), mock);

        let error = provider.reap(None, true).await.unwrap_err();

        let text = super::super::test_support::chain(&error);
        assert!(
            text.contains("not permitted to call `ec2:DescribeInstances`"),
            "{text}"
        );
    }

    #[test]
    fn instances_go_when_asked_for_expired_or_stopped() {
        let now = at("2025-03-02T00:00:00Z");
        let mut instance = InstanceInfo {
            id: "i-1".to_owned(),
            state: "running".to_owned(),
            tags: tags("r1", "2025-03-01T12:00:00Z", "2025-03-02T06:00:00Z"),
            ..InstanceInfo::default()
        };
        assert!(
            !instance_is_done(&instance, None, now),
            "running and not expired"
        );
        assert!(instance_is_done(&instance, Some("r1"), now));
        assert!(!instance_is_done(&instance, Some("r2"), now));
        assert!(instance_is_done(
            &instance,
            None,
            at("2025-03-02T06:00:00Z")
        ));
        instance.state = "stopped".to_owned();
        assert!(instance_is_done(&instance, None, now));
        instance.tags.remove(RUN);
        assert!(
            !instance_is_done(&instance, Some("r1"), now),
            "never without the tag"
        );
    }

    #[test]
    fn resources_go_when_their_run_has_ended() {
        let now = at("2025-03-02T00:00:00Z");
        let grace = chrono::Duration::hours(1);
        let live: BTreeSet<String> = ["live".to_owned()].into();
        let old = |run| tags(run, "2025-03-01T12:00:00Z", "2025-03-02T06:00:00Z");
        let young = |run| tags(run, "2025-03-01T23:30:00Z", "2025-03-02T06:00:00Z");
        assert!(!resource_is_done(&old("live"), None, &live, now, grace));
        assert!(resource_is_done(&old("ended"), None, &live, now, grace));
        assert!(
            !resource_is_done(&young("starting"), None, &live, now, grace),
            "a run still provisioning is left alone"
        );
        assert!(resource_is_done(
            &young("starting"),
            Some("starting"),
            &live,
            now,
            grace
        ));
        assert!(resource_is_done(
            &tags("live", "2025-03-01T00:00:00Z", "2025-03-01T12:00:00Z"),
            None,
            &live,
            now,
            grace
        ));
        assert!(!resource_is_done(
            &BTreeMap::new(),
            Some("x"),
            &live,
            now,
            grace
        ));
    }
}
