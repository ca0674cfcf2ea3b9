//! One finished segment, opened in whichever form holds it now.
//!
//! A segment is read from its plain file while that is there, and from
//! its compressed file once the worker removed the plain one: the worker
//! removes `X` only after `X.gz` is complete under its final name, so one
//! of the two always holds the whole segment, and a segment listed in both
//! forms is read once. A temporary (`X.gz.tmp`) is never read.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;

use crate::inventory::{self, Form};
use crate::naming::SegmentId;
use crate::sys::{Access, Dir};

/// The forms a finished segment is read from, in the order tried.
const READABLE: [Form; 2] = [Form::Plain, Form::Gzip];

/// What [`Source::open`] found.
pub enum Opened {
    /// The segment's content, and the path of the file it comes from.
    Source(Source, PathBuf),
    /// No form of it is there any more.
    Missing,
    /// Only forms that are not regular files (said already).
    Refused,
}

/// A segment's uncompressed content.
pub enum Source {
    Plain(File),
    Gzip(Box<MultiGzDecoder<BufReader<File>>>),
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
            let source = match form {
                Form::Gzip => Source::Gzip(Box::new(MultiGzDecoder::new(
                    BufReader::with_capacity(128 << 10, file),
                ))),
                _ => Source::Plain(file),
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
            Source::Gzip(decoder) => {
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
            Source::Gzip(decoder) => decoder.read(buf),
        }
    }
}
