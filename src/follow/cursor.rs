//! `--cursor FILE`: where a reader stopped, so that the next run resumes
//! at the next line.
//!
//! The file holds one [`Position`] line. It is replaced whole (a new
//! temporary, written, fsynced, renamed over it), so a crash leaves the old
//! position or the new one. A save costs an fsync, so saves are batched,
//! as a shipper's checkpoints are: at most one per [`INTERVAL`] while lines
//! flow, and one at a clean stop. After a SIGKILL the lines read since the
//! last save are read again; none is missed.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::position::Position;
use crate::sys::{Access, Placed};

/// The longest time between two saves while lines flow.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Permission bits of the cursor file.
const MODE: u32 = 0o644;

/// The cursor file.
#[derive(Debug)]
pub struct Cursor {
    /// The cursor file, in its directory opened once.
    file: Placed,
    path: PathBuf,
    /// What the file holds now.
    saved: Option<Position>,
    last_save: Instant,
}

impl Cursor {
    /// Opens the directory of `path` (following a symbolic link there,
    /// once, as for TARGET) and reads the position it holds, if any.
    pub fn open(path: &Path) -> Result<Cursor> {
        let file = Placed::open(path, "--cursor")?;
        let mut cursor = Cursor {
            file,
            path: path.to_path_buf(),
            saved: None,
            last_save: Instant::now(),
        };
        cursor.saved = cursor.read()?;
        Ok(cursor)
    }

    /// The position the file held at start.
    pub fn saved(&self) -> Option<Position> {
        self.saved
    }

    fn read(&self) -> Result<Option<Position>> {
        let context = || format!("unable to read cursor {}", self.path.display());
        let mut text = String::new();
        match self.file.dir.open_file(&self.file.name, Access::Read) {
            Ok(mut file) => {
                file.read_to_string(&mut text).with_context(context)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(context),
        }
        match Position::parse(text.trim_end_matches('\n')) {
            Some(position) => Ok(Some(position)),
            None => bail!(
                "unable to read cursor {}: '{}' is not a position logpipe wrote",
                self.path.display(),
                text.trim_end().escape_default()
            ),
        }
    }

    /// Saves `position` if it changed and the last save is [`INTERVAL`]
    /// old.
    pub fn save_in_time(&mut self, position: Position) -> Result<()> {
        if self.last_save.elapsed() >= INTERVAL {
            self.save(position)?;
        }
        Ok(())
    }

    /// Saves `position` now, if it changed.
    pub fn save(&mut self, position: Position) -> Result<()> {
        self.last_save = Instant::now();
        if self.saved == Some(position) {
            return Ok(());
        }
        let text = format!("{position}\n");
        self.file
            .replace(MODE, text.as_bytes(), true)
            .with_context(|| format!("unable to write cursor {}", self.path.display()))?;
        self.saved = Some(position);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::SegmentId;

    #[test]
    fn a_saved_position_is_read_back_and_junk_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cursor");
        let mut cursor = Cursor::open(&path).unwrap();
        assert_eq!(cursor.saved(), None);
        let position = Position::Segment {
            id: SegmentId {
                date: jiff::civil::date(2026, 11, 21),
                n: 3,
            },
            offset: 42,
        };
        cursor.save(position).unwrap();
        assert_eq!(Cursor::open(&path).unwrap().saved(), Some(position));
        assert!(!tmp.path().join(".cursor.tmp").exists());
        std::fs::write(&path, "segment x\n").unwrap();
        let message = format!("{:#}", Cursor::open(&path).unwrap_err());
        assert!(
            message.ends_with("cursor: 'segment x' is not a position logpipe wrote"),
            "{message}"
        );
    }
}
