//! Segment names: `<active>.<YYYY-MM-DD>.<N>`, with a suffix such as `.gz`
//! or `.gz.tmp` for the same segment in another form.
//!
//! Segments order by `(date, N)`, never as strings: as strings `.10` sorts
//! before `.9`.

use std::fmt;

use jiff::civil::Date;

/// The identity of a finished segment: the day it was opened and its
/// number within that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    /// The date of the segment's first line.
    pub date: Date,
    /// Counts from 1 for each date; never reused on one target.
    pub n: u64,
}

impl fmt::Display for SegmentId {
    /// Formats as `YYYY-MM-DD.N`, the part of a segment's name after the
    /// active file's name and a dot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.date, self.n)
    }
}

/// Reads a file name as a segment of the active file `active`.
///
/// Returns the segment and whatever follows its number (empty for the
/// plain segment, `.gz`, `.gz.tmp`, …), or `None` when the name is not one
/// of this target's segments in any form. Any form counts, so that a
/// temporary or compressed file still claims its number.
pub fn parse<'a>(active: &[u8], file_name: &'a [u8]) -> Option<(SegmentId, &'a [u8])> {
    parse_id(file_name.strip_prefix(active)?.strip_prefix(b".")?)
}

/// Reads `YYYY-MM-DD.N` followed by nothing or by a suffix starting with
/// `.`; returns the segment and the suffix.
pub fn parse_id(rest: &[u8]) -> Option<(SegmentId, &[u8])> {
    if rest.len() < 10 {
        return None;
    }
    let (date, rest) = rest.split_at(10);
    let date = parse_date(date)?;
    let rest = rest.strip_prefix(b".")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (n, suffix) = rest.split_at(digits);
    if n.is_empty() || n[0] == b'0' || !(suffix.is_empty() || suffix[0] == b'.') {
        return None;
    }
    let n = std::str::from_utf8(n).ok()?.parse().ok()?;
    Some((SegmentId { date, n }, suffix))
}

/// Parses exactly `YYYY-MM-DD`, a real calendar date.
fn parse_date(text: &[u8]) -> Option<Date> {
    let number = |digits: &[u8]| -> Option<i32> {
        digits.iter().try_fold(0i32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i32::from(b - b'0'))
        })
    };
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let year = i16::try_from(number(&text[0..4])?).ok()?;
    let month = i8::try_from(number(&text[5..7])?).ok()?;
    let day = i8::try_from(number(&text[8..10])?).ok()?;
    Date::new(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn id(y: i16, m: i8, d: i8, n: u64) -> SegmentId {
        SegmentId {
            date: date(y, m, d),
            n,
        }
    }

    #[test]
    fn format_and_parse_round_trip() {
        for seg in [
            id(2026, 11, 21, 1),
            id(2024, 2, 29, 10),
            id(1999, 12, 31, 123456),
        ] {
            let name = format!("current.{seg}");
            assert_eq!(parse(b"current", name.as_bytes()), Some((seg, &b""[..])));
        }
        assert_eq!(id(2026, 1, 2, 3).to_string(), "2026-01-02.3");
    }

    #[test]
    fn suffixes_claim_the_number() {
        let seg = id(2026, 11, 21, 7);
        for suffix in [".gz", ".gz.tmp", ".tmp"] {
            let name = format!("app.log.2026-11-21.7{suffix}");
            assert_eq!(
                parse(b"app.log", name.as_bytes()),
                Some((seg, suffix.as_bytes()))
            );
        }
    }

    #[test]
    fn strangers_are_not_segments() {
        for name in [
            "current",
            "current.lock",
            "current.state",
            "current.2026-11-21",
            "current.2026-11-21.",
            "current.2026-11-21.0",
            "current.2026-11-21.01",
            "current.2026-11-21.1x",
            "current.2026-13-01.1",
            "current.2026-02-30.1",
            "current.26-11-21.1",
            "currentx.2026-11-21.1",
            "other.2026-11-21.1",
            "current.2026-11-21.99999999999999999999999",
        ] {
            assert_eq!(parse(b"current", name.as_bytes()), None, "{name}");
        }
    }

    #[test]
    fn order_is_by_date_then_number() {
        let mut ids = vec![
            id(2026, 11, 21, 10),
            id(2026, 11, 21, 9),
            id(2026, 11, 20, 11),
        ];
        ids.sort();
        assert_eq!(
            ids,
            vec![
                id(2026, 11, 20, 11),
                id(2026, 11, 21, 9),
                id(2026, 11, 21, 10)
            ]
        );
    }
}
