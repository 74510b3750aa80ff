//! The run's behaviour through its parts, with mock providers, hosts and
//! suites: verdicts, store-before-publish, hangs, crashes, broken
//! connections, notices, sharding and resumption.

// SuiteError carries RemoteError (the contract); mocks return it by value.
#![expect(clippy::result_large_err)]

use std::sync::Mutex;

use super::*;
use crate::config::ConfigSource;
use crate::connect::MockConnector;
use crate::settings::RunOverrides;
use btrfsqa_cloud::{Access, Machine, MockCloudProvider, ProvisionError};
use btrfsqa_publish::{MockPublisher, PublishError, Publisher};
use btrfsqa_remote::{ExecOutput, MockRemoteHost, RemoteHost};
use btrfsqa_suites::{MockTestSuite, SuiteContext, SuiteError, TestList, TestSuite};

fn settings(dir: &std::path::Path, extra: &str) -> Settings {
    let source = ConfigSource {
        name: "test.toml".into(),
        base_dir: dir.to_owned(),
        text: format!(
            "[run]\nresults-dir = \"{}\"\n{extra}",
            dir.join("results").display()
        ),
    };
    Settings::resolve(&source, RunOverrides::default()).unwrap()
}

fn machine(spec: &MachineSpec) -> Machine {
    Machine {
        run_id: spec.run_id.clone(),
        name: spec.name.clone(),
        provider: "mock".into(),
        provider_id: "m-1".into(),
        access: Access::Local,
        test_dev: "/dev/loop90".into(),
        scratch_devs: vec!["/dev/loop91".into(), "/dev/loop92".into()],
        work_dir: "/tmp/btrfsqa-test-work".into(),
        instance_type: None,
        state: serde_json::Value::Null,
    }
}

/// A provider of `machine`s, torn down `teardowns` times; console,
/// notices and resets are left to the test.
fn base_provider(teardowns: usize) -> MockCloudProvider {
    let mut provider = MockCloudProvider::new();
    provider.expect_id().return_const("mock".to_owned());
    provisions(&mut provider, |spec| Ok(machine(spec)));
    provider
        .expect_teardown()
        .times(teardowns)
        .returning(|_| Ok(()));
    provider
}

/// Machines come from `make`, asked for together (as the runner does).
fn provisions(
    provider: &mut MockCloudProvider,
    make: impl Fn(&MachineSpec) -> Result<Machine, ProvisionError> + Send + Sync + 'static,
) {
    provider
        .expect_provision_many()
        .returning(move |specs| specs.iter().map(&make).collect());
}

fn provider(teardowns: usize) -> MockCloudProvider {
    let mut provider = base_provider(teardowns);
    provider.expect_console().returning(|_| None);
    provider.expect_interruption_notice().returning(|_| None);
    provider
}

fn connector() -> MockConnector {
    connector_with_kernel("6.18.0-test")
}

fn suite(id: &'static str, verdicts: &'static [Verdict]) -> Arc<dyn TestSuite> {
    let mut suite = MockTestSuite::new();
    suite.expect_id().return_const(id.to_owned());
    suite.expect_prepare().returning(|_| Ok(()));
    suite.expect_list_tests().returning(|| Ok(None));
    suite.expect_run().returning(move |ctx| {
        let mut report = SuiteReport::new(id);
        for (i, verdict) in verdicts.iter().enumerate() {
            let name = format!("t{i}");
            ctx.test_started(id, &name);
            report
                .tests
                .push(ctx.test_finished(TestOutcome::new(id, name, *verdict)));
        }
        Ok(report)
    });
    Arc::new(suite)
}

fn collect() -> (EventSink, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink_events = events.clone();
    (
        Arc::new(move |e| sink_events.lock().unwrap().push(e)),
        events,
    )
}

fn connector_with_kernel(release: &'static str) -> MockConnector {
    let mut connector = MockConnector::new();
    connector.expect_connect().returning(move |_| {
        let mut host = MockRemoteHost::new();
        host.expect_name().return_const("mock-0".to_owned());
        host.expect_exec().returning(move |request, _| {
            let stdout = if request.command.starts_with("uname") {
                format!("{release}\n#1 SMP\n").into_bytes()
            } else {
                Vec::new()
            };
            Ok(ExecOutput {
                code: Some(0),
                stdout,
                ..Default::default()
            })
        });
        Ok(Arc::new(host) as Arc<dyn RemoteHost>)
    });
    connector
}

fn verdicts(report: &RunReport) -> Vec<(String, Verdict)> {
    report
        .outcomes()
        .map(|t| (t.name.clone(), t.verdict))
        .collect()
}

/// Starts a test, then waits for cancellation like a real long test.
pub(super) struct WaitsForCancel;

#[async_trait::async_trait]
impl TestSuite for WaitsForCancel {
    fn id(&self) -> &str {
        "slow"
    }
    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new("slow");
        ctx.test_started("slow", "done-first");
        report
            .tests
            .push(ctx.test_finished(TestOutcome::new("slow", "done-first", Verdict::Pass)));
        ctx.test_started("slow", "long");
        ctx.cancel.cancelled().await;
        Err(SuiteError::Cancelled {
            suite: "slow".into(),
            partial: Box::new(report),
        })
    }
}

mod basics;
mod faults;
mod sharding;
