//! Where providers keep what outlives a run on the controller (claims,
//! learned host keys, key pairs): the user's XDG state directory.

use std::path::PathBuf;

/// `$XDG_STATE_HOME/btrfsqa/<leaf>`, else `~/.local/state/btrfsqa/<leaf>`,
/// else `/var/tmp/btrfsqa/<leaf>` (no home at all: a service account).
pub(crate) fn state_dir(leaf: &str) -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    state.join("btrfsqa").join(leaf)
}
