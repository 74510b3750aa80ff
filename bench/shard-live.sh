#!/usr/bin/env bash
# Real sharded fstests runs on this machine, measured in one go:
#
#   1. wall time of `btrfsqa run` with 1 local machine against 2 local
#      machines on the same ~40 fstests tests (bench/fstests-40.list),
#      alternated twice, the faster run of each side kept;
#      goal: 1 shard / 2 shards >= 1.7;
#   2. with the fstests build cached, the 1-machine run's wall time against
#      the tests' own time: `./check` run directly on the same tests on the
#      same kind of devices (goal <= 1.10), and, for reference, the sum of
#      the durations fstests reports (whole seconds, without the filesystem
#      checks it runs after every test);
#   3. fstests' set-up per batch (what a `./check` invocation costs beside
#      its tests), which bench/shard-schedule.sh uses;
#   4. the controller's peak RSS (VmHWM of the btrfsqa process) on those
#      runs and while it drives 8 local machines through 160 short script
#      tests; goal < 64 MB.
#
# Needs root (loop devices) and fstests: BTRFSQA_FSTESTS_GIT, or the bundle
# in ../shared/fixtures/fstests-src. A first, unmeasured run builds fstests
# into the build cache and records the durations the scheduler plans with.
#
#   sudo bench/shard-live.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "needs root (loop devices)" >&2; exit 2; }
git_url=${BTRFSQA_FSTESTS_GIT:-}
if [ -z "$git_url" ]; then
  bundle=$(ls ../shared/fixtures/fstests-src/*.bundle /work/shared/fixtures/fstests-src/*.bundle 2>/dev/null | head -n 1 || true)
  [ -n "$bundle" ] || { echo "no fstests: set BTRFSQA_FSTESTS_GIT" >&2; exit 2; }
  git_url=/var/tmp/btrfsqa-fstests-src
  [ -d "$git_url/.git" ] || git clone -q "$bundle" "$git_url"
fi
cargo build --quiet --bin btrfsqa
bin=$PWD/target/debug/btrfsqa
dir=$(mktemp -d /var/tmp/btrfsqa-shard-live.XXXXXX)
trap 'rm -rf "$dir"' EXIT
tests=$(grep -v '^#' bench/fstests-40.list | sed 's/.*/"&"/' | paste -sd, -)
cat > "$dir/fstests.toml" <<TOML
[run]
suites = ["xfstests"]
results-dir = "results"
[machine]
data-devices = 6
device-size-gib = 10
[providers.local]
work-dir = "work"
[suites.xfstests]
git-url = "$git_url"
cache-dir = "cache"
tests = [$tests]
TOML
mkdir -p "$dir/scripts"
for i in $(seq -w 1 160); do
  printf '#!/bin/sh\nsleep 1\n' > "$dir/scripts/${i}_short"
  chmod +x "$dir/scripts/${i}_short"
done
cat > "$dir/scripts.toml" <<TOML
[run]
suites = ["short"]
results-dir = "results-scripts"
[machine]
data-devices = 6
device-size-gib = 1
[providers.local]
work-dir = "work"
[suites.scripts.short]
dir = "scripts"
TOML

cd "$dir"
python3 - "$bin" <<'PY'
import glob, json, os, subprocess, sys, time

bin = sys.argv[1]

def run(config, shards, label):
    """Runs btrfsqa; returns (wall seconds, peak RSS in MB, report)."""
    start = time.monotonic()
    child = subprocess.Popen([bin, "run", "--config", config, "--shards", str(shards)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.2)
    wall = time.monotonic() - start
    results = "results" if "fstests" in config else "results-scripts"
    newest = max(glob.glob(f"{results}/*/report.json"), key=os.path.getmtime)
    report = json.load(open(newest))
    tests = [t for s in report["suites"] for t in s["tests"]]
    machines = sorted({t.get("machine") for t in tests if t.get("machine")})
    print(f"{label}: {len(tests)} tests on {len(machines)} machines in {wall:.1f} s, "
          f"status {report['status']}, controller peak RSS {peak / 1024:.1f} MB", flush=True)
    return wall, peak / 1024, report, newest

from datetime import datetime

def test_secs(report):
    return sum(t.get("duration_secs") or 0 for s in report["suites"] for t in s["tests"])

def test_costs(report):
    """What each test cost its machine: the time to the next test's start in
    the same batch (fstests checks the filesystems after each test and
    reports whole seconds), else its duration."""
    tests = [t for s in report["suites"] for t in s["tests"] if t.get("started_at")]
    at = lambda t: datetime.fromisoformat(t["started_at"].replace("Z", "+00:00"))
    total = 0.0
    for machine in {t.get("machine") for t in tests}:
        mine = sorted((t for t in tests if t.get("machine") == machine), key=at)
        for i, t in enumerate(mine):
            cost = t.get("duration_secs") or 0
            if i + 1 < len(mine):
                gap = (at(mine[i + 1]) - at(t)).total_seconds()
                if cost <= gap <= cost + 10:
                    cost = gap
            total += cost
    return total

def batches(report_path):
    journal = os.path.join(os.path.dirname(report_path), "journal.jsonl")
    return sum(1 for line in open(journal) if '"event":"suite-started"' in line)

def check_directly(tests):
    """Wall time of fstests' own ./check on `tests`, in a tree unpacked from
    the runs' build cache, on six fresh 10 GiB loop devices."""
    archive = glob.glob("cache/builds/xfstests-*.tar.gz")[0]
    os.makedirs("direct/fstests", exist_ok=True)
    subprocess.run(["tar", "-xzf", archive, "-C", "direct/fstests"], check=True)
    devices = []
    try:
        for i in range(6):
            path = f"direct/d{i}.img"
            with open(path, "wb") as f:
                f.truncate(10 << 30)
            devices.append(subprocess.run(["losetup", "-f", "--show", path], check=True,
                                          capture_output=True, text=True).stdout.strip())
        mnt = os.path.abspath("direct/mnt")
        for d in ("test", "scratch", "results"):
            os.makedirs(f"{mnt}/{d}", exist_ok=True)
        with open("direct/fstests/local.config", "w") as f:
            f.write(f"[default]\nFSTYP=btrfs\nTEST_DEV={devices[0]}\nTEST_DIR={mnt}/test\n"
                    f"SCRATCH_MNT={mnt}/scratch\nSCRATCH_DEV_POOL=\"{' '.join(devices[1:])}\"\n"
                    f"RESULT_BASE={mnt}/results\n")
        subprocess.run(["mkfs.btrfs", "-f", "-q", devices[0]], check=True)
        start = time.monotonic()
        subprocess.run(["./check", "-s", "default", *tests], cwd="direct/fstests",
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.monotonic() - start
    finally:
        for d in ("test", "scratch"):
            subprocess.run(["umount", f"direct/mnt/{d}"], stderr=subprocess.DEVNULL)
        for device in devices:
            subprocess.run(["losetup", "-d", device])

run("fstests.toml", 1, "warm-up (builds fstests, records durations)")
# Alternated, twice, the faster of each kept: this machine's noise hits
# both sides alike.
rounds = [(run("fstests.toml", 1, "1 machine "), run("fstests.toml", 2, "2 machines"))
          for _ in range(2)]
one, rss1, report1, path1 = min((r[0] for r in rounds), key=lambda x: x[0])
two, rss2, report2, path2 = min((r[1] for r in rounds), key=lambda x: x[0])
verdicts = lambda r: sorted((t["name"], t["verdict"]) for s in r["suites"] for t in s["tests"])
same = all(verdicts(a[2]) == verdicts(b[2]) for a, b in rounds)
print(f"speed-up 1 -> 2 machines: {one:.1f} s / {two:.1f} s = {one / two:.2f} (goal >= 1.7); "
      f"verdicts equal in every run: {same}")
# Two machines of the local provider share this host's CPUs and disk: each
# test costs more beside another. What the scheduler makes of what the
# tests cost side by side: the makespan against half their total.
alone, side = test_costs(report1), test_costs(report2)
print(f"  the tests cost {side:.0f} s side by side against {alone:.0f} s alone "
      f"({side / alone:.2f}x): the host's limit is {2 * alone / side:.2f}; "
      f"the run reached {100 * (side / 2) / two:.0f}% of it (makespan {two:.1f} s against {side / 2:.1f} s)")
secs, costs = test_secs(report1), test_costs(report1)
tests = [t["name"] for s in report1["suites"] for t in s["tests"]]
direct = check_directly(tests)
print(f"1 machine, build cached: wall {one:.1f} s / ./check itself {direct:.1f} s = {one / direct:.3f} (goal <= 1.10); "
      f"/ the tests' own durations {secs:.0f} s = {one / secs:.3f}")
suite_secs = sum(s.get("duration_secs") or 0 for s in report2["suites"])
n = batches(path2)
print(f"fstests set-up per batch: {(suite_secs - test_costs(report2)) / max(n, 1):.1f} s "
      f"({n} batches on 2 machines; {batches(path1)} on 1)")
_, rss8, _, _ = run("scripts.toml", 8, "8 machines, 160 script tests")
print(f"controller peak RSS: {max(rss1, rss2):.1f} MB driving fstests, {rss8:.1f} MB driving 8 machines (goal < 64 MB)")
PY
