//! Tests of the suites against the real things: git, loop devices, btrfs,
//! fstests and btrfs-progs built from source. Each checks its preconditions
//! and says why it skips.

mod btrfs_progs;
mod loopdevs;
mod raid56;
mod script;
mod xfstests;
