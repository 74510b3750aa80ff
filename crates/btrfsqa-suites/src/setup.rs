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

/// How long to wait before each retry of a fetch that failed for a reason
/// that may pass (a mirror or the network): three attempts in all.
pub(crate) const FETCH_RETRY_DELAYS: [Duration; 2] =
    [Duration::from_secs(5), Duration::from_secs(30)];

/// Whether a fetch's output says it failed for a reason that may pass (DNS,
/// a refused or reset connection, a mirror mid-sync, a server error), as
/// opposed to one that will not (a package or ref that does not exist).
pub(crate) fn is_transient_fetch_failure(text: &str) -> bool {
    const TRANSIENT: [&str; 16] = [
        "Temporary failure resolving",
        "Could not resolve",
        "Could not connect",
        "Connection timed out",
        "Connection refused",
        "Connection reset",
        "Failed to fetch",
        "Hash Sum mismatch",
        "Mirror sync in progress",
        "Unable to connect",
        "unable to access",
        "early EOF",
        "RPC failed",
        "remote end hung up unexpectedly",
        "503 Service Unavailable",
        "Curl error",
    ];
    TRANSIENT.iter().any(|t| text.contains(t))
}

/// Runs `attempt` again after each of `delays` while it fails with a setup
/// error that may pass ([`is_transient_fetch_failure`]); the last failure is
/// the error.
pub(crate) async fn retry_transient<T, F, Fut>(
    delays: &[Duration],
    mut attempt: F,
) -> Result<T, SuiteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SuiteError>>,
{
    let mut delays = delays.iter();
    loop {
        match attempt().await {
            Err(SuiteError::Setup { message, .. })
                if is_transient_fetch_failure(&message)
                    && let Some(delay) = delays.next() =>
            {
                tokio::time::sleep(*delay).await;
            }
            other => return other,
        }
    }
}

/// [`run_step`] for a step that fetches from the network, retried after each
/// of `delays` while it fails for a transient reason.
pub(crate) async fn run_fetch_step(
    host: &dyn RemoteHost,
    suite: &str,
    step: &str,
    request: ExecRequest,
    delays: &[Duration],
) -> Result<ExecOutput, SuiteError> {
    retry_transient(delays, || run_step(host, suite, step, request.clone())).await
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
pub enum Distro {
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
    run_fetch_step(
        host,
        suite,
        "install packages",
        ExecRequest::new(install_command(distro, packages)).timeout(Duration::from_secs(1800)),
        &FETCH_RETRY_DELAYS,
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_output(code: i32, stderr: &str) -> ExecOutput {
        ExecOutput {
            code: Some(code),
            stderr: stderr.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_mirror_failing_for_a_while_is_retried_and_a_missing_package_is_not() {
        let mut host = btrfsqa_remote::MockRemoteHost::new();
        let mut seq = mockall::Sequence::new();
        host.expect_exec()
            .times(2)
            .in_sequence(&mut seq)
            .returning(|_, _| {
                Ok(exec_output(
                    100,
                    "E: Failed to fetch http://deb.debian.org/debian/pool/main/x/xfsprogs.deb  Temporary failure resolving 'deb.debian.org'",
                ))
            });
        host.expect_exec()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(exec_output(0, "")));
        let delays = [Duration::ZERO; 2];
        run_fetch_step(
            &host,
            "s",
            "install packages",
            ExecRequest::new("apt"),
            &delays,
        )
        .await
        .unwrap();

        let mut host = btrfsqa_remote::MockRemoteHost::new();
        host.expect_exec().times(3).returning(|_, _| {
            Ok(exec_output(
                100,
                "E: Could not connect to deb.debian.org:80",
            ))
        });
        let err = run_fetch_step(
            &host,
            "s",
            "install packages",
            ExecRequest::new("apt"),
            &delays,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("Could not connect"), "{err}");

        let mut host = btrfsqa_remote::MockRemoteHost::new();
        host.expect_exec()
            .times(1)
            .returning(|_, _| Ok(exec_output(100, "E: Unable to locate package frobnicate")));
        let err = run_fetch_step(
            &host,
            "s",
            "install packages",
            ExecRequest::new("apt"),
            &delays,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("Unable to locate package"),
            "{err}"
        );
    }

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
