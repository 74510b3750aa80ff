//! What a run page says beyond its verdicts: where an imported run came
//! from and which tests became far slower.

use btrfsqa_model::compare::{ClassCounts, ComparisonSummary, Slowdown};
use btrfsqa_model::{ImportOrigin, RunId};

use super::*;

#[test]
fn an_imported_run_names_its_origin_and_slower_tests_are_listed() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = ResultsStore::new(store_dir.path());
    let mut report = fixed_report();
    report.import = Some(ImportOrigin {
        source: "/srv/xfstests/results".into(),
        kind: "xfstests".into(),
        host: Some("qa1".into()),
        user: Some("kdave".into()),
        imported_at: at("2026-11-24T12:00:00Z"),
    });
    report.comparison = Some(ComparisonSummary {
        run_id: RunId::parse(RUN).unwrap(),
        baseline: None,
        counts: ClassCounts::default(),
        regressions: vec![],
        notable: vec![],
        droppable: vec![],
        slower: vec![Slowdown {
            suite: "xfstests".into(),
            profile: None,
            name: "btrfs/001".into(),
            secs: 95.0,
            median_secs: 30.0,
            threshold_secs: 42.0,
            samples: 7,
        }],
        dashboard_url: None,
    });
    store.write_report(&report).unwrap();
    Dashboard::new().render(&store, site.path()).unwrap();

    let page = read(site.path().join("runs").join(RUN).join("index.html"));
    assert!(
        page.contains(
            "Imported from <code>/srv/xfstests/results</code> (xfstests) on 2026-11-24 12:00 UTC by kdave@qa1"
        ),
        "{page}"
    );
    assert!(page.contains("1 far slower"), "{page}");
    let slower = &page[page.find("Far slower than before").expect("a slower list")..];
    assert!(
        slower.contains("<code class=\"tn\">btrfs/001</code></a> <span class=\"muted\">95 s, usually 30 s (median of 7)</span>"),
        "{slower}"
    );
    assert_only_template_markup(&page);
}

#[test]
fn a_matrix_of_runs_that_all_passed_still_shows_each_run() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = ResultsStore::new(store_dir.path());
    for (id, kernel) in [
        ("20261125-100000-aaaa", "installed"),
        ("20261125-100000-bbbb", "for-next"),
    ] {
        let mut report = RunReport::start(
            RunId::parse(id).unwrap(),
            at("2026-11-25T10:00:00Z"),
            Provenance::default(),
        );
        report.labels.insert("kernel".into(), kernel.into());
        report.labels.insert("matrix".into(), "m1".into());
        let mut suite = SuiteReport::new("raid56-scrub");
        suite.tests.push(outcome(
            "raid56-scrub",
            "raid5-data-repair",
            Verdict::Pass,
            6.0,
        ));
        report.suites.push(suite);
        report.finish(RunStatus::Completed, at("2026-11-25T10:05:00Z"));
        store.write_report(&report).unwrap();
    }
    Dashboard::new().render(&store, site.path()).unwrap();
    let page = read(site.path().join("matrix.html"));
    assert!(
        page.contains("<th class=\"group\" colspan=\"2\">kernel matrix</th>"),
        "{page}"
    );
    for kernel in ["installed", "for-next"] {
        assert!(
            page.contains(&format!("<span class=\"kernel-name\">{kernel}</span>")),
            "{page}"
        );
    }
    assert!(page.contains(
        "<td class=\"steady\" colspan=\"3\">Every test passed (or was skipped) in these runs.</td>"
    ));
    assert_only_template_markup(&page);
}
