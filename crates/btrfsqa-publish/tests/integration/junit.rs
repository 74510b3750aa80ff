//! The JUnit export, read back by a real XML parser.

use btrfsqa_model::{Counts, Verdict};
use btrfsqa_publish::export;

#[test]
fn junit_parses_and_counts_match() {
    let mut report = crate::report(
        "20261124-101500-ab12",
        "2026-11-24T10:15:00Z",
        &[
            ("pass-a", Verdict::Pass),
            ("pass-b", Verdict::Pass),
            ("fail <&> \"quoted\"", Verdict::Fail),
            ("skip", Verdict::Skip),
            ("error", Verdict::Error),
            ("hung", Verdict::Hung),
            ("crashed", Verdict::Crashed),
            ("interrupted", Verdict::Interrupted),
        ],
    );
    // Control characters from a coloured log line, and markup, in a message.
    report.suites[0].tests[2].message =
        Some("\u{1b}[31mFAIL\u{1b}[0m ]]> <script>\n\tline 2\u{0}".into());
    report.suites[0].error = Some("stopped </system-err> early".into());
    let xml = export::junit(&report);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));

    let counts = Counts::of(report.outcomes());
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let attr = |node: roxmltree::Node, name| node.attribute(name).unwrap().parse::<u32>().unwrap();
    assert_eq!(attr(root, "tests"), counts.total());
    assert_eq!(attr(root, "failures"), counts.fail);
    assert_eq!(
        attr(root, "errors"),
        counts.error + counts.hung + counts.crashed + counts.interrupted
    );
    assert_eq!(attr(root, "skipped"), counts.skip);

    let suite = root
        .children()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("name"), Some("raid56-scrub"));
    assert_eq!(attr(suite, "tests"), 8);
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 8);
    assert!(
        cases
            .iter()
            .all(|c| c.attribute("classname") == Some("raid56-scrub"))
    );
    assert_eq!(cases[2].attribute("name"), Some("fail <&> \"quoted\""));
    let failure = cases[2]
        .children()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert_eq!(
        failure.text(),
        Some("\u{FFFD}[31mFAIL\u{FFFD}[0m ]]> <script>\n\tline 2\u{FFFD}")
    );
    assert_eq!(
        cases
            .iter()
            .filter(|c| c.children().any(|n| n.has_tag_name("skipped")))
            .count(),
        1
    );
    let error_types: Vec<_> = cases
        .iter()
        .filter_map(|c| c.children().find(|n| n.has_tag_name("error")))
        .map(|e| e.attribute("type").unwrap())
        .collect();
    assert_eq!(error_types, ["error", "hung", "crashed", "interrupted"]);
    let system_err = suite
        .children()
        .find(|n| n.has_tag_name("system-err"))
        .unwrap();
    assert_eq!(system_err.text(), Some("stopped </system-err> early"));
}

#[test]
fn json_export_is_the_report() {
    let report = crate::report("r1", "2026-11-24T10:15:00Z", &[("a", Verdict::Pass)]);
    let back: btrfsqa_model::RunReport = serde_json::from_str(&export::json(&report)).unwrap();
    assert_eq!(back, report);
}
