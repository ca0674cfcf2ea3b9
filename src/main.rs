//! The `logpipe` binary: parse arguments, run, and turn the outcome into an
//! exit status and at most one line on stderr.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, error::ErrorKind};
use logpipe::cli::Args;
use logpipe::target::Target;

fn main() -> ExitCode {
    let args = Args::parse();
    let target = match Target::resolve(&args.target, args.name.as_deref()) {
        Ok(target) => target,
        Err(e) => Args::command().error(ErrorKind::ArgumentConflict, e).exit(),
    };
    match logpipe::app::run(args, target) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole chain on one line: what failed, then why.
            eprintln!("logpipe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
