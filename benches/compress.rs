//! Compression rate of the worker against `gzip` on the same segment.
//!
//! One 64 MiB segment of generated log lines is written to a scratch file.
//! For gzip levels 1, 6 and 9, it is compressed alternately by the code
//! the worker uses (`logpipe::gzip::Gzip`: flate2 with the backend logpipe
//! is built with, one deflate state reused; reading the file and writing to
//! nowhere) and by `gzip -c -N FILE >
//! /dev/null`, 5 times each. The rate is MB of input per second of wall
//! time, median (min–max); the size column is the compressed size as a
//! share of the input.
//!
//! Run with `cargo bench --bench compress`. `LOGPIPE_BENCH_RUNS` sets the
//! runs per tool (default 5).

#[path = "../tests/corpus.rs"]
mod corpus;
#[path = "common/stats.rs"]
mod stats;

use std::fs::{self, File};
use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use logpipe::gzip::Gzip;

use corpus::Corpus;
use stats::median;

const SEGMENT: usize = 64 << 20;

/// Counts what it is given and keeps nothing.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() {
    let runs: usize = std::env::var("LOGPIPE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let scratch =
        std::env::temp_dir().join(format!("logpipe-compress-bench-{}", std::process::id()));
    fs::create_dir(&scratch).expect("create the scratch directory");
    let segment = scratch.join("current.2026-11-21.1");
    let mut data = Vec::with_capacity(SEGMENT + (1 << 20));
    Corpus::new(0x5eed).fill(&mut data, SEGMENT);
    fs::write(&segment, &data).expect("write the segment");
    let bytes = data.len() as f64;
    drop(data);

    println!(
        "segment: {} bytes of generated log lines, {runs} runs per tool and level, alternating",
        bytes as u64
    );
    println!();
    println!(
        "| level | worker (flate2) MB/s median (min–max) | size | `gzip -N` MB/s median (min–max) | size | worker / gzip |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for level in [1u32, 6, 9] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut our_size, mut their_size) = (0, 0);
        let mut gzip = Gzip::new(level);
        for _ in 0..runs {
            let start = Instant::now();
            let mut input = File::open(&segment).expect("open the segment");
            let mut out = Counter(0);
            gzip.compress(&mut input, &mut out).expect("compress");
            our_size = out.0;
            ours.push(bytes / 1e6 / start.elapsed().as_secs_f64());

            let start = Instant::now();
            let out = Command::new("gzip")
                .arg("-c")
                .arg(format!("-{level}"))
                .arg(&segment)
                .stdout(Stdio::piped())
                .output()
                .expect("run gzip (Debian package gzip)");
            assert!(out.status.success(), "gzip failed: {}", out.status);
            their_size = out.stdout.len() as u64;
            theirs.push(bytes / 1e6 / start.elapsed().as_secs_f64());
        }
        let (ours_median, theirs_median) = (median(&ours), median(&theirs));
        println!(
            "| {level} | {ours_median:.1} ({:.1}–{:.1}) | {:.1}% | {theirs_median:.1} ({:.1}–{:.1}) | {:.1}% | {:.2} |",
            min(&ours),
            max(&ours),
            our_size as f64 / bytes * 100.0,
            min(&theirs),
            max(&theirs),
            their_size as f64 / bytes * 100.0,
            ours_median / theirs_median,
        );
    }
    let _ = fs::remove_dir_all(&scratch);
}

fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::MAX, f64::min)
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::MIN, f64::max)
}
