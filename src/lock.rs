//! One writer per target: an exclusive lock on `.<active>.lock`.
//!
//! The lock is `flock(2)` through `File::try_lock`, so the kernel releases
//! it when the process dies however it dies; a stale lock file left by a
//! crash never blocks the next start. The holder writes its pid into the
//! file so that a refused second instance can name it.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};

use anyhow::{Context, Result, bail};

use crate::sys::{self, Access, Dir};
use crate::target::Target;

/// Held for as long as logpipe writes the target; released on drop or
/// process exit.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock of `target` in `dir`, or fails naming the process that
/// holds it.
///
/// The lock file is created with `mode` if missing. An existing one is
/// used only if it is a regular file that logpipe could have made (owned
/// by the user logpipe runs as, with no other name): it is truncated to
/// write the pid, and a file planted in its place (a symbolic link to
/// `/etc/shadow`, a hard link, a stranger's file) must not be.
pub fn acquire(dir: &Dir, target: &Target, mode: u32) -> Result<Lock> {
    let path = target.lock();
    let context = || format!("unable to lock {}", path.display());
    let (mut file, created) = dir
        .open_or_create(&target.lock_name(), mode, Access::ReadWrite)
        .with_context(context)?;
    if !created {
        let meta = sys::meta(&file).with_context(context)?;
        if meta.nlink > 1 {
            bail!(
                "unable to lock {}: it has {} names (a hard link to another file); remove it if it is a leftover",
                path.display(),
                meta.nlink
            );
        }
        if !sys::is_our_uid(meta.uid) {
            bail!(
                "unable to lock {}: owned by uid {}, not by {}; remove it if it is a leftover",
                path.display(),
                meta.uid,
                sys::our_uids()
            );
        }
    }
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
        Err(TryLockError::Error(e)) => return Err(e).with_context(context),
    }
    let mut record = || -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
    };
    record().with_context(|| format!("unable to write {}", path.display()))?;
    retire_legacy(dir, target)?;
    Ok(Lock { _file: file })
}

/// Removes the lock file of earlier versions (`<active>.lock`), with
/// the new lock held: an older logpipe still writing the target holds
/// that one, and is refused here, naming its pid, as a second writer is.
/// A file of that name that logpipe could not have made is left alone.
fn retire_legacy(dir: &Dir, target: &Target) -> Result<()> {
    let name = target.legacy_lock_name();
    let path = target.path_of(&name);
    match dir.stat(&name) {
        Ok(Some(meta)) if meta.is_ours() => {}
        Ok(_) | Err(_) => return Ok(()),
    }
    let Ok(mut file) = dir.open_file(&name, Access::ReadWrite) else {
        return Ok(());
    };
    match file.try_lock() {
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            bail!(
                "unable to lock {}: {} is held by pid {}, an earlier version of logpipe on this target",
                target.lock().display(),
                path.display(),
                holder.trim()
            );
        }
        Err(TryLockError::Error(e)) => {
            crate::warning!("leaving {} in place: {e}", path.display());
        }
        Ok(()) => {
            if let Err(e) = dir.remove_ours(&name) {
                crate::warning!("leaving {} in place: {e}", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let target = Target::resolve(&tmp.path().join("current"), None).unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let held = acquire(&dir, &target, 0o640).unwrap();
        let err = acquire(&dir, &target, 0o640).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(&format!("held by pid {}", std::process::id())),
            "{message}"
        );
        drop(held);
        acquire(&dir, &target, 0o640).expect("lock is free again once dropped");
    }

    #[test]
    fn the_lock_of_an_earlier_release_is_removed_or_refused_while_held() {
        let tmp = tempfile::tempdir().unwrap();
        let target = Target::resolve(&tmp.path().join("current"), None).unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let legacy = tmp.path().join("current.lock");
        std::fs::write(&legacy, "4242\n").unwrap();
        let old = File::options().read(true).open(&legacy).unwrap();
        old.lock().unwrap();
        let message = format!("{:#}", acquire(&dir, &target, 0o640).unwrap_err());
        assert!(
            message.ends_with(
                "current.lock is held by pid 4242, an earlier version of logpipe on this target"
            ),
            "{message}"
        );
        assert!(legacy.exists());
        drop(old);
        let _held = acquire(&dir, &target, 0o640).unwrap();
        assert!(
            !legacy.exists(),
            "a free lock of an earlier version is removed"
        );
        assert!(tmp.path().join(".current.lock").exists());
    }
}
