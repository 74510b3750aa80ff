//! How the git publisher proves who it is to the site repository, without a
//! secret ever reaching a URL, a command line, a repository's config or a
//! log.
//!
//! - HTTPS (GitHub): a token from the environment (`GITHUB_TOKEN`, then
//!   `GH_TOKEN`) is handed to `git` through `GIT_ASKPASS`: a small script in
//!   the publisher's cache prints the token from an environment variable set
//!   only for that `git` process. The URL stays bare, `ps` shows no token,
//!   and `-c credential.helper=` keeps git from storing it anywhere.
//! - SSH: a deploy key (a file) is used through `GIT_SSH_COMMAND`, with
//!   `IdentitiesOnly` so no other key is offered.
//!
//! Only the controller runs this: test machines never push and never see
//! the token.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use btrfsqa_model::fs::AtomicWrite;

use crate::PublishError;

/// The environment variables a token is read from, in order.
pub const TOKEN_ENV_VARS: &[&str] = &["GITHUB_TOKEN", "GH_TOKEN"];

/// The variable the askpass script reads the token from; set only in the
/// environment of the `git` processes that need it.
const PASSWORD_VAR: &str = "BTRFSQA_GIT_PASSWORD";
const USERNAME_VAR: &str = "BTRFSQA_GIT_USERNAME";

/// The askpass script. Git runs it with a prompt as its argument
/// (`Username for 'https://github.com': `, `Password for ...`).
const ASKPASS_SCRIPT: &str = "#!/bin/sh\n\
# Written by btrfsqa: answers git's credential prompts from the environment.\n\
case \"$1\" in\n\
  Username*) printf '%s\\n' \"${BTRFSQA_GIT_USERNAME:-x-access-token}\" ;;\n\
  *) printf '%s\\n' \"$BTRFSQA_GIT_PASSWORD\" ;;\n\
esac\n";

/// What a `git` command is given to authenticate.
#[derive(Clone, Default)]
pub(crate) struct GitCredentials {
    /// The token for HTTPS remotes.
    token: Option<String>,
    /// The askpass script, once written.
    askpass: Option<PathBuf>,
    /// The deploy key for SSH remotes.
    ssh_key: Option<PathBuf>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("ssh_key", &self.ssh_key)
            .finish()
    }
}

impl GitCredentials {
    /// Credentials for pushing to `url`: a token from the first set variable
    /// of `token_env` when `url` is HTTPS, the deploy key `ssh_key` when it
    /// is SSH. The askpass script is written into `cache_dir`.
    pub(crate) fn for_url(
        url: &str,
        token_env: &[String],
        ssh_key: Option<&Path>,
        cache_dir: &Path,
    ) -> Result<Self, PublishError> {
        let lower = url.to_ascii_lowercase();
        let mut credentials = GitCredentials::default();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            credentials.token = token_env
                .iter()
                .filter_map(|name| std::env::var(name).ok())
                .map(|value| value.trim().to_owned())
                .find(|value| !value.is_empty());
            if credentials.token.is_some() {
                credentials.askpass = Some(write_askpass(cache_dir)?);
            }
        } else if !lower.starts_with("file://") && !Path::new(url).is_absolute() {
            credentials.ssh_key = ssh_key.map(Path::to_owned);
        }
        Ok(credentials)
    }

    /// Whether a token will be offered.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// A `git` command set up with these credentials and never prompting.
    pub(crate) fn git(&self) -> Command {
        let mut command = Command::new("git");
        // No credential helper may store what askpass answers.
        command.args(["-c", "credential.helper="]);
        command.env("GIT_TERMINAL_PROMPT", "0");
        command.env_remove(PASSWORD_VAR).env_remove(USERNAME_VAR);
        if let (Some(token), Some(askpass)) = (&self.token, &self.askpass) {
            command.env("GIT_ASKPASS", askpass);
            command.env(PASSWORD_VAR, token);
        }
        if let Some(key) = &self.ssh_key {
            let mut ssh = OsString::from("ssh -o IdentitiesOnly=yes -o BatchMode=yes -i ");
            ssh.push(shell_quote(&key.display().to_string()));
            command.env("GIT_SSH_COMMAND", ssh);
        }
        command
    }

    /// `text` with the token removed, for messages.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(token) if token.len() >= 4 => text.replace(token.as_str(), "***"),
            _ => text.to_owned(),
        }
    }
}

/// Writes the askpass script (mode 0700) into `cache_dir`; it holds no secret.
fn write_askpass(cache_dir: &Path) -> Result<PathBuf, PublishError> {
    fs::create_dir_all(cache_dir).map_err(PublishError::io("create directory", cache_dir))?;
    let path = cache_dir.join("git-askpass.sh");
    let current = fs::read_to_string(&path).ok();
    if current.as_deref() != Some(ASKPASS_SCRIPT) {
        AtomicWrite::new()
            .mode(0o700)
            .write(&path, ASKPASS_SCRIPT.as_bytes())
            .map_err(PublishError::io("write", &path))?;
    }
    Ok(path)
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

    fn with_token() -> (tempfile::TempDir, GitCredentials) {
        let dir = tempfile::tempdir().unwrap();
        let mut credentials = GitCredentials::for_url(
            "https://github.com/o/site.git",
            &["BTRFSQA_TEST_UNSET_TOKEN_VAR".to_owned()],
            None,
            dir.path(),
        )
        .unwrap();
        assert!(!credentials.has_token(), "no variable set");
        credentials.token = Some(TOKEN.to_owned());
        credentials.askpass = Some(write_askpass(dir.path()).unwrap());
        (dir, credentials)
    }

    #[test]
    fn the_token_is_in_the_environment_never_on_the_command_line() {
        let (_dir, credentials) = with_token();
        let command = credentials.git();
        for arg in command.get_args() {
            assert!(!arg.to_string_lossy().contains(TOKEN));
        }
        let envs: Vec<(String, Option<String>)> = command
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert!(envs.contains(&(PASSWORD_VAR.to_owned(), Some(TOKEN.to_owned()))));
        assert!(envs.iter().any(|(k, _)| k == "GIT_ASKPASS"));
        assert!(!format!("{credentials:?}").contains(TOKEN));
        assert_eq!(credentials.scrub(&format!("x {TOKEN} y")), "x *** y");
    }

    #[test]
    fn git_gets_the_token_from_the_askpass_script() {
        if Command::new("git").arg("--version").output().is_err() {
            eprintln!("skipping: the `git` command is not installed");
            return;
        }
        let (dir, credentials) = with_token();
        let script = fs::read_to_string(dir.path().join("git-askpass.sh")).unwrap();
        assert!(!script.contains(TOKEN), "the script holds no secret");
        // `git credential fill` asks exactly as a push over HTTPS would.
        let mut command = credentials.git();
        let mut child = command
            .args(["credential", "fill"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"protocol=https\nhost=github.com\npath=o/site.git\n\n")
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains("username=x-access-token\n"), "{text}");
        assert!(text.contains(&format!("password={TOKEN}\n")), "{text}");
    }

    #[test]
    fn ssh_remotes_use_the_deploy_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("deploy key");
        let credentials =
            GitCredentials::for_url("git@github.com:o/site.git", &[], Some(&key), dir.path())
                .unwrap();
        let command = credentials.git();
        let ssh = command
            .get_envs()
            .find(|(k, _)| *k == "GIT_SSH_COMMAND")
            .and_then(|(_, v)| v)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(ssh.contains("IdentitiesOnly=yes"), "{ssh}");
        assert!(ssh.ends_with(&format!("-i '{}'", key.display())), "{ssh}");
        let local = GitCredentials::for_url("/srv/site.git", &[], Some(&key), dir.path()).unwrap();
        assert!(local.ssh_key.is_none() && !local.has_token());
    }
}
