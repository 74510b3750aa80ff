//! `btrfsqa plan`: who would run what, and when the run would end
//! ([`btrfsqa_runner::plan::forecast`]).

use std::num::NonZeroUsize;

use btrfsqa_runner::RunOverrides;
use btrfsqa_runner::plan::{Forecast, ForecastRequest, PlanSource, forecast};
use btrfsqa_runner::schedule::Plan;

use super::{Outcome, load_settings, usage};
use crate::args::PlanArgs;
use crate::exit::Code;

pub async fn plan(args: PlanArgs) -> Outcome {
    let Some(machines) = NonZeroUsize::new(args.shards) else {
        return usage("--shards must be at least 1");
    };
    if args.setup_secs.is_some_and(|s| !s.is_finite() || s < 0.0) {
        return usage("--setup-secs must be a number of seconds, 0 or more");
    }
    let source = match &args.durations {
        Some(file) => PlanSource::CheckTime(file.clone()),
        None => {
            let overrides = RunOverrides {
                suites: args.suites.clone(),
                profiles: args.profiles.clone(),
                ..RunOverrides::default()
            };
            PlanSource::Configured(Box::new(load_settings(&args.config, overrides)?))
        }
    };
    let request = ForecastRequest {
        source,
        machines,
        setup_secs: args.setup_secs,
        compare: args.compare,
    };
    let forecast = forecast(&request).await?;
    let plan = &forecast.plan;
    for warning in &plan.warnings {
        errln!("warning: {warning}");
    }
    for (suite, error) in &plan.failures {
        errln!("error: suite {suite}: {error}");
    }
    print_forecast(&forecast, args.shards);
    // A suite that cannot list its tests would not run.
    Ok(if plan.failures.is_empty() {
        Code::Ok
    } else {
        Code::Infrastructure
    })
}

/// The comparison line when the forecast has the alternatives, else each
/// machine's tests and the totals.
fn print_forecast(forecast: &Forecast, shards: usize) {
    let items = &forecast.plan.items;
    let lower = forecast.lower_bound_secs;
    let predicted = &forecast.predicted;
    if let Some(alternatives) = &forecast.alternatives {
        let ratio = |p: &Plan| p.makespan() / lower.max(f64::MIN_POSITIVE);
        outln!(
            "shards={:<3} tests={} lower-bound={:.0}s{} btrfsqa={:.0}s ({:.3}, {} batches) one-per-batch={:.0}s ({:.3}) round-robin={:.0}s ({:.3}) in-order={:.0}s ({:.3})",
            shards,
            items.len(),
            lower,
            if forecast.bound_by_longest {
                " (longest test)"
            } else {
                ""
            },
            predicted.makespan(),
            ratio(predicted),
            predicted.batches.iter().sum::<usize>(),
            alternatives.one_per_batch.makespan(),
            ratio(&alternatives.one_per_batch),
            alternatives.round_robin.makespan(),
            ratio(&alternatives.round_robin),
            alternatives.in_order.makespan(),
            ratio(&alternatives.in_order),
        );
        return;
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
        forecast.plan.total_secs(),
        predicted.makespan(),
        shards
    );
}
