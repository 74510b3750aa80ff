#!/usr/bin/env bash
# The dashboard at scale: a results store of 1,000 runs of 1,200 tests,
# rendered whole, then again after one more run. Prints both times and the
# ratio; adding a run must cost a small fraction of a full render.
#
#   bench/dashboard-scale.sh [RUNS [TESTS]]     (default 1000 1200)
#
# Needs about 1.5 GB of disk in $TMPDIR for the store and the site.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000}
tests=${2:-1200}
work=$(mktemp -d "${TMPDIR:-/tmp}/btrfsqa-dashboard-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet -p btrfsqa-publish --example dashboard_scale
target/release/examples/dashboard_scale "$work" "$runs" "$tests"
du -sh "$work/site" | awk '{ print "site size: " $1 }'
