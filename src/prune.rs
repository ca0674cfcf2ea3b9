//! `--on-full prune`: making room on a full disk by deleting this target's
//! oldest finished segments, rather than holding the producer back
//! (`block`) or losing the newest lines (`drop`).
//!
//! When a write fails for lack of space (`ENOSPC`, or `EDQUOT` on a disk
//! with quotas), the oldest finished segment goes, by (date, N), in every
//! form it has (plain and `.gz`), and the write is tried again at once;
//! one segment at a time, until the write succeeds or only `--prune-keep`
//! segments are left (then logpipe pauses, as `block` does). Only names
//! that parse as this target's segments are considered, and among them
//! only files logpipe may call its own ([`crate::sys::Meta::is_ours`]):
//! never the active file, a stranger's file, or another target's segments.
//!
//! # Waiting segments are compressed first
//!
//! Segments waiting for compression are finished segments too, but a
//! compression makes room without losing a line (a plain segment becomes
//! a `.gz` several times smaller). So while segments wait for
//! compression, a write that fails for lack of space first waits for the
//! worker to compress them all (a segment the write itself finished, by a
//! roll between two of its pieces, is handed to the worker at once), and
//! is tried again: writing on at once
//! would take the room each compression makes, and leave the worker none
//! for the next, so that only deleting could make room. The write deletes
//! nothing itself unless the worker made no progress for a second (it is
//! stuck, or dead). The worker, when its compressed temporary does not
//! fit, deletes the oldest segment, whatever its form, and tries again:
//! that may be the very segment it was about to compress, if it is the
//! oldest (a disk full of nothing but waiting segments), which is then
//! gone, and the worker goes on with the next.
//!
//! # Who deletes what
//!
//! Both the main thread (its writes) and the worker (its compressions)
//! prune, under one lock ([`Pruner`]'s): the worker holds it while it
//! works on a segment, so the main thread never deletes a segment that is
//! being compressed (whose space would come back only when the worker
//! closes it, and whose `.gz` would then appear). A waiting segment
//! deleted by the main thread is simply gone when the worker reaches it,
//! and skipped.
//!
//! Each side says what it deleted in one line on stderr once its write or
//! compression went through (`pruned 3 segments (768 KiB) to make room:
//! current.2026-11-20.4 … .6`), and counts it in the metrics.

use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::inventory::{self, Entry};
use crate::naming::SegmentId;
use crate::sys::{Dir, Meta};
use crate::worker::Queue;

/// How long a write that failed for lack of space waits for the worker to
/// finish a segment before it deletes one itself.
const PROGRESS_WAIT: Duration = Duration::from_secs(1);

/// What the main thread and the worker share: the target's name, the
/// segments to keep, the lock held while a segment is worked on, and the
/// count of segments the worker is done with.
#[derive(Debug)]
struct Shared {
    name: OsString,
    keep: u64,
    /// Whether finished segments are compressed (plain ones wait).
    compressing: bool,
    segments: Mutex<()>,
    done: Mutex<u64>,
    advanced: Condvar,
    /// The worker's queue, once the worker runs.
    queue: Mutex<Option<Queue>>,
}

/// One side's pruner: the shared part, and what this side deleted and has
/// not said yet. Cloning gives the other side its own.
#[derive(Debug)]
pub struct Pruner {
    shared: Arc<Shared>,
    pending: Vec<(SegmentId, u64)>,
}

impl Clone for Pruner {
    fn clone(&self) -> Pruner {
        Pruner {
            shared: self.shared.clone(),
            pending: Vec::new(),
        }
    }
}

/// The oldest segment, as found: its id, the names of its files that are
/// logpipe's, and their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oldest {
    pub id: SegmentId,
    pub names: Vec<OsString>,
    pub bytes: u64,
}

impl Pruner {
    /// A pruner for the active file `name`, which leaves `keep` segments;
    /// `compressing` if plain segments wait for compression.
    pub fn new(name: OsString, keep: u64, compressing: bool) -> Pruner {
        Pruner {
            shared: Arc::new(Shared {
                name,
                keep,
                compressing,
                segments: Mutex::new(()),
                done: Mutex::new(0),
                advanced: Condvar::new(),
                queue: Mutex::new(None),
            }),
            pending: Vec::new(),
        }
    }

    /// The worker runs: segments can be handed to it from [`Pruner::make_room`].
    pub fn connect(&self, queue: Queue) {
        *self
            .shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(queue);
    }

    /// The worker is done with one more segment (compressed, or gone).
    pub fn advanced(&self) {
        *self
            .shared
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        self.shared.advanced.notify_all();
    }

    /// Holds the segment lock: the worker, while it works on a segment.
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        // A panic on the other side leaves nothing half-done here.
        self.shared
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The main thread, after a write failed for lack of space: while
    /// segments wait for compression, waits for the worker to compress
    /// them (room made without a loss), and asks for the write again; if
    /// none wait, or the worker made no progress for a second,
    /// deletes the oldest segment, unless only `keep` are left. Returns
    /// whether to try the write again.
    ///
    /// `finished` are segments the sink finished in this write (a roll
    /// between two pieces of it): they are handed to the worker now, for
    /// the main loop would only do so once the write is through.
    pub fn make_room(&mut self, dir: &Dir, finished: &mut Vec<SegmentId>) -> io::Result<bool> {
        let shared = self.shared.clone();
        if let Some(queue) = &*shared.queue.lock().unwrap_or_else(PoisonError::into_inner) {
            finished.drain(..).for_each(|id| queue.finished(id));
        }
        let done = || *shared.done.lock().unwrap_or_else(PoisonError::into_inner);
        let mut compressed = false;
        loop {
            // Read before looking, so that progress made meanwhile is seen.
            let seen = done();
            if !shared.compressing || !self.any_waiting(dir)? {
                break;
            }
            let (guard, waited) = shared
                .advanced
                .wait_timeout_while(
                    shared.done.lock().unwrap_or_else(PoisonError::into_inner),
                    PROGRESS_WAIT,
                    |done| *done == seen,
                )
                .unwrap_or_else(PoisonError::into_inner);
            drop(guard);
            if waited.timed_out() {
                // Stuck: deleting is the only way left.
                compressed = false;
                break;
            }
            compressed = true;
        }
        if compressed {
            return Ok(true);
        }
        let _held = shared
            .segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.delete_oldest(dir)
    }

    /// Whether a plain segment of logpipe's waits (for compression).
    fn any_waiting(&self, dir: &Dir) -> io::Result<bool> {
        Ok(inventory::scan(dir, &self.shared.name)?
            .iter()
            .filter(|e| e.form == inventory::Form::Plain)
            .any(|e| {
                dir.stat(&e.name)
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.is_ours())
            }))
    }

    /// The worker, holding the lock ([`Pruner::hold`]), after its
    /// compressed temporary did not fit: deletes the oldest segment
    /// (perhaps the one it compresses), unless only `keep` are left.
    /// Returns whether one went.
    pub fn prune_for_compression(&mut self, dir: &Dir) -> io::Result<bool> {
        self.delete_oldest(dir)
    }

    fn delete_oldest(&mut self, dir: &Dir) -> io::Result<bool> {
        let entries = inventory::scan(dir, &self.shared.name)?;
        let stat = |name: &OsStr| dir.stat(name).ok().flatten();
        let Some(oldest) = oldest(&entries, stat, self.shared.keep) else {
            return Ok(false);
        };
        let mut removed = false;
        for name in &oldest.names {
            removed |= dir.remove_ours(name)?;
        }
        if removed {
            crate::metrics::pruned(oldest.bytes);
            self.pending.push((oldest.id, oldest.bytes));
        }
        // Gone meanwhile (a shipper): there may be room now all the same.
        Ok(true)
    }

    /// Says what was deleted since the last call, in one line, if anything
    /// was: once the write or compression it made room for went through.
    pub fn report(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        crate::info!("{}", describe(&self.shared.name, &self.pending));
        self.pending.clear();
    }
}

/// Whether `e` is a lack of space: `ENOSPC`, or `EDQUOT` (a quota).
pub fn is_no_space(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .is_some_and(|errno| errno == libc::ENOSPC || errno == libc::EDQUOT)
    })
}

/// The oldest of the target's segments, if more than `keep` are there:
/// from one listing sorted by (id, form), as [`inventory::scan`] gives it,
/// counting only data files (plain and `.gz`) that are logpipe's.
pub fn oldest(
    entries: &[Entry],
    mut stat: impl FnMut(&OsStr) -> Option<Meta>,
    keep: u64,
) -> Option<Oldest> {
    let mut count = 0u64;
    let mut first: Option<Oldest> = None;
    for group in entries.chunk_by(|a, b| a.id == b.id) {
        let mut found: Option<Oldest> = None;
        for entry in group.iter().filter(|e| e.form.is_data()) {
            let Some(meta) = stat(&entry.name).filter(Meta::is_ours) else {
                continue;
            };
            let seg = found.get_or_insert_with(|| Oldest {
                id: entry.id,
                names: Vec::new(),
                bytes: 0,
            });
            seg.names.push(entry.name.clone());
            seg.bytes += meta.len;
        }
        if let Some(seg) = found {
            count += 1;
            if count > keep && first.is_some() {
                // More than `keep` already: the first one goes.
                break;
            }
            first.get_or_insert(seg);
        }
    }
    first.filter(|_| count > keep)
}

/// `pruned 3 segments (768 KiB) to make room: current.2026-11-20.4 …
/// .6`: the first segment's name, and the last one's date and number (its
/// number alone if the date is the same).
pub fn describe(active: &OsStr, pruned: &[(SegmentId, u64)]) -> String {
    let bytes: u64 = pruned.iter().map(|(_, b)| b).sum();
    let (Some((first, _)), Some((last, _))) = (pruned.first(), pruned.last()) else {
        return String::new();
    };
    let first_name = inventory::name(active, *first, inventory::Form::Plain);
    let mut what = first_name.to_string_lossy().into_owned();
    if pruned.len() > 1 {
        if last.date == first.date {
            what.push_str(&format!(" … .{}", last.n));
        } else {
            what.push_str(&format!(" … {last}"));
        }
    }
    let count = pruned.len();
    let plural = if count == 1 { "" } else { "s" };
    format!(
        "pruned {count} segment{plural} ({}) to make room: {what}",
        human(bytes)
    )
}

/// A size as people read it: `512 bytes`, `3.5 KiB`, `48 MiB` (one
/// decimal below 10 of a unit, none above; powers of 1024).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Form;
    use crate::sys::Kind;
    use jiff::civil::date;
    use std::time::SystemTime;

    fn id(day: i8, n: u64) -> SegmentId {
        SegmentId {
            date: date(2026, 11, day),
            n,
        }
    }

    fn meta(uid: u32, kind: Kind, len: u64) -> Meta {
        Meta::made_up(kind, uid, len, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn the_oldest_of_ours_goes_first_unless_keep_are_left() {
        let ours = |len| meta(crate::sys::euid(), Kind::Regular, len);
        let mut files = [
            // A stranger's, older than all: never counted or chosen.
            (
                id(19, 1),
                Form::Gzip,
                meta(crate::sys::euid() + 1, Kind::Regular, 9),
            ),
            (
                id(19, 2),
                Form::Gzip,
                meta(crate::sys::euid(), Kind::Symlink, 9),
            ),
            (id(19, 3), Form::GzipTemp, ours(9)),
            (id(20, 10), Form::Gzip, ours(30)),
            (id(20, 2), Form::Plain, ours(100)),
            (id(20, 2), Form::Gzip, ours(20)),
            (id(21, 1), Form::Plain, ours(100)),
        ];
        files.sort_by_key(|f| (f.0, f.1));
        let name = |id: SegmentId, form| inventory::name(OsStr::new("current"), id, form);
        let entries: Vec<Entry> = files
            .iter()
            .map(|&(id, form, _)| Entry {
                id,
                form,
                name: name(id, form),
            })
            .collect();
        let stat = |wanted: &OsStr| {
            files
                .iter()
                .find(|&&(id, form, _)| name(id, form) == wanted)
                .map(|f| f.2)
        };
        // 2026-11-20.2 (both forms) before .10: numbers, not strings.
        let expected = Oldest {
            id: id(20, 2),
            names: vec![name(id(20, 2), Form::Plain), name(id(20, 2), Form::Gzip)],
            bytes: 120,
        };
        assert_eq!(oldest(&entries, stat, 0), Some(expected.clone()));
        assert_eq!(oldest(&entries, stat, 2), Some(expected));
        // Three segments are ours: keeping three deletes none.
        assert_eq!(oldest(&entries, stat, 3), None);
        assert_eq!(oldest(&[], stat, 0), None);
    }

    #[test]
    fn the_line_says_what_went() {
        let active = OsStr::new("current");
        assert_eq!(
            describe(
                active,
                &[
                    (id(20, 4), 16 << 20),
                    (id(20, 5), 16 << 20),
                    (id(20, 6), 16 << 20)
                ]
            ),
            "pruned 3 segments (48 MiB) to make room: current.2026-11-20.4 … .6"
        );
        assert_eq!(
            describe(active, &[(id(20, 9), 1000)]),
            "pruned 1 segment (1000 bytes) to make room: current.2026-11-20.9"
        );
        assert_eq!(
            describe(active, &[(id(20, 9), 1536), (id(21, 1), 1024)]),
            "pruned 2 segments (2.5 KiB) to make room: current.2026-11-20.9 … 2026-11-21.1"
        );
        assert_eq!(human(10 * 1024 - 1), "10.0 KiB");
        assert_eq!(human(10 * 1024), "10 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }

    #[test]
    fn only_a_lack_of_space_prunes() {
        let full = anyhow::Error::new(io::Error::from_raw_os_error(libc::ENOSPC)).context("write");
        let quota = anyhow::Error::new(io::Error::from_raw_os_error(libc::EDQUOT));
        let other = anyhow::Error::new(io::Error::from_raw_os_error(libc::EIO));
        assert!(is_no_space(&full) && is_no_space(&quota));
        assert!(!is_no_space(&other));
    }
}
