//! One finished segment, opened in whichever form holds it now.
//!
//! A segment is read from its plain file while that is there, and from
//! its compressed file (`X.gz` or `X.zst`) once the worker removed the
//! plain one: the worker removes `X` only after the compressed file is
//! complete under its final name, so one of them always holds the whole
//! segment, and a segment listed in several forms is read once. A
//! temporary (`X.gz.tmp`, `X.zst.tmp`) is never read.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::codec::Method;
use crate::inventory::{self, Form};
use crate::naming::SegmentId;
use crate::sys::{Access, Dir};

/// The forms a finished segment is read from, in the order tried.
const READABLE: [Form; 3] = [Form::Plain, Form::Gzip, Form::Zstd];

/// What [`Source::open`] found.
pub enum Opened {
    /// The segment's content, and the path of the file it comes from.
    Source(Source, PathBuf),
    /// No form of it is there any more.
    Missing,
    /// Only forms that could not be opened or decoded (said already).
    Refused,
}

/// A segment's uncompressed content.
pub enum Source {
    Plain(File),
    Compressed(Box<dyn Read>),
}

impl Source {
    /// Opens segment `id` of `active` in `dir`. A form refused (a symbolic
    /// link, a FIFO…) is said and passed over.
    pub fn open(dir: &Dir, active: &OsStr, id: SegmentId) -> Opened {
        let mut refused = false;
        for form in READABLE {
            let name = inventory::name(active, id, form);
            let file = match dir.open_file(&name, Access::Read) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    crate::warning!("not reading {}: {e}", dir.display(&name).display());
                    refused = true;
                    continue;
                }
            };
            let source = match Method::of_form(form) {
                Some(method) => match method.decoder(file) {
                    Ok(decoder) => Source::Compressed(decoder),
                    Err(e) => {
                        crate::warning!("not reading {}: {e}", dir.display(&name).display());
                        refused = true;
                        continue;
                    }
                },
                None => Source::Plain(file),
            };
            return Opened::Source(source, dir.display(&name));
        }
        if refused {
            Opened::Refused
        } else {
            Opened::Missing
        }
    }

    /// Skips the first `n` bytes of content.
    pub fn skip(&mut self, n: u64) -> io::Result<()> {
        match self {
            Source::Plain(file) => file.seek(SeekFrom::Start(n)).map(drop),
            Source::Compressed(decoder) => {
                let skipped = io::copy(&mut decoder.by_ref().take(n), &mut io::sink())?;
                if skipped < n {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("it holds {skipped} bytes, fewer than the {n} already read"),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(file) => file.read(buf),
            Source::Compressed(decoder) => decoder.read(buf),
        }
    }
}
