//! Diagnostics: every line logpipe says on standard error goes through
//! here.
//!
//! A diagnostic must never cost a log line. Standard error may be a pipe
//! whose reader went away, or a file on the very disk that just filled up;
//! `eprintln!` panics then, which would end the reading loop (and with it
//! everything the producer had in the pipe) or silently end the worker. So
//! each line is formatted first and handed to one `write(2)`, and a failed
//! write is ignored: the line is lost, logging goes on.
//!
//! Lines read `logpipe: <level>: <what>: <why>`; the one fatal line printed
//! by `main` before exit status 1 reads `logpipe: <what>: <why>` (the exit
//! status says it is an error).

use std::fmt;
use std::io::Write;

/// How much a line matters to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed and logpipe works around it (a retry, a skipped
    /// compression); data may be at risk.
    Warning,
    /// Something an operator would want to know happened, with no loss.
    Info,
}

/// Writes one diagnostic line; never fails, never panics.
pub fn emit(level: Level, args: fmt::Arguments<'_>) {
    let word = match level {
        Level::Warning => "warning",
        Level::Info => "info",
    };
    line(format_args!("{word}: {args}"));
}

/// Writes `logpipe: <args>` and a newline to standard error in one write,
/// ignoring failure.
pub fn line(args: fmt::Arguments<'_>) {
    let text = format!("logpipe: {args}\n");
    // Unbuffered: one write(2) per line, so lines of several threads never
    // interleave mid-line. An error (EPIPE, ENOSPC, EBADF) loses this line
    // only.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `warning!("unable to sync {}: {e}", path.display())`
#[macro_export]
macro_rules! warning {
    ($($arg:tt)*) => {
        $crate::diag::emit($crate::diag::Level::Warning, format_args!($($arg)*))
    };
}

/// `info!("resumed writing {}", path.display())`
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        $crate::diag::emit($crate::diag::Level::Info, format_args!($($arg)*))
    };
}
