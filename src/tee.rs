//! `--tee`: a copy of the input on standard output, for `docker logs` or a
//! second consumer.
//!
//! The file comes first: a run is copied to standard output only after it
//! is written to the active file, so a slow reader of the copy holds input
//! back (through the pipe) but never costs file output. A copy that cannot
//! be written (the reader went away: EPIPE, since Rust ignores SIGPIPE) is
//! given up with one warning; the sink goes on. A standard output that is
//! /dev/null from the start (or was closed then) turns the copy off with
//! one warning at start.
//!
//! When standard output is a pipe, logpipe opens it again, non-blocking
//! (a file description of its own, so the flag touches nobody else), and
//! waits for room with poll beside the signal pipe: SIGTERM ends a wait on
//! a reader that stopped reading, instead of hanging in `write`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

use crate::signals::Signals;

/// Whether `meta` is /dev/null's: the character device 1:3 on Linux.
///
/// That is what standard output is when it was closed when logpipe
/// started (`logpipe --tee DIR/ >&-`): Rust's runtime opens /dev/null on a
/// closed descriptor 0, 1 or 2 before `main`, so that no file opened later
/// takes its place. A copy to it would be silently thrown away.
fn is_dev_null(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3)
}

/// Standard output for the copy, or why there is none.
fn open_stdout() -> Result<File, String> {
    let unusable = |e: io::Error| format!("unable to use standard output: {e}");
    let stdout = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .map_err(unusable)?;
    let meta = stdout.metadata().map_err(unusable)?;
    if is_dev_null(&meta) {
        return Err("standard output is /dev/null (or was closed when logpipe started)".into());
    }
    if !meta.file_type().is_fifo() {
        return Ok(stdout);
    }
    // Falls back to the blocking descriptor where /proc is missing.
    Ok(OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", stdout.as_raw_fd()))
        .unwrap_or(stdout))
}

/// Standard output, while the copy works.
#[derive(Debug)]
pub struct Tee {
    out: Option<File>,
}

impl Tee {
    /// A copy to standard output if `enabled`, else nothing. A standard
    /// output that cannot take the copy is said once, as a warning.
    pub fn new(enabled: bool) -> Tee {
        let out = match enabled.then(open_stdout) {
            Some(Ok(file)) => Some(file),
            Some(Err(why)) => {
                crate::warning!("--tee is off: {why}");
                None
            }
            None => None,
        };
        Tee { out }
    }

    /// Copies `run`; on failure says so once and copies nothing more.
    pub fn copy(&mut self, run: &[u8], signals: &Signals) {
        let Some(out) = &mut self.out else { return };
        let mut rest = run;
        while !rest.is_empty() {
            match out.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if signals.stop_asked() {
                        crate::warning!(
                            "--tee stopped: stopping, and standard output is not being read"
                        );
                        self.out = None;
                        return;
                    }
                    signals.wait_writable(out.as_fd());
                }
                Err(e) => {
                    crate::warning!("--tee stopped: unable to write standard output: {e}");
                    self.out = None;
                    return;
                }
            }
        }
    }
}
