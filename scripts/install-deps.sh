#!/usr/bin/env bash
# Installs what btrfsqa's runs and tests need on a Debian/Ubuntu machine.
# Idempotent: only missing packages are installed. Needs root.
#   scripts/install-deps.sh run    what a QA run on this machine needs
#   scripts/install-deps.sh test   plus what the test suite needs
#   scripts/install-deps.sh qemu   QEMU (from bookworm-backports) and debootstrap,
#                                  for the qemu provider and `btrfsqa image build`
#   scripts/install-deps.sh backports   only add the distribution's backports to
#                                  apt's sources (what `qemu` does first)
# apt's own configuration says where its sources are (APT_CONFIG can move them).
set -euo pipefail
what=${1:-run}

# Adds `<codename>-backports` to apt's sources unless it is there already.
enable_backports() {
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  eval "$(apt-config shell sources_list Dir::Etc::sourcelist/f sources_parts Dir::Etc::sourceparts/d)"
  sources_list=${sources_list:-/etc/apt/sources.list}
  sources_parts=${sources_parts:-/etc/apt/sources.list.d/}
  sources_parts=${sources_parts%/}
  list=$sources_parts/btrfsqa-backports.sources
  if [ ! -e "$list" ] && ! grep -rqs "$codename-backports" "$sources_list" "$sources_parts/"; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$codename" >"$list"
  fi
}

if [ "$what" = backports ]; then
  enable_backports
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  exit 0
fi

packages=(btrfs-progs util-linux e2fsprogs git coreutils)
if [ "$what" = test ]; then
  # chromium: the dashboard's browser test loads the site headless.
  # python3-yaml and systemd: the deployment files' test parses the
  # workflow and verifies the units.
  # python3-venv: the EC2 emulator and the export validators live in
  # virtualenvs (scripts/moto-server.sh, scripts/py-tools.sh).
  packages+=(openssh-server openssh-client xfsprogs chromium python3-yaml python3-venv systemd)
fi

if [ "$what" = qemu ]; then
  packages+=(debootstrap e2fsprogs openssh-client)
  # qemu-utils on these machines comes from bookworm-backports, and
  # bookworm's own qemu-system-x86 conflicts with it: take the system
  # emulator from backports too.
  if ! command -v qemu-system-x86_64 >/dev/null; then
    enable_backports
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -t "$codename-backports" \
      qemu-system-x86 qemu-system-common qemu-system-data seabios >/dev/null
  fi
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
