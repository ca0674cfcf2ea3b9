//! The worker thread that owns finished segments, off the reading loop:
//! their fsync in batches, their compression ([`crate::compress`]), their
//! `--on-rotate` hook ([`crate::hooks`]) and retention
//! ([`crate::retention`]).
//!
//! The main loop only hands over the id of each segment it finishes
//! ([`Worker::finished`]). The worker fsyncs them in batches soon after
//! (with the state file and the directory), then has the oldest waiting
//! ones compressed by the compression threads ([`crate::pool`]: with gzip
//! up to `--compress-threads` segments at once), and hands them on in
//! segment order, whichever finishes first: the final path to the hook
//! runner, then retention. When
//! input outruns compression, the backlog
//! waits on disk as plain segments and only their ids wait here; the
//! reading loop never waits.
//!
//! Every file is named relative to the target's directory descriptor
//! ([`sys::Dir`]), never through a path; when the main loop makes a removed
//! directory again, it hands the new descriptor over ([`Worker::moved`]).
//!
//! Crash recovery happens when the worker starts, from one listing of the
//! directory ([`inventory::scan`]): stale temporaries of logpipe's own are
//! removed, and plain segments left by an earlier run are queued
//! ([`compress::recover`]).
//!
//! A failed compression (disk full, say) is reported once per attempt,
//! leaves the plain segment in place, and is retried with backoff, so
//! nothing is lost and the order of hooks is kept: segments compressed
//! meanwhile wait for it before they are handed on.
//!
//! At `--shutdown-timeout` ([`Worker::shutdown`]), the worker commits
//! nothing more, and says exactly what is left undone: segments left
//! uncompressed (the next start compresses them, then runs their hook),
//! hooks that did not run (and will not at the next start), and a hook
//! still running, with its pid.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use crate::backoff;
use crate::codec::Method;
use crate::compress::{self, Outcome};
use crate::hooks::{self, Hooks};
use crate::inventory::{self, Form};
use crate::naming::SegmentId;
use crate::pool::{self, Pool};
use crate::prune::Pruner;
use crate::retention::{self, Retention};
use crate::sys::{self, Access, Dir};
use crate::target::Target;

/// What happens to a finished segment.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The compression method and its level (checked against
    /// [`Method::levels`]), or `None` for no compression.
    pub compress: Option<(Method, u32)>,
    /// The compression threads (`--compress-threads`; 0 counts as 1), as
    /// [`crate::pool`] spends them.
    pub threads: usize,
    /// Permission bits of compressed files.
    pub mode: u32,
    pub retention: Retention,
    /// A shell command run with each finished segment's path as its last
    /// argument.
    pub on_rotate: Option<String>,
    /// `--on-full prune`: the worker's side of the pruner. A segment is
    /// worked on while holding the pruner's lock (so compressions run one
    /// at a time then), and a compression that does not fit makes room by
    /// deleting the oldest segment.
    pub prune: Option<Pruner>,
}

/// How [`Worker::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Shutdown {
    /// Everything queued was done.
    Finished,
    /// Something was left undone (the timeout passed, or a thread had
    /// died); it has been reported on stderr.
    LeftUndone,
}

/// The handle the main loop keeps on the worker thread.
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
    hooks: Option<Hooks>,
    name: OsString,
    compressing: bool,
    retention: bool,
    /// Whether [`Worker::check`] has reported the death of the worker
    /// thread, and of the hook thread.
    reported: Cell<(bool, bool)>,
}

/// The longest a finished segment waits for its fsync while compressions
/// keep the worker busy.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// At the shutdown timeout, how long a commit under way (a rename, a
/// directory fsync, a removal) or a hook being started may take to finish,
/// so that the report says what is really left.
const SETTLE: Duration = Duration::from_secs(2);

/// The worker's queue, as [`Worker::queue`] hands it out.
#[derive(Debug, Clone)]
pub struct Queue(Arc<Shared>);

impl Queue {
    /// Queues a finished segment, as [`Worker::finished`].
    pub fn finished(&self, id: SegmentId) {
        let mut status = self.0.lock();
        status.queue.push_back(id);
        status.unsynced.push(id);
        self.0.changed.notify_all();
    }
}

/// What the main thread and the worker thread share.
#[derive(Debug)]
struct Shared {
    status: Mutex<Status>,
    changed: Condvar,
    /// The worker thread ended before it was asked to (a panic).
    died: AtomicBool,
}

#[derive(Debug)]
struct Status {
    /// Finished segments not yet handed on (to the hook), oldest first:
    /// waiting, under way, or done but behind one that is not.
    queue: VecDeque<SegmentId>,
    /// Segments of the queue in their final form whose hook waits for an
    /// earlier segment (one whose compression failed and is retried), so
    /// that hooks run in segment order.
    done: Vec<Settled>,
    /// Compressions that ended, for the worker to settle, with whether
    /// their commit had begun.
    results: Vec<(pool::Done, bool)>,
    /// Finished segments not yet fsynced.
    unsynced: Vec<SegmentId>,
    /// The target directory, as the worker should use it from now.
    dir: Arc<Dir>,
    /// Set by [`Worker::moved`]; cleared when the worker takes `dir`.
    dir_changed: bool,
    /// Finish what is queued, then stop.
    shutdown: bool,
    /// Commit nothing more (the shutdown timeout passed).
    stopped: bool,
    /// Segments whose commit is under way: being renamed into their final
    /// form.
    committing: Vec<SegmentId>,
    /// The worker thread has ended.
    exited: bool,
}

impl Shared {
    /// A worker's shared state with `queue` to do in `dir`.
    fn new(queue: VecDeque<SegmentId>, dir: Arc<Dir>) -> Shared {
        Shared {
            status: Mutex::new(Status {
                queue,
                done: Vec::new(),
                results: Vec::new(),
                unsynced: Vec::new(),
                dir,
                dir_changed: false,
                shutdown: false,
                stopped: false,
                committing: Vec::new(),
                exited: false,
            }),
            changed: Condvar::new(),
            died: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Status> {
        // A panic on the worker thread leaves the queue as it was.
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The compression threads' view of the worker: commits are refused once
/// it is stopped, and each one under way is known to the shutdown report.
impl pool::Owner for Shared {
    fn commit(&self, id: SegmentId) -> bool {
        let mut status = self.lock();
        if status.stopped {
            return false;
        }
        status.committing.push(id);
        true
    }

    fn done(&self, done: pool::Done) {
        let mut status = self.lock();
        let at = status.committing.iter().position(|&c| c == done.id);
        let committed = at.map(|at| status.committing.swap_remove(at)).is_some();
        status.results.push((done, committed));
        self.changed.notify_all();
    }
}

/// A segment in its final form, waiting for its turn to be handed on.
#[derive(Debug)]
struct Settled {
    id: SegmentId,
    /// The size of its plain form, for the metrics.
    len: u64,
    /// Whether it was compressed now.
    compressed: bool,
    /// The name to run the hook on, if any.
    hook: Option<OsString>,
}

impl Worker {
    /// Starts the worker thread for `target`, whose directory is `dir`
    /// (opened once by the caller; every file operation goes through it).
    /// It begins by recovering what an earlier run left behind.
    pub fn start(target: Target, dir: Arc<Dir>, policy: Policy) -> Result<Worker> {
        // Recovery lists the directory before the main loop finishes any
        // segment, so that a plain segment it finds is one an earlier run
        // left, never one that the main loop is also about to send.
        let queue = recover(&dir, &target.name, policy.compress.is_some());
        for id in &queue {
            let name = inventory::name(&target.name, *id, Form::Plain);
            let len = dir.stat(&name).ok().flatten().map_or(0, |m| m.len);
            crate::metrics::queued(len);
        }
        let hooks = policy.on_rotate.clone().and_then(|command| {
            Hooks::start(command)
                .map_err(|e| crate::warning!("unable to start the --on-rotate runner: {e}"))
                .ok()
        });
        let shared = Arc::new(Shared::new(queue.into(), dir.clone()));
        let pool = match policy.compress {
            Some((method, level)) => Some(Pool::start(
                policy.threads,
                method,
                level,
                target.name.clone(),
                policy.mode,
                policy.prune.clone(),
                shared.clone(),
            )?),
            None => None,
        };
        let name = target.name.clone();
        let compressing = policy.compress.is_some();
        let retention = policy.retention.is_active();
        let state = State {
            shared: shared.clone(),
            hooks: hooks.as_ref().map(Hooks::queue),
            state_name: target.state().file_name().map(OsString::from),
            target,
            dir,
            policy,
            last_sync: Instant::now(),
            pool,
            in_flight: Vec::new(),
            retry: None,
        };
        let thread = thread::Builder::new()
            .name("logpipe-worker".into())
            .spawn(move || {
                let shared = state.shared.clone();
                let _exit = Exit {
                    shared: &shared,
                    hooks: state.hooks.clone(),
                };
                state.run();
            })
            .context("unable to start the worker thread")?;
        Ok(Worker {
            shared,
            thread,
            hooks,
            name,
            compressing,
            retention,
            reported: Cell::new((false, false)),
        })
    }

    /// Queues a segment the main loop has just finished. Never waits for
    /// the disk: the lock is held by the worker only for bookkeeping.
    pub fn finished(&self, id: SegmentId) {
        self.queue().finished(id);
    }

    /// A handle on the worker's queue, for `--on-full prune`: a write that
    /// waits for compressions to make room first hands over the segments
    /// it finished itself, since the main loop cannot until it returns.
    pub fn queue(&self) -> Queue {
        Queue(self.shared.clone())
    }

    /// The target directory was removed and made again: use `dir` from
    /// now on. Segments queued from the old one are gone, and skipped.
    pub fn moved(&self, dir: Arc<Dir>) {
        let mut status = self.shared.lock();
        status.dir = dir;
        status.dir_changed = true;
        self.shared.changed.notify_all();
    }

    /// Reports, once each, a worker or hook thread that died (a panic);
    /// logging goes on. Cheap enough for every pass of the main loop: two
    /// atomic loads, no system call.
    pub fn check(&self) {
        let (mut worker, mut hooks) = self.reported.get();
        if !worker && self.shared.died.load(Ordering::Relaxed) {
            worker = true;
            crate::warning!(
                "the worker thread died; logging goes on, but for the rest of this run \
                 finished segments {}",
                self.consequences()
            );
        }
        if !hooks && self.hooks.as_ref().is_some_and(Hooks::died) {
            hooks = true;
            crate::warning!(
                "the --on-rotate thread died; logging goes on, but no more hooks run in this run"
            );
        }
        self.reported.set((worker, hooks));
    }

    /// What becomes of finished segments once the worker thread is dead.
    fn consequences(&self) -> String {
        let mut what = vec!["are not fsynced by it"];
        if self.compressing {
            what.push("stay uncompressed on disk until the next start, which compresses them");
        }
        if self.hooks.is_some() {
            what.push("get no --on-rotate");
        }
        if self.retention {
            what.push("are not deleted by retention");
        }
        let last = what.pop().expect("one at least");
        if what.is_empty() {
            last.to_string()
        } else {
            format!("{} and {last}", what.join(", "))
        }
    }

    /// Asks the worker to finish what is queued (compressions, then hooks)
    /// and waits for it at most `timeout`. If that is not enough, commits
    /// nothing more and says on stderr exactly what is left undone.
    pub fn shutdown(self, timeout: Duration) -> Shutdown {
        let deadline = Instant::now() + timeout;
        {
            let mut status = self.shared.lock();
            status.shutdown = true;
            self.shared.changed.notify_all();
            while !status.exited {
                let (next, waited) = hooks::wait_until(&self.shared.changed, status, deadline);
                status = next;
                if !waited {
                    break;
                }
            }
        }
        let hooks_done = self.hooks.as_ref().is_none_or(|h| h.wait(deadline));
        let worker_done = self.shared.lock().exited;
        let after = if self.shared.died.load(Ordering::Relaxed) {
            "because the worker thread died".to_string()
        } else if self.hooks.as_ref().is_some_and(Hooks::died) {
            "because the --on-rotate thread died".to_string()
        } else if worker_done && hooks_done {
            let _ = self.thread.join();
            if let Some(hooks) = self.hooks {
                hooks.join();
            }
            return Shutdown::Finished;
        } else {
            format!("after --shutdown-timeout {}", Secs(timeout))
        };
        let left = self.stop();
        left.report(&self, &after);
        Shutdown::LeftUndone
    }

    /// Stops the worker and the hook runner where they are and collects
    /// what is left.
    fn stop(&self) -> Left {
        let deadline = Instant::now() + SETTLE;
        let mut status = self.shared.lock();
        status.stopped = true;
        self.shared.changed.notify_all();
        // The compression threads settle their commits even after the
        // worker thread has ended.
        while !status.committing.is_empty() {
            let (next, waited) = hooks::wait_until(&self.shared.changed, status, deadline);
            status = next;
            if !waited {
                break;
            }
        }
        let path = |id| {
            status
                .dir
                .display(&inventory::name(&self.name, id, Form::Plain))
        };
        let mut left = Left {
            committing: status.committing.iter().map(|&id| path(id)).collect(),
            ..Left::default()
        };
        // In its final form, not handed on: settled behind an older segment,
        // or committed by a compression thread after the worker stopped.
        // Its hook, if any, will not run.
        let finished = |id: SegmentId| -> Option<Option<PathBuf>> {
            if let Some(settled) = status.done.iter().find(|d| d.id == id) {
                return Some(settled.hook.as_ref().map(|h| status.dir.display(h)));
            }
            let (done, _) = status.results.iter().find(|(d, c)| d.id == id && *c)?;
            match &done.result {
                Ok(Outcome::Done(name)) => Some(Some(status.dir.display(name))),
                Ok(Outcome::Kept(_)) => Some(Some(path(id))),
                _ => None,
            }
        };
        let (mut done, mut queued) = (Vec::new(), Vec::new());
        for &id in &status.queue {
            if let Some(hook) = finished(id) {
                done.extend(hook);
            } else if !status.committing.contains(&id) {
                queued.push(path(id));
            }
        }
        drop(status);
        if self.compressing {
            left.uncompressed = queued;
            left.hooks = done;
        } else if self.hooks.is_some() {
            left.hooks = queued;
        }
        if self.hooks.is_none() {
            left.hooks.clear();
        }
        if let Some(hooks) = &self.hooks {
            let hooks = hooks.stop(SETTLE);
            // Hooks queued before the segments the worker still held.
            left.hooks.splice(0..0, hooks.pending);
            left.running = hooks.running;
        }
        left
    }
}

/// What [`Worker::shutdown`] left undone.
#[derive(Debug, Default)]
struct Left {
    /// Plain segments that stay plain until the next start.
    uncompressed: Vec<PathBuf>,
    /// Segments whose commit did not finish in time: either form may be
    /// left.
    committing: Vec<PathBuf>,
    /// Segments whose hook did not run, and will not at the next start.
    hooks: Vec<PathBuf>,
    /// The hook left running, with its pid if known.
    running: Option<(PathBuf, Option<u32>)>,
}

impl Left {
    /// Says what is left, `after` what (`after --shutdown-timeout 5s`).
    fn report(&self, worker: &Worker, after: &str) {
        let hooked = worker.hooks.is_some();
        if !self.uncompressed.is_empty() {
            let state = if after.starts_with("after") {
                "still running"
            } else {
                "stopped"
            };
            crate::warning!(
                "compression {state} {after}: {} left uncompressed; the next start \
                 compresses {}{}",
                Paths(&self.uncompressed, "finished segment"),
                if self.uncompressed.len() == 1 {
                    "it"
                } else {
                    "them"
                },
                if hooked {
                    ", then runs --on-rotate for each"
                } else {
                    ""
                }
            );
        }
        for path in &self.committing {
            crate::warning!(
                "{} was being renamed into place {after}: either it or its compressed form is left; \
                 if it is, the next start compresses it{}",
                path.display(),
                if hooked {
                    " and runs its --on-rotate"
                } else {
                    ""
                }
            );
        }
        if !self.hooks.is_empty() {
            crate::warning!(
                "--on-rotate not run {after}, and not run at the next start either, for {}",
                Paths(&self.hooks, "segment")
            );
        }
        if let Some((path, pid)) = &self.running {
            let pid = pid.map_or("pid unknown".to_string(), |pid| format!("pid {pid}"));
            crate::warning!(
                "--on-rotate for {} still running {after}: left running ({pid}), \
                 with its stdout and stderr closed when logpipe exits",
                path.display()
            );
        }
    }
}

/// A duration as `5s` or `1.5s`.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}s", self.0.as_secs_f64())
        }
    }
}

/// `3 segments: a, b, c`, every path named.
struct Paths<'a>(&'a [PathBuf], &'static str);

impl fmt::Display for Paths<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Paths(paths, noun) = self;
        let plural = if paths.len() == 1 { "" } else { "s" };
        write!(f, "{} {noun}{plural} (", paths.len())?;
        for (i, path) in paths.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", path.display())?;
        }
        f.write_str(")")
    }
}

/// Removes stale temporaries and returns the plain segments an earlier run
/// left uncompressed, oldest first. Errors are reported, not fatal.
fn recover(dir: &Dir, name: &std::ffi::OsStr, compress: bool) -> Vec<SegmentId> {
    let entries = match inventory::scan(dir, name) {
        Ok(entries) => entries,
        Err(e) => {
            crate::warning!("unable to list {}: {e}", dir.path().display());
            return Vec::new();
        }
    };
    let stat = |name: &std::ffi::OsStr| dir.stat(name).ok().flatten();
    let recovery = compress::recover(&entries, compress, stat);
    for temp in &recovery.remove {
        if let Err(e) = dir.unlink(temp)
            && e.kind() != io::ErrorKind::NotFound
        {
            crate::warning!("unable to remove {}: {e}", dir.display(temp).display());
        }
    }
    recovery.queue
}

/// The worker thread's own state.
struct State {
    shared: Arc<Shared>,
    target: Target,
    /// The state file's name, synced with each batch.
    state_name: Option<OsString>,
    dir: Arc<Dir>,
    policy: Policy,
    hooks: Option<hooks::Queue>,
    /// When [`State::sync`] last synced a batch.
    last_sync: Instant,
    /// The compression threads, with compression on.
    pool: Option<Pool>,
    /// Segments handed to the pool, not yet settled.
    in_flight: Vec<SegmentId>,
    /// After a failure: when to try again, and the wait after that.
    retry: Option<(Instant, Duration)>,
}

/// What the worker does next.
enum Next {
    Sync(Vec<SegmentId>),
    /// Without compression: check the oldest segment.
    Process(SegmentId),
    /// Hand these segments to the compression threads.
    Dispatch(Vec<SegmentId>),
    /// Take over what the compression threads finished.
    Settle(Vec<(pool::Done, bool)>),
    Stop,
}

/// Marks the worker thread ended, however it ends, and closes the hook
/// queue so that the hooks already queued still run.
struct Exit<'a> {
    shared: &'a Shared,
    hooks: Option<hooks::Queue>,
}

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        let mut status = self.shared.lock();
        if thread::panicking() || !(status.shutdown || status.stopped) {
            self.shared.died.store(true, Ordering::Relaxed);
        }
        status.exited = true;
        self.shared.changed.notify_all();
        drop(status);
        if let Some(hooks) = &self.hooks {
            hooks.close();
        }
    }
}

impl State {
    fn run(mut self) {
        self.apply_retention();
        loop {
            match self.next() {
                Next::Stop => break,
                Next::Sync(ids) => self.sync(ids),
                Next::Process(id) => self.process(id),
                Next::Dispatch(ids) => self.dispatch(ids),
                Next::Settle(results) => {
                    for (done, committed) in results {
                        self.settle(done, committed);
                    }
                }
            }
        }
    }

    /// Waits for something to do.
    fn next(&mut self) -> Next {
        let shared = self.shared.clone();
        let mut status = shared.lock();
        loop {
            if status.stopped {
                return Next::Stop;
            }
            if status.dir_changed {
                status.dir_changed = false;
                self.dir = status.dir.clone();
                // What failed in the old directory may work in the new.
                self.retry = None;
            }
            if !status.results.is_empty() {
                return Next::Settle(std::mem::take(&mut status.results));
            }
            let now = Instant::now();
            let retry_at = self.retry.map(|(at, _)| at);
            let due = if retry_at.is_some_and(|at| at > now) {
                Vec::new()
            } else {
                self.due(&status)
            };
            let busy = !self.in_flight.is_empty();
            // Synced in batches: when there is nothing else to do, and at
            // most every SYNC_EVERY while compressions wait, so that a
            // flood of small segments does not cost three fsyncs each.
            let sync_at = self.last_sync + SYNC_EVERY;
            if !status.unsynced.is_empty() && ((due.is_empty() && !busy) || sync_at <= now) {
                return Next::Sync(std::mem::take(&mut status.unsynced));
            }
            if !due.is_empty() {
                return match self.pool {
                    Some(_) => Next::Dispatch(due),
                    None => Next::Process(due[0]),
                };
            }
            // In flight, waiting in the pool or done: still queued.
            if status.shutdown && status.queue.is_empty() {
                return Next::Stop;
            }
            // Only deadlines still ahead: one passed already (a retry whose
            // segment is in flight again) would have this loop spin with the
            // lock held, and the compression threads could never report.
            let wake = [
                retry_at.filter(|&at| at > now),
                (!status.unsynced.is_empty()).then_some(sync_at),
            ];
            status = match wake.into_iter().flatten().min() {
                Some(at) => hooks::wait_until(&shared.changed, status, at).0,
                None => shared
                    .changed
                    .wait(status)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// The segments to take on now, oldest first: without compression, the
    /// oldest; with it, as many of the waiting ones as there are free
    /// compression threads.
    fn due(&self, status: &Status) -> Vec<SegmentId> {
        let Some(pool) = &self.pool else {
            return status.queue.front().copied().into_iter().collect();
        };
        let free = pool.segments().saturating_sub(self.in_flight.len());
        status
            .queue
            .iter()
            .filter(|id| !self.in_flight.contains(id) && !status.done.iter().any(|d| d.id == **id))
            .take(free)
            .copied()
            .collect()
    }

    /// Hands `ids` to the compression threads, in the current directory.
    fn dispatch(&mut self, ids: Vec<SegmentId>) {
        let Some(pool) = &self.pool else {
            return;
        };
        for id in ids {
            self.in_flight.push(id);
            let dir = self.dir.clone();
            pool.submit(pool::Job { id, dir });
        }
    }

    /// Makes the segments just finished durable: each one's data (or, with
    /// compression, its `.gz` later), then the state file that named them
    /// and the directory that holds both names.
    /// This is the fsync of `--fsync rotate`, done here so that the reading
    /// loop never waits for the disk at a rotation; a segment waits at most
    /// about [`SYNC_EVERY`], or the compression under way.
    ///
    /// Writeback of every file of the batch is started first, so that their
    /// blocks are allocated in one journal transaction and the fsyncs that
    /// follow mostly find it committed: one commit per batch, not one per
    /// file. A failed fsync is reported, not retried (see
    /// `Segment::sync_now`). Files are opened read-only through the
    /// directory, never through a link.
    fn sync(&mut self, ids: Vec<SegmentId>) {
        self.last_sync = Instant::now();
        // With compression on, the `.gz` is what gets synced, once it is
        // made; the plain segment only has its writeback started, so that a
        // backlog of segments is not written and waited for twice.
        let sync_segments = self.policy.compress.is_none();
        let mut names: Vec<(OsString, bool)> = ids
            .into_iter()
            .map(|id| (self.segment_name(id), sync_segments))
            .collect();
        names.extend(self.state_name.clone().map(|name| (name, true)));
        let mut files = Vec::with_capacity(names.len());
        for (name, sync) in names {
            match self.dir.open_file(&name, Access::Read) {
                Ok(file) => {
                    sys::start_writeback(&file);
                    if sync {
                        files.push((file, name));
                    }
                }
                // Moved away already (a shipper), or its directory removed:
                // no longer ours to sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => crate::warning!("unable to sync {}: {e}", self.path(&name).display()),
            }
        }
        for (file, name) in files {
            if let Err(e) = file.sync_data() {
                crate::warning!("unable to sync {}: {e}", self.path(&name).display());
            }
        }
        if let Err(e) = self.dir.sync() {
            crate::warning!(
                "unable to sync directory {}: {e}",
                self.dir.path().display()
            );
        }
    }

    fn segment_name(&self, id: SegmentId) -> OsString {
        inventory::name(&self.target.name, id, Form::Plain)
    }

    fn path(&self, name: &std::ffi::OsStr) -> PathBuf {
        self.dir.display(name)
    }

    /// Without compression: checks the oldest queued segment and hands it
    /// to the hook.
    fn process(&mut self, id: SegmentId) {
        let name = self.segment_name(id);
        let len = self.dir.stat(&name).ok().flatten().map_or(0, |m| m.len);
        // With --on-full prune, the main thread deletes no segment while
        // this one is looked at (see `prune`).
        let lock = self.policy.prune.clone();
        let held = lock.as_ref().map(Pruner::hold);
        let result = self.check_plain(id);
        drop(held);
        if let Some(pruner) = &mut self.policy.prune {
            pruner.report();
            if result.is_ok() {
                pruner.advanced();
            }
        }
        self.settle(pool::Done { id, len, result }, false);
    }

    /// Takes over a segment brought to its final form (or stepped around,
    /// or failed: then it stays queued and is retried), and hands on, in
    /// order, every segment at the front of the queue that is done.
    /// `committed`: its commit had begun.
    fn settle(&mut self, done: pool::Done, committed: bool) {
        let pool::Done { id, len, result } = done;
        self.in_flight.retain(|&f| f != id);
        // Diagnostics first, never under the lock: a write to a stalled
        // stderr must not hold up the main loop's `finished`.
        let hook = match result {
            Ok(Outcome::Stopped) => None,
            Ok(Outcome::Done(ref name)) => Some(name.clone()),
            Ok(Outcome::Gone) => None,
            Ok(Outcome::Kept(ref why)) => {
                let name = self.segment_name(id);
                crate::warning!("leaving {} uncompressed: {why}", self.path(&name).display());
                Some(name)
            }
            Ok(Outcome::NotOurs(ref why)) => {
                crate::warning!(
                    "leaving {} alone: it {why}, so it is not a segment logpipe made",
                    self.path(&self.segment_name(id)).display()
                );
                None
            }
            Err(ref e) => {
                let wait = backoff::next(self.retry.map(|(_, wait)| wait));
                crate::warning!("{e:#}; retrying in {}s", wait.as_secs());
                self.retry = Some((Instant::now() + wait, wait));
                None
            }
        };
        let shared = self.shared.clone();
        let mut status = shared.lock();
        shared.changed.notify_all();
        if result.is_err()
            || matches!(result, Ok(Outcome::Stopped))
            || (status.stopped && !committed)
        {
            // Still queued: retried, or counted as left by a shutdown
            // report.
            return;
        }
        if status.queue.front() == Some(&id) {
            // The oldest went through: whatever failed before is past.
            self.retry = None;
        }
        let compressed = self.policy.compress.is_some() && matches!(result, Ok(Outcome::Done(_)));
        status.done.push(Settled {
            id,
            len,
            compressed,
            hook,
        });
        // Popped and handed to the hook in one step under the lock, so that
        // a shutdown report counts each in exactly one place.
        let mut handed = false;
        while let Some(&front) = status.queue.front() {
            let Some(at) = status.done.iter().position(|d| d.id == front) else {
                break;
            };
            let settled = status.done.swap_remove(at);
            status.queue.pop_front();
            let empty = status.queue.is_empty();
            crate::metrics::dequeued(settled.len, settled.compressed, empty);
            if let (Some(hooks), Some(name)) = (&self.hooks, settled.hook) {
                hooks.push(self.path(&name));
            }
            handed = true;
        }
        drop(status);
        if handed {
            self.apply_retention();
        }
    }

    /// Without compression, a plain segment is final as it is.
    fn check_plain(&self, id: SegmentId) -> Result<Outcome> {
        let name = self.segment_name(id);
        let meta = self
            .dir
            .stat(&name)
            .with_context(|| format!("unable to stat {}", self.path(&name).display()))?;
        Ok(match meta {
            None => Outcome::Gone,
            Some(meta) => match compress::not_ours(&meta) {
                None => Outcome::Done(name),
                Some(why) => Outcome::NotOurs(why),
            },
        })
    }

    /// Deletes what retention selects, from one listing. Errors are
    /// reported, not fatal.
    fn apply_retention(&self) {
        if !self.policy.retention.is_active() {
            return;
        }
        let entries = match inventory::scan(&self.dir, &self.target.name) {
            Ok(entries) => entries,
            Err(e) => {
                crate::warning!("unable to list {}: {e}", self.dir.path().display());
                return;
            }
        };
        let stat = |name: &std::ffi::OsStr| self.dir.stat(name).ok().flatten();
        // The system clock, on purpose: see `retention`'s module docs.
        let now = SystemTime::now();
        for name in retention::plan(&entries, stat, &self.policy.retention, now) {
            if let Err(e) = self.dir.remove_ours(&name) {
                crate::warning!("unable to remove {}: {e}", self.path(&name).display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::Path;

    use jiff::civil::date;

    fn id(n: u64) -> SegmentId {
        SegmentId {
            date: date(2026, 11, 21),
            n,
        }
    }

    struct Fixture {
        tmp: tempfile::TempDir,
        target: Target,
        dir: Arc<Dir>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let target = Target::resolve(&tmp.path().join("current"), None).unwrap();
            let dir = Arc::new(Dir::open(tmp.path()).unwrap());
            Fixture { tmp, target, dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.tmp.path().join(name)
        }

        fn start(&self, policy: Policy) -> Worker {
            Worker::start(self.target.clone(), self.dir.clone(), policy).unwrap()
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    fn gzip_policy() -> Policy {
        Policy {
            compress: Some((Method::Gzip, 1)),
            mode: 0o640,
            ..Policy::default()
        }
    }

    fn gunzip(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn start_recovers_and_shutdown_finishes_the_queue() {
        let f = Fixture::new();
        std::fs::write(f.path("current.2026-11-21.1"), "one\n").unwrap();
        std::fs::write(f.path("current.2026-11-21.1.gz.tmp"), "half").unwrap();
        std::fs::write(f.path("current.2026-11-21.2"), "two\n").unwrap();
        let worker = f.start(gzip_policy());
        std::fs::write(f.path("current.2026-11-21.3"), "three\n").unwrap();
        worker.finished(id(3));
        worker.check();
        assert_eq!(worker.shutdown(Duration::from_secs(60)), Shutdown::Finished);
        assert_eq!(
            f.names(),
            [
                "current.2026-11-21.1.gz",
                "current.2026-11-21.2.gz",
                "current.2026-11-21.3.gz"
            ]
        );
        assert_eq!(gunzip(&f.path("current.2026-11-21.3.gz")), b"three\n");
    }

    #[test]
    fn segments_of_a_removed_directory_are_skipped_after_a_move() {
        let f = Fixture::new();
        let worker = f.start(gzip_policy());
        // The directory is replaced: the old descriptor sees nothing.
        let old = f.tmp.path().join("old");
        std::fs::create_dir(&old).unwrap();
        let moved = Arc::new(Dir::open(&old).unwrap());
        std::fs::write(old.join("current.2026-11-21.2"), "two\n").unwrap();
        worker.finished(id(1));
        worker.moved(moved);
        worker.finished(id(2));
        assert_eq!(worker.shutdown(Duration::from_secs(60)), Shutdown::Finished);
        assert_eq!(gunzip(&old.join("current.2026-11-21.2.gz")), b"two\n");
    }

    #[test]
    fn a_stopped_worker_reports_what_is_left() {
        let f = Fixture::new();
        let (started, gate) = (f.tmp.path().join("started"), f.tmp.path().join("gate"));
        // The first hook says it started, then waits for the gate.
        let hook = format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.01; done; :",
            started.display(),
            gate.display()
        );
        let policy = Policy {
            on_rotate: Some(hook),
            ..gzip_policy()
        };
        for n in 1..=3 {
            std::fs::write(f.path(&format!("current.2026-11-21.{n}")), "x\n").unwrap();
        }
        let worker = f.start(policy);
        worker.finished(id(4)); // not there: gone, skipped
        // Wait until all is done but the hooks, and the first hook runs.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !worker.shared.lock().queue.is_empty() || !started.exists() {
            assert!(Instant::now() < deadline, "{:?}", f.names());
            thread::sleep(Duration::from_millis(5));
        }
        let left = worker.stop();
        assert!(left.uncompressed.is_empty(), "{left:?}");
        assert!(left.committing.is_empty());
        let (running, pid) = left.running.expect("a hook runs");
        assert_eq!(running, f.path("current.2026-11-21.1.gz"));
        assert!(pid.is_some());
        assert_eq!(
            left.hooks,
            [
                f.path("current.2026-11-21.2.gz"),
                f.path("current.2026-11-21.3.gz")
            ]
        );
        // The running hook ends; no other starts.
        std::fs::write(&gate, "").unwrap();
        let hooks = worker.hooks.as_ref().unwrap();
        assert!(hooks.wait(Instant::now() + Duration::from_secs(30)));
        assert!(!hooks.died());
    }

    #[test]
    fn a_dead_thread_is_noticed_without_a_system_call() {
        let shared = Arc::new(Shared::new(
            VecDeque::new(),
            Arc::new(Dir::open(Path::new("/")).unwrap()),
        ));
        let theirs = shared.clone();
        let thread = thread::spawn(move || {
            let _exit = Exit {
                shared: &theirs,
                hooks: None,
            };
            panic!("a bug in the worker (this panic is expected by the test)");
        });
        assert!(thread.join().is_err());
        assert!(shared.died.load(Ordering::Relaxed));
        assert!(shared.lock().exited);
    }

    #[test]
    fn durations_and_path_lists_read_well() {
        assert_eq!(Secs(Duration::from_secs(5)).to_string(), "5s");
        assert_eq!(Secs(Duration::from_millis(1500)).to_string(), "1.5s");
        let paths = [PathBuf::from("out/a"), PathBuf::from("out/b")];
        assert_eq!(
            Paths(&paths, "segment").to_string(),
            "2 segments (out/a, out/b)"
        );
        assert_eq!(
            Paths(&paths[..1], "segment").to_string(),
            "1 segment (out/a)"
        );
    }
}
