//! Wall-clock boundaries: when a time window ends, and which date an
//! instant has, in the configured zone.
//!
//! Boundaries are aligned to the clock of the zone: every hour on the hour,
//! every 15 minutes at :00, :15, :30 and :45, every day at local midnight.
//! They are computed on civil time and converted to instants, so a local
//! day may be 23 or 25 hours long. A civil boundary that falls in a DST gap
//! happens once, at the end of the gap; one that falls in a fold happens
//! once, at its first occurrence.
//!
//! Everything here is a pure function of its arguments: no clock is read.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

/// Seconds in a civil day.
const DAY: u32 = 86_400;

/// How often the active file is rolled by the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// Only by size.
    Never,
    /// At every civil time of day that is a multiple of this many seconds
    /// since midnight. Divides a day evenly.
    Seconds(u32),
}

/// Parses `--every`: `never`, or a whole number of `s`, `m`, `h` or `d`
/// that divides a day evenly (`30s`, `15m`, `1h`, `1d`).
pub fn parse_every(text: &str) -> Result<Every, String> {
    if text == "never" {
        return Ok(Every::Never);
    }
    let duration = crate::units::parse_duration(text).map_err(|_| {
        "expected never, or a number followed by s, m, h or d (like 15m)".to_string()
    })?;
    u32::try_from(duration.as_secs())
        .ok()
        .filter(|&s| s > 0 && DAY.is_multiple_of(s))
        .map(Every::Seconds)
        .ok_or_else(|| {
            "the interval must divide a day evenly (like 30s, 15m, 1h or 1d)".to_string()
        })
}

/// Time windows and dates in one zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    every: Every,
    tz: TimeZone,
}

impl Schedule {
    /// Windows of `every` in zone `tz`.
    pub fn new(every: Every, tz: TimeZone) -> Schedule {
        Schedule { every, tz }
    }

    /// The zone of boundaries and dates.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The civil date of `at` in the zone.
    pub fn date(&self, at: Timestamp) -> Date {
        self.tz.to_datetime(at).date()
    }

    /// The end of the window holding `at`: the first boundary strictly
    /// after `at`, or `None` when rolling by the clock is off.
    pub fn next_boundary(&self, at: Timestamp) -> Option<Timestamp> {
        let Every::Seconds(step) = self.every else {
            return None;
        };
        let civil = self.tz.to_datetime(at);
        let midnight = civil.date().to_datetime(jiff::civil::Time::midnight());
        let elapsed =
            (civil.hour() as i64) * 3600 + (civil.minute() as i64) * 60 + civil.second() as i64;
        let step = i64::from(step);
        // The first aligned civil time after `at`'s; if the zone maps it
        // to an instant not after `at` (the second pass through a fold),
        // the next one, until an instant after `at` is found. A fold is at
        // most a few hours, so this ends after a few steps.
        let mut k = elapsed / step + 1;
        loop {
            let candidate: DateTime = midnight.checked_add(Span::new().seconds(k * step)).ok()?;
            let instant = self
                .tz
                .to_ambiguous_timestamp(candidate)
                .compatible()
                .ok()?;
            if instant > at {
                return Some(instant);
            }
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn posix(rule: &str) -> TimeZone {
        TimeZone::posix(rule).unwrap()
    }

    /// Each case: zone, interval, instant, expected next boundary.
    fn check(tz: &TimeZone, every: &str, cases: &[(&str, &str)]) {
        let schedule = Schedule::new(parse_every(every).unwrap(), tz.clone());
        for &(at, want) in cases {
            assert_eq!(
                schedule.next_boundary(ts(at)),
                Some(ts(want)),
                "{every} after {at}"
            );
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_every("never"), Ok(Every::Never));
        for (text, seconds) in [
            ("1d", 86_400),
            ("1h", 3600),
            ("15m", 900),
            ("30s", 30),
            ("2h", 7200),
            ("1s", 1),
            ("90m", 5400),
        ] {
            assert_eq!(parse_every(text), Ok(Every::Seconds(seconds)), "{text}");
        }
        for bad in [
            "",
            "0s",
            "7m",
            "5h",
            "2d",
            "1w",
            "h",
            "1.5h",
            "-1h",
            "1H",
            "99999999999d",
        ] {
            assert!(parse_every(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn never_has_no_boundary() {
        let schedule = Schedule::new(Every::Never, TimeZone::UTC);
        assert_eq!(schedule.next_boundary(ts("2026-11-21T12:00:00Z")), None);
    }

    #[test]
    fn aligned_to_the_clock_in_utc() {
        let utc = TimeZone::UTC;
        check(
            &utc,
            "1h",
            &[
                ("2026-11-21T14:03:07Z", "2026-11-21T15:00:00Z"),
                // A boundary instant belongs to the window it opens.
                ("2026-11-21T15:00:00Z", "2026-11-21T16:00:00Z"),
                ("2026-11-21T23:59:59.999Z", "2026-11-22T00:00:00Z"),
            ],
        );
        check(
            &utc,
            "15m",
            &[
                ("2026-11-21T14:00:00Z", "2026-11-21T14:15:00Z"),
                ("2026-11-21T14:44:59Z", "2026-11-21T14:45:00Z"),
                ("2026-11-21T23:50:00Z", "2026-11-22T00:00:00Z"),
            ],
        );
        check(
            &utc,
            "30s",
            &[("2026-11-21T14:03:07Z", "2026-11-21T14:03:30Z")],
        );
        check(
            &utc,
            "1d",
            &[
                ("2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"),
                // Month end, year end, leap day, non-leap February.
                ("2026-11-30T18:00:00Z", "2026-12-01T00:00:00Z"),
                ("2026-12-31T23:59:58Z", "2027-01-01T00:00:00Z"),
                ("2028-02-28T12:00:00Z", "2028-02-29T00:00:00Z"),
                ("2028-02-29T12:00:00Z", "2028-03-01T00:00:00Z"),
                ("2027-02-28T12:00:00Z", "2027-03-01T00:00:00Z"),
            ],
        );
    }

    #[test]
    fn new_york_days_are_23_and_25_hours_long() {
        let ny = posix("EST5EDT,M3.2.0,M11.1.0");
        check(
            &ny,
            "1d",
            &[
                // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT.
                ("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z"),
                // 2026-11-01: clocks go from 02:00 EDT back to 01:00 EST.
                ("2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"),
                ("2026-11-21T12:00:00Z", "2026-11-22T05:00:00Z"),
            ],
        );
        check(
            &ny,
            "1h",
            &[
                // Spring: local 02:00 does not exist; 01:xx is followed by 03:00.
                ("2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z"),
                ("2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"),
                // Autumn: local 01:00-02:00 happens twice; the 02:00 boundary
                // comes once, after both passes.
                ("2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"),
                ("2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"),
                ("2026-11-01T06:30:00Z", "2026-11-01T07:00:00Z"),
            ],
        );
    }

    #[test]
    fn berlin_hours_across_both_changes() {
        let berlin = posix("CET-1CEST,M3.5.0,M10.5.0/3");
        check(
            &berlin,
            "1h",
            &[
                // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00Z).
                ("2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z"),
                ("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"),
                // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00Z); local
                // 02:00-03:00 happens twice and its boundaries once.
                ("2026-10-24T23:30:00Z", "2026-10-25T00:00:00Z"),
                ("2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"),
                ("2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"),
            ],
        );
        check(
            &berlin,
            "1d",
            &[
                ("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"),
                ("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"),
            ],
        );
        check(
            &berlin,
            "15m",
            &[
                // Every quarter hour inside the gap maps to its end, once.
                ("2026-03-29T00:50:00Z", "2026-03-29T01:00:00Z"),
                ("2026-03-29T01:00:00Z", "2026-03-29T01:15:00Z"),
            ],
        );
    }

    #[test]
    fn lord_howe_half_hour_dst() {
        // Australia/Lord_Howe: +10:30 standard, +11:00 in summer; the
        // change is 30 minutes, at 02:00 local.
        let lhi = posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0");
        check(
            &lhi,
            "1d",
            &[
                // 2026-10-04: 02:00 becomes 02:30; the day has 23.5 hours.
                ("2026-10-03T14:00:00Z", "2026-10-04T13:00:00Z"),
                // 2026-04-05: 02:00 becomes 01:30; the day has 24.5 hours.
                ("2026-04-04T13:00:00Z", "2026-04-05T13:30:00Z"),
            ],
        );
        check(
            &lhi,
            "1h",
            &[
                // Local 01:59 (+10:30) → the 02:00 boundary is in the gap and
                // maps to its end, 02:30 (+11).
                ("2026-10-03T15:29:00Z", "2026-10-03T15:30:00Z"),
                ("2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z"),
            ],
        );
    }

    #[test]
    fn dates_are_civil_dates_in_the_zone() {
        let ny = Schedule::new(Every::Seconds(DAY), posix("EST5EDT,M3.2.0,M11.1.0"));
        assert_eq!(
            ny.date(ts("2026-11-22T04:59:59Z")),
            jiff::civil::date(2026, 11, 21)
        );
        assert_eq!(
            ny.date(ts("2026-11-22T05:00:00Z")),
            jiff::civil::date(2026, 11, 22)
        );
    }
}
