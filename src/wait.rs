//! Waiting for the next thing the main loop must act on: input on
//! standard input, a signal, or the deadline of the next boundary.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::event::{PollFd, PollFlags};

use crate::signals::Signals;
use crate::sys;

/// What [`wait`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    /// Standard input has data, is at its end, or has failed: a read will
    /// not block.
    pub input: bool,
    /// A signal arrived.
    pub signal: bool,
}

/// Waits until `input` or `signals`' pipe is readable, or `timeout_ms`
/// pass. An interrupted wait returns with nothing ready.
pub fn wait(input: BorrowedFd<'_>, signals: &Signals, timeout_ms: i32) -> io::Result<Ready> {
    let mut fds = [
        PollFd::from_borrowed_fd(input, PollFlags::IN),
        PollFd::from_borrowed_fd(signals.wake_fd(), PollFlags::IN),
    ];
    sys::poll(&mut fds, Some(timeout_ms))?;
    // Hang-up and errors count as readable: the read reports them.
    Ok(Ready {
        input: !fds[0].revents().is_empty(),
        signal: !fds[1].revents().is_empty(),
    })
}

/// How many bytes can be read from `input` right now without waiting.
pub fn available(input: BorrowedFd<'_>) -> u64 {
    rustix::io::ioctl_fionread(input).unwrap_or(0)
}
