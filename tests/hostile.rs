//! Hostile input: odd bytes, degenerate inputs, a very long line, and many
//! writers sharing one pipe.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::util::{TestEnv, hex, peak_rss_kib};

/// Bytes that are not text pass through untouched, with and without
/// rotation and compression.
#[test]
fn odd_bytes_and_degenerate_inputs_round_trip() {
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("empty input", b"", b""),
        ("a single newline", b"\n", b"\n"),
        ("only NULs", b"\0\0\0\n\0", b"\0\0\0\n\0\n"),
        ("lone CR", b"a\rb\r\r\nc\r", b"a\rb\r\r\nc\r\n"),
        (
            "invalid UTF-8",
            b"\xff\xfe\xc3(\xed\xa0\x80\n\x80",
            b"\xff\xfe\xc3(\xed\xa0\x80\n\x80\n",
        ),
        ("newlines only", b"\n\n\n\n\n\n\n\n", b"\n\n\n\n\n\n\n\n"),
    ];
    for (what, input, expected) in cases {
        for args in [
            &["--size", "2", "out/"][..],
            &["--size", "2", "--compress", "none", "out/"],
            &["out/"],
        ] {
            let env = TestEnv::new();
            let run = env.run(args, input);
            assert!(run.status.success(), "{what} {args:?}: {run:?}");
            assert_eq!(env.collated("out/current"), *expected, "{what} {args:?}");
        }
    }
}

/// A 64 MiB line without a newline is streamed through in flat memory (a
/// logpipe that held the line would need eight times the limit) and comes
/// out whole, with the newline added at the end.
#[test]
fn a_64_mib_line_is_streamed_in_flat_memory() {
    long_line_in_flat_memory(64);
}

/// The same with a 1 GiB line.
#[test]
#[ignore = "slow: pushes 1 GiB through logpipe; CI runs it"]
fn a_1_gib_line_is_streamed_in_flat_memory() {
    long_line_in_flat_memory(1024);
}

/// Feeds one line of `mib` MiB without a newline, checks the peak RSS
/// while logpipe still runs, and the output byte for byte.
fn long_line_in_flat_memory(mib: usize) {
    let block = vec![b'x'; 1 << 20];
    let rounds = mib;
    let mut hasher = Sha256::new();
    for _ in 0..rounds {
        hasher.update(&block);
    }
    hasher.update(b"\n");
    let expected = hex(&hasher.finalize());

    let env = TestEnv::new();
    let mut child = env.spawn(&["--compress", "none", "--size", "1M", "out/"]);
    let mut stdin = child.stdin.take().unwrap();
    let feeder = thread::spawn(move || {
        for _ in 0..rounds {
            stdin.write_all(&block).expect("feed logpipe");
        }
        stdin
    });
    env.wait_until("the whole line on disk", Duration::from_secs(300), || {
        env.bytes_on_disk(&["out"]) == (rounds << 20) as u64
    });
    let peak = peak_rss_kib(child.id()).expect("logpipe is still running");
    drop(feeder.join().unwrap());
    let run = env.finish(child, &format!("logpipe with a {mib} MiB line"));
    assert!(run.status.success(), "{run:?}");
    assert!(peak < 8 << 10, "peak RSS {peak} KiB");
    assert!(env.segments("out/current").is_empty(), "{}", env.listing());
    assert_eq!(env.collated_sha("out/current"), expected);
}

/// The line writer `w` writes as its `i`-th line: its length (at most
/// 4096 bytes, newline included) and content are known to the checker.
fn writer_line(w: u64, i: u64) -> Vec<u8> {
    let len = if i % 50 == 49 {
        4096
    } else {
        40 + (w * 7919 + i * 104_729) % 300
    };
    let mut line = format!("{w:02} {i:06} ").into_bytes();
    let fill = b'a' + ((w + i) % 26) as u8;
    line.resize(len as usize - 1, fill);
    line.push(b'\n');
    line
}

/// 16 writers write 20,000 lines each, every line with one write(2) of at
/// most PIPE_BUF bytes, into the same pipe: every line arrives whole, none
/// interleaved, none lost, each writer's in order.
///
/// The writers are threads, each with its own descriptor of the pipe (a
/// `dup`, as a forked process would have): the kernel's guarantee and
/// logpipe's part in keeping it are the same for threads as for
/// processes, and no interpreter is needed.
#[test]
fn many_writers_on_one_pipe_keep_their_lines_whole() {
    const WRITERS: u64 = 16;
    const LINES: u64 = 20_000;
    let env = TestEnv::new();
    let mut logpipe = env.spawn(&["--compress", "none", "--size", "16M", "out/"]);
    let pipe: OwnedFd = logpipe.stdin.take().unwrap().into();
    // All start writing at once, so that their writes interleave.
    let start = Arc::new(Barrier::new(WRITERS as usize));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let fd = pipe.try_clone().expect("share the pipe");
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for i in 0..LINES {
                    let line = writer_line(w, i);
                    // One write(2) per line, as a logging process makes it.
                    // SAFETY: writes from a live buffer of that length to
                    // a descriptor this thread owns.
                    let n =
                        unsafe { libc::write(fd.as_raw_fd(), line.as_ptr().cast(), line.len()) };
                    assert_eq!(n, line.len() as isize, "writer {w}, line {i}");
                }
            })
        })
        .collect();
    drop(pipe);
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let run = env.finish(logpipe, "logpipe fed by 16 writers");
    assert!(run.status.success(), "{run:?}");

    let output = env.collated("out/current");
    let mut next: HashMap<u64, u64> = HashMap::new();
    // How often the output goes from one writer's line to another's: the
    // writes did interleave, or this test proves nothing.
    let (mut switches, mut last) = (0, None);
    for line in output.split_inclusive(|&b| b == b'\n') {
        let text = std::str::from_utf8(&line[..10.min(line.len())]).unwrap_or("");
        let (w, i) = text
            .split_once(' ')
            .and_then(|(w, i)| Some((w.parse::<u64>().ok()?, i.trim().parse::<u64>().ok()?)))
            .unwrap_or_else(|| {
                panic!(
                    "a line that no writer wrote whole: {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(60)])
                )
            });
        assert!(
            line == writer_line(w, i).as_slice(),
            "line {i} of writer {w} is not whole"
        );
        let expected = next.entry(w).or_insert(0);
        assert_eq!(i, *expected, "writer {w}: out of order or lost");
        *expected += 1;
        switches += usize::from(last.is_some_and(|last| last != w));
        last = Some(w);
    }
    assert!(
        switches > WRITERS as usize,
        "the writers took turns only {switches} times"
    );
    assert_eq!(next.len() as u64, WRITERS);
    assert!(next.values().all(|&n| n == LINES), "lines lost: {next:?}");
    let total: usize = (0..WRITERS)
        .flat_map(|w| (0..LINES).map(move |i| writer_line(w, i).len()))
        .sum();
    assert_eq!(output.len(), total);
}
