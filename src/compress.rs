//! Compressing one finished segment, with its guarantees, and what is left
//! of compressions an earlier run did not finish.
//!
//! `X` becomes `X.gz` (or `X.zst`, with `--compress zstd`: everything here
//! holds for both, with `.zst` for `.gz`) in these steps, all relative to
//! the target's directory descriptor:
//! 1. `X` is opened without following a link, and must be logpipe's own
//!    file ([`Meta::is_ours`]): a regular file of logpipe's user with no
//!    other name;
//! 2. `X.gz.tmp` is created with `O_EXCL` (a link or file planted there is
//!    never followed, truncated or replaced), compressed into, the encoder
//!    finished and checked, the file synced;
//! 3. it is renamed to `X.gz` *without replacing*: a `.gz` that appeared
//!    under that name is never overwritten;
//! 4. the directory is synced, so the new name is durable;
//! 5. only then is `X` removed.
//!
//! A crash at any instant leaves `X`, or `X.gz`, or both with the same
//! content, never neither; a `.gz` under its final name is always complete.
//!
//! Whatever stands in the way and is not logpipe's (a symbolic link or a
//! stranger's file at `X.gz.tmp` or `X.gz`) is left alone, and the segment
//! is *stepped around*: it stays plain, in its final form for this run.
//! [`plan`] and [`recover`] are the decisions, as pure functions of what
//! `fstatat` saw; [`finish`] carries one segment through them.
//!
//! After a change of `--compress`, a plain segment may be found beside the
//! other method's compressed form (a crash before the removal of `X`, then
//! a start with the other method). That form counts as the segment's
//! compression: `X` goes once it is verified, as for its own method, and
//! the segment is not compressed twice. When both `X.gz` and `X.zst` are
//! there, the one of the current method is verified and the other is left
//! as it is: both are complete copies (only a complete, synced file is ever
//! renamed to a final name), retention counts the segment once and deletes
//! both together.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader};

use crate::codec::{Compressor, Method};
use crate::gzip::read_full;
use crate::inventory::{self, Entry, Form};
use crate::naming::SegmentId;
use crate::sys::{self, Access, Dir, Kind, Meta};
use anyhow::{Context, Result};

/// A file in the way of a compression, and why it is not logpipe's to
/// touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// The form of the segment's name it has (`X.gz.tmp` or `X.gz`).
    pub form: Form,
    /// Why it stays: `is a symbolic link`, `is owned by user 1000`, …
    pub why: String,
}

/// What to do with a segment to compress, from what its names hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing is at the plain name any more (moved away by a shipper,
    /// deleted, or in a directory that was removed since).
    Gone,
    /// The plain name holds something logpipe did not make (why): it is
    /// neither read nor removed, and no hook runs on it.
    NotOurs(String),
    /// Step around: the segment stays plain, the blocker stays as it is.
    Keep(Blocker),
    /// `X.gz.tmp` is a second name of `X.gz` (a crash inside the
    /// link-then-unlink rename): drop that name, then look again.
    DropTempName,
    /// Compress, after removing a stale temporary of logpipe's own.
    Compress { remove_temp: bool },
    /// `X` and `X.gz` are both logpipe's (a crash after the rename, before
    /// the removal of `X`): keep `X.gz` only if it holds exactly `X`.
    Verify { remove_temp: bool },
}

/// Why `meta` is not a file logpipe may treat as its own; `None` if it is
/// one ([`Meta::is_ours`]).
pub fn not_ours(meta: &Meta) -> Option<String> {
    if meta.kind != Kind::Regular {
        Some(sys::refused(meta.kind).to_string())
    } else if !sys::is_our_uid(meta.uid) {
        Some(format!("is owned by user {}, not by logpipe's", meta.uid))
    } else if meta.nlink != 1 {
        Some(format!("has {} names (hard links)", meta.nlink))
    } else {
        None
    }
}

/// Whether `temp` is only a second name of `gz`, as an interrupted
/// link-then-unlink rename leaves it: the same regular file of logpipe's
/// user, with exactly these two names.
fn is_second_name(temp: &Meta, gz: &Meta) -> bool {
    temp.same_file(gz) && temp.kind == Kind::Regular && sys::is_our_uid(temp.uid) && temp.nlink == 2
}

/// Decides what to do with a segment compressed by `method` from what
/// `fstatat` found at its plain, temporary and compressed names.
pub fn plan(method: Method, plain: Option<&Meta>, temp: Option<&Meta>, gz: Option<&Meta>) -> Plan {
    let Some(plain) = plain else {
        return Plan::Gone;
    };
    if let Some(why) = not_ours(plain) {
        return Plan::NotOurs(why);
    }
    let mut remove_temp = false;
    if let Some(temp) = temp {
        if temp.is_ours() {
            remove_temp = true;
        } else if gz.is_some_and(|gz| is_second_name(temp, gz)) {
            return Plan::DropTempName;
        } else {
            let why = not_ours(temp).unwrap_or_default();
            return Plan::Keep(Blocker {
                form: method.temp_form(),
                why,
            });
        }
    }
    match gz {
        None => Plan::Compress { remove_temp },
        Some(gz) => match not_ours(gz) {
            None => Plan::Verify { remove_temp },
            Some(why) => Plan::Keep(Blocker {
                form: method.form(),
                why,
            }),
        },
    }
}

/// What start-up does with what an earlier run left.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Stale temporaries to remove: logpipe's own `X.gz.tmp` or
    /// `X.zst.tmp`, or the second name of an `X.gz` or `X.zst`.
    pub remove: Vec<OsString>,
    /// Plain segments of logpipe's own to compress, oldest first. A
    /// stranger's file named like a segment is left out; so is every plain
    /// segment without compression (`--compress none`: plain is final).
    pub queue: Vec<SegmentId>,
}

/// Decides recovery from one listing (sorted, as [`inventory::scan`] gives
/// it). `stat` is asked only about the names that matter: plain segments
/// and temporaries, and a compressed form beside a temporary. Temporaries
/// of both methods go, whichever `--compress` is now.
pub fn recover(
    entries: &[Entry],
    compress: bool,
    mut stat: impl FnMut(&OsStr) -> Option<Meta>,
) -> Recovery {
    let mut recovery = Recovery::default();
    for group in entries.chunk_by(|a, b| a.id == b.id) {
        let named = |form| group.iter().find(|e| e.form == form).map(|e| &e.name);
        for method in Method::ALL {
            let Some(temp) = named(method.temp_form()) else {
                continue;
            };
            let Some(meta) = stat(temp) else {
                continue;
            };
            let mut second_name = || {
                named(method.form())
                    .and_then(|gz| stat(gz))
                    .is_some_and(|gz| is_second_name(&meta, &gz))
            };
            // Anything else there is left alone; the segment's compression
            // steps around it and says so.
            if meta.is_ours() || second_name() {
                recovery.remove.push(temp.clone());
            }
        }
        if compress
            && let Some(plain) = named(Form::Plain)
            && stat(plain).is_some_and(|meta| meta.is_ours())
        {
            recovery.queue.push(group[0].id);
        }
    }
    recovery
}

/// How [`finish`] left a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the segment is in its final form under this name (its `.gz`
    /// or `.zst`).
    Done(OsString),
    /// Nothing is at the plain name any more.
    Gone,
    /// Not logpipe's file (why): left alone.
    NotOurs(String),
    /// Stepped around: the plain segment stays, in its final form, for
    /// this reason (`X.gz.tmp is a symbolic link`, with the path).
    Kept(String),
    /// The commit was refused (the shutdown timeout passed): nothing
    /// changed but the temporary, removed again.
    Stopped,
}

/// The names of one segment, for one method.
struct Names {
    plain: OsString,
    temp: OsString,
    /// The compressed name: the method's own, or the other method's when
    /// that one is found instead (see the module docs).
    gz: OsString,
    /// The method `gz` is compressed with.
    read_as: Method,
}

impl Names {
    fn of(active: &OsStr, id: SegmentId, method: Method) -> Names {
        Names {
            plain: inventory::name(active, id, Form::Plain),
            temp: inventory::name(active, id, method.temp_form()),
            gz: inventory::name(active, id, method.form()),
            read_as: method,
        }
    }

    fn of_form(&self, form: Form) -> &OsStr {
        if form.is_temp() {
            &self.temp
        } else if form == Form::Plain {
            &self.plain
        } else {
            &self.gz
        }
    }
}

/// Brings segment `id` of active file `active` in `dir` to its compressed
/// form, or steps around what is in the way.
///
/// `commit` is asked right before the first step that changes what is
/// under a final name (the rename to `X.gz`, or the removal of `X` beside
/// a verified `X.gz`); if it says no, the segment is left as it was.
/// Errors (a full disk) leave the plain segment in place; the call can be
/// repeated.
pub fn finish(
    dir: &Dir,
    active: &OsStr,
    id: SegmentId,
    compressor: &mut Compressor,
    mode: u32,
    commit: &mut dyn FnMut() -> bool,
) -> Result<Outcome> {
    let method = compressor.method();
    let mut names = Names::of(active, id, method);
    let plain_path = dir.display(&names.plain);
    let context = || format!("unable to compress {}", plain_path.display());
    // Twice at most: once more after dropping a second name.
    for _ in 0..2 {
        let stat = |name: &OsStr| dir.stat(name).with_context(context);
        let (plain, temp, mut gz) = (stat(&names.plain)?, stat(&names.temp)?, stat(&names.gz)?);
        if plain.is_some() && gz.is_none() {
            // Compressed by the other method already (a crash, then a
            // change of --compress): verified as its own would be.
            for other in Method::ALL.into_iter().filter(|&m| m != method) {
                let name = inventory::name(active, id, other.form());
                if let Some(meta) = stat(&name)?.filter(Meta::is_ours) {
                    (gz, names.gz, names.read_as) = (Some(meta), name, other);
                    break;
                }
            }
        }
        match plan(method, plain.as_ref(), temp.as_ref(), gz.as_ref()) {
            Plan::Gone => return Ok(Outcome::Gone),
            Plan::NotOurs(why) => return Ok(Outcome::NotOurs(why)),
            Plan::Keep(blocker) => {
                let path = dir.display(names.of_form(blocker.form));
                return Ok(Outcome::Kept(format!("{} {}", path.display(), blocker.why)));
            }
            Plan::DropTempName => {
                ignore_gone(dir.unlink(&names.temp)).with_context(context)?;
            }
            Plan::Compress { remove_temp } => {
                remove_stale(dir, &names, remove_temp).with_context(context)?;
                return compress(dir, &names, compressor, mode, commit).with_context(context);
            }
            Plan::Verify { remove_temp } => {
                remove_stale(dir, &names, remove_temp).with_context(context)?;
                return verify(dir, &names, commit).with_context(context);
            }
        }
    }
    Ok(Outcome::Kept(format!(
        "{} keeps changing",
        dir.display(&names.temp).display()
    )))
}

/// `Ok` for a file already gone.
fn ignore_gone(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn remove_stale(dir: &Dir, names: &Names, remove_temp: bool) -> io::Result<()> {
    if remove_temp {
        dir.remove_ours(&names.temp)?;
    }
    Ok(())
}

/// Removes `name` if it is still the file `meta` describes (ours, opened
/// by us): never whatever took the name meanwhile.
fn remove_if_same(dir: &Dir, name: &OsStr, meta: &Meta) -> io::Result<bool> {
    match dir.stat(name)? {
        Some(now) if now.same_file(meta) => ignore_gone(dir.unlink(name)).map(|()| true),
        _ => Ok(false),
    }
}

/// Steps 1 to 5 of the module docs.
fn compress(
    dir: &Dir,
    names: &Names,
    compressor: &mut Compressor,
    mode: u32,
    commit: &mut dyn FnMut() -> bool,
) -> io::Result<Outcome> {
    let mut input = match dir.open_file(&names.plain, Access::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::Gone),
        Err(e) => return Err(e),
    };
    // What was opened is what counts, not what fstatat saw before.
    let plain = sys::meta(&input)?;
    if let Some(why) = not_ours(&plain) {
        return Ok(Outcome::NotOurs(why));
    }
    let output = match dir.create_new(&names.temp, mode, Access::ReadWrite) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(Outcome::Kept(format!(
                "{} appeared meanwhile",
                dir.display(&names.temp).display()
            )));
        }
        Err(e) => return Err(e),
    };
    let temp = sys::meta(&output)?;
    let written = (|| {
        compressor.compress(&mut input, &mut Writeback::new(&output))?;
        // Keep the time the segment was finished, as gzip does; retention
        // by age reads it.
        output.set_modified(plain.modified)?;
        output.sync_all()
    })();
    if let Err(e) = written {
        let _ = remove_if_same(dir, &names.temp, &temp);
        return Err(e);
    }
    if !commit() {
        let _ = remove_if_same(dir, &names.temp, &temp);
        return Ok(Outcome::Stopped);
    }
    match dir.rename_noreplace(&names.temp, &names.gz) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = remove_if_same(dir, &names.temp, &temp);
            return Ok(Outcome::Kept(format!(
                "{} appeared meanwhile, and is not replaced",
                dir.display(&names.gz).display()
            )));
        }
        Err(e) => {
            let _ = remove_if_same(dir, &names.temp, &temp);
            return Err(e);
        }
    }
    // The temporary could have been swapped between its creation and the
    // rename; the plain segment goes only if its `.gz` is the file written
    // here.
    if !dir.stat(&names.gz)?.is_some_and(|gz| gz.same_file(&temp)) {
        return Ok(Outcome::Kept(format!(
            "{} was replaced while compressing",
            dir.display(&names.temp).display()
        )));
    }
    dir.sync()?;
    remove_if_same(dir, &names.plain, &plain)?;
    Ok(Outcome::Done(names.gz.clone()))
}

/// Bytes written to a compressed file between two starts of its writeback.
const WRITEBACK_EVERY: usize = 4 << 20;

/// A compressed file being written, whose writeback is started every
/// [`WRITEBACK_EVERY`] bytes: the disk then writes while the compression
/// goes on, and the fsync at the end waits for the last few MiB only, not
/// for the whole file, while the compression of the next segment waits
/// (for a 14 MB `.zst`, 1 to 2 ms against 8 to 11 ms, under strace).
struct Writeback<'a> {
    file: &'a File,
    since: usize,
}

impl<'a> Writeback<'a> {
    fn new(file: &'a File) -> Writeback<'a> {
        Writeback { file, since: 0 }
    }
}

impl io::Write for Writeback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.since += n;
        if self.since >= WRITEBACK_EVERY {
            sys::start_writeback(self.file);
            self.since = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Both `X` and `X.gz`, both logpipe's: `X` goes only if `X.gz` holds it
/// exactly. Otherwise that `.gz` is not one logpipe finished (it only ever
/// renames a complete, synced file into place), and both stay.
fn verify(dir: &Dir, names: &Names, commit: &mut dyn FnMut() -> bool) -> io::Result<Outcome> {
    let open = |name: &OsStr| match dir.open_file(name, Access::Read) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let (Some(plain), Some(gz)) = (open(&names.plain)?, open(&names.gz)?) else {
        // One of them went meanwhile: look again next time.
        return Err(io::Error::other("a file changed while it was checked"));
    };
    let plain_meta = sys::meta(&plain)?;
    if !same_content(plain, gz, names.read_as)? {
        return Ok(Outcome::Kept(format!(
            "{} exists and does not decompress to the segment's content",
            dir.display(&names.gz).display()
        )));
    }
    if !commit() {
        return Ok(Outcome::Stopped);
    }
    remove_if_same(dir, &names.plain, &plain_meta)?;
    Ok(Outcome::Done(names.gz.clone()))
}

/// Whether `gz`, compressed with `method`, decompresses, in full and with
/// a valid trailer or checksum, to exactly the bytes of `plain`.
pub fn same_content(plain: File, gz: File, method: Method) -> io::Result<bool> {
    let mut a = BufReader::new(plain);
    let Ok(mut b) = method.decoder(gz) else {
        return Ok(false);
    };
    let (mut buf_a, mut buf_b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut a, &mut buf_a)?;
        // A truncated or corrupt .gz is an error here: not the same.
        let Ok(m) = read_full(&mut b, &mut buf_b) else {
            return Ok(false);
        };
        if n != m || buf_a[..n] != buf_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;
    use std::os::unix::fs::symlink;
    use std::time::SystemTime;

    use jiff::civil::date;

    fn meta(kind: Kind, uid: u32, nlink: u64, ino: u64) -> Meta {
        Meta {
            kind,
            len: 10,
            nlink,
            uid,
            gid: 0,
            dev: 1,
            ino,
            modified: SystemTime::UNIX_EPOCH,
        }
    }

    fn ours(ino: u64) -> Meta {
        meta(Kind::Regular, sys::euid(), 1, ino)
    }

    fn stranger() -> u32 {
        sys::euid().wrapping_add(1)
    }

    #[test]
    fn plan_for_every_combination_of_forms() {
        let link = meta(Kind::Symlink, sys::euid(), 1, 9);
        let theirs = meta(Kind::Regular, stranger(), 1, 8);
        let two_names = meta(Kind::Regular, sys::euid(), 2, 7);
        let (p, t, g) = (ours(1), ours(2), ours(3));
        let keep = |form, why: &str| {
            Plan::Keep(Blocker {
                form,
                why: why.to_string(),
            })
        };
        type Case<'a> = (Option<&'a Meta>, Option<&'a Meta>, Option<&'a Meta>, Plan);
        let cases: Vec<Case> = vec![
            (None, None, None, Plan::Gone),
            (None, Some(&t), Some(&g), Plan::Gone),
            (Some(&p), None, None, Plan::Compress { remove_temp: false }),
            (
                Some(&p),
                Some(&t),
                None,
                Plan::Compress { remove_temp: true },
            ),
            (
                Some(&p),
                None,
                Some(&g),
                Plan::Verify { remove_temp: false },
            ),
            (
                Some(&p),
                Some(&t),
                Some(&g),
                Plan::Verify { remove_temp: true },
            ),
            (
                Some(&p),
                Some(&link),
                None,
                keep(Form::GzipTemp, "is a symbolic link"),
            ),
            (
                Some(&p),
                Some(&theirs),
                Some(&g),
                keep(
                    Form::GzipTemp,
                    &format!("is owned by user {}, not by logpipe's", stranger()),
                ),
            ),
            (
                Some(&p),
                None,
                Some(&link),
                keep(Form::Gzip, "is a symbolic link"),
            ),
            (
                Some(&p),
                Some(&t),
                Some(&two_names),
                keep(Form::Gzip, "has 2 names (hard links)"),
            ),
            // The interrupted link-then-unlink: one file, two names.
            (
                Some(&p),
                Some(&two_names),
                Some(&two_names),
                Plan::DropTempName,
            ),
            (
                Some(&link),
                None,
                None,
                Plan::NotOurs("is a symbolic link".into()),
            ),
            (
                Some(&two_names),
                None,
                None,
                Plan::NotOurs("has 2 names (hard links)".into()),
            ),
        ];
        for (plain, temp, gz, want) in cases {
            assert_eq!(
                plan(Method::Gzip, plain, temp, gz),
                want,
                "{plain:?} {temp:?} {gz:?}"
            );
        }
        // zstd's blockers are named as its own forms.
        assert_eq!(
            plan(Method::Zstd, Some(&p), Some(&link), None),
            keep(Form::ZstdTemp, "is a symbolic link")
        );
        assert_eq!(
            plan(Method::Zstd, Some(&p), None, Some(&link)),
            keep(Form::Zstd, "is a symbolic link")
        );
    }

    fn id(n: u64) -> SegmentId {
        SegmentId {
            date: date(2026, 11, 21),
            n,
        }
    }

    fn entry(n: u64, form: Form) -> Entry {
        Entry {
            id: id(n),
            form,
            name: inventory::name(OsStr::new("current"), id(n), form),
        }
    }

    #[test]
    fn recovery_removes_only_our_temporaries_and_queues_only_our_plain_segments() {
        let two_names = meta(Kind::Regular, sys::euid(), 2, 70);
        let mut stats: HashMap<OsString, Meta> = HashMap::new();
        let mut entries = Vec::new();
        let mut add = |n, form, meta: Option<Meta>| {
            let e = entry(n, form);
            if let Some(meta) = meta {
                stats.insert(e.name.clone(), meta);
            }
            entries.push(e);
        };
        add(1, Form::GzipTemp, Some(ours(1))); // stale, alone: removed
        add(2, Form::Plain, Some(ours(2))); // queued
        add(2, Form::GzipTemp, Some(ours(3))); // removed
        add(3, Form::Plain, Some(ours(4))); // queued
        add(
            3,
            Form::GzipTemp,
            Some(meta(Kind::Symlink, sys::euid(), 1, 5)),
        ); // left
        add(4, Form::Plain, Some(ours(6))); // queued: the .gz is verified later
        add(4, Form::Gzip, Some(ours(7)));
        add(5, Form::Gzip, Some(two_names)); // an interrupted link-then-unlink
        add(5, Form::GzipTemp, Some(two_names)); // its second name: removed
        add(6, Form::Plain, Some(meta(Kind::Regular, stranger(), 1, 8))); // a stranger's
        add(7, Form::Plain, Some(meta(Kind::Fifo, sys::euid(), 1, 9))); // a FIFO
        add(8, Form::Plain, None); // gone since the listing
        add(9, Form::Other, Some(ours(10))); // `X.bak`: not ours to judge
        add(10, Form::Gzip, Some(ours(11))); // done
        add(11, Form::ZstdTemp, Some(ours(12))); // stale zstd: removed
        add(12, Form::Plain, Some(ours(13))); // queued
        add(12, Form::Zstd, Some(ours(14)));
        add(
            12,
            Form::ZstdTemp,
            Some(meta(Kind::Symlink, sys::euid(), 1, 15)),
        ); // left
        add(13, Form::Zstd, Some(two_names)); // an interrupted rename, zstd
        add(13, Form::ZstdTemp, Some(two_names)); // removed
        add(14, Form::GzipTemp, Some(ours(16))); // both temporaries: both go
        add(14, Form::ZstdTemp, Some(ours(17)));
        entries.sort_by_key(|a| (a.id, a.form));
        let stat = |name: &OsStr| stats.get(name).copied();
        let got = recover(&entries, true, stat);
        let names = |forms: &[(u64, Form)]| -> Vec<OsString> {
            forms.iter().map(|&(n, f)| entry(n, f).name).collect()
        };
        assert_eq!(
            got.remove,
            names(&[
                (1, Form::GzipTemp),
                (2, Form::GzipTemp),
                (5, Form::GzipTemp),
                (11, Form::ZstdTemp),
                (13, Form::ZstdTemp),
                (14, Form::GzipTemp),
                (14, Form::ZstdTemp),
            ])
        );
        assert_eq!(got.queue, [id(2), id(3), id(4), id(12)]);
        // Without compression, plain is final: nothing is queued, and stale
        // temporaries of an earlier run with compression still go.
        let got = recover(&entries, false, stat);
        assert!(got.queue.is_empty());
        assert_eq!(got.remove.len(), 7);
    }

    struct Fixture {
        tmp: tempfile::TempDir,
        dir: Dir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let dir = Dir::open(tmp.path()).unwrap();
            Fixture { tmp, dir }
        }

        fn path(&self, n: u64, form: Form) -> std::path::PathBuf {
            self.tmp.path().join(entry(n, form).name)
        }

        fn finish(&self, n: u64, commit: &mut dyn FnMut() -> bool) -> Outcome {
            self.finish_as(Method::Gzip, n, commit)
        }

        fn finish_as(&self, method: Method, n: u64, commit: &mut dyn FnMut() -> bool) -> Outcome {
            let mut compressor = Compressor::new(method, 1, 1).unwrap();
            finish(
                &self.dir,
                OsStr::new("current"),
                id(n),
                &mut compressor,
                0o640,
                commit,
            )
            .unwrap()
        }

        fn gunzip(&self, n: u64) -> Vec<u8> {
            self.decompress(Method::Gzip, n)
        }

        fn decompress(&self, method: Method, n: u64) -> Vec<u8> {
            let mut out = Vec::new();
            let file = File::open(self.path(n, method.form())).unwrap();
            method.decoder(file).unwrap().read_to_end(&mut out).unwrap();
            out
        }
    }

    fn gzip_bytes(data: &[u8]) -> Vec<u8> {
        compressed(Method::Gzip, data)
    }

    fn compressed(method: Method, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let level = method.default_level();
        Compressor::new(method, level, 1)
            .unwrap()
            .compress(&mut &data[..], &mut out)
            .unwrap();
        out
    }

    #[test]
    fn zstd_compresses_and_removes_the_plain_segment() {
        let f = Fixture::new();
        let content = b"GET /index.html 200\n".repeat(10_000);
        std::fs::write(f.path(1, Form::Plain), &content).unwrap();
        std::fs::write(f.path(1, Form::ZstdTemp), b"stale").unwrap();
        let outcome = f.finish_as(Method::Zstd, 1, &mut || true);
        assert_eq!(outcome, Outcome::Done(entry(1, Form::Zstd).name));
        assert_eq!(f.decompress(Method::Zstd, 1), content);
        assert!(!f.path(1, Form::Plain).exists());
        assert!(!f.path(1, Form::ZstdTemp).exists());
        assert!(!f.path(1, Form::Gzip).exists());
    }

    #[test]
    fn the_other_methods_compressed_form_counts_once_verified() {
        let f = Fixture::new();
        let content = b"a segment\n".repeat(1000);
        // 1: left by a crash under gzip, found by a run with zstd.
        std::fs::write(f.path(1, Form::Plain), &content).unwrap();
        std::fs::write(f.path(1, Form::Gzip), gzip_bytes(&content)).unwrap();
        assert_eq!(
            f.finish_as(Method::Zstd, 1, &mut || true),
            Outcome::Done(entry(1, Form::Gzip).name)
        );
        assert!(!f.path(1, Form::Plain).exists());
        assert!(!f.path(1, Form::Zstd).exists(), "compressed twice");
        // 2: the same the other way round.
        std::fs::write(f.path(2, Form::Plain), &content).unwrap();
        std::fs::write(f.path(2, Form::Zstd), compressed(Method::Zstd, &content)).unwrap();
        assert_eq!(
            f.finish_as(Method::Gzip, 2, &mut || true),
            Outcome::Done(entry(2, Form::Zstd).name)
        );
        assert!(!f.path(2, Form::Plain).exists());
        // 3: a truncated .zst of another run is kept, so is the plain.
        std::fs::write(f.path(3, Form::Plain), &content).unwrap();
        let zst = compressed(Method::Zstd, &content);
        std::fs::write(f.path(3, Form::Zstd), &zst[..zst.len() - 4]).unwrap();
        let Outcome::Kept(why) = f.finish_as(Method::Gzip, 3, &mut || true) else {
            panic!("3: not left alone");
        };
        assert!(why.contains("current.2026-11-21.3.zst exists and does not decompress"));
        assert!(f.path(3, Form::Plain).exists());
        // 4: both compressed forms and the plain: the current method's is
        // verified, the other stays.
        std::fs::write(f.path(4, Form::Plain), &content).unwrap();
        std::fs::write(f.path(4, Form::Gzip), gzip_bytes(&content)).unwrap();
        std::fs::write(f.path(4, Form::Zstd), compressed(Method::Zstd, &content)).unwrap();
        assert_eq!(
            f.finish_as(Method::Zstd, 4, &mut || true),
            Outcome::Done(entry(4, Form::Zstd).name)
        );
        assert!(!f.path(4, Form::Plain).exists());
        assert_eq!(f.decompress(Method::Gzip, 4), content);
        // 5: a stranger's .gz does not stand in the way of a .zst.
        std::fs::write(f.path(5, Form::Plain), &content).unwrap();
        symlink("/etc/passwd", f.path(5, Form::Gzip)).unwrap();
        assert_eq!(
            f.finish_as(Method::Zstd, 5, &mut || true),
            Outcome::Done(entry(5, Form::Zstd).name)
        );
        assert_eq!(f.decompress(Method::Zstd, 5), content);
        assert!(f.path(5, Form::Gzip).symlink_metadata().is_ok());
    }

    #[test]
    fn a_planted_zstd_temporary_link_is_never_followed() {
        let f = Fixture::new();
        let victim = f.tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::write(f.path(1, Form::Plain), b"line\n").unwrap();
        symlink(&victim, f.path(1, Form::ZstdTemp)).unwrap();
        let Outcome::Kept(why) = f.finish_as(Method::Zstd, 1, &mut || true) else {
            panic!("not stepped around");
        };
        assert!(
            why.ends_with("current.2026-11-21.1.zst.tmp is a symbolic link"),
            "{why}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(f.path(1, Form::Plain)).unwrap(), b"line\n");
    }

    #[test]
    fn compresses_and_removes_the_plain_segment() {
        let f = Fixture::new();
        std::fs::write(f.path(1, Form::Plain), b"one\ntwo\n").unwrap();
        let outcome = f.finish(1, &mut || true);
        assert_eq!(outcome, Outcome::Done(entry(1, Form::Gzip).name));
        assert_eq!(f.gunzip(1), b"one\ntwo\n");
        assert!(!f.path(1, Form::Plain).exists());
        assert!(!f.path(1, Form::GzipTemp).exists());
        assert_eq!(f.finish(1, &mut || true), Outcome::Gone);
    }

    #[test]
    fn a_planted_temporary_link_is_never_followed() {
        let f = Fixture::new();
        let victim = f.tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::write(f.path(1, Form::Plain), b"line\n").unwrap();
        symlink(&victim, f.path(1, Form::GzipTemp)).unwrap();
        let Outcome::Kept(why) = f.finish(1, &mut || true) else {
            panic!("not stepped around");
        };
        assert!(
            why.ends_with("current.2026-11-21.1.gz.tmp is a symbolic link"),
            "{why}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(f.path(1, Form::GzipTemp).symlink_metadata().is_ok());
        assert_eq!(std::fs::read(f.path(1, Form::Plain)).unwrap(), b"line\n");
    }

    #[test]
    fn a_gz_planted_before_the_rename_is_not_replaced() {
        let f = Fixture::new();
        std::fs::write(f.path(1, Form::Plain), b"line\n").unwrap();
        let planted = f.path(1, Form::Gzip);
        // Planted at the last moment, after the checks and the compression.
        let outcome = f.finish(1, &mut || {
            std::fs::write(&planted, b"planted").unwrap();
            true
        });
        let Outcome::Kept(why) = outcome else {
            panic!("not stepped around: {outcome:?}");
        };
        assert!(
            why.contains("appeared meanwhile, and is not replaced"),
            "{why}"
        );
        assert_eq!(std::fs::read(&planted).unwrap(), b"planted");
        assert_eq!(std::fs::read(f.path(1, Form::Plain)).unwrap(), b"line\n");
        assert!(!f.path(1, Form::GzipTemp).exists(), "our temporary stays");
    }

    #[test]
    fn a_refused_commit_changes_nothing() {
        let f = Fixture::new();
        std::fs::write(f.path(1, Form::Plain), b"line\n").unwrap();
        assert_eq!(f.finish(1, &mut || false), Outcome::Stopped);
        let names: Vec<_> = std::fs::read_dir(f.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [entry(1, Form::Plain).name]);
    }

    #[test]
    fn both_forms_keep_the_gz_only_when_it_holds_the_segment() {
        let f = Fixture::new();
        let content = b"a segment\n".repeat(1000);
        // 1: the same content, as a crash before the removal leaves it.
        std::fs::write(f.path(1, Form::Plain), &content).unwrap();
        std::fs::write(f.path(1, Form::Gzip), gzip_bytes(&content)).unwrap();
        // 2: a truncated .gz; 3: another content.
        std::fs::write(f.path(2, Form::Plain), &content).unwrap();
        let gz = gzip_bytes(&content);
        std::fs::write(f.path(2, Form::Gzip), &gz[..gz.len() - 8]).unwrap();
        std::fs::write(f.path(3, Form::Plain), &content).unwrap();
        std::fs::write(f.path(3, Form::Gzip), gzip_bytes(b"other\n")).unwrap();

        assert_eq!(
            f.finish(1, &mut || true),
            Outcome::Done(entry(1, Form::Gzip).name)
        );
        assert!(!f.path(1, Form::Plain).exists());
        assert_eq!(f.gunzip(1), content);
        for n in [2, 3] {
            let before = std::fs::read(f.path(n, Form::Gzip)).unwrap();
            let Outcome::Kept(why) = f.finish(n, &mut || true) else {
                panic!("{n}: not left alone");
            };
            assert!(why.contains("does not decompress to the segment's content"));
            assert_eq!(std::fs::read(f.path(n, Form::Plain)).unwrap(), content);
            assert_eq!(std::fs::read(f.path(n, Form::Gzip)).unwrap(), before);
        }
    }

    #[test]
    fn a_plain_name_that_is_not_ours_is_left_alone() {
        let f = Fixture::new();
        let victim = f.tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        symlink(&victim, f.path(1, Form::Plain)).unwrap();
        std::fs::hard_link(&victim, f.path(2, Form::Plain)).unwrap();
        for n in [1, 2] {
            assert!(matches!(f.finish(n, &mut || true), Outcome::NotOurs(_)));
            assert!(!f.path(n, Form::Gzip).exists());
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_second_name_left_by_an_interrupted_rename_is_dropped() {
        let f = Fixture::new();
        let content = b"x\n".repeat(10);
        std::fs::write(f.path(1, Form::Plain), &content).unwrap();
        std::fs::write(f.path(1, Form::Gzip), gzip_bytes(&content)).unwrap();
        std::fs::hard_link(f.path(1, Form::Gzip), f.path(1, Form::GzipTemp)).unwrap();
        assert_eq!(
            f.finish(1, &mut || true),
            Outcome::Done(entry(1, Form::Gzip).name)
        );
        assert!(!f.path(1, Form::GzipTemp).exists());
        assert!(!f.path(1, Form::Plain).exists());
        assert_eq!(f.gunzip(1), content);
    }
}
