//! The provider, suites and publisher the settings name, made through the
//! table of [`plugins`].

use std::sync::Arc;

use btrfsqa_cloud::{CloudProvider, ProviderContext};
use btrfsqa_publish::{GitPublisher, GitPublisherSettings, Publisher};
use btrfsqa_suites::{SuiteSetup, TestSuite};

use crate::RunError;
use crate::plugins;
use crate::settings::Settings;

/// The provider `run.provider` names.
pub async fn provider(settings: &Settings) -> Result<Arc<dyn CloudProvider>, RunError> {
    let config = &settings.config;
    let id = config.run.provider.as_str();
    let unknown = || RunError::Provider {
        provider: id.to_owned(),
        message: format!(
            "unknown provider (expected {})",
            plugins::provider_ids().join(", ")
        ),
    };
    let entry = plugins::provider(id).ok_or_else(unknown)?;
    let section = config.providers.by_id(id).ok_or_else(unknown)?;
    let context = ProviderContext {
        results_dir: settings.results_dir(),
        run_timeout_minutes: config.run.timeout_minutes,
    };
    entry
        .make(section, context)
        .await
        .map_err(|err| RunError::Provider {
            provider: id.to_owned(),
            message: crate::error::error_chain(&err),
        })
}

/// The suites `run.suites` names, in order.
pub fn suites(settings: &Settings) -> Result<Vec<Arc<dyn TestSuite>>, RunError> {
    let config = &settings.config;
    // Git mirrors and builds live beside the results unless configured.
    let cache_dir = settings.results_dir().join(".cache");
    let setup = SuiteSetup {
        cache_dir: &cache_dir,
    };
    config
        .run
        .suites
        .iter()
        .map(|id| {
            plugins::suite_entry(&config.suites, id)
                .and_then(|entry| entry.make(config.suites.by_id(entry.id)?, id, setup))
                // Validation rejects unknown ids; this is for hand-made settings.
                .ok_or_else(|| {
                    RunError::Config(crate::ConfigError::Invalid {
                        issues: vec![crate::ConfigIssue {
                            file: settings.config_name.clone(),
                            line: None,
                            key: "run.suites".to_owned(),
                            message: format!("unknown suite `{id}`"),
                        }],
                    })
                })
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
