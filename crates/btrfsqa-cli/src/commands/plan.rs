//! `btrfsqa plan`: who would run what, and when the run would end.

use btrfsqa_model::ResultsStore;
use btrfsqa_runner::RunOverrides;
use btrfsqa_runner::plan::{RunPlan, setup_estimate};
use btrfsqa_runner::schedule::{self, History, Plan, WorkItem};

use super::{load_settings, print_error};
use crate::args::PlanArgs;
use crate::exit::Code;

pub async fn plan(args: PlanArgs) -> Code {
    if args.shards == 0 {
        errln!("error: --shards must be at least 1");
        return Code::Usage;
    }
    if args.setup_secs.is_some_and(|s| !s.is_finite() || s < 0.0) {
        errln!("error: --setup-secs must be a number of seconds, 0 or more");
        return Code::Usage;
    }
    let plan = match &args.durations {
        // fstests' check.time: every test in it, with its duration.
        Some(file) => match std::fs::read_to_string(file) {
            Ok(text) => {
                let times = btrfsqa_suites::xfstests::parse::parse_check_time(&text);
                if times.is_empty() {
                    errln!(
                        "error: `{}` holds no `TEST SECONDS` lines (fstests' check.time format)",
                        file.display()
                    );
                    return Code::Usage;
                }
                RunPlan {
                    items: times
                        .into_iter()
                        .map(|(test, secs)| WorkItem::test("xfstests", &test, secs))
                        .collect(),
                    ..RunPlan::default()
                }
            }
            Err(err) => {
                errln!("error: cannot read `{}`: {err}", file.display());
                return Code::Usage;
            }
        },
        // The configured suites' tests, with durations from the results store.
        None => match configured(&args).await {
            Ok(plan) => plan,
            Err(code) => return code,
        },
    };
    for warning in &plan.warnings {
        errln!("warning: {warning}");
    }
    for (suite, error) in &plan.failures {
        errln!("error: suite {suite}: {error}");
    }
    let items = &plan.items;
    let setup = |item: &WorkItem| args.setup_secs.unwrap_or_else(|| setup_estimate(item));
    let lower = schedule::lower_bound(items, args.shards);
    let predicted = plan.predict(args.shards, &setup);
    if args.compare {
        let ratio = |p: &Plan| p.makespan() / lower.max(f64::MIN_POSITIVE);
        let unbatched = schedule::simulate_unbatched(items, args.shards, &setup);
        let rr = schedule::round_robin(items, args.shards);
        let ordered = schedule::in_order(items, args.shards);
        let longest = items.iter().map(|i| i.estimate_secs).fold(0.0, f64::max);
        outln!(
            "shards={:<3} tests={} lower-bound={:.0}s{} btrfsqa={:.0}s ({:.3}, {} batches) one-per-batch={:.0}s ({:.3}) round-robin={:.0}s ({:.3}) in-order={:.0}s ({:.3})",
            args.shards,
            items.len(),
            lower,
            if (lower - longest).abs() < 1e-9 {
                " (longest test)"
            } else {
                ""
            },
            predicted.makespan(),
            ratio(&predicted),
            predicted.batches.iter().sum::<usize>(),
            unbatched.makespan(),
            ratio(&unbatched),
            rr.makespan(),
            ratio(&rr),
            ordered.makespan(),
            ratio(&ordered),
        );
        return if plan.failures.is_empty() {
            Code::Ok
        } else {
            Code::Infrastructure
        };
    }
    for (machine, (tests, busy)) in predicted
        .machines
        .iter()
        .zip(&predicted.busy_secs)
        .enumerate()
    {
        outln!(
            "machine {machine}: {} tests in {} batches, {busy:.0} s",
            tests.len(),
            predicted.batches[machine]
        );
        for item in tests {
            outln!("  {:<48} {:>8.0} s", item.label(), item.estimate_secs);
        }
    }
    outln!(
        "\n{} tests, {:.0} s in all; predicted makespan {:.0} s on {} machines (lower bound {lower:.0} s)",
        items.len(),
        plan.total_secs(),
        predicted.makespan(),
        args.shards
    );
    if plan.failures.is_empty() {
        Code::Ok
    } else {
        Code::Infrastructure
    }
}

async fn configured(args: &PlanArgs) -> Result<RunPlan, Code> {
    let overrides = RunOverrides {
        suites: args.suites.clone(),
        profiles: args.profiles.clone(),
        ..RunOverrides::default()
    };
    let settings = load_settings(&args.config, overrides)?;
    let suites = btrfsqa_runner::registry::suites(&settings).map_err(|err| {
        print_error(&err);
        Code::Usage
    })?;
    let history = History::from_store(&ResultsStore::new(settings.results_dir()));
    Ok(RunPlan::build(&suites, &history, &Default::default()).await)
}
