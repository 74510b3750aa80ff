//! Tests of the history pages: the tests-by-runs matrix, the test pages and
//! their paths, the trend, and kernel matrices.

use super::*;
use btrfsqa_model::{Counts, RunId, RunStatus};

fn run(id: &str, day: u32, verdicts: &[(&str, Verdict)]) -> RunSummary {
    let tests: Vec<TestEntry> = verdicts
        .iter()
        .enumerate()
        .map(|(j, (name, verdict))| TestEntry {
            suite: "s".into(),
            name: (*name).into(),
            profile: None,
            verdict: *verdict,
            duration_secs: None,
            message: None,
            anchor: super::super::summary::Anchor(0, j),
            class: None,
        })
        .collect();
    let mut counts = Counts::default();
    for test in &tests {
        counts.add(test.verdict);
    }
    RunSummary {
        format: super::super::summary::SUMMARY_FORMAT,
        run_id: RunId::parse(id).unwrap(),
        started_at: format!("2026-11-{day:02}T00:00:00Z").parse().unwrap(),
        finished_at: None,
        status: RunStatus::Completed,
        kernel_release: Some(format!("6.{day}")),
        kernel_commit: None,
        kernel_ref: None,
        kernel_name: None,
        matrix: None,
        provider: "local".into(),
        machines: vec![],
        profiles: vec![],
        counts,
        new_failures: None,
        baseline: None,
        cost_usd: None,
        has_page: true,
        tests_read: true,
        tests,
    }
}

/// Newest first, as the dashboard keeps them.
fn history() -> Vec<RunSummary> {
    use Verdict::*;
    vec![
        run(
            "r5",
            5,
            &[
                ("steady", Pass),
                ("broke", Fail),
                ("flaky", Fail),
                ("fixed", Pass),
            ],
        ),
        run(
            "r4",
            4,
            &[
                ("steady", Pass),
                ("broke", Pass),
                ("flaky", Pass),
                ("fixed", Fail),
            ],
        ),
        run(
            "r3",
            3,
            &[
                ("steady", Pass),
                ("broke", Pass),
                ("flaky", Fail),
                ("fixed", Fail),
            ],
        ),
        run(
            "r2",
            2,
            &[("steady", Skip), ("broke", Pass), ("flaky", Pass)],
        ),
    ]
}

#[test]
fn the_matrix_marks_new_failures_fixes_and_flaky_tests() {
    let runs = history();
    let matrix = matrix(&runs);
    assert_eq!(matrix.steady, 1);
    let names: Vec<_> = matrix.rows.iter().map(|r| r.name).collect();
    assert_eq!(names, ["broke", "flaky", "fixed"]);
    let broke = &matrix.rows[0];
    assert!(broke.new_failure && !broke.flaky);
    assert_eq!(broke.cells[0].as_ref().unwrap().mark, Some("new"));
    assert_eq!(broke.href, "tests/s/broke.html");
    let flaky = &matrix.rows[1];
    assert!(flaky.flaky, "pass, fail, pass, fail");
    let fixed = &matrix.rows[2];
    assert!(fixed.fixed && !fixed.flaky);
    assert!(fixed.cells[3].is_none(), "not run in r2");
    assert_eq!(
        fixed.cells[0].as_ref().unwrap().href.as_deref(),
        Some("runs/r5/index.html#t-0-3")
    );
}

#[test]
fn new_failures_count_against_the_last_verdict() {
    assert_eq!(new_failures(&history()), [2, 0, 1, 0]);
}

#[test]
fn test_pages_show_the_history_newest_first() {
    let runs = history();
    let histories = test_histories(&runs);
    let fixed = &histories[&("s", "fixed")];
    let page = test_page(("s", "fixed"), fixed, &runs);
    assert_eq!((page.runs, page.pass, page.fail), (3, 1, 2));
    assert_eq!(page.pass_rate.as_deref(), Some("33.3%"));
    assert_eq!(page.rows[0].run, "r5");
    assert_eq!(
        page.rows[0].href.as_deref(),
        Some("../../runs/r5/index.html#t-0-3")
    );
    assert_eq!(root_of("tests/xfstests/btrfs~011.html"), "../../");
    let hostile = test_page_path("s", "../../x");
    assert!(
        hostile.starts_with("tests/s/") && !hostile.contains("/../"),
        "{hostile}"
    );
    assert_eq!(page.first_failure, None, "passing now");
    let broke = test_page(("s", "broke"), &histories[&("s", "broke")], &runs);
    assert_eq!(broke.first_failure.as_deref(), Some("2026-11-05 (r5)"));
    assert_eq!(broke.last_pass.as_deref(), Some("2026-11-04 (r4)"));
    assert_eq!(broke.strip.first().unwrap().verdict, "pass", "oldest first");
}

#[test]
fn test_page_paths_are_flat_distinct_and_readable() {
    let long = "n".repeat(400);
    let names = [
        "btrfs/001",
        "btrfs_001",
        "btrfs-001",
        "btrfs~001",
        "btrfs//001",
        "/btrfs/001",
        "btrfs/001/",
        "btrfs/001.html",
        "x",
        "x.html/y",
        "a b",
        "a=20b",
        "a%20b",
        "../x",
        "..",
        ".",
        ".hidden",
        "",
        "<script>",
        "é",
        &long,
        &format!("{long}x"),
    ];
    let paths: std::collections::BTreeSet<String> =
        names.iter().map(|name| test_page_path("s", name)).collect();
    assert_eq!(paths.len(), names.len(), "{paths:#?}");
    for path in &paths {
        let file = path
            .strip_prefix("tests/s/")
            .and_then(|f| f.strip_suffix(".html"))
            .unwrap_or_else(|| panic!("{path}"));
        assert!(!file.contains('/'), "nested: {path}");
        assert!(!file.is_empty() && !file.starts_with('.'), "{path}");
        assert!(file.len() <= 200, "{path}");
        assert!(
            file.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-~=".contains(&b)),
            "{path}"
        );
    }
    assert_eq!(
        test_page_path("xfstests", "btrfs/001"),
        "tests/xfstests/btrfs~001.html"
    );
    assert_eq!(
        test_page_path("btrfs-progs", "cli/001-btrfs"),
        "tests/btrfs-progs/cli~001-btrfs.html"
    );
    assert_ne!(test_page_path("a/b", "c"), test_page_path("a_b", "c"));
}

#[test]
fn the_trend_has_a_point_per_judged_run() {
    let runs = history();
    let refs: Vec<&RunSummary> = runs.iter().collect();
    let trend = trend(&refs, "").unwrap();
    assert_eq!(trend.dots.len(), 4);
    assert_eq!(trend.dots[0].id, "r2", "oldest on the left");
    assert!(trend.dots[3].label.contains("50.0% passed (2 of 4)"));
    assert!(trend.points.split(' ').count() == 4);
}

/// Runs of a kernel matrix: `(id, day, kernel name, matrix, verdict of "t")`.
fn matrix_runs(runs: &[(&str, u32, &str, &str, Verdict)]) -> Vec<RunSummary> {
    runs.iter()
        .map(|&(id, day, kernel, matrix, verdict)| {
            let mut run = run(id, day, &[("t", verdict)]);
            run.kernel_name = Some(kernel.into());
            run.matrix = Some(matrix.into());
            run
        })
        .collect()
}

#[test]
fn a_kernel_matrix_stands_side_by_side_and_compares_within_each_kernel() {
    use Verdict::*;
    let mut runs = matrix_runs(&[
        ("b-next", 3, "for-next", "m2", Fail),
        ("b-stable", 3, "stable", "m2", Fail),
        ("a-next", 2, "for-next", "m1", Fail),
        ("a-stable", 2, "stable", "m1", Pass),
    ]);
    runs.push(run("lone", 1, &[("t", Pass)]));
    let matrix = matrix(&runs);
    let groups: Vec<_> = matrix
        .groups
        .as_ref()
        .unwrap()
        .iter()
        .map(|g| (g.matrix, g.span))
        .collect();
    assert_eq!(groups, [(Some("m2"), 2), (Some("m1"), 2), (None, 1)]);
    assert_eq!(matrix.columns[0].kernel_name, Some("for-next"));
    let marks: Vec<_> = matrix.rows[0]
        .cells
        .iter()
        .map(|c| c.as_ref().and_then(|c| c.mark))
        .collect();
    // stable broke in m2 (it passed in m1); for-next kept failing, and
    // the run outside the matrix is no kernel line of theirs.
    assert_eq!(marks, [None, Some("new"), None, None, None]);
    assert!(!matrix.rows[0].flaky);

    let history: Vec<(usize, &TestEntry)> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (i, &r.tests[0]))
        .collect();
    let page = test_page(("s", "t"), &history, &runs);
    let kernels: Vec<_> = page
        .kernels
        .iter()
        .map(|k| (k.name, k.runs, k.pass, k.fail, k.last))
        .collect();
    assert_eq!(
        kernels,
        [("for-next", 2, 0, 2, "fail"), ("stable", 2, 1, 1, "fail")]
    );
    assert_eq!(page.rows[0].kernel_name, Some("for-next"));
    // Without a matrix there are no groups and no per-kernel history.
    let plain = super::tests::history();
    assert!(super::matrix(&plain).groups.is_none());
}
