//! Segment numbers that are never reused.
//!
//! The next number for a date is one more than the highest ever used for
//! that date on this target: the highest found on disk in any form at start,
//! merged with what the state file remembers. The state file is what keeps
//! a name from coming back after a shipper moved segments away or retention
//! deleted them; downstream archives key on these names.
//!
//! The state file is plain text, one `YYYY-MM-DD.N` line per date (the
//! highest segment name suffix used for that date), rewritten each time a
//! number is taken, before the segment gets that name: in place with one
//! write while it fits in a page (a few hundred dates), else through a
//! temporary and a rename; either way a crash leaves the old text or the
//! new one. The worker thread fsyncs it with the
//! segment, off the reading loop.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, Result};
use jiff::civil::Date;

use crate::naming::{self, SegmentId};
use crate::target::Target;

/// How many dates the state file remembers. Dates only come back after a
/// clock step backwards; a year of them covers any step seen in practice
/// and keeps the file, rewritten at every rotation, a few KiB.
const REMEMBERED_DATES: usize = 366;

/// Up to this length the state file is rewritten in place, with one
/// `pwrite(2)` that stays within one page: a kill cannot cut such a write
/// in half (the kernel looks for fatal signals only between pages), and it
/// spares the filesystem a new inode at every rotation. A longer text
/// replaces the file through a temporary and a rename.
const IN_PLACE_MAX: usize = 4096;

/// The highest segment number used per date on one target.
#[derive(Debug)]
pub struct Numbering {
    highest: BTreeMap<Date, u64>,
    state: PathBuf,
    /// Permission bits of the state file.
    mode: u32,
    /// The state file, kept open to be rewritten in place, and its length.
    open: Option<(File, u64)>,
}

impl Numbering {
    /// Loads the numbering of `target`: its state file merged with a scan of
    /// its directory. A missing state file is an empty one; lines that do
    /// not parse are reported once and ignored. The state file, when
    /// written, gets permission bits `mode`.
    pub fn load(target: &Target, mode: u32) -> Result<Numbering> {
        let state = target.state();
        let mut numbering = Numbering {
            highest: BTreeMap::new(),
            state,
            mode,
            open: None,
        };
        numbering.read_state()?;
        let entries = fs::read_dir(&target.dir)
            .with_context(|| format!("unable to list {}", target.dir.display()))?;
        let active = target.name.as_bytes();
        for entry in entries {
            let entry =
                entry.with_context(|| format!("unable to list {}", target.dir.display()))?;
            if let Some((id, _suffix)) = naming::parse(active, entry.file_name().as_bytes()) {
                numbering.note(id);
            }
        }
        Ok(numbering)
    }

    fn read_state(&mut self) -> Result<()> {
        let text = match fs::read(&self.state) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("unable to read {}", self.state.display()));
            }
        };
        let mut bad_lines = 0;
        for line in text.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            match naming::parse_id(line) {
                Some((id, b"")) => self.note(id),
                _ => bad_lines += 1,
            }
        }
        if bad_lines > 0 {
            crate::warning!(
                "ignoring {bad_lines} unreadable line(s) in {}",
                self.state.display()
            );
        }
        Ok(())
    }

    /// Records that `id` is in use, so no later segment takes its number.
    pub fn note(&mut self, id: SegmentId) {
        let highest = self.highest.entry(id.date).or_insert(0);
        *highest = (*highest).max(id.n);
    }

    /// Forgets the dates before `date` (for tests of a shrinking text).
    #[cfg(test)]
    fn forget_before(&mut self, date: Date) {
        self.highest.retain(|&d, _| d >= date);
    }

    /// Takes the next number for `date` and records it in the state file
    /// before anything is named after it.
    pub fn take(&mut self, date: Date) -> Result<SegmentId> {
        // Changed on a copy, kept only once the state file has it: a failed
        // write (a full disk) costs no number.
        let mut highest = self.highest.clone();
        let n = highest.entry(date).or_insert(0);
        *n = n
            .checked_add(1)
            .with_context(|| format!("no segment number left for {date}"))?;
        let id = SegmentId { date, n: *n };
        // Forget the oldest dates, but never the one just taken, even when a
        // clock step made it the oldest.
        while highest.len() > REMEMBERED_DATES {
            let oldest = highest.keys().find(|&&d| d != date).copied();
            if let Some(oldest) = oldest {
                highest.remove(&oldest);
            }
        }
        self.write_state(&highest)?;
        self.highest = highest;
        Ok(id)
    }

    /// Writes `highest` to the state file: in place when short enough
    /// (padded with empty lines, which reading skips, so that nothing of a
    /// longer old text is left), else through a temporary and a rename.
    /// Not synced here: the worker thread syncs the state file, and the
    /// directory, with the segment named after it.
    fn write_state(&mut self, highest: &BTreeMap<Date, u64>) -> Result<()> {
        let mut text = Vec::with_capacity(highest.len() * 16);
        for (&date, &n) in highest {
            writeln!(text, "{}", SegmentId { date, n }).expect("writing to a Vec cannot fail");
        }
        let result = if text.len() <= IN_PLACE_MAX {
            self.write_in_place(text)
        } else {
            self.open = None;
            self.replace(&text)
        };
        result.with_context(|| format!("unable to write {}", self.state.display()))
    }

    fn write_in_place(&mut self, mut text: Vec<u8>) -> io::Result<()> {
        // A state file removed or replaced from outside is opened anew.
        if let Some((file, _)) = &self.open
            && file.metadata()?.nlink() == 0
        {
            self.open = None;
        }
        let (file, len) = match &mut self.open {
            Some(open) => open,
            None => {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&self.state)?;
                file.set_permissions(fs::Permissions::from_mode(self.mode))?;
                let len = file.metadata()?.len();
                self.open.insert((file, len))
            }
        };
        if *len > IN_PLACE_MAX as u64 {
            // Left long by an earlier run: replace it once.
            self.open = None;
            return self.replace(&text);
        }
        text.resize(text.len().max(*len as usize), b'\n');
        let n = file.write_at(&text, 0)?;
        if n < text.len() {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *len = n as u64;
        Ok(())
    }

    /// Replaces the state file atomically: a temporary, then a rename.
    fn replace(&self, text: &[u8]) -> io::Result<()> {
        let mut tmp = self.state.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(self.mode))?;
        file.write_all(text)?;
        fs::rename(&tmp, &self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use std::path::Path;

    fn target(dir: &Path) -> Target {
        Target::resolve(&dir.join("app.log"), None).unwrap()
    }

    #[test]
    fn empty_directory_starts_at_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut numbering = Numbering::load(&target(dir.path()), 0o640).unwrap();
        let day = date(2026, 11, 21);
        assert_eq!(numbering.take(day).unwrap(), SegmentId { date: day, n: 1 });
        assert_eq!(numbering.take(day).unwrap(), SegmentId { date: day, n: 2 });
        let other = date(2026, 11, 22);
        assert_eq!(
            numbering.take(other).unwrap(),
            SegmentId { date: other, n: 1 }
        );
    }

    #[test]
    fn files_in_any_form_claim_numbers() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "app.log.2026-11-21.3.gz",
            "app.log.2026-11-21.5.gz.tmp",
            "app.log.2026-11-21.9x",
            "other.2026-11-21.40",
        ] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        let mut numbering = Numbering::load(&target(dir.path()), 0o640).unwrap();
        assert_eq!(numbering.take(date(2026, 11, 21)).unwrap().n, 6);
    }

    #[test]
    fn state_file_outlives_the_segments() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let day = date(2026, 11, 21);
        let mut numbering = Numbering::load(&t, 0o640).unwrap();
        for _ in 0..4 {
            numbering.take(day).unwrap();
        }
        // No segment exists on disk, yet the numbers are remembered.
        let mut numbering = Numbering::load(&t, 0o640).unwrap();
        assert_eq!(numbering.take(day).unwrap().n, 5);
        assert_eq!(fs::read_to_string(t.state()).unwrap(), "2026-11-21.5\n");
    }

    #[test]
    fn state_file_is_rewritten_in_place_and_reopened_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        // A longer text from an earlier run: padded over, never left behind.
        fs::write(t.state(), "2026-11-20.123456\n2026-11-21.2\n").unwrap();
        let inode = fs::metadata(t.state()).unwrap().ino();
        let mut numbering = Numbering::load(&t, 0o640).unwrap();
        numbering.forget_before(date(2026, 11, 21));
        numbering.take(date(2026, 11, 21)).unwrap();
        assert_eq!(fs::metadata(t.state()).unwrap().ino(), inode);
        let text = fs::read_to_string(t.state()).unwrap();
        assert_eq!(text.trim_end_matches('\n'), "2026-11-21.3");
        // Removed from outside: made again, not written into the void.
        fs::remove_file(t.state()).unwrap();
        numbering.take(date(2026, 11, 21)).unwrap();
        assert_eq!(fs::read_to_string(t.state()).unwrap(), "2026-11-21.4\n");
        let mut reloaded = Numbering::load(&t, 0o640).unwrap();
        assert_eq!(reloaded.take(date(2026, 11, 21)).unwrap().n, 5);
    }

    #[test]
    fn unreadable_state_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        fs::write(
            t.state(),
            "garbage\n2026-11-21.7\n2026-11-21\n2026-02-30.4\n2026-11-21.8x\n",
        )
        .unwrap();
        let mut numbering = Numbering::load(&t, 0o640).unwrap();
        assert_eq!(numbering.take(date(2026, 11, 21)).unwrap().n, 8);
    }

    #[test]
    fn the_highest_number_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        fs::write(t.state(), format!("2026-11-21.{}\n", u64::MAX)).unwrap();
        let mut numbering = Numbering::load(&t, 0o640).unwrap();
        let err = numbering.take(date(2026, 11, 21)).unwrap_err();
        assert_eq!(format!("{err:#}"), "no segment number left for 2026-11-21");
    }

    #[test]
    fn state_file_keeps_recent_dates_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let mut numbering = Numbering::load(&t, 0o640).unwrap();
        let first = date(2020, 1, 1);
        for days in 0..400 {
            numbering
                .take(first + jiff::Span::new().days(days))
                .unwrap();
        }
        let text = fs::read_to_string(t.state()).unwrap();
        assert_eq!(text.lines().count(), REMEMBERED_DATES);
        assert!(!text.contains("2020-01-01."));
        // A clock stepped far back: its date is the oldest, yet it is kept,
        // so the number is not handed out twice.
        let past = date(2010, 1, 1);
        assert_eq!(numbering.take(past).unwrap().n, 1);
        assert_eq!(numbering.take(past).unwrap().n, 2);
        let mut reloaded = Numbering::load(&t, 0o640).unwrap();
        assert_eq!(reloaded.take(past).unwrap().n, 3);
    }
}
