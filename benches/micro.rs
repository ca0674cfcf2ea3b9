//! Micro-benchmarks of the per-byte paths, with criterion: the line
//! splitter, the size rule that finds where to cut, and the rfc3339
//! stamper. All in memory, so they measure logpipe's own instructions, not
//! the kernel's copies. Run with `cargo bench --bench micro`; CI only
//! builds them.

#[path = "../tests/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::io;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use logpipe::reader::{BUFFER_SIZE, Input, LineReader};
use logpipe::rules::{Step, next_step};
use logpipe::stamp::{Format, Stamper};

use corpus::Corpus;

/// 16 MiB of realistic log lines.
fn corpus() -> Vec<u8> {
    let mut data = Vec::with_capacity(17 << 20);
    Corpus::new(0x5eed).fill(&mut data, 16 << 20);
    data
}

/// `data` cut as the reader hands it out: runs of at most
/// [`BUFFER_SIZE`] bytes that end at a newline.
fn runs(data: &[u8]) -> Vec<&[u8]> {
    let mut runs = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let window = &rest[..rest.len().min(BUFFER_SIZE)];
        let end = memchr::memrchr(b'\n', window).map_or(window.len(), |i| i + 1);
        runs.push(&rest[..end]);
        rest = &rest[end..];
    }
    runs
}

/// A source that returns at most 64 KiB per read, as a pipe does.
struct Pipe<'a>(&'a [u8]);

impl io::Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(64 << 10);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn splitter(c: &mut Criterion) {
    let data = corpus();
    let mut group = c.benchmark_group("splitter");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("LineReader, 64 KiB reads", |b| {
        b.iter(|| {
            let mut reader = LineReader::new(Pipe(&data));
            let mut bytes = 0;
            loop {
                match reader.read().expect("reading memory cannot fail") {
                    Input::Run(run) => bytes += run.len(),
                    Input::Partial => {}
                    Input::End => break,
                }
            }
            black_box(bytes)
        })
    });
    group.finish();
}

fn size_cut(c: &mut Criterion) {
    let data = corpus();
    let runs = runs(&data);
    let mut group = c.benchmark_group("size rule");
    group.throughput(Throughput::Bytes(data.len() as u64));
    for (label, size) in [
        ("64 MiB segments", 64u64 << 20),
        ("1 MiB segments", 1 << 20),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                // The read buffer's runs, cut as Sink::write cuts them.
                let (mut written, mut rolls) = (0u64, 0u32);
                for run in &runs {
                    let mut rest = *run;
                    while !rest.is_empty() {
                        match next_step(rest, size - written.min(size), false, written == 0) {
                            Step::Roll => {
                                written = 0;
                                rolls += 1;
                            }
                            Step::Write(n) => {
                                written += n as u64;
                                rest = &rest[n..];
                            }
                        }
                    }
                }
                black_box(rolls)
            })
        });
    }
    group.finish();
}

fn stamper(c: &mut Criterion) {
    let data = corpus();
    let runs = runs(&data);
    let now: Timestamp = "2026-11-21T14:03:07.123456Z"
        .parse()
        .expect("a valid timestamp");
    let mut group = c.benchmark_group("stamper");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("rfc3339, 256 KiB runs", |b| {
        let mut stamper = Stamper::new(Format::Rfc3339, TimeZone::UTC, true);
        b.iter(|| {
            let mut out = 0;
            for run in &runs {
                stamper
                    .stamp(now, run, |bytes| {
                        out += bytes.len();
                        Ok(())
                    })
                    .expect("emit cannot fail");
            }
            black_box(out)
        })
    });
    group.finish();
}

criterion_group!(benches, splitter, size_cut, stamper);
criterion_main!(benches);
