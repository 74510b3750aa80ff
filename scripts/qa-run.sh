#!/usr/bin/env bash
# The main job from a fresh clone, as root: install what a run needs, build
# btrfsqa, and run the embedded default configuration on this machine (six
# loop devices), publishing the dashboard to a local git repository.
#
#   sudo scripts/qa-run.sh [extra `btrfsqa run` flags]
#
# Results:   ./btrfsqa-results/<run-id>/report.json
# Dashboard: ./btrfsqa-site.git (branch gh-pages); browse a checkout, or
#            ./btrfsqa-results/.site-cache/site/index.html
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the local provider needs root for loop devices: run it as root" >&2
  exit 2
fi
scripts/install-deps.sh run
cargo build --quiet --bin btrfsqa
exec target/debug/btrfsqa run --site-repo "$PWD/btrfsqa-site.git" "$@"
