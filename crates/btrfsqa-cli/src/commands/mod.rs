//! One module per command; each returns the exit code.

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

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli) -> Code {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Resume(args) => run::resume(args).await,
        Command::Init(args) => config::init(args),
        Command::Config(command) => config::config(command),
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
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    }
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

/// Loads the configuration the common flags name, or prints why not.
pub fn load_settings(
    config: &crate::args::ConfigArgs,
    mut overrides: btrfsqa_runner::RunOverrides,
) -> Result<btrfsqa_runner::Settings, Code> {
    let source = btrfsqa_runner::ConfigSource::load(config.config.as_deref()).map_err(|err| {
        print_error(&err);
        Code::Usage
    })?;
    overrides.results_dir = config.results_dir.clone();
    btrfsqa_runner::Settings::resolve(&source, overrides).map_err(|err| {
        print_error(&err);
        Code::Usage
    })
}
