//! Real suites split per test over several machines of the local provider:
//! the verdicts equal those of one machine and of the suite run directly.
//! Needs root and the suites' sources (`BTRFSQA_FSTESTS_GIT`,
//! `BTRFSQA_BTRFS_PROGS_GIT`; `scripts/test.sh` sets both).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::runs::Area;
use crate::{btrfsqa, need_root, run, text};

/// About forty quick btrfs and generic tests (`bench/fstests-40.list`, one
/// list for this test and the benchmark).
pub(crate) fn fstests_list() -> Vec<&'static str> {
    include_str!("../../../../bench/fstests-40.list")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect()
}

/// The real suites' runs take this machine's CPUs, disks and loop devices:
/// one at a time, so none fails for another's load (btrfs-progs' cases list
/// every loop device of the host).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn env_path(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A config of the local provider with six 10 GiB devices, `suites` and
/// their sections, sharing one git and build cache across runs.
fn config(area: &Area, results: &str, body: &str) -> PathBuf {
    let text = format!(
        r#"[run]
provider = "local"
results-dir = "{results}"

[machine]
data-devices = 6
device-size-gib = 10

[providers.local]
work-dir = "work"

{body}"#
    );
    let file = area.path(&format!("{results}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

/// Runs `btrfsqa run` and returns its report.
fn run_shards(area: &Area, config: &Path, results: &str, shards: u32) -> serde_json::Value {
    let out = run(btrfsqa()
        .args(["run", "--config"])
        .arg(config)
        .args(["--shards", &shards.to_string()]));
    let (stdout, stderr) = text(&out);
    eprintln!("{stdout}\n{stderr}");
    let dir = std::fs::read_dir(area.path(results))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("report.json").is_file())
        .expect("a stored run");
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// `test [profile]` → verdict, and the machines that ran tests.
fn verdicts_and_machines(
    report: &serde_json::Value,
) -> (BTreeMap<String, String>, std::collections::BTreeSet<String>) {
    let mut verdicts = BTreeMap::new();
    let mut machines = std::collections::BTreeSet::new();
    for suite in report["suites"].as_array().unwrap() {
        for test in suite["tests"].as_array().unwrap() {
            let key = format!(
                "{} {}",
                test["name"].as_str().unwrap(),
                test["profile"].as_str().unwrap_or("")
            );
            verdicts.insert(key, test["verdict"].as_str().unwrap().to_owned());
            if let Some(machine) = test["machine"].as_str() {
                machines.insert(machine.to_owned());
            }
        }
    }
    (verdicts, machines)
}

#[test]
fn fstests_on_two_machines_gives_the_verdicts_of_one_and_of_check_itself() {
    if !need_root("fstests_on_two_machines_gives_the_verdicts_of_one_and_of_check_itself") {
        return;
    }
    let _one = one_at_a_time();
    let Some(git) = env_path("BTRFSQA_FSTESTS_GIT") else {
        eprintln!("skipped: set BTRFSQA_FSTESTS_GIT to an fstests git repository");
        return;
    };
    let area = Area::new();
    let list = fstests_list();
    let tests = list
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let body = format!(
        "[suites.xfstests]\ngit-url = {git:?}\ncache-dir = {:?}\ntests = [{tests}]\n",
        area.path("cache").display().to_string()
    );
    let one = config_with_suites(&area, "one", "xfstests", &body);
    let two = config_with_suites(&area, "two", "xfstests", &body);
    let sharded = run_shards(&area, &two, "two", 2);
    let single = run_shards(&area, &one, "one", 1);
    let (two_verdicts, two_machines) = verdicts_and_machines(&sharded);
    let (one_verdicts, _) = verdicts_and_machines(&single);
    assert_eq!(two_verdicts.len(), list.len(), "{two_verdicts:#?}");
    assert_eq!(
        two_machines.len(),
        2,
        "both machines ran fstests tests: {two_machines:?}"
    );
    assert_eq!(two_verdicts, one_verdicts, "2 shards against 1");

    // `./check` itself, on the tree the runs built (from their build cache).
    let direct = check_directly(&area, &list);
    let one_by_name: BTreeMap<String, String> = one_verdicts
        .iter()
        .map(|(k, v)| (k.split(' ').next().unwrap().to_owned(), v.clone()))
        .collect();
    assert_eq!(one_by_name, direct, "btrfsqa against ./check");
    area.assert_nothing_left();
}

/// A config whose `[run]` names `suite`.
fn config_with_suites(area: &Area, results: &str, suite: &str, body: &str) -> PathBuf {
    let file = config(area, results, body);
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "[run]\n",
        &format!("[run]\nsuites = [{suite:?}]\n"),
        1,
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// Runs `./check` on `tests` in a tree unpacked from the build cache, on
/// six fresh loop devices, and returns each test's verdict from its
/// result.xml as btrfsqa's parser reads it.
fn check_directly(area: &Area, tests: &[&str]) -> BTreeMap<String, String> {
    let archive = std::fs::read_dir(area.path("cache/builds"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("xfstests-"))
                && p.extension().is_some_and(|e| e == "gz")
        })
        .expect("the runs kept their fstests build");
    let tree = area.path("direct/fstests");
    std::fs::create_dir_all(&tree).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&tree)
            .status()
            .unwrap()
            .success()
    );
    let disks = area.path("direct/disks");
    std::fs::create_dir_all(&disks).unwrap();
    let mut devices = Vec::new();
    for i in 0..6 {
        let file = disks.join(format!("d{i}.img"));
        std::fs::File::create(&file)
            .unwrap()
            .set_len(10 << 30)
            .unwrap();
        let out = run(Command::new("losetup").args(["-f", "--show"]).arg(&file));
        devices.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    let _detach = Detach(devices.clone());
    let mnt = area.path("direct/mnt");
    let (test_dir, scratch, results) = (mnt.join("test"), mnt.join("scratch"), mnt.join("results"));
    for dir in [&test_dir, &scratch, &results] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(
        tree.join("local.config"),
        format!(
            "[default]\nFSTYP=btrfs\nTEST_DEV={}\nTEST_DIR={}\nSCRATCH_MNT={}\nSCRATCH_DEV_POOL=\"{}\"\nRESULT_BASE={}\n",
            devices[0],
            test_dir.display(),
            scratch.display(),
            devices[1..].join(" "),
            results.display()
        ),
    )
    .unwrap();
    run(Command::new("mkfs.btrfs").args(["-f", "-q", &devices[0]]));
    let out = Command::new("./check")
        .args(["-R", "xunit", "-s", "default"])
        .args(tests)
        .current_dir(&tree)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let _ = Command::new("umount").arg(&test_dir).status();
    let _ = Command::new("umount").arg(&scratch).status();
    let xml = std::fs::read(results.join("default/result.xml")).expect("result.xml");
    btrfsqa_suites::xfstests::parse::parse_xunit(&xml)
        .expect("a readable result.xml")
        .tests
        .into_iter()
        .map(|t| (t.name, t.verdict.as_str().to_owned()))
        .collect()
}

/// Detaches loop devices on drop.
struct Detach(Vec<String>);

impl Drop for Detach {
    fn drop(&mut self) {
        for device in &self.0 {
            let _ = Command::new("losetup").args(["-d", device]).status();
        }
    }
}

#[test]
fn btrfs_progs_on_two_machines_gives_the_verdicts_of_one() {
    if !need_root("btrfs_progs_on_two_machines_gives_the_verdicts_of_one") {
        return;
    }
    let _one = one_at_a_time();
    let Some(git) = env_path("BTRFSQA_BTRFS_PROGS_GIT") else {
        eprintln!("skipped: set BTRFSQA_BTRFS_PROGS_GIT to a btrfs-progs git repository");
        return;
    };
    let area = Area::new();
    // cli/017 renames device nodes in /dev: never on a shared host.
    // misc/041 is a race by design: it passes only while a `btrfs send`
    // started 2 s earlier still runs ("may not work on a really fast
    // device", says the test), so its verdict follows the host's load, not
    // the sharding.
    let body = format!(
        "[suites.btrfs-progs]\ngit-url = {git:?}\ncache-dir = {:?}\nsuites = [\"cli\", \"mkfs\", \"misc\"]\nexclude = [\"cli/017-*\", \"misc/041-*\"]\ncase-timeout-secs = 600\n",
        area.path("cache").display().to_string()
    );
    let one = config_with_suites(&area, "one", "btrfs-progs", &body);
    let two = config_with_suites(&area, "two", "btrfs-progs", &body);
    let sharded = run_shards(&area, &two, "two", 2);
    let single = run_shards(&area, &one, "one", 1);
    let (two_verdicts, two_machines) = verdicts_and_machines(&sharded);
    let (one_verdicts, _) = verdicts_and_machines(&single);
    assert!(two_verdicts.len() > 50, "{two_verdicts:#?}");
    assert_eq!(two_machines.len(), 2, "{two_machines:?}");
    assert_eq!(two_verdicts, one_verdicts, "2 shards against 1");
    area.assert_nothing_left();
}

fn qemu_missing() -> Option<String> {
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

/// Twelve small btrfs tests for VMs: mkfs, mount, write, scrub; one skips,
/// one fails, and `001_victim` takes 20 s (long enough to kill its VM). With
/// no history, the first batch of two machines is three tests: the victim's
/// batch has two more.
fn vm_scripts(area: &Area) {
    let work = "mkfs.btrfs -q -f \"$SCRATCH_DEV\" && mount \"$SCRATCH_DEV\" \"$SCRATCH_MNT\" && \
                dd if=/dev/urandom of=\"$SCRATCH_MNT/f\" bs=1M count=8 status=none && sync";
    let scripts: Vec<(String, String)> = (1..=12)
        .map(|i| {
            let (name, body) = match i {
                4 => ("skips".to_owned(), "exit 77".to_owned()),
                1 => ("victim".to_owned(), format!("{work} && sleep 20 && umount \"$SCRATCH_MNT\"")),
                8 => ("fails".to_owned(), "echo 'expected 1, got 2' >&2; exit 1".to_owned()),
                _ => (
                    "write-scrub".to_owned(),
                    format!("{work} && btrfs scrub start -B \"$SCRATCH_MNT\" >/dev/null && umount \"$SCRATCH_MNT\""),
                ),
            };
            (format!("{i:03}_{name}"), body)
        })
        .collect();
    let pairs: Vec<(&str, &str)> = scripts
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_str()))
        .collect();
    area.scripts("vm", &pairs);
}

/// The same twelve tests on one VM, on two VMs, and on two VMs one of which
/// is killed while it runs `001_victim`: the verdicts agree, the victim is
/// `crashed`, the rest of its batch runs on the other VM, and no VM or file
/// is left.
#[test]
fn qemu_two_vms_give_the_verdicts_of_one_and_survive_a_killed_vm() {
    if !need_root("qemu_two_vms_give_the_verdicts_of_one_and_survive_a_killed_vm") {
        return;
    }
    let _one = one_at_a_time();
    if let Some(why) = qemu_missing() {
        eprintln!("skipping qemu_two_vms_give_the_verdicts_of_one_and_survive_a_killed_vm: {why}");
        return;
    }
    let area = Area::new();
    vm_scripts(&area);
    let body = "[providers.qemu]\nwork-dir = \"work\"\nmemory-mib = 1024\n\n\
                [suites.scripts.vm]\ndir = \"vm\"\ntimeout-secs = 300\n";
    let qemu = |results: &str| {
        let file = config_with_suites(&area, results, "vm", body);
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace("provider = \"local\"", "provider = \"qemu\"")
            .replace("[providers.local]\nwork-dir = \"work\"\n", "")
            .replace("device-size-gib = 10", "device-size-gib = 2");
        std::fs::write(&file, text).unwrap();
        file
    };
    let single = run_shards(&area, &qemu("one"), "one", 1);
    let sharded = run_shards(&area, &qemu("two"), "two", 2);
    let (one, _) = verdicts_and_machines(&single);
    let (two, machines) = verdicts_and_machines(&sharded);
    assert_eq!(one.len(), 12, "{one:#?}");
    assert_eq!(one, two, "2 VMs against 1");
    assert_eq!(machines.len(), 2, "{machines:?}");

    // Two VMs again; the one that runs the victim is killed mid-test.
    let config = qemu("killed");
    let child = btrfsqa()
        .args([
            "run",
            "--shards",
            "2",
            "--message-format",
            "json",
            "--config",
        ])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The controller goes with the test if the test gives up on it.
    let mut child = KillOnDrop(Some(child));
    let started = std::time::Instant::now();
    let (run_id, victim_vm) = loop {
        assert!(
            started.elapsed().as_secs() < 900,
            "the victim never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
        // The results directory also holds the store's lock file.
        let Some(journal) = std::fs::read_dir(area.path("killed")).ok().and_then(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.join("journal.jsonl").is_file())
        }) else {
            continue;
        };
        let text = std::fs::read_to_string(journal.join("journal.jsonl")).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("\"test-started\"") && l.contains("001_victim"))
        {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let run_id = journal.file_name().unwrap().to_string_lossy().into_owned();
            break (run_id, event["machine"].as_str().unwrap().to_owned());
        }
    };
    std::thread::sleep(std::time::Duration::from_secs(3));
    let killed = Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            &format!("qemu-system.*{run_id}/{victim_vm}/"),
        ])
        .status()
        .unwrap();
    assert!(killed.success(), "no qemu process of {victim_vm} to kill");
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(area.path("killed").join(&run_id).join("report.json")).unwrap(),
    )
    .unwrap();
    let (verdicts, _) = verdicts_and_machines(&report);
    let mut expected = one.clone();
    expected.insert("001_victim ".into(), "crashed".into());
    assert_eq!(verdicts, expected, "every test has its verdict");
    // What the killed VM handed back ran on the other one.
    let journal =
        std::fs::read_to_string(area.path("killed").join(&run_id).join("journal.jsonl")).unwrap();
    let handed: Vec<String> = journal
        .lines()
        .filter(|l| l.contains("goes back to the queue"))
        .filter_map(|l| l.rsplit(": ").next())
        .flat_map(|list| {
            list.trim_end_matches("\"}")
                .split(", ")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        !handed.is_empty(),
        "the victim's batch had more tests:\n{journal}"
    );
    for label in &handed {
        let name = label.trim_start_matches("vm/");
        let test = report["suites"][0]["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no outcome for {name}"));
        assert_ne!(
            test["machine"].as_str(),
            Some(victim_vm.as_str()),
            "{name} ran on the killed VM"
        );
    }
    let left = Command::new("pgrep")
        .args(["-f", &format!("qemu-system.*{run_id}")])
        .status()
        .unwrap();
    assert!(!left.success(), "a qemu process of the run is left");
    assert!(
        !area.path("work").join(&run_id).exists(),
        "VM files are left"
    );
}

/// A child process killed when the test lets go of it, so a failed test
/// leaves no controller (and no VM) behind.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            // SIGTERM so the controller tears its machines down.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}
