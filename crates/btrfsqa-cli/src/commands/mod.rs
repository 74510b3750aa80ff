//! One module per command. A command parses its arguments, calls the
//! library and prints what it returns; it ends with its exit code, or with
//! the error that stopped it, which [`finish`] prints and maps to its code
//! (`Code::from`, exit.rs): the one place errors become exit codes.

mod bisect;
mod compare;
mod config;
mod docs;
mod image;
mod import;
mod machine;
mod plan;
mod reap;
mod run;
mod store;
mod watch;

use crate::args::{Cli, Command};
use crate::exit::Code;

/// How a command ended: its exit code, or the error that stopped it.
pub type Outcome = Result<Code, btrfsqa_runner::Error>;

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli) -> Code {
    let outcome = match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Resume(args) => run::resume(args).await,
        Command::Init(args) => Ok(config::init(args)),
        Command::Config(command) => Ok(config::config(command)),
        Command::Reap(args) => reap::reap(args).await,
        Command::Publish(args) => store::publish(args).await,
        Command::Show(args) => store::show(args),
        Command::Import(args) => import::import(args).await,
        Command::Plan(args) => plan::plan(args).await,
        Command::Provision(args) => machine::provision(args).await,
        Command::Teardown(args) => machine::teardown(args).await,
        Command::Compare(args) => compare::compare(args),
        Command::History(args) => compare::history(args),
        Command::Image(crate::args::ImageCommand::Build(args)) => image::build(args).await,
        Command::Watch(args) => watch::watch(args).await,
        Command::Bisect(args) => bisect::bisect(args).await,
        Command::Completions(args) => Ok(docs::completions(args)),
        Command::Man(args) => Ok(docs::man(args)),
    };
    finish(outcome)
}

/// The exit code of a command's outcome; an error is printed first.
fn finish(outcome: Outcome) -> Code {
    outcome.unwrap_or_else(|err| failed(&err))
}

/// Prints `err` with its causes; the exit code its kind maps to. For the
/// commands that go on (or end otherwise) after an error.
pub fn failed(err: &btrfsqa_runner::Error) -> Code {
    print_error(err);
    Code::from(err)
}

/// A command line that cannot be served, found before the library is
/// called: said here, as clap says its own, and exit code 2.
pub fn usage(message: &str) -> Outcome {
    errln!("error: {message}");
    Ok(Code::Usage)
}

/// Prints an error with its causes to stderr.
pub fn print_error(err: &dyn std::error::Error) {
    let colors = crate::output::Colors::stderr();
    errln!("{} {err}", colors.red("error:"));
    let mut source = err.source();
    while let Some(cause) = source {
        errln!("  caused by: {cause}");
        source = cause.source();
    }
}

/// Loads the configuration the common flags name.
pub fn load_settings(
    config: &crate::args::ConfigArgs,
    overrides: btrfsqa_runner::RunOverrides,
) -> Result<btrfsqa_runner::Settings, btrfsqa_runner::Error> {
    let (source, overrides) = config_source(config, overrides)?;
    Ok(btrfsqa_runner::Settings::resolve(&source, overrides)?)
}

/// The configuration file the common flags name, unresolved, and
/// `overrides` with theirs: for commands that resolve it more than once.
pub fn config_source(
    config: &crate::args::ConfigArgs,
    mut overrides: btrfsqa_runner::RunOverrides,
) -> Result<(btrfsqa_runner::ConfigSource, btrfsqa_runner::RunOverrides), btrfsqa_runner::Error> {
    let source = btrfsqa_runner::ConfigSource::load(config.config.as_deref())?;
    overrides.results_dir = config.results_dir.clone();
    Ok((source, overrides))
}
