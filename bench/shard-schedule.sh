#!/usr/bin/env bash
# How close the run controller's scheduler gets to the best possible
# makespan on a real fstests pass.
#
# Replays the durations of a whole `./check -g btrfs/auto` pass captured on
# this kind of machine (crates/btrfsqa-suites/fixtures/xfstests/btrfs-auto-340/
# check.time, 276 tests with a duration) through the real scheduler (the
# queue and batching a run uses, `btrfsqa plan --durations`), each batch
# paying fstests' per-invocation set-up as bench/shard-live.sh measures it,
# for 2, 4, 8, 16 and 32 machines. Prints makespan / max(longest test,
# sum / N) for the scheduler, and beside it one test per batch, round-robin
# and fstests' own order. Goal: at most 1.10 up to 16 machines, 1.20 at 32.
#
#   bench/shard-schedule.sh [SETUP-SECS]      (default: 1.5 s, as the runner plans)
set -euo pipefail
cd "$(dirname "$0")/.."
setup=${1:-1.5}
cargo build --quiet --bin btrfsqa
bin=target/debug/btrfsqa
times=crates/btrfsqa-suites/fixtures/xfstests/btrfs-auto-340/check.time
echo "== $(basename "$(dirname "$times")"): $(wc -l < "$times") tests, ${setup} s of set-up per batch"
fail=0
for n in 2 4 8 16 32; do
  line=$("$bin" plan --durations "$times" --shards "$n" --compare --setup-secs "$setup")
  echo "$line"
  ratio=$(sed -E 's/.* btrfsqa=[0-9]+s \(([0-9.]+),.*/\1/' <<<"$line")
  goal=1.10
  [ "$n" -ge 32 ] && goal=1.20
  echo "  ratio $ratio (goal <= $goal)"
  if [ "$(echo "$ratio > $goal" | bc)" -eq 1 ]; then fail=1; fi
done
if [ "$fail" -eq 0 ]; then echo "goal met"; else echo "goal missed"; exit 1; fi
