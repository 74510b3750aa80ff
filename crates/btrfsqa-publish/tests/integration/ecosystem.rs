//! The exports, read by the ecosystem's own tools: KernelCI's KCIDB schema
//! validator (PyPI `kcidb-io`), a JUnit reader (PyPI `junitparser`) and a
//! JSON Schema validator (PyPI `jsonschema`) for `report.json` against the
//! schema the site publishes.
//!
//! The tools live in a virtualenv that `scripts/py-tools.sh --install-only`
//! makes (`/var/tmp/btrfsqa-pytools`, or `BTRFSQA_PYTOOLS_VENV`); a test
//! whose tool is missing says so and skips.
//!
//! The real run (`fixtures/real-run/report.json`) is what `btrfsqa run`
//! wrote on the local provider with the raid56-scrub suite and five fstests
//! tests (btrfs/012 failed there).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use btrfsqa_model::{
    Artifact, ArtifactKind, ResultsStore, RunId, RunReport, SourceInfo, TestOutcome, Verdict,
};
use btrfsqa_publish::{Dashboard, DashboardSettings, export};

const SITE_URL: &str = "https://btrfsqa.example.org/site/";

/// The virtualenv's python, when it has `module`.
fn python_with(module: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("BTRFSQA_PYTOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/btrfsqa-pytools"));
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(python)
    } else {
        eprintln!(
            "skipping: no `{module}` in {} (run scripts/py-tools.sh --install-only)",
            venv.display()
        );
        None
    }
}

/// Runs `script` with `args`; its standard output, or a panic with its error.
fn run_python(python: &Path, script: &str, args: &[&Path]) -> String {
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The report `btrfsqa run` wrote for a real run (see the module doc).
pub fn real_report() -> RunReport {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/real-run/report.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// A report with everything KCIDB's schema is strict about: NUL bytes,
/// markup and spaces in names, a `git://` URL, an upper-case and a SHA-256
/// commit, artifacts whose names need escaping in a URL, a long message.
fn awkward_report() -> RunReport {
    let mut report = crate::report(
        "20261124-101500-ab12",
        "2026-11-24T10:15:00Z",
        &[("pass", Verdict::Pass)],
    );
    let suite = &mut report.suites[0];
    let mut nul = TestOutcome::new("raid56-scrub", "nul\0name <b> ü", Verdict::Fail)
        .with_message(format!("bad\0byte {}", "x".repeat(20_000)));
    nul.profile = Some("compress=zstd\0".into());
    nul.machine = Some("local-0\0".into());
    nul.artifacts = vec![
        Artifact::new(ArtifactKind::Full, "xfstests/btrfs/a b#1%.full"),
        Artifact::new(ArtifactKind::Other, "xfstests/btrfs/page.html"),
        Artifact::new(ArtifactKind::Log, "../outside.log"),
    ];
    suite.tests.push(nul);
    for verdict in Verdict::ALL {
        suite.tests.push(TestOutcome::new(
            "raid56-scrub",
            format!("generic/{verdict}"),
            verdict,
        ));
    }
    suite
        .tests
        .push(TestOutcome::new("raid56-scrub", "", Verdict::Pass));
    suite
        .tests
        .push(TestOutcome::new("raid56-scrub", "...", Verdict::Pass));
    report.provenance.kernel.release = Some("6.18.0\0-rc1".into());
    report.provenance.kernel.source = Some(SourceInfo {
        name: "kernel".into(),
        url: "git://git.kernel.org/pub/scm/linux/kernel/git/kdave/linux.git".into(),
        git_ref: Some("for-next\0".into()),
        commit: Some("0123456789ABCDEF0123456789ABCDEF01234567".into()),
    });
    report
}

/// Renders `report` into a site with a public URL; the site's directory.
fn site_of(report: &RunReport, dir: &Path) -> PathBuf {
    let store = crate::store_with(&dir.join("results"), std::slice::from_ref(report));
    let site = dir.join("site");
    let settings = DashboardSettings {
        site_url: Some(SITE_URL.into()),
        ..DashboardSettings::default()
    };
    Dashboard::with_settings(settings)
        .render(&store, &site)
        .unwrap();
    site
}

/// A file of the site, gunzipped when it is published compressed.
fn site_file(site: &Path, run: &RunId, name: &str) -> PathBuf {
    let dir = site.join("runs").join(run.as_str());
    let plain = dir.join(name);
    if plain.is_file() {
        return plain;
    }
    let gz = dir.join(format!("{name}.gz"));
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    let out = dir.join(format!("{name}.unpacked"));
    std::fs::write(&out, text).unwrap();
    out
}

/// kcidb-io's validator of exactly the schema version the file claims,
/// which must be a v5 one.
const KCIDB_VALIDATE: &str = r#"
import json, sys
import kcidb_io
data = json.load(open(sys.argv[1]))
major = data["version"]["major"]
assert major == 5, f"KCIDB v{major}, not v5"
schema = kcidb_io.schema.LATEST.get_exactly_compatible(data)
assert schema is not None, f"no kcidb-io schema for version {data['version']}"
schema.validate_exactly(data)
print(schema, len(data["tests"]))
"#;

#[test]
fn kcidb_of_a_real_run_passes_kernelcis_validator() {
    let Some(python) = python_with("kcidb_io") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let report = real_report();
    let site = site_of(&report, tmp.path());
    let kcidb = site_file(&site, &report.run_id, "kcidb.json");
    let out = run_python(&python, KCIDB_VALIDATE, &[&kcidb]);
    assert!(
        out.starts_with("v5.")
            && out
                .trim_end()
                .ends_with(&report.outcomes().count().to_string()),
        "{out}"
    );
}

#[test]
fn kcidb_of_awkward_names_and_sources_passes_kernelcis_validator() {
    let Some(python) = python_with("kcidb_io") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let report = awkward_report();
    for (name, files_url) in [
        ("with-urls.json", Some(format!("{SITE_URL}runs/r/files"))),
        ("without-urls.json", None),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, export::kcidb(&report, files_url.as_deref())).unwrap();
        run_python(&python, KCIDB_VALIDATE, &[&path]);
    }
}

/// junitparser's reading of a JUnit file: per test case, its class name,
/// name, and the kind and message of its result (`pass` when none).
const JUNIT_READ: &str = r#"
import json, sys
from junitparser import JUnitXml, TestSuite
xml = JUnitXml.fromfile(sys.argv[1])
suites = [xml] if isinstance(xml, TestSuite) else list(xml)
out = {"tests": xml.tests, "failures": xml.failures, "errors": xml.errors,
       "skipped": xml.skipped, "cases": []}
for suite in suites:
    for case in suite:
        results = [(r._tag, r.message, r.type) for r in case.result]
        kind, message, type_ = results[0] if results else ("pass", None, None)
        out["cases"].append({"suite": suite.name, "classname": case.classname,
                             "name": case.name, "kind": kind, "type": type_,
                             "message": message, "time": case.time})
print(json.dumps(out))
"#;

#[test]
fn junit_of_a_real_run_reads_back_in_junitparser() {
    let Some(python) = python_with("junitparser") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (name, report) in [("real", real_report()), ("awkward", awkward_report())] {
        let site = site_of(&report, &tmp.path().join(name));
        let junit = site_file(&site, &report.run_id, "junit.xml");
        let read: serde_json::Value =
            serde_json::from_str(&run_python(&python, JUNIT_READ, &[&junit])).unwrap();
        let outcomes: Vec<&TestOutcome> = report.outcomes().collect();
        assert_eq!(read["tests"], outcomes.len(), "{name}: {read}");
        let cases = read["cases"].as_array().unwrap();
        assert_eq!(cases.len(), outcomes.len(), "{name}");
        for (case, test) in cases.iter().zip(&outcomes) {
            let expected_kind = match test.verdict {
                Verdict::Pass => "pass",
                Verdict::Skip => "skipped",
                Verdict::Fail => "failure",
                _ => "error",
            };
            assert_eq!(case["kind"], expected_kind, "{name}: {case}");
            assert_eq!(case["classname"], test.suite.as_str(), "{name}: {case}");
            let shown = test.name.replace('\0', "\u{FFFD}");
            let expected_name = match &test.profile {
                Some(profile) => format!("{shown} [{}]", profile.replace('\0', "\u{FFFD}")),
                None => shown,
            };
            assert_eq!(case["name"], expected_name.as_str(), "{name}: {case}");
            if !matches!(test.verdict, Verdict::Pass | Verdict::Skip) {
                assert_eq!(case["type"], test.verdict.as_str(), "{name}: {case}");
            }
            let time = case["time"].as_f64().unwrap();
            let expected_time = test.duration_secs.unwrap_or(0.0);
            assert!((time - expected_time).abs() < 0.001, "{name}: {case}");
        }
        let failures = outcomes
            .iter()
            .filter(|t| t.verdict == Verdict::Fail)
            .count();
        assert_eq!(read["failures"], failures, "{name}");
    }
}

/// Validates a report against the JSON Schema the site publishes.
const SCHEMA_VALIDATE: &str = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
report = json.load(open(sys.argv[2]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
cls(schema, format_checker=cls.FORMAT_CHECKER).validate(report)
print(schema["$id"])
"#;

#[test]
fn report_json_of_a_real_run_matches_the_published_schema() {
    let Some(python) = python_with("jsonschema") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let report = real_report();
    let site = site_of(&report, tmp.path());
    let schema = site.join("report.schema.json");
    assert!(schema.is_file(), "the site publishes the schema");
    let copy = site_file(&site, &report.run_id, "report.json");
    run_python(&python, SCHEMA_VALIDATE, &[&schema, &copy]);
    // The copy in the results store too, and the schema in the repository
    // is the one the site publishes.
    let store = ResultsStore::new(tmp.path().join("results"));
    run_python(
        &python,
        SCHEMA_VALIDATE,
        &[&schema, &store.report_path(&report.run_id)],
    );
    let in_repo =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../btrfsqa-model/schema/report.schema.json");
    assert_eq!(
        std::fs::read(&in_repo).unwrap(),
        std::fs::read(&schema).unwrap()
    );
}
