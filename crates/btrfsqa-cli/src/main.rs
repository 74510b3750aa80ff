//! The `btrfsqa` command: continuous QA for the btrfs filesystem.

// Everything printed goes through `outln!`/`errln!` (output.rs), which never
// panic on a closed stream: `println!` would on `btrfsqa ... | head -1`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;
mod args;
mod commands;
mod exit;

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
            errln!("error: cannot start the async runtime: {err}");
            return exit::Code::Infrastructure.into();
        }
    };
    runtime.block_on(commands::dispatch(args)).into()
}
