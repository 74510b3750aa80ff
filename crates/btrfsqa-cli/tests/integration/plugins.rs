//! The suite and the provider added through the registry table alone:
//! `profile-check` on loop devices, and `hosts-file` handing out an sshd of
//! the tests' own on 127.0.0.1 whose devices are loop devices.

use std::process::Command;

use crate::runs::{Area, pairs, verdicts};
use crate::{btrfsqa, need_root, run, text};

#[test]
fn profile_check_makes_and_checks_a_filesystem_in_each_profile() {
    if !need_root("profile_check_makes_and_checks_a_filesystem_in_each_profile") {
        return;
    }
    let area = Area::new();
    // Four data devices: a test device and three scratch devices, too few
    // for raid1c4 and raid10.
    let config = area.config(
        "\"profile-check\"",
        "\n[suites.profile-check]\ntimeout-secs = 60\n",
    );
    let text_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace("data-devices = 6", "data-devices = 4");
    std::fs::write(&config, text_config).unwrap();
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report = area.report();
    assert_eq!(
        verdicts(&report),
        pairs(&[
            ("single", "pass"),
            ("dup", "pass"),
            ("raid0", "pass"),
            ("raid1", "pass"),
            ("raid1c3", "pass"),
            ("raid1c4", "skip"),
            ("raid10", "skip"),
            ("raid5", "pass"),
            ("raid6", "pass"),
        ])
    );
    area.assert_nothing_left();
}

/// Loop devices of the test's own, detached when it ends.
struct Loops(Vec<String>);

impl Loops {
    fn attach(area: &Area, count: usize) -> Loops {
        let mut devices = Vec::new();
        for i in 0..count {
            let file = area.path(&format!("host-disk-{i}.img"));
            std::fs::File::create(&file)
                .unwrap()
                .set_len(2 << 30)
                .unwrap();
            let out = run(Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&file));
            assert!(out.status.success(), "{:?}", text(&out));
            devices.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
        Loops(devices)
    }
}

impl Drop for Loops {
    fn drop(&mut self) {
        for device in &self.0 {
            let _ = Command::new("btrfs")
                .args(["device", "scan", "--forget", device])
                .status();
            let _ = Command::new("losetup").args(["-d", device]).status();
        }
    }
}

#[test]
fn hosts_file_provider_runs_on_the_hosts_its_file_lists() {
    if !need_root("hosts_file_provider_runs_on_the_hosts_its_file_lists") {
        return;
    }
    let Some(sshd) = btrfsqa_remote::testsupport::TestSshd::start() else {
        return;
    };
    let area = Area::new();
    let loops = Loops::attach(&area, 3);
    let target = sshd.target();
    std::fs::write(
        area.path("lab-hosts.toml"),
        format!(
            "[[hosts]]\nname = \"lab-0\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             identity-file = {key:?}\nknown-hosts-file = {known:?}\n\
             test-dev = {test:?}\nscratch-devs = [{scratch0:?}, {scratch1:?}]\nwork-dir = {work:?}\n",
            port = sshd.port(),
            key = target.identity_file.unwrap().display().to_string(),
            known = sshd.known_hosts().display().to_string(),
            test = loops.0[0],
            scratch0 = loops.0[1],
            scratch1 = loops.0[2],
            work = area.path("work-ssh").display().to_string(),
        ),
    )
    .unwrap();
    let config = area.path("btrfsqa.toml");
    std::fs::write(
        &config,
        "[run]\nprovider = \"hosts-file\"\nsuites = [\"profile-check\"]\nresults-dir = \"results\"\n\n\
         [providers.hosts-file]\npath = \"lab-hosts.toml\"\nstate-dir = \"state\"\n\n\
         [suites.profile-check]\nprofiles = [\"single\", \"raid1\", \"raid5\", \"raid6\"]\n",
    )
    .unwrap();
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{stderr}\n{}",
        sshd.log()
    );
    let report = area.report();
    assert_eq!(
        verdicts(&report),
        pairs(&[
            ("single", "pass"),
            ("raid1", "pass"),
            ("raid5", "pass"),
            ("raid6", "skip"),
        ])
    );
    let machine = &report["provenance"]["machines"][0];
    assert_eq!(machine["provider"], "hosts-file", "{machine}");
    assert!(
        machine["address"].as_str().unwrap().contains("127.0.0.1"),
        "{machine}"
    );

    // A broken hosts file is named with its line, and nothing runs.
    std::fs::write(area.path("lab-hosts.toml"), "[[hosts]]\nhost = 7\n").unwrap();
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    assert!(stderr.contains("lab-hosts.toml:2"), "{stderr}");
}
