#!/usr/bin/env bash
# The Python tools the publish tests check btrfsqa's exports with: KernelCI's
# own KCIDB schema validator (kcidb-io), a JUnit reader (junitparser) and a
# JSON Schema validator (jsonschema), in a virtualenv made on first use.
#
#   scripts/py-tools.sh --install-only   make the virtualenv, print its python's path
#
# BTRFSQA_PYTOOLS_VENV overrides the virtualenv's place (default
# /var/tmp/btrfsqa-pytools, where the tests look; a test whose tool is
# missing says so and skips).
set -euo pipefail

venv=${BTRFSQA_PYTOOLS_VENV:-/var/tmp/btrfsqa-pytools}
case "${1:-}" in
  --install-only) ;;
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
  *) echo "usage: scripts/py-tools.sh --install-only" >&2; exit 2 ;;
esac

# A virtualenv that cannot import all three (a half-made one) is made again.
if ! "$venv/bin/python" -c 'import kcidb_io, junitparser, jsonschema' 2>/dev/null; then
  echo "py-tools.sh: installing kcidb-io, junitparser and jsonschema into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kcidb-io junitparser jsonschema
fi
echo "$venv/bin/python"
