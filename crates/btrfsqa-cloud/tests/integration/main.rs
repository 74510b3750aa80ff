//! Tests of the providers against the real thing: loop devices, btrfs and
//! mounts on this machine. Each test checks its preconditions and says why
//! it skips when they are missing.

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
mod aws_fleet;
#[cfg(feature = "aws")]
mod aws_moto;
mod local;
mod qemu;
mod static_hosts;
