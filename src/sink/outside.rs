//! What others do to the active file while logpipe writes it: remove it
//! (with its directory, say), or move it away (a tool that expects a
//! SIGHUP afterwards). Nothing written may be lost to either, and the
//! single-writer lock must hold throughout.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::Sink;
use crate::lock;
use crate::sys::{self, Access, Dir};

/// A removed active file being put back: the directory it goes in, the
/// new file, and its length before the copy began.
#[derive(Debug)]
pub(super) struct Relinking {
    dir: Arc<Dir>,
    file: File,
    base: u64,
}

impl Sink {
    /// If the active file was removed from under logpipe, makes the
    /// directory again if it went too, and puts a new active file at the
    /// name with everything the removed one held, so nothing written is
    /// lost. A failed attempt resumes where it stopped: the copy goes on
    /// from the length the new file already has.
    pub(super) fn try_relink(&mut self) -> Result<()> {
        if self.relinking.is_none() {
            if !self.active.is_unlinked()? {
                return Ok(());
            }
            let dir = self.dir_in_place()?;
            let path = self.path();
            let target = self.active.target();
            let (file, _) = dir
                .open_or_create(&target.name, self.active.mode(), Access::Append)
                .with_context(|| format!("unable to open {}", path.display()))?;
            let base = sys::meta(&file)
                .with_context(|| format!("unable to stat {}", path.display()))?
                .len;
            self.relinking = Some(Relinking { dir, file, base });
        }
        let Some(relinking) = &self.relinking else {
            return Ok(());
        };
        let path = self.path();
        let context = || {
            format!(
                "unable to write {} again after it was removed",
                path.display()
            )
        };
        let mut at = sys::meta(&relinking.file).with_context(context)?.len - relinking.base;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.active.read_at(&mut buf, at).with_context(context)?;
            if n == 0 {
                break;
            }
            (&relinking.file)
                .write_all(&buf[..n])
                .with_context(context)?;
            at += n as u64;
        }
        crate::info!(
            "{} was removed while in use; made it again with the {at} bytes it held",
            path.display()
        );
        if let Some(Relinking { dir, file, base }) = self.relinking.take() {
            self.active.replace(dir, file, base + at);
        }
        Ok(())
    }

    /// The target's directory: the one logpipe opened, or, if that was
    /// removed, the directory made again by its path, with the lock taken
    /// again in it first, so that a second logpipe can never start on the
    /// new directory while this one writes there.
    fn dir_in_place(&mut self) -> Result<Arc<Dir>> {
        let dir = self.active.dir().clone();
        let target = self.active.target().clone();
        let removed = dir
            .is_removed()
            .with_context(|| format!("unable to stat {}", target.dir.display()))?;
        if !removed {
            return Ok(dir);
        }
        target.create_dir(self.options.dir_mode)?;
        let new = Arc::new(
            Dir::open(&target.dir)
                .with_context(|| format!("unable to open directory {}", target.dir.display()))?,
        );
        self.lock = lock::acquire(&new, &target, self.options.mode)?;
        self.numbering.moved(new.clone());
        self.moved = Some(new.clone());
        crate::info!(
            "directory {} was removed while in use; made it again, and locked it",
            target.dir.display()
        );
        Ok(new)
    }
}
