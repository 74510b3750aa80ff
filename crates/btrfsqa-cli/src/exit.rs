//! Exit codes. Documented in README.md ("Exit codes"); keep both in step.

/// What `btrfsqa` exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Every test passed or was skipped; the command did what it was asked.
    Ok = 0,
    /// At least one test failed, hung or crashed.
    TestsFailed = 1,
    /// Bad command line or configuration; nothing was started.
    Usage = 2,
    /// Infrastructure: a machine, a suite's setup, teardown or the results store failed.
    Infrastructure = 3,
    /// The tests were fine but publishing failed; the results are in the store.
    PublishFailed = 4,
    /// Stopped by SIGINT, SIGTERM, SIGHUP or the run's deadline; torn down,
    /// partial results kept.
    Interrupted = 130,
}

impl From<Code> for std::process::ExitCode {
    fn from(code: Code) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

impl From<btrfsqa_runner::RunVerdict> for Code {
    fn from(verdict: btrfsqa_runner::RunVerdict) -> Self {
        use btrfsqa_runner::RunVerdict;
        match verdict {
            RunVerdict::Passed => Code::Ok,
            RunVerdict::TestsFailed => Code::TestsFailed,
            RunVerdict::InfrastructureError => Code::Infrastructure,
            RunVerdict::Interrupted => Code::Interrupted,
            RunVerdict::PublishFailed => Code::PublishFailed,
        }
    }
}
