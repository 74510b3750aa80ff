//! Exit codes: what each means is documented in README.md ("Exit codes"),
//! the one place users read; which error exits with which code is decided
//! here alone, by the error's kind ([`btrfsqa_runner::ErrorKind`]).

use btrfsqa_runner::ErrorKind;

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

impl From<ErrorKind> for Code {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Usage => Code::Usage,
            ErrorKind::Infrastructure => Code::Infrastructure,
            ErrorKind::PublishFailed => Code::PublishFailed,
            ErrorKind::Interrupted => Code::Interrupted,
        }
    }
}

impl From<&btrfsqa_runner::Error> for Code {
    fn from(err: &btrfsqa_runner::Error) -> Self {
        err.kind().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README.md's "Exit codes" table: each code with its meaning.
    fn documented() -> Vec<(u8, String)> {
        let readme = include_str!("../../../README.md");
        let table = &readme[readme.find("### Exit codes").expect("the section")..];
        table
            .lines()
            .skip_while(|line| !line.starts_with("| ---"))
            .skip(1)
            .take_while(|line| line.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                (cells[1].parse().expect("a code"), cells[2].to_owned())
            })
            .collect()
    }

    #[test]
    fn every_kind_of_error_exits_with_the_code_the_readme_documents_for_it() {
        let documented = documented();
        assert_eq!(documented.len(), 6, "{documented:?}");
        for kind in ErrorKind::ALL {
            let code = Code::from(kind) as u8;
            let meaning = documented
                .iter()
                .find(|(documented, _)| *documented == code)
                .map(|(_, meaning)| meaning.as_str())
                .unwrap_or_else(|| panic!("{kind:?}: code {code} is not documented"));
            let says = match kind {
                ErrorKind::Usage => "bad command line or configuration",
                ErrorKind::Infrastructure => "infrastructure error",
                ErrorKind::PublishFailed => "publishing failed",
                ErrorKind::Interrupted => "interrupted",
            };
            assert!(meaning.contains(says), "{kind:?} exits {code}: {meaning}");
        }
    }
}
