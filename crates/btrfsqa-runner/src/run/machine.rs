//! What the runner does on and about one machine besides its suites: its
//! kernel's name, freeing its devices, and the record that lets
//! `btrfsqa teardown` find it again; and the machine once it is ready for
//! suites ([`Session`]), which the worker and its recovery share.

use std::sync::Arc;
use std::time::Duration;

use btrfsqa_cloud::Machine;
use btrfsqa_model::KernelInfo;
use btrfsqa_remote::{ExecRequest, RemoteHost, shell_quote};
use btrfsqa_suites::SuiteContext;

use crate::error::error_chain;

/// A machine ready for suites.
pub(crate) struct Session {
    pub host: Arc<dyn RemoteHost>,
    pub recording: Option<Arc<crate::recording::MachineRecording>>,
    pub ctx: SuiteContext,
    /// The kernel release the machine runs (a reset must come back to it).
    pub kernel_release: Option<String>,
    /// How long the console was when the machine last came up: a crash
    /// after it is this boot's.
    pub console_mark: usize,
}

/// This controller's host name.
pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// `uname -r` and `uname -v` of the machine (empty when it does not answer).
pub(crate) async fn kernel_info(host: &dyn RemoteHost) -> KernelInfo {
    let request = ExecRequest::new("uname -r; uname -v").timeout(Duration::from_secs(30));
    match host.exec(request, None).await {
        Ok(out) if out.success() => {
            let text = out.stdout_text();
            let mut lines = text.lines();
            KernelInfo {
                release: lines.next().map(str::to_owned),
                version: lines.next().map(str::to_owned),
                source: None,
            }
        }
        _ => KernelInfo::default(),
    }
}

/// Unmounts everything on the machine's devices or under its work directory.
pub(crate) async fn release_devices(
    host: &dyn RemoteHost,
    machine: &Machine,
) -> Result<(), String> {
    let mut devices: Vec<String> = vec![machine.test_dev.clone()];
    devices.extend(machine.scratch_devs.iter().cloned());
    let device_list = devices
        .iter()
        .map(|d| shell_quote(d))
        .collect::<Vec<_>>()
        .join(" ");
    // Deepest mount points first; a multi-device btrfs lists only one of its
    // devices in /proc/mounts, so mounts under the work dir are found by path.
    let script = format!(
        r#"work={work}
for dev in {device_list}; do
  real=$(readlink -f "$dev")
  awk -v d="$real" -v e="$dev" '$1 == d || $1 == e {{ print $2 }}' /proc/self/mounts
done | sort -ru | while read -r target; do umount "$target" 2>/dev/null || umount -l "$target"; done
awk -v w="$work/" 'index($2, w) == 1 {{ print $2 }}' /proc/self/mounts | sort -r | while read -r target; do umount "$target" 2>/dev/null || umount -l "$target"; done
if command -v btrfs >/dev/null; then for dev in {device_list}; do btrfs device scan --forget "$dev" 2>/dev/null; done; fi
left=$(for dev in {device_list}; do real=$(readlink -f "$dev"); awk -v d="$real" '$1 == d {{ print $2 }}' /proc/self/mounts; done)
[ -z "$left" ] || {{ echo "still mounted: $left"; exit 1; }}
"#,
        work = shell_quote(&machine.work_dir),
    );
    match host
        .exec(
            ExecRequest::new(script).timeout(Duration::from_secs(120)),
            None,
        )
        .await
    {
        Ok(out) if out.success() => Ok(()),
        Ok(out) => Err(format!(
            "{}{}",
            out.stdout_text().trim(),
            out.stderr_text().trim()
        )),
        Err(err) => Err(error_chain(&err)),
    }
}

/// Keeps what teardown and `btrfsqa teardown RUN_ID` need to find the
/// machine, in the run's directory. The provider's own tags and state files
/// are what `reap` relies on; this is the quick way back to a machine.
pub fn write_machine_record(run_dir: &std::path::Path, machine: &Machine) -> std::io::Result<()> {
    let path = run_dir.join(format!(
        "machine-{}.json",
        btrfsqa_model::safe_file_name(&machine.name)
    ));
    let json = serde_json::to_vec_pretty(machine).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

/// The machines recorded in a run's directory (unreadable records are skipped).
pub fn read_machine_records(run_dir: &std::path::Path) -> Vec<Machine> {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    let mut machines: Vec<Machine> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("machine-") && name.ends_with(".json")
        })
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    machines.sort_by(|a, b| a.name.cmp(&b.name));
    machines
}
