//! Throughput of logpipe against `cat > file`, both at the far end of a pipe.
//!
//! A seeded log corpus (default 1 GiB) is generated once into a scratch
//! directory. Then the sinks run in turn, round after round, each fed by a
//! separate `cat CORPUS` process through a pipe:
//!
//! - `cat > out/file`: the floor, a plain copy with no rotation and no fsync;
//! - logpipe without compression, with gzip, with `--timestamp rfc3339`,
//!   and with 1 MiB segments, with and without a gzip -9 backlog (see
//!   `SINKS`).
//!
//! Per run it measures the time from spawning the producer until it has
//! written everything into the pipe (the reading loop's throughput, as a
//! producer sees it: the MB/s column) and until the sink exits (for
//! logpipe: synced, and the compression backlog drained), the sink's
//! user+sys CPU time (`wait4`), and the sink's peak RSS (`VmHWM`, sampled
//! from /proc every 10 ms: `ru_maxrss` would report the benchmark's own
//! pre-exec size). Before each run, untimed, `out/` is
//! recreated and `sync(2)` called so that the previous run's writeback does
//! not land in this one. The first run of each logpipe sink is checked
//! byte-exact (with the prefixes taken out for the stamped one). The
//! result is a markdown table with its context (date, CPU, filesystem).
//!
//! Run with `cargo bench --bench throughput`. Environment:
//!
//! - `LOGPIPE_BENCH_MB`: corpus size in MiB (default 1024; at least 512 is
//!   representative);
//! - `LOGPIPE_BENCH_RUNS`: runs per sink (default 5);
//! - `LOGPIPE_BENCH_DIR`: scratch directory (default: a fresh directory
//!   under the system temp dir, removed at the end). Its filesystem matters:
//!   on a disk logpipe's fsyncs cost real time, on tmpfs next to nothing.

#[path = "../tests/corpus.rs"]
mod corpus;
#[allow(dead_code)]
#[path = "../tests/util.rs"]
mod util;

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use corpus::Corpus;

const SEED: u64 = 0x5eed;
/// Corpus generation block: the benchmark never holds more than this.
const BLOCK: usize = 4 << 20;
const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

/// A sink under test: `cat > file`, or logpipe with these arguments.
#[derive(Clone, Copy)]
struct Sink {
    label: &'static str,
    /// logpipe's arguments before `out/`; `None` for `cat > out/file`.
    logpipe: Option<&'static [&'static str]>,
    /// Its output carries `--timestamp rfc3339 --utc` prefixes.
    stamped: bool,
}

/// Every sink, in the order they run within a round; `cat` first, as the
/// baseline of the ratios.
const SINKS: &[Sink] = &[
    Sink {
        label: "`cat > file`",
        logpipe: None,
        stamped: false,
    },
    Sink {
        label: "`logpipe --size 64M --compress none`",
        logpipe: Some(&["--size", "64M", "--compress", "none"]),
        stamped: false,
    },
    Sink {
        label: "`logpipe --size 64M` (gzip -6)",
        logpipe: Some(&["--size", "64M", "--shutdown-timeout", "600s"]),
        stamped: false,
    },
    Sink {
        label: "`logpipe --size 64M --compress none --timestamp rfc3339`",
        logpipe: Some(&[
            "--size",
            "64M",
            "--compress",
            "none",
            "--timestamp",
            "rfc3339",
            "--utc",
        ]),
        stamped: true,
    },
    Sink {
        label: "`logpipe --size 1M --compress none`",
        logpipe: Some(&["--size", "1M", "--compress", "none"]),
        stamped: false,
    },
    // Input far faster than compression: the backlog waits on disk, and
    // logpipe exits at once, leaving it to the next start.
    Sink {
        label: "`logpipe --size 1M --level 9` (backlog)",
        logpipe: Some(&["--size", "1M", "--level", "9", "--shutdown-timeout", "0s"]),
        stamped: false,
    },
];

/// The length of an rfc3339 prefix under `--utc`:
/// `2026-11-21T14:03:07.123456Z `.
const PREFIX_LEN: usize = 28;

/// One timed run of one sink.
struct Sample {
    /// Until the producer has written everything into the pipe: the
    /// reading loop's time, as the producer sees it.
    read_s: f64,
    /// Until the sink has exited (for logpipe: everything synced, and the
    /// compression backlog drained or left).
    wall_s: f64,
    cpu_s: f64,
    peak_rss_kib: u64,
}

fn main() {
    let mib = env_u64("LOGPIPE_BENCH_MB", 1024).max(1);
    let runs = env_u64("LOGPIPE_BENCH_RUNS", 5).max(1) as usize;
    let (scratch, fresh) = match std::env::var_os("LOGPIPE_BENCH_DIR") {
        Some(dir) => (PathBuf::from(dir), false),
        None => {
            let name = format!("logpipe-bench-{}", std::process::id());
            (std::env::temp_dir().join(name), true)
        }
    };
    if fresh {
        fs::create_dir(&scratch).expect("create a fresh scratch directory");
    } else {
        fs::create_dir_all(&scratch).expect("create LOGPIPE_BENCH_DIR");
    }
    let filesystem = filesystem_of(&scratch);
    println!("scratch: {}", scratch.display());
    println!("filesystem (df -hT): {filesystem}");
    if mib < 512 {
        println!("note: corpus below 512 MiB, results are not representative");
    }

    let corpus = scratch.join("corpus.log");
    let started = Instant::now();
    let (bytes, corpus_sha) = generate(&corpus, mib << 20);
    println!(
        "corpus: {bytes} bytes in {:.1} s, sha256 {corpus_sha}",
        started.elapsed().as_secs_f64()
    );

    let mut samples: Vec<Vec<Sample>> = SINKS.iter().map(|_| Vec::new()).collect();
    // Whether each logpipe sink's first timed run was byte-exact, and with
    // how many segments.
    let mut checks: Vec<(Sink, bool, usize)> = Vec::new();
    // One untimed run of each first: the first pass over fresh memory and
    // a cold page cache would otherwise land on whichever sink goes first.
    for &sink in SINKS {
        run(sink, &scratch, &corpus);
    }
    for i in 1..=runs {
        for (k, &sink) in SINKS.iter().enumerate() {
            let sample = run(sink, &scratch, &corpus);
            println!(
                "run {i}/{runs} {:<58} read {:7.3} s {:8.1} MB/s  done {:7.3} s  cpu {:6.3} s  peak RSS {:5.1} MiB",
                sink.label,
                sample.read_s,
                bytes as f64 / 1e6 / sample.read_s,
                sample.wall_s,
                sample.cpu_s,
                sample.peak_rss_kib as f64 / 1024.0,
            );
            samples[k].push(sample);
            if sink.logpipe.is_some() && i == 1 {
                let (segments, sha) = collated_sha(&scratch.join("out"), sink.stamped);
                checks.push((sink, sha == corpus_sha, segments));
            }
        }
    }
    let exact = checks.iter().all(|&(_, ok, _)| ok);

    println!();
    println!(
        "- date: {}",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!(
        "- CPU: {}, nproc {}",
        cpu_model(),
        command_output("nproc", &[])
    );
    println!("- scratch filesystem (df -hT): {filesystem}");
    println!(
        "- corpus: {bytes} bytes ({:.0} MiB) of generated log lines (tests/corpus.rs, seed {SEED:#x}), read by `cat CORPUS |` from the page cache",
        bytes as f64 / MIB
    );
    println!(
        "- runs: {runs} per sink, alternating, after one untimed warm-up run each; out/ recreated and sync(2) called before each run (untimed)"
    );
    for (sink, ok, segments) in &checks {
        println!(
            "- byte-exact, {} (first run, {segments} segments + current{}): {}",
            sink.label,
            if sink.stamped {
                ", prefixes removed"
            } else {
                ""
            },
            if *ok { "yes" } else { "no" }
        );
    }
    println!();
    println!(
        "| sink | MB/s median (min–max) | done s (median) | CPU-s per GiB (median) | peak RSS MiB (max) | MB/s vs cat |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let cat_median = median(throughputs(&samples[0], bytes));
    for (sink, samples) in SINKS.iter().zip(&samples) {
        let mbps = throughputs(samples, bytes);
        let done = median(samples.iter().map(|s| s.wall_s).collect());
        let (min, max) = mbps
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let cpu_per_gib = median(
            samples
                .iter()
                .map(|s| s.cpu_s / (bytes as f64 / GIB))
                .collect(),
        );
        let rss = samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
        let med = median(mbps);
        println!(
            "| {} | {med:.0} ({min:.0}–{max:.0}) | {done:.2} | {cpu_per_gib:.2} | {:.1} | {:.2} |",
            sink.label,
            rss as f64 / 1024.0,
            med / cat_median,
        );
    }

    if !exact {
        eprintln!(
            "logpipe's output differs from the corpus; left in {}",
            scratch.display()
        );
        std::process::exit(1);
    }
    let _ = fs::remove_dir_all(scratch.join("out"));
    let _ = fs::remove_file(&corpus);
    if fresh {
        let _ = fs::remove_dir_all(&scratch);
    }
}

/// A whole-number environment variable, or `default` when unset.
fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Writes at least `bytes` of corpus to `path` in [`BLOCK`]-sized pieces.
/// Returns the exact length and the sha256.
fn generate(path: &Path, bytes: u64) -> (u64, String) {
    let mut file = File::create(path).expect("create the corpus file");
    let mut corpus = Corpus::new(SEED);
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(BLOCK + (64 << 10));
    let mut written = 0;
    while written < bytes {
        buf.clear();
        corpus.fill(&mut buf, BLOCK.min((bytes - written) as usize));
        file.write_all(&buf).expect("write the corpus file");
        hasher.update(&buf);
        written += buf.len() as u64;
    }
    (written, util::hex(&hasher.finalize()))
}

/// Runs `cat CORPUS | sink` once in a fresh `out/` and measures the sink.
fn run(sink: Sink, scratch: &Path, corpus: &Path) -> Sample {
    let out = scratch.join("out");
    if out.exists() {
        fs::remove_dir_all(&out).expect("remove out/");
    }
    fs::create_dir(&out).expect("create out/");
    // SAFETY: sync(2) takes no arguments and always succeeds.
    unsafe { libc::sync() };

    let start = Instant::now();
    let mut producer = Command::new("cat")
        .arg(corpus)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the producer `cat`");
    let pipe = producer.stdout.take().expect("producer stdout is piped");
    let mut cmd = match sink.logpipe {
        None => {
            let mut cmd = Command::new("cat");
            cmd.stdout(File::create(out.join("file")).expect("create out/file"));
            cmd
        }
        Some(args) => {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_logpipe"));
            cmd.args(args).arg("out/").current_dir(scratch);
            cmd
        }
    };
    let pid = cmd.stdin(pipe).spawn().expect("start the sink").id();
    // Close our copies of the pipe's read end and of out/file.
    drop(cmd);
    let producer = thread::spawn(move || {
        let status = producer.wait().expect("wait for the producer");
        (status, start.elapsed().as_secs_f64())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                // A zombie has no VmHWM line: the last live value stays.
                peak = util::peak_rss_kib(pid).unwrap_or(peak);
                thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    // The sink is reaped here, so its `Child` must not be waited for.
    let (status, usage) = wait4(pid);
    let wall_s = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let peak_rss_kib = sampler.join().expect("RSS sampler thread");

    let (produced, read_s) = producer.join().expect("producer thread");
    assert!(produced.success(), "producer `cat` failed: {produced}");
    assert!(status.success(), "{} failed: {status}", sink.label);
    Sample {
        read_s,
        wall_s,
        cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_kib,
    }
}

/// Waits for child `pid` to exit; returns its status and resource usage.
fn wait4(pid: u32) -> (ExitStatus, libc::rusage) {
    let pid = pid as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the types wait4 expects.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return (ExitStatus::from_raw(status), usage);
        }
        let err = io::Error::last_os_error();
        assert!(
            err.kind() == io::ErrorKind::Interrupted,
            "wait4 on the sink: {err}"
        );
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// The sha256 of logpipe's output in `out`: the segments in (date, N)
/// order (decompressed), then `current`; with `stamped`, each line's
/// rfc3339 prefix is checked for shape and left out. Also returns how many
/// segments there were.
fn collated_sha(out: &Path, stamped: bool) -> (usize, String) {
    let active = out.join("current");
    let segments = util::segments_in(&active);
    let mut hasher = Sha256::new();
    for seg in &segments {
        if stamped {
            hash_unstamped(&mut hasher, &seg.read());
        } else {
            seg.hash_into(&mut hasher);
        }
    }
    if stamped {
        hash_unstamped(&mut hasher, &fs::read(&active).expect("read out/current"));
    } else {
        util::hash_file(&mut hasher, &active);
    }
    (segments.len(), util::hex(&hasher.finalize()))
}

/// Hashes `bytes` with the prefix of each line left out; a line without a
/// well-formed prefix is hashed so that it cannot match the corpus.
fn hash_unstamped(hasher: &mut Sha256, bytes: &[u8]) {
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let prefixed = line.len() > PREFIX_LEN
            && line[10] == b'T'
            && line[PREFIX_LEN - 2..PREFIX_LEN] == *b"Z ";
        if prefixed {
            hasher.update(&line[PREFIX_LEN..]);
        } else {
            hasher.update(b"missing prefix");
            hasher.update(line);
        }
    }
}

/// Input MB/s of each sample's reading loop.
fn throughputs(samples: &[Sample], bytes: u64) -> Vec<f64> {
    samples
        .iter()
        .map(|s| bytes as f64 / 1e6 / s.read_s)
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The data line of `df -hT DIR`, spaces squeezed.
fn filesystem_of(dir: &Path) -> String {
    let df = command_output("df", &["-hT", &dir.to_string_lossy()]);
    let line = df.lines().last().unwrap_or("unknown");
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cpu_model() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find(|l| l.starts_with("model name"));
    model
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".into(), |(_, m)| m.trim().to_string())
}

/// The trimmed standard output of a small command, or "unknown".
fn command_output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    }
}
