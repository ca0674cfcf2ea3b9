//! One writer per target: an exclusive lock on `<active>.lock`.
//!
//! The lock is `flock(2)` through `File::try_lock`, so the kernel releases
//! it when the process dies however it dies; a stale lock file left by a
//! crash never blocks the next start. The holder writes its pid into the
//! file so that a refused second instance can name it.

use std::fs::{File, OpenOptions, Permissions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Held for as long as logpipe writes the target; released on drop or
/// process exit.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock at `path`, or fails naming the process that holds it.
pub fn acquire(path: &Path, mode: u32) -> Result<Lock> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)
        .with_context(|| format!("unable to open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            // The holder may not have written its pid yet; say so then.
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            if holder.is_empty() {
                bail!("unable to lock {}: held by another process", path.display());
            }
            bail!(
                "unable to lock {}: held by pid {holder}, another logpipe on this target",
                path.display()
            );
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("unable to lock {}", path.display()));
        }
    }
    let mut record = || -> std::io::Result<()> {
        file.set_permissions(Permissions::from_mode(mode))?;
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
    };
    record().with_context(|| format!("unable to write {}", path.display()))?;
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current.lock");
        let held = acquire(&path, 0o640).unwrap();
        let err = acquire(&path, 0o640).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("held by pid {}", std::process::id())),
            "{message}"
        );
        drop(held);
        acquire(&path, 0o640).expect("lock is free again once dropped");
    }
}
