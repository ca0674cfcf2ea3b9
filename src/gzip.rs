//! Gzip files written with one deflate state reused from file to file.
//!
//! flate2's `GzEncoder` allocates a fresh deflate state (about 380 KiB at
//! level 6 with zlib-rs) for every file, and the allocator rarely puts the
//! next one where the last one was freed, so the worker's resident memory
//! grew by a few of them over a run. Here one state and two buffers are
//! allocated once and reset between files. The gzip framing around the raw
//! deflate stream is the fixed 10-byte header of RFC 1952 and a trailer of
//! CRC-32 and length, as `gzip` itself writes them (no name, no mtime).

use std::io::{self, Read, Write};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Bytes read from the input, and written to the output, per step.
const CHUNK: usize = 64 * 1024;

/// A reusable gzip compressor at one level.
pub struct Gzip {
    deflate: Compress,
    level: u32,
    input: Box<[u8]>,
    output: Box<[u8]>,
}

impl std::fmt::Debug for Gzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gzip").field("level", &self.level).finish()
    }
}

impl Gzip {
    /// A compressor at `level` (1..=9).
    pub fn new(level: u32) -> Gzip {
        Gzip {
            deflate: Compress::new(Compression::new(level), false),
            level,
            input: vec![0; CHUNK].into_boxed_slice(),
            output: vec![0; CHUNK].into_boxed_slice(),
        }
    }

    /// Writes all of `input`, gzipped, to `output`: one complete gzip
    /// member. The output is not flushed or synced.
    pub fn compress(&mut self, input: &mut impl Read, output: &mut impl Write) -> io::Result<()> {
        self.deflate.reset();
        output.write_all(&self.header())?;
        let mut crc = Crc::new();
        loop {
            let n = read_full(input, &mut self.input)?;
            crc.update(&self.input[..n]);
            let flush = if n == 0 {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            let mut taken = 0;
            loop {
                let (in_before, out_before) = (self.deflate.total_in(), self.deflate.total_out());
                let status = self
                    .deflate
                    .compress(&self.input[taken..n], &mut self.output, flush)
                    .map_err(io::Error::other)?;
                taken += (self.deflate.total_in() - in_before) as usize;
                let made = (self.deflate.total_out() - out_before) as usize;
                output.write_all(&self.output[..made])?;
                let done = match flush {
                    FlushCompress::Finish => status == Status::StreamEnd,
                    // All input taken, and the output had room to spare:
                    // deflate holds nothing more it could give now.
                    _ => taken == n && made < self.output.len(),
                };
                if done {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        output.write_all(&crc.sum().to_le_bytes())?;
        output.write_all(&crc.amount().to_le_bytes())
    }

    /// The gzip header: magic, deflate, no flags, no mtime, the level hint
    /// (2 = slowest, 4 = fastest), and Unix as the system.
    fn header(&self) -> [u8; 10] {
        let xfl = match self.level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]
    }
}

/// Reads until `buf` is full or the input ends.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(gz).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn every_level_reads_back() {
        let input = b"GET /api/v1/items HTTP/1.1 200\n".repeat(5000);
        for level in 1..=9 {
            let mut gz = Vec::new();
            Gzip::new(level).compress(&mut &input[..], &mut gz).unwrap();
            assert_eq!(gunzip(&gz), input, "level {level}");
            assert!(gz.len() < input.len() / 10, "level {level}");
        }
    }
}
