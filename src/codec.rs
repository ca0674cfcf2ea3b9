//! The compression methods of `--compress`: what each names its files,
//! which levels it takes, and one reusable compressor and reader for each.
//!
//! gzip ([`Gzip`], flate2) is the default: every system can read it. zstd
//! ([`Zstd`], the reference library through the `zstd` crate) is about five
//! times faster at its default level, for output no larger, so it keeps up
//! with inputs that gzip -6 cannot; its frames carry a content checksum, as
//! the `zstd` program writes them, so that `zstd -t` checks every byte.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::RangeInclusive;

use zstd::zstd_safe::{self, CCtx, CParameter, InBuffer, OutBuffer, ResetDirective};

use crate::gzip::{Gzip, read_full};
use crate::inventory::Form;

/// Bytes read from the input, and written to the output, per step.
const CHUNK: usize = 64 * 1024;

/// The zstd levels at which a segment is shared by the compressor's own
/// worker threads ([`Zstd`]), in jobs of 2 MiB. Above, each segment is
/// compressed on one thread, as gzip is, and more threads compress more
/// segments at once ([`crate::pool`]).
///
/// At the fast levels the reading and writing of the files weighs as much
/// as the compression, and the job size costs little: each job carries a
/// part of the window before it over from the last one, an eighth of it at
/// level 3. There, 1 GiB in 64 MiB segments took 4.10 s on one worker
/// beside the reading thread, where `zstd -T1` took 3.69 s; and 256 MiB
/// peaked at 14 MiB of RSS with 2 MiB jobs against 40 MiB with the
/// library's (8 MiB), in the same time, for 0.2% more bytes. The carried
/// part grows with the level, to the whole window at 19 (where 2 MiB jobs
/// finished two 16 MiB segments in the time the library's 32 MiB jobs
/// finished three), while the reading and writing count less and less. At
/// level 9 the two ways were about even on 256 MiB: one worker was 5%
/// faster than one thread alone (5.32 s against 5.66 s, 24 against 19 MiB
/// of RSS), but with two threads, two segments side by side were 7%
/// faster than one segment on two workers (3.13 s against 3.39 s).
pub const WORKERS_UP_TO: u32 = 8;

/// The size of the jobs of zstd's workers.
const JOB: u32 = 2 << 20;

/// A compression method of `--compress` other than `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `X` becomes `X.gz`.
    Gzip,
    /// `X` becomes `X.zst`.
    Zstd,
}

impl Method {
    /// Both methods, for what looks at every form a segment may have.
    pub const ALL: [Method; 2] = [Method::Gzip, Method::Zstd];

    /// The levels `--level` takes for this method.
    pub fn levels(self) -> RangeInclusive<u32> {
        match self {
            Method::Gzip => 1..=9,
            // 20 to 22 ("ultra") need a window larger than the segments
            // are usually worth, and much more memory per thread.
            Method::Zstd => 1..=19,
        }
    }

    /// The level without `--level`: each program's own default.
    pub fn default_level(self) -> u32 {
        match self {
            Method::Gzip => 6,
            Method::Zstd => 3,
        }
    }

    /// The name as `--compress` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Method::Gzip => "gzip",
            Method::Zstd => "zstd",
        }
    }

    /// The form of a segment compressed this way.
    pub fn form(self) -> Form {
        match self {
            Method::Gzip => Form::Gzip,
            Method::Zstd => Form::Zstd,
        }
    }

    /// The form of a compression this way under way.
    pub fn temp_form(self) -> Form {
        match self {
            Method::Gzip => Form::GzipTemp,
            Method::Zstd => Form::ZstdTemp,
        }
    }

    /// The method whose compressed form `form` is.
    pub fn of_form(form: Form) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.form() == form)
    }

    /// Checks `level` against [`Method::levels`]: the message names both.
    pub fn check_level(self, level: u32) -> Result<u32, String> {
        let levels = self.levels();
        if levels.contains(&level) {
            return Ok(level);
        }
        Err(format!(
            "invalid value '{level}' for '--level <LEVEL>': {} levels are {} to {}",
            self.name(),
            levels.start(),
            levels.end()
        ))
    }

    /// A reader of the data in `file`, compressed this way. A truncated or
    /// corrupt file is an error when it is read, never a short read.
    pub fn decoder(self, file: File) -> io::Result<Box<dyn Read>> {
        let file = BufReader::new(file);
        Ok(match self {
            Method::Gzip => Box::new(flate2::bufread::GzDecoder::new(file)),
            Method::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        })
    }
}

/// A reusable compressor of one method at one level: its state is made
/// once and reset from file to file, so that memory stays flat.
#[derive(Debug)]
pub enum Compressor {
    Gzip(Gzip),
    Zstd(Zstd),
}

impl Compressor {
    /// A compressor for `method` at `level` (in [`Method::levels`]). A zstd
    /// compressor gives the compression itself to `workers` threads of its
    /// own ([`Zstd`]); gzip always compresses on the calling thread.
    pub fn new(method: Method, level: u32, workers: u32) -> io::Result<Compressor> {
        Ok(match method {
            Method::Gzip => Compressor::Gzip(Gzip::new(level)),
            Method::Zstd => Compressor::Zstd(Zstd::new(level, workers)?),
        })
    }

    /// The method this compressor writes.
    pub fn method(&self) -> Method {
        match self {
            Compressor::Gzip(_) => Method::Gzip,
            Compressor::Zstd(_) => Method::Zstd,
        }
    }

    /// Writes all of `input`, compressed, to `output`: one complete gzip
    /// member or zstd frame. The output is not flushed or synced.
    pub fn compress(&mut self, input: &mut impl Read, output: &mut impl Write) -> io::Result<()> {
        match self {
            Compressor::Gzip(gzip) => gzip.compress(input, output),
            Compressor::Zstd(zstd) => zstd.compress(input, output),
        }
    }
}

/// A zstd compressor: one compression context of the reference library,
/// reused from file to file, and two buffers.
///
/// With workers (up to level [`WORKERS_UP_TO`]), the context has threads
/// of its own (zstd's `NbWorkers`, as `zstd -T1` or `-TN` runs): they
/// compress the segment in jobs while the calling thread reads it and
/// writes what came out, so that the file I/O and the compression do not
/// wait for each other, and N workers share one segment. The output does
/// not depend on their number.
pub struct Zstd {
    level: u32,
    workers: u32,
    context: CCtx<'static>,
    input: Box<[u8]>,
    output: Box<[u8]>,
}

impl std::fmt::Debug for Zstd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zstd").finish_non_exhaustive()
    }
}

/// A zstd error code as an `io::Error`, with the library's own words.
fn zstd_error(code: usize) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)))
}

impl Zstd {
    /// A compressor at `level` (1..=19) with `workers` threads of its own
    /// (0: it compresses on the calling thread), writing a content
    /// checksum in every frame.
    pub fn new(level: u32, workers: u32) -> io::Result<Zstd> {
        Ok(Zstd {
            level,
            workers,
            context: Zstd::context(level, workers)?,
            input: vec![0; CHUNK].into_boxed_slice(),
            output: vec![0; CHUNK].into_boxed_slice(),
        })
    }

    fn context(level: u32, workers: u32) -> io::Result<CCtx<'static>> {
        let mut context = CCtx::try_create()
            .ok_or_else(|| io::Error::other("zstd: unable to allocate a compression context"))?;
        let level = i32::try_from(level).map_err(io::Error::other)?;
        for parameter in [
            CParameter::CompressionLevel(level),
            CParameter::ChecksumFlag(true),
            CParameter::NbWorkers(workers),
        ] {
            context.set_parameter(parameter).map_err(zstd_error)?;
        }
        if workers > 0 {
            context
                .set_parameter(CParameter::JobSize(JOB))
                .map_err(zstd_error)?;
        }
        Ok(context)
    }

    /// Writes all of `input`, as one zstd frame, to `output`.
    pub fn compress(&mut self, input: &mut impl Read, output: &mut impl Write) -> io::Result<()> {
        let result = self.frame(input, output);
        if result.is_err() {
            // A frame given up on: its jobs are waited for when the old
            // context goes, and a context whose worker failed a job takes
            // no other multithreaded frame, so the next file gets a new one.
            match Zstd::context(self.level, self.workers) {
                Ok(context) => self.context = context,
                // None can be made: the old one, reset, starts the next
                // frame clean, or refuses it if its workers failed.
                Err(_) => {
                    let _ = self.context.reset(ResetDirective::SessionOnly);
                }
            }
        }
        result
    }

    fn frame(&mut self, input: &mut impl Read, output: &mut impl Write) -> io::Result<()> {
        loop {
            let n = read_full(input, &mut self.input)?;
            // A short read is the end of the input: said with its last
            // chunk, so that a segment smaller than a chunk is compressed in
            // one call, with parameters sized to it.
            let end = n < self.input.len();
            let directive = if end {
                zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end
            } else {
                zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue
            };
            let mut src = InBuffer::around(&self.input[..n]);
            loop {
                let mut dst = OutBuffer::around(&mut self.output[..]);
                let left = self
                    .context
                    .compress_stream2(&mut dst, &mut src, directive)
                    .map_err(zstd_error)?;
                output.write_all(dst.as_slice())?;
                // Ending: until the library says the frame is all out.
                // Otherwise: until it took the whole chunk (what it holds
                // back comes out with later input, or at the end).
                let done = if end { left == 0 } else { src.pos() == n };
                if done {
                    break;
                }
            }
            if end {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unzstd(bytes: &[u8]) -> Vec<u8> {
        zstd::stream::decode_all(bytes).unwrap()
    }

    /// Decodes `bytes` of `method` with the reference decoders.
    fn decode(method: Method, bytes: &[u8]) -> Vec<u8> {
        match method {
            Method::Gzip => {
                let mut out = Vec::new();
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            Method::Zstd => unzstd(bytes),
        }
    }

    #[test]
    fn one_compressor_compresses_file_after_file() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i} {}\n", i.wrapping_mul(2654435761)).into_bytes())
            .collect();
        // Incompressible bytes make the output outgrow a chunk.
        let mut noise = Vec::new();
        let mut x = 1u64;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        for method in Method::ALL {
            let mut compressor = Compressor::new(method, method.default_level(), 1).unwrap();
            for input in [
                &text[..],
                b"",
                b"a",
                &noise,
                &text[..CHUNK],
                &text[..CHUNK + 1],
            ] {
                let mut out = Vec::new();
                compressor.compress(&mut &input[..], &mut out).unwrap();
                let back = decode(method, &out);
                assert!(back == input, "{}: {} bytes", method.name(), input.len());
            }
        }
    }

    /// Log-like lines, `n` bytes or a little more, less regular than a
    /// repeated line, so that zstd cuts them in several jobs.
    fn lines(n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 100);
        let mut i = 0u64;
        while out.len() < n {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            out.extend_from_slice(format!("{i} GET /item/{x} 200 {}ms\n", x % 997).as_bytes());
            i += 1;
        }
        out
    }

    #[test]
    fn zstd_output_is_the_same_for_any_number_of_workers() {
        // Several jobs of JOB, at the default level and at the last level
        // that has workers.
        let input = lines(12 << 20);
        for level in [3, WORKERS_UP_TO] {
            let mut outputs = Vec::new();
            for workers in [1, 2, 3] {
                let mut out = Vec::new();
                Zstd::new(level, workers)
                    .unwrap()
                    .compress(&mut &input[..], &mut out)
                    .unwrap();
                assert!(unzstd(&out) == input, "level {level}, {workers} workers");
                outputs.push(out);
            }
            assert!(outputs.windows(2).all(|w| w[0] == w[1]), "level {level}");
        }
    }

    /// Accepts `left` bytes, then fails like a full disk.
    struct Full {
        left: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_file_leaves_nothing_in_the_next() {
        let first = lines(9 << 20);
        let second = lines(5 << 20);
        for method in Method::ALL {
            let mut compressor = Compressor::new(method, method.default_level(), 2).unwrap();
            let mut full = Full { left: 100_000 };
            let err = compressor.compress(&mut &first[..], &mut full).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{method:?}");
            let mut out = Vec::new();
            compressor.compress(&mut &second[..], &mut out).unwrap();
            assert!(decode(method, &out) == second, "{method:?}");
        }
    }

    #[test]
    fn every_level_reads_back_and_the_decoder_checks() {
        let input = b"GET /api/v1/items HTTP/1.1 200\n".repeat(5000);
        for method in Method::ALL {
            for level in method.levels() {
                let mut compressor = Compressor::new(method, level, 1).unwrap();
                assert_eq!(compressor.method(), method);
                let mut out = Vec::new();
                compressor.compress(&mut &input[..], &mut out).unwrap();
                assert!(out.len() < input.len() / 10, "{method:?} {level}");
                let mut file = tempfile::tempfile().unwrap();
                file.write_all(&out).unwrap();
                io::Seek::rewind(&mut file).unwrap();
                let mut back = Vec::new();
                method
                    .decoder(file)
                    .unwrap()
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, input, "{method:?} {level}");
            }
        }
        // A frame without its last bytes (the checksum) is an error.
        let mut out = Vec::new();
        Zstd::new(3, 1)
            .unwrap()
            .compress(&mut &input[..], &mut out)
            .unwrap();
        assert!(zstd::stream::decode_all(&out[..out.len() - 4]).is_err());
    }

    #[test]
    fn levels_are_checked_per_method() {
        assert_eq!(Method::Zstd.check_level(19), Ok(19));
        assert_eq!(Method::Gzip.check_level(9), Ok(9));
        assert_eq!(
            Method::Gzip.check_level(12),
            Err("invalid value '12' for '--level <LEVEL>': gzip levels are 1 to 9".into())
        );
        for bad in [0, 20] {
            assert!(Method::Zstd.check_level(bad).is_err(), "{bad}");
        }
        for method in Method::ALL {
            assert!(method.levels().contains(&method.default_level()));
            assert_eq!(Method::of_form(method.form()), Some(method));
        }
    }
}
