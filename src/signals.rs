//! Signals, recorded by their handlers and acted on by the main loop.
//!
//! The handlers (installed through signal-hook) only set a flag and write a
//! byte to a wake-up pipe that the main loop polls beside standard input,
//! so a signal is seen at once, even while the loop waits for input. This
//! is the self-pipe pattern of s6-log and svlogd.
//!
//! SIGUSR1 and SIGALRM ask for a roll now (the daemontools, runit and s6
//! convention); SIGHUP asks to reopen the active file (the logrotate
//! habit); SIGTERM and SIGINT ask to stop once the input already available
//! is written.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use signal_hook::consts::{SIGALRM, SIGHUP, SIGINT, SIGTERM, SIGUSR1};

use crate::sys;

/// The signals logpipe listens to, and the pipe that wakes the main loop.
#[derive(Debug)]
pub struct Signals {
    roll: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
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
        let [roll, reopen, stop] = [(); 3].map(|()| Arc::new(AtomicBool::new(false)));
        let flags = [
            (SIGUSR1, &roll),
            (SIGALRM, &roll),
            (SIGHUP, &reopen),
            (SIGTERM, &stop),
            (SIGINT, &stop),
        ];
        for (signal, flag) in flags {
            signal_hook::flag::register(signal, Arc::clone(flag))
                .and_then(|_| {
                    let writer = wake_writer.try_clone()?;
                    signal_hook::low_level::pipe::register(signal, writer)
                })
                .with_context(|| format!("unable to handle signal {signal}"))?;
        }
        Ok(Signals {
            roll,
            reopen,
            stop,
            wake,
        })
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

    /// Whether reopening the active file was asked for since the last call.
    pub fn take_reopen(&self) -> bool {
        self.reopen.swap(false, Ordering::Relaxed)
    }

    /// Whether stopping was asked for (it stays asked for).
    pub fn stop_asked(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits until `out` can take more, or a signal arrives.
    pub fn wait_writable(&self, out: BorrowedFd<'_>) {
        let mut fds = [
            PollFd::from_borrowed_fd(out, PollFlags::OUT),
            PollFd::new(&self.wake, PollFlags::IN),
        ];
        // A failed poll returns at once; the caller's write then says why.
        let _ = sys::poll(&mut fds, None);
        if !fds[1].revents().is_empty() {
            self.drain();
        }
    }

    /// Waits for `wait`, or less if SIGTERM or SIGINT arrives. Returns
    /// false if stopping was asked for. Other signals stay recorded for the
    /// main loop.
    pub fn pause(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        while !self.stop_asked() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            let _ = sys::poll(&mut [PollFd::new(&self.wake, PollFlags::IN)], Some(ms));
            self.drain();
        }
        false
    }
}

impl crate::onfull::Pause for Signals {
    fn pause(&self, wait: Duration) -> bool {
        Signals::pause(self, wait)
    }
}
