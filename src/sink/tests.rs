//! Unit tests of the sink on a real directory, with the clock given.

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;

use super::*;
use crate::naming;
use crate::onfull::Pause;
use crate::schedule::parse_every;
use jiff::tz::TimeZone;

/// Gives up at once: a failed write is an error here.
#[derive(Debug)]
struct NoWait;

impl Pause for NoWait {
    fn pause(&self, _: Duration) -> bool {
        false
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    target: Target,
    now: Timestamp,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::resolve(&dir.path().join("current"), None).unwrap();
        let now: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        Fixture { dir, target, now }
    }

    fn open(&self, size: u64) -> Sink {
        self.open_with(size, "never", 0o640)
    }

    fn open_with(&self, size: u64, every: &str, mode: u32) -> Sink {
        let dir = Arc::new(Dir::open(self.dir.path()).unwrap());
        let lock = crate::lock::acquire(&dir, &self.target, 0o640).unwrap();
        let numbering = Numbering::load(dir.clone(), &self.target, 0o640).unwrap();
        let schedule = Schedule::new(parse_every(every).unwrap(), TimeZone::UTC);
        let options = Options {
            size,
            mode,
            schedule,
            fsync: Fsync::Rotate,
            dir_mode: 0o750,
        };
        let on_full = OnFull::block(Rc::new(NoWait));
        Sink::open(
            dir,
            self.target.clone(),
            lock,
            numbering,
            options,
            on_full,
            self.now,
        )
        .unwrap()
    }

    /// Finished segments in order, then the active file.
    fn files(&self) -> Vec<(String, Vec<u8>)> {
        let mut segments: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name();
                let (id, _) = naming::parse(b"current", name.as_bytes())?;
                Some((id, name.to_string_lossy().into_owned()))
            })
            .collect();
        segments.sort();
        let mut files: Vec<_> = segments
            .into_iter()
            .map(|(_, name)| (name.clone(), fs::read(self.dir.path().join(&name)).unwrap()))
            .collect();
        files.push(("current".into(), fs::read(self.target.active()).unwrap()));
        files
    }

    fn contents(&self) -> Vec<String> {
        self.files()
            .into_iter()
            .map(|(_, bytes)| String::from_utf8(bytes).unwrap())
            .collect()
    }
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

#[test]
fn a_boundary_rolls_a_non_empty_file_only() {
    let fx = Fixture::new();
    let mut sink = fx.open_with(100, "1h", 0o640);
    assert_eq!(sink.wake_at(), None, "an empty file has no deadline");
    sink.write(at("2026-11-21T12:10:00Z"), b"a\n").unwrap();
    assert_eq!(sink.wake_at(), Some(at("2026-11-21T13:00:00Z")));
    sink.tick(at("2026-11-21T12:59:59Z")).unwrap();
    assert_eq!(fx.contents(), ["a\n"]);
    sink.tick(at("2026-11-21T13:00:00Z")).unwrap();
    assert_eq!(fx.contents(), ["a\n", ""]);
    // Idle hours with an empty file: nothing more.
    sink.tick(at("2026-11-21T16:00:00Z")).unwrap();
    assert_eq!(fx.contents(), ["a\n", ""]);
}

#[test]
fn a_segment_is_named_after_the_day_it_was_opened() {
    let fx = Fixture::new();
    let mut sink = fx.open_with(100, "1d", 0o640);
    sink.write(at("2026-11-21T23:59:58Z"), b"late\n").unwrap();
    sink.tick(at("2026-11-22T00:00:00Z")).unwrap();
    sink.write(at("2026-11-22T00:00:01Z"), b"early\n").unwrap();
    sink.tick(at("2026-11-23T00:00:00Z")).unwrap();
    let names: Vec<_> = fx.files().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["current.2026-11-21.1", "current.2026-11-22.1", "current"]
    );
    assert_eq!(fx.contents(), ["late\n", "early\n", ""]);
}

#[test]
fn clock_steps_roll_once_at_most() {
    let fx = Fixture::new();
    let mut sink = fx.open_with(100, "1h", 0o640);
    sink.write(at("2026-11-21T12:30:00Z"), b"a\n").unwrap();
    // Three days forward: one roll, and the empty file waits for input.
    sink.tick(at("2026-11-24T12:30:00Z")).unwrap();
    sink.tick(at("2026-11-24T12:30:01Z")).unwrap();
    assert_eq!(fx.contents(), ["a\n", ""]);
    sink.write(at("2026-11-24T12:31:00Z"), b"b\n").unwrap();
    // Two days back: the window ends at the next boundary of the new
    // time (10:00), not in two days.
    sink.tick(at("2026-11-22T09:15:00Z")).unwrap();
    assert_eq!(sink.wake_at(), Some(at("2026-11-22T10:00:00Z")));
    sink.tick(at("2026-11-22T10:00:00Z")).unwrap();
    assert_eq!(fx.contents(), ["a\n", "b\n", ""]);
    let names: Vec<_> = fx.files().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["current.2026-11-21.1", "current.2026-11-24.1", "current"]
    );
}

#[test]
fn an_asked_roll_waits_for_the_end_of_a_line() {
    let fx = Fixture::new();
    let mut sink = fx.open_with(100, "never", 0o640);
    sink.ask_roll();
    sink.tick(fx.now).unwrap();
    assert_eq!(fx.contents(), [""], "an empty file is not rolled");
    sink.write(fx.now, b"a\npiece of a long ").unwrap();
    sink.ask_roll();
    assert_eq!(sink.wake_at(), None, "inside a line only input can help");
    sink.tick(fx.now).unwrap();
    sink.write(fx.now, b"line\n").unwrap();
    assert_eq!(sink.wake_at(), Some(fx.now));
    sink.tick(fx.now).unwrap();
    assert_eq!(fx.contents(), ["a\n", "piece of a long line\n", ""]);
}

#[test]
fn an_existing_file_from_an_earlier_window_is_due_at_once() {
    let fx = Fixture::new();
    fs::write(fx.target.active(), b"old\n").unwrap();
    let last_written: std::time::SystemTime = at("2026-11-21T10:30:00Z").into();
    File::options()
        .write(true)
        .open(fx.target.active())
        .unwrap()
        .set_modified(last_written)
        .unwrap();
    let mut sink = fx.open_with(100, "1h", 0o640);
    assert_eq!(sink.wake_at(), Some(at("2026-11-21T11:00:00Z")));
    sink.tick(fx.now).unwrap();
    let names: Vec<_> = fx.files().into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["current.2026-11-21.1", "current"]);
    assert_eq!(fx.contents(), ["old\n", ""]);
}

#[test]
fn fitting_writes_stay_in_one_file() {
    let fx = Fixture::new();
    let mut sink = fx.open(10);
    sink.write(fx.now, b"abc\n").unwrap();
    sink.write(fx.now, b"defgh\n").unwrap();
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["abc\ndefgh\n"]);
}

#[test]
fn cuts_at_the_last_line_that_fits() {
    let fx = Fixture::new();
    let mut sink = fx.open(10);
    sink.write(fx.now, b"aaa\nbbb\ncc\ndd\neeeee\nf\n").unwrap();
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["aaa\nbbb\n", "cc\ndd\n", "eeeee\nf\n"]);
    let names: Vec<_> = fx.files().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        ["current.2026-11-21.1", "current.2026-11-21.2", "current"]
    );
}

#[test]
fn long_line_makes_one_oversized_segment() {
    let fx = Fixture::new();
    let mut sink = fx.open(4);
    sink.write(fx.now, b"ab\n0123456789\ncd\n").unwrap();
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["ab\n", "0123456789\n", "cd\n"]);
}

#[test]
fn line_streamed_in_pieces_is_not_cut() {
    let fx = Fixture::new();
    let mut sink = fx.open(4);
    for piece in [&b"ab\n01"[..], b"2345", b"6789", b"\ncd\n"] {
        sink.write(fx.now, piece).unwrap();
    }
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["ab\n", "0123456789\n", "cd\n"]);
}

#[test]
fn a_line_too_long_to_hold_starts_a_new_segment() {
    let fx = Fixture::new();
    let mut sink = fx.open(100);
    for piece in [&b"ab\n"[..], b"0123", b"456\n", b"cd\n"] {
        sink.write(fx.now, piece).unwrap();
    }
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["ab\n", "0123456\ncd\n"]);
}

#[test]
fn empty_lines_and_exact_fit() {
    let fx = Fixture::new();
    let mut sink = fx.open(3);
    sink.write(fx.now, b"\n\n\n\nab\n").unwrap();
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["\n\n\n", "\n", "ab\n"]);
}

#[test]
fn close_finishes_a_line_under_way() {
    let fx = Fixture::new();
    let mut sink = fx.open(100);
    sink.write(fx.now, b"a\npiece of a long line").unwrap();
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["a\n", "piece of a long line\n"]);
}

#[test]
fn reopen_appends_and_closes_a_torn_line() {
    let fx = Fixture::new();
    fs::write(fx.target.active(), b"torn").unwrap();
    let mut sink = fx.open(100);
    sink.write(fx.now, b"next\n").unwrap();
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["torn\nnext\n"]);
}

#[test]
fn never_replaces_an_existing_name() {
    let fx = Fixture::new();
    let mut sink = fx.open(4);
    // Planted after the numbering was loaded: only the link can see it.
    fs::write(fx.dir.path().join("current.2026-11-21.2"), b"planted").unwrap();
    sink.write(fx.now, b"aaa\nbbb\nccc\n").unwrap();
    sink.close(fx.now).unwrap();
    let files = fx.files();
    let got: Vec<_> = files
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            ("current.2026-11-21.1", &b"aaa\n"[..]),
            ("current.2026-11-21.2", b"planted"),
            ("current.2026-11-21.3", b"bbb\n"),
            ("current", b"ccc\n"),
        ]
    );
}

#[test]
fn interrupted_rotation_is_completed_at_open() {
    let fx = Fixture::new();
    fs::write(fx.target.active(), b"done\n").unwrap();
    fs::hard_link(
        fx.target.active(),
        fx.dir.path().join("current.2026-11-20.4"),
    )
    .unwrap();
    let mut sink = fx.open(100);
    sink.write(fx.now, b"new\n").unwrap();
    sink.close(fx.now).unwrap();
    assert_eq!(fx.contents(), ["done\n", "new\n"]);
}

#[test]
fn new_files_get_the_mode_exactly() {
    let fx = Fixture::new();
    let mut sink = fx.open_with(2, "never", 0o620);
    sink.write(fx.now, b"a\nb\n").unwrap();
    sink.close(fx.now).unwrap();
    for name in ["current", "current.2026-11-21.1"] {
        let mode = fs::metadata(fx.dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o620, "{name}");
    }
}
