#!/usr/bin/env bash
# Makes a local git repository of btrfs-progs from Debian's source package, for
# the btrfs-progs integration test (BTRFSQA_BTRFS_PROGS_GIT) on machines without
# the internet.
#
#   scripts/make-btrfs-progs-mirror.sh [--build-deps] DEST
#
# DEST becomes a git repository with one commit on branch `master` holding the
# unpacked source (Debian's patches applied) of the distribution's own release
# (`btrfs-progs/<codename>`, never a backport). apt's configuration says where
# its sources are; the deb-src twins go there. With --build-deps it also installs
# what building btrfs-progs and running its tests needs. Needs root for apt.
# It prints the line to export at the end.
set -euo pipefail

build_deps=0
if [ "${1:-}" = "--build-deps" ]; then
    build_deps=1
    shift
fi
dest=${1:?usage: make-btrfs-progs-mirror.sh [--build-deps] DEST}

if [ -e "$dest/.git" ]; then
    echo "$dest is already a git repository; remove it to make it again" >&2
    echo "export BTRFSQA_BTRFS_PROGS_GIT=$dest"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

# Where apt keeps its sources (APT_CONFIG can move them, as the tests do).
eval "$(apt-config shell sources_list Dir::Etc::sourcelist/f sources_parts Dir::Etc::sourceparts/d)"
sources_list=${sources_list:-/etc/apt/sources.list}
sources_parts=${sources_parts:-/etc/apt/sources.list.d/}
sources_parts=${sources_parts%/}

# `apt-get source` needs deb-src entries: add a twin of every deb822 source
# that has `Types: deb` and of every one-line `deb` entry, once.
twin=$sources_parts/btrfsqa-deb-src.sources
if ! grep -rqs '^Types:.*deb-src\|^deb-src ' "$sources_list" "$sources_parts/"; then
    {
        for f in "$sources_parts"/*.sources; do
            [ -f "$f" ] || continue
            sed -n '/^Types:/s/^Types:.*$/Types: deb-src/;p' "$f"
            echo
        done
    } >"$twin.tmp"
    if [ -f "$sources_list" ]; then
        list_twin=$sources_parts/btrfsqa-deb-src.list
        sed -n 's/^deb \(.*\)$/deb-src \1/p' "$sources_list" >"$list_twin"
    fi
    if grep -q 'Types: deb-src' "$twin.tmp"; then
        mv "$twin.tmp" "$twin"
    else
        rm -f "$twin.tmp"
    fi
fi
apt-get update -qq
command -v dpkg-source >/dev/null || apt-get install -y -qq dpkg-dev
if [ "$build_deps" = 1 ]; then
    apt-get build-dep -y -qq btrfs-progs
    # The tests need these at run time beyond the build dependencies.
    apt-get install -y -qq git make python3 e2fsprogs util-linux acl attr xfsprogs \
        dmsetup udev
fi

work=$(mktemp -d)
# apt-get source downloads as the _apt user when that user can write here.
chown _apt "$work" 2>/dev/null || true
trap 'rm -rf "$work"' EXIT
# The distribution's own release, pinned by its codename: with backports
# enabled (`install-deps.sh qemu` does), a bare `apt-get source` picks the
# backport, whose files the archive may no longer serve. Without a codename
# (or when the pinned source cannot be had) the candidate apt picks is used.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ -z "$codename" ] || ! (cd "$work" && apt-get source -qq "btrfs-progs/$codename" >/dev/null); then
    [ -z "$codename" ] || echo "apt-get source btrfs-progs/$codename failed; trying apt's candidate" >&2
    find "$work" -mindepth 1 -delete
    (cd "$work" && apt-get source -qq btrfs-progs >/dev/null)
fi
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'btrfs-progs-*' | head -n 1)
[ -n "$src" ] || { echo "apt-get source btrfs-progs gave no source tree" >&2; exit 1; }
version=$(basename "$src")

mkdir -p "$(dirname "$dest")"
mv "$src" "$dest"
# quilt's bookkeeping is not part of the source.
rm -rf "$dest/.pc"
git -C "$dest" init -q -b master
git -C "$dest" add -A
git -C "$dest" -c user.name=btrfsqa -c user.email=btrfsqa@localhost \
    commit -q -m "$version from Debian's source package"
echo "export BTRFSQA_BTRFS_PROGS_GIT=$dest"
