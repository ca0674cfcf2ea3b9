//! Standard input cut into runs of whole lines.
//!
//! One reused buffer, filled by large `read(2)` calls. Each call to
//! [`LineReader::read`] makes one read and hands out everything up to the
//! last newline read so far, found with one `memrchr` over the new bytes; the unfinished tail is
//! moved to the front of the buffer and completed by the next read, as in
//! ripgrep's line buffer. There is no per-line work and no allocation after
//! the buffer.
//!
//! A line longer than the buffer is handed out in buffer-sized pieces as it
//! arrives rather than held whole, so memory stays bounded whatever the
//! line length. At end of input, a last line without a newline gets one,
//! so every run handed out ends in a newline except such pieces. Nothing complete is ever held back waiting for more input:
//! a run is handed out as soon as a read ends it with a newline.

use std::io::{self, Read};

use memchr::memrchr;

/// The read buffer's size. Large enough that a fast producer costs few
/// system calls (one `read` and one `write` per 256 KiB), small enough to
/// keep the resident size to a few MiB.
pub const BUFFER_SIZE: usize = 256 * 1024;

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// Bytes to write: whole lines; or a piece of a line longer than the
    /// buffer; or, at end of input, a last line with its newline added.
    Run(&'a [u8]),
    /// The read ended inside a line: nothing to write until more arrives.
    Partial,
    /// End of input, and everything has been handed out.
    End,
}

/// Cuts a byte stream into runs of whole lines.
#[derive(Debug)]
pub struct LineReader<R> {
    source: R,
    /// The buffer: `capacity` bytes for reading, and one more for the
    /// newline added to an unfinished last line.
    buf: Box<[u8]>,
    capacity: usize,
    /// `buf[..filled]` holds bytes read and not yet handed out, once the
    /// previous run (`buf[..handed_out]`) has been dropped from the front.
    filled: usize,
    /// Length of the run handed out by the last call, removed at the start
    /// of the next one.
    handed_out: usize,
    /// The last run handed out ended inside a line.
    unfinished: bool,
    eof: bool,
    /// Bytes read from the source so far.
    bytes_read: u64,
}

impl<R: Read> LineReader<R> {
    /// Reads from `source` through a buffer of [`BUFFER_SIZE`] bytes.
    pub fn new(source: R) -> LineReader<R> {
        LineReader::with_capacity(source, BUFFER_SIZE)
    }

    /// Reads from `source` through a buffer of `capacity` bytes (at least 1).
    pub fn with_capacity(source: R, capacity: usize) -> LineReader<R> {
        let capacity = capacity.max(1);
        LineReader {
            source,
            buf: vec![0; capacity + 1].into_boxed_slice(),
            capacity,
            filled: 0,
            handed_out: 0,
            unfinished: false,
            eof: false,
            bytes_read: 0,
        }
    }

    /// Makes one `read(2)` (it may block; the main loop calls it when the
    /// input is readable) and returns what became ready to write.
    pub fn read(&mut self) -> io::Result<Input<'_>> {
        if self.handed_out > 0 {
            self.buf.copy_within(self.handed_out..self.filled, 0);
            self.filled -= self.handed_out;
            self.handed_out = 0;
        }
        if !self.eof {
            let n = loop {
                match self.source.read(&mut self.buf[self.filled..self.capacity]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    result => break result?,
                }
            };
            if n > 0 {
                self.bytes_read += n as u64;
                let start = self.filled;
                self.filled += n;
                if let Some(i) = memrchr(b'\n', &self.buf[start..self.filled]) {
                    return Ok(self.hand_out(start + i + 1));
                }
                if self.filled == self.capacity {
                    // A line longer than the buffer: pass this piece on.
                    return Ok(self.hand_out(self.filled));
                }
                return Ok(Input::Partial);
            }
            self.eof = true;
        }
        if self.filled > 0 || self.unfinished {
            // Only an unfinished last line is left: finish it.
            self.buf[self.filled] = b'\n';
            self.filled += 1;
            return Ok(self.hand_out(self.filled));
        }
        Ok(Input::End)
    }

    /// Whether the source has ended (a read returned 0 bytes) or
    /// [`LineReader::end`] was called: [`LineReader::read`] will read no
    /// more, and hands out what is buffered, then `End`, without waiting.
    ///
    /// The caller must not wait for the source to become readable again
    /// then. A pipe at its end stays readable, but a terminal does not: at
    /// a terminal, a line typed without its newline and ended with ^D is
    /// read as those bytes, a second ^D as a read of 0 bytes, and after it
    /// the terminal waits for more typing. Two ^D end the input, as for
    /// `cat`, only if nothing waits for a third.
    pub fn at_end(&self) -> bool {
        self.eof
    }

    /// Bytes read from the source so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads no more: from now on, [`LineReader::read`] hands out what is
    /// buffered (an unfinished last line with a newline added), then `End`.
    pub fn end(&mut self) {
        self.eof = true;
    }

    fn hand_out(&mut self, len: usize) -> Input<'_> {
        self.handed_out = len;
        self.unfinished = self.buf[len - 1] != b'\n';
        Input::Run(&self.buf[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that returns at most `step` bytes per read, as a pipe fed by
    /// a slow producer does.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn runs(data: &[u8], capacity: usize, step: usize) -> Vec<Vec<u8>> {
        let mut reader = LineReader::with_capacity(Trickle { data, step }, capacity);
        let mut runs = Vec::new();
        loop {
            match reader.read().unwrap() {
                Input::Run(run) => runs.push(run.to_vec()),
                Input::Partial => {}
                Input::End => return runs,
            }
        }
    }

    #[test]
    fn edges() {
        let empty: Vec<Vec<u8>> = vec![];
        assert_eq!(runs(b"", 16, 16), empty);
        assert_eq!(runs(b"\n", 16, 16), [b"\n".to_vec()]);
        assert_eq!(runs(b"a\nb", 16, 16), [b"a\n".to_vec(), b"b\n".to_vec()]);
        assert_eq!(runs(b"abcd", 4, 16), [b"abcd".to_vec(), b"\n".to_vec()]);
        assert_eq!(runs(b"abcde", 4, 16), [b"abcd".to_vec(), b"e\n".to_vec()]);
        assert_eq!(
            runs(b"abcdefgh", 4, 16),
            [b"abcd".to_vec(), b"efgh".to_vec(), b"\n".to_vec()]
        );
        assert_eq!(runs(b"a\nb\n", 16, 16), [b"a\nb\n".to_vec()]);
    }

    #[test]
    fn runs_end_at_newlines_until_a_line_outgrows_the_buffer() {
        assert_eq!(
            runs(b"ab\ncdefghij\nk\n", 4, 16),
            [
                b"ab\n".to_vec(),
                b"cdef".to_vec(),
                b"ghij".to_vec(),
                b"\nk\n".to_vec()
            ]
        );
    }

    #[test]
    fn any_buffer_and_read_size_reproduce_the_input() {
        let data: Vec<u8> = (0..2000u32)
            .flat_map(|i| vec![b'x'; (i % 37) as usize].into_iter().chain([b'\n']))
            .collect();
        for capacity in [1, 2, 7, 64, 4096] {
            for step in [1, 3, 100, 10_000] {
                let got = runs(&data, capacity, step);
                assert!(got.concat() == data, "capacity {capacity}, step {step}");
                let mut unfinished = data.clone();
                unfinished.pop();
                let finished = runs(&unfinished, capacity, step).concat();
                assert!(
                    finished == data,
                    "unfinished, capacity {capacity}, step {step}"
                );
                for run in &got {
                    assert!(
                        run.ends_with(b"\n") || run.len() == capacity,
                        "capacity {capacity}, step {step}"
                    );
                    assert!(run.len() <= capacity);
                }
            }
        }
    }

    #[test]
    fn ending_early_finishes_the_buffered_line() {
        let mut reader = LineReader::with_capacity(
            Trickle {
                data: b"a\nunfinished",
                step: 100,
            },
            64,
        );
        assert_eq!(reader.read().unwrap(), Input::Run(b"a\n"));
        assert_eq!(reader.bytes_read(), 12);
        reader.end();
        assert_eq!(reader.read().unwrap(), Input::Run(b"unfinished\n"));
        assert_eq!(reader.read().unwrap(), Input::End);
    }

    #[test]
    fn a_read_of_0_bytes_ends_the_input_at_once() {
        // A terminal: `abc` then ^D is a read of "abc", a second ^D a read
        // of 0 bytes; a third read would wait for more typing.
        struct Terminal(Vec<&'static [u8]>);
        impl Read for Terminal {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let chunk = self.0.remove(0);
                buf[..chunk.len()].copy_from_slice(chunk);
                Ok(chunk.len())
            }
        }
        let mut reader = LineReader::with_capacity(Terminal(vec![b"x\n", b"abc", b""]), 64);
        assert_eq!(reader.read().unwrap(), Input::Run(b"x\n"));
        assert!(!reader.at_end());
        assert_eq!(reader.read().unwrap(), Input::Partial);
        assert!(!reader.at_end());
        assert_eq!(reader.read().unwrap(), Input::Run(b"abc\n"));
        assert!(reader.at_end());
        // No third read: the terminal's list is empty, and `remove` would
        // panic.
        assert_eq!(reader.read().unwrap(), Input::End);
    }

    #[test]
    fn interrupted_reads_are_retried() {
        struct Flaky(bool, &'static [u8]);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 = !self.0;
                if self.0 {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                Trickle {
                    data: std::mem::take(&mut self.1),
                    step: usize::MAX,
                }
                .read(buf)
            }
        }
        let mut reader = LineReader::with_capacity(Flaky(false, b"a\n"), 8);
        assert_eq!(reader.read().unwrap(), Input::Run(b"a\n"));
        assert_eq!(reader.read().unwrap(), Input::End);
    }
}
