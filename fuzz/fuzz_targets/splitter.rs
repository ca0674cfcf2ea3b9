//! Fuzzes the line splitter and the size rule together, with an oracle.
//!
//! The input chooses a size limit, a read buffer size and the sizes of the
//! reads the source returns; the rest is the data. It goes through the real
//! `LineReader`, and each run through the real `next_step` into segments
//! kept in memory. Then: the segments and the active file put together are
//! the data (plus the newline added to an unfinished last line); every
//! finished segment is non-empty and ends in a newline; a segment over the
//! limit holds a single line; and no step goes without progress.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use logpipe::reader::{Input, LineReader};
use logpipe::rules::{Step, next_step};

/// A source that returns reads of the sizes it is given, in turn.
struct Chunks<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = 1 + usize::from(
            self.sizes
                .get(self.turn % self.sizes.len().max(1))
                .copied()
                .unwrap_or(255),
        );
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let [size, capacity, rest @ ..] = input else {
        return;
    };
    let size = 1 + u64::from(*size % 64);
    let capacity = 1 + usize::from(*capacity % 64);
    let (sizes, data) = rest.split_at(rest.len().min(4));

    let mut reader = LineReader::with_capacity(
        Chunks {
            data,
            sizes,
            turn: 0,
        },
        capacity,
    );
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut active: Vec<u8> = Vec::new();
    let mut steps = 0usize;
    loop {
        let run = match reader.read().expect("reading from memory cannot fail") {
            Input::Run(run) => run,
            Input::Partial => continue,
            Input::End => break,
        };
        let mut rest = run;
        while !rest.is_empty() {
            steps += 1;
            assert!(steps <= 4 * data.len() + 16, "no progress");
            let mid_line = active.last().is_some_and(|&b| b != b'\n');
            let room = size.saturating_sub(active.len() as u64);
            match next_step(rest, room, mid_line, active.is_empty()) {
                Step::Roll => {
                    assert!(!active.is_empty(), "an empty segment");
                    assert!(!mid_line, "a cut inside a line");
                    segments.push(std::mem::take(&mut active));
                }
                Step::Write(n) => {
                    assert!(
                        n > 0 && n <= rest.len(),
                        "a write of {n} of {} bytes",
                        rest.len()
                    );
                    active.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
            }
        }
    }

    let mut expected = data.to_vec();
    if expected.last().is_some_and(|&b| b != b'\n') {
        expected.push(b'\n');
    }
    let collated: Vec<u8> = segments.iter().flatten().chain(&active).copied().collect();
    assert_eq!(collated, expected);
    for segment in &segments {
        assert!(segment.ends_with(b"\n"));
        let lines = segment.iter().filter(|&&b| b == b'\n').count();
        assert!(
            segment.len() as u64 <= size || lines == 1,
            "{} bytes in {lines} lines over {size}",
            segment.len()
        );
    }
});
