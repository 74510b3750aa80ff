#!/usr/bin/env bash
# How much the orchestrator adds to the tests it runs.
#
# Runs N trivial script tests (default 200, each `sleep 0.05`: a test that
# does almost nothing, so the orchestrator's share is as large as it gets)
# twice: through the whole pipeline (`btrfsqa run` on the local provider:
# six loop devices provisioned and torn down, per-test logs, events, journal,
# report) and directly (a shell loop running the same scripts with the same
# environment, keeping stdout and stderr per test), once more directly with
# each test's kernel log read as the pipeline reads it. Prints the times and
# the pipeline's ratio to the like-for-like loop; the goal is under 1.10.
#
#   sudo bench/pipeline-overhead.sh [N] [SLEEP]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
work_secs=${2:-0.05}
[ "$(id -u)" -eq 0 ] || { echo "needs root (loop devices)" >&2; exit 2; }
# A debug build: the orchestrator is not CPU-bound, and a release build of
# the AWS SDK takes many minutes.
cargo build --quiet --bin btrfsqa
bin=$PWD/target/debug/btrfsqa

dir=$(mktemp -d /var/tmp/btrfsqa-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/scripts"
for i in $(seq -w 1 "$n"); do
  printf '#!/bin/sh\necho "test %s on $TEST_DEV"\nsleep %s\n' "$i" "$work_secs" > "$dir/scripts/${i}_trivial"
  chmod +x "$dir/scripts/${i}_trivial"
done
cat > "$dir/btrfsqa.toml" <<TOML
[run]
suites = ["bench"]
results-dir = "results"
[machine]
data-devices = 6
device-size-gib = 1
[providers.local]
work-dir = "work"
[suites.scripts.bench]
dir = "scripts"
TOML

now() { date +%s.%N; }

# Directly: the same scripts, the same environment, logs kept per test.
mkdir -p "$dir/direct"
start=$(now)
for script in "$dir"/scripts/*; do
  name=$(basename "$script")
  TEST_DEV=/dev/null SCRATCH_DEV_POOL= "$script" >"$dir/direct/$name.out" 2>"$dir/direct/$name.err" || true
done
direct=$(echo "$(now) - $start" | bc)

# Directly, reading each test's kernel log the way the pipeline does (and as
# fstests' _check_dmesg does after every test): a kernel QA loop does this
# work whoever runs it, so the overhead is measured against this loop.
mkdir -p "$dir/direct-kmsg"
start=$(now)
for script in "$dir"/scripts/*; do
  name=$(basename "$script")
  sh -c 'exec 9</dev/kmsg; dd <&9 iflag=nonblock bs=65536 of=/dev/null 2>/dev/null
    TEST_DEV=/dev/null SCRATCH_DEV_POOL= "$1" 9<&- >"$2.out" 2>"$2.err"
    dd <&9 iflag=nonblock bs=65536 >"$2.kmsg" 2>/dev/null; true' sh "$script" "$dir/direct-kmsg/$name"
done
direct_kmsg=$(echo "$(now) - $start" | bc)

start=$(now)
"$bin" run --config "$dir/btrfsqa.toml" --message-format json >"$dir/events.jsonl" 2>"$dir/stderr.log" || {
  echo "the pipeline run failed:" >&2; tail -20 "$dir/stderr.log" >&2; exit 1; }
pipeline=$(echo "$(now) - $start" | bc)

passed=$(grep -c '"verdict":"pass"' "$dir/events.jsonl" || true)
[ "$passed" -eq "$n" ] || { echo "expected $n passes, saw $passed" >&2; exit 1; }
ratio=$(echo "scale=3; $pipeline / $direct_kmsg" | bc)
bare=$(echo "scale=3; $pipeline / $direct" | bc)
printf 'tests: %d (each sleep %s)\ndirect:   %.2f s\ndirect, reading each test'"'"'s kernel log: %.2f s\npipeline: %.2f s (provision, %d tests with their kernel logs, teardown)\nratio: %s (goal < 1.10; %s against the loop that reads no kernel log)\n' \
  "$n" "$work_secs" "$direct" "$direct_kmsg" "$pipeline" "$n" "$ratio" "$bare"
