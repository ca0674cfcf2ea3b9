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
    if args.read || args.follow {
        if let Some(option) = logpipe::cli::writing_option_in(&matches) {
            let why = format!(
                "{option} is an option of writing; --read and --follow take --name, --since, --until, --cursor and --utc"
            );
            Args::command()
                .error(ErrorKind::ArgumentConflict, why)
                .exit();
        }
        return outcome(logpipe::follow::run(reading(args, target)));
    }
    if let Err(e) = target.check_name_fits() {
        Args::command().error(ErrorKind::InvalidValue, e).exit();
    }
    if matches.value_source("prune_keep") == Some(clap::parser::ValueSource::CommandLine)
        && args.on_full != logpipe::cli::OnFull::Prune
    {
        let why = "--prune-keep only applies with --on-full prune";
        Args::command()
            .error(ErrorKind::ArgumentConflict, why)
            .exit();
    }
    let stage = match logpipe::config::line_stage(&args, &target) {
        Ok(stage) => stage,
        Err(e) => Args::command().error(ErrorKind::InvalidValue, e).exit(),
    };
    let config = match Config::new(args, target, stage) {
        Ok(config) => config,
        Err(e) => Args::command().error(ErrorKind::InvalidValue, e).exit(),
    };
    outcome(logpipe::app::run(config))
}

/// What `--read` and `--follow` need from the command line.
fn reading(args: Args, target: Target) -> logpipe::follow::Options {
    let zone = if args.utc {
        jiff::tz::TimeZone::UTC
    } else {
        logpipe::zone::local()
    };
    let today = logpipe::clock::Clock::System.now().to_zoned(zone).date();
    logpipe::follow::Options {
        target,
        follow: args.follow,
        dates: logpipe::follow::position::Dates {
            since: args.since,
            until: args.until,
        },
        cursor: args.cursor,
        today,
    }
}

/// The exit status of a run, and its one line on stderr if it failed.
fn outcome(result: anyhow::Result<()>) -> ExitCode {
    match result {
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
