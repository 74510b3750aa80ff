//! The tags that mark a resource as btrfsqa's, and what they say. Pure.
//!
//! Every resource the provider makes carries [`RUN`], [`MACHINE`],
//! [`OWNER`], [`CREATED`], [`EXPIRES`] and `Name`, except what the machines
//! of a fleet share (its key pair, security group, launch template and
//! fleets), which carries no [`MACHINE`]: it is the run's, and goes with the
//! run's last machine. Nothing without [`RUN`] is ever modified or deleted.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

/// The run id: the mark of ownership.
pub const RUN: &str = "btrfsqa:run-id";
/// The machine's name within the run.
pub const MACHINE: &str = "btrfsqa:machine";
/// Who started the run.
pub const OWNER: &str = "btrfsqa:owner";
/// When the resource was made (RFC 3339, UTC).
pub const CREATED: &str = "btrfsqa:created";
/// After this time (RFC 3339, UTC) `reap` removes the resource whatever else.
pub const EXPIRES: &str = "btrfsqa:expires";

/// On what a fleet's machines share (its launch template and security
/// group): `btrfsqa:fleet:<fleet id>` names one of the run's fleets (the
/// value is its market). EC2 lists an `instant` fleet only when asked by
/// id, so this is how `reap` finds them.
pub const FLEET_PREFIX: &str = "btrfsqa:fleet:";
/// EC2's own tag on an instance an EC2 Fleet launched.
pub const EC2_FLEET_ID: &str = "aws:ec2:fleet-id";

/// What goes on one machine's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunTags {
    pub run: String,
    pub machine: String,
    pub owner: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl RunTags {
    /// The tags, with `Name` set to `name`.
    pub fn with_name(&self, name: &str) -> Vec<(String, String)> {
        let mut tags = self.of_run(name);
        tags.insert(2, (MACHINE.to_owned(), self.machine.clone()));
        tags
    }

    /// The tags of what the run's machines share: no [`MACHINE`], `Name`
    /// set to `name`.
    pub fn of_run(&self, name: &str) -> Vec<(String, String)> {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        vec![
            ("Name".to_owned(), name.to_owned()),
            (RUN.to_owned(), self.run.clone()),
            (OWNER.to_owned(), self.owner.clone()),
            (CREATED.to_owned(), time(&self.created)),
            (EXPIRES.to_owned(), time(&self.expires)),
        ]
    }
}

/// The run a resource belongs to, if it is btrfsqa's.
pub(crate) fn run_of(tags: &BTreeMap<String, String>) -> Option<&str> {
    tags.get(RUN)
        .map(String::as_str)
        .filter(|run| !run.is_empty())
}

/// The resource is btrfsqa's, of run `run` and, when given, of machine
/// `machine`. Checked again before every deletion, whatever filter found it.
pub(crate) fn belongs_to(
    tags: &BTreeMap<String, String>,
    run: &str,
    machine: Option<&str>,
) -> bool {
    run_of(tags) == Some(run)
        && machine.is_none_or(|machine| tags.get(MACHINE).map(String::as_str) == Some(machine))
}

fn time_tag(tags: &BTreeMap<String, String>, key: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(tags.get(key)?)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// The resource is shared by the machines of run `run` (no machine tag).
pub(crate) fn shared_by(tags: &BTreeMap<String, String>, run: &str) -> bool {
    run_of(tags) == Some(run) && !tags.contains_key(MACHINE)
}

/// The fleets the tags name ([`FLEET_PREFIX`], [`EC2_FLEET_ID`]).
pub(crate) fn fleet_ids(tags: &BTreeMap<String, String>) -> impl Iterator<Item = &str> {
    tags.iter().filter_map(|(key, value)| {
        if key == EC2_FLEET_ID {
            Some(value.as_str())
        } else {
            key.strip_prefix(FLEET_PREFIX)
        }
        .filter(|id| !id.is_empty())
    })
}

/// When the resource expires, if it says.
pub(crate) fn expires_at(tags: &BTreeMap<String, String>) -> Option<DateTime<Utc>> {
    time_tag(tags, EXPIRES)
}

/// When the resource was made, if it says.
pub(crate) fn created_at(tags: &BTreeMap<String, String>) -> Option<DateTime<Utc>> {
    time_tag(tags, CREATED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_resource_gets_name_run_owner_and_expiry() {
        let created = DateTime::parse_from_rfc3339("2025-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let run_tags = RunTags {
            run: "20250301-100000-ab12".to_owned(),
            machine: "aws-0".to_owned(),
            owner: "alice".to_owned(),
            created,
            expires: created + chrono::Duration::hours(12),
        };
        let list: BTreeMap<_, _> = run_tags.with_name("btrfsqa-x").into_iter().collect();
        assert_eq!(list["Name"], "btrfsqa-x");
        assert_eq!(list[RUN], "20250301-100000-ab12");
        assert_eq!(list[OWNER], "alice");
        assert_eq!(list[EXPIRES], "2025-03-01T22:00:00Z");
        assert_eq!(
            expires_at(&list),
            Some(created + chrono::Duration::hours(12))
        );
        assert_eq!(created_at(&list), Some(created));
        assert!(belongs_to(&list, "20250301-100000-ab12", Some("aws-0")));
        assert!(!belongs_to(&list, "20250301-100000-ab12", Some("aws-1")));
        assert!(!belongs_to(&list, "other", None));
        assert!(!shared_by(&list, "20250301-100000-ab12"));
        let shared: BTreeMap<_, _> = run_tags.of_run("btrfsqa-r").into_iter().collect();
        assert_eq!(shared.len(), 5);
        assert!(!shared.contains_key(MACHINE));
        assert!(shared_by(&shared, "20250301-100000-ab12"));
        assert!(belongs_to(&shared, "20250301-100000-ab12", None));
        assert!(!belongs_to(&shared, "20250301-100000-ab12", Some("aws-0")));
    }

    #[test]
    fn fleets_are_named_by_our_tag_and_by_ec2s() {
        let named = tags(&[
            (RUN, "r"),
            ("btrfsqa:fleet:fleet-1", "spot"),
            ("btrfsqa:fleet:", "spot"),
            (EC2_FLEET_ID, "fleet-2"),
            ("Name", "fleet-3"),
        ]);
        assert_eq!(
            fleet_ids(&named).collect::<Vec<_>>(),
            ["fleet-2", "fleet-1"]
        );
    }

    #[test]
    fn untagged_resources_are_not_ours() {
        assert_eq!(run_of(&tags(&[("Name", "btrfsqa-looks-like-ours")])), None);
        assert_eq!(run_of(&tags(&[(RUN, "")])), None);
        assert!(!belongs_to(&tags(&[]), "", None));
        assert_eq!(expires_at(&tags(&[(EXPIRES, "tomorrow")])), None);
    }
}
