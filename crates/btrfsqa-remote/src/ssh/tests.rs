//! Tests of the OpenSSH host's pure parts: the shell text it sends, host
//! checks, environment names and host-key failures (a real sshd is in the
//! integration tests).

use super::commands::kill_group_command;
use super::*;

#[test]
fn exec_wrapper_passes_values_as_arguments() {
    let script = ExecRequest::new("echo 'it''s'; exit 3")
        .env("A", "x y")
        .script();
    let wrapped = wrap_exec(&script, "pg");
    assert!(wrapped.starts_with(
        "exec sh -c 'f=${TMPDIR:-/tmp}/$1\nexec 3<&0 </dev/null\nsetsid -w sh -c '\\''"
    ));
    assert!(wrapped.ends_with(&format!(" btrfsqa-exec pg {}", shell_quote(&script))));
    // One level of unquoting (what the login shell does) gives back the
    // wrapper and the script untouched.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s\\n' {}",
            wrapped.trim_start_matches("exec sh -c ")
        ))
        .output()
        .unwrap();
    let words = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = words.split('\n').collect();
    assert_eq!(words[0], "f=${TMPDIR:-/tmp}/$1");
    assert_eq!(words[1], "exec 3<&0 </dev/null");
    assert!(words[2].starts_with("setsid -w sh -c"));
    assert!(words.contains(&"btrfsqa-exec"));
    assert!(words.contains(&"pg"));
}

#[test]
fn helper_commands_quote_paths() {
    assert_eq!(
        upload_command("/tmp/a b/it's"),
        r#"exec sh -c 'mkdir -p -- "$(dirname -- "$1")" && exec cat > "$1"' btrfsqa-upload '/tmp/a b/it'\''s'"#
    );
    assert_eq!(
        download_command("-rf"),
        r#"exec sh -c 'exec cat -- "$1"' btrfsqa-download -rf"#
    );
    assert!(kill_group_command("x y").ends_with(" btrfsqa-kill 'x y'"));
    assert_eq!(
        detached_command("systemctl reboot || reboot"),
        "setsid -f sh -c 'sleep 1; systemctl reboot || reboot' </dev/null >/dev/null 2>&1"
    );
}

#[test]
fn pgid_files_are_unique() {
    let a = unique_pgid_file();
    let b = unique_pgid_file();
    assert_ne!(a, b);
    assert!(a.starts_with("btrfsqa-exec.") && a.ends_with(".pgid"));
}

#[test]
fn hosts_that_ssh_would_misread_are_refused() {
    for good in ["10.0.0.1", "vm-1.example.org", "::1", "fe80::1%eth0"] {
        assert_eq!(check_host(good), Ok(()), "{good}");
    }
    for bad in ["", "-oProxyCommand=x", "root@h", "h x", "h;x"] {
        assert!(check_host(bad).is_err(), "{bad}");
    }
}

#[test]
fn environment_names_are_shell_names() {
    assert!(is_env_name("FSTYP") && is_env_name("_x1"));
    assert!(!is_env_name("") && !is_env_name("1A") && !is_env_name("A;rm -rf /"));
}

#[test]
fn host_key_failures_are_recognised_through_the_chain() {
    let io = std::io::Error::other(
        "@@@\nWARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\nHost key verification failed.",
    );
    let error = RemoteError::Connect {
        host: "m".into(),
        source: Box::new(openssh::Error::Connect(io)),
    };
    assert!(host_key_refused(&error));
    let other = RemoteError::Connect {
        host: "m".into(),
        source: Box::new(openssh::Error::Connect(std::io::Error::other(
            "Connection refused",
        ))),
    };
    assert!(!host_key_refused(&other) && !is_permanent(&other));
    let invalid = Inner::new(
        "m".into(),
        SshTarget::new("-oProxyCommand=touch /tmp/x", 22, "root"),
    )
    .err()
    .unwrap();
    assert!(is_permanent(&invalid), "{invalid:?}");
}
