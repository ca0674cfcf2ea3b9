//! Retention: which finished segments to delete. Off unless asked.
//!
//! The choice is a pure function of what is on disk and the policy; the
//! worker lists the directory once ([`crate::inventory::scan`]), asks
//! [`plan`], and deletes what it names. Only names that parse as this
//! target's own segments are ever considered (a stranger's file in the same
//! directory is never touched), the active file never is, and a segment
//! that exists both plain and compressed counts once, with both sizes.
//! Among those names, only files logpipe may call its own
//! ([`Meta::is_ours`]: a regular file of its user, with no other name) are
//! counted or deleted: a symbolic link or a stranger's file named like a
//! segment is neither.
//!
//! # Which clock `--max-age` reads
//!
//! The age of a segment is the system clock now minus the file's
//! modification time. The rule that nothing below the main loop reads the
//! clock (see [`crate::clock`]) is about where lines go and when the active
//! file rolls; it does not apply here, on purpose: modification times are
//! stamped by the kernel from the system clock, so the system clock is the
//! only one they can be compared with. The main loop's clock would be
//! wrong in the one case where it differs, `--debug-clock`, whose instants
//! have nothing to do with the times on the files.

use std::ffi::{OsStr, OsString};
use std::time::{Duration, SystemTime};

use crate::inventory::Entry;
use crate::naming::SegmentId;
use crate::sys::Meta;

/// What to keep. Every limit applies; a segment goes if any says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many finished segments (`--keep`).
    pub keep: Option<u64>,
    /// Delete segments finished longer ago than this (`--max-age`).
    pub max_age: Option<Duration>,
    /// Keep the finished segments' total size at most this (`--max-total`).
    pub max_total: Option<u64>,
}

impl Retention {
    /// Whether any limit is set.
    pub fn is_active(&self) -> bool {
        self.keep.is_some() || self.max_age.is_some() || self.max_total.is_some()
    }
}

/// A finished segment as found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub id: SegmentId,
    /// Bytes in all its forms.
    pub bytes: u64,
    /// When it was finished (the modification time, which compression
    /// keeps).
    pub finished: SystemTime,
}

/// The segments to delete under `policy` at `now`, oldest first. `found`
/// may be in any order.
pub fn select(found: &[Found], policy: &Retention, now: SystemTime) -> Vec<SegmentId> {
    let mut segments = found.to_vec();
    segments.sort_by_key(|f| f.id);
    let mut total: u64 = segments.iter().map(|f| f.bytes).sum();
    let mut left = segments.len() as u64;
    let mut victims = Vec::new();
    for seg in &segments {
        let too_many = policy.keep.is_some_and(|keep| left > keep);
        let too_big = policy.max_total.is_some_and(|max| total > max);
        let too_old = policy.max_age.is_some_and(|age| {
            now.duration_since(seg.finished)
                .is_ok_and(|elapsed| elapsed > age)
        });
        if too_many || too_big || too_old {
            victims.push(seg.id);
            total -= seg.bytes;
            left -= 1;
        }
    }
    victims
}

/// The file names to delete under `policy` at `now` (from
/// [`SystemTime::now`], see the module docs), from one listing sorted by
/// (id, form) as [`crate::inventory::scan`] gives it. `stat` is asked about
/// the plain and compressed names only, once each.
///
/// Linear in the number of names (and one sort of an already sorted list
/// in [`select`]).
pub fn plan(
    entries: &[Entry],
    mut stat: impl FnMut(&OsStr) -> Option<Meta>,
    policy: &Retention,
    now: SystemTime,
) -> Vec<OsString> {
    // Each segment counted, with the names of its files that are ours.
    let mut found: Vec<Found> = Vec::new();
    let mut names: Vec<Vec<&OsString>> = Vec::new();
    for entry in entries.iter().filter(|e| e.form.is_data()) {
        let Some(meta) = stat(&entry.name).filter(Meta::is_ours) else {
            continue;
        };
        match found.last_mut() {
            Some(last) if last.id == entry.id => {
                last.bytes += meta.len;
                // Plain and compressed both there (a crash between the
                // rename and the removal): the later time counts.
                last.finished = last.finished.max(meta.modified);
                names.last_mut().expect("one per found").push(&entry.name);
            }
            _ => {
                found.push(Found {
                    id: entry.id,
                    bytes: meta.len,
                    finished: meta.modified,
                });
                names.push(vec![&entry.name]);
            }
        }
    }
    // Both lists are in id order: one walk pairs them.
    let victims = select(&found, policy, now);
    let mut doomed = Vec::new();
    let mut at = 0;
    for victim in victims {
        while found[at].id != victim {
            at += 1;
        }
        doomed.extend(names[at].iter().map(|&name| name.clone()));
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{self, Form};
    use crate::sys::Kind;
    use jiff::civil::date;

    const HOUR: Duration = Duration::from_secs(3600);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_269_787)
    }

    /// Segments of 2026-11-20 numbered 1..=count, 100 bytes each, finished
    /// an hour apart, the last one an hour ago.
    fn day(count: u64) -> Vec<Found> {
        (1..=count)
            .map(|n| Found {
                id: SegmentId {
                    date: date(2026, 11, 20),
                    n,
                },
                bytes: 100,
                finished: now() - HOUR * (count - n + 1) as u32,
            })
            .collect()
    }

    fn numbers(victims: &[SegmentId]) -> Vec<u64> {
        victims.iter().map(|id| id.n).collect()
    }

    #[test]
    fn nothing_asked_nothing_deleted() {
        assert!(select(&day(20), &Retention::default(), now()).is_empty());
        assert!(!Retention::default().is_active());
    }

    #[test]
    fn keep_deletes_the_oldest_by_date_then_number() {
        let mut found = day(12);
        // Out of order, and with N ≥ 10 so string order would be wrong.
        found.reverse();
        found.push(Found {
            id: SegmentId {
                date: date(2026, 11, 19),
                n: 30,
            },
            bytes: 1,
            finished: now(),
        });
        let policy = Retention {
            keep: Some(10),
            ..Retention::default()
        };
        let victims = select(&found, &policy, now());
        assert_eq!(victims[0].date, date(2026, 11, 19));
        assert_eq!(numbers(&victims), [30, 1, 2]);
        let policy = Retention {
            keep: Some(0),
            ..Retention::default()
        };
        assert_eq!(select(&found, &policy, now()).len(), 13);
    }

    #[test]
    fn max_total_deletes_until_the_rest_fits() {
        let policy = Retention {
            max_total: Some(250),
            ..Retention::default()
        };
        assert_eq!(numbers(&select(&day(5), &policy, now())), [1, 2, 3]);
        let policy = Retention {
            max_total: Some(500),
            ..Retention::default()
        };
        assert!(select(&day(5), &policy, now()).is_empty());
    }

    #[test]
    fn max_age_deletes_what_was_finished_too_long_ago() {
        let policy = Retention {
            max_age: Some(HOUR * 3),
            ..Retention::default()
        };
        // Finished 5, 4, 3, 2 and 1 hours ago: 3 hours is not more than 3.
        assert_eq!(numbers(&select(&day(5), &policy, now())), [1, 2]);
        // A clock behind the segments deletes nothing.
        let past = now() - HOUR * 100;
        assert!(select(&day(5), &policy, past).is_empty());
    }

    #[test]
    fn limits_combine() {
        let policy = Retention {
            keep: Some(4),
            max_total: Some(250),
            max_age: Some(HOUR * 10),
        };
        assert_eq!(numbers(&select(&day(6), &policy, now())), [1, 2, 3, 4]);
    }

    fn meta(kind: Kind, uid: u32, len: u64, finished: SystemTime) -> Meta {
        Meta::made_up(kind, uid, len, finished)
    }

    #[test]
    fn plan_counts_and_deletes_only_our_files() {
        let id = |n| SegmentId {
            date: date(2026, 11, 20),
            n,
        };
        let name = |n, form| inventory::name(OsStr::new("current"), id(n), form);
        let ours = |len| meta(Kind::Regular, crate::sys::euid(), len, now() - HOUR);
        let mut files: Vec<(u64, Form, Meta)> = vec![
            (
                1,
                Form::Gzip,
                meta(Kind::Symlink, crate::sys::euid(), 1000, now()),
            ),
            (2, Form::Plain, ours(100)),
            (2, Form::Gzip, ours(50)),
            (3, Form::GzipTemp, ours(1000)),
            (
                3,
                Form::Gzip,
                meta(Kind::Regular, crate::sys::euid() + 1, 1000, now()),
            ),
            (4, Form::Other, ours(1000)),
            (5, Form::Gzip, ours(100)),
            (6, Form::Plain, ours(100)),
        ];
        files.sort_by_key(|f| (f.0, f.1));
        let entries: Vec<Entry> = files
            .iter()
            .map(|&(n, form, _)| Entry {
                id: id(n),
                form,
                name: name(n, form),
            })
            .collect();
        let stat = |wanted: &OsStr| {
            files
                .iter()
                .find(|&&(n, form, _)| name(n, form) == wanted)
                .map(|f| f.2)
        };
        // Three segments are ours (2, 5, 6): keeping 2 deletes segment 2,
        // both its files, and nothing that is not ours.
        let keep = |keep| Retention {
            keep: Some(keep),
            ..Retention::default()
        };
        assert_eq!(
            plan(&entries, stat, &keep(2), now()),
            [name(2, Form::Plain), name(2, Form::Gzip)]
        );
        assert!(plan(&entries, stat, &keep(3), now()).is_empty());
        assert_eq!(plan(&entries, stat, &keep(0), now()).len(), 4);
        // The stranger's 1000-byte files do not count towards the total.
        let total = Retention {
            max_total: Some(200),
            ..Retention::default()
        };
        assert_eq!(
            plan(&entries, stat, &total, now()),
            [name(2, Form::Plain), name(2, Form::Gzip)]
        );
        // A plan over a large listing takes linear time: 200,000 segments
        // well within a second even unoptimised.
        let many: Vec<Entry> = (1..=200_000)
            .map(|n| Entry {
                id: id(n),
                form: Form::Gzip,
                name: name(n, Form::Gzip),
            })
            .collect();
        let started = std::time::Instant::now();
        let doomed = plan(&many, |_| Some(ours(10)), &keep(10), now());
        assert_eq!(doomed.len(), 199_990);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
