//! Exports of a run for other tools: JUnit XML (CI systems, test-result
//! viewers), KCIDB JSON (the kernel CI database) and JSON (the report itself).
//!
//! Pure functions from a [`RunReport`] to text; no I/O. URLs in the report
//! are exported without their credentials ([`RunReport::redact_credentials`]).
//!
//! ```
//! use btrfsqa_model::{Provenance, RunId, RunReport, SuiteReport, TestOutcome, Verdict};
//!
//! let started = "2026-11-24T10:15:00Z".parse().unwrap();
//! let mut report = RunReport::start(RunId::parse("r1").unwrap(), started, Provenance::default());
//! let mut suite = SuiteReport::new("raid56-scrub");
//! suite.tests.push(TestOutcome::new("raid56-scrub", "raid5-data", Verdict::Fail).with_message("csum mismatch"));
//! report.suites.push(suite);
//! let xml = btrfsqa_publish::export::junit(&report);
//! assert!(xml.contains(r#"<failure type="fail" message="csum mismatch">"#));
//! ```

use std::fmt::Write;

use btrfsqa_model::{RunReport, SuiteReport, TestOutcome, Verdict};

/// The run as JUnit XML: one `<testsuite>` per suite, one `<testcase>` per
/// test (`classname` = suite id, `name` = test name, with the profile in
/// brackets when there is one, `time` in seconds).
///
/// `fail` becomes `<failure type="fail">`; `skip` becomes `<skipped>`;
/// `error`, `hung`, `crashed` and `interrupted` become `<error type="...">`,
/// so a CI system counts them as errors rather than passes. The message is
/// both the `message` attribute and the element's text. A suite that stopped
/// early keeps its error in `<system-err>`.
pub fn junit(report: &RunReport) -> String {
    let report = &*report.without_credentials();
    let mut out = String::new();
    let summary = summarize(report.suites.iter());
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"btrfsqa run {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
        attr(report.run_id.as_str()),
        summary.tests,
        summary.failures,
        summary.errors,
        summary.skipped,
        seconds(report.duration_secs().unwrap_or(summary.time)),
    );
    let timestamp = report.started_at.format("%Y-%m-%dT%H:%M:%S");
    for suite in &report.suites {
        let counts = summarize(std::iter::once(suite));
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\" timestamp=\"{timestamp}\">",
            attr(&suite.id),
            counts.tests,
            counts.failures,
            counts.errors,
            counts.skipped,
            seconds(suite.duration_secs.unwrap_or(counts.time)),
        );
        for test in &suite.tests {
            write_testcase(&mut out, suite, test);
        }
        if let Some(error) = &suite.error {
            let _ = writeln!(out, "    <system-err>{}</system-err>", text(error));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The KCIDB I/O schema version [`kcidb`] writes: KernelCI's current v5.
pub const KCIDB_VERSION: (u32, u32) = (5, 3);

/// The KCIDB origin of everything btrfsqa submits.
pub const KCIDB_ORIGIN: &str = "btrfsqa";

/// The longest `log_excerpt` KCIDB takes, in characters.
const KCIDB_EXCERPT_CHARS: usize = 16384;

/// The run as KCIDB v5 JSON (the KCIDB I/O schema 5.3, as KernelCI's
/// `kcidb-io` validates it): one checkout (the kernel source, id
/// `btrfsqa:<run-id>`), one build (the kernel that ran,
/// `btrfsqa:<run-id>:build`) and one test per outcome
/// (`btrfsqa:<run-id>:<suite>:<test>[:<profile>]`, path
/// `btrfsqa.<suite>.<test>` with `/` turned into `.` and anything else the
/// schema does not allow into `_`).
///
/// Statuses: pass `PASS`, fail, hung and crashed `FAIL` (the kernel did not
/// survive the test), skip `SKIP`, error `ERROR`, interrupted `MISS` (the
/// harness stopped it); the btrfsqa verdict stays in `misc.verdict`. The
/// build is `PASS` once the kernel ran a test, and has no status before.
/// With `files_url` (the absolute URL of the run's `files/` directory on
/// the published site), artifacts become `output_files` (and the test's
/// main log its `log_url`), at the URLs the dashboard publishes them under.
///
/// What the schema refuses is left out or cleaned rather than written: NUL
/// characters, repository URLs other than `https://`, commit hashes other
/// than 40 hex digits (kept in `misc`), excerpts over 16,384 characters.
///
/// ```
/// use btrfsqa_model::{Provenance, RunId, RunReport, SuiteReport, TestOutcome, Verdict};
///
/// let started = "2026-11-24T10:15:00Z".parse().unwrap();
/// let mut report = RunReport::start(RunId::parse("r1").unwrap(), started, Provenance::default());
/// let mut suite = SuiteReport::new("xfstests");
/// suite.tests.push(TestOutcome::new("xfstests", "btrfs/011", Verdict::Fail));
/// report.suites.push(suite);
/// let json: serde_json::Value = serde_json::from_str(&btrfsqa_publish::export::kcidb(&report, None)).unwrap();
/// assert_eq!(json["version"]["major"], 5);
/// assert_eq!(json["tests"][0]["path"], "btrfsqa.xfstests.btrfs.011");
/// assert_eq!(json["tests"][0]["status"], "FAIL");
/// ```
pub fn kcidb(report: &RunReport, files_url: Option<&str>) -> String {
    use serde_json::{Map, Value, json};
    let report = &*report.without_credentials();
    let run = report.run_id.as_str();
    let checkout_id = format!("{KCIDB_ORIGIN}:{run}");
    let build_id = format!("{KCIDB_ORIGIN}:{run}:build");
    let time =
        |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let kernel = &report.provenance.kernel;
    let mut checkout = Map::new();
    checkout.insert("id".into(), json!(checkout_id));
    checkout.insert("origin".into(), json!(KCIDB_ORIGIN));
    checkout.insert("start_time".into(), json!(time(report.started_at)));
    checkout.insert("valid".into(), json!(true));
    let mut checkout_misc = Map::new();
    if let Some(source) = &kernel.source {
        let url = btrfsqa_model::redact_url(&source.url);
        if url.starts_with("https://") && is_uri(&url) {
            checkout.insert("git_repository_url".into(), json!(url));
        } else {
            checkout_misc.insert("git_repository_url".into(), json!(url));
        }
        if let Some(commit) = &source.commit {
            let lower = commit.to_ascii_lowercase();
            if lower.len() == 40 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
                checkout.insert("git_commit_hash".into(), json!(lower));
            } else {
                checkout_misc.insert("commit".into(), json!(no_nul(commit)));
            }
        }
        if let Some(branch) = &source.git_ref {
            checkout.insert("git_repository_branch".into(), json!(no_nul(branch)));
        }
    }
    if let Some(release) = &kernel.release {
        checkout.insert(
            "comment".into(),
            json!(format!("kernel {}", no_nul(release))),
        );
    }
    if report.status == btrfsqa_model::RunStatus::Completed
        && let Some(finished) = report.finished_at
    {
        checkout.insert("origin_tests_finish_time".into(), json!(time(finished)));
    }
    if !checkout_misc.is_empty() {
        checkout.insert("misc".into(), Value::Object(checkout_misc));
    }
    let mut build = Map::new();
    build.insert("id".into(), json!(build_id));
    build.insert("origin".into(), json!(KCIDB_ORIGIN));
    build.insert("checkout_id".into(), json!(checkout_id));
    build.insert("start_time".into(), json!(time(report.started_at)));
    // The kernel booted and ran tests: the build is good, whoever built it.
    // Before any test ran, nothing is known of it.
    if report.outcomes().next().is_some() {
        build.insert("status".into(), json!("PASS"));
    }
    let mut build_misc = Map::new();
    if let Some(release) = &kernel.release {
        build.insert(
            "comment".into(),
            json!(format!("kernel {}", no_nul(release))),
        );
        build_misc.insert("kernel_release".into(), json!(no_nul(release)));
    }
    build_misc.insert(
        "provider".into(),
        json!(no_nul(&report.provenance.provider)),
    );
    build.insert("misc".into(), Value::Object(build_misc));

    let mut tests = Vec::new();
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for suite in &report.suites {
        for test in &suite.tests {
            let mut id = format!("{KCIDB_ORIGIN}:{run}:{}:{}", suite.id, test.name);
            let mut comment = format!("{}: {}", suite.id, test.name);
            if let Some(profile) = &test.profile {
                id.push(':');
                id.push_str(profile);
                comment.push_str(&format!(" [{profile}]"));
            }
            let mut id = no_nul(&id);
            let n = seen.entry(id.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                id.push_str(&format!(":{n}"));
            }
            let mut entry = Map::new();
            entry.insert("id".into(), json!(id));
            entry.insert("origin".into(), json!(KCIDB_ORIGIN));
            entry.insert("build_id".into(), json!(build_id));
            entry.insert("path".into(), json!(kcidb_path(&suite.id, &test.name)));
            entry.insert("comment".into(), json!(no_nul(&comment)));
            entry.insert("status".into(), json!(kcidb_status(test.verdict)));
            if let Some(started) = test.started_at {
                entry.insert("start_time".into(), json!(time(started)));
            }
            if let Some(duration) = test.duration_secs.filter(|d| d.is_finite() && *d >= 0.0) {
                entry.insert("duration".into(), json!(duration));
            }
            if let Some(message) = &test.message {
                let excerpt: String = no_nul(message).chars().take(KCIDB_EXCERPT_CHARS).collect();
                entry.insert("log_excerpt".into(), json!(excerpt));
            }
            if let Some(base) = files_url {
                let base = base.trim_end_matches('/');
                let mut files = Vec::new();
                let mut log_url = None;
                for artifact in &test.artifacts {
                    let Ok(path) = crate::dashboard::artifact_url_path(&artifact.path) else {
                        continue;
                    };
                    let url = format!("{base}/{path}");
                    let name = artifact.path.rsplit('/').next().unwrap_or(&artifact.path);
                    if !is_uri(&url) || name.is_empty() {
                        continue;
                    }
                    if log_url.is_none() && is_log(artifact.kind) {
                        log_url = Some(url.clone());
                    }
                    files.push(json!({"name": no_nul(name), "url": url}));
                }
                if let Some(url) = log_url {
                    entry.insert("log_url".into(), json!(url));
                }
                if !files.is_empty() {
                    entry.insert("output_files".into(), Value::Array(files));
                }
            }
            if let Some(machine) = &test.machine {
                entry.insert("environment".into(), json!({"comment": no_nul(machine)}));
            }
            let mut misc = Map::new();
            misc.insert("verdict".into(), json!(test.verdict.as_str()));
            misc.insert("suite".into(), json!(no_nul(&suite.id)));
            misc.insert("test".into(), json!(no_nul(&test.name)));
            if let Some(profile) = &test.profile {
                misc.insert("profile".into(), json!(no_nul(profile)));
            }
            entry.insert("misc".into(), Value::Object(misc));
            tests.push(Value::Object(entry));
        }
    }
    let document = json!({
        "version": {"major": KCIDB_VERSION.0, "minor": KCIDB_VERSION.1},
        "checkouts": [Value::Object(checkout)],
        "builds": [Value::Object(build)],
        "tests": tests,
    });
    serde_json::to_string(&document).expect("a KCIDB document always serializes")
}

/// KCIDB's schema forbids NUL in every string outside `misc`; btrfsqa
/// leaves it out of `misc` too, for the databases behind it.
fn no_nul(text: &str) -> String {
    text.replace('\0', "")
}

/// Whether `url` is a URI as KCIDB's `uri` format (RFC 3986) takes it:
/// a scheme, then only the characters a URI may hold, `%` only as an escape.
fn is_uri(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let bytes = rest.as_bytes();
    let chars_ok = bytes.iter().enumerate().all(|(i, &b)| match b {
        b'%' => {
            bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        }
        b if b.is_ascii_alphanumeric() => true,
        b => b"-._~:/?#[]@!$&'()*+,;=".contains(&b),
    });
    scheme_ok && chars_ok
}

/// The artifact kinds that make a test's `log_url`, the first one found.
fn is_log(kind: btrfsqa_model::ArtifactKind) -> bool {
    use btrfsqa_model::ArtifactKind::*;
    matches!(kind, Full | Log | Stdout | Console | Dmesg)
}

/// `btrfsqa.<suite>.<test>`: dot-separated, only `[.a-zA-Z0-9_-]`.
fn kcidb_path(suite: &str, test: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .map(|c| match c {
                '/' => '.',
                c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
                _ => '_',
            })
            .collect::<String>()
            .split('.')
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut path = KCIDB_ORIGIN.to_owned();
    for part in [clean(suite), clean(test)] {
        if !part.is_empty() {
            path.push('.');
            path.push_str(&part);
        }
    }
    path
}

fn kcidb_status(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail | Verdict::Hung | Verdict::Crashed => "FAIL",
        Verdict::Skip => "SKIP",
        Verdict::Error => "ERROR",
        Verdict::Interrupted => "MISS",
    }
}

/// The run as pretty-printed JSON: exactly the `report.json` schema.
pub fn json(report: &RunReport) -> String {
    serde_json::to_string_pretty(&*report.without_credentials())
        .expect("a report always serializes")
}

fn write_testcase(out: &mut String, suite: &SuiteReport, test: &TestOutcome) {
    let name = match &test.profile {
        Some(profile) => format!("{} [{profile}]", test.name),
        None => test.name.clone(),
    };
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
        attr(&suite.id),
        attr(&name),
        seconds(test.duration_secs.unwrap_or(0.0)),
    );
    let message = test.message.as_deref().unwrap_or("");
    let element = match test.verdict {
        Verdict::Pass => None,
        Verdict::Skip => Some("skipped"),
        Verdict::Fail => Some("failure"),
        Verdict::Error | Verdict::Hung | Verdict::Crashed | Verdict::Interrupted => Some("error"),
    };
    match element {
        None => out.push_str("/>\n"),
        Some("skipped") => {
            let _ = writeln!(
                out,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                attr(message)
            );
        }
        Some(element) => {
            let _ = writeln!(
                out,
                ">\n      <{element} type=\"{}\" message=\"{}\">{}</{element}>\n    </testcase>",
                test.verdict,
                attr(first_line(message)),
                text(message),
            );
        }
    }
}

#[derive(Default)]
struct Summary {
    tests: u32,
    failures: u32,
    errors: u32,
    skipped: u32,
    time: f64,
}

fn summarize<'a>(suites: impl Iterator<Item = &'a SuiteReport>) -> Summary {
    let mut summary = Summary::default();
    for test in suites.flat_map(|suite| suite.tests.iter()) {
        summary.tests += 1;
        summary.time += test.duration_secs.unwrap_or(0.0);
        match test.verdict {
            Verdict::Pass => {}
            Verdict::Skip => summary.skipped += 1,
            Verdict::Fail => summary.failures += 1,
            Verdict::Error | Verdict::Hung | Verdict::Crashed | Verdict::Interrupted => {
                summary.errors += 1
            }
        }
    }
    summary
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("")
}

fn seconds(secs: f64) -> String {
    if secs.is_finite() && secs >= 0.0 {
        format!("{secs:.3}")
    } else {
        "0.000".to_owned()
    }
}

/// Escapes element text. Characters XML 1.0 forbids (most control
/// characters, e.g. the ESC of a coloured log line) would make the whole
/// document unparsable, so they are replaced by U+FFFD.
fn text(value: &str) -> String {
    escape(value, false)
}

/// Escapes an attribute value; line breaks and tabs become character
/// references so a parser does not normalize them to spaces.
fn attr(value: &str) -> String {
    escape(value, true)
}

fn escape(value: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\t' | '\n' => out.push(c),
            c if is_xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// The `Char` production of XML 1.0.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::{Provenance, RunId, RunStatus};

    fn report() -> RunReport {
        let started = "2026-11-24T10:15:00Z".parse().unwrap();
        let mut report = RunReport::start(
            RunId::parse("20261124-101500-ab12").unwrap(),
            started,
            Provenance::default(),
        );
        let mut suite = SuiteReport::new("xfstests");
        suite.tests.push(
            TestOutcome::new("xfstests", "btrfs/001", Verdict::Pass)
                .with_duration(std::time::Duration::from_millis(1500)),
        );
        suite.tests.push(
            TestOutcome::new("xfstests", "btrfs/002", Verdict::Fail)
                .with_message("output mismatch\n--- a\n+++ b"),
        );
        suite.tests.push(
            TestOutcome::new("xfstests", "btrfs/003", Verdict::Skip).with_message("no zoned"),
        );
        suite.tests.push(
            TestOutcome::new("xfstests", "btrfs/004", Verdict::Hung)
                .with_message("timed out after 600 s"),
        );
        suite.error = Some("lost the machine".into());
        report.suites.push(suite);
        report.finish(
            RunStatus::Completed,
            "2026-11-24T11:15:00Z".parse().unwrap(),
        );
        report
    }

    #[test]
    fn verdicts_map_to_junit_elements() {
        let xml = junit(&report());
        assert!(
            xml.contains(r#"<testcase classname="xfstests" name="btrfs/001" time="1.500"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure type="fail" message="output mismatch">output mismatch"#),
            "{xml}"
        );
        assert!(xml.contains(r#"<skipped message="no zoned"/>"#), "{xml}");
        assert!(
            xml.contains(r#"<error type="hung" message="timed out after 600 s">"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"tests="4" failures="1" errors="1" skipped="1" time="3600.000""#),
            "{xml}"
        );
        assert!(
            xml.contains("<system-err>lost the machine</system-err>"),
            "{xml}"
        );
    }

    #[test]
    fn escaping_keeps_the_document_well_formed() {
        assert_eq!(attr("a\"<b>&'\n"), "a&quot;&lt;b&gt;&amp;&apos;&#10;");
        assert_eq!(text("\u{1b}[31mred\u{0}"), "\u{FFFD}[31mred\u{FFFD}");
        assert_eq!(text("]]>"), "]]&gt;");
    }

    #[test]
    fn kcidb_follows_the_v5_schema_names() {
        let mut report = report();
        report.provenance.kernel.source = Some(btrfsqa_model::SourceInfo {
            name: "kernel".into(),
            url: "https://git.kernel.org/pub/scm/linux/kernel/git/kdave/linux.git".into(),
            git_ref: Some("for-next".into()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        });
        report.suites[0].tests[1].profile = Some("compress=zstd".into());
        report.suites[0].tests[1].artifacts = vec![btrfsqa_model::Artifact::new(
            btrfsqa_model::ArtifactKind::OutBad,
            "xfstests/btrfs/002.out.bad",
        )];
        let json: serde_json::Value =
            serde_json::from_str(&kcidb(&report, Some("https://qa.example/runs/r/files/")))
                .unwrap();
        assert_eq!(json["version"]["major"], 5);
        let checkout = &json["checkouts"][0];
        assert_eq!(checkout["id"], "btrfsqa:20261124-101500-ab12");
        assert_eq!(checkout["origin"], "btrfsqa");
        assert_eq!(
            checkout["git_commit_hash"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(checkout["git_repository_branch"], "for-next");
        let build = &json["builds"][0];
        assert_eq!(build["checkout_id"], checkout["id"]);
        assert_eq!(build["id"], "btrfsqa:20261124-101500-ab12:build");
        let tests = json["tests"].as_array().unwrap();
        let statuses: Vec<&str> = tests
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["PASS", "FAIL", "SKIP", "FAIL"]);
        assert_eq!(tests[1]["path"], "btrfsqa.xfstests.btrfs.002");
        assert_eq!(
            tests[1]["id"],
            "btrfsqa:20261124-101500-ab12:xfstests:btrfs/002:compress=zstd"
        );
        assert_eq!(tests[1]["build_id"], build["id"]);
        assert_eq!(tests[1]["misc"]["profile"], "compress=zstd");
        assert_eq!(
            tests[1]["output_files"][0]["url"],
            "https://qa.example/runs/r/files/xfstests/btrfs/002.out.bad"
        );
        assert_eq!(tests[3]["misc"]["verdict"], "hung");
        for test in tests {
            let path = test["path"].as_str().unwrap();
            assert!(
                path.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "{path}"
            );
            assert!(test["id"].as_str().unwrap().starts_with("btrfsqa:"));
        }
        assert_eq!(kcidb_path("s", "a/../b c"), "btrfsqa.s.a.b_c");
    }

    /// What KCIDB v5's schema refuses is cleaned or moved to `misc`; the
    /// ecosystem test runs KernelCI's validator on the same kind of report.
    #[test]
    fn kcidb_cleans_what_v5_refuses() {
        let mut report = report();
        report.provenance.kernel.source = Some(btrfsqa_model::SourceInfo {
            name: "kernel".into(),
            url: "git://git.kernel.org/linux.git".into(),
            git_ref: Some("for-\0next".into()),
            commit: Some("ABCDEF".repeat(10) + "ABCD"),
        });
        let test = &mut report.suites[0].tests[1];
        test.name = "btrfs/\u{0}002".into();
        test.artifacts = vec![
            btrfsqa_model::Artifact::new(btrfsqa_model::ArtifactKind::Full, "x/a b#%.full"),
            btrfsqa_model::Artifact::new(btrfsqa_model::ArtifactKind::Other, "x/page.html"),
            btrfsqa_model::Artifact::new(btrfsqa_model::ArtifactKind::Log, "../escape.log"),
        ];
        let text = kcidb(&report, Some("https://qa.example/runs/r/files/"));
        assert!(!text.contains("\\u0000"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let checkout = &json["checkouts"][0];
        assert_eq!(checkout["git_repository_url"], serde_json::Value::Null);
        assert_eq!(
            checkout["misc"]["git_repository_url"],
            "git://git.kernel.org/linux.git"
        );
        assert_eq!(checkout["git_commit_hash"], serde_json::Value::Null);
        assert_eq!(checkout["misc"]["commit"], "ABCDEF".repeat(10) + "ABCD");
        assert_eq!(checkout["git_repository_branch"], "for-next");
        assert_eq!(json["builds"][0]["status"], "PASS");
        assert_eq!(json["builds"][0]["valid"], serde_json::Value::Null);
        let test = &json["tests"][1];
        assert_eq!(test["path"], "btrfsqa.xfstests.btrfs._002");
        assert_eq!(
            test["output_files"],
            serde_json::json!([
                {"name": "a b#%.full", "url": "https://qa.example/runs/r/files/x/a%20b%23%25.full"},
                {"name": "page.html", "url": "https://qa.example/runs/r/files/x/page.html.txt"},
            ])
        );
        assert_eq!(
            test["log_url"],
            "https://qa.example/runs/r/files/x/a%20b%23%25.full"
        );
        let mut upper = report.clone();
        upper.provenance.kernel.source.as_mut().unwrap().commit =
            Some("0123456789ABCDEF0123456789ABCDEF01234567".into());
        let json: serde_json::Value = serde_json::from_str(&kcidb(&upper, None)).unwrap();
        assert_eq!(
            json["checkouts"][0]["git_commit_hash"],
            "0123456789abcdef0123456789abcdef01234567"
        );
    }

    #[test]
    fn exports_hold_no_credentials_from_urls() {
        let mut report = report();
        let url = "https://kdave:tok-1234567@git.kernel.org/linux.git";
        report.provenance.kernel.source = Some(btrfsqa_model::SourceInfo {
            name: "kernel".into(),
            url: url.into(),
            git_ref: Some("for-next".into()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        });
        report.suites[0].error = Some(format!("cannot fetch `{url}`"));
        report.suites[0].tests[1].message = Some(format!("clone of {url} failed"));
        for (name, text) in [
            ("junit", junit(&report)),
            ("kcidb", kcidb(&report, None)),
            ("json", json(&report)),
        ] {
            assert!(!text.contains("tok-1234567"), "{name}: {text}");
            assert!(!text.contains("kdave:"), "{name}: {text}");
        }
        let kcidb: serde_json::Value = serde_json::from_str(&kcidb(&report, None)).unwrap();
        assert_eq!(
            kcidb["checkouts"][0]["git_repository_url"],
            "https://git.kernel.org/linux.git"
        );
    }

    #[test]
    fn json_is_the_report() {
        let report = report();
        let back: RunReport = serde_json::from_str(&json(&report)).unwrap();
        assert_eq!(back, report);
    }
}
