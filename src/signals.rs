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

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGALRM, SIGHUP, SIGINT, SIGTERM, SIGUSR1};

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
            libc::pollfd {
                fd: out.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two pollfd, and its length is passed.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if fds[1].revents != 0 {
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
            let mut fd = libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd, and its count.
            unsafe { libc::poll(&mut fd, 1, ms) };
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

/// How many bytes can be read from `input` right now without waiting.
pub fn available(input: BorrowedFd<'_>) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int into `n`, which we own.
    let rc = unsafe { libc::ioctl(input.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 {
        u64::try_from(n).unwrap_or(0)
    } else {
        0
    }
}
