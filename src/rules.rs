//! The size rule, as a pure function of the bytes to write and the state
//! of the active file. Repeating [`next_step`] until the input is written
//! cuts only after a newline, never leaves a segment empty, and lets a
//! segment pass the limit only when it holds a single line. The clock rule
//! (when a time window ends) is in [`crate::schedule`].

use memchr::{memchr, memrchr};

/// What to do next with `data`, the bytes still to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write this many bytes from the start of `data` to the active file.
    Write(usize),
    /// Roll the active file first.
    Roll,
}

/// The size rule, as a pure function: given `data` (whole lines, or the
/// piece of a line too long for the read buffer), the `room` left before
/// the limit, whether the active file ends inside a line (`mid_line`) and
/// whether it is `empty`, what comes next. Repeating it until `data` is
/// written cuts only after a newline, never leaves a segment empty, and
/// lets a segment pass the limit only when it holds a single line.
pub fn next_step(data: &[u8], room: u64, mid_line: bool, empty: bool) -> Step {
    if data.len() as u64 <= room && data.ends_with(b"\n") {
        return Step::Write(data.len());
    }
    // Whole lines that fit (`room` < `data.len()` unless `data` ends inside
    // a line, so the slice bound fits in a usize).
    let fits = memrchr(b'\n', &data[..data.len().min(room as usize)]).map_or(0, |i| i + 1);
    if mid_line || (fits == 0 && empty) {
        // The line under way is the only line of this segment (see
        // `Sink::write`), and an empty file takes the next line whatever
        // its length: either way the line finishes here.
        Step::Write(memchr(b'\n', data).map_or(data.len(), |i| i + 1))
    } else if fits > 0 {
        Step::Write(fits)
    } else {
        // The next line does not fit, or its length is not known yet.
        Step::Roll
    }
}
