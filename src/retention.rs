//! Retention: which finished segments to delete. Off unless asked.
//!
//! The choice is a pure function of what is on disk and the policy; the
//! worker scans, asks [`select`], and deletes. Only names that parse as this
//! target's own segments are ever considered (a stranger's file in the same
//! directory is never touched), the active file never is, and a segment
//! that exists both plain and compressed counts once, with both sizes.

use std::time::{Duration, SystemTime};

use crate::naming::SegmentId;

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

#[cfg(test)]
mod tests {
    use super::*;
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
}
