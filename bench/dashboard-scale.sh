#!/usr/bin/env bash
# The dashboard at scale: a results store of 1,000 runs of 1,200 tests,
# rendered whole, then again after one more run. Prints both times and the
# ratio; adding a run must cost a small fraction of a full render (target:
# under 2 s). Then the size of the site against its budget: GitHub Pages
# publishes sites of up to 1 GB, and 1,000 runs of 1,200 tests must take at
# most 300 MB (scaled by runs x tests for other sizes). Exits 1 over budget.
#
#   bench/dashboard-scale.sh [RUNS [TESTS]]     (default 1000 1200)
#
# Needs about 1 GB of disk in $TMPDIR for the store and the site.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000}
tests=${2:-1200}
budget_mb=$(( 300 * runs * tests / (1000 * 1200) ))
work=$(mktemp -d "${TMPDIR:-/tmp}/btrfsqa-dashboard-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet -p btrfsqa-publish --example dashboard_scale
target/release/examples/dashboard_scale "$work" "$runs" "$tests"
# What a static host stores: the files' sizes (du -b), not disk blocks.
bytes=$(du -sb "$work/site" | cut -f1)
size_mb=$(( (bytes + 999999) / 1000000 ))
files=$(find "$work/site" -type f | wc -l)
for part in runs tests; do
  du -sb "$work/site/$part" | awk -v p="$part" '{ printf "  %-6s %6.1f MB\n", p "/", $1 / 1e6 }'
done
echo "site size: $size_mb MB in $files files; budget $budget_mb MB for $runs runs of $tests tests (GitHub Pages: 1 GB)"
if [ "$size_mb" -gt "$budget_mb" ]; then
  echo "dashboard-scale.sh: the site is over its budget" >&2
  exit 1
fi
