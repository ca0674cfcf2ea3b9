//! `--timestamp`: a prefix with the time each line was read.
//!
//! The prefix goes at the start of every line, once: a line streamed
//! through in several pieces gets it on its first piece only, and a final
//! line without a newline gets it like any other. All lines of one read
//! were read at the same instant, so the prefix is formatted once per read
//! (and reused while the microsecond does not change), by hand into a
//! fixed buffer: no allocation per line or per read.
//!
//! Output goes out in runs of whole lines of about `FLUSH_AT` bytes, so
//! the output buffer stays bounded however many prefixes a read needs.

use anyhow::Result;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use memchr::memchr;

/// Output is handed on once it holds this many bytes and ends a line.
const FLUSH_AT: usize = 256 * 1024;

/// The TAI64 label of the Unix epoch: 2^62, plus the 10 seconds TAI was
/// ahead of UTC in 1970. Leap seconds since are not counted, as multilog
/// and daemontools' `tai64nlocal` do not count them.
const TAI64_EPOCH: u64 = (1 << 62) + 10;

/// The prefix formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `2026-11-21T14:03:07.123456Z` (`--utc`), or with the local offset,
    /// `2026-11-21T15:03:07.123456+01:00`.
    Rfc3339,
    /// `@400000006b01a4a5075bca00`, as multilog and s6-log write it.
    Tai64n,
    /// Seconds since the Unix epoch, with microseconds: `1795269787.123456`.
    Unix,
}

/// Adds prefixes to runs of input.
#[derive(Debug)]
pub struct Stamper {
    format: Format,
    /// The zone of rfc3339 prefixes; UTC prefixes end in `Z`.
    tz: TimeZone,
    utc: bool,
    /// The formatted prefix, with its trailing space.
    prefix: [u8; 40],
    prefix_len: usize,
    /// The microsecond `prefix` was formatted for.
    prefix_micros: Option<i64>,
    /// The next byte starts a line.
    at_line_start: bool,
    out: Vec<u8>,
}

impl Stamper {
    /// Prefixes in `format`; rfc3339 ones in `tz`, ending in `Z` if `utc`.
    pub fn new(format: Format, tz: TimeZone, utc: bool) -> Stamper {
        Stamper {
            format,
            tz,
            utc,
            prefix: [0; 40],
            prefix_len: 0,
            prefix_micros: None,
            at_line_start: true,
            out: Vec::with_capacity(2 * FLUSH_AT),
        }
    }

    /// Prefixes every line that starts in `run` with the time `now`, and
    /// hands the result to `emit` in runs that end in a newline (except the
    /// last, when `run` ends inside a line).
    pub fn stamp(
        &mut self,
        now: Timestamp,
        mut run: &[u8],
        mut emit: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        self.format_prefix(now);
        self.out.clear();
        while !run.is_empty() {
            if self.at_line_start {
                self.out.extend_from_slice(&self.prefix[..self.prefix_len]);
            }
            let end = memchr(b'\n', run).map_or(run.len(), |i| i + 1);
            self.out.extend_from_slice(&run[..end]);
            self.at_line_start = run[end - 1] == b'\n';
            run = &run[end..];
            if self.out.len() >= FLUSH_AT && self.at_line_start {
                emit(&self.out)?;
                self.out.clear();
            }
        }
        if !self.out.is_empty() {
            emit(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    fn format_prefix(&mut self, now: Timestamp) {
        let micros = now.as_microsecond();
        if self.prefix_micros == Some(micros) {
            return;
        }
        self.prefix_micros = Some(micros);
        let mut w = Writer {
            buf: &mut self.prefix,
            len: 0,
        };
        let (seconds, micro) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
        match self.format {
            Format::Rfc3339 => {
                let civil = self.tz.to_datetime(now);
                w.digits(i64::from(civil.year()), 4);
                w.byte(b'-');
                w.digits(i64::from(civil.month()), 2);
                w.byte(b'-');
                w.digits(i64::from(civil.day()), 2);
                w.byte(b'T');
                w.digits(i64::from(civil.hour()), 2);
                w.byte(b':');
                w.digits(i64::from(civil.minute()), 2);
                w.byte(b':');
                w.digits(i64::from(civil.second()), 2);
                w.byte(b'.');
                w.digits(micro, 6);
                if self.utc {
                    w.byte(b'Z');
                } else {
                    let offset = self.tz.to_offset(now).seconds();
                    w.byte(if offset < 0 { b'-' } else { b'+' });
                    let offset = i64::from(offset.unsigned_abs());
                    w.digits(offset / 3600, 2);
                    w.byte(b':');
                    w.digits(offset / 60 % 60, 2);
                }
            }
            Format::Tai64n => {
                w.byte(b'@');
                w.hex(TAI64_EPOCH.wrapping_add_signed(seconds), 16);
                w.hex(micro as u64 * 1000, 8);
            }
            Format::Unix => {
                if seconds < 0 {
                    w.byte(b'-');
                }
                // Before 1970 the microseconds count back from the second.
                let (seconds, micro) = if seconds < 0 && micro > 0 {
                    (seconds.unsigned_abs() - 1, 1_000_000 - micro)
                } else {
                    (seconds.unsigned_abs(), micro)
                };
                w.number(seconds);
                w.byte(b'.');
                w.digits(micro, 6);
            }
        }
        w.byte(b' ');
        self.prefix_len = w.len;
    }
}

/// Writes ASCII into a fixed buffer, which is long enough for every
/// format.
struct Writer<'a> {
    buf: &'a mut [u8; 40],
    len: usize,
}

impl Writer<'_> {
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// `value` in decimal, zero-padded to `width` digits.
    fn digits(&mut self, value: i64, width: usize) {
        let mut value = value.unsigned_abs();
        for i in (0..width).rev() {
            self.buf[self.len + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += width;
    }

    /// `value` in decimal, as many digits as it needs.
    fn number(&mut self, value: u64) {
        let width = value.checked_ilog10().map_or(1, |l| l as usize + 1);
        self.digits(value as i64, width);
    }

    /// `value` in lowercase hexadecimal, zero-padded to `width` digits.
    fn hex(&mut self, mut value: u64, width: usize) {
        for i in (0..width).rev() {
            self.buf[self.len + i] = b"0123456789abcdef"[(value & 15) as usize];
            value >>= 4;
        }
        self.len += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_all(stamper: &mut Stamper, now: &str, runs: &[&[u8]]) -> String {
        let now: Timestamp = now.parse().unwrap();
        let mut out = Vec::new();
        for run in runs {
            stamper
                .stamp(now, run, |piece| {
                    out.extend_from_slice(piece);
                    Ok(())
                })
                .unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    fn prefix(format: Format, tz: TimeZone, utc: bool, now: &str) -> String {
        let mut stamper = Stamper::new(format, tz, utc);
        stamp_all(&mut stamper, now, &[b"x\n"])
            .trim_end_matches("x\n")
            .to_string()
    }

    #[test]
    fn formats() {
        let at = "2026-11-21T14:03:07.123456789Z";
        let berlin = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let ny = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(
            prefix(Format::Rfc3339, TimeZone::UTC, true, at),
            "2026-11-21T14:03:07.123456Z "
        );
        assert_eq!(
            prefix(Format::Rfc3339, TimeZone::UTC, false, at),
            "2026-11-21T14:03:07.123456+00:00 "
        );
        assert_eq!(
            prefix(Format::Rfc3339, berlin, false, at),
            "2026-11-21T15:03:07.123456+01:00 "
        );
        assert_eq!(
            prefix(Format::Rfc3339, ny, false, at),
            "2026-11-21T09:03:07.123456-05:00 "
        );
        assert_eq!(
            prefix(Format::Unix, TimeZone::UTC, true, at),
            "1795269787.123456 "
        );
        assert_eq!(
            prefix(Format::Unix, TimeZone::UTC, true, "1970-01-01T00:00:00Z"),
            "0.000000 "
        );
        assert_eq!(
            prefix(Format::Unix, TimeZone::UTC, true, "1969-12-31T23:59:59.75Z"),
            "-0.250000 "
        );
        // 2^62 + 10 + 1795269787 seconds; 123456 µs as nanoseconds.
        assert_eq!(
            prefix(Format::Tai64n, TimeZone::UTC, true, at),
            "@400000006b01a4a5075bca00 "
        );
    }

    #[test]
    fn a_half_hour_offset() {
        let lhi = TimeZone::posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0").unwrap();
        assert_eq!(
            prefix(Format::Rfc3339, lhi, false, "2026-06-01T00:00:00Z"),
            "2026-06-01T10:30:00.000000+10:30 "
        );
    }

    #[test]
    fn every_line_gets_exactly_one_prefix() {
        let mut stamper = Stamper::new(Format::Unix, TimeZone::UTC, true);
        let out = stamp_all(
            &mut stamper,
            "2026-11-21T14:03:07Z",
            &[b"a\n\nb\n", b"long ", b"line ", b"ends\n", b"last"],
        );
        let p = "1795269787.000000 ";
        assert_eq!(out, format!("{p}a\n{p}\n{p}b\n{p}long line ends\n{p}last"));
    }

    #[test]
    fn output_comes_in_bounded_runs_of_whole_lines() {
        let mut stamper = Stamper::new(Format::Rfc3339, TimeZone::UTC, true);
        let input = vec![b'\n'; 200_000];
        let now: Timestamp = "2026-11-21T14:03:07Z".parse().unwrap();
        let mut pieces = Vec::new();
        stamper
            .stamp(now, &input, |piece| {
                pieces.push(piece.len());
                assert!(piece.ends_with(b"\n"));
                Ok(())
            })
            .unwrap();
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|&len| len < FLUSH_AT + 64));
        assert_eq!(pieces.iter().sum::<usize>(), 200_000 * 29);
    }
}
