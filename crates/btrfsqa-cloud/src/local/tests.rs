//! The local provider's decisions, against a simulated machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::fake::FakeSystem;
use super::state::STATE_FILE;
use super::system::ProcessInfo;
use super::*;

struct Setup {
    _temp: tempfile::TempDir,
    work: PathBuf,
    fake: Arc<FakeSystem>,
    provider: LocalProvider,
}

fn setup() -> Setup {
    let temp = tempfile::tempdir().unwrap();
    let work = temp.path().canonicalize().unwrap().join("work");
    let fake = Arc::new(FakeSystem::new());
    let mut settings = LocalSettings::new(&work);
    settings.detach_timeout = Duration::from_millis(300);
    let provider = LocalProvider::with_system(settings, fake.clone());
    Setup {
        _temp: temp,
        work,
        fake,
        provider,
    }
}

fn spec(run: &str, name: &str, devices: u32) -> MachineSpec {
    let mut spec = MachineSpec::new(RunId::parse(run).unwrap(), name);
    spec.data_devices = devices;
    spec.device_size = 1 << 20;
    spec
}

const RUN: &str = "20261124-100000-ab12";

impl Setup {
    fn provision(&self, devices: u32) -> Result<Machine, ProvisionError> {
        self.provider
            .inner
            .provision(&spec(RUN, "local-0", devices))
    }
    fn teardown(&self, machine: &Machine) -> Result<(), TeardownError> {
        self.provider.inner.teardown(machine)
    }
    fn reap(&self, run: Option<&str>, dry_run: bool) -> Vec<ReapItem> {
        let run = run.map(|r| RunId::parse(r).unwrap());
        self.provider.inner.reap(run.as_ref(), dry_run).unwrap()
    }
    fn machine_dir(&self) -> PathBuf {
        self.work.join(RUN).join("local-0")
    }
    /// Loop devices whose files lie in the work directory.
    fn our_devices(&self) -> Vec<String> {
        let s = self.fake.state();
        s.loops
            .iter()
            .filter(|(_, f)| f.starts_with(&self.work))
            .map(|(n, _)| format!("/dev/loop{n}"))
            .collect()
    }
}

fn leftovers(error: TeardownError) -> Vec<String> {
    match error {
        TeardownError::Leftovers { leftovers, .. } => leftovers,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn provision_makes_files_devices_mount_points_and_state() {
    let t = setup();
    let foreign = t.fake.attach_foreign(Path::new("/elsewhere/x.img"));
    let machine = t.provision(6).unwrap();
    let dir = t.machine_dir();

    assert_eq!(machine.provider, "local");
    assert_eq!(machine.access, Access::Local);
    assert_eq!(machine.work_dir, dir.display().to_string());
    assert_eq!(machine.test_dev, "/dev/loop1");
    assert_eq!(
        machine.scratch_devs,
        [
            "/dev/loop2",
            "/dev/loop3",
            "/dev/loop4",
            "/dev/loop5",
            "/dev/loop6"
        ]
    );
    assert_ne!(machine.test_dev, foreign);
    for n in 0..6 {
        let file = dir.join(format!("disk-{n}.img"));
        assert_eq!(file.metadata().unwrap().len(), 1 << 20);
    }
    assert!(dir.join("mnt/test").is_dir());
    assert!(dir.join("mnt/scratch").is_dir());

    let state = LocalState::read(&dir).unwrap();
    assert_eq!(state.phase, Phase::Ready);
    assert_eq!(state.loop_devices.len(), 6);
    assert_eq!(state.loop_devices[0].backing_file, dir.join("disk-0.img"));
    assert_eq!(state.controller.pid, std::process::id());
    assert_eq!(serde_json::to_value(&state).unwrap(), machine.state);
}

#[test]
fn provision_checks_root_and_the_spec() {
    let t = setup();
    let config = |result: Result<Machine, ProvisionError>| match result {
        Err(ProvisionError::Config { message, .. }) => message,
        other => panic!("unexpected {other:?}"),
    };
    assert!(config(t.provision(1)).contains("at least 2"));
    let mut odd = spec(RUN, "local-0", 2);
    odd.device_size = 1000;
    assert!(config(t.provider.inner.provision(&odd)).contains("multiple of 512"));
    assert!(config(t.provider.inner.provision(&spec(RUN, "../x", 2))).contains("machine name"));
    t.fake.state().root = false;
    assert!(config(t.provision(2)).contains("needs root for loop devices"));
    assert!(!t.work.exists(), "nothing is made before the checks pass");
}

#[test]
fn provision_into_an_existing_machine_directory_is_refused() {
    let t = setup();
    let machine = t.provision(2).unwrap();
    let err = t.provision(2).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    // The first machine is untouched.
    assert_eq!(t.our_devices().len(), 2);
    t.teardown(&machine).unwrap();
}

#[test]
fn a_failure_halfway_undoes_everything() {
    let t = setup();
    t.fake.state().fail_attach.insert(2);
    let err = t.provision(6).unwrap_err();
    let ProvisionError::Failed {
        operation,
        leftovers,
        ..
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert!(
        operation.contains("disk-2.img` to a loop device"),
        "{operation}"
    );
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(err.to_string().starts_with("local: cannot attach"), "{err}");
    assert!(t.fake.devices().is_empty());
    assert!(!t.work.join(RUN).exists());
    let calls = t.fake.calls();
    assert_eq!(
        calls,
        [
            "attach /dev/loop0",
            "attach /dev/loop1",
            "forget /dev/loop0",
            "detach /dev/loop0",
            "forget /dev/loop1",
            "detach /dev/loop1"
        ]
    );
}

#[test]
fn an_undo_that_fails_says_what_is_left() {
    let t = setup();
    t.fake.state().fail_attach.insert(2);
    t.fake.state().fail_detach.insert("/dev/loop1".into());
    let err = t.provision(4).unwrap_err();
    let ProvisionError::Failed { leftovers, .. } = &err else {
        panic!("unexpected {err:?}");
    };
    let text = leftovers.join("\n");
    assert!(
        text.contains("loop-device `/dev/loop1`: still attached"),
        "{text}"
    );
    assert!(text.contains("losetup -d failed"), "{text}");
    assert!(text.contains("disk-1.img`: kept"), "{text}");
    assert!(text.contains("work-dir"), "{text}");
    assert!(!text.contains("/dev/loop0"), "{text}");
    assert!(err.to_string().contains("may be left behind"), "{err}");
    // What is left is found by reap once the device lets go.
    t.fake.state().fail_detach.clear();
    let items = t.reap(None, false);
    assert!(items.iter().all(|i| i.action == "deleted"), "{items:?}");
    assert!(t.fake.devices().is_empty());
}

#[test]
fn lost_races_for_a_free_device_are_retried() {
    let t = setup();
    t.fake.state().race_attach = 2;
    let machine = t.provision(2).unwrap();
    assert_eq!(t.fake.state().attach_calls, 4);
    t.teardown(&machine).unwrap();

    t.fake.state().race_attach = 100;
    let err = t.provision(2).unwrap_err();
    assert!(
        format!("{:?}", err).contains("Device or resource busy"),
        "{err:?}"
    );
    assert!(t.fake.devices().is_empty());
}

#[test]
fn teardown_removes_everything_and_is_idempotent() {
    let t = setup();
    let machine = t.provision(3).unwrap();
    t.teardown(&machine).unwrap();
    assert!(t.fake.devices().is_empty());
    assert!(!t.work.join(RUN).exists());
    assert!(t.work.exists(), "the work directory itself stays");
    let calls = t.fake.calls().len();
    t.teardown(&machine).unwrap();
    assert_eq!(
        t.fake.calls().len(),
        calls,
        "a second teardown changes nothing"
    );
}

#[test]
fn teardown_waits_for_devices_someone_holds_open_briefly() {
    let t = setup();
    let machine = t.provision(2).unwrap();
    // A filesystem probe of another process has the test device open.
    let name = machine.test_dev.trim_start_matches("/dev/").to_owned();
    t.fake.state().transient.insert(name, 4);
    t.teardown(&machine).unwrap();
    assert!(t.fake.devices().is_empty());
    assert!(!t.machine_dir().exists());
}

#[test]
fn a_device_that_stays_attached_is_detached_again() {
    let t = setup();
    let machine = t.provision(2).unwrap();
    // The first `losetup -d` fails; the device is not even marked.
    t.fake.state().fail_detach.insert(machine.test_dev.clone());
    let left = leftovers(t.teardown(&machine).unwrap_err()).join("\n");
    assert!(left.contains("losetup -d failed"), "{left}");
    let detaches = t
        .fake
        .calls()
        .iter()
        .filter(|c| **c == format!("detach {}", machine.test_dev))
        .count();
    assert_eq!(detaches, 2, "tried once more while waiting");
    t.fake.state().fail_detach.clear();
    t.teardown(&machine).unwrap();
}

#[test]
fn teardown_without_btrfs_progs_skips_forget() {
    let t = setup();
    t.fake.state().btrfs = false;
    let machine = t.provision(2).unwrap();
    t.teardown(&machine).unwrap();
    assert!(!t.fake.calls().iter().any(|c| c.starts_with("forget")));
}

#[test]
fn teardown_never_touches_devices_that_are_not_ours() {
    let t = setup();
    let machine = t.provision(2).unwrap();
    // Someone detaches our test device and the number goes to another file,
    // which the state still names.
    let test_dev = machine.test_dev.clone();
    {
        let mut s = t.fake.state();
        let n: u32 = test_dev.trim_start_matches("/dev/loop").parse().unwrap();
        s.loops.insert(n, PathBuf::from("/elsewhere/theirs.img"));
    }
    // A file of another run, in the same work directory.
    let other_run = t.work.join("20261124-100000-ffff/local-0");
    std::fs::create_dir_all(&other_run).unwrap();
    std::fs::write(other_run.join("disk-0.img"), "").unwrap();
    let theirs = t.fake.attach_foreign(&other_run.join("disk-0.img"));
    // And one whose path merely starts with the same characters.
    let similar = t.work.join(format!("{RUN}x/local-0"));
    std::fs::create_dir_all(&similar).unwrap();
    std::fs::write(similar.join("disk-0.img"), "").unwrap();
    let lookalike = t.fake.attach_foreign(&similar.join("disk-0.img"));

    t.teardown(&machine).unwrap();
    let calls = t.fake.calls();
    for device in [&test_dev, &theirs, &lookalike] {
        assert!(
            !calls.contains(&format!("detach {device}")),
            "{device} touched: {calls:?}"
        );
        assert!(t.fake.devices().contains(device));
    }
    assert!(calls.contains(&format!("detach {}", machine.scratch_devs[0])));
    assert!(other_run.join("disk-0.img").exists());
}

#[test]
fn teardown_refuses_a_machine_outside_its_work_directory() {
    let t = setup();
    let mut machine = t.provision(2).unwrap();
    let real = machine.clone();
    machine.work_dir = "/".into();
    let left = leftovers(t.teardown(&machine).unwrap_err());
    assert!(left[0].contains("refusing to touch it"), "{left:?}");
    machine.work_dir = real.work_dir.clone();
    machine.provider = "aws".into();
    assert!(leftovers(t.teardown(&machine).unwrap_err())[0].contains("not `local`"));
    assert_eq!(t.our_devices().len(), 2, "nothing was touched");
    t.teardown(&real).unwrap();
}

#[test]
fn teardown_unmounts_every_mount_of_a_multi_device_btrfs() {
    let t = setup();
    let machine = t.provision(6).unwrap();
    let dir = t.machine_dir();
    let s = &machine.scratch_devs;
    let foreign = t.fake.attach_foreign(Path::new("/elsewhere/f.img"));
    let unrelated = t.fake.attach_foreign(Path::new("/elsewhere/g.img"));
    // raid1 over two scratch devices, under the work dir.
    t.fake.mount(&dir.join("mnt/scratch"), &[&s[0], &s[1]]);
    // The test device, mounted outside the work dir.
    t.fake
        .mount(Path::new("/mnt/outside"), &[&machine.test_dev]);
    // A btrfs over a foreign device and ours, shown by the foreign one.
    t.fake.mount(Path::new("/mnt/mixed"), &[&foreign, &s[2]]);
    // Stacked mounts on one mount point.
    t.fake.mount(&dir.join("mnt/test"), &[&s[3]]);
    t.fake.mount(&dir.join("mnt/test"), &[&s[4]]);
    // Not ours at all.
    t.fake.mount(Path::new("/mnt/theirs"), &[&unrelated]);

    t.teardown(&machine).unwrap();
    let left: Vec<PathBuf> = t
        .fake
        .state()
        .mounts
        .iter()
        .map(|m| m.point.clone())
        .collect();
    assert_eq!(left, [PathBuf::from("/mnt/theirs")]);
    assert_eq!(t.fake.devices(), [foreign, unrelated]);
    assert!(!dir.exists());
    assert!(!t.fake.calls().iter().any(|c| c.starts_with("umount -l")));
}

#[test]
fn a_busy_mount_is_unmounted_lazily_and_its_devices_reported() {
    let t = setup();
    let machine = t.provision(3).unwrap();
    let dir = t.machine_dir();
    let point = dir.join("mnt/scratch");
    let (a, b) = (&machine.scratch_devs[0], &machine.scratch_devs[1]);
    t.fake.mount(&point, &[a, b]);
    t.fake.state().busy.insert(point.clone());

    let left = leftovers(t.teardown(&machine).unwrap_err()).join("\n");
    assert!(
        t.fake
            .calls()
            .contains(&format!("umount -l {}", point.display()))
    );
    assert!(
        left.contains(&format!("loop-device `{a}`: still attached")),
        "{left}"
    );
    assert!(left.contains("when its last user closes it"), "{left}");
    assert!(
        left.contains(&format!("loop-device `{b}`: still attached")),
        "{left}"
    );
    assert!(left.contains("disk-1.img`: kept"), "{left}");
    assert!(left.contains("work-dir"), "{left}");
    assert!(!left.contains(&machine.test_dev), "{left}");
    assert!(
        dir.join("disk-1.img").exists(),
        "files of busy devices are kept"
    );

    // Once the last user lets go the kernel clears the devices.
    t.fake.release_held();
    t.teardown(&machine).unwrap();
    assert!(t.fake.devices().is_empty());
    assert!(!dir.exists());
}

#[test]
fn a_mount_that_cannot_be_removed_keeps_the_directory() {
    let t = setup();
    let machine = t.provision(2).unwrap();
    let point = t.machine_dir().join("mnt/test");
    t.fake.mount(&point, &["/dev/vdz"]);
    t.fake.state().busy.insert(point.clone());
    t.fake.state().stuck.insert(point.clone());
    let left = leftovers(t.teardown(&machine).unwrap_err()).join("\n");
    assert!(
        t.fake
            .calls()
            .contains(&format!("umount -l {}", point.display()))
    );
    assert!(left.contains("lazy unmount failed too"), "{left}");
    assert!(
        left.contains(&format!("mount `{}`", point.display())),
        "{left}"
    );
    assert!(
        left.contains("kept: something is still mounted under it"),
        "{left}"
    );
    assert!(point.exists());
}

fn live(comm: &str, start_time: u64) -> ProcessInfo {
    ProcessInfo {
        comm: comm.into(),
        exe: None,
        start_time,
    }
}

#[test]
fn reap_lists_then_removes_what_a_crash_left() {
    let t = setup();
    let machine = t.provision(3).unwrap();
    let files: Vec<PathBuf> = (0..3)
        .map(|n| t.machine_dir().join(format!("disk-{n}.img")))
        .collect();
    drop(machine); // the "crash"
    let foreign = t.fake.attach_foreign(Path::new("/elsewhere/x.img"));

    let items = t.reap(None, true);
    assert!(
        items.iter().all(|i| i.action == "would delete"),
        "{items:?}"
    );
    let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "loop-device",
            "loop-device",
            "loop-device",
            "backing-file",
            "backing-file",
            "backing-file",
            "work-dir"
        ]
    );
    assert!(items.iter().all(|i| i.run_id.as_deref() == Some(RUN)));
    assert_eq!(items[6].id, t.work.join(RUN).display().to_string());
    assert_eq!(t.our_devices().len(), 3, "a dry run touches nothing");
    assert!(files.iter().all(|f| f.exists()));
    assert!(t.fake.calls().iter().all(|c| c.starts_with("attach")));

    let items = t.reap(None, false);
    assert_eq!(items.len(), 7);
    assert!(items.iter().all(|i| i.action == "deleted"), "{items:?}");
    assert_eq!(t.fake.devices(), [foreign]);
    assert!(!t.work.join(RUN).exists());
    assert!(t.reap(None, false).is_empty());
}

#[test]
fn reap_finds_devices_whose_files_were_deleted() {
    let t = setup();
    t.provision(2).unwrap();
    std::fs::remove_dir_all(t.work.join(RUN)).unwrap();
    let items = t.reap(None, false);
    let ids: Vec<(&str, &str)> = items
        .iter()
        .map(|i| (i.kind.as_str(), i.action.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("loop-device", "deleted"),
            ("loop-device", "deleted"),
            ("backing-file", "deleted"),
            ("backing-file", "deleted")
        ]
    );
    assert!(t.fake.devices().is_empty());
}

#[test]
fn reap_leaves_runs_of_a_live_controller_alone_unless_named() {
    let t = setup();
    let pid = std::process::id();
    t.fake.state().processes.insert(pid, live("btrfsqa", 1234));
    t.provision(2).unwrap();

    let items = t.reap(None, false);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].kind, "run");
    assert!(
        items[0]
            .action
            .to_string()
            .contains(&format!("pid `{pid}`")),
        "{items:?}"
    );
    assert_eq!(t.our_devices().len(), 2);

    // Named explicitly, it goes.
    let items = t.reap(Some(RUN), false);
    assert!(items.iter().all(|i| i.action == "deleted"), "{items:?}");
    assert!(t.our_devices().is_empty());
}

#[test]
fn reap_takes_runs_whose_pid_now_belongs_to_another_process() {
    let t = setup();
    let pid = std::process::id();
    t.fake.state().processes.insert(pid, live("btrfsqa", 1234));
    t.provision(2).unwrap();
    // Same pid, another start time: a new process.
    t.fake.state().processes.insert(pid, live("btrfsqa", 99999));
    assert!(t.reap(None, false).iter().all(|i| i.action == "deleted"));
    // A live process that is not btrfsqa does not protect a run either.
    t.fake.state().processes.insert(pid, live("bash", 1234));
    t.provision(2).unwrap();
    assert!(t.reap(None, false).iter().all(|i| i.action == "deleted"));
    assert!(t.fake.devices().is_empty());
}

#[test]
fn reap_only_takes_the_named_run() {
    let t = setup();
    t.provider
        .inner
        .provision(&spec("20261124-100000-aaaa", "m", 2))
        .unwrap();
    t.provider
        .inner
        .provision(&spec("20261124-100000-bbbb", "m", 2))
        .unwrap();
    // A directory that is no run id is not ours to judge.
    std::fs::create_dir_all(t.work.join(".hidden")).unwrap();
    let items = t.reap(Some("20261124-100000-aaaa"), false);
    assert!(
        items
            .iter()
            .all(|i| i.run_id.as_deref() == Some("20261124-100000-aaaa"))
    );
    assert_eq!(t.our_devices().len(), 2);
    assert!(
        t.work
            .join("20261124-100000-bbbb/m")
            .join(STATE_FILE)
            .exists()
    );
    assert!(t.work.join(".hidden").exists());
    t.reap(None, false);
    assert!(t.our_devices().is_empty());
}

#[test]
fn a_crash_between_attach_and_state_write_is_still_reaped() {
    let t = setup();
    // What a controller killed right after `losetup` leaves: a state file
    // that lists the file but not the device.
    let dir = t.machine_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("disk-0.img");
    std::fs::write(&file, "").unwrap();
    let state = LocalState {
        run_id: RUN.into(),
        machine: "local-0".into(),
        work_dir: dir.clone(),
        controller: Controller {
            pid: u32::MAX,
            start_time: None,
            name: None,
        },
        phase: Phase::Provisioning,
        backing_files: vec![file.clone()],
        loop_devices: Vec::new(),
        mount_dirs: Vec::new(),
    };
    state.write(&dir).unwrap();
    t.fake.attach_foreign(&file);
    let items = t.reap(None, false);
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(t.fake.devices().is_empty());
    assert!(!dir.exists());
}

#[tokio::test]
async fn the_trait_methods_run_the_same_steps() {
    let t = setup();
    let provider: &dyn CloudProvider = &t.provider;
    assert_eq!(provider.id(), "local");
    let machine = provider.provision(&spec(RUN, "local-0", 2)).await.unwrap();
    assert_eq!(provider.reap(None, true).await.unwrap().len(), 5);
    provider.teardown(&machine).await.unwrap();
    provider.teardown(&machine).await.unwrap();
    assert!(provider.reap(None, false).await.unwrap().is_empty());
}
