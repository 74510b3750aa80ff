//! Pure parsers of what btrfs-progs' test scripts write: the results files
//! (`tests/<suite>-tests-results.txt`) and the console. No I/O; tested on
//! real output captured from btrfs-progs' own tests (`fixtures/btrfs-progs/`).

use btrfsqa_model::Verdict;

/// The most output lines of a failing command kept in a message.
const OUTPUT_LINES: usize = 12;

/// One test case as a results file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsCase {
    /// The case (`001-btrfs`): the last part of the `=== START TEST` path.
    pub name: String,
    /// Pass, fail, or skip (`[SKIPPED]`). The scripts write a not-run case
    /// (`[NOTRUN]`) only to the console, so here it reads as a pass.
    pub verdict: Verdict,
    /// The command that failed, as the script logged it.
    pub failed_command: Option<String>,
    /// The last lines that command printed.
    pub output: Vec<String>,
    /// The script's own failure or skip message.
    pub message: Option<String>,
}

impl ResultsCase {
    /// A message for the outcome: the failing command and its last output.
    pub fn summary(&self) -> Option<String> {
        let mut lines = Vec::new();
        if let Some(cmd) = &self.failed_command {
            lines.push(format!("failed: {cmd}"));
        } else if let Some(message) = &self.message {
            lines.push(message.clone());
        }
        lines.extend(self.output.iter().cloned());
        if self.failed_command.is_some()
            && let Some(message) = &self.message
            && !message.starts_with("failed:")
        {
            lines.push(message.clone());
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

/// Parses a results file: one entry per `=== START TEST` block, in order.
///
/// A block is a failure only when the harness said so: its
/// `<suite>-tests.sh` writes `test failed for case <case>` when the case's
/// script exits non-zero. A `failed: <command>` line alone is no verdict:
/// `_fail` also writes it from subshells and from commands a case expects
/// to fail, and the case goes on and passes. The failing command is the
/// last `_fail` message before the harness's line, with the `====== RUN`
/// header before it.
pub fn parse_results(text: &str) -> Vec<ResultsCase> {
    let mut cases = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("=== START TEST ") {
            if let Some((name, lines)) = current.take() {
                cases.push(read_block(name, &lines));
            }
            let name = path
                .trim()
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            current = Some((name.to_owned(), Vec::new()));
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    if let Some((name, lines)) = current {
        cases.push(read_block(name, &lines));
    }
    cases
}

/// Splits a results file into `(case, its block of text)`, in order.
pub fn split_results(text: &str) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive('\n') {
        if let Some(path) = line.strip_prefix("=== START TEST ") {
            let name = path
                .trim()
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            blocks.push((name.to_owned(), String::new()));
        }
        if let Some((_, block)) = blocks.last_mut() {
            block.push_str(line);
        }
    }
    blocks
}

fn read_block(name: String, lines: &[&str]) -> ResultsCase {
    let mut case = ResultsCase {
        name,
        verdict: Verdict::Pass,
        failed_command: None,
        output: Vec::new(),
        message: None,
    };
    if let Some(skip) = lines
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix("[SKIPPED]"))
    {
        case.verdict = Verdict::Skip;
        case.message = Some(skip.trim().to_owned()).filter(|m| !m.is_empty());
        return case;
    }
    let Some(failed_at) = lines
        .iter()
        .rposition(|l| l.starts_with("test failed for case "))
    else {
        return case;
    };
    let fail_line = lines[..failed_at].iter().rposition(|l| {
        l.starts_with("failed: ")
            || l.starts_with("mayfail: ")
            || l.starts_with("unexpected success: ")
            || l.starts_with("found subpage")
    });
    let end = fail_line.unwrap_or(failed_at);
    case.verdict = Verdict::Fail;
    let header = lines[..end]
        .iter()
        .rposition(|l| l.starts_with("====== RUN "));
    case.message = Some(lines[end].trim().to_owned());
    if let Some(h) = header {
        case.failed_command = Some(
            lines[h]
                .trim_start_matches("====== RUN ")
                .trim_start_matches("CHECK ")
                .trim_start_matches("MAYFAIL ")
                .trim_start_matches("MUSTFAIL ")
                .trim()
                .to_owned(),
        );
        let output: Vec<String> = lines[h + 1..end]
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| (*l).to_owned())
            .collect();
        let start = output.len().saturating_sub(OUTPUT_LINES);
        case.output = output[start..].to_vec();
    } else if let Some(cmd) = lines[end].strip_prefix("failed: ") {
        case.failed_command = Some(cmd.trim().to_owned());
    }
    case
}

/// What the console of one `<suite>-tests.sh` run says about its cases.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsoleCase {
    /// The suite, from `[TEST/<suite>]` (`conv` is `convert`).
    pub suite: String,
    /// The case (`001-btrfs`).
    pub name: String,
    /// `[NOTRUN]` or `[SKIPPED]`, with the reason.
    pub skipped: Option<String>,
    /// `test failed for case ...` was printed.
    pub failed: bool,
    /// The `_fail` messages printed (`failed: <command>`).
    pub messages: Vec<String>,
}

/// Parses the console of `<suite>-tests.sh` (or of `make test-cli test-misc
/// ...`, several suites one after another): `[TEST/<suite>] <case>` starts a
/// case; `[NOTRUN]`, `[SKIPPED]`, `_fail` messages and the harness's `test
/// failed for case` belong to it.
pub fn parse_console(text: &str) -> Vec<ConsoleCase> {
    let mut cases: Vec<ConsoleCase> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("[TEST/")
            && let Some((suite, name)) = rest.split_once(']')
        {
            cases.push(ConsoleCase {
                // convert-tests.sh prints `[TEST/conv]`.
                suite: if suite == "conv" { "convert" } else { suite }.to_owned(),
                name: name.trim().to_owned(),
                ..ConsoleCase::default()
            });
            continue;
        }
        let Some(case) = cases.last_mut() else {
            continue;
        };
        if let Some(reason) = trimmed
            .strip_prefix("[NOTRUN]")
            .or_else(|| trimmed.strip_prefix("[SKIPPED]"))
        {
            case.skipped = Some(reason.trim().to_owned());
        } else if trimmed.starts_with("test failed for case ") {
            case.failed = true;
        } else if trimmed.starts_with("failed: ") || trimmed.starts_with("mayfail: ") {
            case.messages.push(trimmed.to_owned());
        }
    }
    cases
}

/// The verdict and message of one case run alone (`TEST=<case>`), from its
/// exit status, console and results file.
pub fn case_verdict(
    exit_ok: bool,
    timed_out: bool,
    console: Option<&ConsoleCase>,
    results: Option<&ResultsCase>,
    console_tail: &str,
) -> (Verdict, Option<String>) {
    if timed_out {
        return (
            Verdict::Hung,
            Some("did not finish in time: stopped".to_owned()),
        );
    }
    if let Some(reason) = console.and_then(|c| c.skipped.clone()) {
        return (Verdict::Skip, Some(reason).filter(|r| !r.is_empty()));
    }
    if let Some(results) = results
        && results.verdict == Verdict::Skip
    {
        return (Verdict::Skip, results.message.clone());
    }
    if exit_ok {
        return (Verdict::Pass, None);
    }
    let message = results
        .filter(|r| r.verdict == Verdict::Fail)
        .and_then(ResultsCase::summary)
        .or_else(|| console.and_then(|c| c.messages.last().cloned()))
        .or_else(|| {
            let tail: Vec<&str> = console_tail
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            let start = tail.len().saturating_sub(5);
            Some(tail[start..].join("\n")).filter(|t| !t.is_empty())
        })
        .unwrap_or_else(|| "failed with no message".to_owned());
    (Verdict::Fail, Some(message))
}

/// The verdict the harness gave a case of a run made elsewhere (a whole
/// `make test-*`), from its block of the results file and, when the console
/// was kept, what it printed for it: failed when it said `test failed for
/// case`, skipped for `[NOTRUN]` or `[SKIPPED]`, else passed.
pub fn harness_verdict(
    results: Option<&ResultsCase>,
    console: Option<&ConsoleCase>,
) -> (Verdict, Option<String>) {
    let failed =
        results.is_some_and(|r| r.verdict == Verdict::Fail) || console.is_some_and(|c| c.failed);
    if failed {
        let message = results
            .filter(|r| r.verdict == Verdict::Fail)
            .and_then(ResultsCase::summary)
            .or_else(|| console.and_then(|c| c.messages.last().cloned()))
            .unwrap_or_else(|| "the harness failed the case, with no message".to_owned());
        return (Verdict::Fail, Some(message));
    }
    if let Some(reason) = console.and_then(|c| c.skipped.clone()) {
        return (Verdict::Skip, Some(reason).filter(|r| !r.is_empty()));
    }
    if let Some(results) = results
        && results.verdict == Verdict::Skip
    {
        return (Verdict::Skip, results.message.clone());
    }
    (Verdict::Pass, None)
}

/// Whether `name` can be a btrfs-progs case directory (`001-btrfs`).
pub fn is_case_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/fixtures/btrfs-progs/{name}", env!("CARGO_MANIFEST_DIR"));
        String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()
    }

    #[test]
    fn a_passing_case_reads_as_a_pass() {
        let cases = parse_results(&fixture("cli-001-btrfs.results"));
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].name, "001-btrfs");
        assert_eq!(cases[0].verdict, Verdict::Pass);
        assert_eq!(cases[0].summary(), None);
    }

    #[test]
    fn a_failing_case_names_its_command_and_output() {
        let cases = parse_results(&fixture("cli-002-balance-full-no-filters.results"));
        let case = &cases[0];
        assert_eq!(case.verdict, Verdict::Fail);
        assert!(
            case.failed_command
                .as_deref()
                .unwrap()
                .starts_with("umount "),
            "{case:?}"
        );
        assert!(
            case.output.iter().any(|l| l.contains("target is busy")),
            "{case:?}"
        );
        let summary = case.summary().unwrap();
        assert!(summary.starts_with("failed: umount "), "{summary}");
        assert!(summary.contains("target is busy"), "{summary}");
    }

    #[test]
    fn a_failed_line_the_harness_did_not_fail_on_is_a_pass() {
        // `make test-cli test-mkfs test-misc`: cli/003 and mkfs/002 log
        // `failed: ...` for commands they expect to fail, and the harness
        // passed both (its console says nothing after their names).
        let dir = "make-cli-mkfs-misc/tests";
        let cli = parse_results(&fixture(&format!("{dir}/cli-tests-results.txt")));
        let case = cli.iter().find(|c| c.name == "003-fi-resize-args").unwrap();
        assert_eq!((case.verdict, case.summary()), (Verdict::Pass, None));
        let mkfs = parse_results(&fixture(&format!("{dir}/mkfs-tests-results.txt")));
        let verdict = |name: &str| mkfs.iter().find(|c| c.name == name).unwrap().verdict;
        assert_eq!(verdict("002-no-force-mixed-on-small-volume"), Verdict::Pass);
        // What the harness did fail keeps its failing command.
        assert_eq!(verdict("025-zoned-parallel"), Verdict::Fail);
        let failed = mkfs
            .iter()
            .find(|c| c.name == "025-zoned-parallel")
            .unwrap();
        assert!(
            failed.summary().unwrap().starts_with("failed: ")
                && failed.summary().unwrap().contains("nullb setup"),
            "{failed:?}"
        );
    }

    #[test]
    fn a_mounted_leftover_failure_is_explained() {
        let case = &parse_results(&fixture("cli-003-fi-resize-args.results"))[0];
        assert_eq!(case.verdict, Verdict::Fail);
        assert!(case.summary().unwrap().contains("is mounted"), "{case:?}");
    }

    #[test]
    fn consoles_give_the_case_and_its_failure() {
        let cases = parse_console(&fixture("cli-016-btrfs-fi-usage.console"));
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].name, "016-btrfs-fi-usage");
        assert!(cases[0].failed);
        assert!(
            cases[0].messages[0].contains("mkfs.btrfs -f -draid5"),
            "{cases:?}"
        );
        let pass = parse_console(&fixture("misc-047-raid5-convert.console"));
        assert_eq!(
            (pass[0].name.as_str(), pass[0].failed),
            ("047-raid5-convert", false)
        );
        // A TEST= that matched nothing prints no case at all.
        assert!(parse_console(&fixture("fuzz-001-simple-unmounted.console")).is_empty());
    }

    #[test]
    fn verdicts_combine_exit_console_and_results() {
        let results = parse_results(&fixture("cli-016-btrfs-fi-usage.results"));
        let console = parse_console(&fixture("cli-016-btrfs-fi-usage.console"));
        let (verdict, message) = case_verdict(false, false, console.first(), results.first(), "");
        assert_eq!(verdict, Verdict::Fail);
        assert!(message.unwrap().contains("-draid5"));
        let notrun = parse_console(
            "    [TEST/misc]   004-shrink-fs\n    [NOTRUN] Need to validate root privileges\n",
        );
        let (verdict, message) = case_verdict(true, false, notrun.first(), None, "");
        assert_eq!(
            (verdict, message.as_deref()),
            (Verdict::Skip, Some("Need to validate root privileges"))
        );
        assert_eq!(case_verdict(false, true, None, None, "").0, Verdict::Hung);
        assert_eq!(case_verdict(true, false, None, None, "").0, Verdict::Pass);
        let (verdict, message) = case_verdict(false, false, None, None, "bash: x: No such file\n");
        assert_eq!(
            (verdict, message.as_deref()),
            (Verdict::Fail, Some("bash: x: No such file"))
        );
    }

    #[test]
    fn broken_input_is_not_fatal() {
        assert!(parse_results("").is_empty());
        assert!(parse_results("no header\nfailed: x\n").is_empty());
        // Cut in the middle of a failing command's output.
        let full = fixture("cli-002-balance-full-no-filters.results");
        let cut = &full[..full.len() / 2];
        let cases = parse_results(cut);
        assert_eq!(cases.len(), 1);
        // Not UTF-8 and hostile names.
        let bytes = b"=== START TEST /x/tests/cli-tests/../../../etc\n====== RUN CHECK \xff\xfe\nfailed: \xff\ntest failed for case \xff\n";
        let cases = parse_results(&String::from_utf8_lossy(bytes));
        assert_eq!(cases[0].verdict, Verdict::Fail);
        assert!(!is_case_name(&cases[0].name) || cases[0].name == "etc");
        assert!(!is_case_name("..") && !is_case_name("a/b") && !is_case_name("<script>"));
        assert!(is_case_name("001-btrfs"));
    }
}
