//! The worker thread that owns finished segments: their fsync,
//! compression, the `--on-rotate` hook, and retention, off the reading loop.
//!
//! The main loop only sends the id of each segment it finishes. The worker
//! fsyncs them in batches soon after (with the state file and the
//! directory), then takes them in order: compresses (`X` → `X.gz.tmp`,
//! encoder finished and checked, fsync, rename to `X.gz`, fsync of the
//! directory, then unlink of `X`), hands the final path to the hook
//! runner, and applies retention.
//! When input outruns compression, the backlog waits on disk as plain
//! segments and only their ids wait here; the reading loop never waits.
//!
//! Crash recovery happens when the worker starts: stale `*.gz.tmp` files
//! are removed, and plain segments left by an earlier run are queued. A
//! segment found both plain and compressed (a crash after the rename and
//! before the unlink) keeps the `.gz` only once it has been read back in
//! full and found equal to the plain file.
//!
//! A failed compression (disk full, say) is reported once per attempt,
//! leaves the plain segment in place, and is retried with backoff, so
//! nothing is lost and the order of hooks is kept.

use std::collections::VecDeque;
use std::fs::{self, File, Permissions};
use std::io::{self, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;

use crate::gzip::{Gzip, read_full};
use crate::naming::{self, SegmentId};
use crate::retention::{self, Found, Retention};
use crate::target::Target;

/// What happens to a finished segment.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Gzip level (1..=9), or `None` for no compression.
    pub gzip: Option<u32>,
    /// Permission bits of compressed files.
    pub mode: u32,
    pub retention: Retention,
    /// A shell command run with each finished segment's path as its last
    /// argument.
    pub on_rotate: Option<String>,
}

enum Msg {
    Finished(SegmentId),
    Shutdown,
}

/// The handle the main loop keeps on the worker thread.
#[derive(Debug)]
pub struct Worker {
    tx: Sender<Msg>,
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

/// The longest a finished segment waits for its fsync while compressions
/// keep the worker busy.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The first and the longest wait before retrying a failed compression.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

impl Worker {
    /// Starts the worker thread for `target`. It begins by recovering what
    /// an earlier run left behind.
    pub fn start(target: Target, policy: Policy) -> Result<Worker> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        // Recovery looks at the directory before the main loop finishes any
        // segment, so that a plain segment it finds is one an earlier run
        // left, never one that the main loop is also about to send.
        let mut state = State::new(target, policy);
        if let Err(e) = state.recover() {
            crate::warning!("{e:#}");
        }
        let thread = thread::Builder::new()
            .name("logpipe-worker".into())
            .spawn(move || {
                state.run(rx);
                let _ = done_tx.send(());
            })
            .context("unable to start the worker thread")?;
        Ok(Worker { tx, done, thread })
    }

    /// Queues a segment the main loop has just finished.
    pub fn finished(&self, id: SegmentId) {
        // A worker that is gone has said why on stderr; logging goes on.
        let _ = self.tx.send(Msg::Finished(id));
    }

    /// Asks the worker to finish what is queued and waits for it at most
    /// `timeout`. Returns false if it did not finish in time; what is left
    /// is finished by the next start.
    pub fn shutdown(self, timeout: Duration) -> bool {
        let _ = self.tx.send(Msg::Shutdown);
        match self.done.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }
}

/// The worker thread's own state.
struct State {
    target: Target,
    policy: Policy,
    /// Segments to process, oldest first.
    queue: VecDeque<SegmentId>,
    /// Segments finished by the main loop and not fsynced yet.
    unsynced: Vec<SegmentId>,
    /// When [`State::sync_finished`] last synced a batch.
    last_sync: Instant,
    hooks: Option<Hooks>,
    /// The compressor, made at the first segment to compress.
    gzip: Option<Gzip>,
    /// After a failure: when to try again, and the wait after that.
    retry: Option<(Instant, Duration)>,
}

impl State {
    fn new(target: Target, policy: Policy) -> State {
        let hooks = policy.on_rotate.clone().and_then(|command| {
            Hooks::start(command)
                .map_err(|e| crate::warning!("unable to start the --on-rotate runner: {e}"))
                .ok()
        });
        State {
            target,
            policy,
            queue: VecDeque::new(),
            unsynced: Vec::new(),
            last_sync: Instant::now(),
            hooks,
            gzip: None,
            retry: None,
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        self.apply_retention();
        // `open`: the main loop may still send; `stopping`: it asked us to
        // finish what is queued and stop.
        let (mut open, mut stopping) = (true, false);
        loop {
            let now = Instant::now();
            let retry_at = self.retry.map(|(at, _)| at);
            let due = !self.queue.is_empty() && retry_at.is_none_or(|at| at <= now);
            if !due {
                // Nothing to compress now: the batch waiting for its fsync
                // goes first.
                self.sync_finished();
                if (stopping || !open) && self.queue.is_empty() {
                    break;
                }
                // Nothing to do now: wait for a message, or for the retry.
                let msg = match (open, retry_at) {
                    (true, None) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    (true, Some(at)) => rx.recv_timeout(at - now),
                    (false, at) => {
                        thread::sleep(at.map_or(Duration::ZERO, |at| at - now));
                        Err(RecvTimeoutError::Timeout)
                    }
                };
                match msg {
                    Ok(msg) => self.take(msg, &mut stopping),
                    Err(RecvTimeoutError::Disconnected) => open = false,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            // Whatever else is waiting, without blocking.
            loop {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg, &mut stopping),
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            // Synced in batches: when there is nothing else to do (above),
            // and at most every SYNC_EVERY while compressions wait, so that
            // a flood of small segments does not cost three fsyncs each.
            if self.last_sync.elapsed() >= SYNC_EVERY {
                self.sync_finished();
            }
            if self.retry.is_none_or(|(at, _)| at <= Instant::now()) {
                self.process_front();
            }
        }
        if let Some(hooks) = self.hooks.take() {
            hooks.finish();
        }
    }

    fn take(&mut self, msg: Msg, stopping: &mut bool) {
        match msg {
            Msg::Finished(id) => {
                self.queue.push_back(id);
                self.unsynced.push(id);
            }
            Msg::Shutdown => *stopping = true,
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
    /// `Segment::sync_now`).
    fn sync_finished(&mut self) {
        if self.unsynced.is_empty() {
            return;
        }
        self.last_sync = Instant::now();
        // With compression on, the `.gz` is what gets synced, once it is
        // made; the plain segment only has its writeback started, so that a
        // backlog of segments is not written and waited for twice.
        let sync_segments = self.policy.gzip.is_none();
        let mut paths: Vec<(PathBuf, bool)> = self
            .unsynced
            .drain(..)
            .map(|id| (self.target.segment(id), sync_segments))
            .collect();
        paths.push((self.target.state(), true));
        let mut files = Vec::with_capacity(paths.len());
        for (path, sync) in paths {
            match File::open(&path) {
                Ok(file) => {
                    start_writeback(&file);
                    if sync {
                        files.push((file, path));
                    }
                }
                // Moved away already (a shipper): no longer ours to sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => crate::warning!("unable to sync {}: {e}", path.display()),
            }
        }
        for (file, path) in files {
            if let Err(e) = file.sync_data() {
                crate::warning!("unable to sync {}: {e}", path.display());
            }
        }
        let dir = &self.target.dir;
        if let Err(e) = File::open(dir).and_then(|dir| dir.sync_all()) {
            crate::warning!("unable to sync directory {}: {e}", dir.display());
        }
    }

    /// Processes the oldest queued segment, or schedules a retry.
    fn process_front(&mut self) {
        let Some(&id) = self.queue.front() else {
            return;
        };
        match self.finish(id) {
            Ok(path) => {
                self.queue.pop_front();
                self.retry = None;
                if let (Some(hooks), Some(path)) = (&self.hooks, path) {
                    hooks.run(path);
                }
                self.apply_retention();
            }
            Err(e) => {
                let wait = self
                    .retry
                    .map_or(RETRY_FIRST, |(_, wait)| (wait * 2).min(RETRY_MAX));
                crate::warning!("{e:#}; retrying in {}s", wait.as_secs());
                self.retry = Some((Instant::now() + wait, wait));
            }
        }
    }

    /// Brings a finished segment to its final form; returns its final path,
    /// or `None` if it is gone (moved away or deleted meanwhile).
    fn finish(&mut self, id: SegmentId) -> Result<Option<PathBuf>> {
        let plain = self.target.segment(id);
        let Some(level) = self.policy.gzip else {
            return Ok(plain.exists().then_some(plain));
        };
        let gz = with_suffix(&plain, ".gz");
        if !plain.exists() {
            return Ok(gz.exists().then_some(gz));
        }
        if gz.exists() {
            // A crash after the rename and before the unlink: keep the .gz
            // only if it holds exactly the plain segment.
            if same_content(&plain, &gz).unwrap_or(false) {
                remove(&plain)?;
                return Ok(Some(gz));
            }
            remove(&gz)?;
        }
        // Made at the first segment to compress, then kept for all.
        let gzip = self.gzip.get_or_insert_with(|| Gzip::new(level));
        compress(gzip, &plain, &gz, self.policy.mode)?;
        Ok(Some(gz))
    }

    /// Removes stale temporaries and queues the plain segments an earlier
    /// run left uncompressed.
    fn recover(&mut self) -> Result<()> {
        let mut plain = Vec::new();
        for (id, suffix, path) in self.scan()? {
            match suffix.as_slice() {
                b".gz.tmp" => remove(&path)?,
                b"" if self.policy.gzip.is_some() => plain.push(id),
                _ => {}
            }
        }
        plain.sort();
        self.queue.extend(plain);
        Ok(())
    }

    /// Deletes what retention selects. Errors are reported, not fatal.
    fn apply_retention(&self) {
        if !self.policy.retention.is_active() {
            return;
        }
        let result = self.scan().map(|files| {
            let mut found: Vec<Found> = Vec::new();
            for (id, suffix, path) in &files {
                if !matches!(suffix.as_slice(), b"" | b".gz") {
                    continue;
                }
                let Ok(meta) = fs::metadata(path) else {
                    continue;
                };
                let finished = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                match found.iter_mut().find(|f| f.id == *id) {
                    Some(f) => f.bytes += meta.len(),
                    None => found.push(Found {
                        id: *id,
                        bytes: meta.len(),
                        finished,
                    }),
                }
            }
            let victims = retention::select(&found, &self.policy.retention, SystemTime::now());
            for (id, suffix, path) in &files {
                if victims.contains(id)
                    && matches!(suffix.as_slice(), b"" | b".gz")
                    && let Err(e) = remove(path)
                {
                    crate::warning!("{e:#}");
                }
            }
        });
        if let Err(e) = result {
            crate::warning!("{e:#}");
        }
    }

    /// This target's segment files in any form: id, suffix, path.
    fn scan(&self) -> Result<Vec<(SegmentId, Vec<u8>, PathBuf)>> {
        let dir = &self.target.dir;
        let entries =
            fs::read_dir(dir).with_context(|| format!("unable to list {}", dir.display()))?;
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some((id, suffix)) = naming::parse(self.target.name.as_bytes(), name.as_bytes())
            {
                files.push((id, suffix.to_vec(), entry.path()));
            }
        }
        Ok(files)
    }
}

/// Compresses `plain` into `gz` through `gz.tmp`: the encoder is finished
/// and checked, the file synced and renamed, the directory synced, and only
/// then is `plain` removed. On failure the temporary is removed and `plain`
/// stays.
fn compress(gzip: &mut Gzip, plain: &Path, gz: &Path, mode: u32) -> Result<()> {
    let tmp = with_suffix(gz, ".tmp");
    let result = (|| -> io::Result<()> {
        let mut input = File::open(plain)?;
        let finished_at = input.metadata()?.modified()?;
        let mut output = File::create(&tmp)?;
        output.set_permissions(Permissions::from_mode(mode))?;
        gzip.compress(&mut input, &mut output)?;
        // Keep the time the segment was finished, as gzip does; retention
        // by age reads it.
        output.set_modified(finished_at)?;
        output.sync_all()?;
        fs::rename(&tmp, gz)?;
        sync_dir(gz)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("unable to compress {}", plain.display()));
    }
    remove(plain)
}

/// Whether `gz` decompresses, in full and with a valid trailer, to exactly
/// the bytes of `plain`.
fn same_content(plain: &Path, gz: &Path) -> io::Result<bool> {
    let mut a = BufReader::new(File::open(plain)?);
    let mut b = GzDecoder::new(BufReader::new(File::open(gz)?));
    let (mut buf_a, mut buf_b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut a, &mut buf_a)?;
        let m = read_full(&mut b, &mut buf_b)?;
        if n != m || buf_a[..n] != buf_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a file; one already gone counts as removed.
fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("unable to remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Starts writing `file`'s dirty pages to disk without waiting for them
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a hint: the fsync that
/// follows is what makes the data durable, so a failure is ignored.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor we own, with integer
    // arguments; it touches no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Syncs the directory holding `path`, so a rename in it is durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Runs `--on-rotate` hooks one at a time, in order, on their own thread,
/// so a slow hook delays neither input nor the next compression.
struct Hooks {
    tx: Sender<PathBuf>,
    thread: JoinHandle<()>,
}

impl Hooks {
    fn start(command: String) -> io::Result<Hooks> {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let thread = thread::Builder::new()
            .name("logpipe-hooks".into())
            .spawn(move || {
                for path in rx {
                    if let Err(e) = run_hook(&command, &path) {
                        crate::warning!("--on-rotate for {}: {e:#}", path.display());
                    }
                }
            })?;
        Ok(Hooks { tx, thread })
    }

    fn run(&self, path: PathBuf) {
        let _ = self.tx.send(path);
    }

    /// Waits for the queued hooks to finish.
    fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Runs `sh -c 'COMMAND "$@"' logpipe PATH`: the command as the user wrote
/// it, with the path as its last argument.
fn run_hook(command: &str, path: &Path) -> Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg("logpipe")
        .arg(path)
        .status()
        .context("unable to start sh")?;
    if !status.success() {
        bail!("`{command}` failed: {status}");
    }
    Ok(())
}
