//! Renders the dashboard of a results store into a directory, to preview it
//! in a browser before publishing:
//!
//! ```text
//! cargo run -p btrfsqa-publish --example preview -- results/ /tmp/site
//! xdg-open /tmp/site/index.html
//! ```

use std::process::ExitCode;

use btrfsqa_model::ResultsStore;
use btrfsqa_publish::Dashboard;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [results, site] = args.as_slice() else {
        eprintln!("usage: preview RESULTS_DIR SITE_DIR");
        return ExitCode::from(2);
    };
    match Dashboard::new().render(&ResultsStore::new(results), site.as_ref()) {
        Ok(stats) => {
            eprintln!(
                "{} pages written, {} up to date, {} unreadable reports, {} artifacts refused",
                stats.pages_written(),
                stats.pages_skipped(),
                stats.unreadable.len(),
                stats.artifacts_refused.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
