//! Peak memory stays flat whatever the input size and line length.

use std::io::Write;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::corpus::Corpus;
use crate::util::{TestEnv, check_segments, hex, peak_rss_kib, sha};

/// Peak RSS allowed for the logpipe process, in KiB.
const MAX_RSS_KIB: u64 = 8 << 10;

/// Feeds `rounds` copies of `block` to logpipe, waits until all of it is on
/// disk, and returns logpipe's peak RSS over that work; then ends input and
/// checks the run ended well.
fn peak_rss_over(env: &TestEnv, args: &[&str], block: Vec<u8>, rounds: usize) -> u64 {
    let total = (block.len() * rounds) as u64;
    let mut child = env.spawn(args);
    let mut stdin = child.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        for _ in 0..rounds {
            stdin.write_all(&block).expect("feed logpipe");
        }
        stdin
    });
    env.wait_until("all input on disk", Duration::from_secs(300), || {
        env.bytes_on_disk(&["out"]) == total
    });
    // Still running, everything processed: its high-water mark covers the
    // whole workload.
    let peak = peak_rss_kib(child.id()).expect("logpipe is still running");
    drop(feeder.join().expect("feeder"));
    let run = env.finish(child, &format!("logpipe {args:?}"));
    assert!(run.status.success(), "{run:?}");
    peak
}

#[test]
fn a_20_mb_line_is_streamed_not_held() {
    let mut corpus = Corpus::new(31);
    let mut input = Vec::new();
    corpus.fill(&mut input, 1 << 20);
    corpus.long_line(&mut input, 20 << 20);
    corpus.fill(&mut input, 1 << 20);
    let expected = sha(&input);

    let env = TestEnv::new();
    let peak = peak_rss_over(&env, &["--size", "1M", "out/"], input, 1);
    println!("peak RSS {peak} KiB");
    assert!(peak < MAX_RSS_KIB, "peak RSS {peak} KiB");
    assert_eq!(env.collated_sha("out/current"), expected);
    check_segments(&env.segments("out/current"), 1 << 20);
}

/// 64 MiB of input, eight times the limit, in 8 MiB segments: peak memory
/// does not grow with the input.
#[test]
fn a_64_mib_input_runs_in_flat_memory() {
    input_in_flat_memory(16, "8M");
}

/// The same with 500 MB in 64 MiB segments.
#[test]
#[ignore = "slow: pushes 500 MB through logpipe and gzip; CI runs it"]
fn a_500_mb_input_runs_in_flat_memory() {
    input_in_flat_memory(125, "64M");
}

/// Feeds `rounds` copies of a 4 MiB block of realistic lines (the content
/// only has to be line-shaped, the size is what this is about) through
/// `--size size`, and checks the peak RSS and the output.
fn input_in_flat_memory(rounds: usize, size: &str) {
    let mut block = Vec::new();
    Corpus::new(32).fill(&mut block, 4 << 20);
    let total = block.len() * rounds;
    let mut hasher = Sha256::new();
    for _ in 0..rounds {
        hasher.update(&block);
    }
    let expected = hex(&hasher.finalize());

    let env = TestEnv::new();
    let peak = peak_rss_over(&env, &["--size", size, "out/"], block, rounds);
    println!("peak RSS {peak} KiB");
    assert!(peak < MAX_RSS_KIB, "peak RSS {peak} KiB");
    // Eight times the memory allowed: held in memory, it would not fit.
    assert!(total as u64 >= 8 * (MAX_RSS_KIB << 10));
    assert_eq!(env.collated_sha("out/current"), expected);
    let limit = parse_size(size);
    assert_eq!(
        check_segments(&env.segments("out/current"), limit),
        total / limit as usize
    );
}

/// `8M` or `64M` as bytes.
fn parse_size(size: &str) -> u64 {
    let mib: u64 = size.strip_suffix('M').unwrap().parse().unwrap();
    mib << 20
}
