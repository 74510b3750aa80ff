//! Measures the dashboard at scale: generates a results store of RUNS runs
//! of TESTS tests each, renders the whole site, adds one run and renders
//! again, and prints both times, their ratio, and the incremental time
//! against its 2 s target (`bench/dashboard-scale.sh` adds the site's size
//! against its budget).
//!
//! ```text
//! cargo run --release -p btrfsqa-publish --example dashboard_scale -- WORK_DIR [RUNS [TESTS]]
//! ```
//!
//! `bench/dashboard-scale.sh` runs it with 1,000 runs of 1,200 tests.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use btrfsqa_model::{
    KernelInfo, Provenance, ResultsStore, RunId, RunReport, RunStatus, SuiteReport, TestOutcome,
    Verdict,
};
use btrfsqa_publish::Dashboard;

/// A small deterministic generator, so every run of the benchmark is the same.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn run(i: usize, tests: usize, rng: &mut Lcg) -> RunReport {
    let started = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
        + chrono::Duration::hours(6 * i as i64);
    let id = RunId::parse(&format!("{}-{:04x}", started.format("%Y%m%d-%H%M%S"), i)).unwrap();
    let kernel = KernelInfo {
        release: Some(format!("6.{}.0-rc{}", 10 + i / 50, 1 + i % 7)),
        ..KernelInfo::default()
    };
    let provenance = Provenance {
        btrfsqa_version: "0.1.0".into(),
        provider: "aws".into(),
        kernel,
        ..Provenance::default()
    };
    let mut report = RunReport::start(id, started, provenance);
    report.labels.insert("profile".into(), "nightly".into());
    let mut suite = SuiteReport::new("xfstests");
    for t in 0..tests {
        let group = if t % 3 == 0 { "generic" } else { "btrfs" };
        let roll = rng.next() % 1000;
        // A few tests always fail, a few flip, the rest pass or skip.
        let always_fails = t % 97 == 0;
        let flips = t % 89 == 0 && roll < 400;
        let verdict = if always_fails || flips || (60..62).contains(&roll) {
            Verdict::Fail
        } else if roll < 60 {
            Verdict::Skip
        } else {
            Verdict::Pass
        };
        let mut outcome = TestOutcome::new("xfstests", format!("{group}/{t:03}"), verdict);
        outcome.profile = Some(
            if t % 2 == 0 {
                "default"
            } else {
                "compress=zstd"
            }
            .into(),
        );
        outcome.duration_secs = Some((rng.next() % 300) as f64 / 3.0);
        if verdict != Verdict::Pass {
            outcome.message = Some(format!("- output mismatch (see {group}/{t:03}.out.bad)"));
        }
        suite.tests.push(outcome);
    }
    report.suites.push(suite);
    report.finish(RunStatus::Completed, started + chrono::Duration::hours(3));
    report.cost_usd = Some(1.25);
    report
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(work) = args.first() else {
        eprintln!("usage: dashboard_scale WORK_DIR [RUNS [TESTS]]");
        return ExitCode::from(2);
    };
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let tests: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1200);
    let work = Path::new(work);
    let store = ResultsStore::new(work.join("results"));
    let site = work.join("site");
    let _ = std::fs::remove_dir_all(&site);
    let mut rng = Lcg(42);

    let started = Instant::now();
    for i in 0..runs {
        store.write_report(&run(i, tests, &mut rng)).unwrap();
    }
    eprintln!(
        "generated {runs} runs of {tests} tests in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let dashboard = Dashboard::new();
    let started = Instant::now();
    let full = dashboard.render(&store, &site).unwrap();
    let full_secs = started.elapsed().as_secs_f64();
    println!(
        "full render: {full_secs:.2} s ({} run pages, {} other pages and files)",
        full.written.len(),
        full.site_files_written
    );

    store.write_report(&run(runs, tests, &mut rng)).unwrap();
    let started = Instant::now();
    let one = dashboard.render(&store, &site).unwrap();
    let one_secs = started.elapsed().as_secs_f64();
    println!(
        "incremental render (one new run): {one_secs:.2} s ({} run page, {} other pages and files written, {} unchanged, {} run pages up to date)",
        one.written.len(),
        one.site_files_written,
        one.site_files_unchanged,
        one.skipped.len()
    );
    println!(
        "ratio incremental/full: {:.3} ({:.1}x faster)",
        one_secs / full_secs,
        full_secs / one_secs
    );
    println!("incremental render: {one_secs:.2} s of a 2 s target");
    ExitCode::SUCCESS
}
