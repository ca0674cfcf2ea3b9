//! `logpipe --read` against what a user would type without it: `zcat` over
//! the compressed segments in order, then `cat` of the active file; and,
//! for a target written without compression, one `cat` of everything.
//!
//! A seeded corpus (tests/corpus.rs) is written once through
//! `logpipe --size 64M` (gzip) and once with `--compress none`; then each
//! reader runs in turn, round after round (one untimed warm-up round), with
//! its output to /dev/null, from the page cache. `--read`'s output is also
//! checked once against the corpus by sha256.
//!
//! Run with `cargo bench --bench read`. `LOGPIPE_BENCH_MB` sets the corpus
//! size in MiB (default 512), `LOGPIPE_BENCH_RUNS` the timed rounds
//! (default 5), `LOGPIPE_BENCH_DIR` the scratch directory.

#[path = "../tests/corpus.rs"]
mod corpus;
#[path = "common/scratch.rs"]
mod scratch;
#[path = "common/stats.rs"]
mod stats;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use scratch::{env_number, generate, hex};
use stats::median;

const LOGPIPE: &str = env!("CARGO_BIN_EXE_logpipe");

fn main() {
    let mib: u64 = env_number("LOGPIPE_BENCH_MB", 512);
    let runs = env_number("LOGPIPE_BENCH_RUNS", 5) as usize;
    let scratch = std::env::var_os("LOGPIPE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("logpipe-read-{}", std::process::id()))
        });
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).expect("create the scratch directory");

    let corpus = scratch.join("corpus.log");
    let sha = generate(&corpus, mib << 20);
    let bytes = fs::metadata(&corpus).expect("corpus").len();
    for (dir, extra) in [("gz", &[][..]), ("plain", &["--compress", "none"][..])] {
        let status = Command::new(LOGPIPE)
            .args(["--size", "64M"])
            .args(extra)
            .arg(scratch.join(dir).join(""))
            .stdin(File::open(&corpus).expect("corpus"))
            .status()
            .expect("run logpipe");
        assert!(status.success(), "logpipe wrote {dir}/ with {status}");
    }
    let read_sha = {
        let mut child = Command::new(LOGPIPE)
            .args(["--read"])
            .arg(scratch.join("gz/"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("run logpipe --read");
        let mut hasher = Sha256::new();
        let mut out = child.stdout.take().expect("stdout");
        let mut buf = vec![0; 1 << 20];
        loop {
            let n = out.read(&mut buf).expect("read --read's output");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        assert!(child.wait().expect("wait").success());
        hex(&hasher.finalize())
    };

    let in_order = |dir: &str, suffix: &str| -> String {
        // `sort -V`: numbers in names as numbers, so that .10 follows .9.
        format!(
            "ls {0}/current.*{suffix} | sort -V | xargs {1}; cat {0}/current",
            scratch.join(dir).display(),
            if suffix.is_empty() { "cat" } else { "zcat" }
        )
    };
    let readers: Vec<(&str, Command)> = vec![
        (
            "logpipe --read (gzip segments)",
            reader(LOGPIPE, &["--read", &dir(&scratch, "gz")]),
        ),
        (
            "zcat segments in order; cat current",
            reader("sh", &["-c", &in_order("gz", ".gz")]),
        ),
        (
            "logpipe --read (plain segments)",
            reader(LOGPIPE, &["--read", &dir(&scratch, "plain")]),
        ),
        (
            "cat segments in order, then current",
            reader("sh", &["-c", &in_order("plain", "")]),
        ),
    ];
    let mut readers = readers;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); readers.len()];
    for round in 0..=runs {
        for (k, (label, command)) in readers.iter_mut().enumerate() {
            let start = Instant::now();
            let status = command.status().expect("run a reader");
            let took = start.elapsed().as_secs_f64();
            assert!(status.success(), "{label}: {status}");
            if round > 0 {
                eprintln!(
                    "run {round}/{runs} {label:<40} {:7.1} MB/s",
                    bytes as f64 / 1e6 / took
                );
                times[k].push(took);
            }
        }
    }

    println!("# Reading a target back");
    println!();
    println!(
        "- corpus: {bytes} bytes ({mib} MiB) of generated log lines, written by `logpipe --size 64M` with gzip -6 and with `--compress none`; readers write to /dev/null, files in the page cache"
    );
    println!(
        "- `--read` output byte-exact against the corpus (sha256): {}",
        if read_sha == sha { "yes" } else { "**no**" }
    );
    println!("- {runs} rounds, readers alternating, after one untimed warm-up round");
    println!();
    println!("| reader | seconds, median | MB/s | time vs the shell's |");
    println!("|---|---:|---:|---:|");
    for pair in [0, 2] {
        let ours = median(&times[pair]);
        let theirs = median(&times[pair + 1]);
        for (k, t) in [(pair, ours), (pair + 1, theirs)] {
            println!(
                "| {} | {t:.3} | {:.0} | {:.2} |",
                readers[k].0,
                bytes as f64 / 1e6 / t,
                t / theirs
            );
        }
    }
    let _ = fs::remove_dir_all(&scratch);
    if read_sha != sha {
        std::process::exit(1);
    }
}

fn dir(scratch: &Path, name: &str) -> String {
    format!("{}/", scratch.join(name).display())
}

fn reader(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create("/dev/null").expect("/dev/null"));
    command
}
