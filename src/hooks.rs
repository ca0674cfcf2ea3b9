//! The `--on-rotate` runner: one thread that runs the hook for each
//! finished segment, one at a time, in segment order, so that a slow hook
//! holds up neither input nor the next compression.
//!
//! The command runs as `sh -c 'COMMAND "$@"' sh PATH`: the command as the
//! user wrote it, with the segment's path as its last argument. Its `$0`
//! is `sh`, so the shell's own errors read `sh: 1: …`, not as logpipe's.
//! Its standard input is `/dev/null` (logpipe's is the log stream), and
//! its standard output and error are read by logpipe and reported line by
//! line, `logpipe: info: --on-rotate for PATH: <line>` for standard output
//! and `logpipe: warning: …` for standard error: never mixed into the
//! `--tee` copy of the input on logpipe's standard output, never mistaken
//! for logpipe's own messages.
//!
//! The queue is shared with the main thread so that, at
//! `--shutdown-timeout`, it can say exactly which hooks did not run and
//! which one is still running ([`Hooks::stop`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

/// The longest a line of a hook's output is before it is reported in
/// pieces; keeps memory bounded whatever a hook prints.
const MAX_LINE: usize = 4096;

/// How often a running hook is looked at while it prints nothing, to see
/// whether it has exited (its output may stay open in a child it left in
/// the background).
const POLL_EVERY: Duration = Duration::from_millis(100);

/// The main thread's handle on the runner.
#[derive(Debug)]
pub struct Hooks {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

/// What the worker thread keeps to queue hooks.
#[derive(Debug, Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// The thread ended while hooks could still come (a panic).
    died: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Paths whose hook has not started, in order.
    pending: VecDeque<PathBuf>,
    /// The hook under way: its path, and its process id once started.
    running: Option<(PathBuf, Option<u32>)>,
    /// No more paths will come: finish the queue, then end.
    closed: bool,
    /// Start nothing more (the shutdown timeout passed).
    stopped: bool,
    /// The thread has ended.
    exited: bool,
}

/// What [`Hooks::stop`] found undone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// Hooks that never started, in order.
    pub pending: Vec<PathBuf>,
    /// The hook still running, with its process id (`None` if it was
    /// being started and did not say in time).
    pub running: Option<(PathBuf, Option<u32>)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on the runner thread leaves the queue as it was.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Hooks {
    /// Starts the runner thread for `command`.
    pub fn start(command: String) -> io::Result<Hooks> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let thread = thread::Builder::new()
            .name("logpipe-hooks".into())
            .spawn(move || {
                let _exit = Exit(&theirs);
                run(&theirs, &command);
            })?;
        Ok(Hooks { shared, thread })
    }

    /// A handle to queue paths with.
    pub fn queue(&self) -> Queue {
        Queue {
            shared: self.shared.clone(),
        }
    }

    /// Whether the runner thread died (a panic). Cheap: no system call.
    pub fn died(&self) -> bool {
        self.shared.died.load(Ordering::Relaxed)
    }

    /// Waits until the queue is closed and every hook in it has run, or
    /// until `deadline`. Returns whether the thread ended.
    pub fn wait(&self, deadline: Instant) -> bool {
        let mut state = self.shared.lock();
        while !state.exited {
            let waited;
            (state, waited) = wait_until(&self.shared.changed, state, deadline);
            if !waited {
                return false;
            }
        }
        true
    }

    /// Joins the thread once [`Hooks::wait`] said it ended.
    pub fn join(self) {
        let _ = self.thread.join();
    }

    /// Starts no more hooks and says what is left: the hooks that never
    /// started and the one still running, with its pid. A hook being
    /// started is given up to `grace` to have a pid.
    pub fn stop(&self, grace: Duration) -> Left {
        let deadline = Instant::now() + grace;
        let mut state = self.shared.lock();
        state.stopped = true;
        self.shared.changed.notify_all();
        while matches!(state.running, Some((_, None))) && !state.exited {
            let waited;
            (state, waited) = wait_until(&self.shared.changed, state, deadline);
            if !waited {
                break;
            }
        }
        Left {
            pending: state.pending.drain(..).collect(),
            running: state.running.clone(),
        }
    }
}

impl Queue {
    /// Queues the hook for `path`, after those already queued.
    pub fn push(&self, path: PathBuf) {
        let mut state = self.shared.lock();
        state.pending.push_back(path);
        self.shared.changed.notify_all();
    }

    /// No more paths will come: the runner ends once the queue is empty.
    pub fn close(&self) {
        let mut state = self.shared.lock();
        state.closed = true;
        self.shared.changed.notify_all();
    }
}

/// Marks the thread ended, however it ends.
struct Exit<'a>(&'a Shared);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if thread::panicking() || !(state.closed || state.stopped) {
            self.0.died.store(true, Ordering::Relaxed);
        }
        state.exited = true;
        self.0.changed.notify_all();
    }
}

/// The runner thread: takes each path in turn and runs its hook.
fn run(shared: &Shared, command: &str) {
    loop {
        let path = {
            let mut state = shared.lock();
            loop {
                if state.stopped {
                    return;
                }
                if let Some(path) = state.pending.pop_front() {
                    state.running = Some((path.clone(), None));
                    break path;
                }
                if state.closed {
                    return;
                }
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let started = |pid| {
            let mut state = shared.lock();
            state.running = Some((path.clone(), Some(pid)));
            shared.changed.notify_all();
        };
        let result = run_hook(command, &path, started, |stream, line| match stream {
            Stream::Stdout => crate::info!("--on-rotate for {}: {line}", path.display()),
            Stream::Stderr => crate::warning!("--on-rotate for {}: {line}", path.display()),
        });
        if let Err(e) = result {
            crate::metrics::hook_failed();
            crate::warning!("--on-rotate for {}: {e}", path.display());
        }
        let mut state = shared.lock();
        state.running = None;
        shared.changed.notify_all();
    }
}

/// Which output of a hook a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Runs the hook for `path` and waits for it: `started` gets its pid,
/// `line` each line it prints (without the newline). An error says why it
/// failed (could not start, or exited unsuccessfully).
pub fn run_hook(
    command: &str,
    path: &Path,
    started: impl FnOnce(u32),
    mut line: impl FnMut(Stream, &str),
) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg("sh")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("unable to start sh: {e}"))?;
    started(child.id());
    let status = relay(&mut child, &mut line).map_err(|e| format!("`{command}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` failed: {status}"))
    }
}

/// Hands each line the child prints to `line` until it exits (and its
/// output is read, or left open only by something it left running), then
/// returns its exit status.
fn relay(child: &mut Child, line: &mut impl FnMut(Stream, &str)) -> io::Result<ExitStatus> {
    // The pipes are closed when `read_output` returns, so the wait below
    // cannot hang on a child blocked writing to them.
    match read_output(child, line) {
        Ok(Some(status)) => Ok(status),
        Ok(None) => child.wait(),
        Err(e) => {
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Reads the child's output until it exits and what it left is read, or
/// until both outputs end; returns its exit status if it was seen.
fn read_output(
    child: &mut Child,
    line: &mut impl FnMut(Stream, &str),
) -> io::Result<Option<ExitStatus>> {
    let mut outputs = [
        child
            .stdout
            .take()
            .map(|out| Output::new(Stream::Stdout, OwnedFd::from(out))),
        child
            .stderr
            .take()
            .map(|err| Output::new(Stream::Stderr, OwnedFd::from(err))),
    ];
    let mut exited = None;
    loop {
        let open: Vec<usize> = (0..2).filter(|&i| outputs[i].is_some()).collect();
        if open.is_empty() {
            break;
        }
        // Once the hook has exited, only what is already there is read.
        let timeout = match exited {
            Some(_) => Timespec::default(),
            None => Timespec::try_from(POLL_EVERY).unwrap_or_default(),
        };
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = open
                .iter()
                .map(|&i| {
                    let output = outputs[i].as_ref().expect("listed as open");
                    PollFd::new(&output.reader, PollFlags::IN)
                })
                .collect();
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            fds.iter().map(|fd| !fd.revents().is_empty()).collect()
        };
        if exited.is_some() && !ready.contains(&true) {
            break;
        }
        for (&i, ready) in open.iter().zip(ready) {
            if ready && !outputs[i].as_mut().expect("open").read(line)? {
                outputs[i] = None;
            }
        }
        if exited.is_none() {
            exited = child.try_wait()?;
        }
    }
    for output in outputs.iter_mut().flatten() {
        output.flush(line);
    }
    Ok(exited)
}

/// One of a hook's outputs, cut into lines.
struct Output {
    stream: Stream,
    reader: File,
    buf: Vec<u8>,
}

impl Output {
    fn new(stream: Stream, fd: OwnedFd) -> Output {
        Output {
            stream,
            reader: File::from(fd),
            buf: Vec::new(),
        }
    }

    /// Reads once; hands on every complete line. Returns false at end of
    /// output.
    fn read(&mut self, line: &mut impl FnMut(Stream, &str)) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        let n = match self.reader.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.flush(line);
            return Ok(false);
        }
        for &byte in &chunk[..n] {
            if byte == b'\n' {
                self.emit(line);
            } else {
                self.buf.push(byte);
                if self.buf.len() >= MAX_LINE {
                    self.emit(line);
                }
            }
        }
        Ok(true)
    }

    /// Hands on a last line without its newline.
    fn flush(&mut self, line: &mut impl FnMut(Stream, &str)) {
        if !self.buf.is_empty() {
            self.emit(line);
        }
    }

    fn emit(&mut self, line: &mut impl FnMut(Stream, &str)) {
        let text = String::from_utf8_lossy(&self.buf);
        line(self.stream, text.trim_end_matches('\r'));
        self.buf.clear();
    }
}

/// Waits on `changed` with `guard` at most until `deadline`; false once it
/// passed. (The worker's queue waits the same way.)
pub(crate) fn wait_until<'a, T>(
    changed: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Instant,
) -> (MutexGuard<'a, T>, bool) {
    let now = Instant::now();
    if now >= deadline {
        return (guard, false);
    }
    let (guard, _) = changed
        .wait_timeout(guard, deadline - now)
        .unwrap_or_else(PoisonError::into_inner);
    (guard, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: &str) -> (Result<(), String>, Vec<(Stream, String)>) {
        let mut lines = Vec::new();
        let result = run_hook(
            command,
            Path::new("seg one"),
            |_| {},
            |stream, line| lines.push((stream, line.to_string())),
        );
        (result, lines)
    }

    #[test]
    fn output_is_relayed_by_line_and_stream() {
        let (result, lines) = run("printf 'a\\nb\\n'; echo oops >&2; printf 'no newline'; echo");
        assert_eq!(result, Ok(()));
        let out: Vec<&str> = lines
            .iter()
            .filter(|l| l.0 == Stream::Stdout)
            .map(|l| l.1.as_str())
            .collect();
        assert_eq!(out, ["a", "b", "no newlineseg one"]);
        assert_eq!(lines.iter().filter(|l| l.0 == Stream::Stderr).count(), 1);
        assert!(lines.contains(&(Stream::Stderr, "oops".into())));
    }

    #[test]
    fn shell_errors_name_sh_and_failures_the_status() {
        let (result, lines) = run("logpipe-no-such-command-here");
        assert_eq!(
            result,
            Err("`logpipe-no-such-command-here` failed: exit status: 127".into())
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].0, Stream::Stderr);
        assert!(lines[0].1.starts_with("sh: "), "{lines:?}");
        assert!(lines[0].1.contains("logpipe-no-such-command-here"));
    }

    #[test]
    fn stdin_is_empty_and_long_lines_are_cut() {
        let (result, lines) = run("cat; head -c 10000 /dev/zero | tr '\\0' x; echo; true");
        assert_eq!(result, Ok(()));
        let lens: Vec<usize> = lines.iter().map(|l| l.1.len()).collect();
        assert_eq!(lens, [4096, 4096, 1808]);
    }

    #[test]
    fn a_background_child_holding_the_output_does_not_hold_the_hook() {
        let started = Instant::now();
        let (result, lines) = run("(sleep 5; echo late) & echo early; true");
        assert_eq!(result, Ok(()));
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(lines, [(Stream::Stdout, "early".into())]);
    }

    #[test]
    fn stop_names_what_is_left_and_what_runs() {
        let dir = tempfile::tempdir().unwrap();
        let gate = dir.path().join("gate");
        // The first hook waits until the gate file exists.
        let command = format!("while [ ! -e {} ]; do sleep 0.01; done; :", gate.display());
        let hooks = Hooks::start(command).unwrap();
        let queue = hooks.queue();
        for name in ["a", "b", "c"] {
            queue.push(PathBuf::from(name));
        }
        queue.close();
        // Wait for the first one to run.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(hooks.shared.lock().running, Some((_, Some(_)))) {
            assert!(Instant::now() < deadline);
            thread::sleep(Duration::from_millis(5));
        }
        assert!(!hooks.wait(Instant::now()));
        let left = hooks.stop(Duration::from_secs(5));
        assert_eq!(left.pending, [PathBuf::from("b"), PathBuf::from("c")]);
        let (path, pid) = left.running.expect("a is running");
        assert_eq!(path, PathBuf::from("a"));
        assert!(pid.is_some());
        std::fs::write(&gate, "").unwrap();
        assert!(hooks.wait(Instant::now() + Duration::from_secs(30)));
        assert!(!hooks.died());
        hooks.join();
    }
}
