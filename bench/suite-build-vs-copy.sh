#!/usr/bin/env bash
# Build each suite on every machine, or build it once and copy the built
# tree? Measured here, in one go, for fstests (what btrfsqa's build cache
# does: `make -j$(nproc)` in the pinned tree, `tar -cz` of the built tree,
# `tar -xz` on each other machine):
#
#   build   the time of the build of a fresh clone
#   pack    the time to pack the built tree (once per commit and image)
#   unpack  the time to unpack it (on every other machine)
#
# and prints build / unpack: how many times faster a machine gets its tree
# from the cache than by building it. Needs fstests' build dependencies
# (scripts/install-deps.sh) and fstests: BTRFSQA_FSTESTS_GIT, or the bundle
# in ../shared/fixtures/fstests-src.
#
#   bench/suite-build-vs-copy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
git_url=${BTRFSQA_FSTESTS_GIT:-}
if [ -z "$git_url" ]; then
  bundle=$(ls ../shared/fixtures/fstests-src/*.bundle /work/shared/fixtures/fstests-src/*.bundle 2>/dev/null | head -n 1 || true)
  [ -n "$bundle" ] || { echo "no fstests: set BTRFSQA_FSTESTS_GIT" >&2; exit 2; }
  git_url=$bundle
fi
dir=$(mktemp -d /var/tmp/btrfsqa-build-vs-copy.XXXXXX)
trap 'rm -rf "$dir"' EXIT
git clone -q -- "$git_url" "$dir/src"
now() { date +%s.%N; }
t0=$(now)
make -C "$dir/src" -j"$(nproc)" >"$dir/build.log" 2>&1 \
  || { tail -20 "$dir/build.log" >&2; exit 1; }
t1=$(now)
tar -C "$dir/src" -czf "$dir/tree.tar.gz" .
t2=$(now)
mkdir "$dir/copy"
tar -C "$dir/copy" -xzf "$dir/tree.tar.gz"
t3=$(now)
size=$(du -m "$dir/tree.tar.gz" | cut -f1)
awk -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" -v s="$size" -v n="$(nproc)" 'BEGIN {
  b = t1 - t0; p = t2 - t1; u = t3 - t2
  printf "fstests on %d CPUs: build %.1f s, pack %.1f s (%d MB), unpack %.1f s\n", n, b, p, s, u
  printf "build / unpack: %.1f (a machine gets the tree %.0f s sooner from the cache)\n", b / u, b - u
}'
