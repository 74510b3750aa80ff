#!/usr/bin/env bash
# How long the run controller takes to merge a large run's outcomes into its
# report: 1,000 and 10,000 tests arriving in batches (as a sharded run of
# fstests' whole auto group under nine profiles delivers them), merged,
# then ordered as one machine would have run them. Prints the merge time
# and, apart, the time spent writing report.json after every batch.
# Goal: 10,000 tests merge in well under a second.
#
#   bench/merge-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --quiet -p btrfsqa-runner --lib run::controller::tests::merge_scale \
  -- --ignored --nocapture 2>&1 | grep -E "tests in batches"
