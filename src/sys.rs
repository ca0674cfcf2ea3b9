//! The file system, as logpipe may touch it: every system call on the
//! target directory goes through [`Dir`].
//!
//! logpipe often runs as root in a directory that others can write. So,
//! inside it:
//! - everything is named relative to one directory descriptor, opened once
//!   (a symlinked TARGET directory is resolved then, and only then), so a
//!   directory swapped in under the path cannot redirect a write;
//! - nothing is opened through a symbolic link (`O_NOFOLLOW`, and
//!   `AT_SYMLINK_NOFOLLOW` for `fstatat`), and nothing but a regular file
//!   is opened at all: a FIFO, device, socket or directory is refused
//!   before `open(2)` could block on it or wake a driver;
//! - a file logpipe means to create is created with `O_EXCL`, so an
//!   existing file of that name (planted, or a stranger's) is never
//!   truncated; permission bits are set through the new descriptor only;
//! - a file is removed only if [`Meta::is_ours`] says logpipe could have
//!   made it: a regular file, owned by the user logpipe runs as, with no
//!   other name.
//!
//! Every descriptor is opened with `O_CLOEXEC`, so `--on-rotate` hooks
//! inherit none of them.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

/// An open directory: the target's, or one made again after it was
/// removed.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// The path it was opened by, for messages only.
    path: PathBuf,
}

/// What a file is, as `fstat`/`fstatat` (without following links) saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub len: u64,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub dev: u64,
    pub ino: u64,
    pub modified: SystemTime,
}

/// The file types logpipe tells apart in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    Device,
}

impl Kind {
    fn of(file_type: FileType) -> Kind {
        match file_type {
            FileType::RegularFile => Kind::Regular,
            FileType::Directory => Kind::Directory,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            _ => Kind::Device,
        }
    }

    /// Why a file of this kind is refused, for `unable to open X: <why>`.
    fn refusal(self) -> &'static str {
        match self {
            Kind::Regular => "is a regular file",
            Kind::Directory => "is a directory, not a regular file",
            Kind::Symlink => "is a symbolic link",
            Kind::Fifo => "is a FIFO, not a regular file",
            Kind::Socket => "is a socket, not a regular file",
            Kind::Device => "is a device, not a regular file",
        }
    }
}

impl Meta {
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        let modified = SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(
                st.st_mtime.max(0) as u64,
                st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
            ))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Meta {
            kind: Kind::of(FileType::from_raw_mode(st.st_mode)),
            len: st.st_size.max(0) as u64,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            dev: st.st_dev,
            ino: st.st_ino,
            modified,
        }
    }

    /// Whether logpipe may treat this file as one it made: a regular file,
    /// owned by the user logpipe runs as (or the one `--owner` gives files
    /// to), with no other name. Only such a file is ever removed (stale
    /// temporaries, retention, a duplicate plain segment).
    pub fn is_ours(&self) -> bool {
        self.kind == Kind::Regular && is_our_uid(self.uid) && self.nlink == 1
    }

    /// A made-up `Meta` for unit tests of decisions taken from `fstatat`:
    /// one name, group 0, and the length as inode number.
    #[cfg(test)]
    pub fn made_up(kind: Kind, uid: u32, len: u64, modified: SystemTime) -> Meta {
        Meta {
            kind,
            len,
            nlink: 1,
            uid,
            gid: 0,
            dev: 1,
            ino: len,
            modified,
        }
    }

    /// Whether two metas describe the same inode.
    pub fn same_file(&self, other: &Meta) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// The effective user id logpipe runs as.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether files owned by `uid` may be logpipe's own: the user it runs as,
/// or the user `--owner` gives the files it creates to.
pub fn is_our_uid(uid: u32) -> bool {
    uid == euid() || crate::owner::get().and_then(|o| o.uid) == Some(uid)
}

/// Who logpipe's own files belong to, for messages: `uid 0 that logpipe
/// runs as`, and the `--owner` user if there is one.
pub fn our_uids() -> String {
    match crate::owner::get().and_then(|o| o.uid) {
        Some(uid) if uid != euid() => {
            format!(
                "uid {} that logpipe runs as or uid {uid} of --owner",
                euid()
            )
        }
        _ => format!("uid {} that logpipe runs as", euid()),
    }
}

/// Gives a file or directory logpipe has just created to the `--owner`
/// user and group, through its descriptor. Nothing to do without
/// `--owner`.
fn give(fd: &impl AsFd) -> io::Result<()> {
    let Some(owner) = crate::owner::get() else {
        return Ok(());
    };
    let uid = owner.uid.map(rustix::fs::Uid::from_raw);
    let gid = owner.gid.map(rustix::fs::Gid::from_raw);
    match rustix::fs::fchown(fd, uid, gid) {
        Ok(()) => Ok(()),
        // Not allowed, or an id the kernel cannot map: no wait cures it.
        Err(e @ (rustix::io::Errno::PERM | rustix::io::Errno::INVAL)) => {
            Err(io::Error::other(crate::owner::NotGiven {
                owner: owner.to_string(),
                error: e.into(),
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the directory `path` and its missing parents with `mode` (the
/// umask applies, as for `mkdir`), and gives each directory it creates to
/// the `--owner` user and group.
///
/// It walks down from the first component, one directory descriptor at a
/// time: an existing component is opened as it is (a symbolic link there,
/// like `/var/log` pointing elsewhere, is followed, as `mkdir -p` does),
/// but one this call created is opened with `O_NOFOLLOW` and given away
/// only if it is a directory of logpipe's user: a link swapped in for it
/// is never followed, and nothing else is ever chowned.
pub fn make_dirs(path: &Path, mode: u32) -> io::Result<()> {
    use std::path::Component;
    let start = if path.is_absolute() { "/" } else { "." };
    let mut at = rustix::fs::open(
        start,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for component in path.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::ParentDir => OsStr::new(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
        };
        let created = match rustix::fs::mkdirat(&at, name, Mode::from_raw_mode(mode)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(e.into()),
        };
        let nofollow = if created {
            OFlags::NOFOLLOW
        } else {
            OFlags::empty()
        };
        let next = rustix::fs::openat(
            &at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | nofollow,
            Mode::empty(),
        )
        .map_err(symlink_error)?;
        if created && rustix::fs::fstat(&next)?.st_uid == euid() {
            give(&next)?;
        }
        at = next;
    }
    Ok(())
}

/// A file refused for its kind: a symbolic link, or not a regular file.
/// No retry changes that, so it stops logpipe where it must write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub Kind);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.refusal())
    }
}

impl std::error::Error for Refused {}

/// An error that says why a file was refused (`is a symbolic link`).
pub fn refused(kind: Kind) -> io::Error {
    io::Error::other(Refused(kind))
}

/// `fstat` of an open file.
pub fn meta(file: &impl AsFd) -> io::Result<Meta> {
    Ok(Meta::from_stat(&rustix::fs::fstat(file)?))
}

/// How an existing file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Read and write, every write at the end (the active file).
    Append,
    /// Read and write at any offset (lock and state files).
    ReadWrite,
}

impl Access {
    fn flags(self) -> OFlags {
        match self {
            Access::Read => OFlags::RDONLY,
            Access::Append => OFlags::RDWR | OFlags::APPEND,
            Access::ReadWrite => OFlags::RDWR,
        }
    }
}

impl Dir {
    /// Opens the directory at `path`. A symbolic link here is followed:
    /// this is where a symlinked TARGET directory is resolved, once.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path the directory was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in this directory, as a path, for messages.
    pub fn display(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// `fstat` of the directory itself.
    pub fn meta(&self) -> io::Result<Meta> {
        meta(&self.fd)
    }

    /// Whether the directory was removed since it was opened (its link
    /// count drops to zero).
    pub fn is_removed(&self) -> io::Result<bool> {
        Ok(rustix::fs::fstat(&self.fd)?.st_nlink == 0)
    }

    /// `fstatat` without following a link; `None` if nothing has the name.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<Meta>> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Meta::from_stat(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens an existing regular file. A symbolic link or anything but a
    /// regular file is refused (an error saying which), before it is
    /// opened; `NotFound` if there is nothing of that name.
    pub fn open_file(&self, name: &OsStr, access: Access) -> io::Result<File> {
        if let Some(meta) = self.stat(name)?
            && meta.kind != Kind::Regular
        {
            return Err(refused(meta.kind));
        }
        // O_NONBLOCK: should a FIFO be swapped in after the check above, the
        // open returns at once instead of waiting for a peer; the check
        // below then refuses it. On a regular file the flag does nothing.
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            access.flags() | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(symlink_error)?;
        let kind = Kind::of(FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode));
        if kind != Kind::Regular {
            return Err(refused(kind));
        }
        rustix::fs::fcntl_setfl(&fd, access.flags() & OFlags::APPEND)?;
        Ok(File::from(fd))
    }

    /// Creates a new regular file with exactly `mode` (whatever the
    /// umask), open for reading and writing (appending with
    /// [`Access::Append`]). Fails with `AlreadyExists` if the name is taken
    /// by anything, a dangling symbolic link included.
    pub fn create_new(&self, name: &OsStr, mode: u32, access: Access) -> io::Result<File> {
        let flags = match access {
            Access::Append => OFlags::RDWR | OFlags::APPEND,
            Access::Read | Access::ReadWrite => OFlags::RDWR,
        };
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            flags | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        // The umask applied at creation; the file is new and ours, so its
        // bits are set exactly through the descriptor, and so is its owner.
        let given = rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
            .map_err(io::Error::from)
            .and_then(|()| give(&fd));
        if let Err(e) = given {
            // Not left behind under the wrong owner, for a retry to find
            // and take as it is.
            let meta = meta(&fd)?;
            if self.stat(name)?.is_some_and(|now| now.same_file(&meta)) {
                let _ = self.unlink(name);
            }
            return Err(e);
        }
        Ok(File::from(fd))
    }

    /// Opens `name` if it is an existing regular file, or creates it with
    /// `mode`. Returns the file and whether it was created.
    pub fn open_or_create(
        &self,
        name: &OsStr,
        mode: u32,
        access: Access,
    ) -> io::Result<(File, bool)> {
        loop {
            match self.create_new(name, mode, access) {
                Ok(file) => return Ok((file, true)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            match self.open_file(name, access) {
                Ok(file) => return Ok((file, false)),
                // Removed between the two calls: create it after all.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Renames `from` to `to` in this directory, failing with
    /// `AlreadyExists` rather than replacing an existing `to`.
    ///
    /// `renameat2(RENAME_NOREPLACE)`; on a filesystem without it, a hard
    /// link (which fails rather than replace) then the unlink of `from`,
    /// as multilog and s6-log do. A crash between the two leaves one inode
    /// under both names, which the active file recognises at start.
    pub fn rename_noreplace(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, from, &self.fd, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(
                rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP,
            ) => self.link_then_unlink(from, to),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames `from` to `to`, replacing `to` (only the name: a symbolic
    /// link there is replaced, not followed). For logpipe's own files only.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// The portable rename without replacing: link, then unlink.
    fn link_then_unlink(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        rustix::fs::linkat(&self.fd, from, &self.fd, to, AtFlags::empty())?;
        self.unlink(from)
    }

    /// Removes the name `name` (never a directory). Most callers want
    /// [`Dir::remove_ours`].
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Removes `name` if it is a file logpipe may call its own
    /// ([`Meta::is_ours`]). Returns false, removing nothing, if it is not
    /// (or, with `Ok(false)` too, if it is gone already).
    pub fn remove_ours(&self, name: &OsStr) -> io::Result<bool> {
        match self.stat(name)? {
            Some(meta) if meta.is_ours() => match self.unlink(name) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            },
            _ => Ok(false),
        }
    }

    /// The names in the directory (not `.` and `..`), with the file type
    /// the directory entry gives (`None` when the filesystem does not say).
    ///
    /// The listing is one snapshot: it comes from a single `getdents64`
    /// call, which holds the directory's lock against renames and removals
    /// for its duration (the buffer grows until everything fits in one
    /// call). Over several calls, a segment renamed from `X` to `X.gz`
    /// meanwhile could be missed under both names, and a reader following
    /// the target would skip it.
    pub fn list(&self) -> io::Result<Vec<(OsString, Option<Kind>)>> {
        /// Enough for about 5,000 names at first; at most a million or so.
        const FIRST: usize = 256 << 10;
        const LAST: usize = 64 << 20;
        let mut size = FIRST;
        loop {
            let fd = rustix::fs::openat(
                &self.fd,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); size];
            let mut entries = rustix::fs::RawDir::new(&fd, &mut buf);
            let mut names = Vec::new();
            let mut calls = 0;
            loop {
                if entries.is_buffer_empty() {
                    calls += 1;
                }
                let Some(entry) = entries.next() else { break };
                let entry = entry?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let kind = match entry.file_type() {
                    FileType::Unknown => None,
                    t => Some(Kind::of(t)),
                };
                names.push((OsStr::from_bytes(name).to_os_string(), kind));
            }
            // One call that returned the names, one that found the end.
            if calls <= 2 || size >= LAST {
                return Ok(names);
            }
            size *= 4;
        }
    }

    /// Replaces `name` whole with `text`: written to the new file `temp`
    /// (with `mode`), fsynced if `sync`, then renamed over `name`, so that
    /// a reader or a crash sees the old text or the new one. A `temp` left
    /// by a crash is removed first if it is logpipe's own; anything else
    /// there is an error naming it. For logpipe's own files only (the
    /// rename replaces whatever has the name, a symbolic link included,
    /// without following it).
    pub fn replace(
        &self,
        name: &OsStr,
        temp: &OsStr,
        mode: u32,
        text: &[u8],
        sync: bool,
    ) -> io::Result<()> {
        if !self.remove_ours(temp)? && self.stat(temp)?.is_some() {
            return Err(io::Error::other(format!(
                "{} is in the way and is not a file logpipe made",
                self.display(temp).display()
            )));
        }
        let mut file = self.create_new(temp, mode, Access::ReadWrite)?;
        let written = file
            .write_all(text)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        drop(file);
        if let Err(e) = written.and_then(|()| self.rename(temp, name)) {
            let _ = self.remove_ours(temp);
            return Err(e);
        }
        Ok(())
    }

    /// Makes the directory's entries (renames, new names) durable.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }
}

/// A file named on the command line, outside the target (`--metrics`,
/// `--cursor`): its directory, opened once (a symbolic link there is
/// followed, as for TARGET), its name in it, and `.NAME.tmp`, the
/// temporary through which it is replaced whole ([`Dir::replace`]).
#[derive(Debug)]
pub struct Placed {
    pub dir: Dir,
    pub name: OsString,
    pub temp: OsString,
}

impl Placed {
    /// Opens the directory of `path`, given with `option`.
    pub fn open(path: &Path, option: &str) -> anyhow::Result<Placed> {
        use anyhow::Context;
        let name = path
            .file_name()
            .with_context(|| format!("unable to use {option} {}: no file name", path.display()))?
            .to_os_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = Dir::open(parent)
            .with_context(|| format!("unable to open directory {}", parent.display()))?;
        let mut temp = OsString::from(".");
        temp.push(&name);
        temp.push(".tmp");
        Ok(Placed { dir, name, temp })
    }

    /// The file's path, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.display(&self.name)
    }

    /// Replaces the file whole with `text` ([`Dir::replace`]).
    pub fn replace(&self, mode: u32, text: &[u8], sync: bool) -> io::Result<()> {
        self.dir.replace(&self.name, &self.temp, mode, text, sync)
    }
}

/// `O_NOFOLLOW` on a symbolic link fails with `ELOOP`, whose text ("too
/// many levels of symbolic links") reads as a loop; say what it is.
fn symlink_error(e: rustix::io::Errno) -> io::Error {
    if e == rustix::io::Errno::LOOP {
        refused(Kind::Symlink)
    } else {
        e.into()
    }
}

/// `poll(2)` on `fds` for at most `timeout_ms` (forever with `None`);
/// an interrupted wait returns 0, as if nothing were ready.
pub fn poll(fds: &mut [rustix::event::PollFd<'_>], timeout_ms: Option<i32>) -> io::Result<usize> {
    let timeout = timeout_ms.map(|ms| rustix::event::Timespec {
        tv_sec: i64::from(ms.max(0) / 1000),
        tv_nsec: i64::from(ms.max(0) % 1000) * 1_000_000,
    });
    match rustix::event::poll(fds, timeout.as_ref()) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Starts writing `file`'s dirty pages to disk without waiting for them
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a hint: the fsync that
/// follows is what makes the data durable, so a failure is ignored.
pub fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on a descriptor we own, with integer
    // arguments; it touches no memory of ours. (rustix has no wrapper for
    // it.)
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A listing is one snapshot: while another thread renames files back
    /// and forth, every file is listed under exactly one of its names,
    /// also when the directory needs more than the first buffer.
    #[test]
    fn a_listing_never_misses_or_doubles_a_file_being_renamed() {
        const FILES: usize = 12_000;
        let (tmp, dir) = dir();
        for i in 0..FILES {
            std::fs::write(tmp.path().join(format!("segment.{i}")), "").unwrap();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renamer = {
            let (path, stop) = (tmp.path().to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                let mut renamed = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for i in (0..FILES).step_by(7) {
                        let (a, b) = (
                            path.join(format!("segment.{i}")),
                            path.join(format!("segment.{i}.gz")),
                        );
                        let (from, to) = if a.exists() { (a, b) } else { (b, a) };
                        std::fs::rename(from, to).unwrap();
                        renamed += 1;
                    }
                }
                renamed
            })
        };
        for _ in 0..30 {
            assert_eq!(dir.list().unwrap().len(), FILES);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(renamer.join().unwrap() > 0);
    }

    fn dir() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        (tmp, dir)
    }

    #[test]
    fn symlinks_and_fifos_are_refused_before_opening() {
        let (tmp, dir) = dir();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("link")).unwrap();
        rustix::fs::mkfifoat(&dir.fd, "fifo", Mode::from_raw_mode(0o600)).unwrap();
        for access in [Access::Read, Access::Append, Access::ReadWrite] {
            let err = dir.open_file(OsStr::new("link"), access).unwrap_err();
            assert_eq!(err.to_string(), "is a symbolic link");
            let err = dir.open_file(OsStr::new("fifo"), access).unwrap_err();
            assert_eq!(err.to_string(), "is a FIFO, not a regular file");
        }
        let err = dir
            .create_new(OsStr::new("link"), 0o640, Access::ReadWrite)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let err = dir
            .open_or_create(OsStr::new("link"), 0o640, Access::ReadWrite)
            .unwrap_err();
        assert_eq!(err.to_string(), "is a symbolic link");
        assert!(!dir.remove_ours(OsStr::new("link")).unwrap());
        assert!(!dir.remove_ours(OsStr::new("fifo")).unwrap());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(tmp.path().join("link").symlink_metadata().is_ok());
    }

    #[test]
    fn new_files_get_exactly_the_mode_and_are_ours() {
        let (tmp, dir) = dir();
        let (_, created) = dir
            .open_or_create(OsStr::new("a"), 0o604, Access::Append)
            .unwrap();
        assert!(created);
        let mode = std::fs::metadata(tmp.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o604);
        let (_, created) = dir
            .open_or_create(OsStr::new("a"), 0o600, Access::Append)
            .unwrap();
        assert!(!created, "an existing file is opened, not made again");
        // A second name makes it not ours to remove.
        std::fs::hard_link(tmp.path().join("a"), tmp.path().join("b")).unwrap();
        assert!(!dir.remove_ours(OsStr::new("a")).unwrap());
        std::fs::remove_file(tmp.path().join("b")).unwrap();
        assert!(dir.remove_ours(OsStr::new("a")).unwrap());
        assert!(!tmp.path().join("a").exists());
    }

    #[test]
    fn rename_never_replaces() {
        let (tmp, dir) = dir();
        std::fs::write(tmp.path().join("from"), "from").unwrap();
        std::fs::write(tmp.path().join("to"), "to").unwrap();
        let err = dir
            .rename_noreplace(OsStr::new("from"), OsStr::new("to"))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let err = dir
            .link_then_unlink(OsStr::new("from"), OsStr::new("to"))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("to")).unwrap(),
            "to"
        );
        dir.link_then_unlink(OsStr::new("from"), OsStr::new("new"))
            .unwrap();
        assert!(!tmp.path().join("from").exists());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("new")).unwrap(),
            "from"
        );
    }

    #[test]
    fn a_removed_directory_is_noticed() {
        let (tmp, dir) = dir();
        assert!(!dir.is_removed().unwrap());
        let path = tmp.path().to_path_buf();
        drop(tmp);
        assert!(!path.exists());
        assert!(dir.is_removed().unwrap());
    }
}
