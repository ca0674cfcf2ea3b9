//! Where time comes from.
//!
//! The main loop reads the clock once per pass and hands the instant down;
//! nothing below it reads the time to decide where a line goes or when the
//! active file rolls. One reading of the system clock is elsewhere, on
//! purpose: retention by `--max-age` in the worker compares files'
//! modification times, which the kernel stamps from the system clock, with
//! the system clock (see [`crate::retention`]). Tests use the hidden
//! `--debug-clock`, a manual clock that only moves when the input carries a
//! control line `#logpipe-clock <RFC 3339 instant>`; such lines set the
//! clock and are not written. Moves travel in the data stream, so their
//! order relative to the lines around them is fixed: no races, no sleeps.

use std::time::SystemTime;

use jiff::Timestamp;

/// The control line prefix that moves a manual clock.
pub const CONTROL_PREFIX: &[u8] = b"#logpipe-clock ";

/// The source of `now`.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's real-time clock.
    System,
    /// A clock set by control lines in the input (`--debug-clock`).
    Manual(Timestamp),
}

impl Clock {
    /// The current instant.
    pub fn now(&self) -> Timestamp {
        match self {
            // A system clock past what jiff can represent (year 9999) reads
            // as the latest instant rather than stopping logpipe.
            Clock::System => Timestamp::try_from(SystemTime::now()).unwrap_or(Timestamp::MAX),
            Clock::Manual(at) => *at,
        }
    }

    /// Whether control lines in the input move this clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }

    /// Reads a control line (without its newline); sets a manual clock and
    /// returns true if it is one.
    pub fn control(&mut self, line: &[u8]) -> bool {
        let Clock::Manual(at) = self else {
            return false;
        };
        let Some(text) = line.strip_prefix(CONTROL_PREFIX) else {
            return false;
        };
        match std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.trim_end().parse().ok())
        {
            Some(new) => {
                *at = new;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_move_only_a_manual_clock() {
        let start: Timestamp = "2026-11-21T23:59:58Z".parse().unwrap();
        let mut clock = Clock::Manual(start);
        assert!(!clock.control(b"an ordinary line"));
        assert!(!clock.control(b"#logpipe-clock not a time"));
        assert_eq!(clock.now(), start);
        assert!(clock.control(b"#logpipe-clock 2026-11-22T00:00:01Z"));
        assert_eq!(
            clock.now(),
            "2026-11-22T00:00:01Z".parse::<Timestamp>().unwrap()
        );

        let mut system = Clock::System;
        assert!(!system.control(b"#logpipe-clock 2026-11-22T00:00:01Z"));
    }
}
