//! `btrfsqa plan`: who would run what, and when the run would end.

use btrfsqa_model::ResultsStore;
use btrfsqa_runner::RunOverrides;
use btrfsqa_runner::schedule::{self, Plan, WorkItem};

use super::{load_settings, print_error};
use crate::args::PlanArgs;
use crate::exit::Code;

pub fn plan(args: PlanArgs) -> Code {
    if args.shards == 0 {
        eprintln!("error: --shards must be at least 1");
        return Code::Usage;
    }
    let items = match &args.durations {
        // fstests' check.time: every test in it, with its duration.
        Some(file) => match std::fs::read_to_string(file) {
            Ok(text) => {
                let times = btrfsqa_suites::xfstests::parse::parse_check_time(&text);
                if times.is_empty() {
                    eprintln!(
                        "error: `{}` holds no `TEST SECONDS` lines (fstests' check.time format)",
                        file.display()
                    );
                    return Code::Usage;
                }
                times
                    .into_iter()
                    .map(|(id, estimate_secs)| WorkItem { id, estimate_secs })
                    .collect()
            }
            Err(err) => {
                eprintln!("error: cannot read `{}`: {err}", file.display());
                return Code::Usage;
            }
        },
        // The configured suites, with durations from the results store.
        None => match configured_items(&args) {
            Ok(items) => items,
            Err(code) => return code,
        },
    };
    let lower = schedule::lower_bound(&items, args.shards);
    let plan = schedule::longest_first(&items, args.shards);
    if args.compare {
        let ratio = |p: &Plan| p.makespan() / lower.max(f64::MIN_POSITIVE);
        let rr = schedule::round_robin(&items, args.shards);
        let ordered = schedule::in_order(&items, args.shards);
        let longest = items.iter().map(|i| i.estimate_secs).fold(0.0, f64::max);
        println!(
            "shards={:<3} tests={} lower-bound={:.0}s{} longest-first={:.0}s ({:.3}) round-robin={:.0}s ({:.3}) in-order={:.0}s ({:.3})",
            args.shards,
            items.len(),
            lower,
            if (lower - longest).abs() < 1e-9 {
                " (longest test)"
            } else {
                ""
            },
            plan.makespan(),
            ratio(&plan),
            rr.makespan(),
            ratio(&rr),
            ordered.makespan(),
            ratio(&ordered),
        );
        return Code::Ok;
    }
    for (machine, (tests, busy)) in plan.machines.iter().zip(&plan.busy_secs).enumerate() {
        println!("machine {machine}: {} tests, {busy:.0} s", tests.len());
        for item in tests {
            println!("  {:<40} {:>8.0} s", item.id, item.estimate_secs);
        }
    }
    let total: f64 = items.iter().map(|i| i.estimate_secs).sum();
    println!(
        "\n{} tests, {total:.0} s in all; predicted makespan {:.0} s on {} machines (lower bound {lower:.0} s)",
        items.len(),
        plan.makespan(),
        args.shards
    );
    Code::Ok
}

fn configured_items(args: &PlanArgs) -> Result<Vec<WorkItem>, Code> {
    let settings = load_settings(&args.config, RunOverrides::default())?;
    let suites = btrfsqa_runner::registry::suites(&settings).map_err(|err| {
        print_error(&err);
        Code::Usage
    })?;
    let history = schedule::history_durations(&ResultsStore::new(settings.results_dir()));
    let items = schedule::suite_work(&suites, &history, &|_| Vec::new())
        .into_iter()
        .map(|work| {
            let id = suites[work.suite].id();
            WorkItem {
                id: match work.test {
                    Some(test) => format!("{id}/{test}"),
                    None => format!("{id} (whole suite)"),
                },
                estimate_secs: work.estimate_secs,
            }
        })
        .collect();
    Ok(items)
}
