//! Built kernels kept in the results store (`RESULTS/.kernels/<key>/`),
//! found again by the key of what was built.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A kernel kept in the results store (`RESULTS/.kernels/<key>/meta.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StoredKernel {
    /// sha256 of commit, architecture and final `.config`.
    pub key: String,
    /// The source URL.
    pub url: String,
    /// The ref asked for.
    pub git_ref: String,
    /// The commit built.
    pub commit: String,
    /// The architecture (`uname -m` of the builder).
    pub arch: String,
    /// `make kernelrelease`.
    pub release: String,
    /// When it was built.
    pub built_at: chrono::DateTime<chrono::Utc>,
    /// How long the build took, in seconds.
    pub build_secs: u64,
    /// Whether ccache was used.
    pub ccache: bool,
}

/// The key a build is stored under.
pub(crate) fn build_key(commit: &str, arch: &str, config: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(commit.as_bytes());
    hasher.update(b"\n");
    hasher.update(arch.as_bytes());
    hasher.update(b"\n");
    hasher.update(config.as_bytes());
    hex(&hasher.finalize())
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn url_digest(url: &str) -> String {
    hex(&Sha256::digest(url.as_bytes()))[..16].to_owned()
}

/// A complete store entry.
pub(super) fn read_stored(store: &Path) -> Option<StoredKernel> {
    let meta: StoredKernel =
        serde_json::from_slice(&std::fs::read(store.join("meta.json")).ok()?).ok()?;
    ["bzImage", "modules.tar.gz"]
        .iter()
        .all(|f| store.join(f).is_file())
        .then_some(meta)
}
