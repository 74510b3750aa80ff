//! The published site in a real browser: headless Chromium loads it from a
//! local HTTP server, finds the run and its failing test, and the terminal
//! player shows the recording at that test. Hostile test names and log lines
//! must show as text and run nothing.

use std::path::Path;

use btrfsqa_model::{Artifact, ArtifactKind, ResultsStore, RunId, Verdict};
use btrfsqa_publish::Dashboard;

use crate::chromium::{Server, dump_dom};
use crate::report;

const RUN: &str = "20261124-101500-b0b0";

/// What a hostile payload would leave behind if it ran: an attribute on
/// `<body>` (the payloads' text, shown escaped, never has the `="`).
const PWNED: &str = "data-pwned";
const PWNED_ATTRIBUTE: &str = "data-pwned=\"";

fn hostile(n: u32) -> String {
    format!(r#"<img src=x onerror="document.body.setAttribute('{PWNED}','{n}')">"#)
}

/// [`dump_dom`] until the DOM has `text` on the player's terminal, a few
/// times: on a loaded machine the player may not have drawn within the
/// first page load (network and wasm run in real time, not virtual time).
fn dump_dom_showing(chromium: &Path, url: &str, text: &str) -> String {
    let mut dom = String::new();
    for _ in 0..4 {
        dom = dump_dom(chromium, url);
        if dom
            .find("ap-term")
            .is_some_and(|at| dom[at..].contains(text))
        {
            break;
        }
    }
    dom
}

/// The first `href="…"` in `html` after `marker`, with `&#x2f;` unescaped.
fn href_after(html: &str, marker: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let rest = &rest[rest.find("href=\"")? + 6..];
    Some(
        rest[..rest.find('"')?]
            .replace("&#x2f;", "/")
            .replace("&amp;", "&"),
    )
}

/// A store with one run: a failing test whose recording shows a known line
/// at its start, and hostile names, messages and log lines everywhere.
fn hostile_store(dir: &Path) -> ResultsStore {
    let mut run = report(
        RUN,
        "2026-11-24T10:15:00Z",
        &[
            ("raid5-data-repair", Verdict::Pass),
            ("raid6-scrub", Verdict::Fail),
        ],
    );
    let suite = &mut run.suites[0];
    suite.tests[0]
        .artifacts
        .push(Artifact::new(ArtifactKind::Cast, "casts/local-0.cast").starting_at(0.5));
    let failing = &mut suite.tests[1];
    failing.message = Some(format!(
        "csum mismatch {}\n</pre>{}",
        hostile(1),
        hostile(2)
    ));
    failing
        .artifacts
        .push(Artifact::new(ArtifactKind::Cast, "casts/local-0.cast").starting_at(20.0));
    let mut evil = btrfsqa_model::TestOutcome::new("raid56-scrub", hostile(3), Verdict::Fail)
        .with_message(format!(
            "<script>document.body.setAttribute('{PWNED}','4')</script>"
        ));
    evil.profile = Some(hostile(5));
    suite.tests.push(evil);
    run.labels.insert(hostile(6), hostile(7));
    run.finish(
        btrfsqa_model::RunStatus::Completed,
        run.finished_at.unwrap(),
    );
    let store = crate::store_with(dir, &[run]);
    let lines = [
        r#"{"version":2,"width":80,"height":10,"title":"local-0"}"#.to_owned(),
        r#"[0.5,"m","raid56-scrub: raid5-data-repair"]"#.to_owned(),
        r#"[0.6,"o","EARLY-TEXT before the failing test\r\n"]"#.to_owned(),
        serde_json::to_string(&(
            1.0,
            "o",
            format!("{}\r\n<script>document.body.setAttribute('{PWNED}','8')</script>\r\n", hostile(9)),
        ))
        .unwrap(),
        "[20.0,\"m\",\"raid56-scrub: raid6-scrub\"]".to_owned(),
        "[20.1,\"o\",\"\\u001b[2J\\u001b[HRAID6-SCRUB-STARTS scrub started on /mnt/scratch\\r\\n\"]".to_owned(),
        "[25.0,\"o\",\"ERROR: there are uncorrectable errors\\r\\n\"]".to_owned(),
    ];
    let cast = store
        .run_dir(&RunId::parse(RUN).unwrap())
        .join("casts/local-0.cast");
    std::fs::create_dir_all(cast.parent().unwrap()).unwrap();
    std::fs::write(&cast, lines.join("\n") + "\n").unwrap();
    store
}

#[test]
fn chromium_finds_the_failing_test_and_plays_its_recording_and_nothing_hostile_runs() {
    let chromium = crate::require_chromium!();
    let tmp = tempfile::tempdir().unwrap();
    let store = hostile_store(&tmp.path().join("results"));
    let site = tmp.path().join("site");
    Dashboard::new().render(&store, &site).unwrap();
    let server = Server::start(&site);

    // The index lists the run.
    let index = dump_dom(&chromium, &server.url("index.html"));
    let run_href = href_after(&index, "<tbody>").expect("a run on the index");
    assert_eq!(run_href, format!("runs/{RUN}/index.html"));
    assert!(
        !index.contains(PWNED_ATTRIBUTE),
        "a hostile label ran on the index"
    );

    // The run page lists its failing tests; the first is the one we want.
    let run_page = dump_dom_showing(&chromium, &server.url(&run_href), "RAID6-SCRUB-STARTS");
    let anchor = href_after(&run_page, "id=\"problems\"").expect("a failing test");
    assert_eq!(anchor, "#t-0-1");
    assert!(
        !run_page.contains(PWNED_ATTRIBUTE),
        "a hostile string ran on the run page"
    );
    assert!(
        run_page.contains("&lt;img src=x onerror="),
        "hostile names are shown as text"
    );

    // Opened at that test, the player shows the recording where it starts.
    let at_test = dump_dom_showing(
        &chromium,
        &server.url(&format!("{run_href}{anchor}")),
        "RAID6-SCRUB-STARTS",
    );
    assert!(
        !at_test.contains(PWNED_ATTRIBUTE),
        "a hostile log line ran in the player"
    );
    let terminal = &at_test[at_test
        .find("ap-term")
        .expect("the player rendered its terminal")..];
    assert!(
        terminal.contains("RAID6-SCRUB-STARTS"),
        "the terminal shows the failing test's first output:\n{}",
        &terminal[..terminal.len().min(3000)]
    );
    // The screen was cleared at the test's start, and its later output is
    // not shown yet: the player is at the test's first second.
    let excerpt = &terminal[..terminal.len().min(3000)];
    assert!(!terminal.contains("EARLY-TEXT"), "not seeked:\n{excerpt}");
    assert!(
        !terminal.contains("uncorrectable errors"),
        "seeked past the start:\n{excerpt}"
    );
    // A log line with markup in it is shown on the terminal as text and runs nothing.
    let at_first = dump_dom_showing(
        &chromium,
        &server.url(&format!("{run_href}#t-0-0")),
        "EARLY-TEXT",
    );
    let terminal = &at_first[at_first.find("ap-term").expect("the player rendered")..];
    assert!(terminal.contains("EARLY-TEXT"), "opened at the first test");
    assert!(
        terminal.contains("&lt;img src=x onerror=") && terminal.contains("&lt;script&gt;"),
        "the hostile log lines are on the screen as text"
    );
    assert!(
        !at_first.contains(PWNED_ATTRIBUTE),
        "a hostile log line ran in the player"
    );
    // Without the hash it opens at the first failing test too.
    assert!(run_page.contains("RAID6-SCRUB-STARTS"));

    // The page's filter compares hostile names as text: filtering by one
    // shows that test and runs nothing.
    let filtered = dump_dom(
        &chromium,
        &server.url(&format!("{run_href}?q=%3Cimg%20src%3Dx&v=bad")),
    );
    assert!(
        !filtered.contains(PWNED_ATTRIBUTE),
        "a hostile name ran when filtered"
    );
    assert!(
        filtered.contains("<output id=\"filter-count\">1 of 3 tests shown</output>"),
        "the filter shows the hostile test alone:\n{filtered}"
    );
}
