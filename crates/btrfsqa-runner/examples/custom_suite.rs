//! Drives a run with a suite of your own: `btrfs check` of a freshly made
//! filesystem in each RAID profile, on this machine's loop devices (the
//! `local` provider). Needs root.
//!
//!     cargo run -p btrfsqa-runner --example custom_suite -- /var/tmp/results

use std::sync::Arc;

use btrfsqa_model::{SuiteReport, TestOutcome, Verdict};
use btrfsqa_remote::{ExecRequest, shell_quote};
use btrfsqa_runner::{ConfigSource, DefaultConnector, RunOverrides, Runner, Settings};
use btrfsqa_suites::{SuiteContext, SuiteError, TestList, TestSuite};

const PROFILES: &[&str] = &["single", "raid0", "raid1", "raid10", "raid5", "raid6"];

/// One test per profile: mkfs over the scratch pool, then `btrfs check`.
struct CheckEachProfile;

#[async_trait::async_trait]
impl TestSuite for CheckEachProfile {
    fn id(&self) -> &str {
        "check-profiles"
    }

    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        Ok(Some(TestList::of(PROFILES.iter().map(|p| (*p).to_owned()))))
    }

    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new(self.id());
        let devices: Vec<String> = ctx
            .devices
            .scratch_devs
            .iter()
            .map(|d| shell_quote(d))
            .collect();
        for profile in PROFILES.iter().filter(|p| ctx.selected(p)) {
            ctx.test_started(self.id(), profile);
            let command = format!(
                "mkfs.btrfs -q -f -d {profile} -m {meta} {devs} && btrfs check {first}",
                meta = if *profile == "single" { "dup" } else { profile },
                devs = devices.join(" "),
                first = devices[0],
            );
            let out = ctx
                .host
                .exec(ExecRequest::new(command), None)
                .await
                .map_err(|source| SuiteError::Remote {
                    suite: self.id().into(),
                    source,
                })?;
            let verdict = if out.success() {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            let mut outcome = TestOutcome::new(self.id(), *profile, verdict);
            outcome.duration_secs = Some(out.duration.as_secs_f64());
            if !out.success() {
                outcome.message = Some(out.stderr_text().lines().last().unwrap_or("").to_owned());
            }
            report.tests.push(ctx.test_finished(outcome));
        }
        Ok(report)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let results = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/var/tmp/btrfsqa-example".into());
    let source = ConfigSource {
        name: "example.toml".into(),
        base_dir: std::env::current_dir()?,
        text: format!("[run]\nprovider = \"local\"\nresults-dir = {results:?}\n"),
    };
    let settings = Settings::resolve(&source, RunOverrides::default())?;
    let provider = btrfsqa_runner::registry::provider(&settings).await?;
    let runner = Runner::with_parts(
        settings,
        provider,
        Arc::new(DefaultConnector::default()),
        vec![Arc::new(CheckEachProfile)],
        None,
    );
    let outcome = runner
        .run(Arc::new(|event| eprintln!("{event:?}")), Default::default())
        .await?;
    for test in outcome.report.outcomes() {
        println!("{} {}", test.verdict, test.name);
    }
    Ok(())
}
