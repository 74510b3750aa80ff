//! Finding and running the host's system tools (`losetup`, `qemu-img`,
//! `ssh-keygen`, ...) for the local and qemu providers.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::error::CommandError;

/// Finds a system tool on PATH or in the sbin directories, which a non-login
/// root shell (or a test harness) may not have on its PATH; a name with a
/// `/` is a path, taken as is when it is a file.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a tool with the C locale (its messages are matched on) and returns
/// its stdout, or the failure with its stderr.
pub(crate) fn run_tool<S: AsRef<OsStr>>(tool: &str, args: &[S]) -> Result<String, CommandError> {
    let command_line = std::iter::once(tool.to_owned())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let Some(program) = find_tool(tool) else {
        return Err(CommandError {
            command: command_line,
            status: None,
            stderr: format!("`{tool}` is not installed"),
        });
    };
    tracing::debug!(command = %command_line, "running");
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CommandError {
            command: command_line.clone(),
            status: None,
            stderr: e.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(CommandError {
            command: command_line,
            status: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
