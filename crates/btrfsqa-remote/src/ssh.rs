// Placeholder until the OpenSSH host lands.
use std::path::PathBuf;

/// How to reach a machine over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Private key.
    pub identity_file: Option<PathBuf>,
    /// Pinned host keys.
    pub known_hosts_file: Option<PathBuf>,
}

/// A machine reached over OpenSSH.
#[derive(Debug)]
pub struct OpenSshHost {
    _target: SshTarget,
}
