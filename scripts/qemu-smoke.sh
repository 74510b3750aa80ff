#!/usr/bin/env bash
# End to end on a local VM, as root: install QEMU and debootstrap, build
# btrfsqa, make the guest image if it is not cached, and run a suite on the
# qemu provider (default: raid56-scrub). Leaves nothing running: the run
# tears its VM down, and this script then checks with `btrfsqa reap`.
#
#   sudo scripts/qemu-smoke.sh [extra `btrfsqa run` flags, e.g. --config FILE]
#
# Results: ./btrfsqa-results/<run-id>/ (report.json, console-qemu-0.log)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: building the image needs root (debootstrap): run it as root" >&2
  exit 2
fi
scripts/install-deps.sh qemu
cargo build --quiet --bin btrfsqa
bin=target/debug/btrfsqa
start=$(date +%s)
"$bin" image build
echo "== image ready after $(( $(date +%s) - start )) s" >&2
has_suite=no
for arg in "$@"; do [ "$arg" = --suite ] && has_suite=yes; done
suite=()
[ "$has_suite" = yes ] || suite=(--suite raid56-scrub)
start=$(date +%s)
status=0
"$bin" run --provider qemu "${suite[@]}" "$@" || status=$?
echo "== run took $(( $(date +%s) - start )) s, exit status $status" >&2
# Nothing of any finished run may be left: no VM, no work directory.
"$bin" reap --provider qemu --dry-run
exit "$status"
