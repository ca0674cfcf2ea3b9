//! Size rotation: byte-exact round trips over hundreds of rotations.

use crate::corpus::Corpus;
use crate::util::{TestEnv, check_segments, sha};

/// A seeded corpus of realistic and hostile lines, a 2 MiB line (longer
/// than the read buffer, so streamed in pieces), and no final newline,
/// through a limit small enough for hundreds of rotations.
#[test]
fn round_trip_is_byte_exact_across_hundreds_of_rotations() {
    let seed = 0x5eed_0001;
    let mut corpus = Corpus::new(seed);
    let mut input = Vec::new();
    corpus.hostile(&mut input);
    corpus.fill(&mut input, 3 << 20);
    corpus.long_line(&mut input, 2 << 20);
    corpus.hostile(&mut input);
    corpus.fill(&mut input, 3 << 20);
    input.extend_from_slice(b"the last line has no newline");
    assert!(input.len() > 8 << 20);

    let env = TestEnv::new();
    let limit = 24 << 10;
    let run = env.run(&["--size", "24K", "out/"], &input);
    assert!(run.status.success(), "seed {seed:#x}: {run:?}");
    assert_eq!(run.stderr, "");

    // A final line without a newline gets one; nothing else changes.
    input.push(b'\n');
    assert_eq!(
        env.collated_sha("out/current"),
        sha(&input),
        "seed {seed:#x}"
    );
    let segments = env.segments("out/current");
    let count = check_segments(&segments, limit);
    assert!(count >= 200, "only {count} rotations");
    // One of them is the 2 MiB line alone.
    assert!(segments.iter().any(|s| s.len() == 2 << 20));
}

/// Numbers run 1, 2, 3, … per date, with no gap and no repeat.
#[test]
fn numbers_are_contiguous_per_date() {
    let mut input = Vec::new();
    Corpus::new(7).fill(&mut input, 2 << 20);
    let env = TestEnv::new();
    let run = env.run(&["--size", "16K", "app.log"], &input);
    assert!(run.status.success(), "{run:?}");
    let segments = env.segments("app.log");
    assert!(segments.len() > 100);
    let mut expected = std::collections::BTreeMap::new();
    for seg in &segments {
        let next = expected.entry(seg.date.clone()).or_insert(1);
        assert_eq!(seg.n, *next, "{}", seg.path.display());
        *next += 1;
    }
    assert_eq!(env.collated_sha("app.log"), sha(&input));
}

/// A limit smaller than every line: each line is its own segment.
#[test]
fn lines_longer_than_the_limit_are_never_cut() {
    let input = b"first line\nsecond, longer line\n\nthird\n".to_vec();
    let env = TestEnv::new();
    let run = env.run(&["--size", "4", "out/"], &input);
    assert!(run.status.success(), "{run:?}");
    let segments = env.segments("out/current");
    let contents: Vec<_> = segments.iter().map(|s| s.read()).collect();
    assert_eq!(
        contents,
        [&b"first line\n"[..], b"second, longer line\n", b"\n"]
    );
    assert_eq!(std::fs::read(env.path("out/current")).unwrap(), b"third\n");
}

/// An empty input creates an empty active file and no segment.
#[test]
fn empty_input_makes_no_segment() {
    let env = TestEnv::new();
    let run = env.run(&["--size", "1", "out/"], b"");
    assert!(run.status.success(), "{run:?}");
    assert!(env.segments("out/current").is_empty());
    assert_eq!(std::fs::read(env.path("out/current")).unwrap(), b"");
}
