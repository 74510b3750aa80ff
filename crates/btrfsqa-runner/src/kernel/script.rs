//! The shell scripts of the kernel stage, as pure functions of their
//! inputs, so what runs on the builder (the controller or the machine) and
//! on the machine is readable and tested as text.

use btrfsqa_remote::shell_quote;

/// Paths on the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildPaths {
    /// `CACHE/<url-digest>`: the source and build trees of one URL, and
    /// ccache's base directory (builds of the same tree in another cache
    /// directory hit ccache because `src` and `build` keep their names).
    pub root: String,
    /// The git work tree of the source.
    pub src: String,
    /// The out-of-tree build directory (`O=`).
    pub build: String,
}

impl BuildPaths {
    /// Paths below `cache` for a source URL whose digest is `url_digest`.
    pub(crate) fn new(cache: &str, url_digest: &str) -> Self {
        let root = format!("{}/{url_digest}", cache.trim_end_matches('/'));
        BuildPaths {
            src: format!("{root}/src"),
            build: format!("{root}/build"),
            root,
        }
    }
}

/// Fetches `git_ref` of `url` into the source tree (shallow) and checks it
/// out; prints the commit.
pub(crate) fn fetch(paths: &BuildPaths, url: &str, git_ref: &str) -> String {
    format!(
        r#"set -e
src={src}
if [ ! -d "$src/.git" ]; then mkdir -p "$src"; git -C "$src" init -q; fi
git -C "$src" fetch -q --depth 1 -- {url} {git_ref}
git -C "$src" -c advice.detachedHead=false checkout -q --force --detach FETCH_HEAD
git -C "$src" rev-parse HEAD
"#,
        src = shell_quote(&paths.src),
        url = shell_quote(url),
        git_ref = shell_quote(git_ref),
    )
}

/// How the starting `.config` is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConfigStart {
    /// `make defconfig`.
    Defconfig,
    /// A file already uploaded to this path on the builder.
    File(String),
}

/// Makes `BUILD/.config`: the start, the fragments merged in order, then
/// `olddefconfig`; prints the machine's architecture last.
pub(crate) fn configure(paths: &BuildPaths, start: &ConfigStart, fragments: &[String]) -> String {
    let mut script = format!(
        "set -e\ncd {src}\nmkdir -p {build}\nrm -f {build}/.config\n",
        src = shell_quote(&paths.src),
        build = shell_quote(&paths.build)
    );
    match start {
        ConfigStart::Defconfig => {
            script.push_str(&format!(
                "make -s O={} defconfig >/dev/null\n",
                shell_quote(&paths.build)
            ));
        }
        ConfigStart::File(file) => {
            script.push_str(&format!(
                "cp {} {}/.config\n",
                shell_quote(file),
                shell_quote(&paths.build)
            ));
        }
    }
    if !fragments.is_empty() {
        let list = fragments
            .iter()
            .map(|f| shell_quote(f))
            .collect::<Vec<_>>()
            .join(" ");
        script.push_str(&format!(
            "scripts/kconfig/merge_config.sh -m -O {build} {build}/.config {list} >{build}/merge-config.log 2>&1\n",
            build = shell_quote(&paths.build),
        ));
    }
    script.push_str(&format!(
        "make -s O={} olddefconfig >/dev/null\nuname -m\n",
        shell_quote(&paths.build)
    ));
    script
}

/// Builds the image and modules with the log in `BUILD/build.log`, installs
/// the modules into a tarball, and prints `release=`, `image=` and
/// `ccache=` lines.
pub(crate) fn build(paths: &BuildPaths, jobs: Option<u32>, ccache: bool) -> String {
    let jobs = match jobs {
        Some(n) if n > 0 => n.to_string(),
        _ => "$(nproc)".to_owned(),
    };
    format!(
        r#"set -e
cd {src}
b={build}
log="$b/build.log"
: >"$log"
cc=gcc
if {ccache} && command -v ccache >/dev/null 2>&1; then
  cc="ccache gcc"
  export CCACHE_BASEDIR={root} CCACHE_NOHASHDIR=1
  echo ccache=yes
else
  echo ccache=no
fi
echo "== make -j{jobs} all (CC=$cc)" >>"$log"
if ! nice -n 10 make O="$b" -j{jobs} CC="$cc" all >>"$log" 2>&1; then
  # The compiler's first errors say why; make's last lines only that it stopped.
  {{ grep -E ': (fatal )?error: ' "$log" | head -n 5; tail -n 2 "$log"; }} >&2
  exit 2
fi
release=$(make -s O="$b" kernelrelease)
image=$(make -s O="$b" image_name)
rm -rf "$b/modroot" "$b/modules.tar.gz"
if grep -q '^CONFIG_MODULES=y' "$b/.config"; then
  echo "== make modules_install" >>"$log"
  make O="$b" INSTALL_MOD_PATH="$b/modroot" INSTALL_MOD_STRIP=1 modules_install >>"$log" 2>&1
fi
mkdir -p "$b/modroot/lib/modules/$release"
tar -C "$b/modroot/lib/modules/$release" -czf "$b/modules.tar.gz" .
echo "release=$release"
echo "image=$b/$image"
"#,
        src = shell_quote(&paths.src),
        build = shell_quote(&paths.build),
        root = shell_quote(&paths.root),
        ccache = if ccache { "true" } else { "false" },
    )
}

/// What the build script printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BuildOutput {
    /// `make kernelrelease`.
    pub release: String,
    /// The kernel image on the builder.
    pub image: String,
    /// Whether ccache was used.
    pub ccache: bool,
}

/// Reads the `key=value` lines of the build script.
pub(crate) fn parse_build_output(stdout: &str) -> Option<BuildOutput> {
    let value = |key: &str| {
        stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
    };
    Some(BuildOutput {
        release: value("release=").filter(|r| !r.is_empty())?,
        image: value("image=").filter(|r| !r.is_empty())?,
        ccache: value("ccache=").as_deref() == Some("yes"),
    })
}

/// Installs the modules tarball (uploaded to `tarball`) for `release` on the
/// machine. Extracts into `/lib/modules/RELEASE` itself, never over `/lib`
/// (a symlink on merged-/usr systems that tar would replace).
pub(crate) fn install_modules(tarball: &str, release: &str) -> String {
    format!(
        r#"set -e
d=/lib/modules/{release}
rm -rf "$d"
mkdir -p "$d"
tar -C "$d" -xzf {tarball}
rm -f {tarball}
depmod -a {release} 2>/dev/null || true
sync
"#,
        release = shell_quote(release),
        tarball = shell_quote(tarball),
    )
}

/// Puts the image under /boot and makes an initramfs when the machine has a
/// tool for it; prints `initrd=PATH` when one was made.
pub(crate) fn install_image(uploaded: &str, release: &str) -> String {
    format!(
        r#"set -e
rel={release}
install -m 0644 {uploaded} "/boot/vmlinuz-$rel"
rm -f {uploaded}
if command -v update-initramfs >/dev/null 2>&1; then
  update-initramfs -c -k "$rel" >/dev/null 2>&1 || true
elif command -v dracut >/dev/null 2>&1; then
  dracut -f "/boot/initrd.img-$rel" "$rel" >/dev/null 2>&1 || true
fi
[ -f "/boot/initrd.img-$rel" ] && echo "initrd=/boot/initrd.img-$rel"
sync
"#,
        release = shell_quote(release),
        uploaded = shell_quote(uploaded),
    )
}

/// Loads the installed kernel with kexec and starts the kexec reboot in the
/// background (the SSH session may die with the old system).
pub(crate) fn kexec(release: &str, initrd: Option<&str>) -> String {
    let initrd = initrd
        .map(|i| format!(" --initrd={}", shell_quote(i)))
        .unwrap_or_default();
    format!(
        "set -e\ncommand -v kexec >/dev/null\nkexec -l /boot/vmlinuz-{release}{initrd} --reuse-cmdline\n\
         nohup sh -c 'sleep 2; systemctl kexec || kexec -e' >/dev/null 2>&1 &\n",
        release = shell_quote(release),
    )
}

/// Registers the kernel with the bootloader and makes it the next boot's
/// default where GRUB allows it.
pub(crate) fn bootloader(release: &str) -> String {
    format!(
        r#"set -e
rel={release}
if command -v kernel-install >/dev/null 2>&1 && [ -d /boot/loader/entries ]; then
  kernel-install add "$rel" "/boot/vmlinuz-$rel"
elif command -v update-grub >/dev/null 2>&1; then
  update-grub >/dev/null 2>&1
  id=$(grep -o "gnulinux-$rel-advanced-[^']*" /boot/grub/grub.cfg | head -n 1)
  sub=$(grep -o "gnulinux-advanced-[^']*" /boot/grub/grub.cfg | head -n 1)
  if [ -n "$id" ] && command -v grub-reboot >/dev/null 2>&1; then
    grub-reboot "${{sub:+$sub>}}$id"
  fi
else
  echo "no kernel-install or update-grub on this machine" >&2
  exit 3
fi
sync
"#,
        release = shell_quote(release),
    )
}

/// Checks the running kernel and btrfs; prints `release=` and `btrfs=`.
pub(crate) const VERIFY: &str = "echo release=$(uname -r); \
     if grep -qw btrfs /proc/filesystems || { modprobe btrfs 2>/dev/null && grep -qw btrfs /proc/filesystems; }; \
     then echo btrfs=yes; else echo btrfs=no; fi";

/// The running kernel's configuration, wherever the machine keeps it.
pub(crate) const RUNNING_CONFIG: &str = "if [ -r /proc/config.gz ]; then zcat /proc/config.gz; \
     elif [ -r /boot/config-$(uname -r) ]; then cat /boot/config-$(uname -r); \
     else echo 'no config of the running kernel (/proc/config.gz, /boot/config-*)' >&2; exit 1; fi";

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> BuildPaths {
        BuildPaths::new("/r/.cache/kernel/", "abc123")
    }

    #[test]
    fn paths_live_below_the_root() {
        let p = paths();
        assert_eq!(p.root, "/r/.cache/kernel/abc123");
        assert_eq!(p.src, "/r/.cache/kernel/abc123/src");
        assert_eq!(p.build, "/r/.cache/kernel/abc123/build");
    }

    #[test]
    fn fetch_is_shallow_and_quotes_what_the_user_wrote() {
        let script = fetch(
            &paths(),
            "https://github.com/btrfs/linux.git",
            "for-next; rm -rf /",
        );
        assert!(script.contains(
            "fetch -q --depth 1 -- https://github.com/btrfs/linux.git 'for-next; rm -rf /'"
        ));
        assert!(script.trim_end().ends_with("rev-parse HEAD"));
    }

    #[test]
    fn a_url_or_ref_like_an_option_never_runs_as_one() {
        // With real git: the fetch of a source named `--upload-pack=...`.
        let tmp = tempfile::tempdir().unwrap();
        let marker = tmp.path().join("pwned");
        let paths = BuildPaths::new(&tmp.path().display().to_string(), "x");
        for (url, git_ref) in [
            (
                format!("--upload-pack=touch {}", marker.display()),
                "main".to_owned(),
            ),
            (
                tmp.path().display().to_string(),
                format!("--upload-pack=touch {}", marker.display()),
            ),
        ] {
            let script = fetch(&paths, &url, &git_ref);
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{script}");
        }
        assert!(!marker.exists(), "git ran an option the user wrote");
    }

    #[test]
    fn configure_merges_fragments_in_order_over_the_start() {
        let script = configure(
            &paths(),
            &ConfigStart::Defconfig,
            &["/f/a.config".into(), "/f/b.config".into()],
        );
        let defconfig = script.find("defconfig").unwrap();
        let merge = script.find("merge_config.sh -m").unwrap();
        let old = script.find("olddefconfig").unwrap();
        assert!(defconfig < merge && merge < old);
        assert!(script.contains("/f/a.config /f/b.config"));
        let from_file = configure(
            &paths(),
            &ConfigStart::File("/t/running.config".into()),
            &[],
        );
        assert!(from_file.contains("cp /t/running.config /r/.cache/kernel/abc123/build/.config"));
        assert!(!from_file.contains("merge_config"));
    }

    #[test]
    fn build_uses_ccache_only_when_asked_and_present() {
        let with = build(&paths(), Some(2), true);
        assert!(with.contains("if true && command -v ccache"));
        assert!(with.contains("-j2"));
        let without = build(&paths(), None, false);
        assert!(without.contains("if false && command -v ccache"));
        assert!(without.contains("-j$(nproc)"));
        assert!(with.contains("nice -n 10 make"));
    }

    #[test]
    fn build_output_is_read_from_its_last_lines() {
        let out = "ccache=yes\nnoise\nrelease=6.1.192\nimage=/b/arch/x86/boot/bzImage\n";
        assert_eq!(
            parse_build_output(out),
            Some(BuildOutput {
                release: "6.1.192".into(),
                image: "/b/arch/x86/boot/bzImage".into(),
                ccache: true,
            })
        );
        assert_eq!(parse_build_output("ccache=no\nrelease=\n"), None);
    }

    #[test]
    fn modules_go_into_their_own_directory_not_over_lib() {
        let script = install_modules("/tmp/m.tar.gz", "6.1.192");
        assert!(script.contains("d=/lib/modules/6.1.192"));
        assert!(script.contains("tar -C \"$d\" -xzf /tmp/m.tar.gz"));
        assert!(!script.contains("tar -C /"));
    }

    #[test]
    fn kexec_reboots_in_the_background_with_the_initrd_when_there_is_one() {
        let script = kexec("6.1.192", Some("/boot/initrd.img-6.1.192"));
        assert!(script.contains(
            "kexec -l /boot/vmlinuz-6.1.192 --initrd=/boot/initrd.img-6.1.192 --reuse-cmdline"
        ));
        assert!(script.contains("nohup sh -c"));
        assert!(!kexec("6.1.192", None).contains("--initrd"));
    }
}
