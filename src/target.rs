//! Where the files live: the active file, its directory, and the names
//! derived from it (segments, lock, state).
//!
//! Every file logpipe writes sits in the active file's directory and is
//! named after the active file, so one directory can hold several targets
//! (`app.log`, `worker.log`) without them touching each other's files.
//!
//! The segments start with the active file's name (`app.log.2026-11-21.3`);
//! the lock and state files start with a dot (`.app.log.lock`), so that a
//! reader's glob (`zcat -f app.log*`), `ls` and log viewers never take them
//! for log data. Earlier versions named them `app.log.lock` and
//! `app.log.state`; [`Target::legacy_lock_name`] and
//! [`Target::legacy_state_name`] are those names, moved at start.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::inventory::{self, Form};
use crate::naming::SegmentId;

/// The active file name used for a directory target without `--name`.
pub const DEFAULT_NAME: &str = "current";

/// The resolved paths of one target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The directory holding the active file and its segments.
    pub dir: PathBuf,
    /// The active file's name within `dir`, and the prefix of every
    /// segment name.
    pub name: OsString,
}

/// Why a TARGET and `--name` do not make a target.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetError {
    /// `--name` was given, but TARGET names a file, not a directory.
    NameWithFileTarget,
    /// TARGET has no file name (`/`, or a path that ends in nothing).
    NoFileName,
    /// TARGET ends in `..` (`x/..`, `x/../`) and is not an existing
    /// directory: what it means depends on a directory that is not there.
    UnresolvedDotDot,
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::NameWithFileTarget => f.write_str(
                "--name only applies when TARGET is a directory (ends in / or exists as one)",
            ),
            TargetError::NoFileName => {
                f.write_str("TARGET names no file; end it in / to use it as a directory")
            }
            TargetError::UnresolvedDotDot => f.write_str(
                "TARGET ends in '..' but is not an existing directory; name the directory without '..'",
            ),
        }
    }
}

impl Target {
    /// Resolves TARGET: a path ending in `/` or an existing directory holds
    /// `name` (default `current`); anything else is the active file.
    ///
    /// A path whose last component is `.` (`logs/.`, `logs/./`) is the
    /// directory before it, made if missing, as with a trailing `/` (Rust's
    /// `Path` drops that `.`, which made `logs/.` the active file `logs`).
    /// One whose last component is `..` must be an existing directory: a
    /// missing `x` in `x/..` would otherwise be made only to step back out
    /// of it.
    pub fn resolve(target: &Path, name: Option<&str>) -> Result<Target, TargetError> {
        let bytes = target.as_os_str().as_bytes();
        let last = bytes.split(|&b| b == b'/').rfind(|c| !c.is_empty());
        match last {
            Some(b".") => {
                // `components` leaves out every `.` but a leading one.
                let dir: PathBuf = target.components().collect();
                return Ok(Target {
                    dir,
                    name: name.unwrap_or(DEFAULT_NAME).into(),
                });
            }
            Some(b"..") if !target.is_dir() => return Err(TargetError::UnresolvedDotDot),
            _ => {}
        }
        let is_dir = bytes.ends_with(b"/") || target.is_dir();
        if is_dir {
            let name = name.unwrap_or(DEFAULT_NAME);
            return Ok(Target {
                dir: target.to_path_buf(),
                name: name.into(),
            });
        }
        if name.is_some() {
            return Err(TargetError::NameWithFileTarget);
        }
        let Some(file_name) = target.file_name() else {
            return Err(TargetError::NoFileName);
        };
        let dir = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Target {
            dir,
            name: file_name.to_os_string(),
        })
    }

    /// Creates the directory and its missing parents with `mode` (umask
    /// applied), given to the `--owner` user and group
    /// ([`crate::sys::make_dirs`]).
    pub fn create_dir(&self, mode: u32) -> anyhow::Result<()> {
        use anyhow::Context;
        let dir = &self.dir;
        let created = crate::sys::make_dirs(dir, mode);
        // mkdir's EEXIST for an existing file would read as nonsense here.
        // (Rebuilding from components drops a trailing `/`, which makes
        // stat fail with ENOTDIR instead of seeing the file.)
        let plain: PathBuf = dir.components().collect();
        if plain.exists() && !plain.is_dir() {
            anyhow::bail!(
                "unable to create directory {}: a file of that name exists",
                dir.display()
            );
        }
        created.with_context(|| format!("unable to create directory {}", dir.display()))
    }

    /// The active file.
    pub fn active(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The lock file, held for as long as logpipe runs on this target.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(self.lock_name())
    }

    /// The state file remembering the highest segment number per date.
    pub fn state(&self) -> PathBuf {
        self.dir.join(self.state_name())
    }

    /// The lock file's name within `dir`: `.<active>.lock`.
    pub fn lock_name(&self) -> OsString {
        self.hidden_name(".lock")
    }

    /// The state file's name within `dir`: `.<active>.state`.
    pub fn state_name(&self) -> OsString {
        self.hidden_name(".state")
    }

    /// The lock file's name in earlier versions: `<active>.lock`.
    pub fn legacy_lock_name(&self) -> OsString {
        self.sibling_name(".lock")
    }

    /// The state file's name in earlier versions: `<active>.state`.
    pub fn legacy_state_name(&self) -> OsString {
        self.sibling_name(".state")
    }

    /// The name of a finished, uncompressed segment within `dir`.
    pub fn segment_name(&self, id: SegmentId) -> OsString {
        inventory::name(&self.name, id, Form::Plain)
    }

    /// `name` within `dir`, as a path for messages.
    pub fn path_of(&self, name: &OsStr) -> PathBuf {
        self.dir.join(name)
    }

    /// The shortest suffix a segment's files need after the active file's
    /// name: `.YYYY-MM-DD.1.zst.tmp` (the temporary of the first compressed
    /// segment of a day).
    pub const SHORTEST_SUFFIX: usize = ".2026-11-21.1.zst.tmp".len();

    /// Checks that the active file's name leaves room for a segment suffix
    /// in a file name (255 bytes on Linux filesystems): a name that can
    /// never fit would fail at the first rotation, hours into the run. (A
    /// name that fits the first numbers but not longer ones fails when N
    /// grows: that error stops logpipe with exit 1, as no wait can cure
    /// it.)
    pub fn check_name_fits(&self) -> Result<(), String> {
        const NAME_MAX: usize = 255;
        let len = self.name.len();
        if len + Self::SHORTEST_SUFFIX > NAME_MAX {
            return Err(format!(
                "the active file name '{}' is {len} bytes long; a segment name adds at least {} bytes and a file name holds {NAME_MAX}: use at most {} bytes",
                self.name.to_string_lossy(),
                Self::SHORTEST_SUFFIX,
                NAME_MAX - Self::SHORTEST_SUFFIX
            ));
        }
        Ok(())
    }

    fn hidden_name(&self, suffix: &str) -> OsString {
        let mut name = b".".to_vec();
        name.extend_from_slice(self.name.as_bytes());
        name.extend_from_slice(suffix.as_bytes());
        OsString::from_vec(name)
    }

    fn sibling_name(&self, suffix: &str) -> OsString {
        let mut name = self.name.clone().into_vec();
        name.extend_from_slice(suffix.as_bytes());
        OsString::from_vec(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(target: &str, name: Option<&str>) -> (String, String) {
        let t = Target::resolve(Path::new(target), name).unwrap();
        (
            t.dir.display().to_string(),
            t.name.to_string_lossy().into_owned(),
        )
    }

    #[test]
    fn directory_targets() {
        assert_eq!(
            resolve("/nonexistent-logpipe/app/", None),
            ("/nonexistent-logpipe/app/".into(), "current".into())
        );
        assert_eq!(
            resolve("/nonexistent-logpipe/app/", Some("web")),
            ("/nonexistent-logpipe/app/".into(), "web".into())
        );
        // An existing directory needs no trailing slash.
        assert_eq!(resolve("/", None), ("/".into(), "current".into()));
    }

    #[test]
    fn file_targets() {
        assert_eq!(
            resolve("/nonexistent-logpipe/app.log", None),
            ("/nonexistent-logpipe".into(), "app.log".into())
        );
        assert_eq!(resolve("app.log", None), (".".into(), "app.log".into()));
        assert_eq!(
            Target::resolve(Path::new("/nonexistent-logpipe/app.log"), Some("x")).unwrap_err(),
            TargetError::NameWithFileTarget
        );
        assert_eq!(
            Target::resolve(Path::new("/nonexistent-logpipe/.."), None).unwrap_err(),
            TargetError::UnresolvedDotDot
        );
    }

    #[test]
    fn a_last_dot_makes_a_directory_target() {
        for (target, dir) in [
            ("newd/.", "newd"),
            ("newd/./", "newd"),
            ("newd/.//", "newd"),
            ("a/./b/.", "a/b"),
            ("./newd/.", "./newd"),
            (".", "."),
            ("./", "."),
            ("/nonexistent-logpipe/.", "/nonexistent-logpipe"),
            ("/.", "/"),
        ] {
            assert_eq!(
                resolve(target, None),
                (dir.into(), "current".into()),
                "{target}"
            );
        }
        assert_eq!(
            resolve("newd/.", Some("web")),
            ("newd".into(), "web".into())
        );
    }

    #[test]
    fn a_last_dot_dot_must_be_an_existing_directory() {
        // `/tmp/..` is `/`; `/` always exists.
        assert_eq!(
            resolve("/tmp/..", None),
            ("/tmp/..".into(), "current".into())
        );
        assert_eq!(
            resolve("/tmp/../", None),
            ("/tmp/../".into(), "current".into())
        );
        for missing in [
            "/nonexistent-logpipe/..",
            "/nonexistent-logpipe/../",
            "nonexistent-logpipe/..",
        ] {
            assert_eq!(
                Target::resolve(Path::new(missing), None).unwrap_err(),
                TargetError::UnresolvedDotDot,
                "{missing}"
            );
        }
    }

    #[test]
    fn derived_names() {
        let t = Target::resolve(Path::new("/var/log/app.log"), None).unwrap();
        assert_eq!(t.active(), Path::new("/var/log/app.log"));
        assert_eq!(t.lock(), Path::new("/var/log/.app.log.lock"));
        assert_eq!(t.state(), Path::new("/var/log/.app.log.state"));
        assert_eq!(t.legacy_lock_name(), "app.log.lock");
        assert_eq!(t.legacy_state_name(), "app.log.state");
        let id = SegmentId {
            date: jiff::civil::date(2026, 11, 21),
            n: 3,
        };
        assert_eq!(t.segment_name(id), "app.log.2026-11-21.3");
    }
}
