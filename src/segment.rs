//! The active file and its rotation into finished segments.
//!
//! Invariants kept here:
//! - a segment is cut only at a line boundary, and a segment that would
//!   pass the size limit holds exactly one line;
//! - no segment is ever empty;
//! - a segment's final name never replaces an existing file: the active
//!   file is renamed with `renameat2(RENAME_NOREPLACE)`, which fails
//!   rather than replace (the worker fsyncs it afterwards). On a
//!   filesystem without it, the active file is hard-linked to the name (the
//!   link fails rather than replace) and then unlinked, as multilog and
//!   s6-log do; a crash between the two leaves one inode under both names,
//!   which [`Segment::open`] recognises and resolves by dropping the active
//!   name.
//!
//! Time is a parameter (`now`) of every call, never read here, so that the
//! date arithmetic can be driven by tests.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::civil::Date;
use memchr::{memchr, memrchr};

use crate::cli::Fsync;
use crate::naming::{self, SegmentId};
use crate::numbering::Numbering;
use crate::schedule::Schedule;
use crate::target::Target;

/// What a segment does when the disk refuses a write: wait, then try
/// again. The main loop's signals provide it, so that SIGTERM cuts a wait
/// short.
pub trait Pause: std::fmt::Debug {
    /// Waits for `wait`; returns false if logpipe is to stop instead.
    fn pause(&self, wait: Duration) -> bool;
}

/// The first and the longest wait between attempts after a failed write.
const PAUSE_FIRST: Duration = Duration::from_secs(1);
const PAUSE_MAX: Duration = Duration::from_secs(30);

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
    /// While writes fail, drop input (counted, and said in a marker line
    /// once writes work again) instead of pausing (`--on-full drop`).
    pub drop_when_full: bool,
    /// Permission bits for the directory, if it has to be made again.
    pub dir_mode: u32,
}

/// The active file being written, with what rotation needs to know of it.
#[derive(Debug)]
pub struct Segment {
    target: Target,
    active: PathBuf,
    numbering: Numbering,
    file: File,
    /// Bytes in the active file.
    written: u64,
    /// The active file ends inside a line (its last byte is not `\n`), so it
    /// may not be rolled until that line is finished.
    mid_line: bool,
    /// The date of the active file's first byte; `None` while it is empty.
    opened: Option<Date>,
    /// The end of the time window of the active file's first byte, when it
    /// is to be rolled; `None` while it is empty or without `--every`.
    deadline: Option<Timestamp>,
    /// A roll was asked for (a signal) and waits for the end of a line.
    roll_asked: bool,
    /// The instant of the last [`Segment::tick`], to notice a clock step
    /// backwards.
    last_now: Timestamp,
    /// Segments finished since the last [`Segment::take_finished`].
    finished: Vec<SegmentId>,
    /// A roll whose rename succeeded but whose new active file could not be
    /// opened yet: the next attempt resumes there.
    renamed_away: bool,
    /// Reopening the active file was asked for (SIGHUP).
    reopen_asked: bool,
    /// Waits between attempts after a failed write; without it, a failed
    /// write is an error at once.
    pauser: Option<Rc<dyn Pause>>,
    /// Since when, and how long the next wait is, while writes fail.
    pausing: Option<(Instant, Duration)>,
    /// The oldest write not yet fsynced, for `--fsync DURATION`.
    unsynced_since: Option<Instant>,
    /// Lines and bytes dropped since writes began to fail
    /// (`--on-full drop`).
    dropped: Option<(u64, u64)>,
    /// With `--on-full drop`, a step of [`Segment::tick`] failed, was
    /// reported, and is tried again at this instant.
    retry_at: Option<Instant>,
    /// Asked to stop while writes were failing: one last attempt was made.
    stopping: bool,
    /// A removed active file being put back: the new file and its length
    /// before the copy began.
    relinking: Option<(File, u64)>,
    /// When [`Segment::tick`] last checked that the active file is still
    /// linked in its directory.
    last_link_check: Instant,
    options: Options,
}

impl Segment {
    /// Opens the active file of `target` for appending, creating it if
    /// missing.
    ///
    /// An existing active file is continued: its date and time window are
    /// those of the moment it was last written (so the first
    /// [`Segment::tick`] rolls it if that window has ended), and a last line
    /// left unfinished by a crash is closed with a newline so that it never
    /// fuses with the next line. An active file that is also a finished
    /// segment (a crash between link and unlink) is left to the segment and
    /// a fresh active file started.
    pub fn open(
        target: Target,
        numbering: Numbering,
        options: Options,
        now: Timestamp,
    ) -> Result<Segment> {
        let active = target.active();
        let mode = options.mode;
        let file = match open_active(&active, mode)? {
            file if is_also_a_segment(&target, &file)? => {
                crate::info!(
                    "removing {}: an interrupted rotation left it as a second name of a finished segment",
                    active.display()
                );
                fs::remove_file(&active)
                    .with_context(|| format!("unable to remove {}", active.display()))?;
                open_active(&active, mode)?
            }
            file => file,
        };
        let mut segment = Segment {
            target,
            active,
            numbering,
            file,
            written: 0,
            mid_line: false,
            opened: None,
            deadline: None,
            roll_asked: false,
            last_now: now,
            finished: Vec::new(),
            renamed_away: false,
            reopen_asked: false,
            pauser: None,
            pausing: None,
            unsynced_since: None,
            dropped: None,
            retry_at: None,
            stopping: false,
            relinking: None,
            last_link_check: Instant::now(),
            options,
        };
        segment.adopt(now)?;
        Ok(segment)
    }

    /// Takes the file just opened at the active path as it is: its size,
    /// its date and time window (those of the moment it was last written),
    /// and a last line left unfinished by a crash closed with a newline so
    /// that it never fuses with the next line.
    fn adopt(&mut self, now: Timestamp) -> Result<()> {
        let meta = self
            .file
            .metadata()
            .with_context(|| format!("unable to stat {}", self.active.display()))?;
        self.written = meta.len();
        self.mid_line = false;
        self.opened = None;
        self.deadline = None;
        if meta.len() > 0 {
            let last_written = meta
                .modified()
                .ok()
                .and_then(|t| Timestamp::try_from(t).ok())
                .unwrap_or(now);
            self.opened = Some(self.options.schedule.date(last_written));
            self.deadline = self.options.schedule.next_boundary(last_written);
            let mut last = [0u8];
            self.file
                .read_exact_at(&mut last, meta.len() - 1)
                .with_context(|| format!("unable to read {}", self.active.display()))?;
            if last[0] != b'\n' {
                self.append(now, &mut &b"\n"[..])?;
            }
        }
        Ok(())
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
    /// If it fails (after the pauses, if there is a pauser), the error says
    /// how many bytes of `data` were not written.
    ///
    /// With `--on-full drop`, a failure is not an error: what could not be
    /// written is counted as dropped, and once writes work again a marker
    /// line saying how much comes first.
    pub fn write(&mut self, now: Timestamp, data: &[u8]) -> Result<()> {
        let mut rest = data;
        if self.options.drop_when_full {
            let writable = self.dropped.is_none() || self.write_marker(now).is_ok();
            if writable
                && let Err(e) = self.write_rest(now, &mut rest)
                && self.dropped.is_none()
            {
                crate::warning!("dropping input: {e:#}");
            }
            if !rest.is_empty() {
                let (lines, bytes) = self.dropped.get_or_insert((0, 0));
                *lines += memchr::memchr_iter(b'\n', rest).count() as u64;
                *bytes += rest.len() as u64;
            }
            return Ok(());
        }
        let result = self.write_rest(now, &mut rest);
        result.map_err(|e| e.context(format!("stopped with {} bytes not written", rest.len())))
    }

    /// Writes the line that says what was dropped, closing first a line
    /// that a failed write left unfinished.
    fn write_marker(&mut self, now: Timestamp) -> Result<()> {
        let (lines, bytes) = self.dropped.unwrap_or_default();
        let what = format!(
            "dropped {lines} lines ({bytes} bytes) while {} was not writable",
            self.active.display()
        );
        let marker = format!("{}logpipe: {what}\n", if self.mid_line { "\n" } else { "" });
        self.write_rest(now, &mut marker.as_bytes())?;
        crate::info!("writing again; {what}");
        self.dropped = None;
        Ok(())
    }

    /// [`Segment::write`], leaving in `data` what is not written yet.
    fn write_rest(&mut self, now: Timestamp, data: &mut &[u8]) -> Result<()> {
        if self.renamed_away {
            // A roll that failed half-way: finish it before anything else,
            // so that nothing is written to the segment it renamed.
            self.roll(now)?;
        }
        while !data.is_empty() {
            let room = self.options.size.saturating_sub(self.written);
            match next_step(data, room, self.mid_line, self.written == 0) {
                Step::Roll => self.roll(now)?,
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
    /// asked for, once it is not inside a line.
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
                .unsynced_since
                .is_some_and(|since| since.elapsed() >= every)
        {
            self.sync_now();
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Ok(());
        }
        match self.tick_steps(now) {
            // With `--on-full drop` nothing waits for the disk: say it once,
            // and try again a second later.
            Err(e) if self.options.drop_when_full => {
                if self.retry_at.is_none() {
                    crate::warning!("{e:#}");
                }
                self.retry_at = Some(Instant::now() + PAUSE_FIRST);
                Ok(())
            }
            result => {
                self.retry_at = None;
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
            self.retrying(now, |seg, _| seg.try_relink())?;
        }
        if self.mid_line {
            return Ok(());
        }
        if self.reopen_asked {
            self.retrying(now, Segment::reopen)?;
        }
        if self.roll_asked || self.deadline.is_some_and(|d| now >= d) {
            self.roll(now)?;
        }
        Ok(())
    }

    /// Asks for a roll at the next [`Segment::tick`] that is not inside a
    /// line. Does nothing to an empty active file.
    pub fn ask_roll(&mut self) {
        self.roll_asked = self.written > 0;
    }

    /// When the main loop must call [`Segment::tick`] even if no input
    /// arrives. `None` while inside a line (only input can end it) and
    /// while a failed step waits for its retry (the loop looks at least once
    /// a second anyway).
    pub fn wake_at(&self) -> Option<Timestamp> {
        if self.mid_line || self.retry_at.is_some() {
            None
        } else if self.roll_asked || self.reopen_asked {
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

    /// Ends input: finishes a last line without a newline and syncs the
    /// active file. It stays in place, to be continued by the next run.
    pub fn close(mut self, now: Timestamp) -> Result<()> {
        // An active file removed from under logpipe takes what it holds
        // with it at exit unless it is put back first.
        self.retrying(now, |seg, _| seg.try_relink())?;
        if let Some((lines, bytes)) = self.dropped
            && self.write_marker(now).is_err()
        {
            // No room for the marker: the count must not be lost silently.
            crate::warning!(
                "dropped {lines} lines ({bytes} bytes) while {} was not writable, and could not say so in it",
                self.active.display()
            );
        }
        if self.mid_line {
            let mut newline = &b"\n"[..];
            if let Err(e) = self.append(now, &mut newline) {
                // Only possible with --on-full drop: the next start closes
                // the line.
                crate::warning!("{e:#}");
            }
        }
        self.sync_now();
        Ok(())
    }

    /// Appends bytes to the active file with one `write(2)` (more only if
    /// the kernel writes less than asked). A failed write is retried after
    /// a pause, from exactly where it stopped; see [`Segment::set_pauser`].
    fn append(&mut self, now: Timestamp, bytes: &mut &[u8]) -> Result<()> {
        if self.written == 0 {
            self.opened = Some(self.options.schedule.date(now));
            self.deadline = self.options.schedule.next_boundary(now);
        }
        while !bytes.is_empty() {
            match self.file.write(bytes) {
                Ok(n) if n > 0 => {
                    self.written += n as u64;
                    self.mid_line = bytes[n - 1] != b'\n';
                    *bytes = &bytes[n..];
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => {
                    let e = result
                        .err()
                        .unwrap_or_else(|| io::ErrorKind::WriteZero.into());
                    let e = anyhow::Error::new(e)
                        .context(format!("unable to write {}", self.active.display()));
                    self.pause_after(e)?;
                }
            }
        }
        self.resumed();
        if self.options.fsync == Fsync::Always {
            self.sync_now();
        }
        Ok(())
    }

    /// Fsyncs what was written to the active file and not synced yet.
    ///
    /// A failed fsync is reported, not retried: after one, Linux may have
    /// dropped the unwritten pages and the next fsync would succeed
    /// without them, so a retry would only hide the loss.
    pub fn sync_now(&mut self) {
        if self.unsynced_since.take().is_some()
            && let Err(e) = self.file.sync_data()
        {
            crate::warning!(
                "unable to sync {}: {e}; what was written since the last sync may not be on disk",
                self.active.display()
            );
        }
    }

    /// Sets what to do when writes fail: pause and retry (the disk may
    /// fill up and be freed again). Back-pressure then reaches the
    /// producer through the pipe, since nothing is read meanwhile.
    pub fn set_pauser(&mut self, pauser: Rc<dyn Pause>) {
        self.pauser = Some(pauser);
    }

    /// Runs `step` until it succeeds, with [`Segment::pause_after`] between
    /// failed attempts; a step resumes after the parts that succeeded.
    fn retrying(
        &mut self,
        now: Timestamp,
        step: fn(&mut Segment, Timestamp) -> Result<()>,
    ) -> Result<()> {
        loop {
            match step(self, now) {
                Ok(()) => {
                    self.resumed();
                    return Ok(());
                }
                Err(e) => self.pause_after(e)?,
            }
        }
    }

    /// After a failed operation: says so once, waits (1 s, doubling up to
    /// 30 s), and returns Ok to try again. Returns the error if there is no
    /// pauser (`--on-full drop`), or if logpipe is to stop and the one last
    /// attempt allowed after that has failed too.
    fn pause_after(&mut self, e: anyhow::Error) -> Result<()> {
        let Some(pauser) = self.pauser.clone() else {
            return Err(e);
        };
        if self.stopping {
            return Err(e);
        }
        let (since, wait) = *self.pausing.get_or_insert_with(|| {
            crate::warning!("pausing: {e:#}");
            (Instant::now(), PAUSE_FIRST)
        });
        if !pauser.pause(wait) {
            // Asked to stop: one last attempt, then give up.
            self.stopping = true;
            return Ok(());
        }
        self.pausing = Some((since, (wait * 2).min(PAUSE_MAX)));
        Ok(())
    }

    /// After a success: says that writing resumed, if it had paused.
    fn resumed(&mut self) {
        if let Some((since, _)) = self.pausing.take() {
            crate::info!(
                "resumed writing {} after {}s",
                self.active.display(),
                since.elapsed().as_secs()
            );
        }
    }

    /// Finishes the active file as a segment named after the day it was
    /// opened, and starts a new, empty active file. Does nothing to an
    /// empty file: segments are never empty.
    fn roll(&mut self, now: Timestamp) -> Result<()> {
        if self.written == 0 && !self.renamed_away {
            return Ok(());
        }
        self.retrying(now, Segment::try_roll)
    }

    /// One attempt at [`Segment::roll`]; a failed attempt can be repeated,
    /// and resumes after the steps that succeeded.
    fn try_roll(&mut self, now: Timestamp) -> Result<()> {
        if !self.renamed_away {
            // A removed directory is made again first, with the file.
            self.try_relink()?;
            if !self.path_is_ours()? {
                // A tool moved the active file away (a SIGHUP not handled
                // yet): what it took is its own; go on at the path.
                self.reopen(now)?;
                self.roll_asked = false;
                return Ok(());
            }
            debug_assert!(
                !self.mid_line,
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
                let id = self.numbering.take(date)?;
                let finished = self.target.segment(id);
                match rename_noreplace(&self.active, &finished) {
                    Ok(()) => {
                        self.finished.push(id);
                        break;
                    }
                    // Somebody else's file has that name: leave it, take the next.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!(
                                "unable to rename {} to {}",
                                self.active.display(),
                                finished.display()
                            )
                        });
                    }
                }
            }
            self.renamed_away = true;
            // What was not synced belongs to the finished segment now.
            self.unsynced_since = None;
        }
        self.file = open_active(&self.active, self.options.mode)?;
        self.renamed_away = false;
        self.written = 0;
        self.mid_line = false;
        self.opened = None;
        self.deadline = None;
        self.roll_asked = false;
        Ok(())
    }

    /// Whether the active path still names the file logpipe writes.
    fn path_is_ours(&self) -> Result<bool> {
        let ours = self
            .file
            .metadata()
            .with_context(|| format!("unable to stat {}", self.active.display()))?;
        Ok(fs::metadata(&self.active)
            .is_ok_and(|there| there.dev() == ours.dev() && there.ino() == ours.ino()))
    }

    /// If the active file was removed from under logpipe (with its
    /// directory, say), makes the directory again if needed and puts a new
    /// active file at the path with everything the removed one held, so
    /// nothing written is lost. A failed attempt resumes where it stopped:
    /// the copy goes on from the length the new file already has.
    fn try_relink(&mut self) -> Result<()> {
        if self.relinking.is_none() {
            let ours = self
                .file
                .metadata()
                .with_context(|| format!("unable to stat {}", self.active.display()))?;
            if ours.nlink() > 0 {
                return Ok(());
            }
            self.target.create_dir(self.options.dir_mode)?;
            let new = open_active(&self.active, self.options.mode)?;
            let base = new
                .metadata()
                .with_context(|| format!("unable to stat {}", self.active.display()))?
                .len();
            self.relinking = Some((new, base));
        }
        let Some((new, base)) = &self.relinking else {
            return Ok(());
        };
        let context = || {
            format!(
                "unable to write {} again after it was removed",
                self.active.display()
            )
        };
        let mut at = new.metadata().with_context(context)?.len() - base;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.file.read_at(&mut buf, at).with_context(context)?;
            if n == 0 {
                break;
            }
            (&*new).write_all(&buf[..n]).with_context(context)?;
            at += n as u64;
        }
        crate::info!(
            "{} was removed while in use; made it again with the {at} bytes it held",
            self.active.display()
        );
        let (new, base) = self.relinking.take().expect("checked just above");
        self.file = new;
        self.written = base + at;
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Asks to reopen the active file by its path at the next
    /// [`Segment::tick`] that is not inside a line (SIGHUP).
    pub fn ask_reopen(&mut self) {
        self.reopen_asked = true;
    }

    /// Reopens the active file by its path: if an external tool moved it
    /// away, what follows goes to a new active file there; if it is still
    /// there, writing simply goes on.
    fn reopen(&mut self, now: Timestamp) -> Result<()> {
        if self.path_is_ours()? {
            self.reopen_asked = false;
            return Ok(());
        }
        // The file we hold is no longer the active path: finish with it.
        self.sync_now();
        self.file = open_active(&self.active, self.options.mode)?;
        self.renamed_away = false;
        self.reopen_asked = false;
        self.adopt(now)
    }
}

/// What to do next with `data`, the bytes still to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write this many bytes from the start of `data` to the active file.
    Write(usize),
    /// Roll the active file first.
    Roll,
}

/// The size rule, as a pure function: given `data` (whole lines, or the
/// piece of a line too long for the read buffer), the `room` left before
/// the limit, whether the active file ends inside a line (`mid_line`) and
/// whether it is `empty`, what comes next. Repeating it until `data` is
/// written cuts only after a newline, never leaves a segment empty, and
/// lets a segment pass the limit only when it holds a single line.
pub fn next_step(data: &[u8], room: u64, mid_line: bool, empty: bool) -> Step {
    if data.len() as u64 <= room && data.ends_with(b"\n") {
        return Step::Write(data.len());
    }
    // Whole lines that fit (`room` < `data.len()` unless `data` ends inside
    // a line, so the slice bound fits in a usize).
    let fits = memrchr(b'\n', &data[..data.len().min(room as usize)]).map_or(0, |i| i + 1);
    if mid_line || (fits == 0 && empty) {
        // The line under way is the only line of this segment (see
        // `Segment::write`), and an empty file takes the next line whatever
        // its length: either way the line finishes here.
        Step::Write(memchr(b'\n', data).map_or(data.len(), |i| i + 1))
    } else if fits > 0 {
        Step::Write(fits)
    } else {
        // The next line does not fit, or its length is not known yet.
        Step::Roll
    }
}

/// Opens the active file for appending, creating it with exactly `mode`
/// (whatever the umask) when it does not exist.
fn open_active(path: &Path, mode: u32) -> Result<File> {
    let context = || format!("unable to open {}", path.display());
    match OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(mode))
                .with_context(context)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .with_context(context),
        Err(e) => Err(e).with_context(context),
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than
/// replacing an existing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c_from = CString::new(from.as_os_str().as_bytes())?;
    let c_to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both pointers are NUL-terminated strings that outlive the call;
    // renameat2 only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // The kernel or the filesystem lacks RENAME_NOREPLACE.
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => link_then_unlink(from, to),
        _ => Err(err),
    }
}

/// The portable way to rename without replacing: a hard link, which fails
/// if `to` exists, then the unlink of `from`.
fn link_then_unlink(from: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

/// Whether the open active file is also linked as one of the target's
/// finished segments, which only an interrupted rotation leaves behind.
fn is_also_a_segment(target: &Target, file: &File) -> Result<bool> {
    let meta = file
        .metadata()
        .with_context(|| format!("unable to stat {}", target.active().display()))?;
    if meta.nlink() < 2 {
        return Ok(false);
    }
    let entries = fs::read_dir(&target.dir)
        .with_context(|| format!("unable to list {}", target.dir.display()))?;
    for entry in entries.flatten() {
        if !matches!(
            naming::parse(target.name.as_bytes(), entry.file_name().as_bytes()),
            Some((_, b""))
        ) {
            continue;
        }
        if let Ok(other) = entry.metadata()
            && other.dev() == meta.dev()
            && other.ino() == meta.ino()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::parse_every;
    use jiff::tz::TimeZone;

    struct Fixture {
        dir: tempfile::TempDir,
        target: Target,
        now: Timestamp,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let target = Target::resolve(&dir.path().join("current"), None).unwrap();
            let now: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
            Fixture { dir, target, now }
        }

        fn open(&self, size: u64) -> Segment {
            self.open_with(size, "never", 0o640)
        }

        fn open_with(&self, size: u64, every: &str, mode: u32) -> Segment {
            let numbering = Numbering::load(&self.target, 0o640).unwrap();
            let schedule = Schedule::new(parse_every(every).unwrap(), TimeZone::UTC);
            let options = Options {
                size,
                mode,
                schedule,
                fsync: Fsync::Rotate,
                drop_when_full: false,
                dir_mode: 0o750,
            };
            Segment::open(self.target.clone(), numbering, options, self.now).unwrap()
        }

        /// Finished segments in order, then the active file.
        fn files(&self) -> Vec<(String, Vec<u8>)> {
            let mut segments: Vec<_> = fs::read_dir(self.dir.path())
                .unwrap()
                .filter_map(|e| {
                    let name = e.unwrap().file_name();
                    let (id, _) = naming::parse(b"current", name.as_bytes())?;
                    Some((id, name.to_string_lossy().into_owned()))
                })
                .collect();
            segments.sort();
            let mut files: Vec<_> = segments
                .into_iter()
                .map(|(_, name)| (name.clone(), fs::read(self.dir.path().join(&name)).unwrap()))
                .collect();
            files.push(("current".into(), fs::read(self.target.active()).unwrap()));
            files
        }

        fn contents(&self) -> Vec<String> {
            self.files()
                .into_iter()
                .map(|(_, bytes)| String::from_utf8(bytes).unwrap())
                .collect()
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_boundary_rolls_a_non_empty_file_only() {
        let fx = Fixture::new();
        let mut seg = fx.open_with(100, "1h", 0o640);
        assert_eq!(seg.wake_at(), None, "an empty file has no deadline");
        seg.write(at("2026-11-21T12:10:00Z"), b"a\n").unwrap();
        assert_eq!(seg.wake_at(), Some(at("2026-11-21T13:00:00Z")));
        seg.tick(at("2026-11-21T12:59:59Z")).unwrap();
        assert_eq!(fx.contents(), ["a\n"]);
        seg.tick(at("2026-11-21T13:00:00Z")).unwrap();
        assert_eq!(fx.contents(), ["a\n", ""]);
        // Idle hours with an empty file: nothing more.
        seg.tick(at("2026-11-21T16:00:00Z")).unwrap();
        assert_eq!(fx.contents(), ["a\n", ""]);
    }

    #[test]
    fn a_segment_is_named_after_the_day_it_was_opened() {
        let fx = Fixture::new();
        let mut seg = fx.open_with(100, "1d", 0o640);
        seg.write(at("2026-11-21T23:59:58Z"), b"late\n").unwrap();
        seg.tick(at("2026-11-22T00:00:00Z")).unwrap();
        seg.write(at("2026-11-22T00:00:01Z"), b"early\n").unwrap();
        seg.tick(at("2026-11-23T00:00:00Z")).unwrap();
        let names: Vec<_> = fx.files().into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            ["current.2026-11-21.1", "current.2026-11-22.1", "current"]
        );
        assert_eq!(fx.contents(), ["late\n", "early\n", ""]);
    }

    #[test]
    fn clock_steps_roll_once_at_most() {
        let fx = Fixture::new();
        let mut seg = fx.open_with(100, "1h", 0o640);
        seg.write(at("2026-11-21T12:30:00Z"), b"a\n").unwrap();
        // Three days forward: one roll, and the empty file waits for input.
        seg.tick(at("2026-11-24T12:30:00Z")).unwrap();
        seg.tick(at("2026-11-24T12:30:01Z")).unwrap();
        assert_eq!(fx.contents(), ["a\n", ""]);
        seg.write(at("2026-11-24T12:31:00Z"), b"b\n").unwrap();
        // Two days back: the window ends at the next boundary of the new
        // time (10:00), not in two days.
        seg.tick(at("2026-11-22T09:15:00Z")).unwrap();
        assert_eq!(seg.wake_at(), Some(at("2026-11-22T10:00:00Z")));
        seg.tick(at("2026-11-22T10:00:00Z")).unwrap();
        assert_eq!(fx.contents(), ["a\n", "b\n", ""]);
        let names: Vec<_> = fx.files().into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            ["current.2026-11-21.1", "current.2026-11-24.1", "current"]
        );
    }

    #[test]
    fn an_asked_roll_waits_for_the_end_of_a_line() {
        let fx = Fixture::new();
        let mut seg = fx.open_with(100, "never", 0o640);
        seg.ask_roll();
        seg.tick(fx.now).unwrap();
        assert_eq!(fx.contents(), [""], "an empty file is not rolled");
        seg.write(fx.now, b"a\npiece of a long ").unwrap();
        seg.ask_roll();
        assert_eq!(seg.wake_at(), None, "inside a line only input can help");
        seg.tick(fx.now).unwrap();
        seg.write(fx.now, b"line\n").unwrap();
        assert_eq!(seg.wake_at(), Some(fx.now));
        seg.tick(fx.now).unwrap();
        assert_eq!(fx.contents(), ["a\n", "piece of a long line\n", ""]);
    }

    #[test]
    fn an_existing_file_from_an_earlier_window_is_due_at_once() {
        let fx = Fixture::new();
        fs::write(fx.target.active(), b"old\n").unwrap();
        let last_written: std::time::SystemTime = at("2026-11-21T10:30:00Z").into();
        File::options()
            .write(true)
            .open(fx.target.active())
            .unwrap()
            .set_modified(last_written)
            .unwrap();
        let mut seg = fx.open_with(100, "1h", 0o640);
        assert_eq!(seg.wake_at(), Some(at("2026-11-21T11:00:00Z")));
        seg.tick(fx.now).unwrap();
        let names: Vec<_> = fx.files().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["current.2026-11-21.1", "current"]);
        assert_eq!(fx.contents(), ["old\n", ""]);
    }

    #[test]
    fn fitting_writes_stay_in_one_file() {
        let fx = Fixture::new();
        let mut seg = fx.open(10);
        seg.write(fx.now, b"abc\n").unwrap();
        seg.write(fx.now, b"defgh\n").unwrap();
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["abc\ndefgh\n"]);
    }

    #[test]
    fn cuts_at_the_last_line_that_fits() {
        let fx = Fixture::new();
        let mut seg = fx.open(10);
        seg.write(fx.now, b"aaa\nbbb\ncc\ndd\neeeee\nf\n").unwrap();
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["aaa\nbbb\n", "cc\ndd\n", "eeeee\nf\n"]);
        let names: Vec<_> = fx.files().into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            ["current.2026-11-21.1", "current.2026-11-21.2", "current"]
        );
    }

    #[test]
    fn long_line_makes_one_oversized_segment() {
        let fx = Fixture::new();
        let mut seg = fx.open(4);
        seg.write(fx.now, b"ab\n0123456789\ncd\n").unwrap();
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["ab\n", "0123456789\n", "cd\n"]);
    }

    #[test]
    fn line_streamed_in_pieces_is_not_cut() {
        let fx = Fixture::new();
        let mut seg = fx.open(4);
        for piece in [&b"ab\n01"[..], b"2345", b"6789", b"\ncd\n"] {
            seg.write(fx.now, piece).unwrap();
        }
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["ab\n", "0123456789\n", "cd\n"]);
    }

    #[test]
    fn a_line_too_long_to_hold_starts_a_new_segment() {
        let fx = Fixture::new();
        let mut seg = fx.open(100);
        for piece in [&b"ab\n"[..], b"0123", b"456\n", b"cd\n"] {
            seg.write(fx.now, piece).unwrap();
        }
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["ab\n", "0123456\ncd\n"]);
    }

    #[test]
    fn empty_lines_and_exact_fit() {
        let fx = Fixture::new();
        let mut seg = fx.open(3);
        seg.write(fx.now, b"\n\n\n\nab\n").unwrap();
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["\n\n\n", "\n", "ab\n"]);
    }

    #[test]
    fn close_finishes_a_line_under_way() {
        let fx = Fixture::new();
        let mut seg = fx.open(100);
        seg.write(fx.now, b"a\npiece of a long line").unwrap();
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["a\n", "piece of a long line\n"]);
    }

    #[test]
    fn reopen_appends_and_closes_a_torn_line() {
        let fx = Fixture::new();
        fs::write(fx.target.active(), b"torn").unwrap();
        let mut seg = fx.open(100);
        seg.write(fx.now, b"next\n").unwrap();
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["torn\nnext\n"]);
    }

    #[test]
    fn never_replaces_an_existing_name() {
        let fx = Fixture::new();
        let mut seg = fx.open(4);
        // Planted after the numbering was loaded: only the link can see it.
        fs::write(fx.dir.path().join("current.2026-11-21.2"), b"planted").unwrap();
        seg.write(fx.now, b"aaa\nbbb\nccc\n").unwrap();
        seg.close(fx.now).unwrap();
        let files = fx.files();
        let got: Vec<_> = files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("current.2026-11-21.1", &b"aaa\n"[..]),
                ("current.2026-11-21.2", b"planted"),
                ("current.2026-11-21.3", b"bbb\n"),
                ("current", b"ccc\n"),
            ]
        );
    }

    #[test]
    fn interrupted_rotation_is_completed_at_open() {
        let fx = Fixture::new();
        fs::write(fx.target.active(), b"done\n").unwrap();
        fs::hard_link(
            fx.target.active(),
            fx.dir.path().join("current.2026-11-20.4"),
        )
        .unwrap();
        let mut seg = fx.open(100);
        seg.write(fx.now, b"new\n").unwrap();
        seg.close(fx.now).unwrap();
        assert_eq!(fx.contents(), ["done\n", "new\n"]);
    }

    #[test]
    fn link_fallback_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::write(&from, "from").unwrap();
        fs::write(&to, "to").unwrap();
        let err = link_then_unlink(&from, &to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let err = rename_noreplace(&from, &to).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&to).unwrap(), "to");
        fs::remove_file(&to).unwrap();
        link_then_unlink(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read_to_string(&to).unwrap(), "from");
    }

    #[test]
    fn new_files_get_the_mode_exactly() {
        let fx = Fixture::new();
        let mut seg = fx.open_with(2, "never", 0o620);
        seg.write(fx.now, b"a\nb\n").unwrap();
        seg.close(fx.now).unwrap();
        for name in ["current", "current.2026-11-21.1"] {
            let mode = fs::metadata(fx.dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777;
            assert_eq!(mode, 0o620, "{name}");
        }
    }
}
