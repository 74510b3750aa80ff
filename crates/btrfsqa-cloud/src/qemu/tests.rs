//! Tests of the qemu provider: settings, refusals, teardown, reap, boot
//! kernels, resets and the console, on a fake QEMU where a VM is needed.

use super::boot::keep_boot_files;
use super::console::append_console_line;
use super::launch::LaunchSpec;
use super::state::{Controller, QemuState};
use super::*;
use crate::machine::{Access, ReapAction};

fn settings(work: &Path, image: &Path) -> QemuSettings {
    let mut settings = QemuSettings::new(work);
    settings.image = ImagePaths::new(image);
    settings.accel = Accel::Tcg;
    settings
}

#[test]
fn accel_parses_its_three_modes() {
    assert_eq!("auto".parse::<Accel>(), Ok(Accel::Auto));
    assert_eq!("kvm".parse::<Accel>(), Ok(Accel::Kvm));
    assert_eq!("tcg".parse::<Accel>(), Ok(Accel::Tcg));
    assert!("hvf".parse::<Accel>().unwrap_err().contains("`hvf`"));
}

#[test]
fn memory_labels_are_short() {
    assert_eq!(memory_label(2048), "2G");
    assert_eq!(memory_label(1536), "1536M");
}

#[tokio::test]
async fn provisioning_without_an_image_says_how_to_make_one() {
    let work = tempfile::tempdir().unwrap();
    let provider = QemuProvider::new(settings(work.path(), &work.path().join("no-image")));
    let spec = MachineSpec::new(RunId::parse("20261124-100000-ab12").unwrap(), "qemu-0");
    let err = provider.provision(&spec).await.unwrap_err();
    assert!(err.to_string().contains("btrfsqa image build"), "{err}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_is_made() {
    let work = tempfile::tempdir().unwrap();
    let provider = QemuProvider::new(settings(work.path(), work.path()));
    let mut spec = MachineSpec::new(RunId::parse("20261124-100000-ab12").unwrap(), "qemu-0");
    spec.data_devices = 1;
    assert!(matches!(
        provider.provision(&spec).await,
        Err(ProvisionError::Config { .. })
    ));
    spec.data_devices = 6;
    spec.name = "../x".into();
    assert!(matches!(
        provider.provision(&spec).await,
        Err(ProvisionError::Config { .. })
    ));
}

#[tokio::test]
async fn teardown_of_a_machine_that_is_gone_is_a_no_op_and_foreign_dirs_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let provider = QemuProvider::new(settings(work.path(), work.path()));
    let run_id = RunId::parse("20261124-100000-ab12").unwrap();
    let mut machine = Machine {
        run_id: run_id.clone(),
        name: "qemu-0".into(),
        provider: PROVIDER.into(),
        provider_id: "x".into(),
        access: Access::Local,
        test_dev: "/dev/vdb".into(),
        scratch_devs: vec![],
        work_dir: "/var/tmp/btrfsqa".into(),
        instance_type: None,
        state: serde_json::Value::Null,
    };
    provider.teardown(&machine).await.unwrap();
    provider.teardown(&machine).await.unwrap();

    // A state that points elsewhere is never followed.
    let elsewhere = tempfile::tempdir().unwrap();
    let state = QemuState {
        run_id: run_id.to_string(),
        machine: "qemu-0".into(),
        dir: elsewhere.path().to_owned(),
        controller: Controller::current(),
        pid: None,
        launch: None,
        console: elsewhere.path().join("console.log"),
    };
    machine.state = serde_json::to_value(&state).unwrap();
    assert!(provider.teardown(&machine).await.is_err());
    assert!(elsewhere.path().exists());
}

#[tokio::test]
async fn reap_keeps_live_runs_and_deletes_dead_ones() {
    let work = tempfile::tempdir().unwrap();
    let provider = QemuProvider::new(settings(work.path(), work.path()));
    let make = |run: &str, controller: Controller| {
        let dir = provider.inner.machine_dir(run, "qemu-0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("disk-0.qcow2"), "x").unwrap();
        QemuState {
            run_id: run.into(),
            machine: "qemu-0".into(),
            dir: dir.clone(),
            controller,
            // A pid that is not a VM of this run: never signalled.
            pid: Some(std::process::id()),
            launch: None,
            console: dir.join("console.log"),
        }
        .write()
        .unwrap();
        dir
    };
    let live = make("20261124-100000-aaaa", Controller::current());
    let dead = make(
        "20261124-100000-bbbb",
        Controller {
            pid: u32::MAX - 1,
            start_time: Some(1),
        },
    );
    let dry = provider.reap(None, true).await.unwrap();
    assert!(
        dry.iter()
            .any(|i| i.kind == "run" && matches!(i.action, ReapAction::Kept(_)))
    );
    assert!(
        dry.iter()
            .any(|i| i.kind == "work-dir" && i.action == "would delete")
    );
    assert!(!dry.iter().any(|i| i.kind == "qemu-process"), "{dry:?}");
    assert!(dead.exists());

    let done = provider.reap(None, false).await.unwrap();
    assert!(
        done.iter()
            .any(|i| i.kind == "work-dir" && i.action == "deleted")
    );
    assert!(!dead.exists());
    assert!(!dead.parent().unwrap().exists());
    assert!(live.exists());

    // Naming the run reaps it even while its controller lives.
    let run = RunId::parse("20261124-100000-aaaa").unwrap();
    provider.reap(Some(run), false).await.unwrap();
    assert!(!live.exists());
}

#[tokio::test]
async fn boot_kernel_needs_a_launched_machine_and_an_existing_image() {
    let work = tempfile::tempdir().unwrap();
    let provider = QemuProvider::new(settings(work.path(), work.path()));
    let dir = provider.inner.machine_dir("20261124-100000-ab12", "qemu-0");
    std::fs::create_dir_all(&dir).unwrap();
    let state = QemuState {
        run_id: "20261124-100000-ab12".into(),
        machine: "qemu-0".into(),
        dir: dir.clone(),
        controller: Controller::current(),
        pid: None,
        launch: None,
        console: dir.join("console.log"),
    };
    state.write().unwrap();
    let machine = Machine {
        run_id: RunId::parse("20261124-100000-ab12").unwrap(),
        name: "qemu-0".into(),
        provider: PROVIDER.into(),
        provider_id: dir.display().to_string(),
        access: Access::Local,
        test_dev: "/dev/vdb".into(),
        scratch_devs: vec![],
        work_dir: "/var/tmp/btrfsqa".into(),
        instance_type: None,
        state: serde_json::to_value(&state).unwrap(),
    };
    let kernel = BootKernel {
        image: work.path().join("bzImage"),
        initrd: None,
        extra_args: None,
        release: "6.1.192".into(),
    };
    let err = provider.boot_kernel(&machine, &kernel).await.unwrap_err();
    assert!(err.to_string().contains("never launched"), "{err}");
}

const RUN: &str = "20261124-100000-ab12";

/// A machine of `provider` whose directory and state file exist, launched
/// with `launch` (or never).
fn machine_with_state(provider: &QemuProvider, launch: Option<LaunchSpec>) -> Machine {
    let dir = provider.inner.machine_dir(RUN, "qemu-0");
    std::fs::create_dir_all(&dir).unwrap();
    let state = QemuState {
        run_id: RUN.into(),
        machine: "qemu-0".into(),
        dir: dir.clone(),
        controller: Controller::current(),
        pid: None,
        launch,
        console: dir.join("console.log"),
    };
    state.write().unwrap();
    Machine {
        run_id: RunId::parse(RUN).unwrap(),
        name: "qemu-0".into(),
        provider: PROVIDER.into(),
        provider_id: dir.display().to_string(),
        access: Access::Local,
        test_dev: "/dev/vdb".into(),
        scratch_devs: vec![],
        work_dir: "/var/tmp/btrfsqa".into(),
        instance_type: None,
        state: serde_json::to_value(&state).unwrap(),
    }
}

/// A launch spec whose files exist (empty) in the machine's directory.
fn launch_spec(provider: &QemuProvider) -> LaunchSpec {
    let dir = provider.inner.machine_dir(RUN, "qemu-0");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| {
        let path = dir.join(name);
        std::fs::write(&path, "").unwrap();
        path
    };
    let tag = state::tag(RUN, "qemu-0");
    LaunchSpec {
        tag: tag.clone(),
        accel: Accelerator::Tcg,
        memory_mib: 512,
        cpus: 1,
        kernel: file("vmlinuz"),
        initrd: None,
        append: launch::kernel_cmdline(&tag, None),
        disks: vec![file("root.qcow2"), file("disk-0.qcow2")],
        ssh_port: 40022,
        console: dir.join("console.log"),
        qmp: dir.join("qmp.sock"),
        pidfile: dir.join("qemu.pid"),
        authorized_keys: file("id_ed25519.pub"),
        bios: None,
    }
}

#[tokio::test]
async fn reset_needs_a_launched_machine_that_still_has_its_files() {
    let work = tempfile::tempdir().unwrap();
    let provider = QemuProvider::new(settings(work.path(), work.path()));
    let machine = machine_with_state(&provider, None);
    let err = provider.reset(&machine).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Config { .. }), "{err}");
    assert!(err.to_string().contains("never launched"), "{err}");

    let spec = launch_spec(&provider);
    let machine = machine_with_state(&provider, Some(spec.clone()));
    std::fs::remove_file(&spec.disks[1]).unwrap();
    let err = provider.reset(&machine).await.unwrap_err();
    assert!(err.to_string().contains("disk-0.qcow2` is gone"), "{err}");

    std::fs::remove_dir_all(work.path().join(RUN)).unwrap();
    let err = provider.reset(&machine).await.unwrap_err();
    assert!(err.to_string().contains("torn down or reaped"), "{err}");
    assert!(!work.path().join(RUN).exists(), "nothing made");
}

#[tokio::test]
async fn console_is_none_without_a_file_and_the_file_otherwise() {
    let work = tempfile::tempdir().unwrap();
    let provider = QemuProvider::new(settings(work.path(), work.path()));
    let machine = machine_with_state(&provider, None);
    assert_eq!(provider.console(&machine).await, None);
    let console = QemuProvider::console_path(&machine).unwrap();
    std::fs::write(&console, b"Linux version 6.1\r\nbad \xff byte\r\n").unwrap();
    assert_eq!(
        provider.console(&machine).await.as_deref(),
        Some("Linux version 6.1\r\nbad \u{fffd} byte\r\n")
    );
    // Torn down: the state in the Machine still names the console.
    std::fs::remove_file(
        provider
            .inner
            .machine_dir(RUN, "qemu-0")
            .join(state::STATE_FILE),
    )
    .unwrap();
    assert!(provider.console(&machine).await.is_some());
    // A machine that is not one of ours has no console.
    let mut foreign = machine.clone();
    foreign.state = serde_json::Value::Null;
    foreign.name = "qemu-9".into();
    assert_eq!(provider.console(&foreign).await, None);
}

#[test]
fn a_long_console_is_cut_to_its_end_at_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.log");
    std::fs::write(&path, "first line\nsecond line\nthird\n").unwrap();
    assert_eq!(
        read_console_tail(&path, 16).as_deref(),
        Some("third\n"),
        "the cut `ine\\n` is dropped"
    );
    assert_eq!(
        read_console_tail(&path, 1000).as_deref(),
        Some("first line\nsecond line\nthird\n")
    );
    assert_eq!(read_console_tail(&dir.path().join("none"), 16), None);
}

#[test]
fn the_reset_separator_goes_on_a_line_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("console.log");
    append_console_line(&path, RESET_SEPARATOR).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"[ 1.0] sysrq: Trigger a cr"))
        .unwrap();
    append_console_line(&path, RESET_SEPARATOR).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{RESET_SEPARATOR}\n[ 1.0] sysrq: Trigger a cr\n{RESET_SEPARATOR}\n")
    );
}

#[test]
fn boot_files_are_copied_into_the_machine_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    std::fs::write(store.path().join("bzImage"), "kernel 1").unwrap();
    std::fs::write(store.path().join("initrd"), "initrd 1").unwrap();
    let mut kernel = BootKernel {
        image: store.path().join("bzImage"),
        initrd: Some(store.path().join("initrd")),
        extra_args: None,
        release: "6.1.192".into(),
    };
    let (image, initrd) = keep_boot_files(dir.path(), &kernel).unwrap();
    assert_eq!(image, dir.path().join("boot/vmlinuz"));
    assert_eq!(std::fs::read_to_string(&image).unwrap(), "kernel 1");
    assert_eq!(
        std::fs::read_to_string(initrd.unwrap()).unwrap(),
        "initrd 1"
    );
    // The store entry is rebuilt: the VM's copy is not.
    std::fs::write(store.path().join("bzImage"), "kernel 2").unwrap();
    assert_eq!(std::fs::read_to_string(&image).unwrap(), "kernel 1");

    kernel.initrd = None;
    let (image, initrd) = keep_boot_files(dir.path(), &kernel).unwrap();
    assert_eq!(std::fs::read_to_string(&image).unwrap(), "kernel 2");
    assert_eq!(initrd, None);
    assert!(!dir.path().join("boot/initrd.img").exists());

    kernel.image = store.path().join("missing");
    assert!(keep_boot_files(dir.path(), &kernel).is_err());
    assert_eq!(std::fs::read_to_string(&image).unwrap(), "kernel 2");
    let mut names: Vec<_> = std::fs::read_dir(dir.path().join("boot"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["vmlinuz"], "no temporary file is left");
}

/// A stand-in for QEMU: daemonizes a shell loop whose command line
/// carries the VM's tag, writes its pidfile, and a line to the console.
const FAKE_QEMU: &str = r#"#!/bin/sh
if [ "$1" = --vm ]; then
    while :; do sleep 1; done
fi
prev=
for arg in "$@"; do
    case "$prev" in
        -pidfile) pidfile=$arg ;;
        -chardev) console=${arg#*path=}; console=${console%,append=on} ;;
    esac
    prev=$arg
done
echo "fake boot" >> "$console"
"$0" --vm "$@" </dev/null >/dev/null 2>&1 &
echo $! > "$pidfile"
"#;

/// Kills what the fake QEMU left running, also when the test fails.
struct StopFake<'a>(&'a QemuProvider, Machine);

impl Drop for StopFake<'_> {
    fn drop(&mut self) {
        let _ = self.0.inner.teardown(&self.1);
    }
}

#[tokio::test]
async fn reset_kills_a_running_vm_or_relaunches_a_dead_one_and_keeps_the_console() {
    let work = tempfile::tempdir().unwrap();
    let fake = work.path().join("fake-qemu");
    std::fs::write(&fake, FAKE_QEMU).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut settings = settings(work.path(), work.path());
    settings.qemu = fake;
    let provider = QemuProvider::new(settings);
    let spec = launch_spec(&provider);
    let machine = machine_with_state(&provider, Some(spec.clone()));
    let _stop = StopFake(&provider, machine.clone());
    let dir = provider.inner.machine_dir(RUN, "qemu-0");
    let current_pid = || QemuState::read(&dir).unwrap().pid.expect("a pid");

    // Never running (say it was killed before the state knew its pid).
    provider.reset(&machine).await.unwrap();
    let first = current_pid();
    assert!(launch::process_has_tag(first, &spec.tag));

    // Running (a hung guest): killed, and another one launched.
    provider.reset(&machine).await.unwrap();
    let second = current_pid();
    assert_ne!(first, second);
    assert!(
        !launch::process_has_tag(first, &spec.tag),
        "the old VM is gone"
    );
    assert!(launch::process_has_tag(second, &spec.tag));

    // Killed by someone else: just launched again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(launch::wait_gone(
        second,
        &spec.tag,
        Duration::from_secs(10)
    ));
    provider.reset(&machine).await.unwrap();
    let third = current_pid();
    assert!(launch::process_has_tag(third, &spec.tag));

    let console = provider.console(&machine).await.unwrap();
    let boot = format!("{RESET_SEPARATOR}\nfake boot\n");
    assert_eq!(console, boot.repeat(3));

    // Teardown finds the VM of the last reset.
    provider.teardown(&machine).await.unwrap();
    assert!(!launch::process_has_tag(third, &spec.tag));
    assert!(!dir.exists());
}
