//! Telling a supervisor how logpipe is doing: readiness for s6
//! (`--ready-fd`) and systemd (`NOTIFY_SOCKET`), systemd's `STATUS=` and
//! its watchdog.
//!
//! Ready means the lock is held and the active file is open: from then on
//! a second logpipe cannot take the target, and what the producer writes
//! is written. At that moment a newline goes to the `--ready-fd`
//! descriptor (s6's notification-fd protocol) and `READY=1` to systemd's
//! socket. Then systemd hears `STATUS=` whenever the sink's
//! [`Condition`] changes, `WATCHDOG=1` at half the interval systemd asked
//! for (from the main loop, and from inside a pause on a full disk, which
//! is waiting, not being stuck), and `STOPPING=1` when logpipe stops
//! reading.
//!
//! The systemd protocol is a few lines on std's `UnixDatagram` (a path,
//! or an abstract name after `@`), rather than a crate: nothing else of
//! libsystemd is needed. A message that cannot be sent is a warning, once;
//! logging goes on.

use std::cell::Cell;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::onfull::{Condition, Pause};
use crate::signals::Signals;

/// The supervisor's channels, as logpipe found them at start.
#[derive(Debug)]
pub struct Notify {
    /// `--ready-fd N`, until readiness is written.
    ready_fd: Cell<Option<i32>>,
    /// systemd's socket, from `NOTIFY_SOCKET`.
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `WATCHDOG_USEC`, when it is meant for this process.
    ping_every: Option<Duration>,
    /// When `WATCHDOG=1` was last sent.
    pinged: Cell<Instant>,
    /// The condition last said in `STATUS=`.
    said: Cell<Option<Condition>>,
    /// A send failed and was reported.
    failed: Cell<bool>,
}

impl Notify {
    /// From `--ready-fd` and the environment systemd sets.
    pub fn from_env(ready_fd: Option<i32>) -> Notify {
        Notify::new(
            ready_fd,
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var_os("WATCHDOG_USEC"),
            std::env::var_os("WATCHDOG_PID"),
        )
    }

    /// From `--ready-fd` and the values of `NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC` and `WATCHDOG_PID`. A socket that cannot be used
    /// and a watchdog interval that is not a number are warnings.
    pub fn new(
        ready_fd: Option<i32>,
        notify_socket: Option<OsString>,
        watchdog_usec: Option<OsString>,
        watchdog_pid: Option<OsString>,
    ) -> Notify {
        let socket = notify_socket
            .filter(|path| !path.is_empty())
            .and_then(|path| match connect(&path) {
                Ok(socket) => Some(socket),
                Err(e) => {
                    crate::warning!("unable to use NOTIFY_SOCKET {}: {e:#}", path.display());
                    None
                }
            });
        let ours = watchdog_pid.is_none_or(|pid| {
            pid.to_str().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id())
        });
        let ping_every = watchdog_usec
            .filter(|_| ours && socket.is_some())
            .and_then(
                |usec| match usec.to_str().and_then(|u| u.parse::<u64>().ok()) {
                    Some(usec) if usec > 0 => Some(Duration::from_micros(usec) / 2),
                    _ => {
                        crate::warning!(
                            "ignoring WATCHDOG_USEC={}: not a positive number of microseconds",
                            usec.display()
                        );
                        None
                    }
                },
            );
        Notify {
            ready_fd: Cell::new(ready_fd),
            socket,
            ping_every,
            pinged: Cell::new(Instant::now()),
            said: Cell::new(None),
            failed: Cell::new(false),
        }
    }

    /// Nothing to tell anyone: no `--ready-fd`, no `NOTIFY_SOCKET`.
    pub fn none() -> Notify {
        Notify::new(None, None, None, None)
    }

    /// Says that logpipe is ready: a newline to the `--ready-fd`
    /// descriptor, then `READY=1`. A descriptor that cannot take it is an
    /// error (the supervisor would wait for ever).
    pub fn ready(&self) -> Result<()> {
        if let Some(fd) = self.ready_fd.take() {
            write_ready(fd)
                .with_context(|| format!("unable to write readiness to descriptor {fd}"))?;
        }
        self.send("READY=1");
        self.pinged.set(Instant::now());
        Ok(())
    }

    /// From the main loop: `STATUS=` if the condition changed, and
    /// `WATCHDOG=1` if one is due.
    pub fn tick(&self, condition: Condition) {
        self.status(condition);
        self.ping();
    }

    /// `STATUS=` saying what the sink does, if that changed.
    pub fn status(&self, condition: Condition) {
        if self.socket.is_none() || self.said.get() == Some(condition) {
            return;
        }
        self.said.set(Some(condition));
        self.send(match condition {
            Condition::Writing => "STATUS=writing",
            Condition::Paused => "STATUS=paused: writes fail (disk full?), input held back",
            Condition::Dropping => "STATUS=dropping input: writes fail (disk full?)",
        });
    }

    /// `WATCHDOG=1`, if half the watchdog interval passed since the last.
    pub fn ping(&self) {
        if self.ping_every.is_some() && self.until_ping().is_zero() {
            self.send("WATCHDOG=1");
            self.pinged.set(Instant::now());
        }
    }

    /// How long until the next `WATCHDOG=1` is due; `None` without a
    /// watchdog.
    pub fn next_ping(&self) -> Option<Duration> {
        self.ping_every.map(|_| self.until_ping())
    }

    fn until_ping(&self) -> Duration {
        let every = self.ping_every.unwrap_or(Duration::MAX);
        every.saturating_sub(self.pinged.get().elapsed())
    }

    /// Caps a wait of `ms` milliseconds so that the next `WATCHDOG=1` is
    /// not late.
    pub fn cap_wait(&self, ms: i32) -> i32 {
        match self.next_ping() {
            Some(left) => {
                let left = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
                ms.min(left.max(1))
            }
            None => ms,
        }
    }

    /// `STOPPING=1`: logpipe stopped reading and finishes up.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
            && !self.failed.replace(true)
        {
            crate::warning!("unable to notify systemd ({message}): {e}");
        }
    }
}

/// The socket `NOTIFY_SOCKET` names: a path, or an abstract name after
/// `@`.
fn connect(path: &std::ffi::OsStr) -> Result<(UnixDatagram, SocketAddr)> {
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(path),
    }
    .context("not a socket address")?;
    let socket = UnixDatagram::unbound().context("unable to create a socket")?;
    socket
        .set_nonblocking(true)
        .context("unable to set up the socket")?;
    Ok((socket, addr))
}

/// Writes a newline to descriptor `fd` through a duplicate of logpipe's
/// own (`pidfd_getfd` on itself, or where that is not allowed, as under
/// some seccomp profiles, a reopening by `/proc/self/fd`), so that no
/// descriptor logpipe does not own is used: descriptor `fd` itself stays
/// open, and is never written again.
fn write_ready(fd: i32) -> std::io::Result<()> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let dup = pidfd_open(getpid(), PidfdFlags::empty())
        .and_then(|pidfd| pidfd_getfd(pidfd, fd, PidfdGetfdFlags::empty()));
    let mut file = match dup {
        Ok(dup) => File::from(dup),
        Err(e) if e == rustix::io::Errno::BADF => return Err(e.into()),
        Err(_) => OpenOptions::new()
            .append(true)
            .open(format!("/proc/self/fd/{fd}"))?,
    };
    file.write_all(b"\n")
}

/// The pause of `--on-full block` with a supervisor told: `STATUS=` says
/// paused as the pause starts, and `WATCHDOG=1` goes on while it lasts (it
/// is a wait, not a stuck loop; each retry between pauses passes here
/// again).
#[derive(Debug)]
pub struct Pausing {
    pub signals: Rc<Signals>,
    pub notify: Rc<Notify>,
}

impl Pause for Pausing {
    fn pause(&self, wait: Duration) -> bool {
        self.notify.status(Condition::Paused);
        let until = Instant::now() + wait;
        loop {
            self.notify.ping();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            let slice = self
                .notify
                .next_ping()
                .map_or(left, |next| left.min(next.max(Duration::from_millis(1))));
            if !self.signals.pause(slice) {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn listener() -> (tempfile::TempDir, UnixDatagram, OsString) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (tmp, socket, path.into_os_string())
    }

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn nothing_more(socket: &UnixDatagram) {
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        assert!(socket.recv(&mut buf).is_err(), "an unexpected message");
    }

    #[test]
    fn ready_status_stopping_in_order() {
        let (_tmp, socket, path) = listener();
        let notify = Notify::new(None, Some(path), None, None);
        notify.ready().unwrap();
        notify.tick(Condition::Writing);
        notify.tick(Condition::Writing);
        notify.tick(Condition::Dropping);
        notify.status(Condition::Paused);
        notify.tick(Condition::Writing);
        notify.stopping();
        assert_eq!(received(&socket), "READY=1");
        assert_eq!(received(&socket), "STATUS=writing");
        assert!(received(&socket).starts_with("STATUS=dropping input"));
        assert!(received(&socket).starts_with("STATUS=paused"));
        assert_eq!(received(&socket), "STATUS=writing");
        assert_eq!(received(&socket), "STOPPING=1");
        nothing_more(&socket);
    }

    #[test]
    fn abstract_socket() {
        let name = format!("logpipe-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notify = Notify::new(None, Some(format!("@{name}").into()), None, None);
        notify.ready().unwrap();
        assert_eq!(received(&socket), "READY=1");
    }

    #[test]
    fn watchdog_at_half_the_interval() {
        let (_tmp, socket, path) = listener();
        let notify = Notify::new(None, Some(path), Some("200000".into()), None);
        assert_eq!(notify.ping_every, Some(Duration::from_millis(100)));
        notify.ready().unwrap();
        assert_eq!(received(&socket), "READY=1");
        notify.ping();
        nothing_more(&socket);
        assert!(notify.cap_wait(1000) <= 100);
        std::thread::sleep(Duration::from_millis(110));
        assert_eq!(notify.cap_wait(1000), 1);
        notify.ping();
        socket.set_nonblocking(false).unwrap();
        assert_eq!(received(&socket), "WATCHDOG=1");
    }

    #[test]
    fn watchdog_for_another_pid_or_garbage_is_ignored() {
        let (_tmp, _socket, path) = listener();
        let other = (std::process::id() + 1).to_string();
        let n = Notify::new(
            None,
            Some(path.clone()),
            Some("1000000".into()),
            Some(other.into()),
        );
        assert_eq!(n.ping_every, None);
        assert_eq!(n.cap_wait(1000), 1000);
        let ours = std::process::id().to_string();
        let n = Notify::new(
            None,
            Some(path.clone()),
            Some("1000000".into()),
            Some(ours.into()),
        );
        assert_eq!(n.ping_every, Some(Duration::from_millis(500)));
        for bad in ["", "0", "x", "-5"] {
            let n = Notify::new(None, Some(path.clone()), Some(bad.into()), None);
            assert_eq!(n.ping_every, None, "{bad:?}");
        }
    }

    #[test]
    fn no_socket_no_messages_no_errors() {
        let notify = Notify::none();
        notify.ready().unwrap();
        notify.tick(Condition::Paused);
        notify.stopping();
        assert_eq!(notify.next_ping(), None);
        // A socket nobody listens on: a warning, never an error.
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone").into_os_string();
        let notify = Notify::new(None, Some(gone), None, None);
        notify.ready().unwrap();
        notify.stopping();
    }

    #[test]
    fn ready_fd_gets_one_newline_once() {
        let (reader, writer) = rustix::pipe::pipe().unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&writer);
        let notify = Notify::new(Some(fd), None, None, None);
        notify.ready().unwrap();
        notify.ready().unwrap();
        drop(writer);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut File::from(reader), &mut got).unwrap();
        assert_eq!(got, b"\n");
    }

    #[test]
    fn ready_fd_not_open_is_an_error() {
        let notify = Notify::new(Some(999_999), None, None, None);
        let e = notify.ready().unwrap_err();
        assert!(
            format!("{e:#}").starts_with("unable to write readiness to descriptor 999999: "),
            "{e:#}"
        );
    }

    #[test]
    fn pause_pings_the_watchdog_and_says_paused() {
        let (_tmp, socket, path) = listener();
        let notify = Rc::new(Notify::new(None, Some(path), Some("100000".into()), None));
        let pausing = Pausing {
            signals: Rc::new(Signals::install().unwrap()),
            notify: notify.clone(),
        };
        notify.ready().unwrap();
        assert!(pausing.pause(Duration::from_millis(230)));
        assert_eq!(received(&socket), "READY=1");
        assert!(received(&socket).starts_with("STATUS=paused"));
        for _ in 0..3 {
            assert_eq!(received(&socket), "WATCHDOG=1");
        }
    }
}
