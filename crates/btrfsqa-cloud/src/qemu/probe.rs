//! Choosing the accelerator by trying it.
//!
//! `/dev/kvm` existing proves little: on nested machines it may come from a
//! module that runs only specially patched guests, and a stock kernel then
//! aborts, crawls, or dies on an instruction KVM cannot emulate. So `auto`
//! boots the image's own kernel once under KVM with a probe init that prints
//! a marker and powers off; KVM is used only if the marker appears in time.
//! The answer is cached per controller kernel, QEMU binary and image kernel.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::image::{ImagePaths, PROBE_INIT, PROBE_MARKER};
use super::launch::Accelerator;

/// How long the KVM probe may take to reach userspace. TCG reaches it in
/// about 15 s here; a KVM that takes longer is no gain.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(45);

/// The cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ProbeResult {
    /// What the answer holds for: controller kernel, QEMU, image kernel.
    pub key: String,
    /// Whether KVM booted the probe to userspace.
    pub kvm_works: bool,
    /// Why (for the machine state and messages).
    pub detail: String,
}

/// The accelerator for `auto`, probing once and caching in `work_dir`.
pub(crate) fn auto_accelerator(
    qemu: &Path,
    bios: Option<&Path>,
    image: &ImagePaths,
    work_dir: &Path,
) -> (Accelerator, String) {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return (Accelerator::Tcg, format!("no usable /dev/kvm ({e})"));
    }
    let key = cache_key(qemu, image);
    let cache = work_dir.join("accel-probe.json");
    if let Some(cached) = std::fs::read(&cache)
        .ok()
        .and_then(|raw| serde_json::from_slice::<ProbeResult>(&raw).ok())
        .filter(|r| r.key == key)
    {
        return decide(&cached);
    }
    let result = probe_kvm(qemu, bios, image, work_dir, key);
    if let Ok(json) = serde_json::to_vec_pretty(&result) {
        let _ = std::fs::write(&cache, json);
    }
    decide(&result)
}

fn decide(result: &ProbeResult) -> (Accelerator, String) {
    if result.kvm_works {
        (Accelerator::Kvm, result.detail.clone())
    } else {
        (Accelerator::Tcg, result.detail.clone())
    }
}

fn cache_key(qemu: &Path, image: &ImagePaths) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let qemu_path = crate::tool::find_tool(&qemu.display().to_string()).unwrap_or(qemu.to_owned());
    format!(
        "host={} qemu={}@{} image-kernel={}",
        host.trim(),
        qemu_path.display(),
        stamp(&qemu_path),
        stamp(&image.kernel())
    )
}

/// Boots the probe under KVM and watches the console for the marker.
fn probe_kvm(
    qemu: &Path,
    bios: Option<&Path>,
    image: &ImagePaths,
    work_dir: &Path,
    key: String,
) -> ProbeResult {
    let fail = |detail: String| ProbeResult {
        key: key.clone(),
        kvm_works: false,
        detail,
    };
    let dir = match tempfile::Builder::new()
        .prefix("btrfsqa-kvm-probe-")
        .tempdir_in(work_dir)
    {
        Ok(dir) => dir,
        Err(e) => return fail(format!("cannot make a probe directory: {e}")),
    };
    let console: PathBuf = dir.path().join("console.log");
    let tag = format!("btrfsqa-kvm-probe-{}", std::process::id());
    let mut command = Command::new(qemu);
    command.args(["-name", &tag, "-nodefaults", "-no-user-config"]);
    command.args(["-display", "none", "-no-reboot"]);
    command.args(["-accel", "kvm", "-cpu", "host", "-m", "512", "-smp", "1"]);
    if let Some(bios) = bios {
        command.arg("-bios").arg(bios);
    }
    command.arg("-kernel").arg(image.kernel());
    command.arg("-initrd").arg(image.initrd());
    command.args([
        "-append",
        &format!("root=/dev/vda ro console=ttyS0,115200 panic=-1 init={PROBE_INIT}"),
    ]);
    // snapshot=on: the probe never writes to the shared image.
    command.args([
        "-drive",
        &format!(
            "file={},if=virtio,format=qcow2,snapshot=on",
            image.rootfs().display().to_string().replace(',', ",,")
        ),
    ]);
    command.args(["-serial", &format!("file:{}", console.display())]);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return fail(format!("cannot start `{}`: {e}", qemu.display())),
    };
    let outcome = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if text.contains(PROBE_MARKER) {
            break Ok(started.elapsed());
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                break Err(format!(
                    "KVM probe exited ({status}) before userspace: {}",
                    last_lines(&format!("{text}\n{stderr}"), 3)
                ));
            }
            Ok(None) => {}
            Err(e) => break Err(format!("cannot watch the KVM probe: {e}")),
        }
        if started.elapsed() > PROBE_TIMEOUT {
            break Err(format!(
                "KVM probe reached no userspace within {} s: {}",
                PROBE_TIMEOUT.as_secs(),
                last_lines(&text, 2)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The probe is our own child: killing it by its handle is safe.
    let _ = child.kill();
    let _ = child.wait();
    match outcome {
        Ok(elapsed) => ProbeResult {
            key,
            kvm_works: true,
            detail: format!(
                "KVM booted the probe to userspace in {:.1} s",
                elapsed.as_secs_f64()
            ),
        },
        Err(detail) => fail(detail),
    }
}

/// The last `n` non-empty lines, joined with ` | ` for a one-line message.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_answers_decide_the_accelerator() {
        let works = ProbeResult {
            key: "k".into(),
            kvm_works: true,
            detail: "ok".into(),
        };
        assert_eq!(decide(&works).0, Accelerator::Kvm);
        let broken = ProbeResult {
            kvm_works: false,
            ..works
        };
        assert_eq!(decide(&broken).0, Accelerator::Tcg);
    }

    #[test]
    fn last_lines_skip_blank_ones() {
        assert_eq!(last_lines("a\n\nb\n  \nc\n", 2), "b | c");
        assert_eq!(last_lines("", 2), "");
    }
}
