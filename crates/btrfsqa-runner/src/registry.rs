//! Which provider, suites and publisher the settings name.

use std::sync::Arc;

use btrfsqa_cloud::{
    AmiSelector, AwsProvider, AwsSettings, CloudProvider, LocalProvider, LocalSettings, StaticHost,
    StaticProvider,
};
use btrfsqa_publish::{GitPublisher, GitPublisherSettings, Publisher};
use btrfsqa_suites::{BtrfsProgsTests, Raid56Scrub, ScriptSuite, TestSuite, Xfstests};

use crate::RunError;
use crate::config::ProviderKind;
use crate::settings::Settings;

/// The provider `run.provider` names.
pub async fn provider(settings: &Settings) -> Result<Arc<dyn CloudProvider>, RunError> {
    let config = &settings.config;
    match config.run.provider {
        ProviderKind::Aws => {
            let provider = AwsProvider::new(aws_settings(settings))
                .await
                .map_err(|err| RunError::Provider {
                    provider: "aws".to_owned(),
                    message: crate::error::error_chain(&err),
                })?;
            Ok(Arc::new(provider))
        }
        ProviderKind::Local => Ok(Arc::new(LocalProvider::new(LocalSettings::new(
            config.providers.local.work_dir.clone(),
        )))),
        ProviderKind::Static => {
            let hosts = config
                .providers
                .static_hosts
                .hosts
                .iter()
                .map(|host| StaticHost {
                    name: host.name.clone().unwrap_or_else(|| host.host.clone()),
                    host: host.host.clone(),
                    port: host.port,
                    user: host.user.clone(),
                    identity_file: host.identity_file.clone(),
                    known_hosts_file: host.known_hosts_file.clone(),
                    test_dev: host.test_dev.clone(),
                    scratch_devs: host.scratch_devs.clone(),
                    work_dir: host.work_dir.clone(),
                })
                .collect();
            Ok(Arc::new(StaticProvider::with_settings(
                btrfsqa_cloud::StaticSettings {
                    hosts,
                    state_dir: config.providers.static_hosts.state_dir.clone(),
                },
            )))
        }
        ProviderKind::Qemu => Ok(Arc::new(crate::qemu::provider(
            &settings.config.providers.qemu,
            settings.results_dir(),
        ))),
    }
}

/// The suites `run.suites` names, in order.
pub fn suites(settings: &Settings) -> Result<Vec<Arc<dyn TestSuite>>, RunError> {
    let config = &settings.config;
    config
        .run
        .suites
        .iter()
        .map(|id| -> Result<Arc<dyn TestSuite>, RunError> {
            match id.as_str() {
                "raid56-scrub" => Ok(Arc::new(Raid56Scrub::new(
                    config.suites.raid56_scrub.clone(),
                ))),
                // Git mirrors live beside the results unless configured.
                "xfstests" => {
                    let mut xfstests = config.suites.xfstests.clone();
                    xfstests
                        .cache_dir
                        .get_or_insert_with(|| settings.results_dir().join(".cache"));
                    Ok(Arc::new(Xfstests::new(xfstests)))
                }
                "btrfs-progs" => {
                    let mut progs = config.suites.btrfs_progs.clone();
                    progs
                        .cache_dir
                        .get_or_insert_with(|| settings.results_dir().join(".cache"));
                    Ok(Arc::new(BtrfsProgsTests::new(progs)))
                }
                name => match config.suites.scripts.get(name) {
                    Some(script) => Ok(Arc::new(ScriptSuite::new(name, script.clone()))),
                    // Validation rejects unknown ids; this is for hand-made settings.
                    None => Err(RunError::Config(crate::ConfigError::Invalid {
                        issues: vec![crate::ConfigIssue {
                            file: settings.config_name.clone(),
                            line: None,
                            key: "run.suites".to_owned(),
                            message: format!("unknown suite `{name}`"),
                        }],
                    })),
                },
            }
        })
        .collect()
}

/// What never reaches a recording, a log or a report: the values of the
/// known secret variables, of every secret-looking one, and of those
/// `run.secret-env` names.
pub fn redactor(settings: &Settings) -> btrfsqa_remote::Redactor {
    redactor_of(settings, std::env::vars_os())
}

/// [`redactor`] over the variables `vars` instead of this process's.
fn redactor_of(
    settings: &Settings,
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> btrfsqa_remote::Redactor {
    let mut names: Vec<&str> = crate::recording::SECRET_ENV_VARS.to_vec();
    names.extend(settings.config.run.secret_env.iter().map(String::as_str));
    btrfsqa_remote::Redactor::from_vars(vars, &names)
}

/// The publisher, when `publish.site-repo` is set.
pub fn publisher(settings: &Settings) -> Option<Arc<dyn Publisher>> {
    let publish = &settings.config.publish;
    let repo = publish.site_repo.as_ref()?;
    let mut git =
        GitPublisherSettings::new(repo.clone(), settings.results_dir().join(".site-cache"));
    git.branch = publish.branch.clone();
    git.dashboard.title = publish.title.clone();
    git.dashboard.keep_runs = publish.keep_runs;
    git.dashboard.site_url = publish.site_url.clone();
    git.ssh_key = publish.ssh_key.clone();
    Some(Arc::new(GitPublisher::new(git)))
}

/// `[providers.aws]` over the provider's defaults.
#[expect(
    clippy::field_reassign_with_default,
    reason = "every field is optional in the config; one assignment per key reads best"
)]
pub fn aws_settings(settings: &Settings) -> AwsSettings {
    let aws = &settings.config.providers.aws;
    let mut out = AwsSettings::default();
    out.region = aws.region.clone();
    out.reap_regions = aws.reap_regions.clone();
    out.profile = aws.profile.clone();
    out.endpoint_url = aws.endpoint_url.clone();
    if let Some(types) = &aws.instance_types {
        out.instance_types = types.clone();
    }
    if let Some(spot) = aws.spot {
        out.spot = spot;
    }
    out.max_price = aws.max_price.clone();
    if let Some(allow) = aws.allow_on_demand {
        out.allow_on_demand = allow;
    }
    if let Some(id) = &aws.ami {
        out.ami = AmiSelector::Id(id.clone());
    } else if let (Some(pattern), Some(owner)) = (&aws.ami_name, &aws.ami_owner) {
        out.ami = AmiSelector::NameFilter {
            pattern: pattern.clone(),
            owner: owner.clone(),
        };
    }
    out.subnet_id = aws.subnet_id.clone();
    out.availability_zone = aws.availability_zone.clone();
    if let Some(kind) = &aws.volume_type {
        out.volume_type = kind.clone();
    }
    if let Some(gib) = aws.root_volume_gib {
        out.root_volume_gib = gib;
    }
    out.key_name = aws.key_name.clone();
    out.identity_file = aws.identity_file.clone();
    out.ssh_cidr = aws.ssh_cidr.clone();
    if let Some(user) = &aws.ssh_user {
        out.ssh_user = user.clone();
    }
    if let Some(owner) = &aws.owner {
        out.owner = owner.clone();
    }
    if let Some(hours) = aws.max_run_hours {
        out.max_run_hours = hours;
    }
    // A machine must not outlive the run's own deadline by much.
    let run_hours = settings.config.run.timeout_minutes.div_ceil(60) as u32 + 1;
    out.max_run_hours = out.max_run_hours.min(run_hours.max(1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigSource, RunOverrides};

    #[test]
    fn configured_secret_variables_are_redacted_with_the_known_ones() {
        let source = ConfigSource {
            name: "t.toml".into(),
            base_dir: "/".into(),
            text: "[run]\nsecret-env = [\"LAB_PASS\"]\n".into(),
        };
        let settings = Settings::resolve(&source, RunOverrides::default()).unwrap();
        let vars = [
            ("LAB_PASS", "hunter2-lab"),
            ("GITHUB_TOKEN", "ghp_0123456789abcdef"),
            ("PLAIN", "not-a-secret-value"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let redactor = redactor_of(&settings, vars);
        let text = String::from_utf8(
            redactor.redact(b"hunter2-lab ghp_0123456789abcdef not-a-secret-value"),
        )
        .unwrap();
        assert!(
            !text.contains("hunter2-lab") && !text.contains("ghp_0123456789abcdef"),
            "{text}"
        );
        assert!(text.contains("not-a-secret-value"));
        let bad = ConfigSource {
            text: "[run]\nsecret-env = [\"not a name\"]\n".into(),
            ..source
        };
        let err = Settings::resolve(&bad, RunOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("run.secret-env[0]"), "{err}");
    }
}
