#!/usr/bin/env bash
# The kernel stage end to end, offline, as root: Debian's linux-source-6.1
# becomes a local git repository (so the git-URL path is exercised), btrfsqa
# builds it with the shipped fragments (defconfig + virtio-guest, btrfs-debug,
# fstests, minimal), boots it in the qemu VM, checks `uname -r` and btrfs,
# and runs a suite on it. The build takes tens of minutes on 2 cores; a
# second run of the same commit and config reuses the stored build.
#
#   sudo scripts/kernel-smoke.sh [--matrix] [extra `btrfsqa run` flags]
#
# --matrix: a kernel matrix of the VM image's installed kernel and the built
# one, tested side by side (two runs, one VM each).
#
# Results: ./btrfsqa-results/<run-id>/ (kernel/build.log, console-qemu-0.log);
# built kernels: ./btrfsqa-results/.kernels/<key>/. BTRFSQA_RESULTS_DIR names
# another results store.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: needs root (image build, package installs): run it as root" >&2
  exit 2
fi
top=${BTRFSQA_KERNEL_SMOKE_DIR:-/var/tmp/btrfsqa-kernel}
repo=$top/linux-source-6.1
scripts/install-deps.sh qemu
if [ ! -d "$repo/.git" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends linux-source-6.1 bc bison flex \
    libssl-dev libelf-dev build-essential cpio kmod ccache git >/dev/null
  mkdir -p "$top"
  tar -C "$top" -xJf /usr/src/linux-source-6.1.tar.xz
  # Debian's tree ignores everything at its top level (its packaging repo's
  # rule): drop that rule so the tree can be committed.
  sed -i '/^# Debian packaging: ignore everything/,$d' "$repo/.gitignore"
  git -C "$repo" init -q -b main
  git -C "$repo" add -A
  git -C "$repo" -c user.name=btrfsqa -c user.email=btrfsqa@localhost \
    commit -q -m "linux-source-6.1 from Debian"
fi
config=$(mktemp --suffix=.toml)
trap 'rm -f "$config"' EXIT
if [ "${1:-}" = --matrix ]; then
  shift
  cat >"$config" <<TOML
[run]
provider = "qemu"
suites = ["raid56-scrub"]

[kernel]
work-dir = "$top/cache"

[[kernel.matrix]]
name = "installed"

[[kernel.matrix]]
name = "linux-source"
source = "$repo"
ref = "main"
TOML
else
  cat >"$config" <<TOML
[run]
provider = "qemu"
suites = ["raid56-scrub"]

[kernel]
source = "$repo"
ref = "main"
work-dir = "$top/cache"
TOML
fi
cargo build --quiet --bin btrfsqa
bin=target/debug/btrfsqa
"$bin" image build
start=$(date +%s)
status=0
"$bin" run --config "$config" --results-dir "${BTRFSQA_RESULTS_DIR:-$PWD/btrfsqa-results}" "$@" \
  || status=$?
echo "== run took $(( $(date +%s) - start )) s, exit status $status" >&2
"$bin" reap --provider qemu --dry-run
exit "$status"
