//! The units of command-line values: sizes, durations and permission bits.
//!
//! A leaf: nothing of logpipe's is imported here, so the argument
//! definition (`cli`) and the parts that own a value's meaning
//! (`schedule` for `--every`) can both build on it without depending on
//! each other.

use std::time::Duration;

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("T", 1 << 40),
    ("TiB", 1 << 40),
];

/// Parses a size such as `100M`, `512K`, `1GiB` or `4096`.
///
/// Every suffix is a power of 1024, as in rotatelogs and s6-log. Zero is
/// refused: a segment must be able to hold something, and a total of zero
/// would keep nothing.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = text.split_at(digits);
    if number.is_empty() {
        return Err("expected a number, optionally followed by K, M, G or T".into());
    }
    let Some(&(_, unit)) = SIZE_UNITS.iter().find(|(name, _)| *name == suffix) else {
        return Err(format!(
            "unknown suffix '{suffix}' (use K, M, G, T, KiB, MiB, GiB or TiB)"
        ));
    };
    let number: u64 = number.parse().map_err(|_| "number too large".to_string())?;
    let size = number
        .checked_mul(unit)
        .ok_or_else(|| "size too large".to_string())?;
    if size == 0 {
        return Err("size must be greater than zero".into());
    }
    Ok(size)
}

const DURATION_EXPECTED: &str = "expected a number followed by s, m, h or d (like 30s or 7d)";

/// Parses a duration: a whole number followed by s, m, h or d. Zero is
/// allowed here (`--shutdown-timeout 0s` means "do not wait"); see
/// [`parse_positive_duration`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(DURATION_EXPECTED.into()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .map(Duration::from_secs)
        .ok_or_else(|| DURATION_EXPECTED.into())
}

/// Parses a duration as [`parse_duration`] does, refusing zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    Ok(duration)
}

/// Parses a count that must be at least 1.
pub fn parse_positive_count(text: &str) -> Result<u64, String> {
    let count: u64 = text
        .parse()
        .map_err(|_| "expected a whole number, 1 or more".to_string())?;
    if count == 0 {
        return Err("the count must be at least 1".into());
    }
    Ok(count)
}

/// Parses permission bits given in octal, such as `0640` or `600`.
///
/// Only the read, write and execute bits (0777) are accepted: set-user-ID,
/// set-group-ID and sticky bits on log files or their directories are
/// never wanted, and for a root logpipe they would be dangerous.
pub fn parse_file_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text, 8)
        .ok()
        .filter(|_| !text.starts_with(['+', '-']))
        .ok_or_else(|| "expected octal permission bits such as 0640".to_string())?;
    if mode > 0o777 {
        return Err(
            "permission bits go up to 0777 (set-user-ID, set-group-ID and sticky bits are refused)"
                .into(),
        );
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok = [
            ("1", 1),
            ("4096", 4096),
            ("512K", 512 << 10),
            ("512KiB", 512 << 10),
            ("100M", 100 << 20),
            ("64MiB", 64 << 20),
            ("1G", 1 << 30),
            ("2GiB", 2 << 30),
            ("1T", 1 << 40),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "0",
            "0M",
            "12Q",
            "M",
            "-1",
            "1.5M",
            "1 M",
            "99999999999999999999",
            "16777216T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "30", "s", "1.5h", "1w", "-1d", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn positive_durations_and_counts() {
        assert_eq!(parse_positive_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(
            parse_positive_duration("30d"),
            Ok(Duration::from_secs(30 * 86_400))
        );
        for bad in ["0s", "0m", "0d", "", "1w"] {
            assert!(parse_positive_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_positive_count("1"), Ok(1));
        assert_eq!(parse_positive_count("30"), Ok(30));
        for bad in ["0", "00", "", "-1", "1.5", "many"] {
            assert!(parse_positive_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_file_mode("0640"), Ok(0o640));
        assert_eq!(parse_file_mode("600"), Ok(0o600));
        assert_eq!(parse_file_mode("0777"), Ok(0o777));
        assert_eq!(parse_file_mode("0"), Ok(0));
        for bad in [
            "",
            "8",
            "0x1",
            "77777",
            "rw-r-----",
            "4755",
            "2750",
            "1777",
            "7777",
            "01000",
            "+640",
            "-640",
        ] {
            assert!(parse_file_mode(bad).is_err(), "{bad} should be refused");
        }
    }
}
