//! The pages built from the history of runs: the index and its archive
//! pages, the pass-rate trend chart, one page per test and the
//! tests-by-runs matrix.
//!
//! Pure: [`RunSummary`]s in, template contexts out. The chart is SVG drawn
//! here from numbers (nothing from a run becomes markup but escaped text).

use std::collections::{BTreeMap, HashMap};

use btrfsqa_model::{Verdict, escape_file_name};
use serde::Serialize;

use super::format::{human_duration, status_class, status_text};
use super::summary::{RunSummary, TestEntry, is_failing};

/// Runs on the index page; older runs are on archive pages of this many.
pub(crate) const INDEX_RUNS: usize = 100;
/// Runs (columns) in the matrix.
pub(crate) const MATRIX_RUNS: usize = 30;
/// Runs of a test shown on its page.
pub(crate) const TEST_HISTORY_RUNS: usize = 100;
/// Flips between pass and fail within the matrix window that make a test flaky.
const FLAKY_FLIPS: usize = 2;

/// The path of a test's page, relative to the site root:
/// `tests/<suite>/<name>.html`, suite and name each one path component made
/// by [`escape_file_name`] (`tests/xfstests/btrfs~011.html`): names never
/// nest into directories and two tests never share a page. Every link to a
/// test page is made here.
pub(crate) fn test_page_path(suite: &str, name: &str) -> String {
    format!(
        "tests/{}/{}.html",
        escape_file_name(suite),
        escape_file_name(name)
    )
}

/// The relative way up from a page at `path` to the site root.
pub(crate) fn root_of(path: &str) -> String {
    "../".repeat(path.matches('/').count())
}

/// One row of the index or an archive page.
#[derive(Serialize)]
pub(crate) struct IndexRow<'a> {
    date: String,
    id: &'a str,
    /// Absent when the run's page was dropped by retention.
    href: Option<String>,
    status: &'static str,
    status_class: &'static str,
    kernel: Option<&'a str>,
    kernel_commit: Option<String>,
    kernel_ref: Option<&'a str>,
    machine: Option<String>,
    profiles: Option<String>,
    pass: u32,
    fail: u32,
    skip: u32,
    other: u32,
    new_failures: Option<u32>,
    duration: Option<String>,
    cost: Option<String>,
}

impl<'a> IndexRow<'a> {
    /// A row for `run`, with links relative to a page `root` below the site root.
    pub fn new(run: &'a RunSummary, root: &str, new_failures: Option<u32>) -> Self {
        let counts = &run.counts;
        let machine = match (run.provider.is_empty(), run.machines.is_empty()) {
            (true, true) => None,
            (false, true) => Some(run.provider.clone()),
            (true, false) => Some(run.machines.join(", ")),
            (false, false) => Some(format!("{}: {}", run.provider, run.machines.join(", "))),
        };
        IndexRow {
            date: run.started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            id: run.run_id.as_str(),
            href: run
                .has_page
                .then(|| format!("{root}runs/{}/index.html", run.run_id)),
            status: status_text(run.status),
            status_class: status_class(run.status, counts),
            kernel: run.kernel_release.as_deref(),
            kernel_commit: run
                .kernel_commit
                .as_ref()
                .map(|c| c.chars().take(12).collect()),
            kernel_ref: run.kernel_ref.as_deref(),
            machine,
            profiles: (!run.profiles.is_empty()).then(|| run.profiles.join(", ")),
            pass: counts.pass,
            fail: counts.fail,
            skip: counts.skip,
            other: counts.bad() - counts.fail,
            new_failures: run.new_failures.or(new_failures),
            duration: run.duration_secs().and_then(human_duration),
            cost: run.cost_usd.map(|usd| format!("${usd:.2}")),
        }
    }
}

/// Which test, as the history pages group them: suite and name (a page
/// per test shows all its profiles).
type PageKey<'a> = (&'a str, &'a str);

/// The history of every test over `runs` (newest first): per test, its
/// entries newest first, at most [`TEST_HISTORY_RUNS`] runs.
pub(crate) fn test_histories(
    runs: &[RunSummary],
) -> BTreeMap<PageKey<'_>, Vec<(usize, &TestEntry)>> {
    let mut histories: BTreeMap<PageKey<'_>, Vec<(usize, &TestEntry)>> = BTreeMap::new();
    let mut runs_seen: HashMap<PageKey<'_>, (usize, usize)> = HashMap::new();
    for (i, run) in runs.iter().enumerate() {
        for test in &run.tests {
            let key = (&*test.suite, test.name.as_str());
            let seen = runs_seen.entry(key).or_insert((usize::MAX, 0));
            if seen.0 != i {
                *seen = (i, seen.1 + 1);
            }
            if seen.1 <= TEST_HISTORY_RUNS {
                histories.entry(key).or_default().push((i, test));
            }
        }
    }
    histories
}

/// New failures of each run by the dashboard's own reckoning (for runs the
/// runner did not compare): tests failing in the run that passed the last
/// time the same test (suite, profile, name) ran before it.
pub(crate) fn new_failures(runs: &[RunSummary]) -> Vec<u32> {
    let mut counts = vec![0; runs.len()];
    let mut last: HashMap<(&str, Option<&str>, &str), Verdict> = HashMap::new();
    for (i, run) in runs.iter().enumerate().rev() {
        for test in &run.tests {
            let key = (&*test.suite, test.profile.as_deref(), test.name.as_str());
            if is_failing(test.verdict) && last.get(&key) == Some(&Verdict::Pass) {
                counts[i] += 1;
            }
            if test.verdict == Verdict::Pass || is_failing(test.verdict) {
                last.insert(key, test.verdict);
            }
        }
    }
    counts
}

/// The pass-rate chart: one point per run, oldest on the left.
#[derive(Serialize)]
pub(crate) struct Trend<'a> {
    width: u32,
    height: u32,
    points: String,
    dots: Vec<TrendDot<'a>>,
    /// Y of the 0 %, 50 % and 100 % grid lines, with their labels.
    grid: Vec<(u32, &'static str)>,
    /// Where the plot starts (after the labels).
    left: u32,
}

#[derive(Serialize)]
struct TrendDot<'a> {
    x: String,
    y: String,
    class: &'static str,
    id: &'a str,
    label: String,
    href: Option<String>,
}

const CHART_HEIGHT: u32 = 120;
const CHART_PAD: u32 = 8;

/// The pass rate (of tests with a verdict on btrfs) of each of `runs`
/// (newest first), drawn oldest first; `None` when no run has one.
pub(crate) fn trend<'a>(runs: &[&'a RunSummary], root: &str) -> Option<Trend<'a>> {
    let rated: Vec<(&RunSummary, f64)> = runs
        .iter()
        .rev()
        .filter_map(|run| {
            let c = &run.counts;
            let judged = c.pass + c.fail + c.hung + c.crashed;
            (judged > 0).then(|| (*run, f64::from(c.pass) / f64::from(judged)))
        })
        .collect();
    if rated.is_empty() {
        return None;
    }
    // At least 12 px per run, and a chart at least 320 px wide; the labels
    // take the first 36 px.
    let gaps = rated.len().max(2) as u32 - 1;
    let step = (280 / gaps).max(12);
    let left = CHART_PAD + 36;
    let width = left + CHART_PAD + step * gaps;
    let plot = f64::from(CHART_HEIGHT - 2 * CHART_PAD);
    let y_of = |rate: f64| f64::from(CHART_PAD) + (1.0 - rate) * plot;
    let mut points = Vec::new();
    let mut dots = Vec::new();
    for (i, (run, rate)) in rated.iter().enumerate() {
        let x = format!("{}", left + step * i as u32);
        let y = format!("{:.1}", y_of(*rate));
        points.push(format!("{x},{y}"));
        dots.push(TrendDot {
            x,
            y,
            class: if *rate >= 1.0 { "ok" } else { "bad" },
            id: run.run_id.as_str(),
            label: format!(
                "{} · {} · {:.1}% passed ({} of {})",
                run.run_id,
                run.kernel_release.as_deref().unwrap_or("kernel unknown"),
                rate * 100.0,
                run.counts.pass,
                run.counts.pass + run.counts.fail + run.counts.hung + run.counts.crashed
            ),
            href: run
                .has_page
                .then(|| format!("{root}runs/{}/index.html", run.run_id)),
        });
    }
    Some(Trend {
        width,
        height: CHART_HEIGHT,
        points: points.join(" "),
        dots,
        left,
        grid: vec![
            (y_of(1.0) as u32, "100%"),
            (y_of(0.5) as u32, "50%"),
            (y_of(0.0) as u32, "0%"),
        ],
    })
}

/// The page of one test.
#[derive(Serialize)]
pub(crate) struct TestPage<'a> {
    suite: &'a str,
    name: &'a str,
    runs: usize,
    pass: usize,
    fail: usize,
    other: usize,
    pass_rate: Option<String>,
    last_pass: Option<String>,
    first_failure: Option<String>,
    strip: Vec<StripCell>,
    strip_width: usize,
    rows: Vec<TestHistoryRow<'a>>,
    /// Its history per kernel of a matrix, when it ran on more than one.
    kernels: Vec<KernelHistory<'a>>,
}

/// A test's history on one kernel of a matrix.
#[derive(Serialize)]
struct KernelHistory<'a> {
    name: &'a str,
    runs: usize,
    pass: usize,
    fail: usize,
    /// The newest verdict.
    last: &'static str,
    /// The newest release it ran on.
    release: Option<&'a str>,
}

#[derive(Serialize)]
struct StripCell {
    x: usize,
    verdict: &'static str,
    label: String,
}

#[derive(Serialize)]
struct TestHistoryRow<'a> {
    date: String,
    run: &'a str,
    href: Option<String>,
    kernel: Option<&'a str>,
    kernel_name: Option<&'a str>,
    profile: Option<&'a str>,
    verdict: &'static str,
    bad: bool,
    class: Option<&'a str>,
    duration: Option<String>,
    message: Option<&'a str>,
}

/// The page of test `key` from its `history` (newest first).
pub(crate) fn test_page<'a>(
    key: PageKey<'a>,
    history: &[(usize, &'a TestEntry)],
    runs: &'a [RunSummary],
) -> TestPage<'a> {
    let root = root_of(&test_page_path(key.0, key.1));
    let rows: Vec<TestHistoryRow<'a>> = history
        .iter()
        .map(|&(i, test)| {
            let run = &runs[i];
            TestHistoryRow {
                date: run.started_at.format("%Y-%m-%d %H:%M").to_string(),
                run: run.run_id.as_str(),
                href: run
                    .has_page
                    .then(|| format!("{root}runs/{}/index.html#{}", run.run_id, test.anchor)),
                kernel: run.kernel_release.as_deref(),
                kernel_name: run.kernel_name.as_deref(),
                profile: test.profile.as_deref(),
                verdict: test.verdict.as_str(),
                bad: !test.verdict.is_ok(),
                class: test.class.as_deref(),
                duration: test.duration_secs.and_then(human_duration),
                message: test.message.as_deref(),
            }
        })
        .collect();
    let pass = history
        .iter()
        .filter(|(_, t)| t.verdict == Verdict::Pass)
        .count();
    let fail = history
        .iter()
        .filter(|(_, t)| is_failing(t.verdict))
        .count();
    let other = history.len() - pass - fail;
    let judged = pass + fail;
    let when = |i: usize| {
        format!(
            "{} ({})",
            runs[i].started_at.format("%Y-%m-%d"),
            runs[i].run_id
        )
    };
    let last_pass = history
        .iter()
        .find(|(_, t)| t.verdict == Verdict::Pass)
        .map(|&(i, _)| when(i));
    // The failure that started the current streak of failures.
    let first_failure = history
        .iter()
        .take_while(|(_, t)| t.verdict != Verdict::Pass)
        .filter(|(_, t)| is_failing(t.verdict))
        .last()
        .map(|&(i, _)| when(i));
    let strip: Vec<StripCell> = history
        .iter()
        .rev()
        .enumerate()
        .map(|(x, &(i, test))| StripCell {
            x: x * 8,
            verdict: test.verdict.as_str(),
            label: format!(
                "{} {}{}: {}",
                runs[i].run_id,
                runs[i].kernel_release.as_deref().unwrap_or(""),
                test.profile
                    .as_deref()
                    .map(|p| format!(" [{p}]"))
                    .unwrap_or_default(),
                test.verdict
            ),
        })
        .collect();
    TestPage {
        suite: key.0,
        name: key.1,
        runs: history.len(),
        pass,
        fail,
        other,
        pass_rate: (judged > 0).then(|| format!("{:.1}%", pass as f64 * 100.0 / judged as f64)),
        last_pass,
        first_failure,
        strip_width: strip.len() * 8,
        strip,
        rows,
        kernels: kernel_histories(history, runs),
    }
}

/// `history` (newest first) per kernel of a matrix, in the order the
/// kernels last ran; empty unless the test ran on two kernels or more.
fn kernel_histories<'a>(
    history: &[(usize, &'a TestEntry)],
    runs: &'a [RunSummary],
) -> Vec<KernelHistory<'a>> {
    let mut kernels: Vec<KernelHistory<'a>> = Vec::new();
    for &(i, test) in history {
        let Some(name) = runs[i].kernel_name.as_deref() else {
            continue;
        };
        let at = match kernels.iter().position(|k| k.name == name) {
            Some(at) => at,
            None => {
                kernels.push(KernelHistory {
                    name,
                    runs: 0,
                    pass: 0,
                    fail: 0,
                    last: test.verdict.as_str(),
                    release: runs[i].kernel_release.as_deref(),
                });
                kernels.len() - 1
            }
        };
        let kernel = &mut kernels[at];
        kernel.runs += 1;
        kernel.pass += usize::from(test.verdict == Verdict::Pass);
        kernel.fail += usize::from(is_failing(test.verdict));
    }
    if kernels.len() < 2 {
        kernels.clear();
    }
    kernels
}

/// The tests-by-runs matrix.
#[derive(Serialize)]
pub(crate) struct Matrix<'a> {
    columns: Vec<MatrixColumn<'a>>,
    /// Set when a kernel matrix is among the columns.
    groups: Option<Vec<ColumnGroup<'a>>>,
    rows: Vec<MatrixRow<'a>>,
    /// Tests that passed (or were skipped) in every run of the window.
    steady: usize,
}

#[derive(Serialize)]
struct MatrixColumn<'a> {
    id: &'a str,
    /// `2026-11-24` and `18:40`, in UTC: two runs of a day differ.
    date: String,
    time: String,
    kernel: Option<&'a str>,
    /// The kernel's name in a kernel matrix.
    kernel_name: Option<&'a str>,
    href: Option<String>,
}

/// Columns side by side that belong together: the runs of one kernel
/// matrix, or one run alone.
#[derive(Serialize)]
struct ColumnGroup<'a> {
    /// The matrix's id, for its runs.
    matrix: Option<&'a str>,
    span: usize,
}

#[derive(Serialize)]
struct MatrixRow<'a> {
    suite: &'a str,
    name: &'a str,
    profile: Option<&'a str>,
    href: String,
    flaky: bool,
    new_failure: bool,
    fixed: bool,
    cells: Vec<Option<MatrixCell>>,
}

#[derive(Serialize)]
struct MatrixCell {
    verdict: &'static str,
    letter: &'static str,
    /// `new` (a new failure), `fix` (fixed) or none.
    mark: Option<&'static str>,
    href: Option<String>,
}

fn letter(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "P",
        Verdict::Fail => "F",
        Verdict::Skip => "S",
        Verdict::Error => "E",
        Verdict::Hung => "H",
        Verdict::Crashed => "C",
        Verdict::Interrupted => "I",
    }
}

/// The matrix of the newest [`MATRIX_RUNS`] of `runs` (newest first): one
/// row per test (suite, profile, name) that did not simply pass.
pub(crate) fn matrix(runs: &[RunSummary]) -> Matrix<'_> {
    let window = &runs[..runs.len().min(MATRIX_RUNS)];
    let root = "";
    type Key<'a> = (&'a str, Option<&'a str>, &'a str);
    let mut grid: BTreeMap<Key<'_>, Vec<Option<&TestEntry>>> = BTreeMap::new();
    for (i, run) in window.iter().enumerate() {
        for test in &run.tests {
            let key = (&*test.suite, test.profile.as_deref(), test.name.as_str());
            let row = grid.entry(key).or_insert_with(|| vec![None; window.len()]);
            // A test run twice in one run: the worse verdict shows.
            if row[i].is_none_or(|seen| seen.verdict.is_ok() && !test.verdict.is_ok()) {
                row[i] = Some(test);
            }
        }
    }
    let mut steady = 0;
    let mut rows = Vec::new();
    for ((suite, profile, name), cells) in grid {
        if cells.iter().flatten().all(|t| t.verdict.is_ok()) {
            steady += 1;
            continue;
        }
        // Oldest to newest: marks compare a run with the previous verdict on btrfs.
        // The previous verdict is of the same kernel of a matrix: for-next
        // failing beside a passing stable is not a new failure.
        let mut marks = vec![None; cells.len()];
        let mut previous_of: BTreeMap<Option<&str>, Verdict> = BTreeMap::new();
        let mut flips = 0;
        for i in (0..cells.len()).rev() {
            let Some(test) = cells[i] else { continue };
            let line = window[i].kernel_name.as_deref();
            let previous = previous_of.get(&line).copied();
            let verdict = test.verdict;
            let signal = verdict == Verdict::Pass || is_failing(verdict);
            marks[i] = match test.class.as_deref() {
                Some("new-failure") => Some("new"),
                Some("fixed") => Some("fix"),
                _ => match previous {
                    Some(Verdict::Pass) if is_failing(verdict) => Some("new"),
                    Some(p) if is_failing(p) && verdict == Verdict::Pass => Some("fix"),
                    _ => None,
                },
            };
            if signal {
                if let Some(p) = previous
                    && (p == Verdict::Pass) != (verdict == Verdict::Pass)
                {
                    flips += 1;
                }
                previous_of.insert(line, verdict);
            }
        }
        let flaky = flips >= FLAKY_FLIPS
            || cells
                .iter()
                .flatten()
                .any(|t| t.class.as_deref() == Some("flaky"));
        let newest = cells.iter().position(Option::is_some);
        let new_failure = !flaky && newest.is_some_and(|i| marks[i] == Some("new"));
        let fixed = newest.is_some_and(|i| marks[i] == Some("fix"));
        let cells = cells
            .iter()
            .zip(&marks)
            .enumerate()
            .map(|(i, (cell, mark))| {
                cell.map(|test| MatrixCell {
                    verdict: test.verdict.as_str(),
                    letter: letter(test.verdict),
                    mark: *mark,
                    href: window[i].has_page.then(|| {
                        format!("{root}runs/{}/index.html#{}", window[i].run_id, test.anchor)
                    }),
                })
            })
            .collect();
        rows.push(MatrixRow {
            suite,
            name,
            profile,
            href: test_page_path(suite, name),
            flaky,
            new_failure,
            fixed,
            cells,
        });
    }
    // What broke now first, then the flaky, then the rest by name.
    rows.sort_by_key(|row| (!row.new_failure, !row.flaky, !row.fixed));
    Matrix {
        groups: column_groups(window),
        columns: window
            .iter()
            .map(|run| MatrixColumn {
                id: run.run_id.as_str(),
                date: run.started_at.format("%Y-%m-%d").to_string(),
                time: run.started_at.format("%H:%M").to_string(),
                kernel: run.kernel_release.as_deref(),
                kernel_name: run.kernel_name.as_deref(),
                href: run
                    .has_page
                    .then(|| format!("{root}runs/{}/index.html", run.run_id)),
            })
            .collect(),
        rows,
        steady,
    }
}

/// The runs of `window` grouped by kernel matrix, neighbours only (a
/// matrix's runs start together); `None` when no run is of a matrix.
fn column_groups(window: &[RunSummary]) -> Option<Vec<ColumnGroup<'_>>> {
    if window.iter().all(|run| run.matrix.is_none()) {
        return None;
    }
    let mut groups: Vec<ColumnGroup<'_>> = Vec::new();
    for run in window {
        let matrix = run.matrix.as_deref();
        match groups.last_mut() {
            Some(last) if matrix.is_some() && last.matrix == matrix => last.span += 1,
            _ => groups.push(ColumnGroup { matrix, span: 1 }),
        }
    }
    Some(groups)
}

#[cfg(test)]
mod tests;
