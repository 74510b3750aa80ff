//! Exports of a run for other tools: JUnit XML (CI systems, test-result
//! viewers) and JSON (the report itself).
//!
//! Pure functions from a [`RunReport`] to text; no I/O.
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

/// The run as pretty-printed JSON: exactly the `report.json` schema.
pub fn json(report: &RunReport) -> String {
    serde_json::to_string_pretty(report).expect("a report always serializes")
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
    fn json_is_the_report() {
        let report = report();
        let back: RunReport = serde_json::from_str(&json(&report)).unwrap();
        assert_eq!(back, report);
    }
}
