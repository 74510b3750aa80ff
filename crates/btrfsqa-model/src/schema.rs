//! The published JSON Schema of `report.json`.
//!
//! The schema lives in `schema/report.schema.json` beside this crate, so
//! other tools can take it from the repository; the dashboard publishes a
//! copy beside the reports. It is written by hand and checked here against
//! the types: a fully populated report validates, and for every field the
//! schema's verdict on a report without it, or with a wrong value in it,
//! is the verdict of the types' own deserializer.

/// The JSON Schema (draft 2020-12) of `report.json` at [`SCHEMA_VERSION`](crate::SCHEMA_VERSION).
pub const REPORT_SCHEMA: &str = include_str!("../schema/report.schema.json");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{
        Class, ClassCounts, ComparisonSummary, DroppableKnownFailure, FlakySource, TestComparison,
    };
    use crate::{
        Artifact, ArtifactKind, Attempt, KernelInfo, MachineInfo, Provenance, RunId, RunReport,
        RunStatus, SCHEMA_VERSION, SourceInfo, SuiteReport, TestOutcome, Verdict,
    };
    use serde_json::Value;

    struct Validator {
        schemas: boon::Schemas,
        index: boon::SchemaIndex,
    }

    impl Validator {
        fn new() -> Self {
            let mut schemas = boon::Schemas::new();
            let mut compiler = boon::Compiler::new();
            // Dates are checked as the types check them.
            compiler.enable_format_assertions();
            let schema: Value = serde_json::from_str(REPORT_SCHEMA).unwrap();
            compiler.add_resource("report.schema.json", schema).unwrap();
            let index = compiler
                .compile("report.schema.json", &mut schemas)
                .unwrap_or_else(|e| panic!("{e:#}"));
            Validator { schemas, index }
        }

        fn check(&self, instance: &Value) -> Result<(), String> {
            self.schemas
                .validate(instance, self.index)
                .map_err(|e| format!("{e:#}"))
        }
    }

    fn source(name: &str) -> SourceInfo {
        SourceInfo {
            name: name.into(),
            url: format!("https://git.example.org/{name}.git"),
            git_ref: Some("for-next".into()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        }
    }

    fn comparison(suite: &str, name: &str, class: Class) -> TestComparison {
        TestComparison {
            suite: suite.into(),
            profile: Some("default".into()),
            name: name.into(),
            class,
            verdict: Some(Verdict::Fail),
            baseline_verdict: Some(Verdict::Pass),
            attempts: vec![Verdict::Fail, Verdict::Pass],
            message: Some("output mismatch".into()),
        }
    }

    /// A report with every optional field set, every list filled and every
    /// enum value used somewhere.
    fn populated() -> RunReport {
        let started = "2026-11-24T10:15:00Z".parse().unwrap();
        let kernel = KernelInfo {
            release: Some("6.18.0-rc3".into()),
            version: Some("#1 SMP PREEMPT_DYNAMIC".into()),
            source: Some(source("kernel")),
        };
        let provenance = Provenance {
            btrfsqa_version: "0.1.0".into(),
            config_hash: "ab".repeat(32),
            provider: "aws".into(),
            controller: Some("ci-1".into()),
            machines: vec![MachineInfo {
                name: "m0".into(),
                provider: "aws".into(),
                address: "admin@192.0.2.1:22".into(),
                instance_type: Some("m6i.large".into()),
                test_dev: Some("/dev/nvme1n1".into()),
                scratch_devs: vec!["/dev/nvme2n1".into()],
                kernel: kernel.clone(),
            }],
            kernel,
            sources: vec![source("fstests")],
        };
        let mut report = RunReport::start(
            RunId::parse("20261124-101500-ab12").unwrap(),
            started,
            provenance,
        );
        let artifacts: Vec<Artifact> = [
            ArtifactKind::Stdout,
            ArtifactKind::Stderr,
            ArtifactKind::Log,
            ArtifactKind::Full,
            ArtifactKind::OutBad,
            ArtifactKind::Dmesg,
            ArtifactKind::Console,
            ArtifactKind::BuildLog,
            ArtifactKind::Cast,
            ArtifactKind::Other,
        ]
        .into_iter()
        .map(|kind| Artifact {
            kind,
            path: format!("xfstests/{kind:?}"),
            truncated_bytes: Some(1024),
            start_secs: Some(12.5),
        })
        .collect();
        let mut suite = SuiteReport::new("xfstests");
        for verdict in Verdict::ALL {
            let mut test = TestOutcome::new("xfstests", format!("btrfs/{verdict}"), verdict)
                .with_message("why");
            test.profile = Some("compress=zstd".into());
            test.duration_secs = Some(1.5);
            test.artifacts = artifacts.clone();
            test.machine = Some("m0".into());
            test.started_at = Some(started);
            test.reruns = vec![Attempt {
                verdict: Verdict::Pass,
                duration_secs: Some(2.0),
                message: Some("passed".into()),
                artifacts: artifacts.clone(),
                started_at: Some(started),
            }];
            test.kernel_log = vec!["BTRFS critical (device loop0): corrupt leaf".into()];
            suite.tests.push(test);
        }
        suite.duration_secs = Some(600.0);
        suite.error = Some("lost the machine".into());
        suite.artifacts = artifacts;
        suite.source = Some(source("fstests"));
        report.suites.push(suite);
        report.error = Some("stopped".into());
        report.labels.insert("profile".into(), "nightly".into());
        report.cost_usd = Some(1.25);
        report.import = Some(crate::ImportOrigin {
            source: "/srv/results/2026-11-24".into(),
            kind: "xfstests".into(),
            host: Some("qa1".into()),
            user: Some("qa".into()),
            imported_at: "2026-11-24T12:00:00Z".parse().unwrap(),
        });
        let notable = vec![
            comparison("xfstests", "fixed", Class::Fixed),
            comparison("xfstests", "still", Class::StillFailing),
            comparison(
                "xfstests",
                "flaky",
                Class::Flaky {
                    passes: 1,
                    runs: 2,
                    source: FlakySource::Reruns,
                },
            ),
            comparison(
                "xfstests",
                "flaky-history",
                Class::Flaky {
                    passes: 3,
                    runs: 9,
                    source: FlakySource::History,
                },
            ),
            comparison("xfstests", "pass", Class::Pass),
            comparison("xfstests", "new", Class::New),
            comparison("xfstests", "gone", Class::Gone),
            comparison(
                "xfstests",
                "expected",
                Class::Expected {
                    reason: "known".into(),
                },
            ),
            comparison("xfstests", "inconclusive", Class::Inconclusive),
        ];
        report.comparison = Some(ComparisonSummary {
            run_id: report.run_id.clone(),
            baseline: Some(RunId::parse("20261123-101500-ab12").unwrap()),
            counts: ClassCounts {
                new_failure: 1,
                ..ClassCounts::default()
            },
            regressions: vec![comparison("xfstests", "broke", Class::NewFailure)],
            notable,
            droppable: vec![DroppableKnownFailure {
                index: 0,
                test: "btrfs/012".into(),
                reason: "known".into(),
                passes_in_a_row: 5,
                dropped: false,
            }],
            slower: vec![crate::compare::Slowdown {
                suite: "xfstests".into(),
                profile: Some("single".into()),
                name: "btrfs/011".into(),
                secs: 90.5,
                median_secs: 30.0,
                threshold_secs: 42.0,
                samples: 7,
            }],
            dashboard_url: Some("https://qa.example.org/runs/20261124-101500-ab12/".into()),
        });
        report.finish(
            RunStatus::Completed,
            "2026-11-24T11:15:00Z".parse().unwrap(),
        );
        report
    }

    fn accepted_by_the_types(instance: &Value) -> bool {
        serde_json::from_value::<RunReport>(instance.clone()).is_ok()
    }

    /// Every place in `value` (JSON pointer) that holds an object key, a
    /// string or a number.
    fn places(value: &Value, at: String, out: &mut Vec<(String, Value)>) {
        out.push((at.clone(), value.clone()));
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    places(child, format!("{at}/{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    places(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    fn without(instance: &Value, pointer: &str) -> Value {
        let mut copy = instance.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        if let Some(Value::Object(map)) = copy.pointer_mut(parent) {
            map.remove(key);
        }
        copy
    }

    fn with(instance: &Value, pointer: &str, value: Value) -> Value {
        let mut copy = instance.clone();
        *copy.pointer_mut(pointer).unwrap() = value;
        copy
    }

    #[test]
    fn a_fully_populated_report_validates() {
        let validator = Validator::new();
        let report = populated();
        let json = serde_json::to_value(&report).unwrap();
        validator.check(&json).unwrap();
        assert_eq!(json["schema_version"], SCHEMA_VERSION);
        for status in [
            RunStatus::Running,
            RunStatus::Completed,
            RunStatus::Errored,
            RunStatus::Interrupted,
        ] {
            let mut report = report.clone();
            report.status = status;
            validator
                .check(&serde_json::to_value(&report).unwrap())
                .unwrap();
        }
        // The smallest report the runner writes, too.
        let bare = RunReport::start(
            RunId::parse("r").unwrap(),
            "2026-11-24T10:15:00Z".parse().unwrap(),
            Provenance::default(),
        );
        validator
            .check(&serde_json::to_value(&bare).unwrap())
            .unwrap();
    }

    #[test]
    fn a_report_missing_a_required_field_fails() {
        let validator = Validator::new();
        let json = serde_json::to_value(populated()).unwrap();
        for pointer in [
            "/run_id",
            "/suites/0/tests/0/verdict",
            "/comparison/notable/2/passes",
        ] {
            let broken = without(&json, pointer);
            assert!(validator.check(&broken).is_err(), "{pointer}");
            assert!(!accepted_by_the_types(&broken), "{pointer}");
        }
    }

    /// The schema says of each field what the types say: for every key of
    /// the populated report, a report without it, and for every string and
    /// number, a report with a wrong one, is valid for the schema exactly
    /// when `RunReport` deserializes it.
    #[test]
    fn the_schema_agrees_with_the_types_on_every_field() {
        let validator = Validator::new();
        let json = serde_json::to_value(populated()).unwrap();
        let mut all = Vec::new();
        places(&json, String::new(), &mut all);
        let mut disagreements = Vec::new();
        let mut compare = |what: String, instance: Value| {
            let schema = validator.check(&instance);
            let types = accepted_by_the_types(&instance);
            if schema.is_ok() != types {
                disagreements.push(format!(
                    "{what}: schema {}, types {}",
                    schema.err().unwrap_or_else(|| "accepts".into()),
                    if types { "accept" } else { "reject" }
                ));
            }
        };
        for (pointer, value) in &all {
            let parent_is_object = pointer
                .rsplit_once('/')
                .and_then(|(parent, _)| json.pointer(parent))
                .is_some_and(Value::is_object);
            if parent_is_object {
                compare(format!("without {pointer}"), without(&json, pointer));
            }
            let wrong: &[Value] = match value {
                Value::String(_) => &[Value::from("not an id, a date or a name: spaces")],
                Value::Number(_) => &[Value::from(-1), Value::from(0.5), Value::from("7")],
                Value::Bool(_) => &[Value::from(1)],
                _ => &[],
            };
            for wrong in wrong {
                compare(
                    format!("{pointer} = {wrong}"),
                    with(&json, pointer, wrong.clone()),
                );
            }
        }
        assert!(
            disagreements.is_empty(),
            "{} disagreements:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
        assert!(all.len() > 300, "the sweep covered {} places", all.len());
    }

    #[test]
    fn numbers_that_are_not_finite_are_written_as_null_and_validate() {
        let mut report = populated();
        report.cost_usd = Some(f64::NAN);
        report.suites[0].tests[0].duration_secs = Some(f64::INFINITY);
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["cost_usd"].is_null());
        Validator::new().check(&json).unwrap();
    }
}
