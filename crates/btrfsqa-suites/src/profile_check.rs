//! The `profile-check` suite: for each btrfs block-group profile, a fresh
//! filesystem over the scratch pool (data and metadata in that profile)
//! and a read-only `btrfs check` of it. The smallest suite that still
//! tests something real: mkfs and check agreeing on every profile.
//!
//! ```toml
//! [run]
//! suites = ["profile-check"]
//! [suites.profile-check]
//! profiles = ["raid1", "raid5", "raid6"]
//! ```

use std::sync::Arc;
use std::time::Duration;

use btrfsqa_model::{Section, SuiteReport, TestOutcome, Verdict};
use btrfsqa_remote::{ExecRequest, shell_quote};
use serde::Deserialize;

use crate::plugin::{SuitePlugin, SuiteSetup};
use crate::{SuiteContext, SuiteError, TestList, TestSuite};

const ID: &str = "profile-check";

/// Every profile, with the fewest devices mkfs takes for it.
const PROFILES: &[(&str, usize)] = &[
    ("single", 1),
    ("dup", 1),
    ("raid0", 2),
    ("raid1", 2),
    ("raid1c3", 3),
    ("raid1c4", 4),
    ("raid10", 4),
    ("raid5", 2),
    ("raid6", 3),
];

/// `[suites.profile-check]`: `btrfs check` of a fresh filesystem in each
/// block-group profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ProfileCheckConfig {
    /// The profiles, one test each: `single`, `dup`, `raid0`, `raid1`,
    /// `raid1c3`, `raid1c4`, `raid10`, `raid5`, `raid6` (default: all).
    pub profiles: Vec<String>,
    /// Seconds mkfs and check of one profile may take before the test is
    /// recorded as hung.
    pub timeout_secs: u64,
}

impl Default for ProfileCheckConfig {
    fn default() -> Self {
        ProfileCheckConfig {
            profiles: PROFILES
                .iter()
                .map(|(name, _)| (*name).to_owned())
                .collect(),
            timeout_secs: 120,
        }
    }
}

impl Section for ProfileCheckConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        for (i, profile) in self.profiles.iter().enumerate() {
            if devices_for(profile).is_none() {
                let known: Vec<&str> = PROFILES.iter().map(|(name, _)| *name).collect();
                issues.push((
                    format!("profiles[{i}]"),
                    format!("unknown profile `{profile}` (known: {})", known.join(", ")),
                ));
            } else if self.profiles[..i].contains(profile) {
                issues.push((
                    format!("profiles[{i}]"),
                    format!("`{profile}` is listed twice"),
                ));
            }
        }
        if self.timeout_secs == 0 {
            issues.push(("timeout-secs".to_owned(), "must be at least 1".to_owned()));
        }
        issues
    }
}

fn devices_for(profile: &str) -> Option<usize> {
    PROFILES
        .iter()
        .find(|(name, _)| *name == profile)
        .map(|(_, devices)| *devices)
}

/// The suite; see the module documentation.
#[derive(Debug, Clone)]
pub struct ProfileCheck {
    config: ProfileCheckConfig,
}

impl ProfileCheck {
    /// The suite over `config`.
    pub fn new(config: ProfileCheckConfig) -> Self {
        ProfileCheck { config }
    }

    /// One profile's test on `devices` (the scratch pool, quoted).
    async fn check(
        &self,
        ctx: &SuiteContext,
        profile: &str,
        devices: &[String],
    ) -> Result<TestOutcome, SuiteError> {
        let needed = devices_for(profile).unwrap_or(1);
        if devices.len() < needed {
            let mut outcome = TestOutcome::new(ID, profile, Verdict::Skip);
            outcome.message = Some(format!(
                "needs {needed} scratch devices, the machine has {}",
                devices.len()
            ));
            return Ok(outcome);
        }
        // The fewest devices the profile takes, so each profile is tested
        // at its edge; mkfs registers them, the forget lets them go.
        let used = devices[..needed].join(" ");
        let first = &devices[0];
        let command = format!(
            "mkfs.btrfs -q -f -d {profile} -m {profile} {used} && btrfs check --readonly {first}; \
             status=$?; btrfs device scan --forget {used} >/dev/null 2>&1; exit $status"
        );
        let request =
            ExecRequest::new(command).timeout(Duration::from_secs(self.config.timeout_secs));
        let out = ctx
            .host
            .exec(request, None)
            .await
            .map_err(|source| SuiteError::Remote {
                suite: ID.to_owned(),
                source,
            })?;
        let verdict = match (out.timed_out, out.success()) {
            (true, _) => Verdict::Hung,
            (false, true) => Verdict::Pass,
            (false, false) => Verdict::Fail,
        };
        let mut outcome = TestOutcome::new(ID, profile, verdict);
        outcome.duration_secs = Some(out.duration.as_secs_f64());
        if verdict != Verdict::Pass {
            let stderr = out.stderr_text();
            let last = stderr.lines().rev().find(|line| !line.trim().is_empty());
            outcome.message = Some(match (verdict, last) {
                (Verdict::Hung, _) => format!("no answer in {} s", self.config.timeout_secs),
                (_, Some(line)) => line.trim().to_owned(),
                (_, None) => format!("exit status {:?}", out.code),
            });
        }
        Ok(outcome)
    }
}

#[async_trait::async_trait]
impl TestSuite for ProfileCheck {
    fn id(&self) -> &str {
        ID
    }

    async fn list_tests(&self) -> Result<Option<TestList>, SuiteError> {
        Ok(Some(TestList::of(self.config.profiles.iter().cloned())))
    }

    async fn run(&self, ctx: &SuiteContext) -> Result<SuiteReport, SuiteError> {
        let mut report = SuiteReport::new(ID);
        let devices: Vec<String> = ctx
            .devices
            .scratch_devs
            .iter()
            .map(|dev| shell_quote(dev))
            .collect();
        for profile in self.config.profiles.iter().filter(|p| ctx.selected(p)) {
            if ctx.cancel.is_cancelled() {
                return Err(SuiteError::Cancelled {
                    suite: ID.to_owned(),
                    partial: Box::new(report),
                });
            }
            ctx.test_started(ID, profile);
            let outcome = ctx.test_finished(self.check(ctx, profile, &devices).await?);
            let hung = outcome.verdict == Verdict::Hung;
            report.tests.push(outcome);
            if hung {
                return Err(SuiteError::Hung {
                    suite: ID.to_owned(),
                    test: profile.clone(),
                    partial: Box::new(report),
                });
            }
        }
        Ok(report)
    }
}

impl SuitePlugin for ProfileCheck {
    const ID: &'static str = ID;
    type Config = ProfileCheckConfig;

    fn make(
        config: &ProfileCheckConfig,
        _id: &str,
        _setup: SuiteSetup<'_>,
    ) -> Option<Arc<dyn TestSuite>> {
        Some(Arc::new(ProfileCheck::new(config.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_or_repeated_profiles_are_named() {
        let config = ProfileCheckConfig {
            profiles: vec!["raid1".into(), "raid7".into(), "raid1".into()],
            timeout_secs: 0,
        };
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["profiles[1]", "profiles[2]", "timeout-secs"]);
        assert!(ProfileCheckConfig::default().validate().is_empty());
    }

    #[tokio::test]
    async fn each_profile_is_one_listed_test() {
        let suite = ProfileCheck::new(ProfileCheckConfig::default());
        let list = suite.list_tests().await.unwrap().unwrap();
        let names: Vec<&str> = list.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), PROFILES.len());
        assert!(names.contains(&"raid6"));
    }
}
