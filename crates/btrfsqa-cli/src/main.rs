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

/// The version and the commit it was built from (`0.1.0 (3f2a9c1)`,
/// `-dirty` for a tree with changes, `unknown` outside a git checkout).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BTRFSQA_COMMIT"), ")");

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
