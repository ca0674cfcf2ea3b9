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
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use jiff::civil::Date;

use crate::inventory;
use crate::naming::{self, SegmentId};
use crate::sys::{self, Access, Dir};
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

/// Every number of a date is used (u64::MAX of them, or a state file that
/// says so): no wait makes one free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoNumberLeft(pub Date);

impl std::fmt::Display for NoNumberLeft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no segment number left for {}", self.0)
    }
}

impl std::error::Error for NoNumberLeft {}

/// The highest segment number used per date on one target.
#[derive(Debug)]
pub struct Numbering {
    highest: BTreeMap<Date, u64>,
    /// The target's directory, where the state file lives.
    dir: Arc<Dir>,
    /// The state file's name in `dir`, and its path for messages.
    name: OsString,
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
    pub fn load(dir: Arc<Dir>, target: &Target, mode: u32) -> Result<Numbering> {
        let mut numbering = Numbering {
            highest: BTreeMap::new(),
            dir,
            name: target.state_name(),
            state: target.state(),
            mode,
            open: None,
        };
        numbering.read_state()?;
        numbering.retire_legacy(target)?;
        let entries = inventory::scan(&numbering.dir, &target.name)
            .with_context(|| format!("unable to list {}", target.dir.display()))?;
        for entry in entries {
            numbering.note(entry.id);
        }
        Ok(numbering)
    }

    /// Goes on in `dir`, the target's directory made again after it was
    /// removed (with the state file in it).
    pub fn moved(&mut self, dir: Arc<Dir>) {
        self.dir = dir;
        self.open = None;
    }

    /// Takes over the state file of earlier versions
    /// (`<active>.state`): its numbers are merged in and written to the
    /// state file under its new name, and only then is the old name
    /// removed, so that a crash in between loses no number. A file of that
    /// name that logpipe could not have made is not read.
    fn retire_legacy(&mut self, target: &Target) -> Result<()> {
        let name = target.legacy_state_name();
        let path = target.path_of(&name);
        match self.dir.stat(&name) {
            Ok(Some(meta)) if meta.is_ours() => {}
            Ok(None) | Err(_) => return Ok(()),
            Ok(Some(_)) => {
                crate::warning!(
                    "not reading {}: logpipe did not make it; segment numbers now live in {}",
                    path.display(),
                    self.state.display()
                );
                return Ok(());
            }
        }
        let mut text = Vec::new();
        self.dir
            .open_file(&name, Access::Read)
            .and_then(|mut file| file.read_to_end(&mut text))
            .with_context(|| format!("unable to read {}", path.display()))?;
        for line in text.split(|&b| b == b'\n') {
            if let Some((id, b"")) = naming::parse_id(line) {
                self.note(id);
            }
        }
        let highest = self.highest.clone();
        self.write_state(&highest)?;
        let synced = match &self.open {
            Some((file, _)) => file.sync_all(),
            None => Ok(()),
        };
        synced.with_context(|| format!("unable to write {}", self.state.display()))?;
        self.dir
            .sync()
            .and_then(|()| self.dir.remove_ours(&name))
            .with_context(|| format!("unable to remove {}", path.display()))?;
        crate::info!(
            "moved {} to {} (its name in this version)",
            path.display(),
            self.state.display()
        );
        Ok(())
    }

    fn read_state(&mut self) -> Result<()> {
        let context = || format!("unable to read {}", self.state.display());
        let mut text = Vec::new();
        match self.dir.open_file(&self.name, Access::Read) {
            Ok(mut file) => {
                check_ours(&file).with_context(context)?;
                file.read_to_end(&mut text).with_context(context)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(context),
        }
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
        *n = n.checked_add(1).ok_or(NoNumberLeft(date))?;
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
            && sys::meta(file)?.nlink == 0
        {
            self.open = None;
        }
        let (file, len) = match &mut self.open {
            Some(open) => open,
            None => {
                let (file, created) =
                    self.dir
                        .open_or_create(&self.name, self.mode, Access::ReadWrite)?;
                if !created {
                    check_ours(&file)?;
                }
                let len = sys::meta(&file)?.len;
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

    /// Replaces the state file atomically, through `.<active>.state.tmp`
    /// (never one that exists: a stale one of ours is removed first,
    /// anything else there makes this fail).
    fn replace(&self, text: &[u8]) -> io::Result<()> {
        let mut tmp = self.name.clone();
        tmp.push(".tmp");
        self.dir.replace(&self.name, &tmp, self.mode, text, false)
    }
}

/// An existing state file is rewritten in place, so it must be one logpipe
/// could have made: not a hard link to some other file, not a stranger's.
fn check_ours(file: &File) -> io::Result<()> {
    let meta = sys::meta(file)?;
    if meta.nlink > 1 {
        return Err(io::Error::other(format!(
            "it has {} names (a hard link to another file)",
            meta.nlink
        )));
    }
    if !sys::is_our_uid(meta.uid) {
        return Err(io::Error::other(format!(
            "owned by uid {}, not by {}",
            meta.uid,
            sys::our_uids()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    fn target(dir: &Path) -> Target {
        Target::resolve(&dir.join("app.log"), None).unwrap()
    }

    fn load(t: &Target) -> Numbering {
        Numbering::load(Arc::new(Dir::open(&t.dir).unwrap()), t, 0o640).unwrap()
    }

    #[test]
    fn empty_directory_starts_at_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut numbering = load(&target(dir.path()));
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
        let mut numbering = load(&target(dir.path()));
        assert_eq!(numbering.take(date(2026, 11, 21)).unwrap().n, 6);
    }

    #[test]
    fn state_file_outlives_the_segments() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let day = date(2026, 11, 21);
        let mut numbering = load(&t);
        for _ in 0..4 {
            numbering.take(day).unwrap();
        }
        // No segment exists on disk, yet the numbers are remembered.
        let mut numbering = load(&t);
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
        let mut numbering = load(&t);
        numbering.forget_before(date(2026, 11, 21));
        numbering.take(date(2026, 11, 21)).unwrap();
        assert_eq!(fs::metadata(t.state()).unwrap().ino(), inode);
        let text = fs::read_to_string(t.state()).unwrap();
        assert_eq!(text.trim_end_matches('\n'), "2026-11-21.3");
        // Removed from outside: made again, not written into the void.
        fs::remove_file(t.state()).unwrap();
        numbering.take(date(2026, 11, 21)).unwrap();
        assert_eq!(fs::read_to_string(t.state()).unwrap(), "2026-11-21.4\n");
        let mut reloaded = load(&t);
        assert_eq!(reloaded.take(date(2026, 11, 21)).unwrap().n, 5);
    }

    #[test]
    fn the_state_file_of_an_earlier_release_is_merged_and_moved() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let legacy = t.path_of(&t.legacy_state_name());
        fs::write(&legacy, "2026-11-20.2\n2026-11-21.9\n").unwrap();
        fs::write(t.state(), "2026-11-21.3\n2026-11-22.1\n").unwrap();
        let mut numbering = load(&t);
        assert!(!legacy.exists());
        assert_eq!(
            fs::read_to_string(t.state()).unwrap(),
            "2026-11-20.2\n2026-11-21.9\n2026-11-22.1\n"
        );
        assert_eq!(numbering.take(date(2026, 11, 21)).unwrap().n, 10);
        // Alone, it is simply moved.
        fs::remove_file(t.state()).unwrap();
        fs::write(&legacy, "2026-11-21.40\n").unwrap();
        let mut numbering = load(&t);
        assert!(!legacy.exists());
        assert_eq!(numbering.take(date(2026, 11, 21)).unwrap().n, 41);
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
        let mut numbering = load(&t);
        assert_eq!(numbering.take(date(2026, 11, 21)).unwrap().n, 8);
    }

    #[test]
    fn the_highest_number_is_an_error_not_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        fs::write(t.state(), format!("2026-11-21.{}\n", u64::MAX)).unwrap();
        let mut numbering = load(&t);
        let err = numbering.take(date(2026, 11, 21)).unwrap_err();
        assert_eq!(format!("{err:#}"), "no segment number left for 2026-11-21");
    }

    #[test]
    fn state_file_keeps_recent_dates_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let mut numbering = load(&t);
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
        let mut reloaded = load(&t);
        assert_eq!(reloaded.take(past).unwrap().n, 3);
    }
}
