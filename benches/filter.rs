//! The line stage's cost: `cat > file`, logpipe without the stage, and
//! logpipe with one `--drop`, one `--route` and `--redact @credentials`,
//! side by side on the same corpus, round after round.
//!
//! A seeded corpus (tests/corpus.rs) is written to a file once; each run is
//! `cat CORPUS | SINK`, timed from start to exit, with `--compress none
//! --size 64M` so that compression does not hide the stage's cost. The run
//! without the stage is checked byte for byte (sha256) against the corpus;
//! the run with it, for the lines it must keep: main and routed targets
//! together hold every line of the corpus but the dropped ones, and no
//! dropped line.
//!
//! Run with `cargo bench --bench filter`. `LOGPIPE_BENCH_MB` sets the
//! corpus size in MiB (default 256), `LOGPIPE_BENCH_RUNS` the timed rounds
//! (default 5), `LOGPIPE_BENCH_DIR` the scratch directory.

#[path = "../tests/corpus.rs"]
mod corpus;
#[path = "common/scratch.rs"]
mod scratch;
#[path = "common/stats.rs"]
mod stats;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use scratch::{env_number, generate};
use stats::median;

const LOGPIPE: &str = env!("CARGO_BIN_EXE_logpipe");

/// The stage timed: health checks dropped, tracebacks routed to their own
/// target, the credentials preset.
const STAGE: &str = r#"--drop 'GET /healthz' --route '^Traceback =ROUTED/' --redact @credentials"#;

fn main() {
    let mib = env_number("LOGPIPE_BENCH_MB", 256);
    let runs = env_number("LOGPIPE_BENCH_RUNS", 5) as usize;
    let scratch = std::env::var_os("LOGPIPE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("logpipe-filter-{}", std::process::id()))
        });
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).expect("create the scratch directory");
    let corpus = scratch.join("corpus.log");
    let sha = generate(&corpus, mib << 20);
    let bytes = fs::metadata(&corpus).expect("corpus").len();
    let out = scratch.join("out");
    let routed = scratch.join("routed");
    let sinks: [(&str, String); 3] = [
        (
            "cat > file",
            format!("cat {} > {}/file", corpus.display(), out.display()),
        ),
        (
            "logpipe, no line stage",
            format!(
                "cat {} | {LOGPIPE} --compress none --size 64M {}/",
                corpus.display(),
                out.display()
            ),
        ),
        (
            "logpipe, --drop, --route, --redact @credentials",
            format!(
                "cat {} | {LOGPIPE} --compress none --size 64M {} {}/",
                corpus.display(),
                STAGE.replace("ROUTED", &routed.display().to_string()),
                out.display()
            ),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sinks.len()];
    for round in 0..=runs {
        for (k, (label, command)) in sinks.iter().enumerate() {
            for dir in [&out, &routed] {
                let _ = fs::remove_dir_all(dir);
            }
            fs::create_dir_all(&out).expect("create out/");
            let start = Instant::now();
            let status = Command::new("sh")
                .args(["-c", command])
                .status()
                .expect("run sh");
            let took = start.elapsed().as_secs_f64();
            assert!(status.success(), "{label}: {status}");
            if round == 0 {
                check(k, &out, &routed, &corpus, &sha);
            } else {
                eprintln!(
                    "run {round}/{runs} {label:<50} {:7.1} MB/s",
                    bytes as f64 / 1e6 / took
                );
                times[k].push(took);
            }
        }
    }
    println!("# The line stage");
    println!();
    println!(
        "- corpus: {bytes} bytes ({mib} MiB) of generated log lines, piped by `cat` from the page cache; logpipe with `--compress none --size 64M`"
    );
    println!("- stage: `{STAGE}`");
    println!("- {runs} rounds, sinks alternating, after one untimed round that checks the output");
    println!();
    println!("| sink | seconds, median | MB/s | throughput vs cat |");
    println!("|---|---:|---:|---:|");
    let cat = median(&times[0]);
    for (k, (label, _)) in sinks.iter().enumerate() {
        let t = median(&times[k]);
        println!(
            "| {label} | {t:.3} | {:.0} | {:.2} |",
            bytes as f64 / 1e6 / t,
            cat / t
        );
    }
    let _ = fs::remove_dir_all(&scratch);
}

/// Checks what a sink left: the plain copies byte for byte; with the
/// stage, every line but the dropped ones, once, in one target or the
/// other.
fn check(sink: usize, out: &Path, routed: &Path, corpus: &Path, sha: &str) {
    let read_target = |dir: &Path| -> Vec<u8> {
        let output = Command::new(LOGPIPE)
            .arg("--read")
            .arg(dir)
            .output()
            .expect("logpipe --read");
        assert!(output.status.success());
        output.stdout
    };
    match sink {
        0 => {}
        1 => {
            let data = read_target(out);
            assert_eq!(
                scratch::hex(&<sha2::Sha256 as sha2::Digest>::digest(&data)),
                sha,
                "logpipe's output differs"
            );
        }
        _ => {
            let input = fs::read(corpus).expect("corpus");
            let kept: Vec<&[u8]> = input
                .split_inclusive(|&b| b == b'\n')
                .filter(|l| !l.windows(12).any(|w| w == b"GET /healthz"))
                .collect();
            let main = read_target(out);
            let routed = read_target(routed);
            let written = main.split_inclusive(|&b| b == b'\n').count()
                + routed.split_inclusive(|&b| b == b'\n').count();
            assert_eq!(written, kept.len(), "lines kept by the stage");
            assert!(
                !main.windows(12).any(|w| w == b"GET /healthz"),
                "a dropped line was written"
            );
            assert!(
                routed
                    .split_inclusive(|&b| b == b'\n')
                    .all(|l| l.starts_with(b"Traceback")),
                "a line routed that does not match"
            );
        }
    }
}
