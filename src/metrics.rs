//! `--metrics FILE`: the sink's counters in the Prometheus text exposition
//! format, for node_exporter's textfile collector.
//!
//! The counters are process-wide atomics, bumped where things happen (the
//! main loop, the sink, `--on-full`, the worker, the hook runner) with one
//! relaxed atomic add, whether or not `--metrics` is on; only the count of
//! input lines, the one per-byte cost, is made only with `--metrics`.
//!
//! A thread of its own (`logpipe-metrics`) writes the file, so that a slow
//! disk under it never holds up the reading loop: every
//! `--metrics-interval`, and as soon as it is [`poke`]d (a rotation, a
//! pause or a run of drops that starts or ends; the pause path pokes it
//! too, since the main loop is blocked while paused), and once more at
//! exit. The file is replaced atomically: a temporary in the same
//! directory (created with `O_EXCL | O_NOFOLLOW` through the directory
//! descriptor opened once at start), then a rename over the final name,
//! which replaces the name itself and never follows a symbolic link there.
//! A failure to write is a warning, said once per run of failures.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use crate::sys::Placed;

/// Permission bits of the metrics file: node_exporter often runs as
/// another user, and nothing in it is secret beyond the target's path.
const FILE_MODE: u32 = 0o644;

/// The shortest time between two writes of the file asked for by
/// [`poke`] (the interval's and the last one at exit are not held back).
const MIN_GAP: Duration = Duration::from_millis(100);

/// Why a segment was finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The next write would have passed `--size`.
    Size,
    /// A boundary of `--every`.
    Clock,
    /// SIGUSR1 or SIGALRM.
    Signal,
    /// The active file left by an earlier run was from an ended window.
    Restart,
}

impl Reason {
    const ALL: [Reason; 4] = [Reason::Size, Reason::Clock, Reason::Signal, Reason::Restart];

    fn label(self) -> &'static str {
        match self {
            Reason::Size => "size",
            Reason::Clock => "clock",
            Reason::Signal => "signal",
            Reason::Restart => "restart",
        }
    }
}

/// The process-wide counters.
struct Counters {
    input_bytes: AtomicU64,
    input_lines: AtomicU64,
    written_bytes: AtomicU64,
    segments_finished: AtomicU64,
    segments_compressed: AtomicU64,
    rotations: [AtomicU64; 4],
    backlog_segments: AtomicU64,
    backlog_bytes: AtomicU64,
    dropped_lines: AtomicU64,
    dropped_bytes: AtomicU64,
    pruned_segments: AtomicU64,
    pruned_bytes: AtomicU64,
    write_errors: AtomicU64,
    hook_failures: AtomicU64,
    active_bytes: AtomicU64,
    /// Unix time of the last rotation, in milliseconds; 0 before any.
    last_rotation_ms: AtomicU64,
    records_dropped: AtomicU64,
    records_routed: AtomicU64,
    lines_redacted: AtomicU64,
}

static COUNTERS: Counters = Counters {
    input_bytes: AtomicU64::new(0),
    input_lines: AtomicU64::new(0),
    written_bytes: AtomicU64::new(0),
    segments_finished: AtomicU64::new(0),
    segments_compressed: AtomicU64::new(0),
    rotations: [const { AtomicU64::new(0) }; 4],
    backlog_segments: AtomicU64::new(0),
    backlog_bytes: AtomicU64::new(0),
    dropped_lines: AtomicU64::new(0),
    dropped_bytes: AtomicU64::new(0),
    pruned_segments: AtomicU64::new(0),
    pruned_bytes: AtomicU64::new(0),
    write_errors: AtomicU64::new(0),
    hook_failures: AtomicU64::new(0),
    active_bytes: AtomicU64::new(0),
    last_rotation_ms: AtomicU64::new(0),
    records_dropped: AtomicU64::new(0),
    records_routed: AtomicU64::new(0),
    lines_redacted: AtomicU64::new(0),
};

/// Time spent paused: since when, if now, and the total of past pauses.
struct Pauses {
    since: Option<Instant>,
    total: Duration,
}

static PAUSES: Mutex<Pauses> = Mutex::new(Pauses {
    since: None,
    total: Duration::ZERO,
});

/// What wakes the writer thread.
struct Wake {
    poked: bool,
    stop: bool,
}

static WAKE: Mutex<Wake> = Mutex::new(Wake {
    poked: false,
    stop: false,
});
static WOKEN: Condvar = Condvar::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
}

/// Input handed to the sink: `run` was read from standard input.
pub fn input(run: &[u8]) {
    COUNTERS.input_bytes.fetch_add(run.len() as u64, Relaxed);
    let lines = memchr::memchr_iter(b'\n', run).count();
    COUNTERS.input_lines.fetch_add(lines as u64, Relaxed);
}

/// `n` bytes written to the active file, which now holds `size`.
pub fn written(n: usize, size: u64) {
    COUNTERS.written_bytes.fetch_add(n as u64, Relaxed);
    COUNTERS.active_bytes.store(size, Relaxed);
}

/// The active file now holds `size` bytes (opened, or a new one started).
pub fn active_size(size: u64) {
    COUNTERS.active_bytes.store(size, Relaxed);
}

/// A segment of `bytes` was finished for `reason` and queued for the
/// worker.
pub fn rotated(reason: Reason, bytes: u64) {
    let c = &COUNTERS;
    c.segments_finished.fetch_add(1, Relaxed);
    c.rotations[reason as usize].fetch_add(1, Relaxed);
    queued(bytes);
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    c.last_rotation_ms.store(ms, Relaxed);
    poke();
}

/// A segment of `bytes` waits for the worker (finished now, or left by an
/// earlier run).
pub fn queued(bytes: u64) {
    COUNTERS.backlog_segments.fetch_add(1, Relaxed);
    COUNTERS.backlog_bytes.fetch_add(bytes, Relaxed);
}

/// The worker is done with a segment of `bytes` (`compressed` if it made
/// its `.gz`); `empty` if none is left queued.
pub fn dequeued(bytes: u64, compressed: bool, empty: bool) {
    let c = &COUNTERS;
    sub(&c.backlog_segments, 1);
    sub(&c.backlog_bytes, bytes);
    if empty {
        // Segments moved away before the worker saw them leave no trace.
        c.backlog_segments.store(0, Relaxed);
        c.backlog_bytes.store(0, Relaxed);
    }
    if compressed {
        c.segments_compressed.fetch_add(1, Relaxed);
    }
}

/// `lines` lines of `bytes` were dropped (`--on-full drop`).
pub fn dropped(lines: u64, bytes: u64) {
    COUNTERS.dropped_lines.fetch_add(lines, Relaxed);
    COUNTERS.dropped_bytes.fetch_add(bytes, Relaxed);
}

/// A segment of `bytes` was deleted to make room (`--on-full prune`).
pub fn pruned(bytes: u64) {
    COUNTERS.pruned_segments.fetch_add(1, Relaxed);
    COUNTERS.pruned_bytes.fetch_add(bytes, Relaxed);
}

/// The line stage's counts went from `before` to `after`.
pub fn line_stage(before: crate::filter::Counts, after: crate::filter::Counts) {
    let c = &COUNTERS;
    c.records_dropped
        .fetch_add(after.dropped - before.dropped, Relaxed);
    c.records_routed
        .fetch_add(after.routed - before.routed, Relaxed);
    c.lines_redacted
        .fetch_add(after.redacted - before.redacted, Relaxed);
}

/// A write, rename or open in the target directory failed.
pub fn write_error() {
    COUNTERS.write_errors.fetch_add(1, Relaxed);
}

/// An `--on-rotate` hook failed.
pub fn hook_failed() {
    COUNTERS.hook_failures.fetch_add(1, Relaxed);
}

/// Writes failed and input is held back from now on.
pub fn pause_started() {
    lock(&PAUSES).since.get_or_insert_with(Instant::now);
    poke();
}

/// Writes work again after a pause.
pub fn pause_ended() {
    let mut pauses = lock(&PAUSES);
    if let Some(since) = pauses.since.take() {
        pauses.total += since.elapsed();
    }
    drop(pauses);
    poke();
}

/// Asks the writer thread to write the file now (or 0.1 s after its last
/// write, at the latest). Never waits beyond the
/// writer's bookkeeping.
pub fn poke() {
    lock(&WAKE).poked = true;
    WOKEN.notify_all();
}

/// The values of one write of the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub input_bytes: u64,
    pub input_lines: u64,
    pub written_bytes: u64,
    pub segments_finished: u64,
    pub segments_compressed: u64,
    /// By [`Reason`]: size, clock, signal, restart.
    pub rotations: [u64; 4],
    pub backlog_segments: u64,
    pub backlog_bytes: u64,
    pub paused: bool,
    pub paused_seconds: f64,
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
    pub pruned_segments: u64,
    pub pruned_bytes: u64,
    pub write_errors: u64,
    pub hook_failures: u64,
    pub active_bytes: u64,
    /// Unix time, seconds; 0 before any rotation.
    pub last_rotation: f64,
    pub records_dropped: u64,
    pub records_routed: u64,
    pub lines_redacted: u64,
    pub start_time: f64,
}

impl Snapshot {
    /// The counters now.
    pub fn take(start_time: f64) -> Snapshot {
        let c = &COUNTERS;
        let pauses = lock(&PAUSES);
        let paused_seconds =
            (pauses.total + pauses.since.map_or(Duration::ZERO, |s| s.elapsed())).as_secs_f64();
        let paused = pauses.since.is_some();
        drop(pauses);
        Snapshot {
            input_bytes: c.input_bytes.load(Relaxed),
            input_lines: c.input_lines.load(Relaxed),
            written_bytes: c.written_bytes.load(Relaxed),
            segments_finished: c.segments_finished.load(Relaxed),
            segments_compressed: c.segments_compressed.load(Relaxed),
            rotations: c.rotations.each_ref().map(|r| r.load(Relaxed)),
            backlog_segments: c.backlog_segments.load(Relaxed),
            backlog_bytes: c.backlog_bytes.load(Relaxed),
            paused,
            paused_seconds,
            dropped_lines: c.dropped_lines.load(Relaxed),
            dropped_bytes: c.dropped_bytes.load(Relaxed),
            pruned_segments: c.pruned_segments.load(Relaxed),
            pruned_bytes: c.pruned_bytes.load(Relaxed),
            write_errors: c.write_errors.load(Relaxed),
            hook_failures: c.hook_failures.load(Relaxed),
            active_bytes: c.active_bytes.load(Relaxed),
            last_rotation: c.last_rotation_ms.load(Relaxed) as f64 / 1000.0,
            records_dropped: c.records_dropped.load(Relaxed),
            records_routed: c.records_routed.load(Relaxed),
            lines_redacted: c.lines_redacted.load(Relaxed),
            start_time,
        }
    }

    /// The exposition text, with `target` as the label of every series.
    pub fn render(&self, target: &str) -> String {
        let t = escape(target);
        let mut out = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{{target=\"{t}\"{labels}}} {value}");
            }
        };
        let one = |v: u64| [("", v.to_string())];
        metric(
            "logpipe_input_bytes_total",
            "counter",
            "Bytes read from standard input.",
            &one(self.input_bytes),
        );
        metric(
            "logpipe_input_lines_total",
            "counter",
            "Lines read from standard input.",
            &one(self.input_lines),
        );
        metric(
            "logpipe_written_bytes_total",
            "counter",
            "Bytes written to active files, timestamp prefixes included.",
            &one(self.written_bytes),
        );
        metric(
            "logpipe_segments_finished_total",
            "counter",
            "Segments finished (rotations).",
            &one(self.segments_finished),
        );
        metric(
            "logpipe_segments_compressed_total",
            "counter",
            "Finished segments compressed.",
            &one(self.segments_compressed),
        );
        let by_reason: Vec<(String, String)> = Reason::ALL
            .iter()
            .map(|r| {
                (
                    format!(",reason=\"{}\"", r.label()),
                    self.rotations[*r as usize].to_string(),
                )
            })
            .collect();
        let by_reason: Vec<(&str, String)> = by_reason
            .iter()
            .map(|(l, v)| (l.as_str(), v.clone()))
            .collect();
        metric(
            "logpipe_rotations_total",
            "counter",
            "Rotations, by reason: size, clock, signal, restart.",
            &by_reason,
        );
        metric(
            "logpipe_compression_backlog_segments",
            "gauge",
            "Finished segments not yet compressed.",
            &one(self.backlog_segments),
        );
        metric(
            "logpipe_compression_backlog_bytes",
            "gauge",
            "Bytes of finished segments not yet compressed.",
            &one(self.backlog_bytes),
        );
        metric(
            "logpipe_paused",
            "gauge",
            "1 while writes fail and input is held back (--on-full block).",
            &one(u64::from(self.paused)),
        );
        metric(
            "logpipe_paused_seconds_total",
            "counter",
            "Seconds spent paused.",
            &[("", format!("{:.3}", self.paused_seconds))],
        );
        metric(
            "logpipe_dropped_lines_total",
            "counter",
            "Lines dropped while writes failed (--on-full drop).",
            &one(self.dropped_lines),
        );
        metric(
            "logpipe_dropped_bytes_total",
            "counter",
            "Bytes dropped while writes failed (--on-full drop).",
            &one(self.dropped_bytes),
        );
        metric(
            "logpipe_pruned_segments_total",
            "counter",
            "Finished segments deleted to make room on a full disk (--on-full prune).",
            &one(self.pruned_segments),
        );
        metric(
            "logpipe_pruned_bytes_total",
            "counter",
            "Bytes of the segments deleted to make room (--on-full prune).",
            &one(self.pruned_bytes),
        );
        metric(
            "logpipe_write_errors_total",
            "counter",
            "Failed attempts to write, roll or reopen the active file.",
            &one(self.write_errors),
        );
        metric(
            "logpipe_hook_failures_total",
            "counter",
            "--on-rotate commands that failed.",
            &one(self.hook_failures),
        );
        metric(
            "logpipe_active_file_bytes",
            "gauge",
            "Size of the active file.",
            &one(self.active_bytes),
        );
        metric(
            "logpipe_last_rotation_timestamp_seconds",
            "gauge",
            "Unix time of the last rotation in this run (0 before any).",
            &[("", format!("{:.3}", self.last_rotation))],
        );
        metric(
            "logpipe_records_dropped_total",
            "counter",
            "Records not written because they matched --drop.",
            &one(self.records_dropped),
        );
        metric(
            "logpipe_records_routed_total",
            "counter",
            "Records sent to a --route target.",
            &one(self.records_routed),
        );
        metric(
            "logpipe_lines_redacted_total",
            "counter",
            "Lines written with at least one --redact replacement.",
            &one(self.lines_redacted),
        );
        metric(
            "logpipe_start_time_seconds",
            "gauge",
            "Unix time logpipe started.",
            &[("", format!("{:.3}", self.start_time))],
        );
        let version = format!(",version=\"{}\"", escape(env!("CARGO_PKG_VERSION")));
        metric(
            "logpipe_build_info",
            "gauge",
            "Always 1; the version in a label.",
            &[(version.as_str(), "1".into())],
        );
        out
    }
}

/// A label value as the text format wants it: backslash, double quote
/// and newline escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Where and how often the file is written.
#[derive(Debug, Clone)]
pub struct Options {
    pub file: PathBuf,
    pub interval: Duration,
}

/// The writer thread.
#[derive(Debug)]
pub struct Metrics {
    thread: Option<JoinHandle<()>>,
}

/// The `target` label: the active file's path, made absolute (a relative
/// path says little to whoever reads the metrics).
fn label(active: &Path) -> String {
    let path = match std::env::current_dir() {
        Ok(cwd) if active.is_relative() => cwd.join(active),
        _ => active.to_path_buf(),
    };
    path.to_string_lossy().into_owned()
}

/// The metrics file's directory, opened, and the interval.
pub struct Prepared {
    writer: Writer,
    interval: Duration,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("file", &self.writer.file.path())
            .finish()
    }
}

/// The file and what is needed to write it.
struct Writer {
    file: Placed,
    target: String,
    start_time: f64,
    /// A run of failures was reported.
    failing: bool,
}

impl Metrics {
    /// Opens the directory of `options.file` (once, following a symbolic
    /// link there, as for TARGET), before anything else is touched, so
    /// that a bad `--metrics` stops logpipe at once. `active` is the active
    /// file's path, the `target` label. Nothing is written until
    /// [`Metrics::start`].
    pub fn prepare(options: &Options, active: &Path) -> Result<Prepared> {
        let file = Placed::open(&options.file, "--metrics")?;
        let start_time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Ok(Prepared {
            writer: Writer {
                file,
                target: label(active),
                start_time,
                failing: false,
            },
            interval: options.interval,
        })
    }

    /// Starts the writer thread (once the lock is held: a second
    /// instance must not overwrite the first one's file), which writes the
    /// file at once.
    pub fn start(prepared: Prepared) -> Result<Metrics> {
        let Prepared {
            mut writer,
            interval,
        } = prepared;
        let thread = thread::Builder::new()
            .name("logpipe-metrics".into())
            .spawn(move || writer.run(interval))
            .context("unable to start the metrics thread")?;
        Ok(Metrics {
            thread: Some(thread),
        })
    }

    /// Writes the file a last time and ends the thread.
    pub fn finish(mut self) {
        lock(&WAKE).stop = true;
        WOKEN.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Writer {
    fn run(&mut self, interval: Duration) {
        loop {
            self.write();
            let written = Instant::now();
            let deadline = written + interval;
            let mut wake = lock(&WAKE);
            loop {
                if wake.stop {
                    drop(wake);
                    self.write();
                    return;
                }
                // A poke is served at once, but a flood of rotations
                // (a tiny --size) writes the file at most every MIN_GAP.
                let due = if wake.poked {
                    deadline.min(written + MIN_GAP)
                } else {
                    deadline
                };
                let left = due.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    wake.poked = false;
                    break;
                }
                wake = WOKEN
                    .wait_timeout(wake, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }

    /// Writes the file; a failure is said once per run of failures.
    fn write(&mut self) {
        let text = Snapshot::take(self.start_time).render(&self.target);
        match self.replace(text.as_bytes()) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                crate::warning!("unable to write {}: {e}", self.file.path().display());
            }
            Err(_) => {}
        }
    }

    /// The temporary, written whole, then renamed over the final name.
    fn replace(&self, text: &[u8]) -> io::Result<()> {
        self.file.replace(FILE_MODE, text, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        assert_eq!(escape("/var/log/app/current"), "/var/log/app/current");
    }

    #[test]
    fn every_metric_has_help_type_and_the_target_label() {
        let snapshot = Snapshot {
            input_lines: 3,
            rotations: [1, 2, 3, 4],
            paused: true,
            paused_seconds: 1.5,
            start_time: 1_800_000_000.25,
            records_routed: 7,
            ..Snapshot::default()
        };
        let text = snapshot.render("/l/\"q\"\n");
        let target = r#"target="/l/\"q\"\n""#;
        assert!(text.contains(&format!("logpipe_input_lines_total{{{target}}} 3\n")));
        assert!(text.contains(&format!(
            "logpipe_rotations_total{{{target},reason=\"restart\"}} 4\n"
        )));
        assert!(text.contains(&format!("logpipe_paused{{{target}}} 1\n")));
        assert!(text.contains(&format!("logpipe_paused_seconds_total{{{target}}} 1.500\n")));
        assert!(text.contains(&format!(
            "logpipe_start_time_seconds{{{target}}} 1800000000.250\n"
        )));
        let mut names = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                names += 1;
                let name = rest.split(' ').next().unwrap();
                assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            } else if !line.starts_with('#') {
                assert!(line.contains(target), "{line}");
            }
        }
        assert!(text.contains(&format!("logpipe_records_routed_total{{{target}}} 7\n")));
        assert_eq!(names, 23);
    }
}
