//! `[suites.raid56-scrub]` in the runner's registry.

use std::sync::Arc;

use btrfsqa_model::Section;

use super::{Raid56Scrub, Raid56ScrubConfig};
use crate::TestSuite;
use crate::plugin::{SuitePlugin, SuiteSetup};

impl Section for Raid56ScrubConfig {
    fn validate(&self) -> Vec<(String, String)> {
        Raid56ScrubConfig::validate(self)
    }
}

impl SuitePlugin for Raid56Scrub {
    const ID: &'static str = "raid56-scrub";
    type Config = Raid56ScrubConfig;

    fn make(
        config: &Raid56ScrubConfig,
        _id: &str,
        _setup: SuiteSetup<'_>,
    ) -> Option<Arc<dyn TestSuite>> {
        Some(Arc::new(Raid56Scrub::new(config.clone())))
    }
}
