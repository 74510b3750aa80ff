#!/usr/bin/env bash
# Runs every check btrfsqa's CI runs: formatting, lints, docs, and the whole
# test suite (unit tests with mocks, and integration tests against real loop
# devices, sshd, git and btrfs when run as root). Installs what the tests need.
#
#   sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh test
  # The EC2 emulator the aws provider's integration tests start (moto, PyPI).
  echo "== moto (EC2 emulator)" >&2
  scripts/moto-server.sh --install-only >/dev/null
  # KernelCI's KCIDB validator, a JUnit reader and a JSON Schema validator
  # the publish tests check the exports with (PyPI).
  echo "== python tools (kcidb-io, junitparser, jsonschema)" >&2
  scripts/py-tools.sh --install-only >/dev/null
  # btrfs-progs' own test suite, from Debian's source package, as a local git
  # mirror the btrfs-progs suite clones and builds like an upstream URL.
  mirror=/var/tmp/btrfsqa-btrfs-progs-mirror
  if [ ! -d "$mirror" ]; then
    echo "== btrfs-progs mirror" >&2
    scripts/make-btrfs-progs-mirror.sh --build-deps "$mirror" >&2
  fi
  export BTRFSQA_BTRFS_PROGS_GIT=$mirror
  # fstests, from the copy of upstream beside the project (a git bundle):
  # the fstests suite's tests clone, build and run it for real.
  fstests=/var/tmp/btrfsqa-fstests-src
  bundle=$(ls ../shared/fixtures/fstests-src/*.bundle /work/shared/fixtures/fstests-src/*.bundle 2>/dev/null | head -n 1 || true)
  if [ ! -d "$fstests/.git" ] && [ -n "$bundle" ]; then
    echo "== fstests source" >&2
    rm -rf "$fstests" && git clone -q "$bundle" "$fstests"
  fi
  if [ -d "$fstests/.git" ]; then
    export BTRFSQA_FSTESTS_GIT=$fstests
  else
    echo "note: no fstests source (../shared/fixtures/fstests-src): the real fstests tests will skip" >&2
  fi
  # The qemu provider's boot test: QEMU (bookworm-backports) and the guest
  # image (debootstrap: minutes the first time, then cached). Without them
  # that one test skips; the rest still runs.
  echo "== qemu guest image" >&2
  if scripts/install-deps.sh qemu && cargo build --quiet --bin btrfsqa \
      && target/debug/btrfsqa image build >&2; then
    export BTRFSQA_QEMU_IMAGE=/var/cache/btrfsqa/qemu-image
  else
    echo "note: no qemu guest image: the qemu boot test will skip" >&2
  fi
else
  echo "note: not root: tests that need loop devices, mounts or sshd will skip" >&2
fi

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo doc" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== cargo test" >&2
cargo test --workspace 2>&1 | tee /tmp/btrfsqa-test.log
# One closing line with the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' /tmp/btrfsqa-test.log
