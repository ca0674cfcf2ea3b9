//! Where a reader of a target is: the position a cursor file records.
//!
//! Finished segments are named for good, so a position in one is its id
//! and an offset. The active file has no segment name yet: a position in
//! it is its inode and an offset, with the highest segment id known when it
//! was opened. When the active file is rolled, it becomes the first
//! segment after that id, and the position still says where to go on.

use jiff::civil::Date;

use crate::naming::{self, SegmentId};

/// A place in the target's content, always at the start of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Everything up to and including segment `id` was read.
    After(SegmentId),
    /// `offset` bytes of segment `id` (of its uncompressed content) were
    /// read.
    Segment { id: SegmentId, offset: u64 },
    /// `offset` bytes of the active file with inode `ino` on device `dev`
    /// were read; `after` is the highest segment known when it was opened
    /// (`None`: there was none).
    Active {
        after: Option<SegmentId>,
        dev: u64,
        ino: u64,
        offset: u64,
    },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::After(id) => write!(f, "after {id}"),
            Position::Segment { id, offset } => write!(f, "segment {id} {offset}"),
            Position::Active {
                after,
                dev,
                ino,
                offset,
            } => {
                let after = after.map_or_else(|| "-".to_string(), |id| id.to_string());
                write!(f, "active {after} {dev} {ino} {offset}")
            }
        }
    }
}

impl Position {
    /// Parses what [`Position`]'s `Display` writes (one line, without its
    /// newline).
    pub fn parse(text: &str) -> Option<Position> {
        let words: Vec<&str> = text.split(' ').collect();
        let id = |word: &str| match naming::parse_id(word.as_bytes()) {
            Some((id, b"")) => Some(id),
            _ => None,
        };
        let number = |word: &str| word.parse::<u64>().ok();
        match words.as_slice() {
            ["after", seg] => Some(Position::After(id(seg)?)),
            ["segment", seg, offset] => Some(Position::Segment {
                id: id(seg)?,
                offset: number(offset)?,
            }),
            ["active", after, dev, ino, offset] => Some(Position::Active {
                after: match *after {
                    "-" => None,
                    seg => Some(id(seg)?),
                },
                dev: number(dev)?,
                ino: number(ino)?,
                offset: number(offset)?,
            }),
            _ => None,
        }
    }
}

/// `--since` and `--until`: the segment dates to read, both ends included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dates {
    pub since: Option<Date>,
    pub until: Option<Date>,
}

impl Dates {
    /// Whether a segment of `date` is read.
    pub fn contains(&self, date: Date) -> bool {
        self.since.is_none_or(|since| date >= since) && self.until.is_none_or(|until| date <= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn positions_round_trip_through_text() {
        let id = SegmentId {
            date: date(2026, 11, 21),
            n: 10,
        };
        for position in [
            Position::After(id),
            Position::Segment { id, offset: 0 },
            Position::Segment {
                id,
                offset: u64::MAX,
            },
            Position::Active {
                after: None,
                dev: 2049,
                ino: 77,
                offset: 5,
            },
            Position::Active {
                after: Some(id),
                dev: 1,
                ino: 2,
                offset: 3,
            },
        ] {
            let text = position.to_string();
            assert_eq!(Position::parse(&text), Some(position), "{text}");
        }
        for bad in [
            "",
            "after",
            "after 2026-11-21",
            "segment 2026-11-21.1",
            "segment 2026-11-21.1 -1",
            "active - 1 2",
            "active x 1 2 3",
            "after 2026-11-21.1 extra",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn dates_include_both_ends() {
        let dates = Dates {
            since: Some(date(2026, 11, 20)),
            until: Some(date(2026, 11, 21)),
        };
        assert!(!dates.contains(date(2026, 11, 19)));
        assert!(dates.contains(date(2026, 11, 20)));
        assert!(dates.contains(date(2026, 11, 21)));
        assert!(!dates.contains(date(2026, 11, 22)));
        assert!(Dates::default().contains(date(1970, 1, 1)));
    }
}
