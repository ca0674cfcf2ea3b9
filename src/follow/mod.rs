//! `--read` and `--follow`: a target's lines back out, in the order they
//! were written, each once.
//!
//! The finished segments come first, in (date, N) order, each from its
//! plain or its compressed file (`source.rs`), then the active file. `--read`
//! stops there; `--follow` goes on reading the active file as it grows.
//!
//! What makes following exact where `tail -F` guesses: the active file is
//! read through a descriptor that stays open across its rename, so when
//! the writer rolls it, the reader finishes it whatever its new name (or
//! after it was compressed and its plain name removed), and knows which
//! segment it became: the first one after the highest segment known when
//! it was opened. Segments rolled meanwhile (any number, at any rate) are
//! read by name, in order, before the new active file. Nothing here writes
//! to the target or takes its lock: readers run beside the writer, or on a
//! copy of its directory.
//!
//! The order is the segments' names. A clock stepped back past midnight
//! makes the writer name a segment before ones already written; a reader
//! that has read past that name does not go back for it.

mod cursor;
mod output;
pub mod position;
mod source;
mod watch;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use jiff::civil::Date;

use crate::inventory::{self, Form};
use crate::naming::SegmentId;
use crate::signals::Signals;
use crate::sys::{self, Access, Dir};
use crate::target::Target;
use cursor::Cursor;
use output::{Output, Short};
use position::{Dates, Position};
use source::{Opened, Source};
use watch::Watch;

/// The size of reads from the files, and of writes to standard output.
const CHUNK: usize = 256 << 10;

/// The most read from the active file between two looks at the cursor and
/// the signals, when the writer keeps it growing.
const ACTIVE_BURST: u64 = 16 << 20;

/// What `--read` and `--follow` need.
#[derive(Debug)]
pub struct Options {
    pub target: Target,
    /// `--follow`: keep reading as the target grows.
    pub follow: bool,
    pub dates: Dates,
    /// `--cursor`.
    pub cursor: Option<PathBuf>,
    /// Today, in the zone the writer names segments in: the date the
    /// active file counts as for `--since` and `--until`.
    pub today: Date,
}

/// Prints the target's lines to standard output; with `--follow`, until
/// SIGTERM or SIGINT, or until standard output is closed.
pub fn run(options: Options) -> Result<()> {
    let target = &options.target;
    let dir = Dir::open(&target.dir)
        .with_context(|| format!("unable to open directory {}", target.dir.display()))?;
    let signals = Signals::install()?;
    let mut cursor = options.cursor.as_deref().map(Cursor::open).transpose()?;
    let mut follower = Follower {
        dir,
        active: target.name.clone(),
        active_path: target.active(),
        dates: options.dates,
        read_active: options.follow || options.dates.contains(options.today),
        follow: options.follow,
        // A partial last line waits for its newline when a later run (or
        // a later look) goes on from here; a one-off read prints it.
        hold_partial: options.follow || cursor.is_some(),
        queue: VecDeque::new(),
        known: None,
        current: None,
        position: None,
        out: Output::new(),
        buf: vec![0; CHUNK],
    };
    follower.start(cursor.as_ref().and_then(Cursor::saved))?;
    let watch = options.follow.then(|| Watch::new(&target.dir));
    let outcome = loop {
        match follower.step(&signals) {
            Ok(Step::Moved) => {}
            Ok(Step::Idle) => match &watch {
                Some(watch) => watch.wait(&signals),
                None => break Ok(()),
            },
            Ok(Step::Stop) => break Ok(()),
            Err(e) => break Err(e),
        }
        if signals.stop_asked() {
            break Ok(());
        }
        if let (Some(cursor), Some(position)) = (&mut cursor, follower.position) {
            cursor.save_in_time(position)?;
        }
    };
    if let (Some(cursor), Some(position)) = (&mut cursor, follower.position) {
        cursor.save(position)?;
    }
    outcome
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Read something, or found more to read.
    Moved,
    /// Nothing new to read now.
    Idle,
    /// Stopping was asked for, or standard output is closed.
    Stop,
}

/// The active file being read.
#[derive(Debug)]
struct Current {
    file: File,
    dev: u64,
    ino: u64,
    /// How much of it was written to standard output.
    offset: u64,
    /// The highest segment known when it was opened: the active file
    /// becomes the first segment after it.
    after: Option<SegmentId>,
}

#[derive(Debug)]
struct Follower {
    dir: Dir,
    active: OsString,
    active_path: PathBuf,
    dates: Dates,
    /// Whether the active file is read at all (`--until` before today
    /// leaves it out).
    read_active: bool,
    follow: bool,
    hold_partial: bool,
    /// Finished segments to read before the active file, with the offset
    /// to start at.
    queue: VecDeque<(SegmentId, u64)>,
    /// The highest segment known: read, queued or left out by the dates.
    known: Option<SegmentId>,
    current: Option<Current>,
    /// Where the last whole line written ends; what a cursor saves.
    position: Option<Position>,
    out: Output,
    buf: Vec<u8>,
}

impl Follower {
    /// Queues what comes first: everything, or what follows `from`.
    fn start(&mut self, from: Option<Position>) -> Result<()> {
        self.position = from;
        let ids = self.segments_after(None)?;
        let after = |id: SegmentId| ids.iter().copied().filter(move |&i| i > id);
        match from {
            None => ids.iter().for_each(|&id| self.push(id, 0)),
            Some(Position::After(id)) => {
                self.note(id);
                after(id).for_each(|id| self.push(id, 0));
            }
            Some(Position::Segment { id, offset }) => {
                self.note(id);
                if ids.contains(&id) {
                    self.push(id, offset);
                } else {
                    crate::warning!(
                        "the cursor's segment {} is gone (deleted by retention, or moved away); going on at the oldest line after it",
                        self.path_of(id).display()
                    );
                }
                after(id).for_each(|id| self.push(id, 0));
            }
            Some(Position::Active {
                after: known,
                dev,
                ino,
                offset,
            }) => {
                if let Some(id) = known {
                    self.note(id);
                }
                let later: Vec<SegmentId> =
                    ids.iter().copied().filter(|&i| Some(i) > known).collect();
                if let Some(&first) = later.first() {
                    // Rolled since: the first segment after it, plain with
                    // the same inode, or compressed already.
                    let plain = self.dir.stat(&self.segment_name(first))?;
                    if plain.is_none_or(|m| m.dev == dev && m.ino == ino) {
                        self.push(first, offset);
                        later[1..].iter().for_each(|&id| self.push(id, 0));
                    } else {
                        self.gone_active();
                        later.iter().for_each(|&id| self.push(id, 0));
                    }
                } else {
                    let file = self.dir.open_file(&self.active, Access::Read);
                    match file {
                        Ok(file)
                            if sys::meta(&file).is_ok_and(|m| m.dev == dev && m.ino == ino) =>
                        {
                            self.current = Some(Current {
                                file,
                                dev,
                                ino,
                                offset,
                                after: known,
                            });
                        }
                        _ => self.gone_active(),
                    }
                }
            }
        }
        Ok(())
    }

    fn gone_active(&self) {
        crate::warning!(
            "the cursor's active file was removed, not rolled; going on at the oldest line after it"
        );
    }

    /// Reads what there is to read next: a queued segment, or the active
    /// file (opened first if need be).
    fn step(&mut self, signals: &Signals) -> Result<Step> {
        if let Some((id, offset)) = self.queue.pop_front() {
            return self.read_segment(id, offset, signals);
        }
        if self.current.is_none() {
            if !self.read_active {
                return Ok(Step::Idle);
            }
            return self.open_active();
        }
        let (read, short) = self.drain(signals, self.hold_partial)?;
        if short.is_some() {
            return Ok(Step::Stop);
        }
        if read > 0 {
            return Ok(Step::Moved);
        }
        if !self.follow || !self.rolled()? {
            return Ok(Step::Idle);
        }
        // The writer is done with it: what is left is its last lines, and
        // a last line without a newline is all there will ever be of it.
        loop {
            let (read, short) = self.drain(signals, false)?;
            if short.is_some() {
                return Ok(Step::Stop);
            }
            if read == 0 {
                break;
            }
        }
        self.finish_current()?;
        Ok(Step::Moved)
    }

    /// Opens the active file, unless segments it does not know of were
    /// rolled meanwhile: those are queued, and the active file is opened
    /// again after them. An active file that is not there yet is waited
    /// for.
    fn open_active(&mut self) -> Result<Step> {
        let file = match self.dir.open_file(&self.active, Access::Read) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Step::Idle),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("unable to read {}", self.active_path.display()));
            }
        };
        let meta = sys::meta(&file)
            .with_context(|| format!("unable to read {}", self.active_path.display()))?;
        let later = self.segments_after(self.known)?;
        if !later.is_empty() {
            later.into_iter().for_each(|id| self.push(id, 0));
            return Ok(Step::Moved);
        }
        self.current = Some(Current {
            file,
            dev: meta.dev,
            ino: meta.ino,
            offset: 0,
            after: self.known,
        });
        Ok(Step::Moved)
    }

    /// Whether the active file's name now holds another file, or none.
    fn rolled(&self) -> Result<bool> {
        let Some(current) = &self.current else {
            return Ok(false);
        };
        let now = self
            .dir
            .stat(&self.active)
            .with_context(|| format!("unable to read {}", self.active_path.display()))?;
        Ok(now.is_none_or(|m| m.dev != current.dev || m.ino != current.ino))
    }

    /// The active file was read to its end after it was rolled: it is the
    /// first segment after the one known when it was opened (unless that
    /// segment's plain file is another file: then it was removed, not
    /// rolled). The segments after it are queued.
    fn finish_current(&mut self) -> Result<()> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        let later = self.segments_after(current.after)?;
        let Some(&first) = later.first() else {
            // Removed or moved away rather than rolled; nothing follows it.
            return Ok(());
        };
        let plain = self.dir.stat(&self.segment_name(first))?;
        let rest = if plain.is_none_or(|m| m.dev == current.dev && m.ino == current.ino) {
            self.note(first);
            self.position = Some(Position::After(first));
            &later[1..]
        } else {
            &later[..]
        };
        rest.iter().for_each(|&id| self.push(id, 0));
        Ok(())
    }

    /// Writes the segment `id` from `offset` on to standard output.
    fn read_segment(&mut self, id: SegmentId, mut offset: u64, signals: &Signals) -> Result<Step> {
        let (mut source, path) = match Source::open(&self.dir, &self.active, id) {
            Opened::Source(source, path) => (source, path),
            Opened::Missing => {
                crate::warning!(
                    "{} was removed before it was read; going on with the next segment",
                    self.path_of(id).display()
                );
                self.position = Some(Position::After(id));
                return Ok(Step::Moved);
            }
            Opened::Refused => {
                self.position = Some(Position::After(id));
                return Ok(Step::Moved);
            }
        };
        if offset > 0
            && let Err(e) = source.skip(offset)
        {
            crate::warning!(
                "unable to read {}: {e}; going on with the next segment",
                path.display()
            );
            self.position = Some(Position::After(id));
            return Ok(Step::Moved);
        }
        loop {
            let n = match source.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    crate::warning!(
                        "unable to read {} after {offset} bytes: {e}; going on with the next segment",
                        path.display()
                    );
                    break;
                }
            };
            let (taken, short) = self.out.write(&self.buf[..n], signals);
            if let Some(end) = memchr::memrchr(b'\n', &self.buf[..taken]) {
                self.position = Some(Position::Segment {
                    id,
                    offset: offset + end as u64 + 1,
                });
            }
            offset += taken as u64;
            if let Some(short) = short {
                return short_step(short);
            }
        }
        self.position = Some(Position::After(id));
        Ok(Step::Moved)
    }

    /// Writes what the active file holds past what was written already;
    /// with `hold_partial`, only whole lines. Returns how much it wrote,
    /// and why it stopped short if it did.
    fn drain(&mut self, signals: &Signals, hold_partial: bool) -> Result<(u64, Option<Short>)> {
        let Some(current) = &mut self.current else {
            return Ok((0, None));
        };
        let mut total = 0;
        while total < ACTIVE_BURST {
            let n = match current.file.read_at(&mut self.buf, current.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("unable to read {}", self.active_path.display()));
                }
            };
            let whole = match memchr::memrchr(b'\n', &self.buf[..n]) {
                _ if !hold_partial => n,
                Some(end) => end + 1,
                // A line longer than a read goes out in pieces.
                None if n == self.buf.len() => n,
                None => break,
            };
            let (taken, short) = self.out.write(&self.buf[..whole], signals);
            if let Some(end) = memchr::memrchr(b'\n', &self.buf[..taken]) {
                self.position = Some(Position::Active {
                    after: current.after,
                    dev: current.dev,
                    ino: current.ino,
                    offset: current.offset + end as u64 + 1,
                });
            }
            current.offset += taken as u64;
            total += taken as u64;
            match short {
                Some(Short::Failed(e)) => {
                    return Err(anyhow!(e).context("unable to write to standard output"));
                }
                Some(short) => return Ok((total, Some(short))),
                None if whole < n => break,
                None => {}
            }
        }
        Ok((total, None))
    }

    /// The target's segments after `after` (all of them for `None`), in
    /// order, each once whatever forms it has.
    fn segments_after(&self, after: Option<SegmentId>) -> Result<Vec<SegmentId>> {
        let entries = inventory::scan(&self.dir, &self.active)
            .with_context(|| format!("unable to list {}", self.dir.path().display()))?;
        let mut ids: Vec<SegmentId> = entries
            .into_iter()
            .filter(|e| e.form.is_data() && Some(e.id) > after)
            .map(|e| e.id)
            .collect();
        ids.dedup();
        Ok(ids)
    }

    /// Queues segment `id`, unless the dates leave it out.
    fn push(&mut self, id: SegmentId, offset: u64) {
        self.note(id);
        if self.dates.contains(id.date) {
            self.queue.push_back((id, offset));
        }
    }

    fn note(&mut self, id: SegmentId) {
        self.known = self.known.max(Some(id));
    }

    fn segment_name(&self, id: SegmentId) -> OsString {
        inventory::name(&self.active, id, Form::Plain)
    }

    fn path_of(&self, id: SegmentId) -> PathBuf {
        self.dir.display(&self.segment_name(id))
    }
}

/// The step that ends on a short write.
fn short_step(short: Short) -> Result<Step> {
    match short {
        Short::Failed(e) => Err(anyhow!(e).context("unable to write to standard output")),
        Short::Stopped | Short::Closed => Ok(Step::Stop),
    }
}
