//! The command line itself: help, config checking, exit codes.

use crate::{btrfsqa, run, text};

#[test]
fn config_check_accepts_the_embedded_default_and_init_output() {
    let out = run(btrfsqa().args(["config", "check"]));
    assert!(out.status.success(), "{:?}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("btrfsqa.toml");
    let out = run(btrfsqa().arg("init").arg(&file));
    assert!(out.status.success(), "{:?}", text(&out));
    let out = run(btrfsqa().arg("init").arg(&file));
    assert_eq!(out.status.code(), Some(2), "init must not overwrite");
    let out = run(btrfsqa().args(["config", "check"]).arg(&file));
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn config_check_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[run]\nprovider = \"local\"\n\n[machine]\ndata-devices = \"six\"\n",
    )
    .unwrap();
    let out = run(btrfsqa().args(["config", "check"]).arg(&file));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml:5: `machine.data-devices`"),
        "{stderr}"
    );

    std::fs::write(&file, "[run\n").unwrap();
    let out = run(btrfsqa().args(["config", "check"]).arg(&file));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("bad.toml:1:"), "{:?}", text(&out));

    let out = run(btrfsqa()
        .args(["config", "check"])
        .arg(dir.path().join("missing.toml")));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("missing.toml"), "{:?}", text(&out));
}

#[test]
fn run_refuses_bad_flags_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(btrfsqa()
        .args(["run", "--suite", "no-such-suite", "--results-dir"])
        .arg(dir.path()));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown suite `no-such-suite`"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing may be created"
    );

    let out = run(btrfsqa().args(["run", "--provider", "azure"]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_lists_the_commands() {
    let out = run(btrfsqa().arg("--help"));
    let (stdout, _) = text(&out);
    for command in ["run", "init", "config", "reap", "publish", "show"] {
        assert!(stdout.contains(command), "{stdout}");
    }
}

/// A copy of real fstests results in `dir/name` whose `btrfs/012.full`
/// also quotes `secret`.
fn fstests_results_with(dir: &std::path::Path, name: &str, secret: &str) -> std::path::PathBuf {
    let fixture = crate::repo_root().join("crates/btrfsqa-suites/fixtures/xfstests/btrfs-loop-30");
    let src = dir.join(name);
    std::fs::create_dir_all(src.join("btrfs")).unwrap();
    for file in ["result.xml", "check.log", "check.time"] {
        std::fs::copy(fixture.join(file), src.join(file)).unwrap();
    }
    let mut full = std::fs::read(fixture.join("btrfs/012.full")).unwrap();
    full.extend_from_slice(format!("quoted with {secret}\n").as_bytes());
    std::fs::write(src.join("btrfs/012.full"), full).unwrap();
    src
}

/// `btrfsqa import` reads nothing outside the directory it is given and
/// keeps no secret of the run's environment in what it copies.
#[test]
fn import_stays_in_its_directory_and_redacts_what_it_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "s3cret-token-value-0123456789";
    let src = fstests_results_with(tmp.path(), "results-from-elsewhere", secret);
    std::fs::write(tmp.path().join("outside"), "OUTSIDE-THE-IMPORT\n").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside"), src.join("btrfs/001.full")).unwrap();
    let store = tmp.path().join("store");
    let out = run(btrfsqa()
        .env("GITHUB_TOKEN", secret)
        .args(["import", "xfstests"])
        .arg(&src)
        .arg("--results-dir")
        .arg(&store));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("warning:")
            && stderr.contains("btrfs/001.full")
            && stderr.contains("not followed"),
        "{stderr}"
    );
    let mut stack = vec![store.clone()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(
                !content.contains(secret),
                "{} holds the token",
                path.display()
            );
            assert!(
                !content.contains("OUTSIDE-THE-IMPORT"),
                "{} was read from outside",
                path.display()
            );
        }
    }
    assert!(files > 3, "the import kept its files");
}

/// The variables `run.secret-env` names are secrets to an import too: their
/// values never reach the store (config.md), as with a run's recordings.
#[test]
fn import_redacts_the_configured_secret_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "lab-passphrase-0123456789";
    let src = fstests_results_with(tmp.path(), "results", secret);
    let config = tmp.path().join("btrfsqa.toml");
    std::fs::write(&config, "[run]\nsecret-env = [\"LAB_PASSPHRASE\"]\n").unwrap();
    let store = tmp.path().join("store");
    let out = run(btrfsqa()
        .env("LAB_PASSPHRASE", secret)
        .args(["import", "xfstests"])
        .arg(&src)
        .arg("--config")
        .arg(&config)
        .arg("--results-dir")
        .arg(&store));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let mut stack = vec![store];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            files += 1;
            let content = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(!content.contains(secret), "{} holds it", path.display());
        }
    }
    assert!(files > 3, "the import kept its files");
}

/// Runs `btrfsqa ARGS` with its stdout a pipe whose reader is already gone
/// (`btrfsqa ARGS | head -c 0`); its exit code and stderr.
fn with_stdout_closed(args: &[&str], dir: &std::path::Path) -> (Option<i32>, String) {
    let mut child = btrfsqa()
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (out.status.code(), text(&out).1)
}

/// A closed stdout is no panic: every command prints through the CLI's
/// output functions, which drop the output; the command exits with its
/// usual code.
#[test]
fn a_closed_stdout_is_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = with_stdout_closed(&["config", "default"], dir.path());
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    let results = dir.path().join("results");
    let results = results.to_str().unwrap();
    let (code, stderr) = with_stdout_closed(&["plan", "--results-dir", results], dir.path());
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
}

/// `--version` names the commit the binary was built from, as git says it.
#[test]
fn the_version_names_the_commit() {
    let out = run(btrfsqa().arg("--version"));
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with(&format!("btrfsqa {} (", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(crate::repo_root())
        .output();
    match head {
        Ok(head) if head.status.success() => {
            let commit = String::from_utf8_lossy(&head.stdout).trim().to_owned();
            // The binary may be a commit behind a tree that moved since it
            // was built; a fresh build is what CI checks.
            assert!(
                stdout.contains(&format!("({commit})"))
                    || stdout.contains(&format!("({commit}-dirty)")),
                "{stdout} does not name {commit}"
            );
        }
        _ => eprintln!("not in a git checkout: the commit is not checked"),
    }
}

/// Completions and the man page come from the CLI definition: they know
/// every command and flag.
#[test]
fn completions_and_man_pages_are_made_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(btrfsqa().args(["completions", shell]));
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{shell}: {stderr}");
        // fish spells a long flag `-l profile`.
        for word in ["import", "profile", "console", "reference"] {
            assert!(stdout.contains(word), "{shell}: no `{word}`");
        }
    }
    let out = run(btrfsqa().arg("man"));
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains(".TH btrfsqa 1") && stdout.contains("import"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run(btrfsqa().arg("man").arg("--dir").arg(dir.path()));
    assert!(out.status.success(), "{:?}", text(&out));
    let run_page = std::fs::read_to_string(dir.path().join("btrfsqa-run.1")).unwrap();
    assert!(run_page.contains("profile"), "{run_page}");
    let out = run(btrfsqa().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2));
}

/// `btrfsqa config reference` prints docs/config.md, every key of every table.
#[test]
fn the_reference_is_printed() {
    let out = run(btrfsqa().args(["config", "reference"]));
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    let file = std::fs::read_to_string(crate::repo_root().join("docs/config.md")).unwrap();
    assert_eq!(stdout, file);
    assert!(stdout.contains("## `[suites.xfstests]`") && stdout.contains("`mount-options`"));
}

/// `--profile` with a name that is no profile, or in a run without fstests,
/// is a usage error naming the profiles there are; nothing starts.
#[test]
fn an_unknown_profile_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let out = run(btrfsqa()
        .args([
            "run",
            "--suite",
            "xfstests",
            "--profile",
            "compres",
            "--results-dir",
        ])
        .arg(&results));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`--profile compres`") && stderr.contains("compress, holes"),
        "{stderr}"
    );
    let out = run(btrfsqa()
        .args(["run", "--profile", "compress", "--results-dir"])
        .arg(&results));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--suite xfstests"), "{stderr}");
    assert!(!results.exists(), "a refused run left a results store");
    // `plan` takes the same profiles, and refuses the same way.
    let out = run(btrfsqa()
        .args([
            "plan",
            "--suite",
            "xfstests",
            "--profile",
            "compres",
            "--results-dir",
        ])
        .arg(&results));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`--profile compres`"), "{stderr}");
}

/// `plan` refuses flags it cannot use, and plans fstests' `check.time`
/// without a configuration: each machine's tests, or one comparing line.
#[test]
fn plan_checks_its_flags_and_plans_a_check_time_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("check.time");
    for (flags, message) in [
        (vec!["--shards", "0"], "error: --shards must be at least 1"),
        (
            vec!["--setup-secs=-1"],
            "error: --setup-secs must be a number of seconds, 0 or more",
        ),
        (
            vec!["--durations", file.to_str().unwrap()],
            "error: cannot read `",
        ),
    ] {
        let out = run(btrfsqa().arg("plan").args(&flags));
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.starts_with(message), "{flags:?}: {stderr}");
    }
    std::fs::write(&file, "no durations here\n").unwrap();
    let out = run(btrfsqa().arg("plan").arg("--durations").arg(&file));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holds no `TEST SECONDS` lines"), "{stderr}");

    std::fs::write(&file, "btrfs/001 30\nbtrfs/002 10\ngeneric/001 10\n").unwrap();
    let plan = |extra: &[&str]| {
        let out = run(btrfsqa()
            .args(["plan", "--shards", "2", "--setup-secs", "0", "--durations"])
            .arg(&file)
            .args(extra));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stdout
    };
    let stdout = plan(&[]);
    assert!(
        stdout.contains("machine 0: 1 tests in 1 batches, 30 s")
            && stdout.contains("xfstests/btrfs/001")
            && stdout.contains(
                "3 tests, 50 s in all; predicted makespan 30 s on 2 machines (lower bound 30 s)"
            ),
        "{stdout}"
    );
    let stdout = plan(&["--compare"]);
    assert!(
        stdout
            .starts_with("shards=2   tests=3 lower-bound=30s (longest test) btrfsqa=30s (1.000, "),
        "{stdout}"
    );
}

/// `teardown` of a run: a bad id is a usage error; a recorded machine whose
/// provider the configuration cannot make is named, and the exit code says
/// it is still up.
#[test]
fn teardown_names_a_machine_it_cannot_tear_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = run(btrfsqa()
        .args(["teardown", "not/a-run", "--results-dir"])
        .arg(&store));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let id = "20261124-100000-ab12";
    std::fs::create_dir_all(store.join(id)).unwrap();
    let machine = serde_json::json!({
        "run_id": id,
        "name": "gone-0",
        "provider": "no-such-provider",
        "provider_id": "m-1",
        "access": { "kind": "local" },
        "test_dev": "/dev/loop90",
        "scratch_devs": [],
        "work_dir": "/tmp/w",
        "instance_type": null,
    });
    std::fs::write(
        store.join(id).join("machine-gone-0.json"),
        machine.to_string(),
    )
    .unwrap();
    let out = run(btrfsqa()
        .args(["teardown", id, "--results-dir"])
        .arg(&store));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("error: machine `gone-0` has unknown provider `no-such-provider`"),
        "{stderr}"
    );
}

/// `show` and `publish` of runs the store does not hold, or without a site:
/// said by the runner's stored-run errors, exit code 2.
#[test]
fn show_and_publish_name_what_the_store_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let out = run(btrfsqa().arg("show").arg("--results-dir").arg(&results));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no runs in"), "{stderr}");
    let out = run(btrfsqa()
        .args(["show", "../escape", "--results-dir"])
        .arg(&results));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let out = run(btrfsqa()
        .args(["publish", "20260101-000000-abcd", "--results-dir"])
        .arg(&results));
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}
