//! Signals, recorded by their handlers and acted on by the main loop.
//!
//! The handlers (installed through signal-hook) only set a flag and write a
//! byte to a wake-up pipe that the main loop polls beside standard input,
//! so a signal is seen at once, even while the loop waits for input. This
//! is the self-pipe pattern of s6-log and svlogd.
//!
//! SIGUSR1 and SIGALRM ask for a roll now (the daemontools, runit and s6
//! convention).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGALRM, SIGUSR1};

/// The signals logpipe listens to, and the pipe that wakes the main loop.
#[derive(Debug)]
pub struct Signals {
    roll: Arc<AtomicBool>,
    wake: UnixStream,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Signals> {
        let (wake, wake_writer) = UnixStream::pair().context("unable to create the signal pipe")?;
        wake.set_nonblocking(true)
            .context("unable to set up the signal pipe")?;
        wake_writer
            .set_nonblocking(true)
            .context("unable to set up the signal pipe")?;
        let roll = Arc::new(AtomicBool::new(false));
        for signal in [SIGUSR1, SIGALRM] {
            signal_hook::flag::register(signal, Arc::clone(&roll))
                .and_then(|_| {
                    let writer = wake_writer.try_clone()?;
                    signal_hook::low_level::pipe::register(signal, writer)
                })
                .with_context(|| format!("unable to handle signal {signal}"))?;
        }
        Ok(Signals { roll, wake })
    }

    /// The descriptor that becomes readable when a signal arrives.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empties the wake-up pipe after it was seen readable.
    pub fn drain(&self) {
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
    }

    /// Whether a roll was asked for since the last call.
    pub fn take_roll(&self) -> bool {
        self.roll.swap(false, Ordering::Relaxed)
    }
}

/// What [`wait`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    /// Standard input has data, is at its end, or has failed: a read will
    /// not block.
    pub input: bool,
    /// A signal arrived.
    pub signal: bool,
}

/// Waits until `input` or `signals`' pipe is readable, or `timeout` ms
/// pass. An interrupted wait returns with nothing ready.
pub fn wait(input: BorrowedFd<'_>, signals: &Signals, timeout_ms: i32) -> io::Result<Ready> {
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd {
            fd: input.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: signals.wake_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live array of two pollfd, and its length is passed.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(Ready::default())
        } else {
            Err(err)
        };
    }
    // Hang-up and errors count as readable: the read reports them.
    Ok(Ready {
        input: fds[0].revents != 0,
        signal: fds[1].revents != 0,
    })
}
