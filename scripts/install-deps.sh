#!/usr/bin/env bash
# Installs what btrfsqa's runs and tests need on a Debian/Ubuntu machine.
# Idempotent: only missing packages are installed. Needs root.
#   scripts/install-deps.sh run    what a QA run on this machine needs
#   scripts/install-deps.sh test   plus what the test suite needs
set -euo pipefail
what=${1:-run}

packages=(btrfs-progs util-linux e2fsprogs git coreutils)
if [ "$what" = test ]; then
  packages+=(openssh-server openssh-client xfsprogs)
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# sshd's privilege-separation directory; tests start their own sshd.
[ "$what" = test ] && mkdir -p /run/sshd
exit 0
