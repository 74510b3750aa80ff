use std::fmt;
use std::hash::{BuildHasher, Hasher};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// The identity of one run: `YYYYMMDD-HHMMSS-xxxx`, sortable by start time.
///
/// It names the run's directory in the results store, its dashboard page and
/// the tags on every cloud resource it creates, so it is restricted to
/// characters that are safe in all three.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// A new id for a run starting at `now`, with a random suffix so that two
    /// runs started in the same second differ.
    pub fn generate(now: DateTime<Utc>) -> Self {
        // std's RandomState is seeded from the OS per process; mixing in the
        // time and pid makes two ids in one process differ as well.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(now.timestamp_nanos_opt().unwrap_or_default() as u128);
        hasher.write_u32(std::process::id());
        let suffix = hasher.finish() as u16;
        RunId(format!("{}-{suffix:04x}", now.format("%Y%m%d-%H%M%S")))
    }

    /// Accepts any id of 1 to 64 characters from `[A-Za-z0-9._-]` that does
    /// not start with a dot or a dash (ids made elsewhere, e.g. by `import`).
    pub fn parse(value: &str) -> Result<Self, ModelError> {
        let reject = |reason| ModelError::InvalidRunId {
            value: value.to_owned(),
            reason,
        };
        if value.is_empty() || value.len() > 64 {
            return Err(reject("must be 1 to 64 characters long"));
        }
        if value.starts_with(['.', '-']) {
            return Err(reject("must not start with `.` or `-`"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(reject("may hold only letters, digits, `.`, `_` and `-`"));
        }
        Ok(RunId(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RunId {
    type Error = ModelError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        RunId::parse(&value)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> Self {
        id.0
    }
}

impl std::str::FromStr for RunId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let early = RunId::generate("2026-11-24T10:00:00Z".parse().unwrap());
        let late = RunId::generate("2026-11-24T10:00:01Z".parse().unwrap());
        assert!(early < late);
        assert_eq!(RunId::parse(early.as_str()).unwrap(), early);
        assert!(early.as_str().starts_with("20261124-100000-"));
    }

    #[test]
    fn hostile_ids_are_rejected() {
        for bad in [
            "",
            "../etc",
            "-rf",
            ".hidden",
            "a/b",
            "a b",
            "<script>",
            &"x".repeat(65),
        ] {
            assert!(RunId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<RunId>(r#""../x""#).is_err());
        assert!(serde_json::from_str::<RunId>(r#""20261124-1""#).is_ok());
    }
}
