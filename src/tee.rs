//! `--tee`: a copy of the input on standard output, for `docker logs` or a
//! second consumer.
//!
//! The file comes first: a run is copied to standard output only after it
//! is written to the active file, so a slow reader of the copy holds input
//! back (through the pipe) but never costs file output. A copy that cannot
//! be written (the reader went away: EPIPE, since Rust ignores SIGPIPE) is
//! given up with one warning; the sink goes on.
//!
//! When standard output is a pipe, logpipe opens it again, non-blocking
//! (a file description of its own, so the flag touches nobody else), and
//! waits for room with poll beside the signal pipe: SIGTERM ends a wait on
//! a reader that stopped reading, instead of hanging in `write`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use crate::signals::Signals;

/// Standard output, while the copy works.
#[derive(Debug)]
pub struct Tee {
    out: Option<File>,
}

impl Tee {
    /// A copy to standard output if `enabled`, else nothing.
    pub fn new(enabled: bool) -> Tee {
        let out = enabled.then(|| -> io::Result<File> {
            let stdout = io::stdout().as_fd().try_clone_to_owned().map(File::from)?;
            if !stdout.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
                return Ok(stdout);
            }
            // Falls back to the blocking descriptor where /proc is missing.
            Ok(OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(format!("/proc/self/fd/{}", stdout.as_raw_fd()))
                .unwrap_or(stdout))
        });
        let out = match out {
            Some(Ok(file)) => Some(file),
            Some(Err(e)) => {
                crate::warning!("--tee is off: unable to use standard output: {e}");
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
