//! Standard output of `--read` and `--follow`, counting what it accepted.
//!
//! A cursor may only record bytes that standard output took, so every
//! write is a `write(2)` whose count is believed, with no buffer of ours
//! in between. Once SIGTERM or SIGINT arrived, a write goes on only to the
//! end of the line it is in: a clean stop leaves whole lines behind it, and
//! the cursor, which records line ends, then repeats nothing.

use std::io;
use std::os::fd::AsFd;

use crate::signals::Signals;

/// Standard output.
#[derive(Debug)]
pub struct Output {
    stdout: io::Stdout,
    /// Whether the last byte written was a newline (or nothing was).
    at_line_start: bool,
}

/// Why a write stopped short.
#[derive(Debug)]
pub enum Short {
    /// Stopping was asked for, at a line end.
    Stopped,
    /// The reader of standard output went away (`| head`).
    Closed,
    /// Any other failure.
    Failed(io::Error),
}

impl Output {
    pub fn new() -> Output {
        Output {
            stdout: io::stdout(),
            at_line_start: true,
        }
    }

    /// Writes `data` whole, unless stopping is asked for or standard
    /// output fails; returns how many bytes it took either way.
    pub fn write(&mut self, data: &[u8], signals: &Signals) -> (usize, Option<Short>) {
        let fd = self.stdout.as_fd();
        let mut done = 0;
        while done < data.len() {
            let end = if signals.stop_asked() {
                let at_line_start = if done == 0 {
                    self.at_line_start
                } else {
                    data[done - 1] == b'\n'
                };
                if at_line_start {
                    self.note(&data[..done]);
                    return (done, Some(Short::Stopped));
                }
                memchr::memchr(b'\n', &data[done..]).map_or(data.len(), |i| done + i + 1)
            } else {
                data.len()
            };
            match rustix::io::write(fd, &data[done..end]) {
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => signals.wait_writable(fd),
                Err(rustix::io::Errno::PIPE) => {
                    self.note(&data[..done]);
                    return (done, Some(Short::Closed));
                }
                Err(e) => {
                    self.note(&data[..done]);
                    return (done, Some(Short::Failed(e.into())));
                }
            }
        }
        self.note(data);
        (done, None)
    }

    fn note(&mut self, written: &[u8]) {
        if let Some(&last) = written.last() {
            self.at_line_start = last == b'\n';
        }
    }
}

impl Default for Output {
    fn default() -> Self {
        Output::new()
    }
}
