//! `--tee`: a copy of the input on standard output, for `docker logs` or a
//! second consumer.
//!
//! The file comes first: a run is copied to standard output only after it
//! is written to the active file, so a slow reader of the copy holds input
//! back (through the pipe) but never costs file output. A copy that cannot
//! be written (the reader went away: EPIPE, since Rust ignores SIGPIPE) is
//! given up with one warning; the sink goes on.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

/// Standard output, while the copy works.
#[derive(Debug)]
pub struct Tee {
    out: Option<File>,
}

impl Tee {
    /// A copy to standard output if `enabled`, else nothing.
    pub fn new(enabled: bool) -> Tee {
        let out = enabled.then(|| io::stdout().as_fd().try_clone_to_owned().map(File::from));
        let out = match out {
            Some(Ok(file)) => Some(file),
            Some(Err(e)) => {
                eprintln!("logpipe: warning: --tee is off: unable to use standard output: {e}");
                None
            }
            None => None,
        };
        Tee { out }
    }

    /// Copies `run`; on failure says so once and copies nothing more.
    pub fn copy(&mut self, run: &[u8]) {
        if let Some(out) = &mut self.out
            && let Err(e) = out.write_all(run)
        {
            eprintln!("logpipe: warning: --tee stopped: unable to write standard output: {e}");
            self.out = None;
        }
    }
}
