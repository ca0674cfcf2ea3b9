//! The `logpipe` binary: parse arguments, run, and turn the outcome into an
//! exit status and at most one line on stderr.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, error::ErrorKind};
use logpipe::cli::Args;
use logpipe::config::Config;
use logpipe::manpage::{self, Generate};
use logpipe::target::Target;

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    // `--generate` stands alone (clap enforces it), so TARGET may be
    // missing: answer it before TARGET is read.
    if let Some(&what) = matches.get_one::<Generate>("generate") {
        return print_generated(what);
    }
    let args =
        Args::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Args::command()).exit());
    let target = match Target::resolve(&args.target, args.name.as_deref()) {
        Ok(target) => target,
        Err(e) => Args::command().error(ErrorKind::ArgumentConflict, e).exit(),
    };
    if let Err(e) = target.check_name_fits() {
        Args::command().error(ErrorKind::InvalidValue, e).exit();
    }
    let config = match Config::new(args, target) {
        Ok(config) => config,
        Err(e) => Args::command().error(ErrorKind::InvalidValue, e).exit(),
    };
    match logpipe::app::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the whole chain on one line: what failed, then why.
            logpipe::diag::line(format_args!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Prints a man page or completion script; a reader that stops early
/// (`| head`) is not an error.
fn print_generated(what: Generate) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(&manpage::generate(what, Args::command()))
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            logpipe::diag::line(format_args!("unable to write to standard output: {e}"));
            ExitCode::FAILURE
        }
    }
}
