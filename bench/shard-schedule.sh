#!/usr/bin/env bash
# How close the sharded scheduler gets to the best possible makespan.
#
# Schedules real fstests durations (fstests' check.time files captured on
# btrfs, under crates/btrfsqa-suites/fixtures/) over 1 to 32 machines and
# prints, for each N, makespan / lower bound, where the lower bound is
# max(longest test, total / N), for btrfsqa's longest-first pulling beside
# round-robin and fstests' own (alphabetical) order. Two work lists:
#   - one run of the captured tests;
#   - the profile matrix a real run schedules: every test under each of the
#     nine shipped btrfs profiles (durations reused across profiles).
# Goal: longest-first at most 1.10 wherever the lower bound is not the
# longest test (marked "(longest test)" otherwise).
#
#   bench/shard-schedule.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin btrfsqa
bin=target/debug/btrfsqa
times=crates/btrfsqa-suites/fixtures/xfstests/btrfs-loop-30/check.time
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

matrix=$work/matrix.time
for profile in default compress holes no-free-space-tree block-group-tree nodatacow discard raid raid56-scrub; do
  awk -v p="$profile" 'NF >= 2 { print p ":" $1, $2 }' "$times"
done > "$matrix"

fail=0
for list in "$times" "$matrix"; do
  echo "== $(basename "$list"): $(wc -l < "$list") tests"
  for n in 1 2 3 4 6 8 12 16 24 32; do
    line=$("$bin" plan --durations "$list" --shards "$n" --compare)
    echo "$line"
    case "$line" in
      *"(longest test)"*) ;;
      *) ratio=$(sed -E 's/.*longest-first=[0-9]+s \(([0-9.]+)\).*/\1/' <<<"$line")
         if [ "$(echo "$ratio > 1.10" | bc)" -eq 1 ]; then fail=1; fi ;;
    esac
  done
done
if [ "$fail" -eq 0 ]; then echo "goal met: longest-first <= 1.10 x lower bound wherever it is not the longest test"; else echo "goal missed"; exit 1; fi
