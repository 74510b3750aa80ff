//! Small steps shared by the suites that build from source: running a setup
//! command, detecting the machine's distribution and installing packages.

use std::time::Duration;

use btrfsqa_remote::{ExecOutput, ExecRequest, RemoteHost, shell_quote};

use crate::SuiteError;

/// How much of a failed command's output goes into the error message.
const TAIL_LINES: usize = 20;

/// Runs a setup command and turns a non-zero exit into [`SuiteError::Setup`]
/// with the tail of its output.
pub(crate) async fn run_step(
    host: &dyn RemoteHost,
    suite: &str,
    step: &str,
    request: ExecRequest,
) -> Result<ExecOutput, SuiteError> {
    let out = host
        .exec(request, None)
        .await
        .map_err(|source| SuiteError::Remote {
            suite: suite.to_owned(),
            source,
        })?;
    if out.success() {
        return Ok(out);
    }
    let status = if out.timed_out {
        "timed out".to_owned()
    } else {
        match out.code {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_owned(),
        }
    };
    Err(SuiteError::Setup {
        suite: suite.to_owned(),
        step: step.to_owned(),
        message: format!("{status}: {}", output_tail(&out)),
    })
}

/// The last lines of a command's standard error and output, for messages.
pub(crate) fn output_tail(out: &ExecOutput) -> String {
    let mut text = out.stdout_text();
    text.push_str(&out.stderr_text());
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join("\n")
}

/// A family of distributions with one package manager and one set of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Distro {
    /// Debian, Ubuntu and their derivatives: apt-get, dpkg.
    Debian,
    /// Fedora, CentOS Stream, RHEL and their derivatives: dnf, rpm.
    Fedora,
}

impl Distro {
    /// Reads `ID` and `ID_LIKE` from the text of `/etc/os-release`.
    pub(crate) fn from_os_release(text: &str) -> Option<Distro> {
        let mut ids = Vec::new();
        for line in text.lines() {
            if let Some(value) = line
                .strip_prefix("ID=")
                .or_else(|| line.strip_prefix("ID_LIKE="))
            {
                ids.extend(
                    value
                        .trim_matches(['"', '\''])
                        .split_whitespace()
                        .map(str::to_owned),
                );
            }
        }
        ids.iter().find_map(|id| match id.as_str() {
            "debian" | "ubuntu" => Some(Distro::Debian),
            "fedora" | "rhel" | "centos" => Some(Distro::Fedora),
            _ => None,
        })
    }
}

/// Finds the machine's distribution.
pub(crate) async fn detect_distro(
    host: &dyn RemoteHost,
    suite: &str,
) -> Result<Distro, SuiteError> {
    let out = run_step(
        host,
        suite,
        "read /etc/os-release",
        ExecRequest::new("cat /etc/os-release").timeout(Duration::from_secs(30)),
    )
    .await?;
    let text = out.stdout_text();
    Distro::from_os_release(&text).ok_or_else(|| SuiteError::Setup {
        suite: suite.to_owned(),
        step: "detect the distribution".to_owned(),
        message: format!(
            "no supported distribution (Debian, Ubuntu, Fedora) in /etc/os-release: {}",
            text.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .unwrap_or("no PRETTY_NAME")
        ),
    })
}

/// The shell command that installs those of `packages` that are missing.
pub(crate) fn install_command(distro: Distro, packages: &[&str]) -> String {
    let list = packages
        .iter()
        .map(|p| shell_quote(p))
        .collect::<Vec<_>>()
        .join(" ");
    match distro {
        // Asking dpkg first keeps a machine that has everything off the
        // network, and `apt-get update` runs only when something is missing.
        Distro::Debian => format!(
            "missing=; for p in {list}; do dpkg-query -W -f='${{Status}}' \"$p\" 2>/dev/null \
             | grep -q 'ok installed' || missing=\"$missing $p\"; done; \
             [ -z \"$missing\" ] || {{ apt-get update -qq && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; }}"
        ),
        Distro::Fedora => format!(
            "missing=; for p in {list}; do rpm -q \"$p\" >/dev/null 2>&1 || missing=\"$missing $p\"; done; \
             [ -z \"$missing\" ] || dnf install -y -q $missing"
        ),
    }
}

/// Installs those of `packages` that are missing.
pub(crate) async fn install_packages(
    host: &dyn RemoteHost,
    suite: &str,
    distro: Distro,
    packages: &[&str],
) -> Result<(), SuiteError> {
    run_step(
        host,
        suite,
        "install packages",
        ExecRequest::new(install_command(distro, packages)).timeout(Duration::from_secs(1800)),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_are_recognised_from_os_release() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(Distro::from_os_release(debian), Some(Distro::Debian));
        let ubuntu = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n";
        assert_eq!(Distro::from_os_release(ubuntu), Some(Distro::Debian));
        let fedora = "NAME=\"Fedora Linux\"\nID=fedora\n";
        assert_eq!(Distro::from_os_release(fedora), Some(Distro::Fedora));
        let alma = "ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n";
        assert_eq!(Distro::from_os_release(alma), Some(Distro::Fedora));
        assert_eq!(Distro::from_os_release("ID=arch\n"), None);
    }

    #[test]
    fn install_commands_only_install_what_is_missing() {
        let apt = install_command(Distro::Debian, &["xfsprogs", "fio"]);
        assert!(apt.contains("for p in xfsprogs fio;"), "{apt}");
        assert!(apt.contains("apt-get install -y"), "{apt}");
        let dnf = install_command(Distro::Fedora, &["xfsprogs"]);
        assert!(
            dnf.contains("rpm -q") && dnf.contains("dnf install -y"),
            "{dnf}"
        );
    }

    #[test]
    fn tails_keep_the_last_lines() {
        let out = ExecOutput {
            code: Some(2),
            stdout: (1..=30)
                .map(|i| format!("line {i}\n"))
                .collect::<String>()
                .into_bytes(),
            stderr: b"boom\n".to_vec(),
            ..ExecOutput::default()
        };
        let tail = output_tail(&out);
        assert!(tail.ends_with("line 30\nboom"), "{tail}");
        assert!(!tail.contains("line 10\n"), "{tail}");
    }
}
