//! The main loop: set up the target, then move standard input into it
//! until end of input, rolling by size, by the clock and on request.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, Result};
use jiff::Timestamp;
use memchr::memchr;

use crate::cli;
use crate::clock::Clock;
use crate::config::Config;
use crate::filter::Stage;
use crate::lock;
use crate::metrics::Metrics;
use crate::notify::{Notify, Pausing};
use crate::numbering::Numbering;
use crate::onfull::{Condition, OnFull};
use crate::prune::Pruner;
use crate::reader::{Input, LineReader};
use crate::signals::Signals;
use crate::sink::Sink;
use crate::stamp::Stamper;
use crate::sys::{self, Dir, Kind};
use crate::target::Target;
use crate::tee::Tee;
use crate::wait;
use crate::worker::{Policy, Worker};

/// The pipe size asked for when standard input is a pipe: the largest an
/// unprivileged process may set by default (`/proc/sys/fs/pipe-max-size`).
/// A fuller pipe lets a producer run ahead while logpipe is busy syncing a
/// segment, and lets each read take more at once.
const PIPE_SIZE: usize = 1 << 20;

/// The longest the loop waits without looking at the clock, so that a step
/// of the wall clock is noticed within this many milliseconds.
const MAX_WAIT_MS: i64 = 1000;

/// Runs logpipe until end of input.
pub fn run(config: Config) -> Result<()> {
    let Config {
        target,
        routes,
        filter,
        dir_mode,
        sink: options,
        on_full,
        prune_keep,
        owner,
        worker: policy,
        clock,
        stamper,
        tee,
        shutdown_timeout,
        metrics,
        ready_fd,
    } = config;
    let metrics = metrics
        .map(|options| Metrics::prepare(&options, &target.active()))
        .transpose()?;
    if let Some(owner) = owner {
        crate::owner::set(owner);
    }
    let stage = filter
        .is_used()
        .then(|| Stage::new(&filter, 1 + routes.len()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let signals = Rc::new(Signals::install()?);
    let notify = Rc::new(Notify::from_env(ready_fd));
    let pausing = || -> Rc<Pausing> {
        Rc::new(Pausing {
            signals: signals.clone(),
            notify: notify.clone(),
        })
    };
    // The main target first, then the routed ones: each its own directory,
    // lock, numbering and sink, opened before anything is read.
    let mut opened = Vec::new();
    for target in std::iter::once(target).chain(routes) {
        // With --on-full prune, one pruner per target, for its sink and
        // its worker, sharing one lock.
        let pruner = (on_full == cli::OnFull::Prune)
            .then(|| Pruner::new(target.name.clone(), prune_keep, policy.compress.is_some()));
        let on_full = match (on_full, &pruner) {
            (cli::OnFull::Drop, _) => OnFull::drop_input(),
            (_, Some(pruner)) => OnFull::prune(pausing(), pruner.clone()),
            (_, None) => OnFull::block(pausing()),
        };
        let (sink, dir) = open(target.clone(), dir_mode, &options, on_full, clock.now())?;
        opened.push((sink, target, dir, pruner));
    }
    let metrics = metrics.map(Metrics::start).transpose()?;
    notify.ready()?;
    let mut sinks = Vec::new();
    let mut workers = Vec::new();
    for (sink, target, dir, prune) in opened {
        sinks.push(sink);
        let policy = Policy {
            prune: prune.clone(),
            ..policy.clone()
        };
        let worker = Worker::start(target, dir, policy)?;
        if let Some(pruner) = prune {
            pruner.connect(worker.queue());
        }
        workers.push(worker);
    }
    let mut out = Output {
        count: metrics.is_some(),
        clock,
        sinks,
        stage,
        stamper,
        tee: Tee::new(tee),
        signals,
    };
    let stdin = stdin_file()?;
    enlarge_pipe(&stdin);

    let pumped = pump(&stdin, &mut out, &workers, &notify);
    notify.stopping();
    close_input(stdin);
    if let Err(e) = pumped {
        // What was written stays; make it durable before saying why not all.
        out.sinks.iter_mut().for_each(Sink::sync_now);
        if let Some(metrics) = metrics {
            metrics.finish();
        }
        return Err(e);
    }
    let now = out.clock.now();
    let mut closed = Ok(());
    let deadline = std::time::Instant::now() + shutdown_timeout;
    for (mut sink, worker) in out.sinks.into_iter().zip(workers) {
        hand_over(&mut sink, &worker);
        let result = sink.close(now);
        // What is left undone, the worker says itself.
        let _ = worker.shutdown(deadline.saturating_duration_since(std::time::Instant::now()));
        closed = closed.and(result);
    }
    if let Some(metrics) = metrics {
        metrics.finish();
    }
    closed
}

/// Opens one target for writing: its directory (made if missing, opened
/// once: a symlinked directory is resolved now, and every file below is
/// named relative to it), its lock, its numbering and its sink.
fn open(
    target: Target,
    dir_mode: u32,
    options: &crate::sink::Options,
    on_full: OnFull,
    now: Timestamp,
) -> Result<(Sink, Arc<Dir>)> {
    let existed = target.dir.is_dir();
    target.create_dir(dir_mode)?;
    let dir = Arc::new(
        Dir::open(&target.dir)
            .with_context(|| format!("unable to open directory {}", target.dir.display()))?,
    );
    refuse_special_active(&dir, &target)?;
    say_other_owners(&dir, &target, existed);
    let lock = lock::acquire(&dir, &target, options.mode)?;
    let numbering = Numbering::load(dir.clone(), &target, options.mode)?;
    let sink = Sink::open(
        dir.clone(),
        target,
        lock,
        numbering,
        options.clone(),
        on_full,
        now,
    )?;
    Ok((sink, dir))
}

/// Refuses, before anything is created or read, an active file that
/// exists and is not a regular file: a device, FIFO, socket, directory or
/// symbolic link under the active name is never written, renamed or
/// replaced.
fn refuse_special_active(dir: &Dir, target: &Target) -> Result<()> {
    let path = target.active();
    let meta = dir
        .stat(&target.name)
        .with_context(|| format!("unable to open {}", path.display()))?;
    match meta {
        Some(meta) if meta.kind != Kind::Regular => Err(sys::refused(meta.kind))
            .with_context(|| format!("unable to open {}", path.display())),
        _ => Ok(()),
    }
}

/// With `--owner`, says once which of the files logpipe would have
/// created exist already with another owner or group (they are left as
/// they are): the directory, if it was there, the active file, the lock
/// and the state file.
fn say_other_owners(dir: &Dir, target: &Target, dir_existed: bool) {
    let Some(owner) = crate::owner::get() else {
        return;
    };
    let differs = |meta: &sys::Meta| {
        owner.uid.is_some_and(|uid| uid != meta.uid) || owner.gid.is_some_and(|gid| gid != meta.gid)
    };
    let mut others = Vec::new();
    if dir_existed
        && let Ok(meta) = dir.meta()
        && differs(&meta)
    {
        others.push(format!(
            "{} ({}:{})",
            target.dir.display(),
            meta.uid,
            meta.gid
        ));
    }
    for name in [target.name.clone(), target.lock_name(), target.state_name()] {
        if let Ok(Some(meta)) = dir.stat(&name)
            && differs(&meta)
        {
            let path = target.path_of(&name);
            others.push(format!("{} ({}:{})", path.display(), meta.uid, meta.gid));
        }
    }
    if !others.is_empty() {
        crate::info!(
            "--owner {owner} applies to what logpipe creates; these exist with another owner and are left as they are: {}",
            others.join(", ")
        );
    }
}

/// Where input goes: the clock that dates it, the line stage if any, the
/// targets (the main one first), and the optional stamper and copy to
/// standard output.
struct Output {
    clock: Clock,
    sinks: Vec<Sink>,
    stage: Option<Stage>,
    stamper: Option<Stamper>,
    tee: Tee,
    signals: Rc<Signals>,
    /// `--metrics`: count input lines.
    count: bool,
}

impl Output {
    /// Writes one run of input to the active file (through the line stage
    /// and the stamper when they are on), then copies it to standard output
    /// with `--tee` (what the line stage kept, redacted, when it is on).
    fn write(&mut self, run: &[u8]) -> Result<()> {
        if self.count {
            crate::metrics::input(run);
        }
        let Output {
            clock,
            sinks,
            stage,
            stamper,
            tee,
            signals,
            ..
        } = self;
        match stage {
            None => {
                write_run(clock, sinks, stamper, run, |sinks, stamper, now, bytes| {
                    write_lines(now, &mut sinks[0], stamper, bytes)
                })?;
                tee.copy(run, signals);
            }
            Some(stage) => {
                write_run(clock, sinks, stamper, run, |sinks, stamper, now, bytes| {
                    let before = stage.counts();
                    let result = stage.process(bytes, |target, kept| {
                        tee.copy(kept, signals);
                        write_lines(now, &mut sinks[target], stamper, kept)
                    });
                    crate::metrics::line_stage(before, stage.counts());
                    result
                })?;
            }
        }
        Ok(())
    }

    /// What the sinks do, the worst first: paused, dropping, writing.
    fn condition(&self) -> Condition {
        let conditions = self.sinks.iter().map(Sink::condition);
        conditions
            .clone()
            .find(|c| *c == Condition::Paused)
            .or_else(|| conditions.clone().find(|c| *c == Condition::Dropping))
            .unwrap_or(Condition::Writing)
    }
}

/// The main loop, until end of input or a stop signal.
///
/// One loop, one deadline, after s6-log: each pass reads the clock once,
/// acts on signals and due rotations, then waits for input, a signal or
/// the next boundary, whichever comes first.
fn pump(stdin: &File, out: &mut Output, workers: &[Worker], notify: &Notify) -> Result<()> {
    let mut reader = LineReader::new(stdin);
    loop {
        workers.iter().for_each(Worker::check);
        notify.tick(out.condition());
        let now = out.clock.now();
        let roll = out.signals.take_roll();
        let reopen = out.signals.take_reopen();
        for (sink, worker) in out.sinks.iter_mut().zip(workers) {
            if roll {
                sink.ask_roll();
            }
            if reopen {
                sink.ask_reopen();
            }
            sink.tick(now)?;
            hand_over(sink, worker);
        }
        if out.signals.stop_asked() {
            return write_available(stdin, &mut reader, out);
        }
        let wake_at = out.sinks.iter().filter_map(Sink::wake_at).min();
        let timeout = notify.cap_wait(wait_ms(now, wake_at));
        // After end of input, only what the reader holds is left: no wait
        // (a terminal is not readable again after its ^D was read).
        let ready = if reader.at_end() {
            wait::Ready {
                input: true,
                signal: false,
            }
        } else {
            wait::wait(stdin.as_fd(), &out.signals, timeout)
                .context("unable to wait for standard input")?
        };
        if ready.signal {
            out.signals.drain();
        }
        if !ready.input {
            continue;
        }
        match reader.read().context("unable to read standard input")? {
            Input::Run(run) => out.write(run)?,
            Input::Partial => {}
            Input::End => return Ok(()),
        }
    }
}

/// Hands the segments just finished to the worker; if the sink made the
/// directory again, the worker gets the new one first.
fn hand_over(sink: &mut Sink, worker: &Worker) {
    if let Some(dir) = sink.take_moved() {
        worker.moved(dir);
    }
    sink.take_finished().for_each(|id| worker.finished(id));
}

/// On SIGTERM or SIGINT: writes the input that was already waiting in the
/// pipe when the signal came, then what is buffered, finishing an
/// unfinished last line as at end of input. Reads nothing that arrives
/// later, so a producer that keeps writing cannot hold logpipe up.
fn write_available(stdin: &File, reader: &mut LineReader<&File>, out: &mut Output) -> Result<()> {
    let until = reader.bytes_read() + wait::available(stdin.as_fd());
    while reader.bytes_read() < until && wait::available(stdin.as_fd()) > 0 {
        match reader.read().context("unable to read standard input")? {
            Input::Run(run) => out.write(run)?,
            Input::Partial => {}
            Input::End => return Ok(()),
        }
    }
    reader.end();
    while let Input::Run(run) = reader.read().context("unable to read standard input")? {
        out.write(run)?;
    }
    Ok(())
}

/// Closes standard input as soon as logpipe stops reading, before the
/// last sync and the wait for compression, which may take seconds. A
/// producer still writing then gets EPIPE, or, under a supervisor that
/// holds the pipe (runsv, s6-svscan), its lines wait there for the next
/// logpipe, instead of having writes accepted into a pipe that nobody
/// will read.
fn close_input(stdin: File) {
    drop(stdin);
    // Descriptor 0 itself: /dev/null takes its place, so that no file
    // opened later gets descriptor 0.
    match File::open("/dev/null").and_then(|null| Ok(rustix::stdio::dup2_stdin(&null)?)) {
        Ok(()) => {}
        Err(e) => crate::warning!("unable to close standard input: {e}"),
    }
}

/// Milliseconds until `wake_at` (rounded up, so the loop does not wake just
/// before it), at most [`MAX_WAIT_MS`].
fn wait_ms(now: Timestamp, wake_at: Option<Timestamp>) -> i32 {
    let ms = wake_at.map_or(MAX_WAIT_MS, |at| {
        let nanos = at.as_nanosecond() - now.as_nanosecond();
        i64::try_from(nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) > 0))
            .unwrap_or(MAX_WAIT_MS)
    });
    ms.clamp(0, MAX_WAIT_MS) as i32
}

/// Writes one run of input through `deliver` (to the main target, or
/// through the line stage).
///
/// With a manual clock, the control lines that move it are taken out of
/// the run, and due rotations happen at each move, so that tests can place
/// a boundary between any two lines.
fn write_run(
    clock: &mut Clock,
    sinks: &mut [Sink],
    stamper: &mut Option<Stamper>,
    run: &[u8],
    mut deliver: impl FnMut(&mut [Sink], &mut Option<Stamper>, Timestamp, &[u8]) -> Result<()>,
) -> Result<()> {
    if !clock.is_manual() {
        return deliver(sinks, stamper, clock.now(), run);
    }
    let (mut pos, mut unwritten) = (0, 0);
    while pos < run.len() {
        let end = memchr(b'\n', &run[pos..]).map_or(run.len(), |i| pos + i + 1);
        let line = &run[pos..end];
        // The lines before a control line were read before the clock moved.
        let before = clock.now();
        if clock.control(line.strip_suffix(b"\n").unwrap_or(line)) {
            if pos > unwritten {
                deliver(sinks, stamper, before, &run[unwritten..pos])?;
            }
            for sink in sinks.iter_mut() {
                sink.tick(clock.now())?;
            }
            unwritten = end;
        }
        pos = end;
    }
    if run.len() > unwritten {
        deliver(sinks, stamper, clock.now(), &run[unwritten..])?;
    }
    Ok(())
}

fn write_lines(
    now: Timestamp,
    sink: &mut Sink,
    stamper: &mut Option<Stamper>,
    bytes: &[u8],
) -> Result<()> {
    match stamper {
        _ if bytes.is_empty() => Ok(()),
        Some(stamper) => stamper.stamp(now, bytes, |out| sink.write(now, out)),
        None => sink.write(now, bytes),
    }
}

/// Standard input as a plain `File`, read without std's 8 KiB `BufReader`
/// in between (the reader has its own, larger buffer).
fn stdin_file() -> Result<File> {
    let fd = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("unable to use standard input")?;
    Ok(File::from(fd))
}

/// Asks for a larger pipe buffer when standard input is a pipe. Refusal
/// (not a pipe, or over the system's limit) is fine: the default works,
/// just with more, smaller reads.
fn enlarge_pipe(stdin: &File) {
    use std::os::unix::fs::FileTypeExt;
    let is_pipe = stdin.metadata().is_ok_and(|m| m.file_type().is_fifo());
    if is_pipe && rustix::pipe::fcntl_getpipe_size(stdin).is_ok_and(|size| size < PIPE_SIZE) {
        let _ = rustix::pipe::fcntl_setpipe_size(stdin, PIPE_SIZE);
    }
}
