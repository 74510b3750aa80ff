//! Pure parsers of what fstests writes: the xunit report (`result.xml`),
//! `check.log`, `check.time` and the console of `./check`. No I/O here: each
//! function takes the bytes or text and returns values, so each is tested on
//! real captured output (`fixtures/xfstests/`).
//!
//! Every parser takes whatever a crashed or killed run leaves: empty files,
//! truncated XML, bytes that are not UTF-8, names that are not fstests names.

use std::collections::BTreeMap;

use btrfsqa_model::Verdict;
use chrono::{DateTime, FixedOffset, NaiveDateTime};

/// The most lines of the golden-output diff copied into a failure message.
const DIFF_LINES_IN_MESSAGE: usize = 8;

/// One test as a results file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedTest {
    /// The test (`btrfs/001`), as written in the file (not validated).
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Seconds, when the file gives them.
    pub duration_secs: Option<f64>,
    /// Why it failed or did not run.
    pub message: Option<String>,
}

impl ParsedTest {
    fn new(name: impl Into<String>, verdict: Verdict) -> Self {
        ParsedTest {
            name: name.into(),
            verdict,
            duration_secs: None,
            message: None,
        }
    }
}

/// What `result.xml` says about one section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XunitReport {
    /// The section (`classname="xfstests.<section>"`); `None` for fstests'
    /// `global` (a config without sections).
    pub section: Option<String>,
    /// The tests, in file order.
    pub tests: Vec<ParsedTest>,
    /// The `<properties>` (FSTYP, TEST_DEV, MKFS_OPTIONS, KERNEL, ...).
    pub properties: BTreeMap<String, String>,
    /// Set when the file was cut short and only its complete test cases were read.
    pub truncated: bool,
    /// `<testsuite hostname=...>`: the machine `./check` ran on.
    pub hostname: Option<String>,
    /// `start_timestamp`: when `./check` started (fstests of 2022 on; the
    /// same in every section of a run).
    pub start_timestamp: Option<DateTime<FixedOffset>>,
    /// `timestamp`: when the section's last test started (older fstests:
    /// when the report was written).
    pub timestamp: Option<DateTime<FixedOffset>>,
    /// `report_timestamp`: when the report was written, so when the section
    /// ended (fstests of 2022 on).
    pub report_timestamp: Option<DateTime<FixedOffset>>,
    /// `time`: the section's seconds.
    pub time_secs: Option<f64>,
}

/// Why a results file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The file is empty (or only white space).
    #[error("the file is empty")]
    Empty,
    /// The file is not an fstests xunit report, even cut short.
    #[error("not an fstests xunit report: {0}")]
    NotXunit(String),
}

/// Parses fstests' `result.xml`.
///
/// A file cut short (the machine died while fstests rewrote it) is read up to
/// its last complete `<testcase>` and marked [`XunitReport::truncated`].
/// Bytes that are not UTF-8 and control characters that XML forbids are
/// replaced, not fatal.
pub fn parse_xunit(bytes: &[u8]) -> Result<XunitReport, ParseError> {
    let text = sanitize_xml(bytes);
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    match parse_xunit_text(&text) {
        Ok(report) => Ok(report),
        Err(first) => {
            let salvaged = salvage(&text).ok_or_else(|| ParseError::NotXunit(first.clone()))?;
            let mut report =
                parse_xunit_text(&salvaged).map_err(|_| ParseError::NotXunit(first))?;
            report.truncated = true;
            Ok(report)
        }
    }
}

/// Replaces what roxmltree would reject: invalid UTF-8 and the C0 control
/// characters other than tab, newline and carriage return (fstests filters
/// `.full` through `tr -dc '[:print:][:space:]'`, but not everything).
fn sanitize_xml(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Cuts `text` after its last complete test case and closes the document.
fn salvage(text: &str) -> Option<String> {
    let root_end = text.find("<testsuite")?;
    let end = [text.rfind("</testcase>").map(|i| i + "</testcase>".len())]
        .into_iter()
        .flatten()
        .max()
        // No complete test case: keep the properties, if they are whole.
        .or_else(|| {
            text.rfind("</properties>")
                .map(|i| i + "</properties>".len())
        })
        .or_else(|| {
            let open = text[root_end..].find('>')? + root_end + 1;
            Some(open)
        })?;
    if end <= root_end {
        return None;
    }
    Some(format!("{}\n</testsuite>\n", &text[..end]))
}

fn parse_xunit_text(text: &str) -> Result<XunitReport, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    if root.tag_name().name() != "testsuite" {
        return Err(format!(
            "the root element is `{}`, not `testsuite`",
            root.tag_name().name()
        ));
    }
    let mut report = XunitReport {
        hostname: root
            .attribute("hostname")
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned),
        start_timestamp: root.attribute("start_timestamp").and_then(parse_timestamp),
        timestamp: root.attribute("timestamp").and_then(parse_timestamp),
        report_timestamp: root.attribute("report_timestamp").and_then(parse_timestamp),
        time_secs: root
            .attribute("time")
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t >= 0.0),
        ..XunitReport::default()
    };
    for node in root.children().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "properties" => {
                for prop in node.children().filter(|n| n.has_tag_name("property")) {
                    if let (Some(name), Some(value)) =
                        (prop.attribute("name"), prop.attribute("value"))
                    {
                        report.properties.insert(name.to_owned(), value.to_owned());
                    }
                }
            }
            "testcase" => {
                if report.section.is_none()
                    && let Some(section) = node
                        .attribute("classname")
                        .and_then(|c| c.strip_prefix("xfstests."))
                        .filter(|s| *s != "global")
                {
                    report.section = Some(section.to_owned());
                }
                report.tests.push(parse_testcase(node));
            }
            _ => {}
        }
    }
    Ok(report)
}

/// fstests writes `date -Iseconds` (`2026-11-24T13:48:18+00:00`); a time
/// without an offset is taken as UTC.
fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text).ok().or_else(|| {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
            .ok()
            .map(|t| t.and_utc().fixed_offset())
    })
}

fn parse_testcase(node: roxmltree::Node<'_, '_>) -> ParsedTest {
    let name = node.attribute("name").unwrap_or_default();
    let mut test = ParsedTest::new(name, Verdict::Pass);
    test.duration_secs = node
        .attribute("time")
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t >= 0.0);
    let child = |tag: &str| node.children().find(|n| n.has_tag_name(tag));
    if let Some(failure) = child("failure").or_else(|| child("error")) {
        test.verdict = Verdict::Fail;
        let mut message = failure
            .attribute("message")
            .map(clean_message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "failed, no reason given".to_owned());
        if let Some(diff) = child("system-err").and_then(|n| n.text()) {
            let excerpt = diff_excerpt(diff);
            if !excerpt.is_empty() {
                message.push('\n');
                message.push_str(&excerpt);
            }
        }
        test.message = Some(message);
    } else if let Some(skipped) = child("skipped") {
        test.verdict = Verdict::Skip;
        test.message = skipped
            .attribute("message")
            .map(clean_message)
            .filter(|m| !m.is_empty());
    }
    test
}

/// fstests prefixes its failure reasons with `- ` (it prints them after the
/// test name on the console).
fn clean_message(message: &str) -> String {
    message.trim().trim_start_matches("- ").trim().to_owned()
}

/// The first changed lines of a unified diff, without its headers.
fn diff_excerpt(diff: &str) -> String {
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') && !l.starts_with("+++"))
                || (l.starts_with('-') && !l.starts_with("---"))
        })
        .collect();
    let mut excerpt = changed
        .iter()
        .take(DIFF_LINES_IN_MESSAGE)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    if changed.len() > DIFF_LINES_IN_MESSAGE {
        excerpt.push_str(&format!(
            "\n... ({} more changed lines)",
            changed.len() - DIFF_LINES_IN_MESSAGE
        ));
    }
    excerpt
}

/// What the last block of a `check.log` says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckLog {
    /// `Kernel version:`.
    pub kernel: Option<String>,
    /// `Ran:` (tests tried, including those that did not run).
    pub ran: Vec<String>,
    /// `Not run:`.
    pub not_run: Vec<String>,
    /// `Failures:`.
    pub failures: Vec<String>,
    /// Whether the run was interrupted.
    pub interrupted: bool,
}

impl CheckLog {
    /// One outcome per test tried, with durations from `check.time` where
    /// known. In an interrupted run the last test tried is the one that was
    /// running: it is reported as interrupted.
    pub fn tests(&self, times: &BTreeMap<String, f64>) -> Vec<ParsedTest> {
        let running = self.ran.last().filter(|n| {
            self.interrupted && !self.failures.contains(n) && !self.not_run.contains(n)
        });
        self.ran
            .iter()
            .map(|name| {
                let mut test = if Some(name) == running {
                    ParsedTest::new(name, Verdict::Interrupted)
                        .with_message("interrupted while it ran (from check.log)")
                } else if self.failures.contains(name) {
                    ParsedTest::new(name, Verdict::Fail)
                        .with_message("failed (from check.log; no details)")
                } else if self.not_run.contains(name) {
                    ParsedTest::new(name, Verdict::Skip)
                } else {
                    ParsedTest::new(name, Verdict::Pass)
                };
                if test.verdict == Verdict::Pass {
                    test.duration_secs = times.get(name).copied();
                }
                test
            })
            .collect()
    }
}

impl ParsedTest {
    fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// Parses `check.log`. fstests appends a block per run (and per section), so
/// only the last block counts; `None` when there is none.
pub fn parse_check_log(text: &str) -> Option<CheckLog> {
    let start = text
        .match_indices("Kernel version:")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || text[..i].ends_with('\n'))
        .last()?;
    let mut log = CheckLog::default();
    for line in text[start..].lines() {
        let line = line.trim_end();
        let words = |rest: &str| {
            rest.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        if let Some(rest) = line.strip_prefix("Kernel version:") {
            log.kernel = Some(rest.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("Ran:") {
            log.ran.extend(words(rest));
        } else if let Some(rest) = line.strip_prefix("Not run:") {
            log.not_run.extend(words(rest));
        } else if let Some(rest) = line.strip_prefix("Failures:") {
            log.failures.extend(words(rest));
        } else if line == "Interrupted!" {
            log.interrupted = true;
        }
    }
    Some(log)
}

/// Parses `check.time`: one `<test> <seconds>` per line. Malformed lines are
/// skipped; a test listed twice keeps its last time (as fstests does).
pub fn parse_check_time(text: &str) -> BTreeMap<String, f64> {
    let mut times = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some(name), Some(secs), None) = (words.next(), words.next(), words.next())
            && let Ok(secs) = secs.parse::<f64>()
            && secs.is_finite()
            && secs >= 0.0
        {
            times.insert(name.to_owned(), secs);
        }
    }
    times
}

/// Whether `name` looks like an fstests test id (`btrfs/001`,
/// `generic/742`, `xfs/123-foo`): one directory and one name, each of
/// `[A-Za-z0-9_-]` (names may hold dots inside). Only such names are used to
/// build paths.
pub fn is_test_name(name: &str) -> bool {
    let Some((dir, test)) = name.split_once('/') else {
        return false;
    };
    let ok = |s: &str, dots: bool| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (dots && b == b'.'))
    };
    ok(dir, false) && ok(test, true) && !test.contains("..")
}

/// What the console of `./check` says, line by line.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleEvent {
    /// `SECTION       -- <name>`.
    Section(String),
    /// A test began (its name was printed).
    TestStarted(String),
    /// A test ended.
    TestFinished(ParsedTest),
}

/// Turns the streamed console of `./check` into events as it arrives.
///
/// fstests prints a test's name, runs it, and only then prints the rest of
/// the line, so a test is seen to start on the partial line.
#[derive(Debug, Default)]
pub struct ConsoleParser {
    partial: Vec<u8>,
    started: Option<String>,
}

impl ConsoleParser {
    /// A parser at the start of the output.
    pub fn new() -> Self {
        ConsoleParser::default()
    }

    /// The test that started and has not finished yet.
    pub fn running(&self) -> Option<&str> {
        self.started.as_deref()
    }

    /// Feeds a chunk of output; returns what it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<ConsoleEvent> {
        let mut events = Vec::new();
        self.partial.extend_from_slice(chunk);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            self.line(line.trim_end_matches(['\n', '\r']), &mut events);
        }
        // A partial line that is a test name followed by padding: it started.
        if self.started.is_none() && !self.partial.is_empty() {
            let text = String::from_utf8_lossy(&self.partial).into_owned();
            if let Some((name, _)) = text.split_once(' ')
                && is_test_name(name)
            {
                self.started = Some(name.to_owned());
                events.push(ConsoleEvent::TestStarted(name.to_owned()));
            }
        }
        events
    }

    /// Ends the stream; a partial last line is read as if complete.
    pub fn finish(&mut self) -> Vec<ConsoleEvent> {
        let mut events = Vec::new();
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
            // A name alone on an unfinished line is a test that never ended:
            // it stays `running`.
            let ended = line
                .trim()
                .split_once(' ')
                .is_some_and(|(_, rest)| !rest.trim().is_empty());
            if ended {
                self.line(line.trim_end(), &mut events);
            }
        }
        events
    }

    fn line(&mut self, line: &str, events: &mut Vec<ConsoleEvent>) {
        if let Some(section) = line.strip_prefix("SECTION       -- ") {
            events.push(ConsoleEvent::Section(section.trim().to_owned()));
            return;
        }
        let (name, rest) = match line.split_once(' ') {
            Some((name, rest)) => (name, rest.trim()),
            None => (line, ""),
        };
        if !is_test_name(name) {
            return;
        }
        if self.started.as_deref() != Some(name) {
            events.push(ConsoleEvent::TestStarted(name.to_owned()));
        }
        if rest.is_empty() {
            // The name and nothing else: the line was cut (the test was
            // stopped), so the test never ended.
            self.started = Some(name.to_owned());
            return;
        }
        self.started = None;
        if let Some(test) = console_result(name, rest) {
            events.push(ConsoleEvent::TestFinished(test));
        }
    }
}

/// Reads the rest of a console line after the test name.
fn console_result(name: &str, rest: &str) -> Option<ParsedTest> {
    if rest.starts_with("[expunged]") {
        // Excluded by the config: not a test of this run.
        return None;
    }
    if let Some(reason) = rest.strip_prefix("[not run]") {
        let mut test = ParsedTest::new(name, Verdict::Skip);
        test.message = Some(reason.trim().to_owned()).filter(|r| !r.is_empty());
        return Some(test);
    }
    if rest.starts_with("- no such test?") {
        return Some(ParsedTest::new(name, Verdict::Error).with_message("no such test"));
    }
    // A pass prints its time (`2s`), after the previous time when there is
    // one (`2s ...  3s`).
    let words: Vec<&str> = rest.split_whitespace().collect();
    let is_time = |w: &str| {
        w.strip_suffix('s')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    if !words.is_empty() && words.iter().all(|w| is_time(w) || *w == "...") {
        let mut test = ParsedTest::new(name, Verdict::Pass);
        test.duration_secs = words
            .iter()
            .rev()
            .find(|w| is_time(w))
            .and_then(|w| w.trim_end_matches('s').parse().ok());
        return Some(test);
    }
    // Anything else on the line is the reason it failed; an earlier time
    // (`2s ... `) is noise before it.
    let reason = match rest.split_once(" ... ") {
        Some((previous, reason)) if is_time(previous.trim()) => reason,
        _ => rest,
    };
    let reason = clean_message(reason);
    let mut test = ParsedTest::new(name, Verdict::Fail);
    test.message = Some(if reason.is_empty() {
        "failed (no reason printed)".to_owned()
    } else {
        reason
    });
    Some(test)
}

#[cfg(test)]
mod tests;
