//! The main loop: set up the target, then move standard input into it
//! until end of input, rolling by size, by the clock and on request.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::rc::Rc;

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use memchr::memchr;

use crate::cli::{Args, Compress, OnFull};
use crate::clock::Clock;
use crate::lock;
use crate::numbering::Numbering;
use crate::reader::{Input, LineReader};
use crate::retention::Retention;
use crate::schedule::Schedule;
use crate::segment::{Options, Segment};
use crate::signals::{self, Signals};
use crate::stamp::Stamper;
use crate::target::Target;
use crate::tee::Tee;
use crate::worker::{Policy, Worker};

/// The pipe size asked for when standard input is a pipe: the largest an
/// unprivileged process may set by default (`/proc/sys/fs/pipe-max-size`).
/// A fuller pipe lets a producer run ahead while logpipe is busy syncing a
/// segment, and lets each read take more at once.
const PIPE_SIZE: i32 = 1 << 20;

/// The longest the loop waits without looking at the clock, so that a step
/// of the wall clock is noticed within this many milliseconds.
const MAX_WAIT_MS: i64 = 1000;

/// Runs logpipe with parsed arguments until end of input.
pub fn run(args: Args, target: Target) -> Result<()> {
    target.create_dir(args.dir_mode)?;
    let _lock = lock::acquire(&target.lock(), args.mode)?;
    let numbering = Numbering::load(&target, args.mode)?;
    let tz = if args.utc {
        TimeZone::UTC
    } else {
        local_zone()
    };
    let clock = args.debug_clock.map_or(Clock::System, Clock::Manual);
    let options = Options {
        size: args.size,
        mode: args.mode,
        schedule: Schedule::new(args.every, tz.clone()),
        fsync: args.fsync,
        drop_when_full: args.on_full == OnFull::Drop,
        dir_mode: args.dir_mode,
    };
    let policy = Policy {
        gzip: (args.compress == Compress::Gzip).then_some(args.level),
        mode: args.mode,
        retention: Retention {
            keep: args.keep,
            max_age: args.max_age,
            max_total: args.max_total,
        },
        on_rotate: args.on_rotate.clone(),
    };
    let mut segment = Segment::open(target.clone(), numbering, options, clock.now())?;
    let worker = Worker::start(target, policy)?;
    let signals = Rc::new(Signals::install()?);
    if args.on_full == OnFull::Block {
        segment.set_pauser(signals.clone());
    }
    let mut out = Output {
        clock,
        segment,
        stamper: args
            .timestamp
            .map(|format| Stamper::new(format, tz, args.utc)),
        tee: Tee::new(args.tee),
        signals,
    };
    let stdin = stdin_file()?;
    enlarge_pipe(&stdin);

    let pumped = pump(&stdin, &mut out, &worker);
    close_input(stdin);
    if let Err(e) = pumped {
        // What was written stays; make it durable before saying why not all.
        out.segment.sync_now();
        return Err(e);
    }
    out.segment
        .take_finished()
        .for_each(|id| worker.finished(id));
    out.segment.close(out.clock.now())?;
    if !worker.shutdown(args.shutdown_timeout) {
        crate::warning!(
            "compression still running after --shutdown-timeout {}s; the next start finishes it",
            args.shutdown_timeout.as_secs()
        );
    }
    Ok(())
}

/// Where input goes: the clock that dates it, the active file, and the
/// optional stamper and copy to standard output.
struct Output {
    clock: Clock,
    segment: Segment,
    stamper: Option<Stamper>,
    tee: Tee,
    signals: Rc<Signals>,
}

impl Output {
    /// Writes one run of input to the active file (through the stamper when
    /// timestamps are on), then copies it to standard output with `--tee`.
    fn write(&mut self, run: &[u8]) -> Result<()> {
        write_run(&mut self.clock, &mut self.segment, &mut self.stamper, run)?;
        self.tee.copy(run, &self.signals);
        Ok(())
    }
}

/// The main loop, until end of input or a stop signal.
///
/// One loop, one deadline, after s6-log: each pass reads the clock once,
/// acts on signals and due rotations, then waits for input, a signal or
/// the next boundary, whichever comes first.
fn pump(stdin: &File, out: &mut Output, worker: &Worker) -> Result<()> {
    let mut reader = LineReader::new(stdin);
    loop {
        let now = out.clock.now();
        if out.signals.take_roll() {
            out.segment.ask_roll();
        }
        if out.signals.take_reopen() {
            out.segment.ask_reopen();
        }
        out.segment.tick(now)?;
        out.segment
            .take_finished()
            .for_each(|id| worker.finished(id));
        if out.signals.stop_asked() {
            return write_available(stdin, &mut reader, out);
        }
        let timeout = wait_ms(now, out.segment.wake_at());
        // After end of input, only what the reader holds is left: no wait
        // (a terminal is not readable again after its ^D was read).
        let ready = if reader.at_end() {
            signals::Ready {
                input: true,
                signal: false,
            }
        } else {
            signals::wait(stdin.as_fd(), &out.signals, timeout)
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

/// On SIGTERM or SIGINT: writes the input that was already waiting in the
/// pipe when the signal came, then what is buffered, finishing an
/// unfinished last line as at end of input. Reads nothing that arrives
/// later, so a producer that keeps writing cannot hold logpipe up.
fn write_available(stdin: &File, reader: &mut LineReader<&File>, out: &mut Output) -> Result<()> {
    let until = reader.bytes_read() + signals::available(stdin.as_fd());
    while reader.bytes_read() < until && signals::available(stdin.as_fd()) > 0 {
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
    use std::os::fd::AsRawFd;
    drop(stdin);
    // Descriptor 0 itself: /dev/null takes its place, so that no file
    // opened later gets descriptor 0.
    match File::open("/dev/null") {
        // SAFETY: dup2 between two descriptors that are open; it touches no
        // memory of ours.
        Ok(null) => unsafe {
            libc::dup2(null.as_raw_fd(), 0);
        },
        Err(e) => crate::warning!("unable to close standard input: {e}"),
    }
}

/// The local time zone (see `zone`).
fn local_zone() -> TimeZone {
    crate::zone::local()
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

/// Writes one run of input, through the stamper when timestamps are on.
///
/// With a manual clock, the control lines that move it are taken out of
/// the run, and due rotations happen at each move, so that tests can place
/// a boundary between any two lines.
fn write_run(
    clock: &mut Clock,
    segment: &mut Segment,
    stamper: &mut Option<Stamper>,
    run: &[u8],
) -> Result<()> {
    if !clock.is_manual() {
        return write_lines(clock.now(), segment, stamper, run);
    }
    let (mut pos, mut unwritten) = (0, 0);
    while pos < run.len() {
        let end = memchr(b'\n', &run[pos..]).map_or(run.len(), |i| pos + i + 1);
        let line = &run[pos..end];
        // The lines before a control line were read before the clock moved.
        let before = clock.now();
        if clock.control(line.strip_suffix(b"\n").unwrap_or(line)) {
            write_lines(before, segment, stamper, &run[unwritten..pos])?;
            segment.tick(clock.now())?;
            unwritten = end;
        }
        pos = end;
    }
    write_lines(clock.now(), segment, stamper, &run[unwritten..])
}

fn write_lines(
    now: Timestamp,
    segment: &mut Segment,
    stamper: &mut Option<Stamper>,
    bytes: &[u8],
) -> Result<()> {
    match stamper {
        _ if bytes.is_empty() => Ok(()),
        Some(stamper) => stamper.stamp(now, bytes, |out| segment.write(now, out)),
        None => segment.write(now, bytes),
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
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    let is_pipe = stdin.metadata().is_ok_and(|m| m.file_type().is_fifo());
    if is_pipe {
        // SAFETY: fcntl on a descriptor we own, with integer arguments only;
        // it cannot touch our memory. Its result is deliberately ignored.
        unsafe {
            if libc::fcntl(stdin.as_raw_fd(), libc::F_GETPIPE_SZ) < PIPE_SIZE {
                libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
            }
        }
    }
}
