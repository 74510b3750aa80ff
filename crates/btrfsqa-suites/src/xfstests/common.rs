//! What every part of the fstests suite shares: its id and how a lost
//! machine becomes a suite error. It sits below `mod.rs` and the modules
//! beside it so that they can all use it without importing each other.

use btrfsqa_remote::RemoteError;

use crate::SuiteError;

/// The suite id.
pub const ID: &str = "xfstests";

/// A failure to reach the machine, as this suite's error.
pub(super) fn remote_error(source: RemoteError) -> SuiteError {
    SuiteError::Remote {
        suite: ID.to_owned(),
        source,
    }
}
