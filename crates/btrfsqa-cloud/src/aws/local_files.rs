//! What the provider keeps on the controller: a private directory per
//! machine with the generated key and the known_hosts file, and the
//! operator's public address for the SSH rule.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::error::AwsError;

/// `key_dir/<run>/<machine>`, with unsafe characters of the machine name
/// replaced (run ids are already safe).
pub(crate) fn machine_dir(key_dir: &Path, run: &str, machine: &str) -> PathBuf {
    let machine: String = machine
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    key_dir.join(run).join(machine.trim_start_matches('.'))
}

/// `key_dir/<run>/.shared`: the key of a run whose machines came from one
/// fleet (and so share a key pair). No machine's directory has this name:
/// [`machine_dir`] strips leading dots.
pub(crate) fn shared_dir(key_dir: &Path, run: &str) -> PathBuf {
    key_dir.join(run).join(".shared")
}

fn local(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> AwsError {
    let (what, path) = (what.to_owned(), path.to_owned());
    move |source| AwsError::Local { what, path, source }
}

/// Makes `dir` and its missing parents below `key_dir`, all mode 0700: the
/// private key must not be readable by others, nor its directory listable.
pub(crate) async fn make_private_dir(key_dir: &Path, dir: &Path) -> Result<(), AwsError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(local("create the directory", dir))?;
    let mut walk = Some(dir);
    while let Some(path) = walk {
        tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(local("restrict the permissions of", path))?;
        if path == key_dir {
            break;
        }
        walk = path.parent().filter(|parent| parent.starts_with(key_dir));
    }
    Ok(())
}

/// Generates an ed25519 key pair in `dir` (no passphrase: it lives for one
/// run in a private directory); returns the private key's path and the
/// public key line.
pub(crate) async fn generate_key(dir: &Path, comment: &str) -> Result<(PathBuf, String), AwsError> {
    let private = dir.join("id_ed25519");
    let public = dir.join("id_ed25519.pub");
    for stale in [&private, &public] {
        match tokio::fs::remove_file(stale).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(local("remove the old key", stale)(error)),
        }
    }
    let output = tokio::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&private)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| AwsError::KeyGen {
            message: format!("cannot run it: {error}"),
        })?;
    if !output.status.success() {
        return Err(AwsError::KeyGen {
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let line = tokio::fs::read_to_string(&public)
        .await
        .map_err(local("read the public key", &public))?;
    Ok((private, line.trim().to_owned()))
}

/// Writes `contents` to `path` (mode 0600), replacing it.
pub(crate) async fn write_private_file(path: &Path, contents: &str) -> Result<(), AwsError> {
    tokio::fs::write(path, contents)
        .await
        .map_err(local("write", path))?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .await
        .map_err(local("restrict the permissions of", path))
}

/// Removes a machine's directory, and the run's directory when it is empty.
pub(crate) async fn remove_machine_dir(dir: &Path) -> Result<(), AwsError> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(local("remove", dir)(error)),
    }
    if let Some(run_dir) = dir.parent() {
        // Fails while other machines of the run still have theirs: fine.
        let _ = tokio::fs::remove_dir(run_dir).await;
    }
    Ok(())
}

/// Asks `url` for this machine's public address (a plain-text answer, as
/// `https://checkip.amazonaws.com` gives), through `curl`.
pub(crate) async fn detect_public_address(url: &str) -> Result<IpAddr, String> {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("curl")
            .args([
                "--fail",
                "--silent",
                "--show-error",
                "--max-time",
                "15",
                "--",
                url,
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("`curl {url}` did not answer in 20 s"))?
    .map_err(|error| format!("cannot run `curl`: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`curl {url}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .map_err(|_| format!("`{url}` answered `{}`, not an address", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_dirs_stay_inside_the_key_dir() {
        let base = Path::new("/keys");
        assert_eq!(
            machine_dir(base, "r1", "aws-0"),
            Path::new("/keys/r1/aws-0")
        );
        assert_eq!(machine_dir(base, "r1", "../x"), Path::new("/keys/r1/_x"));
        assert_eq!(machine_dir(base, "r1", "a/b"), Path::new("/keys/r1/a_b"));
    }

    #[tokio::test]
    async fn keys_are_generated_in_a_private_directory() {
        if std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_err()
        {
            eprintln!("skipped: no ssh-keygen on PATH");
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let key_dir = base.path().join("keys");
        let dir = machine_dir(&key_dir, "r1", "aws-0");
        make_private_dir(&key_dir, &dir).await.unwrap();
        for path in [&key_dir, &key_dir.join("r1"), &dir] {
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", path.display());
        }
        let (private, public) = generate_key(&dir, "btrfsqa-r1-aws-0").await.unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        assert!(public.ends_with(" btrfsqa-r1-aws-0"), "{public}");
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second run over the same directory replaces the key.
        let (_, again) = generate_key(&dir, "btrfsqa-r1-aws-0").await.unwrap();
        assert_ne!(public, again);
        remove_machine_dir(&dir).await.unwrap();
        assert!(!dir.exists());
        assert!(!key_dir.join("r1").exists());
        remove_machine_dir(&dir).await.unwrap();
    }

    #[tokio::test]
    async fn address_detection_failure_is_explained() {
        let error = detect_public_address("http://127.0.0.1:1/")
            .await
            .unwrap_err();
        assert!(error.contains("127.0.0.1:1"), "{error}");
    }
}
