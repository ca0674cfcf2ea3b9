//! The worker on the real binary: files planted in its way (a symbolic
//! link at a temporary name, a `.gz` under a segment's compressed name, a
//! link named like a segment under retention), what is said and left at
//! `--shutdown-timeout`, and the output of `--on-rotate` hooks.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::corpus::lines;
use crate::util::{TestEnv, clock_line, collated_sha_of, sha};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("decompress {}: {e}", path.display()));
    out
}

/// The lines of a file, or none if it does not exist.
fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The names of the segment files of `out/current` (any form), sorted.
fn segment_names(env: &TestEnv) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(env.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("current.20"))
        .collect();
    names.sort();
    names
}

/// A symbolic link planted at the next segment's `.gz.tmp` while logpipe
/// runs is never followed (its target untouched), and a `.gz` planted
/// under the next segment's compressed name is never overwritten: both
/// segments stay plain with one warning each, their hooks run on the plain
/// path, and every byte of input is there exactly once.
#[test]
fn files_planted_at_a_segments_compressed_names_are_stepped_around() {
    let env = TestEnv::new();
    let victim = env.path("victim");
    fs::write(&victim, "precious\n").unwrap();
    let hooks = env.path("hooks.log");
    let hook = format!("echo >> {}", hooks.display());
    let mut child = env.spawn(&[
        "--debug-clock",
        "2026-11-21T10:00:00Z",
        "--every",
        "1h",
        "--on-rotate",
        &hook,
        "out/",
    ]);
    let mut stdin = child.stdin.take().unwrap();
    let parts: Vec<Vec<u8>> = (1..=4).map(|i| lines(0x70_0000 + i, 64 << 10)).collect();
    stdin.write_all(&parts[0]).unwrap();
    env.wait_until("the first part written", Duration::from_secs(60), || {
        fs::read(env.path("out/current")).is_ok_and(|b| b == parts[0])
    });
    // logpipe runs; segment 1 is made at 11:00, segment 2 at 12:00.
    let temp = env.path("out/current.2026-11-21.1.gz.tmp");
    symlink(&victim, &temp).unwrap();
    let planted = gzip(b"a planted file\n");
    let planted_gz = env.path("out/current.2026-11-21.2.gz");
    fs::write(&planted_gz, &planted).unwrap();
    for (hour, part) in [11, 12, 13].into_iter().zip(&parts[1..]) {
        stdin
            .write_all(clock_line(&format!("2026-11-21T{hour}:00:00Z")).as_bytes())
            .unwrap();
        stdin.write_all(part).unwrap();
    }
    drop(stdin);
    let run = env.finish(child, "logpipe with planted files");
    assert!(run.status.success(), "{run:?}");

    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(fs::read_link(&temp).unwrap(), victim);
    assert!(
        fs::read(&planted_gz).unwrap() == planted,
        "the planted .gz changed"
    );
    assert_eq!(
        segment_names(&env),
        [
            "current.2026-11-21.1",
            "current.2026-11-21.1.gz.tmp",
            "current.2026-11-21.2",
            "current.2026-11-21.2.gz",
            "current.2026-11-21.3.gz",
        ]
    );
    assert!(fs::read(env.path("out/current.2026-11-21.1")).unwrap() == parts[0]);
    assert!(fs::read(env.path("out/current.2026-11-21.2")).unwrap() == parts[1]);
    assert!(gunzip(&env.path("out/current.2026-11-21.3.gz")) == parts[2]);
    // Every byte once: the plain segments (not the planted .gz), then the
    // compressed one, then the active file.
    assert_eq!(
        collated_sha_of(&env.segments("out/current"), &env.path("out/current")),
        sha(&parts.concat())
    );
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "logpipe: warning: leaving out/current.2026-11-21.1 uncompressed: \
             out/current.2026-11-21.1.gz.tmp is a symbolic link",
            "logpipe: warning: leaving out/current.2026-11-21.2 uncompressed: \
             out/current.2026-11-21.2.gz exists and does not decompress to the segment's content",
        ]
    );
    assert_eq!(
        read_lines(&hooks),
        [
            "out/current.2026-11-21.1",
            "out/current.2026-11-21.2",
            "out/current.2026-11-21.3.gz",
        ]
    );
}

/// A `.gz.tmp` left at start that is not logpipe's (a symbolic link) is
/// left alone, and its segment stays plain with one warning; its hook runs
/// on the plain path. A stale temporary of logpipe's own is removed.
#[test]
fn a_stale_temporary_that_is_not_ours_is_left_alone_at_start() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    let victim = env.path("victim");
    fs::write(&victim, "precious\n").unwrap();
    let (one, two) = (lines(0x70_0101, 8 << 10), lines(0x70_0102, 8 << 10));
    fs::write(env.path("out/current.2026-11-20.1"), &one).unwrap();
    symlink(&victim, env.path("out/current.2026-11-20.1.gz.tmp")).unwrap();
    fs::write(env.path("out/current.2026-11-20.2"), &two).unwrap();
    fs::write(env.path("out/current.2026-11-20.2.gz.tmp"), "half").unwrap();
    let hooks = env.path("hooks.log");
    let hook = format!("echo >> {}", hooks.display());
    let run = env.run(&["--on-rotate", &hook, "out/"], b"");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        run.stderr,
        "logpipe: warning: leaving out/current.2026-11-20.1 uncompressed: \
         out/current.2026-11-20.1.gz.tmp is a symbolic link\n"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(
        segment_names(&env),
        [
            "current.2026-11-20.1",
            "current.2026-11-20.1.gz.tmp",
            "current.2026-11-20.2.gz",
        ]
    );
    assert!(gunzip(&env.path("out/current.2026-11-20.2.gz")) == two);
    assert_eq!(
        read_lines(&hooks),
        ["out/current.2026-11-20.1", "out/current.2026-11-20.2.gz"]
    );
}

/// Retention neither counts nor deletes a symbolic link or a second name
/// of a stranger's file named like a segment.
#[test]
fn retention_never_deletes_or_counts_what_is_not_ours() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    let victim = env.path("victim");
    fs::write(&victim, "precious\n").unwrap();
    // The oldest names: what --keep would delete first.
    symlink(&victim, env.path("out/current.2025-01-01.1.gz")).unwrap();
    fs::hard_link(&victim, env.path("out/current.2025-01-01.2")).unwrap();
    let input = lines(0x70_0200, 64 << 10);
    let run = env.run(&["--size", "4K", "--keep", "3", "out/"], &input);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(
        fs::read_link(env.path("out/current.2025-01-01.1.gz")).unwrap(),
        victim
    );
    assert!(env.path("out/current.2025-01-01.2").exists());
    let ours: Vec<String> = segment_names(&env)
        .into_iter()
        .filter(|n| !n.starts_with("current.2025-01-01."))
        .collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
    assert!(ours.iter().all(|n| n.ends_with(".gz")), "{ours:?}");
}

/// The lines of `stderr` that contain `marker`.
fn with<'a>(stderr: &'a str, marker: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(marker)).collect()
}

/// The paths a shutdown report line lists: `N things (a, b, c)`.
fn listed(line: &str) -> Vec<String> {
    let start = line.find(" (").expect("a list") + 2;
    let end = start + line[start..].find(')').expect("the end of the list");
    line[start..end].split(", ").map(str::to_string).collect()
}

/// Waits until process `pid` has ended (or is a zombie nobody reaps).
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return;
            }
            Ok(_) => {}
        }
        assert!(Instant::now() < deadline, "hook {pid} still running");
        thread::sleep(Duration::from_millis(10));
    }
}

/// What a first run left at `--shutdown-timeout 0s`, as its warnings say.
#[derive(Debug, Default)]
struct Report {
    uncompressed: Vec<String>,
    not_run: Vec<String>,
    running: Option<(String, u32)>,
}

fn report(stderr: &str) -> Report {
    let mut report = Report::default();
    for line in stderr.lines() {
        assert!(line.starts_with("logpipe: warning: "), "{stderr}");
        if line.contains("left uncompressed; the next start compresses") {
            report.uncompressed = listed(line);
        } else if line.contains("not run at the next start either") {
            report.not_run = listed(line);
        } else if line.contains("left running (pid ") {
            let path = line
                .strip_prefix("logpipe: warning: --on-rotate for ")
                .and_then(|rest| rest.split(' ').next())
                .expect("a path");
            let pid = line.split("(pid ").nth(1).unwrap();
            let pid = pid[..pid.find(')').unwrap()].parse().unwrap();
            report.running = Some((path.to_string(), pid));
        } else {
            panic!("unexpected: {line}");
        }
    }
    report
}

/// `--shutdown-timeout 0s` with compressions and slow hooks queued: the
/// warnings name every segment left uncompressed (the next start
/// compresses them and runs their hooks), every hook not run (never run
/// after), and the hook left running with its pid. Every segment's hook
/// runs once, or is named as not run: none is lost unsaid, none runs twice.
#[test]
fn the_shutdown_timeout_names_every_compression_and_hook_left_undone() {
    let env = TestEnv::new();
    let log = env.path("hooks.log");
    let hook = format!("sleep 0.05; echo >> {}", log.display());
    let args = [
        "--shutdown-timeout",
        "0s",
        "--level",
        "9",
        "--size",
        "64K",
        "--on-rotate",
        &hook,
        "out/",
    ];
    let input = lines(0x70_0300, 16 << 20);
    let run = env.run(&args, &input);
    assert!(run.status.success(), "{run:?}");
    let first = report(&run.stderr);
    assert!(
        !first.uncompressed.is_empty() || !first.not_run.is_empty(),
        "nothing was left undone: {}",
        run.stderr
    );
    if let Some((_, pid)) = &first.running {
        wait_gone(*pid);
    }
    let calls_before = read_lines(&log);
    let run = env.run(&args[2..], b"");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    let calls_after = read_lines(&log)[calls_before.len()..].to_vec();

    let segments = env.segments("out/current");
    assert!(segments.iter().all(|s| s.gz), "{}", env.listing());
    let all: BTreeSet<String> = segments
        .iter()
        .map(|s| format!("out/{}", s.path.file_name().unwrap().to_string_lossy()))
        .collect();
    // The next start ran exactly the hooks of the segments it compressed.
    let compressed: BTreeSet<String> = first
        .uncompressed
        .iter()
        .map(|p| format!("{p}.gz"))
        .collect();
    assert_eq!(
        calls_after.iter().cloned().collect::<BTreeSet<_>>(),
        compressed
    );
    if let Some((path, _)) = &first.running {
        assert!(
            calls_before.contains(path),
            "{path} was left running but never ran"
        );
    }
    // Each segment: hooked once, or named as not run.
    let mut seen: Vec<String> = [calls_before, calls_after, first.not_run].concat();
    seen.sort();
    assert_eq!(seen, all.into_iter().collect::<Vec<_>>());
    assert_eq!(env.collated_sha("out/current"), sha(&input));
}

/// With `--compress none`, hooks queued at the shutdown timeout are named
/// as never run, and the next start runs none.
#[test]
fn without_compression_the_hooks_left_at_the_timeout_are_named() {
    let env = TestEnv::new();
    let log = env.path("hooks.log");
    let hook = format!("sleep 0.1; echo >> {}", log.display());
    let args = [
        "--shutdown-timeout",
        "0s",
        "--compress",
        "none",
        "--size",
        "4K",
        "--on-rotate",
        &hook,
        "out/",
    ];
    let input = lines(0x70_0400, 64 << 10);
    let run = env.run(&args, &input);
    assert!(run.status.success(), "{run:?}");
    let first = report(&run.stderr);
    assert!(first.uncompressed.is_empty(), "{}", run.stderr);
    assert!(!first.not_run.is_empty(), "{}", run.stderr);
    assert!(!run.stderr.contains("compression"), "{}", run.stderr);
    if let Some((_, pid)) = &first.running {
        wait_gone(*pid);
    }
    let calls = read_lines(&log);
    let run = env.run(&args[2..], b"");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(read_lines(&log), calls, "the next start ran hooks");
    let all: Vec<String> = env
        .segments("out/current")
        .iter()
        .map(|s| format!("out/{}", s.path.file_name().unwrap().to_string_lossy()))
        .collect();
    let mut seen = [calls, first.not_run].concat();
    seen.sort_by_key(|p| {
        all.iter()
            .position(|q| q == p)
            .unwrap_or_else(|| panic!("{p} is not a segment"))
    });
    assert_eq!(seen, all);
    assert_eq!(env.collated_sha("out/current"), sha(&input));
}

/// A hook's standard output and error are reported on logpipe's stderr,
/// each line prefixed with the hook and the segment; nothing of it reaches
/// the `--tee` copy on standard output; a shell error reads as the
/// shell's (`sh: …`), never as logpipe's own (`logpipe: 1: …`); and the
/// hook's standard input is not the log stream.
#[test]
fn hook_output_is_prefixed_and_never_reaches_the_tee() {
    let env = TestEnv::new();
    let input = lines(0x70_0500, 16 << 10);
    let hook = "cat; echo to-stdout; echo to-stderr >&2; logpipe-no-such-command";
    let mut cmd = env.cmd(&["--tee", "--size", "4K", "--on-rotate", hook, "out/"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let fed = input.clone();
    let feeder = thread::spawn(move || stdin.write_all(&fed).unwrap());
    let out_reader = thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).unwrap();
        out
    });
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    feeder.join().unwrap();
    let tee = out_reader.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {err}");

    assert!(tee == input, "the --tee copy differs from the input");
    assert!(env.collated("out/current") == input, "{}", env.listing());
    let segments = env.segments("out/current");
    assert!(segments.len() >= 3);
    for seg in &segments {
        let prefix = format!(
            "--on-rotate for out/{}: ",
            seg.path.file_name().unwrap().to_string_lossy()
        );
        let mine: Vec<&str> = with(&err, &prefix);
        assert_eq!(mine.len(), 4, "{err}");
        let info = format!("logpipe: info: {prefix}");
        let warning = format!("logpipe: warning: {prefix}");
        assert!(mine.contains(&format!("{info}to-stdout").as_str()), "{err}");
        assert!(
            mine.contains(&format!("{warning}to-stderr").as_str()),
            "{err}"
        );
        assert!(
            mine.iter().any(|l| l.starts_with(&format!("{warning}sh: "))
                && l.contains("logpipe-no-such-command")),
            "{err}"
        );
        assert!(
            mine.iter()
                .any(|l| l.starts_with(&warning) && l.ends_with("failed: exit status: 127")),
            "{err}"
        );
    }
    assert_eq!(err.lines().count(), 4 * segments.len(), "{err}");
}

/// After the target directory is removed and made again, the segments
/// finished in the new one are compressed there.
#[test]
fn segments_in_a_directory_made_again_are_compressed() {
    let env = TestEnv::new();
    let mut child = env.spawn(&["--size", "8K", "logs/out/"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&lines(0x70_0600, 64 << 10)).unwrap();
    // Removed once the worker is idle, so that it does not make a file in
    // the directory while it is being removed.
    env.wait_until("every segment compressed", Duration::from_secs(60), || {
        let segments: Vec<String> = fs::read_dir(env.path("logs/out"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("current.20"))
            .collect();
        segments.len() > 3 && segments.iter().all(|n| n.ends_with(".gz"))
    });
    fs::remove_dir_all(env.path("logs")).unwrap();
    let second = lines(0x70_0601, 64 << 10);
    stdin.write_all(&second).unwrap();
    drop(stdin);
    let run = env.finish(child, "logpipe whose directory was removed");
    assert!(run.status.success(), "{run:?}");
    let segments = env.segments("logs/out/current");
    assert!(segments.len() > 3, "{}", env.listing());
    assert!(segments.iter().all(|s| s.gz), "{}", env.listing());
    // What the active file held when the directory went, then the rest.
    let mut collated: Vec<u8> = segments.iter().flat_map(|s| s.read()).collect();
    collated.extend(fs::read(env.path("logs/out/current")).unwrap());
    assert!(collated.ends_with(&second));
}
