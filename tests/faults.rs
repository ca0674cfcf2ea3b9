//! Faults and signals: a real full disk, SIGTERM and SIGINT with a producer
//! that keeps writing, SIGHUP after the active file was moved away.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::util::{TestEnv, ensure_program, sha};

/// Numbered lines of 48 bytes, `count` of them from `first`.
fn numbered(first: u64, count: u64) -> Vec<u8> {
    (first..first + count)
        .flat_map(|i| format!("line {i:012} padding padding padding pad\n").into_bytes())
        .collect()
}

/// Whether tests that need root may run. As root they always do. Otherwise
/// the test fails, saying why, unless LOGPIPE_SKIP_ROOT_TESTS=1 asks to
/// skip it knowingly; then it says so on stderr.
fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let why = "it mounts a small tmpfs to make a real full disk, which needs root";
    assert!(
        std::env::var_os("LOGPIPE_SKIP_ROOT_TESTS").is_some(),
        "{test} cannot run: {why}. Run the tests as root, or set LOGPIPE_SKIP_ROOT_TESTS=1 to skip it knowingly."
    );
    eprintln!("SKIPPED {test}: {why} (LOGPIPE_SKIP_ROOT_TESTS is set)");
    false
}

/// A tmpfs of `size` mounted at `dir` for as long as it lives.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount -t tmpfs failed: {status}");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A test directory with a 4 MiB tmpfs at `mnt`, filled but for about
/// 64 KiB by `mnt/filler`; `None` (after saying why) when not root.
fn nearly_full_disk(test: &str) -> Option<(TestEnv, Tmpfs, PathBuf)> {
    if !root_or_skip(test) {
        return None;
    }
    let env = TestEnv::new();
    let disk = Tmpfs::mount(&env.path("mnt"), "4m");
    let filler = fill(&env.path("mnt"), 64 << 10);
    Some((env, disk, filler))
}

/// Fills the file system holding `dir` but for about `leave` bytes, with
/// a file `dir/filler`, and returns its path.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    // Write until the disk refuses, then give back `leave` bytes.
    while file.write_all(&block).is_ok() {}
    let len = fs::metadata(&filler).unwrap().len();
    file.set_len(len.saturating_sub(leave)).unwrap();
    filler
}

/// Collects a child's stderr as it comes, so a test can wait for a line.
fn collect_stderr(child: &mut std::process::Child) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let pipe = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

/// Feeds `input` to `stdin` on a thread, counting what the pipe accepted.
fn feed(
    mut stdin: std::process::ChildStdin,
    input: Vec<u8>,
) -> (Arc<AtomicU64>, thread::JoinHandle<()>) {
    let fed = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&fed);
    let feeder = thread::spawn(move || {
        for chunk in input.chunks(4096) {
            if stdin.write_all(chunk).is_err() {
                return;
            }
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    });
    (fed, feeder)
}

/// On a full disk logpipe pauses (once on stderr), stops reading so the
/// producer blocks, and when space returns resumes exactly where it
/// stopped: nothing lost, nothing written twice.
#[test]
fn a_full_disk_pauses_and_resumes_without_loss() {
    let Some((env, _disk, filler)) =
        nearly_full_disk("a_full_disk_pauses_and_resumes_without_loss")
    else {
        return;
    };
    let input = numbered(0, 60_000); // 2.9 MB: more than the free space plus the pipe
    let mut child = env.spawn(&["--compress", "none", "--size", "1M", "mnt/out/"]);
    let stderr = collect_stderr(&mut child);
    let (fed, feeder) = feed(child.stdin.take().unwrap(), input.clone());

    env.wait_until("the pause", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("pausing")
    });
    // While paused logpipe reads nothing: the producer is held back.
    thread::sleep(Duration::from_millis(1500));
    let held = fed.load(Ordering::Relaxed);
    assert!(held < input.len() as u64, "the producer was not held back");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fed.load(Ordering::Relaxed),
        held,
        "logpipe read input while paused"
    );

    fs::remove_file(&filler).unwrap();
    feeder.join().unwrap();
    let run = env.finish(child, "logpipe on a full disk");
    assert!(run.status.success(), "{run:?}");
    let stderr = stderr.lock().unwrap().clone();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(
            "logpipe: warning: pausing: unable to write mnt/out/current: No space left on device"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("logpipe: info: resumed writing mnt/out/current after "),
        "{stderr}"
    );
    assert_eq!(env.collated_sha("mnt/out/current"), sha(&input));
}

/// SIGTERM while writes fail ends logpipe at once with exit 1 and one line
/// saying how many bytes were not written; what was written is intact.
#[test]
fn sigterm_while_paused_exits_1_saying_what_was_not_written() {
    let Some((env, _disk, _filler)) =
        nearly_full_disk("sigterm_while_paused_exits_1_saying_what_was_not_written")
    else {
        return;
    };
    let input = numbered(0, 60_000);
    let mut child = env.spawn(&["--compress", "none", "mnt/out/"]);
    let stderr = collect_stderr(&mut child);
    let (_fed, feeder) = feed(child.stdin.take().unwrap(), input.clone());
    env.wait_until("the pause", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("pausing")
    });

    // SAFETY: kill only sends a signal to our own child, by its pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let run = env.finish(child, "logpipe on a full disk, then SIGTERM");
    feeder.join().unwrap();
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let stderr = stderr.lock().unwrap().clone();
    let last = stderr.lines().last().unwrap_or_default();
    let unwritten: u64 = last
        .strip_prefix("logpipe: stopped with ")
        .and_then(|rest| {
            rest.split_once(
                " bytes not written: unable to write mnt/out/current: No space left on device",
            )
        })
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected last line: {stderr}"));
    assert!(unwritten > 0);
    // What is on disk is the start of the input, cut anywhere (the disk
    // filled up inside a line).
    let written = fs::read(env.path("mnt/out/current")).unwrap();
    assert!(
        !written.is_empty() && input.starts_with(&written),
        "the active file is not a prefix of the input"
    );
}

/// SIGTERM and SIGINT: logpipe writes exactly the input that was waiting
/// in the pipe when the signal came (it is stopped with SIGSTOP while the
/// input and the signal arrive), finishes the last line, and exits 0
/// although the producer still holds the pipe open.
#[test]
fn sigterm_and_sigint_write_the_waiting_input_and_exit_0() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let env = TestEnv::new();
        let mut child = env.spawn(&["--compress", "none", "--size", "64K", "out/"]);
        let pid = child.id() as libc::pid_t;
        let send = |sig| {
            // SAFETY: kill only sends a signal to our own child, by its pid.
            assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        };
        let mut stdin = child.stdin.take().unwrap();
        let first = numbered(0, 4000);
        stdin.write_all(&first).unwrap();
        env.wait_until("the first lines", Duration::from_secs(30), || {
            env.bytes_on_disk(&["out"]) == first.len() as u64
        });
        send(libc::SIGSTOP);
        // 200 KB waiting in the pipe, the last line unfinished, then the
        // signal, all while logpipe is stopped.
        let mut waiting = numbered(4000, 4000);
        waiting.extend_from_slice(b"an unfinished line");
        stdin.write_all(&waiting).unwrap();
        send(signal);
        send(libc::SIGCONT);
        let run = env.finish(child, "logpipe, then a signal");
        assert!(run.status.success(), "signal {signal}: {run:?}");
        assert_eq!(run.stderr, "");
        let expected = [&first[..], &waiting, b"\n"].concat();
        assert!(
            env.collated("out/current") == expected,
            "signal {signal}: not exactly the waiting input"
        );
        drop(stdin);
    }
}

/// After a SIGTERM, logpipe closes its input as soon as it stops reading,
/// before the last sync and the wait for compression: a producer that
/// goes on writing gets EPIPE, so every line whose write succeeded is in
/// the output. (It used to keep the pipe open for the seconds that
/// compression took and drop what was written meanwhile.)
#[test]
fn writes_after_sigterm_are_kept_or_refused_never_dropped() {
    let env = TestEnv::new();
    // A big active file, rolled at start: at level 9 the worker is still
    // compressing it for a while after the SIGTERM.
    fs::create_dir(env.path("out")).unwrap();
    let mut big = Vec::new();
    crate::corpus::Corpus::new(7).fill(&mut big, 48 << 20);
    fs::write(env.path("out/current"), &big).unwrap();
    let mut child = env.spawn(&["--level", "9", "out/"]);
    let pid = child.id() as libc::pid_t;
    let send = |sig| {
        // SAFETY: kill only sends a signal to our own child, by its pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    env.wait_until("the first line", Duration::from_secs(30), || {
        fs::read(env.path("out/current")).is_ok_and(|b| b.ends_with(b"first\n"))
    });
    send(libc::SIGUSR1);
    env.wait_until("the roll", Duration::from_secs(30), || {
        env.path("out/current.state").exists()
    });
    // A writer that goes on after the signal, one line every 2 ms, until
    // a write is refused.
    let writer = thread::spawn(move || {
        let mut accepted = Vec::new();
        for i in 0..20_000 {
            let line = format!("after {i}\n");
            match stdin.write_all(line.as_bytes()) {
                Ok(()) => accepted.extend_from_slice(line.as_bytes()),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return (accepted, true),
                Err(e) => panic!("write: {e}"),
            }
            thread::sleep(Duration::from_millis(2));
        }
        (accepted, false)
    });
    thread::sleep(Duration::from_millis(50));
    send(libc::SIGTERM);
    let (accepted, refused) = writer.join().unwrap();
    let run = env.finish(child, "logpipe, SIGTERM, writes going on");
    assert!(run.status.success(), "{run:?}");
    assert!(refused, "no write was ever refused");
    let expected = [&big[..], b"first\n", &accepted].concat();
    let got = env.collated("out/current");
    assert!(
        got == expected,
        "{} bytes accepted after the first line, {} in the output after it",
        accepted.len(),
        got.len().saturating_sub(big.len() + 6)
    );
}

/// SIGHUP after an external tool moved the active file away: what follows
/// goes to a new active file at the path; without a move, it appends.
#[test]
fn sighup_reopens_the_active_file_by_its_path() {
    let env = TestEnv::new();
    let mut child = env.spawn(&["--compress", "none", "out/"]);
    let mut stdin = child.stdin.take().unwrap();
    let hup = || {
        // SAFETY: kill only sends a signal to our own child, by its pid.
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) },
            0
        );
    };
    let on_disk = |path: &str, bytes: &[u8]| fs::read(env.path(path)).is_ok_and(|b| b == bytes);
    let timeout = Duration::from_secs(30);

    let first = numbered(0, 100);
    stdin.write_all(&first).unwrap();
    env.wait_until("the first lines", timeout, || {
        on_disk("out/current", &first)
    });
    fs::rename(env.path("out/current"), env.path("moved")).unwrap();
    hup();
    // Until the signal is handled, logpipe keeps writing the moved file.
    let second = numbered(100, 100);
    stdin.write_all(&second).unwrap();
    env.wait_until(
        "the second lines, in one file or the other",
        timeout,
        || {
            let moved = fs::read(env.path("moved")).unwrap_or_default();
            let current = fs::read(env.path("out/current")).unwrap_or_default();
            [moved, current].concat() == [&first[..], &second].concat()
        },
    );
    assert!(
        env.path("out/current").exists(),
        "no new active file after SIGHUP"
    );

    // Not moved this time: SIGHUP changes nothing, writing goes on.
    let before = fs::read(env.path("out/current")).unwrap();
    hup();
    let third = numbered(200, 100);
    stdin.write_all(&third).unwrap();
    let expected = [&before[..], &third].concat();
    env.wait_until("the third lines appended", timeout, || {
        on_disk("out/current", &expected)
    });
    drop(stdin);
    let run = env.finish(child, "logpipe with SIGHUP");
    assert!(run.status.success(), "{run:?}");

    let moved = fs::read(env.path("moved")).unwrap();
    assert!(moved.starts_with(&first));
    let all = [moved, fs::read(env.path("out/current")).unwrap()].concat();
    assert_eq!(sha(&all), sha(&numbered(0, 300)));
}

/// Compression on a full disk: the failed `.gz.tmp` is removed, the plain
/// segment stays, the worker retries; once there is room every segment is
/// compressed, none is lost or corrupt.
#[test]
fn compression_on_a_full_disk_is_retried_without_loss() {
    if !root_or_skip("compression_on_a_full_disk_is_retried_without_loss") {
        return;
    }
    let env = TestEnv::new();
    let _disk = Tmpfs::mount(&env.path("mnt"), "4m");
    let input = numbered(0, 20_000);
    let run = env.run(&["--compress", "none", "--size", "64K", "mnt/out/"], &input);
    assert!(run.status.success(), "{run:?}");
    let plain = env.segments("mnt/out/current");
    assert!(plain.len() > 10 && plain.iter().all(|s| !s.gz));

    // A second run with gzip finds the plain segments at start; there is
    // no room for their compressed copies until the filler goes.
    let filler = fill(&env.path("mnt"), 0);
    let mut child = env.spawn(&["mnt/out/"]);
    let stderr = collect_stderr(&mut child);
    drop(child.stdin.take());
    env.wait_until("a failed compression", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("unable to compress")
    });
    thread::sleep(Duration::from_millis(500));
    let leftovers: Vec<String> = fs::read_dir(env.path("mnt/out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".gz.tmp"))
        .collect();
    // At most the one being written right now.
    assert!(leftovers.len() <= 1, "{leftovers:?}");
    fs::remove_file(&filler).unwrap();
    let run = env.finish(child, "logpipe compressing on a full disk");
    assert!(run.status.success(), "{run:?}");

    let stderr = stderr.lock().unwrap().clone();
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("logpipe: warning: unable to compress mnt/out/current.")
            && first.contains("retrying in 1s"),
        "{stderr}"
    );
    let segments = env.segments("mnt/out/current");
    assert_eq!(segments.len(), plain.len());
    assert!(segments.iter().all(|s| s.gz), "{}", env.listing());
    let names: Vec<_> = fs::read_dir(env.path("mnt/out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !names.iter().any(|n| n.to_string_lossy().ends_with(".tmp")),
        "{names:?}"
    );
    assert_eq!(env.collated_sha("mnt/out/current"), sha(&input));
}

/// Counts the fdatasync, fsync and write calls of a logpipe run under
/// strace.
fn count_syncs(env: &TestEnv, args: &[&str], lines: u64, gap: Duration) -> (u64, u64, u64) {
    ensure_program("strace", "strace");
    let log = env.path("strace.log");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-c", "-e", "trace=fsync,fdatasync,write", "-o"])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_logpipe"))
        .args(args)
        .current_dir(env.path(""))
        .env("TZ", "UTC");
    let run = env.run_fed(cmd, move |stdin| {
        for i in 0..lines {
            stdin.write_all(&numbered(i, 1)).unwrap();
            thread::sleep(gap);
        }
    });
    assert!(run.status.success(), "{run:?}");
    let summary = fs::read_to_string(&log).unwrap();
    let calls = |name: &str| -> u64 {
        summary
            .lines()
            .find(|l| l.split_whitespace().last() == Some(name))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or(0)
    };
    (calls("fdatasync"), calls("fsync"), calls("write"))
}

/// `--fsync` calls what it says: `rotate` syncs each segment, its state
/// file and its directory, and the active file at exit; `always` syncs
/// after every write; `1s` about once a second while data comes in.
#[test]
fn fsync_policies_call_what_they_say() {
    let env = TestEnv::new();
    // 40 lines of 48 bytes, 25 ms apart, 16 per segment: 2 rotations.
    let base = ["--compress", "none", "--size", "768", "out/"];
    let with = |policy: &'static str| -> Vec<&str> {
        ["--fsync", policy].into_iter().chain(base).collect()
    };
    let gap = Duration::from_millis(25);

    let (data, full, _) = count_syncs(&env, &with("rotate"), 40, gap);
    // Per rotation, by the worker: the segment's data and the state
    // file's, then the directory (fsync); and the active file once at exit.
    assert_eq!((data, full), (2 * 2 + 1, 2), "rotate");

    let env = TestEnv::new();
    let (data, _, writes) = count_syncs(&env, &with("always"), 40, gap);
    // One after every write to the active file (all writes but the lock
    // file's pid; the state file is written with pwrite), and the worker's
    // 2 per rotation: the segment and the state file.
    assert_eq!(
        data,
        (writes - 1) + 2 * 2,
        "always: {data} fdatasync calls for {writes} writes"
    );
    assert!(writes > 20, "always: only {writes} writes");

    let env = TestEnv::new();
    // 30 lines 100 ms apart (3 s), one segment: no rotation.
    let periodic: Vec<&str> = ["--fsync", "1s", "--compress", "none", "out/"].into();
    let (data, _, _) = count_syncs(&env, &periodic, 30, Duration::from_millis(100));
    assert!(
        (2..=6).contains(&data),
        "1s: {data} fdatasync calls in about 3 s"
    );
}

/// `--tee` copies the input to standard output; a slow reader of the copy
/// costs no file output, and a closed one stops the copy with one warning
/// while the sink goes on (SIGPIPE does not kill logpipe).
#[test]
fn tee_survives_slow_and_closed_readers() {
    let input = numbered(0, 50_000); // 2.4 MB: more than the pipes hold
    // A slow reader: everything arrives, in both places.
    let env = TestEnv::new();
    let mut cmd = env.cmd(&["--tee", "--compress", "none", "--size", "256K", "out/"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let (_fed, feeder) = feed(child.stdin.take().unwrap(), input.clone());
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut copy = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            thread::sleep(Duration::from_millis(2));
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => return copy,
                Ok(n) => copy.extend_from_slice(&buf[..n]),
            }
        }
    });
    feeder.join().unwrap();
    let run = env.finish(child, "logpipe --tee with a slow reader");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert!(
        reader.join().unwrap() == input,
        "the copy on stdout differs"
    );
    assert_eq!(env.collated_sha("out/current"), sha(&input));

    // A reader that is gone from the start.
    let env = TestEnv::new();
    let mut cmd = env.cmd(&["--tee", "--compress", "none", "--size", "256K", "out/"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let (_fed, feeder) = feed(child.stdin.take().unwrap(), input.clone());
    feeder.join().unwrap();
    let run = env.finish(child, "logpipe --tee with a closed stdout");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        run.stderr,
        "logpipe: warning: --tee stopped: unable to write standard output: Broken pipe (os error 32)\n"
    );
    assert_eq!(env.collated_sha("out/current"), sha(&input));
}

/// `--on-full drop`: input read while writes fail is discarded and counted
/// exactly, the producer never waits, and once writes work again one
/// marker line says how much was dropped, before what follows.
#[test]
fn on_full_drop_counts_exactly_and_never_blocks() {
    let Some((env, _disk, filler)) =
        nearly_full_disk("on_full_drop_counts_exactly_and_never_blocks")
    else {
        return;
    };
    let during = numbered(0, 60_000); // 2.9 MB, far more than the room left
    let after = numbered(60_000, 1000);
    let mut child = env.spawn(&[
        "--on-full",
        "drop",
        "--compress",
        "none",
        "--size",
        "16M",
        "mnt/out/",
    ]);
    let stderr = collect_stderr(&mut child);
    let stdin = child.stdin.take().unwrap();
    let stdin_fd = std::os::fd::AsRawFd::as_raw_fd(&stdin);
    let input = during.clone();
    let producer = thread::spawn(move || {
        let mut stdin = stdin;
        stdin.write_all(&input).unwrap();
        stdin
    });
    env.wait_until("the drop", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("dropping input")
    });
    // The producer is never held back: all of it goes while the disk is
    // still full, and logpipe reads (and drops) all of it.
    env.wait_until(
        "the producer done and the pipe drained",
        Duration::from_secs(30),
        || producer.is_finished() && pipe_empty(stdin_fd),
    );
    let mut stdin = producer.join().unwrap();
    thread::sleep(Duration::from_millis(300));
    fs::remove_file(&filler).unwrap();
    stdin.write_all(&after).unwrap();
    drop(stdin);
    let run = env.finish(child, "logpipe --on-full drop on a full disk");
    assert!(run.status.success(), "{run:?}");

    let output = fs::read(env.path("mnt/out/current")).unwrap();
    let marker_at = find(&output, b"logpipe: dropped ").expect("a marker line");
    let marker_end = marker_at
        + output[marker_at..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap()
        + 1;
    let marker = String::from_utf8(output[marker_at..marker_end].to_vec()).unwrap();
    let (before, rest) = (&output[..marker_at], &output[marker_end..]);
    assert!(
        rest == after.as_slice(),
        "what followed the marker is not the later input"
    );
    // Before the marker: the start of the input, and if the disk filled up
    // inside a line, that line's beginning closed with a newline.
    let kept = if during.starts_with(before) {
        before
    } else {
        &before[..before.len() - 1]
    };
    assert!(
        during.starts_with(kept),
        "what preceded the marker is not the start of the input"
    );
    let dropped = &during[kept.len()..];
    let lines = dropped.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(
        marker,
        format!(
            "logpipe: dropped {lines} lines ({} bytes) while mnt/out/current was not writable\n",
            dropped.len()
        )
    );
    assert!(lines > 10_000, "only {lines} lines dropped");
    let stderr = stderr.lock().unwrap().clone();
    assert!(
        stderr.starts_with(
            "logpipe: warning: dropping input: unable to write mnt/out/current: No space left on device"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "logpipe: info: writing again; dropped {lines} lines"
        )),
        "{stderr}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether nothing is left unread in the pipe whose write end is `fd`.
fn pipe_empty(fd: std::os::fd::RawFd) -> bool {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int into `n`, which we own.
    unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) == 0 && n == 0 }
}

/// The target directory removed while logpipe runs: it is made again,
/// with an active file holding everything written so far, and logging
/// goes on; nothing is lost.
#[test]
fn a_removed_directory_is_made_again_without_loss() {
    let env = TestEnv::new();
    let mut child = env.spawn(&["--compress", "none", "logs/out/"]);
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let timeout = Duration::from_secs(30);
    let first = numbered(0, 100);
    stdin.write_all(&first).unwrap();
    env.wait_until("the first lines", timeout, || {
        fs::read(env.path("logs/out/current")).is_ok_and(|b| b == first)
    });
    fs::remove_dir_all(env.path("logs")).unwrap();
    let second = numbered(100, 100);
    stdin.write_all(&second).unwrap();
    let all = [&first[..], &second].concat();
    env.wait_until("the directory made again", timeout, || {
        fs::read(env.path("logs/out/current")).is_ok_and(|b| b == all)
    });
    let third = numbered(200, 100);
    stdin.write_all(&third).unwrap();
    drop(stdin);
    let run = env.finish(child, "logpipe whose directory was removed");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(env.collated_sha("logs/out/current"), sha(&numbered(0, 300)));
    let stderr = stderr.lock().unwrap().clone();
    assert_eq!(
        stderr,
        format!(
            "logpipe: info: directory logs/out/ was removed while in use; made it again, and locked it\n\
         logpipe: info: logs/out/current was removed while in use; made it again with the {} bytes it held\n",
            all.len()
        )
    );
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The target directory made unwritable under a running logpipe (made
/// immutable, since root ignores permission bits): the
/// next rotation pauses without spinning (CPU near zero), and everything
/// resumes without loss once it is writable again.
#[test]
fn a_read_only_directory_pauses_without_spinning() {
    if !root_or_skip("a_read_only_directory_pauses_without_spinning") {
        return;
    }
    let env = TestEnv::new();
    let mut child = env.spawn(&["--compress", "none", "--size", "16K", "out/"]);
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let first = numbered(0, 100);
    stdin.write_all(&first).unwrap();
    env.wait_until("the first lines", Duration::from_secs(30), || {
        fs::read(env.path("out/current")).is_ok_and(|b| b == first)
    });
    let read_only = Immutable::set(&env.path("out"));
    // Enough for a rotation, which needs to write in the directory.
    let second = numbered(100, 1000);
    stdin.write_all(&second).unwrap();
    env.wait_until("the pause", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("pausing")
    });
    let before = cpu_ticks(child.id());
    thread::sleep(Duration::from_secs(3));
    let spent = cpu_ticks(child.id()) - before;
    // Clock ticks are 1/100 s: at most 0.1 s of CPU in 3 s of pause.
    assert!(spent <= 10, "{spent} ticks of CPU while paused");
    drop(read_only);
    drop(stdin);
    let run = env.finish(child, "logpipe in a read-only directory");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        env.collated_sha("out/current"),
        sha(&[first, second].concat())
    );
    let stderr = stderr.lock().unwrap().clone();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(
            "logpipe: warning: pausing: unable to write out/current.state: Operation not permitted"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("logpipe: info: resumed writing out/current after "),
        "{stderr}"
    );
}

/// A bind mount, unmounted when dropped.
struct Immutable(PathBuf);

impl Immutable {
    /// Makes the directory `dir` immutable (`chattr +i`): no name can be
    /// added, removed or renamed in it, by root either, through any
    /// descriptor. (A read-only bind mount over the path would not reach
    /// the directory descriptor logpipe opened at start, and a file system
    /// with a file open for writing cannot be remounted read-only.)
    fn set(dir: &Path) -> Immutable {
        ensure_program("chattr", "e2fsprogs");
        let status = Command::new("chattr").arg("+i").arg(dir).status().unwrap();
        assert!(
            status.success(),
            "chattr +i {}: {status} (the test directory must be on a file system with attributes, such as ext4)",
            dir.display()
        );
        Immutable(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// The directory removed just before a rotation (no time for the
/// once-a-second check): the rotation makes it again first, nothing hangs
/// and nothing is lost.
#[test]
fn a_directory_removed_just_before_a_rotation_is_made_again() {
    let env = TestEnv::new();
    let mut child = env.spawn(&["--compress", "none", "--size", "8K", "logs/out/"]);
    let mut stdin = child.stdin.take().unwrap();
    let first = numbered(0, 100);
    stdin.write_all(&first).unwrap();
    env.wait_until("the first lines", Duration::from_secs(30), || {
        fs::read(env.path("logs/out/current")).is_ok_and(|b| b == first)
    });
    fs::remove_dir_all(env.path("logs")).unwrap();
    // At once, enough for several rotations.
    let second = numbered(100, 1000);
    stdin.write_all(&second).unwrap();
    drop(stdin);
    let run = env.finish(child, "logpipe whose directory went just before a rotation");
    assert!(run.status.success(), "{run:?}");
    assert!(env.segments("logs/out/current").len() > 3);
    assert_eq!(
        env.collated_sha("logs/out/current"),
        sha(&numbered(0, 1100))
    );
}

/// `--tee` with a reader that never reads: SIGTERM still ends logpipe
/// (the copy gives up with a warning), and the file gets everything that
/// was waiting, as with any SIGTERM.
#[test]
fn sigterm_ends_a_tee_blocked_on_a_stalled_reader() {
    let env = TestEnv::new();
    let mut cmd = env.cmd(&["--tee", "--compress", "none", "out/"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _stalled = child.stdout.take();
    let mut stdin = child.stdin.take().unwrap();
    // More than the stdout pipe holds, so the copy must wait for room.
    let input = numbered(0, 10_000);
    stdin.write_all(&input).unwrap();
    // The first read reaches the file; then the copy waits for room that
    // never comes, and logpipe reads no more (the rest waits in the pipe).
    env.wait_until(
        "the first read in the file",
        Duration::from_secs(30),
        || env.bytes_on_disk(&["out"]) > 0,
    );
    // SAFETY: kill only sends a signal to our own child, by its pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let run = env.finish(child, "logpipe --tee with a stalled reader, then SIGTERM");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        run.stderr,
        "logpipe: warning: --tee stopped: stopping, and standard output is not being read\n"
    );
    assert!(fs::read(env.path("out/current")).unwrap() == input);
    drop(stdin);
}

/// `--on-full drop` with a rotation by the clock that fails (a read-only
/// directory): reported once, retried about once a second without
/// spinning, done once the directory is writable; nothing lost.
#[test]
fn a_failing_clock_rotation_in_drop_mode_does_not_spin() {
    if !root_or_skip("a_failing_clock_rotation_in_drop_mode_does_not_spin") {
        return;
    }
    let env = TestEnv::new();
    let mut child = env.spawn(&[
        "--on-full",
        "drop",
        "--every",
        "1s",
        "--utc",
        "--compress",
        "none",
        "out/",
    ]);
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let out = env.path("out");
    env.wait_until("the active file", Duration::from_secs(30), || {
        out.join("current").exists()
    });
    let read_only = Immutable::set(&out);
    let line = numbered(0, 1);
    stdin.write_all(&line).unwrap();
    env.wait_until("the failed rotation", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("warning")
    });
    let before = cpu_ticks(child.id());
    thread::sleep(Duration::from_secs(3));
    let spent = cpu_ticks(child.id()) - before;
    assert!(
        spent <= 10,
        "{spent} ticks of CPU while the rotation kept failing"
    );
    drop(read_only);
    env.wait_until("the rotation", Duration::from_secs(30), || {
        !env.segments("out/current").is_empty()
    });
    drop(stdin);
    let run = env.finish(child, "logpipe --on-full drop in a read-only directory");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(env.collated("out/current"), line);
    let stderr = stderr.lock().unwrap().clone();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "logpipe: warning: unable to write out/current.state: Operation not permitted"
        ),
        "{stderr}"
    );
}

/// `--on-full drop` with the disk still full at end of input: the file
/// may end inside a line (the closing newline cannot be written either),
/// as the README says; the next start closes that line before writing,
/// so no line ever fuses with the next.
#[test]
fn drop_mode_full_at_the_end_leaves_the_line_to_the_next_start() {
    let Some((env, _disk, filler)) =
        nearly_full_disk("drop_mode_full_at_the_end_leaves_the_line_to_the_next_start")
    else {
        return;
    };
    // One long line at the end, far bigger than the room left: it cannot
    // all be written, nor its newline.
    let mut input = numbered(0, 10);
    input.extend(std::iter::repeat_n(b'x', 1 << 20));
    input.push(b'\n');
    let args = ["--on-full", "drop", "--compress", "none", "mnt/out/"];
    let first = env.run(&args, &input);
    assert!(first.status.success(), "{first:?}");
    // (The long line started a segment of its own: it is longer than the
    // read buffer.)
    let left = env.collated("mnt/out/current");
    assert!(
        !left.ends_with(b"\n"),
        "the disk filled inside the long line"
    );
    assert!(input.starts_with(&left));
    assert!(
        first
            .stderr
            .contains("the last line stays unfinished, and the next start ends it with a newline"),
        "{}",
        first.stderr
    );
    fs::remove_file(&filler).unwrap();
    let second = env.run(&args, b"next\n");
    assert!(second.status.success(), "{second:?}");
    // The count could not go into the log either: stderr has it.
    let dropped = input.len() - left.len();
    assert!(
        first.stderr.contains(&format!(
            "logpipe: warning: dropped 1 lines ({dropped} bytes) while mnt/out/current was not writable, and could not say so in it\n"
        )),
        "{}",
        first.stderr
    );
    let after = env.collated("mnt/out/current");
    assert_eq!(
        String::from_utf8_lossy(&after[left.len()..]),
        "\nnext\n",
        "the line closed once, then the new input"
    );
}
