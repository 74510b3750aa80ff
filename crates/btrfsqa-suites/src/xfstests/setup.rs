//! Getting a machine ready for fstests: its build and run-time packages,
//! the users its tests switch to, and the built tree (from the controller's
//! cache, or built on the machine).

use std::path::Path;
use std::time::Duration;

use btrfsqa_remote::ExecRequest;

use super::common::ID;
use crate::build_cache::{self, Recipe};
use crate::setup::{Distro, detect_distro, install_packages, run_step};
use crate::source::PinnedSource;
use crate::{SuiteContext, SuiteError};

/// Packages fstests needs to build and run, per distribution family.
pub(super) fn packages(distro: Distro) -> &'static [&'static str] {
    match distro {
        Distro::Debian => &[
            "make",
            "gcc",
            "autoconf",
            "automake",
            "libtool",
            "pkg-config",
            "xfslibs-dev",
            "uuid-dev",
            "libattr1-dev",
            "libacl1-dev",
            "libaio-dev",
            "liburing-dev",
            "libgdbm-dev",
            "libcap-dev",
            "xfsprogs",
            "attr",
            "acl",
            "bc",
            "fio",
            "dbench",
            "psmisc",
            "quota",
            "dmsetup",
            "duperemove",
            "btrfs-progs",
            "e2fsprogs",
            "util-linux",
            "kmod",
            "gawk",
            "python3",
            "tar",
        ],
        Distro::Fedora => &[
            "make",
            "gcc",
            "autoconf",
            "automake",
            "libtool",
            "pkgconf-pkg-config",
            "xfsprogs-devel",
            "libuuid-devel",
            "libattr-devel",
            "libacl-devel",
            "libaio-devel",
            "liburing-devel",
            "gdbm-devel",
            "libcap-devel",
            "xfsprogs",
            "attr",
            "acl",
            "bc",
            "fio",
            "dbench",
            "psmisc",
            "quota",
            "device-mapper",
            "duperemove",
            "btrfs-progs",
            "e2fsprogs",
            "util-linux",
            "kmod",
            "gawk",
            "python3",
            "tar",
        ],
    }
}

/// Creates the users and group fstests' tests switch to.
const CREATE_USERS: &str = "getent group fsgqa >/dev/null || groupadd fsgqa; \
    id -u fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa fsgqa; \
    id -u fsgqa2 >/dev/null 2>&1 || useradd -m fsgqa2; \
    id -u 123456-fsgqa >/dev/null 2>&1 || useradd -m 123456-fsgqa 2>/dev/null \
    || useradd --badname -m 123456-fsgqa";
/// Installs what fstests needs (when `install` is set), creates its users,
/// and places the built tree of `pinned` in the machine's work directory.
pub(super) async fn prepare_machine(
    ctx: &SuiteContext,
    pinned: &PinnedSource,
    install: bool,
    cache_dir: &Path,
) -> Result<(), SuiteError> {
    let host = ctx.host.as_ref();
    let distro = if install {
        let distro = detect_distro(host, ID).await?;
        install_packages(host, ID, distro, packages(distro)).await?;
        run_step(
            host,
            ID,
            "create fstests' users",
            ExecRequest::new(CREATE_USERS).timeout(Duration::from_secs(120)),
        )
        .await?;
        Some(distro)
    } else {
        detect_distro(host, ID).await.ok()
    };
    let recipe = Recipe {
        step: "build fstests",
        command: "make -j\"$(nproc)\"".to_owned(),
        packages: distro.map_or(&[], packages),
        timeout: Duration::from_secs(3600),
    };
    build_cache::place_built(host, ID, pinned, &ctx.devices.work_dir, cache_dir, &recipe).await?;
    Ok(())
}
