//! The local time zone: what `TZ` says, or /etc/localtime, found without
//! depending on a zone database on disk.
//!
//! A container built `FROM scratch` or on a distroless image has no
//! /usr/share/zoneinfo and often no /etc/localtime. Every form of `TZ`
//! still works there:
//!
//! | `TZ` | zone |
//! |---|---|
//! | unset | /etc/localtime; UTC when it does not exist (as for the C library) |
//! | empty, or `:` | UTC |
//! | a POSIX rule: `UTC0`, `CET-1CEST,M3.5.0,M10.5.0/3` | that rule, no file needed |
//! | a name: `Europe/Berlin`, `UTC`, `:Europe/Berlin` | `$TZDIR/NAME` (default /usr/share/zoneinfo/NAME), else the copy of the IANA database built into logpipe |
//! | an absolute path: `/etc/zones/Berlin`, `:/etc/zones/Berlin` | that TZif file |
//!
//! The system's files come first, so that a system kept up to date wins
//! over the copy built in (which is as old as the logpipe binary). Files
//! are read directly, by name: jiff's own lookup (`TimeZone::try_system`)
//! first lists the whole of /usr/share/zoneinfo, which is most of what
//! logpipe's start-up would cost.
//!
//! A `TZ` that names nothing found is a warning, and UTC is used.

use std::ffi::OsStr;
use std::io;
use std::path::{Component, Path, PathBuf};

use jiff::tz::{TimeZone, TimeZoneDatabase};

/// The system's zone, when `TZ` is not set.
const LOCALTIME: &str = "/etc/localtime";

/// Where zone files are looked up by name, unless `TZDIR` says otherwise.
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// The local time zone; UTC, with a warning, when `TZ` or /etc/localtime
/// names a zone that cannot be found or read.
pub fn local() -> TimeZone {
    let tz = std::env::var_os("TZ");
    let tzdir = std::env::var_os("TZDIR");
    find(tz.as_deref(), tzdir.as_deref(), &|path| std::fs::read(path)).unwrap_or_else(|why| {
        crate::warning!("unable to find the local time zone, using UTC: {why}");
        TimeZone::UTC
    })
}

/// The zone that `TZ` (`tz`) names, with zone files looked up in `tzdir`
/// (else /usr/share/zoneinfo) and read with `read`; or why there is none.
pub fn find(
    tz: Option<&OsStr>,
    tzdir: Option<&OsStr>,
    read: &dyn Fn(&Path) -> io::Result<Vec<u8>>,
) -> Result<TimeZone, String> {
    let Some(tz) = tz else {
        return match read(Path::new(LOCALTIME)) {
            Ok(data) => TimeZone::tzif(LOCALTIME, &data)
                .map_err(|e| format!("{LOCALTIME} is not a time zone file: {e}")),
            // No zone configured at all: UTC, as for every other program.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TimeZone::UTC),
            Err(e) => Err(format!("unable to read {LOCALTIME}: {e}")),
        };
    };
    let Some(text) = tz.to_str() else {
        return Err(format!("TZ={} is not UTF-8", tz.to_string_lossy()));
    };
    // `:` introduces a name or path, never a rule (POSIX leaves its meaning
    // to the implementation; this is glibc's and musl's).
    if let Some(name) = text.strip_prefix(':') {
        return by_name(text, name, tzdir, read);
    }
    if text.is_empty() {
        return Ok(TimeZone::UTC);
    }
    match TimeZone::posix(text) {
        Ok(tz) => Ok(tz),
        Err(_) => by_name(text, text, tzdir, read),
    }
}

/// The zone `name` (from `TZ=text`): a file by absolute path, or a zone
/// name looked up in `tzdir`, then in the database built in.
fn by_name(
    text: &str,
    name: &str,
    tzdir: Option<&OsStr>,
    read: &dyn Fn(&Path) -> io::Result<Vec<u8>>,
) -> Result<TimeZone, String> {
    if name.is_empty() {
        return Ok(TimeZone::UTC);
    }
    if name.starts_with('/') {
        let data = read(Path::new(name)).map_err(|e| format!("TZ={text}: {e}"))?;
        return TimeZone::tzif(name, &data)
            .map_err(|e| format!("TZ={text}: {name} is not a time zone file: {e}"));
    }
    // A name stays inside the zone directory.
    let relative = Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if !relative {
        return Err(format!("TZ={text} is not a time zone name"));
    }
    let dir = tzdir.map_or_else(|| PathBuf::from(ZONEINFO), PathBuf::from);
    let from_disk = match read(&dir.join(name)) {
        Ok(data) => Some(TimeZone::tzif(name, &data).map_err(|e| {
            format!(
                "TZ={text}: {} is not a time zone file: {e}",
                dir.join(name).display()
            )
        })),
        Err(_) => None,
    };
    match from_disk {
        Some(Ok(tz)) => Ok(tz),
        // A damaged file on disk: the copy built in is better than UTC.
        Some(Err(why)) => built_in(name).ok_or(why),
        None => built_in(name).ok_or_else(|| {
            format!(
                "TZ={text}: no zone {name} in {} nor in the zone database built into logpipe",
                dir.display()
            )
        }),
    }
}

/// The zone `name` from the copy of the IANA database built into logpipe
/// (jiff's `tzdb-bundle-always`).
fn built_in(name: &str) -> Option<TimeZone> {
    TimeZoneDatabase::bundled().get(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    /// A file system with no zone files at all, as in a scratch container.
    fn empty(_: &Path) -> io::Result<Vec<u8>> {
        Err(io::ErrorKind::NotFound.into())
    }

    fn find_in(tz: Option<&str>, read: &dyn Fn(&Path) -> io::Result<Vec<u8>>) -> TimeZone {
        find(tz.map(OsStr::new), None, read).unwrap_or_else(|e| panic!("{tz:?}: {e}"))
    }

    /// The UTC offset of `tz` at `at`, in seconds.
    fn offset(tz: &TimeZone, at: &str) -> i32 {
        tz.to_offset(at.parse::<Timestamp>().unwrap()).seconds()
    }

    const SUMMER: &str = "2026-07-01T12:00:00Z";
    const WINTER: &str = "2026-01-15T12:00:00Z";

    fn assert_berlin(tz: &TimeZone, what: &str) {
        assert_eq!(offset(tz, SUMMER), 7200, "{what} in summer");
        assert_eq!(offset(tz, WINTER), 3600, "{what} in winter");
    }

    #[test]
    fn every_form_of_tz_works_without_zone_files() {
        for tz in ["", ":", "UTC", "UTC0", ":UTC", "Etc/UTC", "GMT", "utc"] {
            let zone = find_in(Some(tz), &empty);
            assert_eq!(offset(&zone, SUMMER), 0, "TZ={tz}");
            assert_eq!(offset(&zone, WINTER), 0, "TZ={tz}");
        }
        for tz in [
            "CET-1CEST,M3.5.0,M10.5.0/3",
            "Europe/Berlin",
            ":Europe/Berlin",
        ] {
            assert_berlin(&find_in(Some(tz), &empty), tz);
        }
        let ny = find_in(Some("America/New_York"), &empty);
        assert_eq!(offset(&ny, SUMMER), -4 * 3600);
        assert_eq!(offset(&ny, WINTER), -5 * 3600);
    }

    #[test]
    fn without_tz_and_without_etc_localtime_the_zone_is_utc() {
        let zone = find_in(None, &empty);
        assert_eq!(zone, TimeZone::UTC);
    }

    /// A TZif file (version 2) of a zone fixed at `hours` east of UTC,
    /// named `<+HH>`.
    fn fixed_tzif(hours: i32) -> Vec<u8> {
        let abbr = format!("+{hours:02}");
        let block = |out: &mut Vec<u8>, version: u8| {
            out.extend_from_slice(b"TZif");
            out.push(version);
            out.extend_from_slice(&[0; 15]);
            // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
            let chars = abbr.len() as u32 + 1;
            for count in [0u32, 0, 0, 0, 1, chars] {
                out.extend_from_slice(&count.to_be_bytes());
            }
            out.extend_from_slice(&(hours * 3600).to_be_bytes());
            out.extend_from_slice(&[0, 0]); // not DST, abbreviation 0
            out.extend_from_slice(abbr.as_bytes());
            out.push(0);
        };
        let mut out = Vec::new();
        block(&mut out, b'2');
        block(&mut out, b'2');
        out.extend_from_slice(format!("\n<{abbr}>-{hours}\n").as_bytes());
        out
    }

    #[test]
    fn the_systems_files_come_first() {
        // Zone files that differ from the real zones of their names, so
        // that using them shows.
        let read = |path: &Path| -> io::Result<Vec<u8>> {
            match path.to_str() {
                Some("/etc/localtime" | "/zones/Local/Mine" | "/abs/zone") => Ok(fixed_tzif(5)),
                Some("/usr/share/zoneinfo/Europe/Berlin") => Ok(fixed_tzif(6)),
                _ => Err(io::ErrorKind::NotFound.into()),
            }
        };
        let hours = |tz: &TimeZone| offset(tz, SUMMER) / 3600;
        assert_eq!(hours(&find_in(None, &read)), 5, "/etc/localtime");
        assert_eq!(hours(&find_in(Some("/abs/zone"), &read)), 5);
        assert_eq!(hours(&find_in(Some(":/abs/zone"), &read)), 5);
        assert_eq!(hours(&find_in(Some("Europe/Berlin"), &read)), 6);
        assert_eq!(hours(&find_in(Some(":Europe/Berlin"), &read)), 6);
        // TZDIR moves the lookup by name.
        let mine = find(
            Some(OsStr::new("Local/Mine")),
            Some(OsStr::new("/zones")),
            &read,
        );
        assert_eq!(hours(&mine.unwrap()), 5);
        // A name the system lacks comes from the copy built in.
        let ny = find_in(Some("America/New_York"), &read);
        assert_eq!(offset(&ny, WINTER), -5 * 3600);
        // A rule needs no file, even where the system has one by that name.
        assert_eq!(hours(&find_in(Some("UTC0"), &read)), 0);
    }

    #[test]
    fn names_that_cannot_be_found_are_errors() {
        for tz in [
            "Nowhere/Atlantis",
            "../../etc/passwd",
            "Europe/../../x",
            "/no/such/file",
            ":/no/such/file",
        ] {
            let err = find(Some(OsStr::new(tz)), None, &empty).unwrap_err();
            assert!(err.contains(tz.trim_start_matches(':')), "{tz}: {err}");
        }
        // A file that is not TZif.
        let garbage = |_: &Path| Ok(b"not a zone".to_vec());
        assert!(
            find(None, None, &garbage)
                .unwrap_err()
                .contains("/etc/localtime")
        );
        // Unreadable for another reason than absence.
        let denied = |_: &Path| Err(io::ErrorKind::PermissionDenied.into());
        assert!(
            find(None, None, &denied)
                .unwrap_err()
                .contains("unable to read")
        );
    }
}
