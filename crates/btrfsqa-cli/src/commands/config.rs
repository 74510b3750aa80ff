//! `btrfsqa init` and `btrfsqa config ...`.

use std::io::Write;

use btrfsqa_runner::{ConfigSource, DEFAULT_CONFIG};

use super::print_error;
use crate::args::{ConfigCommand, InitArgs};
use crate::exit::Code;

/// The reference of every configuration key, generated from the types
/// (a test in `btrfsqa-runner` keeps it up to date).
const REFERENCE: &str = include_str!("../../../../docs/config.md");

pub fn init(args: InitArgs) -> Code {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let written = options
        .open(&args.file)
        .and_then(|mut file| file.write_all(DEFAULT_CONFIG.as_bytes()));
    match written {
        Ok(()) => {
            errln!("wrote {}", args.file.display());
            Code::Ok
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            errln!(
                "error: `{}` already exists (use --force to overwrite)",
                args.file.display()
            );
            Code::Usage
        }
        Err(err) => {
            errln!("error: cannot write `{}`: {err}", args.file.display());
            Code::Usage
        }
    }
}

pub fn config(command: ConfigCommand) -> Code {
    match command {
        ConfigCommand::Default => {
            out!("{DEFAULT_CONFIG}");
            Code::Ok
        }
        ConfigCommand::Reference => {
            out!("{REFERENCE}");
            Code::Ok
        }
        ConfigCommand::Check { file } => {
            let checked = ConfigSource::load(file.as_deref())
                .and_then(|source| btrfsqa_runner::Settings::resolve(&source, Default::default()));
            match checked {
                Ok(settings) => {
                    outln!(
                        "{}: ok (provider {}, suites {})",
                        settings.config_name,
                        settings.config.run.provider,
                        settings.config.run.suites.join(", ")
                    );
                    Code::Ok
                }
                Err(err) => {
                    print_error(&err);
                    Code::Usage
                }
            }
        }
    }
}
