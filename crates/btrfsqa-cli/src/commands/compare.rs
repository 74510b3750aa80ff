//! `btrfsqa compare` and `btrfsqa history`: judging stored runs.
//!
//! Both read the results store only; the judging is
//! [`btrfsqa_model::compare`], the same the runner applies at the end of a
//! run and the dashboard shows.

use btrfsqa_model::compare::{self, Class, Comparison, HistoryEntry, TestComparison, TestFilter};
use btrfsqa_model::{ResultsStore, RunReport};
use btrfsqa_runner::RunOverrides;
use btrfsqa_runner::history::ExpectationsConfig;
use btrfsqa_runner::stored::{self, find_run};

use super::{Outcome, load_settings};
use crate::args::{CompareArgs, HistoryArgs};
use crate::exit::Code;
use crate::output::Colors;

pub fn compare(args: CompareArgs) -> Outcome {
    let settings = load_settings(&args.config, RunOverrides::default())?;
    let store = ResultsStore::new(settings.results_dir());
    let history = load_history(&store)?;
    let expectations = &settings.config.expectations;
    let (baseline, run) = match &args.run_b {
        Some(run_b) => {
            let a = find_run(&store, &history, &args.run_a)?;
            (Some(a), find_run(&store, &history, run_b)?)
        }
        None => {
            let run = find_run(&store, &history, &args.run_a)?;
            let baseline = compare::choose_baseline(
                run,
                &history,
                expectations.baseline.as_deref(),
                expectations.baseline_policy,
            );
            if baseline.is_none() {
                errln!("{}", no_baseline_note(run, expectations));
            }
            (baseline, run)
        }
    };
    let comparison = compare::classify(run, baseline, &history, &expectations.compare_options());
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&comparison).expect("comparisons serialize")
        );
    } else {
        out!(
            "{}",
            render_comparison(&comparison, run, baseline, args.all, Colors::stdout())
        );
    }
    Ok(Code::Ok)
}

pub fn history(args: HistoryArgs) -> Outcome {
    let settings = load_settings(&args.config, RunOverrides::default())?;
    let store = ResultsStore::new(settings.results_dir());
    let history = load_history(&store)?;
    let filter = TestFilter {
        name: args.test.clone(),
        suite: args.suite.clone(),
        profile: args.profile.clone(),
    };
    let entries = compare::test_history(&history, &filter);
    if entries.is_empty() {
        // The message says `error:` itself (and what the store does hold).
        errln!("{}", no_test_message(&history, &filter, &store));
        return Ok(Code::Usage);
    }
    let (passes, failures, flips) = compare::history_stats(&entries);
    let shown: Vec<&HistoryEntry> = entries.iter().rev().take(args.limit).collect();
    if args.json {
        let json = serde_json::json!({
            "test": args.test,
            "suite": args.suite,
            "profile": args.profile,
            "runs": entries.len(),
            "passes": passes,
            "failures": failures,
            "flips": flips,
            "entries": shown,
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&json).expect("history serializes")
        );
    } else {
        let colors = Colors::stdout();
        let mut out = format!(
            "{}: {} run(s), {passes} passed, {failures} failed, {flips} change(s) between pass and fail{}\n\n",
            colors.bold(&args.test),
            entries.len(),
            if shown.len() < entries.len() {
                format!("; the newest {} shown", shown.len())
            } else {
                String::new()
            }
        );
        let several_suites = entries.iter().any(|e| e.suite != entries[0].suite);
        let mut rows = vec![
            [
                "run", "started", "kernel", "suite", "profile", "verdict", "reruns", "secs",
                "message",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for entry in &shown {
            rows.push(vec![
                entry.run_id.to_string(),
                entry.started_at.format("%Y-%m-%d %H:%M").to_string(),
                entry.kernel.clone().unwrap_or_else(|| "?".into()),
                entry.suite.clone(),
                entry
                    .profile
                    .clone()
                    .or_else(|| entry.run_profile.clone())
                    .unwrap_or_default(),
                entry.verdict.to_string(),
                entry
                    .reruns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                entry
                    .duration_secs
                    .map(|d| format!("{d:.0}"))
                    .unwrap_or_default(),
                first_line(entry.message.as_deref()),
            ]);
        }
        if !several_suites {
            for row in &mut rows {
                row.remove(3);
            }
        }
        out.push_str(&table(&rows, colors));
        out!("{out}");
    }
    Ok(Code::Ok)
}

/// Every readable report; unreadable ones are named on stderr and skipped.
fn load_history(store: &ResultsStore) -> Result<Vec<RunReport>, btrfsqa_runner::Error> {
    let (reports, errors) = stored::history(store)?;
    for err in &errors {
        errln!("warning: skipping a run: {err}");
    }
    Ok(reports)
}

fn no_baseline_note(run: &RunReport, expectations: &ExpectationsConfig) -> String {
    match &expectations.baseline {
        Some(name) => format!(
            "note: the named baseline `{name}` (`expectations.baseline`) is not in the results store; every test of `{}` is new",
            run.run_id
        ),
        None => format!(
            "note: no earlier completed run of the same profile on another kernel than `{}`; every test of `{}` is new",
            compare::kernel_id(run).unwrap_or("an unknown kernel"),
            run.run_id
        ),
    }
}

fn no_test_message(history: &[RunReport], filter: &TestFilter, store: &ResultsStore) -> String {
    let unfiltered = compare::test_history(
        history,
        &TestFilter {
            name: filter.name.clone(),
            ..TestFilter::default()
        },
    );
    if unfiltered.is_empty() {
        return format!(
            "error: no test `{}` in any of the {} run(s) in `{}`",
            filter.name,
            history.len(),
            store.root().display()
        );
    }
    let mut places: Vec<String> = unfiltered
        .iter()
        .map(|e| match e.profile.as_ref().or(e.run_profile.as_ref()) {
            Some(profile) => format!("suite `{}` profile `{profile}`", e.suite),
            None => format!("suite `{}`", e.suite),
        })
        .collect();
    places.sort();
    places.dedup();
    format!(
        "error: test `{}` never ran with the given --suite/--profile; it ran in {}",
        filter.name,
        places.join(", ")
    )
}

/// The human form of a comparison.
fn render_comparison(
    comparison: &Comparison,
    run: &RunReport,
    baseline: Option<&RunReport>,
    all: bool,
    colors: Colors,
) -> String {
    let kernel = |r: &RunReport| compare::kernel_id(r).unwrap_or("unknown kernel").to_owned();
    let mut out = match baseline {
        Some(baseline) => format!(
            "{} ({}) compared with {} ({})\n",
            colors.bold(run.run_id.as_str()),
            kernel(run),
            colors.bold(baseline.run_id.as_str()),
            kernel(baseline),
        ),
        None => format!(
            "{} ({}) without a baseline\n",
            colors.bold(run.run_id.as_str()),
            kernel(run)
        ),
    };
    let shown: Vec<&TestComparison> = comparison
        .tests
        .iter()
        .filter(|t| all || t.is_notable())
        .collect();
    if shown.is_empty() {
        out.push_str("\nno changes\n");
    } else {
        // Most urgent first; by key within a class.
        let mut shown = shown;
        shown.sort_by_key(|t| (rank(&t.class), t.key()));
        let mut rows = vec![
            ["class", "suite", "test", "baseline", "now", "note"]
                .map(str::to_owned)
                .to_vec(),
        ];
        for test in shown {
            let name = match &test.profile {
                Some(profile) => format!("{} [{profile}]", test.name),
                None => test.name.clone(),
            };
            let now = if test.attempts.is_empty() {
                verdict_text(test.verdict)
            } else {
                test.attempts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let note = match &test.class {
                Class::Expected { reason } => format!("known: {reason}"),
                Class::Flaky { source, .. } => format!(
                    "{} {}",
                    match source {
                        compare::FlakySource::Reruns => "by reruns;",
                        compare::FlakySource::History => "by history;",
                    },
                    first_line(test.message.as_deref())
                ),
                _ => first_line(test.message.as_deref()),
            };
            rows.push(vec![
                test.class.to_string(),
                test.suite.clone(),
                name,
                verdict_text(test.baseline_verdict),
                now,
                note.trim().to_owned(),
            ]);
        }
        out.push('\n');
        out.push_str(&table(&rows, colors));
    }
    let c = comparison.counts;
    let regressions = format!("{} new failure(s)", c.new_failure);
    out.push_str(&format!(
        "\n{}, {} fixed, {} still failing, {} flaky, {} expected, {} pass, {} new, {} gone, {} inconclusive\n",
        if c.new_failure > 0 {
            colors.red(&regressions)
        } else {
            regressions
        },
        c.fixed,
        c.still_failing,
        c.flaky,
        c.expected,
        c.pass,
        c.new,
        c.gone,
        c.inconclusive
    ));
    for drop in &comparison.droppable {
        out.push_str(&format!(
            "known failure `expectations.known-failures[{}]` ({}) passed {} time(s) in a row{}: remove it\n",
            drop.index,
            drop.test,
            drop.passes_in_a_row,
            if drop.dropped {
                " and no longer applies"
            } else {
                ""
            }
        ));
    }
    out
}

fn rank(class: &Class) -> u8 {
    match class {
        Class::NewFailure => 0,
        Class::Flaky { .. } => 1,
        Class::StillFailing => 2,
        Class::Expected { .. } => 3,
        Class::Fixed => 4,
        Class::New => 5,
        Class::Gone => 6,
        Class::Inconclusive => 7,
        Class::Pass => 8,
    }
}

fn verdict_text(verdict: Option<btrfsqa_model::Verdict>) -> String {
    verdict.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The first line of a message, cut to fit a table.
fn first_line(message: Option<&str>) -> String {
    let line = message.unwrap_or("").lines().next().unwrap_or("").trim();
    if line.chars().count() > 70 {
        format!("{}…", line.chars().take(69).collect::<String>())
    } else {
        line.to_owned()
    }
}

/// Left-aligned columns, the header bold, no trailing spaces.
fn table(rows: &[Vec<String>], colors: Colors) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        let line = line.trim_end();
        if i == 0 {
            out.push_str(&colors.bold(line));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![
            vec!["a".to_owned(), "bb".to_owned(), "c".to_owned()],
            vec!["aaa".to_owned(), "b".to_owned(), String::new()],
        ];
        let colors = Colors::stdout();
        let text = table(&rows, colors);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("bb"));
        assert_eq!(lines[1], "aaa  b");
    }

    #[test]
    fn long_messages_are_cut_to_one_line() {
        assert_eq!(first_line(Some("one\ntwo")), "one");
        assert_eq!(first_line(Some(&"x".repeat(100))).chars().count(), 70);
        assert_eq!(first_line(None), "");
    }
}
