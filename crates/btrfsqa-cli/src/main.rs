//! The `btrfsqa` command: continuous QA for the btrfs filesystem.

mod args;
mod commands;
mod exit;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = args::Cli::parse();
    output::init_logging(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return exit::Code::Infrastructure.into();
        }
    };
    runtime.block_on(commands::dispatch(args)).into()
}
