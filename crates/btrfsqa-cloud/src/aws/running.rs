//! A machine while the run uses it: a reset when it crashed or hangs, its
//! console, and whether EC2 is taking it away (a spot interruption, or a
//! termination or stop nobody in the run asked for).

use std::time::{Duration, Instant};

use super::api::{Ec2Api, InstanceInfo, SpotRequestInfo};
use super::error::AwsError;
use super::retry::{retry, transient};
use super::tags::belongs_to;
use super::{AwsMachineState, AwsProvider, PROVIDER, config_error};
use crate::{Machine, ProvisionError};

/// The longest a reset waits for the instance to be `running` again (less
/// when [`AwsSettings::launch_timeout`](super::AwsSettings) is shorter).
const RESET_WAIT: Duration = Duration::from_secs(300);

/// The longest pause between two looks while a reset waits.
const RESET_POLL_MAX: Duration = Duration::from_secs(20);

/// Instance states in which the machine is gone or going away.
const ENDED: [&str; 4] = ["shutting-down", "terminated", "stopping", "stopped"];

/// A spot request status code that says EC2 is taking the instance back or
/// has done so: `marked-for-termination`, `marked-for-stop`,
/// `marked-for-hibernation` (the two-minute warning), and the
/// `instance-terminated-*` and `instance-stopped-*` codes (by price, no
/// capacity, capacity oversubscribed, launch group constraint, and the
/// codes EC2 may add). Everything else (`fulfilled`,
/// `request-canceled-and-instance-running`, the codes of a request still
/// waiting) leaves the instance running.
pub(crate) fn spot_code_ends_instance(code: &str) -> bool {
    ["marked-for-", "instance-terminated-", "instance-stopped-"]
        .iter()
        .any(|prefix| code.starts_with(prefix))
}

/// The notice for an instance whose state says it is going away, or `None`.
pub(crate) fn instance_notice(instance: &InstanceInfo) -> Option<String> {
    if !ENDED.contains(&instance.state.as_str()) {
        return None;
    }
    Some(match &instance.state_reason {
        Some(reason) => format!(
            "instance `{}` is `{}`: {reason}",
            instance.id, instance.state
        ),
        None => format!("instance `{}` is `{}`", instance.id, instance.state),
    })
}

/// The notice for an instance whose spot request says it is being taken
/// back, or `None`.
pub(crate) fn spot_notice(instance: &str, request: &SpotRequestInfo) -> Option<String> {
    let code = request
        .status_code
        .as_deref()
        .filter(|code| spot_code_ends_instance(code))?;
    let head = format!(
        "spot request `{}` of instance `{instance}` is `{code}`",
        request.id
    );
    Some(match &request.status_message {
        Some(message) => format!("{head}: {message}"),
        None => head,
    })
}

fn gone(instance: &InstanceInfo) -> AwsError {
    AwsError::Gone {
        instance: instance.id.clone(),
        state: Some(instance.state.clone()),
        reason: instance.state_reason.clone(),
    }
}

impl AwsProvider {
    /// The region and instance id of an aws machine.
    fn instance_of(&self, machine: &Machine) -> Result<(String, String), ProvisionError> {
        if machine.provider != PROVIDER {
            return Err(config_error(format!(
                "`{}` is not an aws machine (provider `{}`)",
                machine.name, machine.provider
            )));
        }
        if !machine.provider_id.starts_with("i-") {
            return Err(config_error(format!(
                "`{}` has no instance id (`{}`)",
                machine.name, machine.provider_id
            )));
        }
        let region = AwsMachineState::from_machine(machine)
            .map_or_else(|| self.region.clone(), |state| state.region);
        Ok((region, machine.provider_id.clone()))
    }

    /// DescribeInstances of one instance; one EC2 no longer knows is
    /// [`AwsError::Gone`].
    async fn look(&self, api: &dyn Ec2Api, id: &str) -> Result<InstanceInfo, AwsError> {
        let not_known = || AwsError::Gone {
            instance: id.to_owned(),
            state: None,
            reason: None,
        };
        let ids = [id.to_owned()];
        match retry(&self.settings.retry, transient, || {
            api.describe_instances(&ids, &[])
        })
        .await
        {
            Ok(found) => found
                .into_iter()
                .find(|instance| instance.id == id)
                .ok_or_else(not_known),
            Err(error) if error.is_not_found() => Err(not_known()),
            Err(error) => Err(error.into()),
        }
    }

    /// [`CloudProvider::reset`](crate::CloudProvider::reset): RebootInstances,
    /// then a wait until the instance is `running`.
    pub(super) async fn reset_machine(&self, machine: &Machine) -> Result<(), ProvisionError> {
        let (region, id) = self.instance_of(machine)?;
        let api = self.api(&region);
        let failed = |error: AwsError| ProvisionError::Failed {
            provider: PROVIDER.to_owned(),
            operation: format!("reset instance `{id}`"),
            leftovers: Vec::new(),
            source: Box::new(error),
        };
        // Look before rebooting: an instance that is gone is reported as
        // gone (not as a refused reboot), and one that does not carry this
        // machine's tags is never touched.
        let instance = self.look(api.as_ref(), &id).await.map_err(failed)?;
        if !belongs_to(&instance.tags, machine.run_id.as_str(), Some(&machine.name)) {
            return Err(failed(AwsError::NotOurs {
                instance: id.clone(),
                run: machine.run_id.as_str().to_owned(),
                machine: machine.name.clone(),
            }));
        }
        if ENDED.contains(&instance.state.as_str()) {
            return Err(failed(gone(&instance)));
        }
        match retry(&self.settings.retry, transient, || {
            api.reboot_instances(std::slice::from_ref(&id))
        })
        .await
        {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {
                return Err(failed(AwsError::Gone {
                    instance: id.clone(),
                    state: None,
                    reason: None,
                }));
            }
            Err(error) => return Err(failed(error.into())),
        }
        tracing::info!(instance = %id, machine = %machine.name, "rebooted");
        self.wait_running_again(api.as_ref(), &id)
            .await
            .map_err(failed)
    }

    /// Polls, with growing pauses, until the instance is `running`. EC2
    /// keeps an instance `running` through a reboot (and reboots it hard
    /// itself when the guest does not shut down within a few minutes), so
    /// this mostly makes sure it is still there; an instance that ends
    /// meanwhile is [`AwsError::Gone`].
    async fn wait_running_again(&self, api: &dyn Ec2Api, id: &str) -> Result<(), AwsError> {
        let limit = self.settings.launch_timeout.min(RESET_WAIT);
        let started = Instant::now();
        let mut pause = self.settings.poll_interval.min(RESET_POLL_MAX);
        loop {
            let instance = self.look(api, id).await?;
            if instance.state == "running" {
                return Ok(());
            }
            if ENDED.contains(&instance.state.as_str()) {
                return Err(gone(&instance));
            }
            let waited = started.elapsed();
            if waited >= limit {
                return Err(AwsError::Timeout {
                    instance: id.to_owned(),
                    state: instance.state,
                    waited_secs: waited.as_secs(),
                });
            }
            tokio::time::sleep(pause.min(limit - waited)).await;
            pause = pause.saturating_mul(2).min(RESET_POLL_MAX);
        }
    }

    /// [`CloudProvider::console`](crate::CloudProvider::console):
    /// GetConsoleOutput (the latest output where the instance type has it),
    /// decoded; `None` when there is none or it cannot be read.
    pub(super) async fn console_text(&self, machine: &Machine) -> Option<String> {
        let (region, id) = self.instance_of(machine).ok()?;
        let api = self.api(&region);
        match retry(&self.settings.retry, transient, || api.console_output(&id)).await {
            Ok(text) => text.filter(|text| !text.trim().is_empty()),
            Err(error) => {
                tracing::debug!(%error, instance = %id, "cannot read the console");
                None
            }
        }
    }

    /// [`CloudProvider::interruption_notice`](crate::CloudProvider::interruption_notice):
    /// the instance's state, then its spot request's status. A call that
    /// fails is no notice (the runner asks again); an instance EC2 no
    /// longer knows is one.
    pub(super) async fn interruption(&self, machine: &Machine) -> Option<String> {
        let (region, id) = self.instance_of(machine).ok()?;
        let api = self.api(&region);
        let instance = match self.look(api.as_ref(), &id).await {
            Ok(instance) => instance,
            Err(error @ AwsError::Gone { .. }) => return Some(error.to_string()),
            Err(error) => {
                tracing::debug!(%error, instance = %id, "cannot see whether the instance is going away");
                return None;
            }
        };
        if let Some(notice) = instance_notice(&instance) {
            return Some(notice);
        }
        let request = instance.spot_request_id.as_ref()?;
        match retry(&self.settings.retry, transient, || {
            api.describe_spot_instance_requests(std::slice::from_ref(request))
        })
        .await
        {
            Ok(found) => found
                .iter()
                .find(|found| &found.id == request)
                .and_then(|found| spot_notice(&id, found)),
            Err(error) => {
                tracing::debug!(%error, instance = %id, "cannot read the spot request");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::api::MockEc2Api;
    use super::super::tags::{MACHINE, RUN as RUN_TAG};
    use super::super::test_support::{
        REGION, RUN, Setup, World, chain, ec2_error, provider, settings, spec, tag_map,
    };
    use super::*;
    use crate::CloudProvider;
    use std::sync::{Arc, Mutex};

    const SPOT_REQUEST: &str = "sir-0123456789abcdef0";

    /// An instance of machine `aws-0` of the test run in `state`, and the
    /// machine the runner holds for it.
    fn machine_in(world: &Arc<Mutex<World>>, state: &str) -> Machine {
        let id = "i-0000000000000aws0".to_owned();
        world.lock().unwrap().instances.push(InstanceInfo {
            id: id.clone(),
            state: state.to_owned(),
            tags: tag_map(&[(RUN_TAG, RUN), (MACHINE, "aws-0")]),
            spot_request_id: Some(SPOT_REQUEST.to_owned()),
            ..InstanceInfo::default()
        });
        machine_for(&id)
    }

    fn machine_for(id: &str) -> Machine {
        Machine {
            run_id: spec().run_id,
            name: "aws-0".to_owned(),
            provider: PROVIDER.to_owned(),
            provider_id: id.to_owned(),
            access: crate::Access::Local,
            test_dev: String::new(),
            scratch_devs: Vec::new(),
            work_dir: String::new(),
            instance_type: None,
            state: serde_json::Value::Null,
        }
    }

    fn spot_request(code: &str, message: &str) -> SpotRequestInfo {
        SpotRequestInfo {
            id: SPOT_REQUEST.to_owned(),
            state: Some("active".to_owned()),
            status_code: Some(code.to_owned()),
            status_message: (!message.is_empty()).then(|| message.to_owned()),
            instance_id: Some("i-0000000000000aws0".to_owned()),
        }
    }

    #[tokio::test]
    async fn reset_reboots_then_waits_until_running() {
        let mut setup = Setup::new();
        // Throttled once (retried), then the instance passes through
        // `pending`, which the reset must wait out.
        setup
            .mock
            .expect_reboot_instances()
            .times(1)
            .returning(|_| Err(ec2_error("RebootInstances", "RequestLimitExceeded")));
        let w = setup.world.clone();
        setup
            .mock
            .expect_reboot_instances()
            .times(1)
            .returning(move |ids| {
                let mut world = w.lock().unwrap();
                world.reboots.extend(ids.iter().cloned());
                world.instances[0].state = "pending".to_owned();
                Ok(())
            });
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");

        provider.reset(&machine).await.unwrap();

        let w = world.lock().unwrap();
        assert_eq!(w.reboots, std::slice::from_ref(&machine.provider_id));
        assert_eq!(
            w.instances[0].state, "running",
            "the reset looked again after `pending`"
        );
    }

    #[tokio::test]
    async fn resetting_a_terminated_instance_says_it_is_gone() {
        let mut setup = Setup::new();
        setup.mock.expect_reboot_instances().never();
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "terminated");
        world.lock().unwrap().instances[0].state_reason =
            Some("Server.SpotInstanceTermination: Spot instance termination".to_owned());

        let error = provider.reset(&machine).await.unwrap_err();

        let ProvisionError::Failed {
            source, leftovers, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert!(leftovers.is_empty());
        assert!(matches!(
            source.downcast_ref::<AwsError>(),
            Some(AwsError::Gone { .. })
        ));
        assert_eq!(
            chain(&error),
            "aws: cannot reset instance `i-0000000000000aws0`: instance `i-0000000000000aws0` \
             is no longer running (`terminated`: Server.SpotInstanceTermination: Spot instance \
             termination)"
        );
    }

    #[tokio::test]
    async fn resetting_an_instance_ec2_no_longer_knows_says_it_is_gone() {
        let mut setup = Setup::new();
        setup.mock.expect_reboot_instances().never();
        let (_keys, _world, provider) = setup.wire();

        let error = provider
            .reset(&machine_for("i-00000000000000000"))
            .await
            .unwrap_err();

        assert!(
            chain(&error).ends_with("is no longer running (EC2 no longer knows it)"),
            "{}",
            chain(&error)
        );
    }

    #[tokio::test]
    async fn reset_never_touches_an_instance_that_is_not_this_machines() {
        let mut setup = Setup::new();
        setup.mock.expect_reboot_instances().never();
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");
        world.lock().unwrap().instances[0].tags = tag_map(&[("Name", "production")]);

        let error = provider.reset(&machine).await.unwrap_err();

        assert!(
            chain(&error).contains("is not tagged as machine `aws-0`"),
            "{}",
            chain(&error)
        );
    }

    #[tokio::test]
    async fn a_refused_reboot_names_the_instance_and_the_action() {
        let mut setup = Setup::new();
        setup
            .mock
            .expect_reboot_instances()
            .returning(|_| Err(ec2_error("RebootInstances", "UnauthorizedOperation")));
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");

        let error = provider.reset(&machine).await.unwrap_err();

        let text = chain(&error);
        assert!(
            text.contains("cannot reset instance `i-0000000000000aws0`")
                && text.contains("not permitted to call `ec2:RebootInstances`"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_reset_that_does_not_come_back_times_out() {
        let mut setup = Setup::new();
        let w = setup.world.clone();
        setup
            .mock
            .expect_describe_instances()
            .returning(move |_, _| {
                let w = w.lock().unwrap();
                Ok(w.instances.clone())
            });
        let w = setup.world.clone();
        setup.mock.expect_reboot_instances().returning(move |_| {
            w.lock().unwrap().instances[0].state = "pending".to_owned();
            Ok(())
        });
        setup.settings.launch_timeout = Duration::from_millis(30);
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");

        let error = provider.reset(&machine).await.unwrap_err();

        assert!(
            chain(&error).contains("is still `pending` after"),
            "{}",
            chain(&error)
        );
    }

    #[tokio::test]
    async fn reset_of_another_providers_machine_is_refused() {
        let keys = tempfile::tempdir().unwrap();
        let provider = provider(settings(keys.path()), MockEc2Api::new());
        let mut machine = machine_for("i-1");
        machine.provider = "qemu".to_owned();
        assert!(matches!(
            provider.reset(&machine).await,
            Err(ProvisionError::Config { .. })
        ));
        assert_eq!(provider.console(&machine).await, None);
        assert_eq!(provider.interruption_notice(&machine).await, None);
    }

    #[tokio::test]
    async fn the_console_is_decoded_or_none() {
        let setup = Setup::new();
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");

        world.lock().unwrap().console = None;
        assert_eq!(provider.console(&machine).await, None, "nothing yet");
        world.lock().unwrap().console = Some(" \r\n".to_owned());
        assert_eq!(provider.console(&machine).await, None, "blank");

        // What GetConsoleOutput sends (base64), through the adapter's decoding.
        let log = "Linux version 6.1.0-31-cloud-amd64\n\
                   BUG: kernel NULL pointer dereference, address: 0000000000000008\n";
        let sent = aws_smithy_types::base64::encode(log);
        world.lock().unwrap().console = Some(super::super::console::decode_console_output(&sent));
        assert_eq!(provider.console(&machine).await.as_deref(), Some(log));
    }

    #[tokio::test]
    async fn a_console_that_cannot_be_read_is_none() {
        let mut setup = Setup::new();
        setup
            .mock
            .expect_console_output()
            .returning(|_| Err(ec2_error("GetConsoleOutput", "UnauthorizedOperation")));
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");

        assert_eq!(provider.console(&machine).await, None);
    }

    #[test]
    fn states_that_end_the_instance_are_notices() {
        let mut instance = InstanceInfo {
            id: "i-1".to_owned(),
            ..InstanceInfo::default()
        };
        for state in ["pending", "running"] {
            instance.state = state.to_owned();
            assert_eq!(instance_notice(&instance), None, "{state}");
        }
        for state in ["shutting-down", "terminated", "stopping", "stopped"] {
            instance.state = state.to_owned();
            instance.state_reason = None;
            assert_eq!(
                instance_notice(&instance).as_deref(),
                Some(format!("instance `i-1` is `{state}`").as_str())
            );
            instance.state_reason =
                Some("Server.SpotInstanceTermination: Spot instance termination".to_owned());
            assert_eq!(
                instance_notice(&instance).as_deref(),
                Some(
                    format!(
                        "instance `i-1` is `{state}`: Server.SpotInstanceTermination: \
                         Spot instance termination"
                    )
                    .as_str()
                )
            );
        }
    }

    #[test]
    fn spot_codes_that_end_the_instance_are_notices() {
        for code in [
            "marked-for-termination",
            "marked-for-stop",
            "marked-for-hibernation",
            "instance-terminated-by-price",
            "instance-terminated-no-capacity",
            "instance-terminated-capacity-oversubscribed",
            "instance-terminated-launch-group-constraint",
            "instance-stopped-by-price",
            "instance-stopped-no-capacity",
            "instance-stopped-capacity-oversubscribed",
        ] {
            let notice = spot_notice("i-1", &spot_request(code, "Your Spot Instance is marked"));
            assert_eq!(
                notice.as_deref(),
                Some(
                    format!(
                        "spot request `{SPOT_REQUEST}` of instance `i-1` is `{code}`: \
                         Your Spot Instance is marked"
                    )
                    .as_str()
                )
            );
            assert!(spot_notice("i-1", &spot_request(code, "")).is_some());
        }
        for code in [
            "fulfilled",
            "request-canceled-and-instance-running",
            "pending-fulfillment",
            "capacity-not-available",
        ] {
            assert_eq!(
                spot_notice("i-1", &spot_request(code, "fine")),
                None,
                "{code}"
            );
        }
        let mut no_status = spot_request("fulfilled", "");
        no_status.status_code = None;
        assert_eq!(spot_notice("i-1", &no_status), None);
    }

    #[tokio::test]
    async fn notices_come_from_the_state_then_the_spot_request() {
        let setup = Setup::new();
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");
        world
            .lock()
            .unwrap()
            .spot_requests
            .push(spot_request("fulfilled", "Your spot request is fulfilled."));

        assert_eq!(provider.interruption_notice(&machine).await, None);

        world.lock().unwrap().spot_requests[0] = spot_request(
            "marked-for-termination",
            "Your Spot Instance is marked for termination.",
        );
        let notice = provider.interruption_notice(&machine).await.unwrap();
        assert!(
            notice.contains("`marked-for-termination`")
                && notice.contains("marked for termination."),
            "{notice}"
        );

        for state in ["shutting-down", "terminated", "stopping", "stopped"] {
            world.lock().unwrap().instances[0].state = state.to_owned();
            let notice = provider.interruption_notice(&machine).await.unwrap();
            assert!(notice.contains(&format!("`{state}`")), "{notice}");
        }
    }

    #[tokio::test]
    async fn an_instance_terminated_behind_the_runs_back_is_a_notice() {
        let mut setup = Setup::new();
        setup.mock.expect_describe_spot_instance_requests().never();
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");
        provider
            .api(REGION)
            .terminate_instances(std::slice::from_ref(&machine.provider_id))
            .await
            .unwrap();

        let notice = provider.interruption_notice(&machine).await.unwrap();

        assert_eq!(
            notice,
            "instance `i-0000000000000aws0` is `shutting-down`: \
             Client.UserInitiatedShutdown: User initiated shutdown"
        );
        assert_eq!(
            provider
                .interruption_notice(&machine_for("i-00000000000000000"))
                .await
                .as_deref(),
            Some("instance `i-00000000000000000` is no longer running (EC2 no longer knows it)")
        );
    }

    #[tokio::test]
    async fn a_failing_api_is_no_notice() {
        let mut setup = Setup::new();
        setup
            .mock
            .expect_describe_instances()
            .times(4)
            .returning(|_, _| Err(ec2_error("DescribeInstances", "RequestLimitExceeded")));
        setup
            .mock
            .expect_describe_instances()
            .times(1)
            .returning(|_, _| Err(ec2_error("DescribeInstances", "UnauthorizedOperation")));
        setup
            .mock
            .expect_describe_spot_instance_requests()
            .returning(|_| Err(ec2_error("DescribeSpotInstanceRequests", "InternalError")));
        let (_keys, world, provider) = setup.wire();
        let machine = machine_in(&world, "running");
        world
            .lock()
            .unwrap()
            .spot_requests
            .push(spot_request("marked-for-termination", ""));

        // Throttled through every retry, then refused: no notice either way.
        assert_eq!(provider.interruption_notice(&machine).await, None);
        assert_eq!(provider.interruption_notice(&machine).await, None);
        // The instance answers, its spot request does not: still none.
        assert_eq!(provider.interruption_notice(&machine).await, None);
    }
}
