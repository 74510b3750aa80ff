//! `btrfsqa completions` and `btrfsqa man`: made from the CLI definition,
//! so they name every command and flag this binary has.

use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs, ManArgs};
use crate::exit::Code;

pub fn completions(args: CompletionsArgs) -> Code {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "btrfsqa", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Code::Ok
}

pub fn man(args: ManArgs) -> Code {
    let command = Cli::command();
    match args.dir {
        None => {
            let mut page = Vec::new();
            if let Err(err) = clap_mangen::Man::new(command).render(&mut page) {
                errln!("error: cannot render the man page: {err}");
                return Code::Infrastructure;
            }
            out!("{}", String::from_utf8_lossy(&page));
            Code::Ok
        }
        Some(dir) => {
            let written = std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(command, &dir));
            match written {
                Ok(()) => {
                    errln!("wrote the man pages to {}", dir.display());
                    Code::Ok
                }
                Err(err) => {
                    errln!(
                        "error: cannot write man pages to `{}`: {err}",
                        dir.display()
                    );
                    Code::Usage
                }
            }
        }
    }
}
