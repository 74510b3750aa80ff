//! Integration tests of btrfsqa-remote against real processes and a real
//! sshd (started by `testsupport::TestSshd`; those tests skip, saying why,
//! when not root or when openssh-server is missing).

mod contract;
mod recording;
mod ssh;
