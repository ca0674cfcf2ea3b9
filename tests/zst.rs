//! `--compress zstd`: byte-exact round trips through `.zst`, checked by the
//! zstd crate and by Debian's `zstd`; a target switched between gzip and
//! zstd keeps its numbering and its retention; `--level` per method.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::compress::{assert_all_compressed, suffix};
use crate::corpus::{lines, mixed};
use crate::util::{TestEnv, check_segments, ensure_program, sha};

/// Zstd over hundreds of rotations is byte-exact; every segment is a `.zst`
/// that decompresses in full with a valid checksum; nothing else is left.
#[test]
fn zstd_round_trip_is_exact_over_hundreds_of_rotations() {
    let mut input = mixed(0x2570_0001, 4 << 20);
    input.extend_from_slice(b"the last line has no newline");
    let env = TestEnv::new();
    let run = env.run(&["--compress", "zstd", "--size", "16K", "out/"], &input);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");

    input.push(b'\n');
    let segments = assert_all_compressed(&env, "out/current", "zstd");
    let count = check_segments(&segments, 16 << 10);
    assert!(count >= 200, "only {count} rotations");
    assert_eq!(env.collated_sha("out/current"), sha(&input));
    assert!(segments.iter().any(|s| s.len() == 40 << 10));
}

/// `--level 1` and `--level 19` round-trip exactly, and 19 is smaller.
#[test]
fn zstd_levels_1_and_19_round_trip_and_differ() {
    let input = mixed(0x2570_0002, 2 << 20);
    let mut compressed = BTreeMap::new();
    for level in ["1", "19"] {
        let env = TestEnv::new();
        let args = ["--compress", "zstd", "--level", level, "--size", "64K"];
        let run = env.run(&[&args[..], &["out/"]].concat(), &input);
        assert!(run.status.success(), "--level {level}: {run:?}");
        assert_eq!(run.stderr, "", "--level {level}");
        let segments = assert_all_compressed(&env, "out/current", "zstd");
        assert_eq!(env.collated_sha("out/current"), sha(&input), "{level}");
        let bytes: u64 = segments
            .iter()
            .map(|s| fs::metadata(&s.path).unwrap().len())
            .sum();
        compressed.insert(level, bytes);
    }
    assert!(
        compressed["19"] < compressed["1"],
        "level 19 is not smaller than level 1: {compressed:?}"
    );
}

/// Debian's `zstd -t` passes on every segment, and `zstdcat` of the
/// segments in order, then the active file, is the input.
#[test]
#[ignore = "installs Debian's zstd with apt-get when it is missing; CI runs it"]
fn debian_zstd_checks_and_reads_every_segment() {
    ensure_program("zstd", "zstd");
    ensure_program("zstdcat", "zstd");
    let input = mixed(0x2570_0003, 8 << 20);
    let env = TestEnv::new();
    let run = env.run(&["--compress", "zstd", "--size", "256K", "out/"], &input);
    assert!(run.status.success(), "{run:?}");
    let segments = assert_all_compressed(&env, "out/current", "zstd");
    assert!(segments.len() >= 30, "only {}", segments.len());
    let paths: Vec<_> = segments.iter().map(|s| s.path.clone()).collect();
    let test = Command::new("zstd")
        .arg("-q")
        .arg("-t")
        .args(&paths)
        .output()
        .expect("run zstd -t");
    assert!(
        test.status.success(),
        "zstd -t failed: {}",
        String::from_utf8_lossy(&test.stderr)
    );
    let cat = Command::new("zstdcat")
        .args(&paths)
        .stderr(Stdio::inherit())
        .output()
        .expect("run zstdcat");
    assert!(cat.status.success(), "zstdcat: {}", cat.status);
    let mut output = cat.stdout;
    output.extend(fs::read(env.path("out/current")).unwrap());
    assert_eq!(sha(&output), sha(&input));
}

/// A target switched from gzip to zstd and back: each run numbers on from
/// the highest segment in any form, never reusing a number; a segment left
/// in both compressed forms counts once; retention keeps the newest
/// segments whatever their form; the content is the input, in order.
#[test]
fn switching_between_gzip_and_zstd_keeps_numbering_and_retention() {
    let env = TestEnv::new();
    let mut input = Vec::new();
    let mut highest = 0;
    for (round, method) in ["gzip", "zstd", "gzip"].into_iter().enumerate() {
        let part = lines(0x2570_0100 + round as u64, 40 << 10);
        let run = env.run(&["--compress", method, "--size", "4K", "out/"], &part);
        assert!(run.status.success(), "{method}: {run:?}");
        assert_eq!(run.stderr, "", "{method}");
        input.extend_from_slice(&part);
        let segments = env.segments("out/current");
        // Numbers go on from the last run: one each, no hole, no reuse.
        let numbers: Vec<u64> = segments.iter().map(|s| s.n).collect();
        let expected: Vec<u64> = (1..=segments.len() as u64).collect();
        assert_eq!(numbers, expected, "{method}: {}", env.listing());
        assert!(
            segments.len() as u64 >= highest + 8,
            "{method}: too few new"
        );
        // This run's segments are in its form; the earlier ones kept theirs.
        for seg in &segments[highest as usize..] {
            assert_eq!(seg.zst, method == "zstd", "{}", seg.path.display());
            assert_eq!(seg.gz, method == "gzip", "{}", seg.path.display());
        }
        assert_eq!(env.collated_sha("out/current"), sha(&input), "{method}");
        highest = segments.len() as u64;
    }
    let segments = env.segments("out/current");
    assert!(segments.iter().any(|s| s.zst) && segments.iter().any(|s| s.gz));

    // The newest .gz also as a .zst of the same content (as a crash, then
    // a change of --compress, may leave it): still one segment.
    let last = segments.last().unwrap();
    let zst_path = last.path.with_extension("zst");
    fs::write(&zst_path, zstd::encode_all(&last.read()[..], 3).unwrap()).unwrap();
    let keep = 5;
    let run = env.run(
        &[
            "--compress",
            "zstd",
            "--size",
            "4K",
            "--keep",
            &keep.to_string(),
            "out/",
        ],
        b"",
    );
    assert!(run.status.success(), "{run:?}");
    let kept = env.segments("out/current");
    let numbers: Vec<u64> = kept.iter().map(|s| s.n).collect();
    let expected: Vec<u64> = (highest + 1 - keep..=highest).collect();
    assert_eq!(numbers, expected, "{}", env.listing());
    // Both forms of the newest stay, together.
    assert!(last.path.exists() && zst_path.exists(), "{}", env.listing());
    let tail: Vec<u8> = kept
        .iter()
        .flat_map(|s| s.read())
        .chain(fs::read(env.path("out/current")).unwrap())
        .collect();
    assert!(input.ends_with(&tail), "the kept segments are not the end");
    // Nothing of a deleted segment is left in any form.
    let names: Vec<String> = fs::read_dir(env.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("current.20"))
        .collect();
    assert_eq!(names.len() as u64, keep + 1, "{names:?}");
}

/// A level outside the method's range is a usage error naming the value
/// and the range, and creates nothing; each method's default is taken.
#[test]
fn levels_are_checked_per_method() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--compress", "zstd", "--level", "20"],
            "invalid value '20' for '--level <LEVEL>': zstd levels are 1 to 19",
        ),
        (
            &["--compress", "zstd", "--level", "0"],
            "invalid value '0' for '--level <LEVEL>': zstd levels are 1 to 19",
        ),
        (
            &["--level", "10"],
            "invalid value '10' for '--level <LEVEL>': gzip levels are 1 to 9",
        ),
    ];
    for (args, message) in cases {
        let env = TestEnv::new();
        let run = env.run(&[&args[..], &["out/"]].concat(), b"a line\n");
        assert_eq!(run.status.code(), Some(2), "{args:?}: {run:?}");
        let first = run.stderr.lines().next().unwrap_or_default();
        assert_eq!(first, format!("error: {message}"), "{args:?}");
        assert!(!env.path("out").exists(), "{args:?} created something");
    }
    // zstd 19 is valid for zstd only, and works.
    let env = TestEnv::new();
    let input = lines(0x2570_0200, 64 << 10);
    let args = [
        "--compress",
        "zstd",
        "--level",
        "19",
        "--size",
        "8K",
        "out/",
    ];
    let run = env.run(&args, &input);
    assert!(run.status.success(), "{run:?}");
    assert_all_compressed(&env, "out/current", "zstd");
    assert_eq!(env.collated_sha("out/current"), sha(&input));
}

/// Two compression threads: byte-exact for both methods, and the hooks run
/// in segment order although, with gzip (two segments at once), a small
/// segment after an oversized one is compressed first.
#[test]
fn two_compression_threads_keep_content_and_hook_order() {
    for method in ["gzip", "zstd"] {
        let env = TestEnv::new();
        let input = mixed(0x2570_0300, 4 << 20);
        let hooks = env.path("hooks");
        let hook = format!("echo >> {}", hooks.display());
        let args = [
            "--compress",
            method,
            "--compress-threads",
            "2",
            "--size",
            "16K",
            "--on-rotate",
            &hook,
            "out/",
        ];
        let run = env.run(&args, &input);
        assert!(run.status.success(), "{method}: {run:?}");
        assert_eq!(run.stderr, "", "{method}");
        let segments = assert_all_compressed(&env, "out/current", method);
        assert!(segments.len() >= 200, "{method}: {}", segments.len());
        assert_eq!(env.collated_sha("out/current"), sha(&input), "{method}");
        crate::util::assert_hooked_in_order(&hooks, &segments, method);
    }
}

/// The threads of logpipe whose name says they compress (`logpipe-compress-N`,
/// shortened by the kernel to 15 bytes; zstd's workers inherit the name of
/// the thread that starts them).
fn compressing_threads(pid: u32) -> usize {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("logpipe-compres"))
        .count()
}

/// `--compress-threads 3` spends three threads on compression: with gzip
/// and zstd 9, three threads of logpipe's, each with a segment of its own;
/// with zstd 3, one thread of logpipe's that reads and writes, and three
/// of zstd's own that compress. Either way the content is byte-exact.
#[test]
fn compress_threads_are_the_threads_that_compress() {
    for (method, level, want) in [("gzip", "6", 3), ("zstd", "3", 4), ("zstd", "9", 3)] {
        let env = TestEnv::new();
        let input = lines(0x7e4d_0001, 6 << 20);
        let args = [
            "--compress",
            method,
            "--level",
            level,
            "--compress-threads",
            "3",
            "--size",
            "2M",
            "out/",
        ];
        let mut child = env.spawn(&args);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(&input).expect("feed logpipe");
        // The first compressed segment: its compressor, with zstd's
        // workers, is kept for the next one until logpipe stops.
        env.wait_until("a compressed segment", Duration::from_secs(120), || {
            fs::read_dir(env.path("out")).is_ok_and(|dir| {
                dir.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(suffix(method)))
            })
        });
        let threads = compressing_threads(child.id());
        drop(stdin);
        let run = env.finish(child, method);
        assert!(run.status.success(), "{method} {level}: {run:?}");
        assert_eq!(threads, want, "{method} {level}: compressing threads");
        assert_all_compressed(&env, "out/current", method);
        assert_eq!(
            env.collated_sha("out/current"),
            sha(&input),
            "{method} {level}"
        );
    }
}
