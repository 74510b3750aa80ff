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
