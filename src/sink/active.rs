//! The active file: the one open file logpipe appends to, and what it
//! takes to finish it as a segment and start the next.
//!
//! Every name is relative to the target's directory descriptor
//! ([`crate::sys::Dir`]): an existing active file is continued only if it
//! is a regular file (a symbolic link, device, FIFO, socket or directory
//! under the active name is refused), and a new one is created with
//! `O_EXCL`, so a name planted meanwhile is never followed.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::inventory;
use crate::sys::{self, Access, Dir};
use crate::target::Target;

/// The open active file and what is known of it.
#[derive(Debug)]
pub struct Active {
    dir: Arc<Dir>,
    target: Target,
    /// Permission bits for a new active file.
    mode: u32,
    file: File,
    /// Bytes in the file.
    written: u64,
    /// The file ends inside a line (its last byte is not `\n`).
    mid_line: bool,
    /// The oldest write not yet fsynced, for `--fsync DURATION`.
    unsynced_since: Option<Instant>,
    /// An fsync of the active file failed during this run.
    sync_failed: bool,
}

impl Active {
    /// Opens the active file of `target` in `dir` for appending, creating
    /// it with exactly `mode` if missing. Returns it with the time it was
    /// last written if it already held something.
    ///
    /// An active file that is also a finished segment (a crash between the
    /// link and the unlink of a rotation on a filesystem without
    /// `RENAME_NOREPLACE`) is left to the segment and a fresh one started.
    /// Any other second name means the file is not the one logpipe made:
    /// it is refused rather than written through.
    pub fn open(dir: Arc<Dir>, target: Target, mode: u32) -> Result<(Active, Option<SystemTime>)> {
        let path = target.active();
        let context = || format!("unable to open {}", path.display());
        let (mut file, mut created) = dir
            .open_or_create(&target.name, mode, Access::Append)
            .with_context(context)?;
        let mut meta = sys::meta(&file).with_context(context)?;
        if meta.nlink > 1 {
            if !is_also_a_segment(&dir, &target, &meta)? {
                bail!(
                    "unable to open {}: it has {} names (a hard link to another file); logpipe writes only a file of its own",
                    path.display(),
                    meta.nlink
                );
            }
            crate::info!(
                "removing {}: an interrupted rotation left it as a second name of a finished segment",
                path.display()
            );
            dir.unlink(&target.name)
                .with_context(|| format!("unable to remove {}", path.display()))?;
            (file, created) = dir
                .open_or_create(&target.name, mode, Access::Append)
                .with_context(context)?;
            meta = sys::meta(&file).with_context(context)?;
        }
        if !created && !sys::is_our_uid(meta.uid) {
            crate::warning!(
                "{} is owned by uid {}, not by {}; appending to it",
                path.display(),
                meta.uid,
                sys::our_uids()
            );
        }
        let mid_line = ends_mid_line(&file, meta.len)
            .with_context(|| format!("unable to read {}", path.display()))?;
        crate::metrics::active_size(meta.len);
        let active = Active {
            dir,
            target,
            mode,
            file,
            written: meta.len,
            mid_line,
            unsynced_since: None,
            sync_failed: false,
        };
        Ok((active, (meta.len > 0).then_some(meta.modified)))
    }

    /// The active file's path, for messages.
    pub fn path(&self) -> PathBuf {
        self.target.active()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn dir(&self) -> &Arc<Dir> {
        &self.dir
    }

    /// Bytes in the active file.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the file ends inside a line.
    pub fn mid_line(&self) -> bool {
        self.mid_line
    }

    /// Appends from `bytes` with one `write(2)` (more only if the kernel
    /// takes less), leaving in `bytes` what is not written when a write
    /// fails.
    pub fn append(&mut self, bytes: &mut &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.file.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n as u64;
                    crate::metrics::written(n, self.written);
                    self.mid_line = bytes[n - 1] != b'\n';
                    *bytes = &bytes[n..];
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Since when written data waits for an fsync.
    pub fn unsynced_since(&self) -> Option<Instant> {
        self.unsynced_since
    }

    /// Fsyncs what was written and not synced yet; returns false if that
    /// failed (said here, once per failure).
    ///
    /// A failed fsync is not retried: after one, Linux may have dropped the
    /// unwritten pages and the next fsync would succeed without them, so a
    /// retry would only hide the loss. It is remembered instead, and makes
    /// the run end with exit status 1.
    pub fn sync(&mut self) -> bool {
        if self.unsynced_since.take().is_some()
            && let Err(e) = self.file.sync_data()
        {
            crate::warning!(
                "unable to sync {}: {e}; what was written since the last sync may not be on disk",
                self.path().display()
            );
            self.sync_failed = true;
            return false;
        }
        true
    }

    /// Whether an fsync of the active file failed during the run.
    pub fn sync_failed(&self) -> bool {
        self.sync_failed
    }

    /// Renames the active file to `to` without replacing anything there
    /// (`AlreadyExists` then). What was not synced belongs to the finished
    /// segment now; the worker syncs it.
    pub fn rename_to(&mut self, to: &OsString) -> io::Result<()> {
        self.dir.rename_noreplace(&self.target.name, to)?;
        self.unsynced_since = None;
        Ok(())
    }

    /// Starts writing a new, empty active file (after a rename, or after a
    /// tool moved the file away). An existing regular file at the name is
    /// taken as it is, and returned with the time it was last written if
    /// it is not empty.
    pub fn start_new(&mut self) -> Result<Option<SystemTime>> {
        let path = self.path();
        let context = || format!("unable to open {}", path.display());
        let (file, _) = self
            .dir
            .open_or_create(&self.target.name, self.mode, Access::Append)
            .with_context(context)?;
        let meta = sys::meta(&file).with_context(context)?;
        let mid_line = ends_mid_line(&file, meta.len)
            .with_context(|| format!("unable to read {}", path.display()))?;
        self.file = file;
        self.written = meta.len;
        crate::metrics::active_size(meta.len);
        self.mid_line = mid_line;
        Ok((meta.len > 0).then_some(meta.modified))
    }

    /// Whether the active name still names the file logpipe writes.
    pub fn is_at_its_name(&self) -> Result<bool> {
        let ours = sys::meta(&self.file)
            .with_context(|| format!("unable to stat {}", self.path().display()))?;
        Ok(self
            .dir
            .stat(&self.target.name)
            .ok()
            .flatten()
            .is_some_and(|there| there.same_file(&ours)))
    }

    /// Whether the file has no name left (removed from under logpipe).
    pub fn is_unlinked(&self) -> Result<bool> {
        let ours = sys::meta(&self.file)
            .with_context(|| format!("unable to stat {}", self.path().display()))?;
        Ok(ours.nlink == 0)
    }

    /// Replaces the open file with `file`, of `len` bytes, in `dir` (a
    /// removed file put back, possibly in a directory made again).
    pub fn replace(&mut self, dir: Arc<Dir>, file: File, len: u64) {
        self.dir = dir;
        self.file = file;
        self.written = len;
        self.unsynced_since.get_or_insert_with(Instant::now);
    }

    /// Reads from the open file at `offset` (to copy a removed file).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    /// Permission bits for files logpipe creates.
    pub fn mode(&self) -> u32 {
        self.mode
    }
}

/// Whether `file`, `len` bytes long, ends inside a line (its last byte is
/// not a newline).
fn ends_mid_line(file: &File, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

/// Whether the open active file (`meta`) is also linked as one of the
/// target's finished segments, which only an interrupted rotation leaves
/// behind.
fn is_also_a_segment(dir: &Dir, target: &Target, meta: &sys::Meta) -> Result<bool> {
    let entries = inventory::scan(dir, &target.name)
        .with_context(|| format!("unable to list {}", target.dir.display()))?;
    Ok(entries.iter().any(|entry| {
        entry.form == inventory::Form::Plain
            && dir
                .stat(&entry.name)
                .ok()
                .flatten()
                .is_some_and(|other| other.same_file(meta))
    }))
}
