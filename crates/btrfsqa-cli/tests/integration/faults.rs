//! Fault injection: whole runs of the `btrfsqa` binary in which something
//! goes wrong on purpose: a test that hangs, a kernel that complains, a
//! suite that prints garbage, a controller killed at several points, a full
//! results disk, a cut SSH connection, and in a QEMU VM a kernel panic, a
//! blocked task and a killed VM. Each case asserts the verdicts, that every
//! finished result is in the store, and that nothing is left behind.

use std::process::Command;
use std::time::Duration;

use crate::runs::{
    Area, pairs, spawn_run, verdicts, wait_for_journal, wait_for_journal_within, walk,
};
use crate::{btrfsqa, need_root, run, text};

fn test_of<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["suites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tests"].as_array().unwrap().iter())
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no outcome for {name}"))
}

fn artifact(report: &serde_json::Value, test: &str, file: &str) -> Option<String> {
    test_of(report, test)["artifacts"]
        .as_array()?
        .iter()
        .filter_map(|a| a["path"].as_str())
        .find(|p| p.ends_with(file))
        .map(str::to_owned)
}

fn run_dir(area: &Area, report: &serde_json::Value) -> std::path::PathBuf {
    area.path("results")
        .join(report["run_id"].as_str().unwrap())
}

fn journal(area: &Area, report: &serde_json::Value) -> String {
    std::fs::read_to_string(run_dir(area, report).join("journal.jsonl")).unwrap_or_default()
}

#[test]
fn fault_a_test_sleeping_past_its_timeout_is_hung_with_evidence_and_the_rest_runs() {
    if !need_root("fault_a_test_sleeping_past_its_timeout_is_hung_with_evidence_and_the_rest_runs")
    {
        return;
    }
    let area = Area::new();
    area.scripts(
        "hangs",
        &[
            ("001_quick", "true"),
            (
                "002_sleeps",
                "sleep 600 & echo $! > \"$BTRFSQA_WORK_DIR/sleeper.pid\"; sleep 600",
            ),
            (
                "003_after",
                "mkfs.btrfs -q -f \"$TEST_DEV\" && mount \"$TEST_DEV\" \"$TEST_DIR\" && umount \"$TEST_DIR\"",
            ),
        ],
    );
    let config = area.config(
        "\"hangs\"",
        "\n[suites.scripts.hangs]\ndir = \"hangs\"\n[suites.scripts.hangs.timeouts]\n\"002_sleeps\" = 3\n",
    );
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let report = area.report();
    assert_eq!(
        verdicts(&report),
        pairs(&[
            ("001_quick", "pass"),
            ("002_sleeps", "hung"),
            ("003_after", "pass")
        ])
    );
    let evidence = artifact(&report, "002_sleeps", "hang-evidence.txt").expect("hang evidence");
    let evidence = std::fs::read_to_string(run_dir(&area, &report).join(evidence)).unwrap();
    assert!(
        evidence.contains("blocked tasks") && evidence.contains("uninterruptible"),
        "{evidence}"
    );
    assert!(
        journal(&area, &report).contains("`hangs/002_sleeps` hung"),
        "the journal tells of the recovery"
    );
    area.assert_nothing_left();
}

#[test]
fn fault_a_btrfs_critical_error_in_the_kernel_log_fails_a_passing_test() {
    if !need_root("fault_a_btrfs_critical_error_in_the_kernel_log_fails_a_passing_test") {
        return;
    }
    let area = Area::new();
    // The message names this machine's own device: other runs sharing this
    // kernel (loop devices) leave messages about their devices alone.
    area.scripts(
        "kmsg",
        &[
            (
                "001_critical",
                "d=$(basename \"$(readlink -f \"$SCRATCH_DEV\")\")\n\
                 echo \"BTRFS critical (device $d): btrfsqa fault injection\" > /dev/kmsg",
            ),
            ("002_quiet", "true"),
        ],
    );
    let config = area.config("\"kmsg\"", "\n[suites.scripts.kmsg]\ndir = \"kmsg\"\n");
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let report = area.report();
    assert_eq!(
        verdicts(&report),
        pairs(&[("001_critical", "fail"), ("002_quiet", "pass")])
    );
    let failed = test_of(&report, "001_critical");
    let problems = failed["kernel_log"].as_array().unwrap();
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("btrfsqa fault injection"),
        "{failed}"
    );
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("passed, but the kernel logged 1 problem line: BTRFS critical")
    );
    assert!(artifact(&report, "001_critical", "dmesg").is_some());
    area.assert_nothing_left();
}

#[test]
fn fault_a_suite_printing_garbage_keeps_its_verdicts_and_publishes() {
    if !need_root("fault_a_suite_printing_garbage_keeps_its_verdicts_and_publishes") {
        return;
    }
    let area = Area::new();
    area.scripts(
        "garbage",
        &[
            (
                "001_binary",
                // Binary noise, terminal escapes, a NUL, a fake marker of the
                // kernel log block, and a long line without an end.
                "head -c 3000000 /dev/urandom\n\
                 printf '\\033[2J\\033[31m red \\000 nul\\n'\n\
                 echo 'btrfsqa: kernel log begin' >&2\n\
                 head -c 200000 /dev/urandom | tr -d '\\n' >&2\n\
                 exit 0",
            ),
            (
                "002_fails-noisily",
                "head -c 100000 /dev/urandom >&2; printf '\\377\\376 not utf-8\\n' >&2; exit 3",
            ),
            ("003_after", "echo fine"),
        ],
    );
    let config = area.config(
        "\"garbage\"",
        "\n[suites.scripts.garbage]\ndir = \"garbage\"\n",
    );
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let report = area.report();
    assert_eq!(
        verdicts(&report),
        pairs(&[
            ("001_binary", "pass"),
            ("002_fails-noisily", "fail"),
            ("003_after", "pass")
        ])
    );
    assert!(
        test_of(&report, "002_fails-noisily")["message"]
            .as_str()
            .unwrap()
            .contains("code 3")
    );
    assert!(artifact(&report, "001_binary", "stdout").is_some());
    assert_eq!(
        area.site_log().lines().count(),
        1,
        "the dashboard is published"
    );
    area.assert_nothing_left();
}

/// Where in a run the controller gets its signal: the journal line that
/// must be there first.
const PROVISIONING: &str = "\"stage\":\"provision\"";
const IN_A_TEST: &str = "\"test\":\"002_waits\"";

/// Sends `signal` to a run at `point`, then (after `reap` for SIGKILL)
/// resumes it: every test ends with exactly one verdict, finished tests
/// never run again, and nothing is left.
fn controller_signalled_then_resumed(signal: &str, point: &str) {
    let area = Area::new();
    let go = area.path("go");
    area.scripts(
        "steps",
        &[
            ("001_quick", "true"),
            (
                "002_waits",
                &format!("[ -e {go} ] && exit 0; sleep 600", go = go.display()),
            ),
            ("003_after", "true"),
        ],
    );
    let config = area.config("\"steps\"", "\n[suites.scripts.steps]\ndir = \"steps\"\n");
    let child = spawn_run(&config);
    wait_for_journal(&area, point);
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    if signal == "-KILL" {
        assert_eq!(out.status.code(), None, "killed by the signal");
        // The test's own processes outlive a SIGKILLed controller.
        let _ = Command::new("pkill").args(["-f", "002_waits"]).status();
        let out = run(btrfsqa().args(["reap", "--config"]).arg(&config));
        let (reaped, err) = text(&out);
        assert!(out.status.success(), "{reaped}{err}");
    } else {
        assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
        assert_eq!(area.report()["status"], "interrupted");
    }
    area.assert_nothing_left();
    let before = area.report();
    let run_id = before["run_id"].as_str().unwrap().to_owned();
    let finished: Vec<(String, String)> = verdicts(&before)
        .into_iter()
        .filter(|(_, v)| v != "interrupted")
        .collect();

    std::fs::write(&go, "").unwrap();
    let out = run(btrfsqa().args(["resume", &run_id, "--config"]).arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let after = area.report();
    assert_eq!(after["status"], "completed");
    assert_eq!(
        verdicts(&after),
        pairs(&[
            ("001_quick", "pass"),
            ("002_waits", "pass"),
            ("003_after", "pass")
        ])
    );
    for (test, verdict) in &finished {
        assert!(
            verdicts(&after).contains(&(test.clone(), verdict.clone())),
            "{test} lost its verdict"
        );
    }
    // Finished before the signal: never run again. (A test the signal
    // caught as it started is interrupted, and runs again on resume.)
    let journal = journal(&area, &after);
    for (test, _) in &finished {
        // On any machine: a resumed run's machines have new names.
        let started = format!("\"suite\":\"steps\",\"test\":\"{test}\"}}");
        assert_eq!(
            journal
                .lines()
                .filter(|l| l.contains("\"event\":\"test-started\"") && l.contains(&started))
                .count(),
            1,
            "{test} finished, then ran again:\n{journal}"
        );
    }
    area.assert_nothing_left();
}

#[test]
fn fault_sigint_while_provisioning_then_resume() {
    if need_root("fault_sigint_while_provisioning_then_resume") {
        controller_signalled_then_resumed("-INT", PROVISIONING);
    }
}

#[test]
fn fault_sigterm_while_provisioning_then_resume() {
    if need_root("fault_sigterm_while_provisioning_then_resume") {
        controller_signalled_then_resumed("-TERM", PROVISIONING);
    }
}

#[test]
fn fault_sigkill_while_provisioning_then_reap_and_resume() {
    if need_root("fault_sigkill_while_provisioning_then_reap_and_resume") {
        controller_signalled_then_resumed("-KILL", PROVISIONING);
    }
}

#[test]
fn fault_sigint_in_a_test_then_resume() {
    if need_root("fault_sigint_in_a_test_then_resume") {
        controller_signalled_then_resumed("-INT", IN_A_TEST);
    }
}

#[test]
fn fault_sigterm_in_a_test_then_resume() {
    if need_root("fault_sigterm_in_a_test_then_resume") {
        controller_signalled_then_resumed("-TERM", IN_A_TEST);
    }
}

#[test]
fn fault_sigkill_in_a_test_then_reap_and_resume() {
    if need_root("fault_sigkill_in_a_test_then_reap_and_resume") {
        controller_signalled_then_resumed("-KILL", IN_A_TEST);
    }
}

/// Unmounts a mount point on drop.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn fault_a_full_results_disk_is_an_infrastructure_error_and_nothing_is_left() {
    if !need_root("fault_a_full_results_disk_is_an_infrastructure_error_and_nothing_is_left") {
        return;
    }
    let area = Area::new();
    let results = area.path("results");
    std::fs::create_dir_all(&results).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "btrfsqa-full"])
        .arg(&results)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _guard = Mounted(results.clone());
    area.scripts(
        "chatty",
        &[
            ("001_small", "echo fine"),
            ("002_floods", "head -c 2000000 /dev/zero | tr '\\0' x"),
            ("003_after", "true"),
        ],
    );
    let config = area.config(
        "\"chatty\"",
        "\n[suites.scripts.chatty]\ndir = \"chatty\"\n",
    );
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("No space left on device") && stderr.contains(&*results.to_string_lossy()),
        "the error names the cause and the place:\n{stderr}"
    );
    // What was stored before the disk filled up is still readable.
    let stored = walk(&results)
        .into_iter()
        .find(|p| p.ends_with("report.json"))
        .expect("a report.json");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stored).unwrap()).expect("a whole report.json");
    assert!(report["run_id"].is_string());
    area.assert_nothing_left();
}

/// The machine: an `sshd` of the tests' own on 127.0.0.1, as a static host.
#[test]
fn fault_a_cut_ssh_connection_reruns_the_test_and_the_run_goes_on() {
    if !need_root("fault_a_cut_ssh_connection_reruns_the_test_and_the_run_goes_on") {
        return;
    }
    let Some(sshd) = btrfsqa_remote::testsupport::TestSshd::start() else {
        return;
    };
    let area = Area::new();
    let target = sshd.target();
    let work = area.path("work-ssh");
    // Kills the sshd process that serves this command's connection (its
    // nearest sshd ancestor), once.
    area.scripts(
        "cut",
        &[
            ("001_quick", "true"),
            (
                "002_cuts-its-connection",
                "f=\"$BTRFSQA_WORK_DIR/cut-once\"\n\
                 if [ ! -e \"$f\" ]; then\n\
                   touch \"$f\"\n\
                   p=$$\n\
                   while [ \"$p\" -gt 1 ]; do\n\
                     if [ \"$(cat /proc/$p/comm)\" = sshd ]; then kill -9 \"$p\"; sleep 5; exit 9; fi\n\
                     p=$(awk '{print $4}' /proc/$p/stat)\n\
                   done\n\
                   exit 8\n\
                 fi",
            ),
            ("003_after", "true"),
        ],
    );
    let text_config = format!(
        r#"[run]
provider = "static"
suites = ["cut"]
results-dir = "results"

[[providers.static.hosts]]
name = "sshd-0"
host = "127.0.0.1"
port = {port}
user = "root"
identity-file = "{key}"
known-hosts-file = "{known}"
test-dev = "/dev/btrfsqa-none-0"
scratch-devs = ["/dev/btrfsqa-none-1"]
work-dir = "{work}"

[suites.scripts.cut]
dir = "cut"
"#,
        port = sshd.port(),
        key = target.identity_file.unwrap().display(),
        known = sshd.known_hosts().display(),
        work = work.display(),
    );
    let config = area.path("btrfsqa.toml");
    std::fs::write(&config, text_config).unwrap();
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
            ("001_quick", "pass"),
            ("002_cuts-its-connection", "pass"),
            ("003_after", "pass")
        ])
    );
    assert!(
        journal(&area, &report).contains("running the test again"),
        "the journal tells of the broken connection"
    );
    assert!(work.join("cut-once").exists(), "the cut happened");
}

/// `true` when a process whose command line contains `needle` runs.
fn process_running(needle: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", needle])
        .status()
        .is_ok_and(|s| s.success())
}

fn qemu_image_missing() -> Option<String> {
    if !crate::which("qemu-system-x86_64") {
        return Some("qemu-system-x86_64 is not installed".into());
    }
    let image = btrfsqa_cloud::qemu::image::ImagePaths::from_env_or_default();
    (!image.is_complete()).then(|| {
        format!(
            "no guest image in `{}` (btrfsqa image build)",
            image.dir.display()
        )
    })
}

/// One VM, one run: a kernel warning, a task blocked in the kernel past its
/// timeout, a kernel panic, and the VM killed from outside. Each gets its
/// verdict and its evidence, the VM is reset after each of the last three,
/// and the tests after them still run.
#[test]
fn fault_in_a_qemu_vm_warning_blocked_task_panic_and_killed_vm() {
    if !need_root("fault_in_a_qemu_vm_warning_blocked_task_panic_and_killed_vm") {
        return;
    }
    if let Some(why) = qemu_image_missing() {
        eprintln!("skipping fault_in_a_qemu_vm_warning_blocked_task_panic_and_killed_vm: {why}");
        return;
    }
    let area = Area::new();
    area.scripts(
        "vmfaults",
        &[
            ("001_ok", "true"),
            (
                "002_warns",
                "echo \"WARNING: CPU: 0 PID: $$ at fs/btrfs/fault.c:1 btrfsqa_fault_injection+0x0/0x1\" > /dev/kmsg",
            ),
            (
                // A writer on a frozen filesystem sleeps uninterruptibly; it
                // is mounted outside the suite's mount points, so only a
                // reset ends it.
                "003_blocks",
                "mkdir -p /mnt/frozen && mkfs.btrfs -q -f \"$SCRATCH_DEV\" && \
                 mount \"$SCRATCH_DEV\" /mnt/frozen && fsfreeze -f /mnt/frozen && echo x > /mnt/frozen/f",
            ),
            (
                "004_panics",
                "echo 1 > /proc/sys/kernel/sysrq; sync; echo c > /proc/sysrq-trigger; sleep 60",
            ),
            ("005_vm-killed", "touch /run/btrfsqa-005; sleep 300"),
            (
                "006_after",
                "mkfs.btrfs -q -f \"$TEST_DEV\" && mount \"$TEST_DEV\" \"$TEST_DIR\" && umount \"$TEST_DIR\"",
            ),
        ],
    );
    let config = area.config(
        "\"vmfaults\"",
        "\n[suites.scripts.vmfaults]\ndir = \"vmfaults\"\ntimeout-secs = 240\n\
         [suites.scripts.vmfaults.timeouts]\n\"003_blocks\" = 20\n",
    );
    // The same config on the qemu provider.
    let text_config = std::fs::read_to_string(&config)
        .unwrap()
        .replace("provider = \"local\"", "provider = \"qemu\"")
        .replace(
            "[providers.local]\nwork-dir = \"work\"",
            "[providers.qemu]\nwork-dir = \"work\"\nmemory-mib = 1024",
        );
    std::fs::write(&config, text_config).unwrap();
    let child = spawn_run(&config);
    // Kill the VM while 005 runs; its pid is in the machine's state file.
    wait_for_journal_within(
        &area,
        "\"test\":\"005_vm-killed\"",
        Duration::from_secs(900),
    );
    std::thread::sleep(Duration::from_secs(3));
    let run_id = area.report()["run_id"].as_str().unwrap().to_owned();
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &format!("qemu-system.*{run_id}")])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (_, stderr) = text(&out);
    assert!(killed.success(), "no qemu process of run {run_id} to kill");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report = area.report();
    assert_eq!(
        verdicts(&report),
        pairs(&[
            ("001_ok", "pass"),
            ("002_warns", "fail"),
            ("003_blocks", "hung"),
            ("004_panics", "crashed"),
            ("005_vm-killed", "crashed"),
            ("006_after", "pass"),
        ]),
        "{stderr}"
    );
    let dir = run_dir(&area, &report);
    assert!(
        test_of(&report, "002_warns")["kernel_log"][0]
            .as_str()
            .unwrap()
            .contains("btrfsqa_fault_injection")
    );
    let evidence = std::fs::read_to_string(
        dir.join(artifact(&report, "003_blocks", "hang-evidence.txt").unwrap()),
    )
    .unwrap();
    assert!(
        evidence.contains("state:D") || evidence.contains(" D "),
        "the blocked writer shows in the evidence:\n{evidence}"
    );
    let panic = &test_of(&report, "004_panics");
    assert!(
        panic["message"]
            .as_str()
            .unwrap()
            .starts_with("the kernel crashed: "),
        "{panic}"
    );
    let console =
        std::fs::read_to_string(dir.join(artifact(&report, "004_panics", "console.txt").unwrap()))
            .unwrap();
    assert!(console.contains("Kernel panic"), "{console}");
    assert!(
        test_of(&report, "005_vm-killed")["message"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
    );
    assert!(
        !process_running(&run_id),
        "a qemu process of the run is left"
    );
    assert!(
        !area.path("work").join(&run_id).exists(),
        "the VM's files are left"
    );
}
