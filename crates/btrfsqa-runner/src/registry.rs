//! Which provider, suites and publisher the settings name.

use std::sync::Arc;

use btrfsqa_cloud::{CloudProvider, LocalProvider, LocalSettings, StaticHost, StaticProvider};
use btrfsqa_publish::{GitPublisher, GitPublisherSettings, Publisher};
use btrfsqa_suites::{Raid56Scrub, ScriptSuite, TestSuite};

use crate::RunError;
use crate::config::ProviderKind;
use crate::settings::Settings;

/// The provider `run.provider` names.
pub fn provider(settings: &Settings) -> Result<Arc<dyn CloudProvider>, RunError> {
    let config = &settings.config;
    match config.run.provider {
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
            Ok(Arc::new(StaticProvider::new(hosts)))
        }
        other => Err(RunError::Provider {
            provider: other.as_str().to_owned(),
            message: "not available in this build".to_owned(),
        }),
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

/// The publisher, when `publish.site-repo` is set.
pub fn publisher(settings: &Settings) -> Option<Arc<dyn Publisher>> {
    let publish = &settings.config.publish;
    let repo = publish.site_repo.as_ref()?;
    let mut git =
        GitPublisherSettings::new(repo.clone(), settings.results_dir().join(".site-cache"));
    git.branch = publish.branch.clone();
    Some(Arc::new(GitPublisher::new(git)))
}
