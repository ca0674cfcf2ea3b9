//! What of a target is in its directory: one listing, read the same way
//! by numbering (at start), crash recovery and retention (in the worker).
//!
//! Every name that parses as one of the target's segments in any form is
//! listed, whatever the file is, so that any of them claims its number.
//! Whether a file may be read, compressed or deleted is a separate
//! question, answered by `fstatat` when it is about to be done
//! ([`crate::sys::Meta::is_ours`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::naming::{self, SegmentId};
use crate::sys::Dir;

/// The forms a segment takes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    /// `X`: finished, not compressed (yet).
    Plain,
    /// `X.gz`: compressed.
    Gzip,
    /// `X.gz.tmp`: a compression under way, or left by a crash.
    GzipTemp,
    /// `X.zst`: compressed with zstd.
    Zstd,
    /// `X.zst.tmp`: a zstd compression under way, or left by a crash.
    ZstdTemp,
    /// Anything else after the number (`X.bak`, a stranger's): it claims
    /// the number and is otherwise left alone.
    Other,
}

impl Form {
    /// The form of a segment name's suffix (what follows the number).
    pub fn of(suffix: &[u8]) -> Form {
        match suffix {
            b"" => Form::Plain,
            b".gz" => Form::Gzip,
            b".gz.tmp" => Form::GzipTemp,
            b".zst" => Form::Zstd,
            b".zst.tmp" => Form::ZstdTemp,
            _ => Form::Other,
        }
    }

    /// The suffix of this form; `None` for [`Form::Other`].
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            Form::Plain => Some(""),
            Form::Gzip => Some(".gz"),
            Form::GzipTemp => Some(".gz.tmp"),
            Form::Zstd => Some(".zst"),
            Form::ZstdTemp => Some(".zst.tmp"),
            Form::Other => None,
        }
    }

    /// Whether this form is a finished segment's data (plain or
    /// compressed), what retention counts and `--read` would show. A
    /// segment may have several (plain and compressed after a crash, `.gz`
    /// and `.zst` after a change of `--compress`): whoever counts segments
    /// groups the entries of one id, which [`scan`] lists side by side.
    pub fn is_data(self) -> bool {
        matches!(self, Form::Plain | Form::Gzip | Form::Zstd)
    }

    /// Whether this form is a compression under way (or left by a crash).
    pub fn is_temp(self) -> bool {
        matches!(self, Form::GzipTemp | Form::ZstdTemp)
    }
}

/// One of the target's segment files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: SegmentId,
    pub form: Form,
    pub name: OsString,
}

/// The file name of segment `id` of the active file `active` in `form`.
pub fn name(active: &OsStr, id: SegmentId, form: Form) -> OsString {
    let mut name = active.to_os_string();
    name.push(format!(".{id}{}", form.suffix().unwrap_or("")));
    name
}

/// Lists the segments of the active file `active` in `dir`, in any form,
/// sorted by (id, form).
pub fn scan(dir: &Dir, active: &OsStr) -> io::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = dir
        .list()?
        .into_iter()
        .filter_map(|(name, _)| {
            let (id, suffix) = naming::parse(active.as_bytes(), name.as_bytes())?;
            let form = Form::of(suffix);
            Some(Entry { id, form, name })
        })
        .collect();
    entries.sort_by(|a, b| (a.id, a.form, &a.name).cmp(&(b.id, b.form, &b.name)));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn lists_every_form_in_order_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "app.log.2026-11-21.10",
            "app.log.2026-11-21.9.gz",
            "app.log.2026-11-21.9",
            "app.log.2026-11-21.2.gz.tmp",
            "app.log.2026-11-21.3.bak",
            "app.log.2026-11-21.9.zst",
            "app.log.2026-11-21.4.zst.tmp",
            "app.log.2026-11-21.5.zst.gz",
            "app.log",
            "app.log.state",
            "other.2026-11-21.1",
        ] {
            std::fs::write(tmp.path().join(name), "").unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("app.log.2026-11-20.1.gz"))
            .unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let got: Vec<_> = scan(&dir, OsStr::new("app.log"))
            .unwrap()
            .into_iter()
            .map(|e| (e.id.to_string(), e.form))
            .collect();
        assert_eq!(
            got,
            [
                ("2026-11-20.1".to_string(), Form::Gzip),
                ("2026-11-21.2".to_string(), Form::GzipTemp),
                ("2026-11-21.3".to_string(), Form::Other),
                ("2026-11-21.4".to_string(), Form::ZstdTemp),
                ("2026-11-21.5".to_string(), Form::Other),
                ("2026-11-21.9".to_string(), Form::Plain),
                ("2026-11-21.9".to_string(), Form::Gzip),
                ("2026-11-21.9".to_string(), Form::Zstd),
                ("2026-11-21.10".to_string(), Form::Plain),
            ]
        );
        let id = SegmentId {
            date: date(2026, 11, 21),
            n: 9,
        };
        assert_eq!(
            name(OsStr::new("app.log"), id, Form::GzipTemp),
            "app.log.2026-11-21.9.gz.tmp"
        );
        assert_eq!(
            name(OsStr::new("app.log"), id, Form::ZstdTemp),
            "app.log.2026-11-21.9.zst.tmp"
        );
        for form in [
            Form::Plain,
            Form::Gzip,
            Form::GzipTemp,
            Form::Zstd,
            Form::ZstdTemp,
        ] {
            assert_eq!(Form::of(form.suffix().unwrap().as_bytes()), form);
        }
    }
}
