use super::*;

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/fixtures/xfstests/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn text(path: &str) -> String {
    String::from_utf8(fixture(path)).unwrap()
}

#[test]
fn a_real_xunit_report_gives_one_result_per_test() {
    let report = parse_xunit(&fixture("btrfs-loop-30/result.xml")).unwrap();
    assert!(!report.truncated);
    assert_eq!(report.section, None, "no sections: fstests calls it global");
    assert_eq!(report.tests.len(), 30);
    assert_eq!(report.properties["FSTYP"], "btrfs");
    assert_eq!(report.properties["SCRATCH_DEV"], "/dev/loop1");
    let by_name = |n: &str| report.tests.iter().find(|t| t.name == n).unwrap();
    assert_eq!(by_name("btrfs/011").verdict, Verdict::Pass);
    assert_eq!(by_name("btrfs/011").duration_secs, Some(241.0));
    let failed = by_name("btrfs/012");
    assert_eq!(failed.verdict, Verdict::Fail);
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.starts_with("output mismatch (see /var/lib/xfstests/results//btrfs/012.out.bad)"),
        "{message}"
    );
    assert!(
        message.contains("-OK\n+data mismatch in /p160/f1"),
        "{message}"
    );
    assert!(message.contains("more changed lines"), "{message}");
    assert_eq!(
        report
            .tests
            .iter()
            .filter(|t| t.verdict == Verdict::Pass)
            .count(),
        29
    );
}

#[test]
fn sections_and_not_run_reasons_are_read() {
    let report = parse_xunit(&fixture("sections/compress/result.xml")).unwrap();
    assert_eq!(report.section.as_deref(), Some("compress"));
    let skipped = report
        .tests
        .iter()
        .find(|t| t.name == "generic/034")
        .unwrap();
    assert_eq!(skipped.verdict, Verdict::Skip);
    assert_eq!(
        skipped.message.as_deref(),
        Some("This test requires dm flakey support")
    );
}

#[test]
fn truncated_reports_keep_their_complete_tests() {
    let full = fixture("btrfs-loop-30/result.xml");
    let whole = parse_xunit(&full).unwrap().tests;
    // Cut everywhere: never a panic, and whatever is read is a prefix of the whole.
    for cut in (0..full.len()).step_by(61) {
        match parse_xunit(&full[..cut]) {
            Ok(report) => {
                assert!(report.truncated, "cut at {cut} read as whole");
                assert_eq!(
                    report.tests[..],
                    whole[..report.tests.len()],
                    "cut at {cut}"
                );
            }
            Err(err) => assert!(cut < 600, "cut at {cut}: {err}"),
        }
    }
    // Cut inside the failing test's CDATA: the tests before it survive.
    let at = String::from_utf8_lossy(&full)
        .find("Create btrfs metadata")
        .unwrap();
    let report = parse_xunit(&full[..at]).unwrap();
    assert_eq!(report.tests.len(), 9);
    assert_eq!(report.tests.last().unwrap().name, "btrfs/011");
}

#[test]
fn empty_and_foreign_files_are_errors_not_panics() {
    assert_eq!(parse_xunit(b""), Err(ParseError::Empty));
    assert_eq!(parse_xunit(b" \n\t"), Err(ParseError::Empty));
    assert!(matches!(
        parse_xunit(b"not xml at all"),
        Err(ParseError::NotXunit(_))
    ));
    assert!(matches!(
        parse_xunit(b"<html><body/></html>"),
        Err(ParseError::NotXunit(_))
    ));
}

#[test]
fn bytes_that_are_not_utf8_or_not_xml_characters_are_replaced() {
    let mut bytes = fixture("btrfs-loop-30/result.xml");
    let at = String::from_utf8_lossy(&bytes)
        .find("Conversion complete")
        .unwrap();
    bytes.splice(at..at, b"\xff\xfe\x1b[31m\x00".iter().copied());
    let report = parse_xunit(&bytes).unwrap();
    assert!(!report.truncated);
    assert_eq!(report.tests.len(), 30);
}

#[test]
fn hostile_test_names_are_kept_as_text_and_refused_as_paths() {
    let xml = br#"<?xml version="1.0"?><testsuite name="xfstests">
        <testcase classname="xfstests.global" name="../../etc/passwd" time="1"/>
        <testcase classname="xfstests.global" name="&lt;img src=x onerror=alert(1)&gt;" time="x"/>
        <testcase classname="xfstests.global" name="btrfs/001" time="-3"><skipped/></testcase>
    </testsuite>"#;
    let report = parse_xunit(xml).unwrap();
    assert_eq!(report.tests[0].name, "../../etc/passwd");
    assert_eq!(report.tests[1].name, "<img src=x onerror=alert(1)>");
    assert_eq!(report.tests[1].duration_secs, None);
    assert_eq!(
        (report.tests[2].verdict, report.tests[2].duration_secs),
        (Verdict::Skip, None)
    );
    for bad in [
        "../../etc/passwd",
        "<img src=x onerror=alert(1)>",
        "btrfs/..",
        "btrfs/../x",
        "/001",
        "btrfs/",
        "a/b/c",
        "",
    ] {
        assert!(!is_test_name(bad), "{bad:?}");
    }
    for good in ["btrfs/001", "generic/742", "xfs/123-foo", "ext4/abc_def.1"] {
        assert!(is_test_name(good), "{good:?}");
    }
}

#[test]
fn check_log_gives_the_last_block() {
    let log = parse_check_log(&text("btrfs-loop-30/check.log")).unwrap();
    assert_eq!(log.kernel.as_deref(), Some("6.18.44-fc-v657"));
    assert_eq!(log.ran.len(), 30);
    assert_eq!(log.failures, ["btrfs/012"]);
    let times = parse_check_time(&text("btrfs-loop-30/check.time"));
    let tests = log.tests(&times);
    assert_eq!(tests.len(), 30);
    let failed = tests.iter().find(|t| t.name == "btrfs/012").unwrap();
    assert_eq!(
        (failed.verdict, failed.duration_secs),
        (Verdict::Fail, None)
    );
    assert_eq!(tests[0].duration_secs, Some(2.0));

    // The global check.log of a run with sections has one block per section.
    let sections = parse_check_log(&text("sections/check.log")).unwrap();
    assert_eq!(sections.ran.len(), 4);
    assert_eq!(sections.not_run, ["generic/034"]);
    let tests = sections.tests(&BTreeMap::new());
    assert_eq!(
        tests
            .iter()
            .find(|t| t.name == "generic/034")
            .unwrap()
            .verdict,
        Verdict::Skip
    );

    assert_eq!(parse_check_log(""), None);
    assert_eq!(parse_check_log("garbage\nRan: a/b\n"), None);
    let interrupted =
        parse_check_log("Kernel version: 6\nRan: btrfs/001 btrfs/002\nInterrupted!\n").unwrap();
    assert!(interrupted.interrupted);
    let verdicts: Vec<Verdict> = interrupted
        .tests(&BTreeMap::new())
        .iter()
        .map(|t| t.verdict)
        .collect();
    assert_eq!(verdicts, [Verdict::Pass, Verdict::Interrupted]);
}

#[test]
fn check_time_is_one_test_per_line() {
    let times = parse_check_time(&text("btrfs-loop-30/check.time"));
    assert_eq!(times.len(), 29, "btrfs/012 failed, so it has no time");
    assert_eq!(times["btrfs/011"], 241.0);
    assert_eq!(times["generic/023"], 1.0);
    let odd = parse_check_time(
        "btrfs/001 2\n\nbroken\nbtrfs/002 x\nbtrfs/003 1 2\nbtrfs/001 5\ngeneric/001 -1\n\u{fffd} 3\n",
    );
    assert_eq!(odd.len(), 2);
    assert_eq!(odd["btrfs/001"], 5.0, "the last line for a test wins");
}

fn events_of(chunks: &[&[u8]]) -> Vec<ConsoleEvent> {
    let mut parser = ConsoleParser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(parser.push(chunk));
    }
    events.extend(parser.finish());
    events
}

#[test]
fn the_console_gives_starts_and_ends() {
    let console = fixture("btrfs-loop-30/console.txt");
    let events = events_of(&[&console]);
    let started = events
        .iter()
        .filter(|e| matches!(e, ConsoleEvent::TestStarted(_)))
        .count();
    let finished: Vec<&ParsedTest> = events
        .iter()
        .filter_map(|e| match e {
            ConsoleEvent::TestFinished(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!((started, finished.len()), (30, 30));
    assert_eq!(finished[0].name, "btrfs/001");
    assert_eq!(
        (finished[0].verdict, finished[0].duration_secs),
        (Verdict::Pass, Some(2.0))
    );
    let failed = finished.iter().find(|t| t.name == "btrfs/012").unwrap();
    assert_eq!(failed.verdict, Verdict::Fail);
    assert_eq!(
        failed.message.as_deref(),
        Some("output mismatch (see /var/lib/xfstests/results//btrfs/012.out.bad)")
    );
    // Byte by byte, the same events.
    let bytes: Vec<&[u8]> = console.chunks(1).collect();
    assert_eq!(events_of(&bytes), events);
}

#[test]
fn a_test_is_seen_to_start_before_its_line_ends() {
    let mut parser = ConsoleParser::new();
    assert_eq!(
        parser.push(b"SECTION       -- compress\n"),
        [ConsoleEvent::Section("compress".into())]
    );
    assert_eq!(
        parser.push(b"btrfs/002   "),
        [ConsoleEvent::TestStarted("btrfs/002".into())]
    );
    assert_eq!(parser.running(), Some("btrfs/002"));
    assert!(parser.push(b" 10s ...").is_empty());
    let events = parser.push(b"  11s\n");
    assert!(
        matches!(&events[..], [ConsoleEvent::TestFinished(t)] if t.duration_secs == Some(11.0))
    );
    assert_eq!(parser.running(), None);
    // A test that never ends stays running.
    parser.push(b"btrfs/003           ");
    assert!(parser.finish().is_empty());
    assert_eq!(parser.running(), Some("btrfs/003"));
}

#[test]
fn console_results_of_every_kind() {
    let events = events_of(&[
        b"generic/034       [not run] This test requires dm flakey support\n\
        btrfs/004  [expunged]\n\
        btrfs/005 2s ...  - output mismatch (see /r/btrfs/005.out.bad)\n\
        btrfs/006 _check_dmesg: something found (see /r/btrfs/006.dmesg)\n\
        btrfs/999 - no such test?\n\
        btrfs/007 [failed, exit status 1]- output mismatch (see /r/btrfs/007.out.bad)\n\
        Ran: btrfs/004\n",
    ]);
    let finished: Vec<(String, Verdict, Option<String>)> = events
        .into_iter()
        .filter_map(|e| match e {
            ConsoleEvent::TestFinished(t) => Some((t.name, t.verdict, t.message)),
            _ => None,
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        finished,
        [
            (
                "generic/034".into(),
                Verdict::Skip,
                s("This test requires dm flakey support")
            ),
            (
                "btrfs/005".into(),
                Verdict::Fail,
                s("output mismatch (see /r/btrfs/005.out.bad)")
            ),
            (
                "btrfs/006".into(),
                Verdict::Fail,
                s("_check_dmesg: something found (see /r/btrfs/006.dmesg)")
            ),
            ("btrfs/999".into(), Verdict::Error, s("no such test")),
            (
                "btrfs/007".into(),
                Verdict::Fail,
                s("[failed, exit status 1]- output mismatch (see /r/btrfs/007.out.bad)")
            ),
        ]
    );
}

#[test]
fn console_noise_and_hostile_lines_are_ignored() {
    let events = events_of(&[b"\xff\xfe garbage\n../../x 2s\n<script>/x 1s\nFSTYP         -- btrfs\n    --- tests/btrfs/012.out\n"]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_real_sectioned_console_with_previous_times_and_not_run() {
    let events = events_of(&[&fixture("consoles/sections-compress.txt")]);
    assert_eq!(events[0], ConsoleEvent::Section("compress".into()));
    let finished: Vec<(String, Verdict, Option<f64>)> = events
        .iter()
        .filter_map(|e| match e {
            ConsoleEvent::TestFinished(t) => Some((t.name.clone(), t.verdict, t.duration_secs)),
            _ => None,
        })
        .collect();
    assert_eq!(
        finished,
        [
            ("btrfs/001".into(), Verdict::Pass, Some(0.0)),
            ("btrfs/002".into(), Verdict::Pass, Some(13.0)),
            ("generic/001".into(), Verdict::Pass, Some(4.0)),
            ("generic/034".into(), Verdict::Skip, None),
        ]
    );
}

#[test]
fn a_real_console_of_a_stopped_test_and_the_restart() {
    let console = fixture("consoles/hung-btrfs-002.txt");
    let marker = String::from_utf8_lossy(&console)
        .find("--- btrfsqa")
        .unwrap();
    // Up to the stop, btrfs/002 started and never ended.
    let mut parser = ConsoleParser::new();
    parser.push(&console[..marker - 1]);
    assert_eq!(parser.running(), Some("btrfs/002"));
    // Also once the line is ended by what follows.
    parser.push(b"\n");
    assert_eq!(parser.running(), Some("btrfs/002"));
    // The whole file: the restart skips what ran ([expunged]) and runs the rest.
    let events = events_of(&[&console]);
    let finished: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            ConsoleEvent::TestFinished(t) => Some(format!("{} {}", t.name, t.verdict)),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["btrfs/001 pass", "generic/001 pass"]);
}
