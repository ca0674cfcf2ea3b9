//! Waiting for the target to change: inotify on its directory, or a poll
//! every [`POLL`] where inotify is not to be had (its limits reached, a
//! filesystem that does not report changes).
//!
//! The events only wake the reader: it then looks at the files itself, so
//! a lost or merged event (an overflowing queue) costs a little delay at
//! most, never a line. A wait never lasts more than [`SAFETY`] even with
//! inotify, for the same reason.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};

use crate::signals::Signals;
use crate::sys;

/// How often the directory is looked at without inotify.
pub const POLL: Duration = Duration::from_millis(250);

/// The longest wait with inotify.
const SAFETY: Duration = Duration::from_secs(1);

/// What wakes the reader.
#[derive(Debug)]
pub struct Watch {
    inotify: Option<OwnedFd>,
}

impl Watch {
    /// Watches `dir` for writes, new names, renames and removals. Without
    /// inotify, says so once and polls.
    pub fn new(dir: &Path) -> Watch {
        let watched = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).and_then(|fd| {
            let flags = WatchFlags::MODIFY
                | WatchFlags::CREATE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::DELETE
                | WatchFlags::CLOSE_WRITE;
            inotify::add_watch(&fd, dir, flags)?;
            Ok(fd)
        });
        match watched {
            Ok(fd) => Watch { inotify: Some(fd) },
            Err(e) => {
                crate::info!(
                    "unable to watch {} with inotify ({e}); looking every {} ms instead",
                    dir.display(),
                    POLL.as_millis()
                );
                Watch { inotify: None }
            }
        }
    }

    /// Waits for a change in the directory, a signal, or the timeout.
    pub fn wait(&self, signals: &Signals) {
        let timeout = if self.inotify.is_some() { SAFETY } else { POLL };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut fds = vec![PollFd::from_borrowed_fd(signals.wake_fd(), PollFlags::IN)];
        if let Some(fd) = &self.inotify {
            fds.push(PollFd::from_borrowed_fd(fd.as_fd(), PollFlags::IN));
        }
        // A failed or interrupted poll only makes the wait shorter.
        let _ = sys::poll(&mut fds, Some(ms));
        signals.drain();
        if let Some(fd) = &self.inotify {
            let mut events = [0u8; 16 << 10];
            while matches!(rustix::io::read(fd, &mut events), Ok(n) if n > 0) {}
        }
    }
}
