//! The stable, serializable vocabulary of btrfsqa.
//!
//! Everything a run produces is described here: [`RunId`], [`Verdict`],
//! [`TestOutcome`], [`SuiteReport`], [`RunReport`] with its [`Provenance`],
//! and the [`Event`]s a run emits while it goes. Other tools read the JSON
//! these types serialize to (`report.json`, `--message-format json`), so the
//! field names are part of the interface; the report carries
//! [`SCHEMA_VERSION`] and any change that is not purely additive bumps it.
//!
//! [`REPORT_SCHEMA`] is the published JSON Schema of `report.json`
//! (`schema/report.schema.json` in this crate), checked against the types.
//!
//! [`ResultsStore`] is the on-disk layout of the results store that every
//! run lands in before anything is published.
//!
//! [`redact_url`] strips credentials (`https://user:token@host/...`) from
//! URLs and from text that quotes them; reports
//! ([`RunReport::redact_credentials`]) and events
//! ([`Event::redact_credentials`]) apply it to every string they hold, and
//! the results store writes no report without doing so.
//!
//! [`compare`] judges a run against its baseline and history (regressions,
//! fixes, flaky tests, known failures), purely, so the runner, the CLI and
//! the dashboard agree.
//!
//! ```
//! use btrfsqa_model::{TestOutcome, Verdict};
//!
//! let outcome = TestOutcome::new("raid56-scrub", "raid5-data-repair", Verdict::Pass);
//! let json = serde_json::to_string(&outcome).unwrap();
//! assert!(json.contains(r#""verdict":"pass""#));
//! ```

pub mod bisect;
pub mod compare;
mod error;
mod event;
pub mod fs;
#[doc(hidden)]
pub mod layers;
mod redact;
mod report;
mod run_id;
mod schema;
pub mod section;
mod store;

pub use error::{ModelError, error_chain};
pub use event::{Event, EventSink, Stage};
pub use redact::{redact_url, url_credentials};
pub use report::{
    Artifact, ArtifactKind, Attempt, Counts, ImportOrigin, KernelInfo, MachineInfo, Provenance,
    RunReport, RunStatus, SCHEMA_VERSION, SourceInfo, SuiteReport, TestOutcome, Verdict,
};
pub use run_id::RunId;
pub use schema::REPORT_SCHEMA;
pub use section::Section;
pub use store::{ResultsStore, escape_file_name, safe_file_name};
