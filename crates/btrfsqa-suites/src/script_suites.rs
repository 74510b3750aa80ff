//! `[suites.scripts.NAME]`: every named script suite, in the runner's
//! registry.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use btrfsqa_model::Section;
use serde::Deserialize;

use crate::plugin::{SuitePlugin, SuiteSetup};
use crate::{ScriptSuite, ScriptSuiteConfig, TestSuite};

/// `[suites.scripts.NAME]`: directories of scripts, each run as the suite `NAME`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ScriptSuites(pub BTreeMap<String, ScriptSuiteConfig>);

/// As the map it is, which is how the configuration reference reads it.
impl std::fmt::Debug for ScriptSuites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Section for ScriptSuites {
    fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        for (name, script) in &self.0 {
            if !is_kebab_id(name) {
                issues.push((
                    name.clone(),
                    "suite names are lowercase letters, digits and `-`".to_owned(),
                ));
            }
            for (key, message) in script.validate() {
                issues.push((format!("{name}.{key}"), message));
            }
        }
        issues
    }

    fn resolve_paths(&mut self, base: &Path) {
        for script in self.0.values_mut() {
            btrfsqa_model::section::absolute_all(base, [&mut script.dir]);
        }
    }
}

fn is_kebab_id(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

impl SuitePlugin for ScriptSuite {
    const ID: &'static str = "scripts";
    type Config = ScriptSuites;

    fn suite_ids(config: &ScriptSuites) -> Vec<(String, String)> {
        config
            .0
            .keys()
            .map(|name| (name.clone(), name.clone()))
            .collect()
    }

    fn make(config: &ScriptSuites, id: &str, _setup: SuiteSetup<'_>) -> Option<Arc<dyn TestSuite>> {
        let script = config.0.get(id)?.clone();
        Some(Arc::new(ScriptSuite::new(id, script)))
    }
}
