//! The sink: input goes into the active file, which is rolled into
//! finished segments by the size rule, the clock and on request.
//!
//! Invariants kept here:
//! - a segment is cut only at a line boundary, and a segment that would
//!   pass the size limit holds exactly one line ([`crate::rules`]);
//! - no segment is ever empty;
//! - a segment's final name never replaces an existing file: the active
//!   file is renamed without replacing ([`crate::sys::Dir::rename_noreplace`]),
//!   and a name that is taken is stepped around by taking the next number.
//!
//! The wall-clock time is a parameter (`now`) of every call, never read
//! here, so that dates and windows can be driven by tests (the monotonic
//! clock is read for the waits of `--on-full` and `--fsync DURATION`,
//! which are about real elapsed time).
//!
//! The parts: `active` holds the open file; `outside` reacts to what
//! others do to it (removal, a move, SIGHUP); the policy while writes fail
//! is [`crate::onfull::OnFull`].

mod active;
mod outside;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::civil::Date;

use crate::cli::Fsync;
use crate::lock::Lock;
use crate::metrics::Reason;
use crate::naming::SegmentId;
use crate::numbering::Numbering;
use crate::onfull::{Next, OnFull};
use crate::rules::{Step, next_step};
use crate::schedule::Schedule;
use crate::sys::Dir;
use crate::target::Target;

use active::Active;

/// How segments are made.
#[derive(Debug, Clone)]
pub struct Options {
    /// Roll before a write would take the active file past this many bytes.
    pub size: u64,
    /// Permission bits for files created here.
    pub mode: u32,
    /// Wall-clock windows, and the zone of the dates in segment names.
    pub schedule: Schedule,
    /// When to fsync the active file between rotations.
    pub fsync: Fsync,
    /// Permission bits for the directory, if it has to be made again.
    pub dir_mode: u32,
}

/// A rotation under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    /// None asked for; the size rule and the deadline still apply.
    Idle,
    /// Asked for (a signal); waits for the end of a line.
    Asked,
    /// The rename succeeded but the new active file could not be opened
    /// yet: the next attempt resumes there, and nothing is written before.
    RenamedAway,
}

/// The active file being written, with what rotation needs to know of it.
#[derive(Debug)]
pub struct Sink {
    active: Active,
    numbering: Numbering,
    /// The target's lock, taken again when the directory is made again.
    lock: Lock,
    options: Options,
    on_full: OnFull,
    /// The date of the active file's first byte; `None` while it is empty.
    opened: Option<Date>,
    /// The end of the time window of the active file's first byte, when it
    /// is to be rolled; `None` while it is empty or without `--every`.
    deadline: Option<Timestamp>,
    rotation: Rotation,
    /// A number taken for a rename that failed for another reason than a
    /// taken name: the next attempt uses it again, so that retries in an
    /// unwritable directory do not use up numbers.
    unused: Option<SegmentId>,
    /// Reopening the active file was asked for (SIGHUP).
    reopen_asked: bool,
    /// The instant of the last [`Sink::tick`], to notice a clock step
    /// backwards.
    last_now: Timestamp,
    /// Segments finished since the last [`Sink::take_finished`].
    finished: Vec<SegmentId>,
    /// The directory made again since the last [`Sink::take_moved`].
    moved: Option<Arc<Dir>>,
    /// A removed active file being put back: see [`outside`].
    relinking: Option<outside::Relinking>,
    /// When [`Sink::tick`] last checked that the active file is still
    /// linked in its directory.
    last_link_check: Instant,
    /// Why the roll under way happens, for `--metrics`.
    reason: Reason,
    /// The active file left by an earlier run was from an ended window:
    /// its roll is a restart's.
    stale_at_open: bool,
}

impl Sink {
    /// Opens the active file of `target` in `dir` for appending, creating
    /// it if missing.
    ///
    /// An existing active file is continued: its date and time window are
    /// those of the moment it was last written (so the first
    /// [`Sink::tick`] rolls it if that window has ended), and a last line
    /// left unfinished by a crash is closed with a newline so that it never
    /// fuses with the next line.
    pub fn open(
        dir: Arc<Dir>,
        target: Target,
        lock: Lock,
        numbering: Numbering,
        options: Options,
        on_full: OnFull,
        now: Timestamp,
    ) -> Result<Sink> {
        let (active, last_written) = Active::open(dir, target, options.mode)?;
        let mut sink = Sink {
            active,
            numbering,
            lock,
            options,
            on_full,
            opened: None,
            deadline: None,
            rotation: Rotation::Idle,
            unused: None,
            reopen_asked: false,
            last_now: now,
            finished: Vec::new(),
            moved: None,
            relinking: None,
            last_link_check: Instant::now(),
            reason: Reason::Size,
            stale_at_open: false,
        };
        sink.adopt(now, last_written)?;
        sink.stale_at_open = sink.deadline.is_some_and(|d| now >= d);
        Ok(sink)
    }

    /// Takes the file now at the active name as it is: its date and time
    /// window are those of the moment it was last written, and a last line
    /// left unfinished is closed with a newline.
    fn adopt(&mut self, now: Timestamp, last_written: Option<SystemTime>) -> Result<()> {
        self.opened = None;
        self.deadline = None;
        if let Some(last_written) = last_written {
            let last_written = Timestamp::try_from(last_written).unwrap_or(now);
            self.opened = Some(self.options.schedule.date(last_written));
            self.deadline = self.options.schedule.next_boundary(last_written);
            if self.active.mid_line() {
                self.append(now, &mut &b"\n"[..])?;
            }
        }
        Ok(())
    }

    /// The active file's path, for messages.
    pub fn path(&self) -> std::path::PathBuf {
        self.active.path()
    }

    /// What the sink is doing now.
    pub fn condition(&self) -> crate::onfull::Condition {
        self.on_full.condition()
    }

    /// Writes `data`, rolling the active file at line boundaries so that it
    /// never passes the size limit, unless it holds a single line longer than
    /// the limit.
    ///
    /// `data` ends in a newline, except for a piece of a line too long for
    /// the read buffer, whose length is not known yet: such a line starts a
    /// new segment, so that it can never push other lines past the limit.
    ///
    /// The common case, whole lines that fit, is one `write(2)`; the cut is
    /// searched for only when the limit falls inside `data`.
    ///
    /// If it fails (after the pauses of `--on-full block`), the error says
    /// how many bytes of `data` were not written. With `--on-full drop`, a
    /// failure is not an error: what could not be written is counted as
    /// dropped, and once writes work again a marker line saying how much
    /// comes first. An error no wait can cure stops logpipe either way.
    pub fn write(&mut self, now: Timestamp, data: &[u8]) -> Result<()> {
        let mut rest = data;
        if self.on_full.is_drop() {
            let writable = self.on_full.dropped().is_none() || self.write_marker(now).is_ok();
            if writable && let Err(e) = self.write_rest(now, &mut rest) {
                if crate::onfull::is_permanent(&e) {
                    return Err(not_written(e, rest));
                }
                if self.on_full.dropped().is_none() {
                    crate::warning!("dropping input: {e:#}");
                }
            }
            if !rest.is_empty() {
                self.on_full.count_dropped(rest);
            }
            return Ok(());
        }
        let result = self.write_rest(now, &mut rest);
        result.map_err(|e| not_written(e, rest))
    }

    /// Writes the line that says what was dropped, closing first a line
    /// that a failed write left unfinished.
    fn write_marker(&mut self, now: Timestamp) -> Result<()> {
        let (lines, bytes) = self.on_full.dropped().unwrap_or_default();
        let what = format!(
            "dropped {lines} lines ({bytes} bytes) while {} was not writable",
            self.path().display()
        );
        let newline = if self.active.mid_line() { "\n" } else { "" };
        let marker = format!("{newline}logpipe: {what}\n");
        self.write_rest(now, &mut marker.as_bytes())?;
        crate::info!("writing again; {what}");
        self.on_full.marker_written();
        Ok(())
    }

    /// [`Sink::write`], leaving in `data` what is not written yet.
    fn write_rest(&mut self, now: Timestamp, data: &mut &[u8]) -> Result<()> {
        if self.rotation == Rotation::RenamedAway {
            // A roll that failed half-way: finish it before anything else,
            // so that nothing is written to the segment it renamed.
            self.roll(now)?;
        }
        while !data.is_empty() {
            let written = self.active.written();
            let room = self.options.size.saturating_sub(written);
            match next_step(data, room, self.active.mid_line(), written == 0) {
                Step::Roll => {
                    self.reason = Reason::Size;
                    self.roll(now)?
                }
                Step::Write(take) => {
                    let mut piece = &data[..take];
                    let appended = self.append(now, &mut piece);
                    *data = &data[take - piece.len()..];
                    appended?;
                }
            }
        }
        Ok(())
    }

    /// Rolls the active file if its time window has ended or a roll was
    /// asked for, once it is not inside a line; puts back an active file
    /// removed from under logpipe; syncs by `--fsync DURATION`.
    ///
    /// A clock step forwards causes one roll at most: the next window
    /// starts with the next first byte. After a step backwards the window
    /// ends no later than the next boundary of the new time, so the file is
    /// not held open for as long as the clock went back.
    pub fn tick(&mut self, now: Timestamp) -> Result<()> {
        if now < self.last_now
            && let (Some(deadline), Some(next)) =
                (self.deadline, self.options.schedule.next_boundary(now))
        {
            self.deadline = Some(deadline.min(next));
        }
        self.last_now = now;
        if let Fsync::Every(every) = self.options.fsync
            && self
                .active
                .unsynced_since()
                .is_some_and(|since| since.elapsed() >= every)
        {
            self.active.sync();
        }
        if self.on_full.waiting(Instant::now()) {
            return Ok(());
        }
        match self.tick_steps(now) {
            // With `--on-full drop` nothing waits for the disk: say it once,
            // and try again a second later.
            Err(e) if self.on_full.is_drop() && !crate::onfull::is_permanent(&e) => {
                if self.on_full.tick_failed() {
                    crate::warning!("{e:#}");
                }
                Ok(())
            }
            result => {
                self.on_full.tick_worked();
                result
            }
        }
    }

    /// What a tick does, in order: put back an active file removed from
    /// under logpipe (checked once a second), then, out of a line, reopen
    /// and roll as asked or due.
    fn tick_steps(&mut self, now: Timestamp) -> Result<()> {
        if self.last_link_check.elapsed() >= Duration::from_secs(1) {
            self.last_link_check = Instant::now();
            self.retrying(now, |sink, _| sink.try_relink())?;
        }
        if self.active.mid_line() {
            return Ok(());
        }
        if self.reopen_asked {
            self.retrying(now, Sink::reopen)?;
        }
        if self.rotation != Rotation::Idle || self.deadline.is_some_and(|d| now >= d) {
            self.reason = match self.rotation {
                Rotation::Asked => Reason::Signal,
                Rotation::RenamedAway => self.reason,
                Rotation::Idle if self.stale_at_open => Reason::Restart,
                Rotation::Idle => Reason::Clock,
            };
            self.roll(now)?;
        }
        self.stale_at_open = false;
        Ok(())
    }

    /// Asks for a roll at the next [`Sink::tick`] that is not inside a
    /// line. Does nothing to an empty active file.
    pub fn ask_roll(&mut self) {
        if self.rotation == Rotation::Idle && self.active.written() > 0 {
            self.rotation = Rotation::Asked;
        }
    }

    /// Asks to reopen the active file by its name at the next
    /// [`Sink::tick`] that is not inside a line (SIGHUP).
    pub fn ask_reopen(&mut self) {
        self.reopen_asked = true;
    }

    /// When the main loop must call [`Sink::tick`] even if no input
    /// arrives. `None` while inside a line (only input can end it) and
    /// while a failed step waits for its retry (the loop looks at least once
    /// a second anyway).
    pub fn wake_at(&self) -> Option<Timestamp> {
        if self.active.mid_line() || self.on_full.retry_pending() {
            None
        } else if self.rotation != Rotation::Idle || self.reopen_asked {
            Some(self.last_now)
        } else {
            self.deadline
        }
    }

    /// The segments finished since the last call, oldest first, for the
    /// worker.
    pub fn take_finished(&mut self) -> std::vec::Drain<'_, SegmentId> {
        self.finished.drain(..)
    }

    /// The directory, if it was made again since the last call, for the
    /// worker.
    pub fn take_moved(&mut self) -> Option<Arc<Dir>> {
        self.moved.take()
    }

    /// Ends input: finishes a last line without a newline and syncs the
    /// active file. It stays in place, to be continued by the next run.
    ///
    /// Fails if what was written may not be on disk: the final fsync, or
    /// one during the run, failed.
    pub fn close(mut self, now: Timestamp) -> Result<()> {
        // An active file removed from under logpipe takes what it holds
        // with it at exit unless it is put back first.
        self.retrying(now, |sink, _| sink.try_relink())?;
        if let Some((lines, bytes)) = self.on_full.dropped()
            && self.write_marker(now).is_err()
        {
            // No room for the marker: the count must not be lost silently.
            crate::warning!(
                "dropped {lines} lines ({bytes} bytes) while {} was not writable, and could not say so in it",
                self.path().display()
            );
        }
        if self.active.mid_line()
            && let Err(e) = self.append(now, &mut &b"\n"[..])
        {
            // Only possible with --on-full drop: the next start closes
            // the line before it writes anything.
            crate::warning!(
                "{e:#}; the last line stays unfinished, and the next start ends it with a newline"
            );
        }
        self.active.sync();
        if self.active.sync_failed() {
            anyhow::bail!(
                "unable to sync {}: an fsync failed during the run (said above); what was written may not all be on disk",
                self.path().display()
            );
        }
        Ok(())
    }

    /// Appends bytes to the active file. A failed write is retried as
    /// `--on-full` says, from exactly where it stopped.
    fn append(&mut self, now: Timestamp, bytes: &mut &[u8]) -> Result<()> {
        if self.active.written() == 0 {
            self.opened = Some(self.options.schedule.date(now));
            self.deadline = self.options.schedule.next_boundary(now);
        }
        while let Err(e) = self.active.append(bytes) {
            let path = self.path();
            let e = anyhow::Error::new(e).context(format!("unable to write {}", path.display()));
            self.after_failure(e)?;
        }
        self.on_full.after_success(|| self.active.path());
        if self.options.fsync == Fsync::Always {
            self.active.sync();
        }
        Ok(())
    }

    /// Fsyncs what was written to the active file and not synced yet (on
    /// an error, before logpipe stops).
    pub fn sync_now(&mut self) {
        self.active.sync();
    }

    /// Runs `step` until it succeeds, pausing between failed attempts as
    /// `--on-full` says; a step resumes after the parts that succeeded.
    fn retrying(
        &mut self,
        now: Timestamp,
        step: fn(&mut Sink, Timestamp) -> Result<()>,
    ) -> Result<()> {
        loop {
            match step(self, now) {
                Ok(()) => {
                    self.on_full.after_success(|| self.active.path());
                    return Ok(());
                }
                Err(e) => self.after_failure(e)?,
            }
        }
    }

    /// Ok to try again, or the error to give up with.
    fn after_failure(&mut self, e: anyhow::Error) -> Result<()> {
        // Segments finished in a directory made again wait for the main
        // loop, which tells the worker of the new directory first.
        let mut none = Vec::new();
        let finished = match self.moved {
            None => &mut self.finished,
            Some(_) => &mut none,
        };
        match self.on_full.after_failure(&e, self.active.dir(), finished) {
            Next::Retry => Ok(()),
            Next::Fail => Err(e),
        }
    }

    /// Finishes the active file as a segment named after the day it was
    /// opened, and starts a new, empty active file. Does nothing to an
    /// empty file: segments are never empty.
    fn roll(&mut self, now: Timestamp) -> Result<()> {
        if self.active.written() == 0 && self.rotation != Rotation::RenamedAway {
            self.rotation = Rotation::Idle;
            return Ok(());
        }
        self.retrying(now, Sink::try_roll)
    }

    /// One attempt at [`Sink::roll`]; a failed attempt can be repeated,
    /// and resumes after the steps that succeeded.
    fn try_roll(&mut self, now: Timestamp) -> Result<()> {
        if self.rotation != Rotation::RenamedAway {
            // A removed directory is made again first, with the file.
            self.try_relink()?;
            if !self.active.is_at_its_name()? {
                // A tool moved the active file away (a SIGHUP not handled
                // yet): what it took is its own; go on at the name.
                self.reopen(now)?;
                self.rotation = Rotation::Idle;
                return Ok(());
            }
            debug_assert!(
                !self.active.mid_line(),
                "rolling inside a line; this is a bug in logpipe"
            );
            // No fsync here: the worker syncs the finished segment, the
            // state file and the directory as soon as it is told of the
            // segment, so a rotation costs the reading loop a rename and
            // an open, not three waits for the disk.
            let date = self
                .opened
                .unwrap_or_else(|| self.options.schedule.date(now));
            loop {
                let id = match self.unused.take() {
                    Some(id) if id.date == date => id,
                    _ => self.numbering.take(date)?,
                };
                let name = self.active.target().segment_name(id);
                match self.active.rename_to(&name) {
                    Ok(()) => {
                        self.finished.push(id);
                        crate::metrics::rotated(self.reason, self.active.written());
                        break;
                    }
                    // Somebody else's file has that name: leave it, take
                    // the next.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        self.unused = Some(id);
                        let target = self.active.target();
                        return Err(e).with_context(|| {
                            format!(
                                "unable to rename {} to {}",
                                target.active().display(),
                                target.path_of(&name).display()
                            )
                        });
                    }
                }
            }
            self.rotation = Rotation::RenamedAway;
        }
        let last_written = self.active.start_new()?;
        self.rotation = Rotation::Idle;
        self.adopt(now, last_written)
    }

    /// Reopens the active file by its name: if an external tool moved it
    /// away, what follows goes to a new active file there; if it is still
    /// there, writing simply goes on.
    fn reopen(&mut self, now: Timestamp) -> Result<()> {
        if self.active.is_at_its_name()? {
            self.reopen_asked = false;
            return Ok(());
        }
        // The file we hold is no longer the active file: finish with it.
        self.active.sync();
        let last_written = self.active.start_new()?;
        if self.rotation == Rotation::RenamedAway {
            self.rotation = Rotation::Idle;
        }
        self.reopen_asked = false;
        self.adopt(now, last_written)
    }
}

/// Says how much of the input was not written when a write gave up.
fn not_written(e: anyhow::Error, rest: &[u8]) -> anyhow::Error {
    e.context(format!("stopped with {} bytes not written", rest.len()))
}

#[cfg(test)]
mod tests;
