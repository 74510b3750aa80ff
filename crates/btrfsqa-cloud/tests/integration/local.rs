//! `LocalProvider` on real loop devices (needs root and util-linux; the
//! btrfs parts need btrfs-progs).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use btrfsqa_cloud::{
    Access, CloudProvider, LocalProvider, LocalSettings, Machine, MachineSpec, ProvisionError,
};
use btrfsqa_model::RunId;

const MIB: u64 = 1 << 20;

/// Why these tests cannot run here, if they cannot.
fn missing(need_btrfs: bool) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (loop devices need root)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control".into());
    }
    let mut tools = vec!["losetup", "umount"];
    if need_btrfs {
        tools.extend(["mkfs.btrfs", "btrfs", "mount"]);
    }
    tools
        .into_iter()
        .find(|t| tool(t).is_none())
        .map(|t| format!("`{t}` is not installed"))
}

macro_rules! require {
    ($need_btrfs:expr) => {
        if let Some(why) = missing($need_btrfs) {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(tool(program).unwrap_or_else(|| program.into()))
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(device, backing file)` of every loop device whose file lies under `dir`
/// (deleted ones too).
fn loops_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let json = run("losetup", &["-l", "-J"]);
    if json.trim().is_empty() {
        return Vec::new();
    }
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["loopdevices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let file = d["back-file"].as_str()?;
            let file = PathBuf::from(file.strip_suffix(" (deleted)").unwrap_or(file));
            file.starts_with(dir)
                .then(|| (d["name"].as_str().unwrap().to_owned(), file))
        })
        .collect()
}

/// `(mount point, source)` of the mounts in our namespace.
fn mounts() -> Vec<(PathBuf, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?.replace("\\040", " ");
            let source = right.split(' ').nth(1)?.to_owned();
            Some((PathBuf::from(point), source))
        })
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// A scratch directory whose loop devices and mounts are removed on drop,
/// with tools independent of the code under test, even when a test panics.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("btrfsqa-cloud-it-")
            .tempdir()
            .unwrap();
        Sandbox { dir }
    }

    /// The canonical path (the kernel reports canonical paths).
    fn path(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let dir = self.path();
        for point in mounts_under(&dir).into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&point).status();
        }
        for (device, _) in loops_under(&dir) {
            let _ = Command::new("btrfs")
                .args(["device", "scan", "--forget", &device])
                .output();
            let _ = Command::new("losetup").args(["-d", &device]).status();
        }
    }
}

fn provider(sandbox: &Sandbox) -> LocalProvider {
    LocalProvider::new(LocalSettings::new(sandbox.path().join("work")))
}

fn spec(name: &str, devices: u32, size: u64) -> MachineSpec {
    let mut spec = MachineSpec::new(RunId::parse("20261124-100000-it00").unwrap(), name);
    spec.data_devices = devices;
    spec.device_size = size;
    spec
}

fn devices(machine: &Machine) -> Vec<String> {
    std::iter::once(machine.test_dev.clone())
        .chain(machine.scratch_devs.clone())
        .collect()
}

/// Checks that nothing of `machine` is left: no device on our files, no
/// mount under the work directory, no files.
fn assert_gone(sandbox: &Sandbox, machine: &Machine) {
    let dir = sandbox.path();
    assert_eq!(loops_under(&dir), [], "loop devices left");
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new(), "mounts left");
    assert!(
        !Path::new(&machine.work_dir).exists(),
        "{} left",
        machine.work_dir
    );
    assert!(
        !Path::new(&machine.work_dir).parent().unwrap().exists(),
        "run directory left"
    );
}

#[tokio::test]
async fn six_devices_raid1_mounted_then_torn_down() {
    require!(true);
    let sandbox = Sandbox::new();
    let elsewhere = Sandbox::new();
    let provider = provider(&sandbox);
    let machine = provider
        .provision(&spec("local-0", 6, 256 * MIB))
        .await
        .unwrap();

    assert_eq!(machine.access, Access::Local);
    assert_eq!(machine.scratch_devs.len(), 5);
    let work_dir = PathBuf::from(&machine.work_dir);
    assert!(work_dir.starts_with(sandbox.path()));
    let ours = loops_under(&sandbox.path());
    for (n, device) in devices(&machine).iter().enumerate() {
        let meta = std::fs::metadata(device).unwrap();
        assert!(meta.file_type().is_block_device(), "{device}");
        let size: u64 = run("blockdev", &["--getsize64", device])
            .trim()
            .parse()
            .unwrap();
        assert_eq!(size, 256 * MIB, "{device}");
        let file = work_dir.join(format!("disk-{n}.img"));
        assert!(
            ours.contains(&(device.clone(), file.clone())),
            "{device} not on {file:?}: {ours:?}"
        );
        // Sparse: nothing allocated yet.
        assert!(std::os::unix::fs::MetadataExt::blocks(&file.metadata().unwrap()) < 2048);
    }
    assert!(work_dir.join("mnt/test").is_dir() && work_dir.join("mnt/scratch").is_dir());
    assert!(work_dir.join("machine.json").is_file());

    // raid1 over two scratch devices, mounted through the second: mountinfo
    // then shows only the first.
    let (a, b) = (&machine.scratch_devs[0], &machine.scratch_devs[1]);
    run(
        "mkfs.btrfs",
        &["-q", "-f", "-d", "raid1", "-m", "raid1", a, b],
    );
    let scratch = work_dir.join("mnt/scratch");
    run("mount", &[b, scratch.to_str().unwrap()]);
    std::fs::write(scratch.join("data"), vec![7u8; 1 << 20]).unwrap();
    // The test device, mounted OUTSIDE the work directory.
    run("mkfs.btrfs", &["-q", "-f", &machine.test_dev]);
    let outside = elsewhere.path();
    run("mount", &[&machine.test_dev, outside.to_str().unwrap()]);
    assert_eq!(
        mounts_under(&sandbox.path()),
        std::slice::from_ref(&scratch)
    );

    provider.teardown(&machine).await.unwrap();
    assert_gone(&sandbox, &machine);
    assert!(
        !mounts().iter().any(|(p, _)| p == &outside),
        "the outside mount is left"
    );
    assert!(
        sandbox.path().join("work").is_dir(),
        "the work directory itself stays"
    );

    provider
        .teardown(&machine)
        .await
        .expect("a second teardown is fine");
    assert_gone(&sandbox, &machine);
}

#[tokio::test]
async fn a_provision_failing_halfway_leaves_nothing() {
    require!(false);
    let sandbox = Sandbox::new();
    let provider = provider(&sandbox).fail_nth_attach(2);
    let err = provider
        .provision(&spec("local-0", 6, 256 * MIB))
        .await
        .unwrap_err();
    let ProvisionError::Failed {
        operation,
        leftovers,
        ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert!(operation.contains("disk-2.img"), "{operation}");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(loops_under(&sandbox.path()), []);
    assert!(!sandbox.path().join("work/20261124-100000-it00").exists());
}

#[tokio::test]
async fn an_impossible_size_leaves_nothing() {
    require!(false);
    let sandbox = Sandbox::new();
    let provider = provider(&sandbox);
    let err = provider
        .provision(&spec("local-0", 2, !511))
        .await
        .unwrap_err();
    let ProvisionError::Failed {
        operation,
        leftovers,
        ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert!(operation.contains("sparse file"), "{operation}");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(loops_under(&sandbox.path()), []);
    assert!(!sandbox.path().join("work/20261124-100000-it00").exists());
}

#[tokio::test]
async fn reap_finds_and_removes_what_a_crash_left() {
    require!(true);
    let sandbox = Sandbox::new();
    let provider = provider(&sandbox);
    // A device of someone else, outside the work directory: never touched.
    let foreign = Sandbox::new();
    let foreign_file = foreign.path().join("theirs.img");
    std::fs::File::create(&foreign_file)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let theirs = run(
        "losetup",
        &["--find", "--show", foreign_file.to_str().unwrap()],
    );
    let theirs = theirs.trim().to_owned();

    let machine = provider
        .provision(&spec("local-0", 3, 256 * MIB))
        .await
        .unwrap();
    let (a, b) = (&machine.scratch_devs[0], &machine.scratch_devs[1]);
    run(
        "mkfs.btrfs",
        &["-q", "-f", "-d", "raid1", "-m", "raid1", a, b],
    );
    let scratch = PathBuf::from(&machine.work_dir).join("mnt/scratch");
    run("mount", &[a, scratch.to_str().unwrap()]);
    let work_dir = machine.work_dir.clone();
    drop(machine); // the "crash": no teardown

    let listed = provider.reap(None, true).await.unwrap();
    let kinds = |kind: &str| listed.iter().filter(|i| i.kind == kind).count();
    assert_eq!(kinds("loop-device"), 3, "{listed:?}");
    assert_eq!(kinds("backing-file"), 3, "{listed:?}");
    assert_eq!(kinds("mount"), 1, "{listed:?}");
    assert_eq!(kinds("work-dir"), 1, "{listed:?}");
    assert!(
        listed.iter().all(|i| i.action == "would delete"),
        "{listed:?}"
    );
    assert!(
        listed
            .iter()
            .all(|i| i.run_id.as_deref() == Some("20261124-100000-it00"))
    );
    assert!(listed.iter().all(|i| i.id != theirs));
    // A dry run touches nothing.
    assert_eq!(loops_under(&sandbox.path()).len(), 3);
    assert_eq!(mounts_under(&sandbox.path()), [scratch]);

    let reaped = provider.reap(None, false).await.unwrap();
    assert_eq!(reaped.len(), listed.len(), "{reaped:?}");
    assert!(reaped.iter().all(|i| i.action == "deleted"), "{reaped:?}");
    assert_eq!(loops_under(&sandbox.path()), []);
    assert_eq!(mounts_under(&sandbox.path()), Vec::<PathBuf>::new());
    assert!(!Path::new(&work_dir).exists());
    assert!(provider.reap(None, false).await.unwrap().is_empty());

    assert_eq!(
        loops_under(&foreign.path()),
        [(theirs.clone(), foreign_file)]
    );
    run("losetup", &["-d", &theirs]);
}

#[tokio::test]
async fn reap_finds_devices_of_deleted_files() {
    require!(false);
    let sandbox = Sandbox::new();
    let provider = provider(&sandbox);
    let machine = provider
        .provision(&spec("local-0", 2, 64 * MIB))
        .await
        .unwrap();
    std::fs::remove_dir_all(Path::new(&machine.work_dir).parent().unwrap()).unwrap();
    assert_eq!(
        loops_under(&sandbox.path()).len(),
        2,
        "the kernel still holds them"
    );

    let reaped = provider.reap(None, false).await.unwrap();
    assert_eq!(
        reaped.iter().filter(|i| i.kind == "loop-device").count(),
        2,
        "{reaped:?}"
    );
    assert!(reaped.iter().all(|i| i.action == "deleted"), "{reaped:?}");
    assert_eq!(loops_under(&sandbox.path()), []);
}
