//! Faults and signals: a real full disk, SIGTERM and SIGINT with a producer
//! that keeps writing, SIGHUP after the active file was moved away.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{TestEnv, ensure_program, require_root, sha};

/// Numbered lines of 46 bytes, `count` of them from `first`.
pub(crate) fn numbered(first: u64, count: u64) -> Vec<u8> {
    (first..first + count)
        .flat_map(|i| format!("line {i:012} padding padding padding pad\n").into_bytes())
        .collect()
}

/// Why the tests that make a real full disk need root.
pub(crate) const TMPFS: &str = "it mounts a small tmpfs to make a real full disk";
/// Why the tests that make the target directory read-only need root.
const IMMUTABLE: &str =
    "it makes the target directory immutable (chattr +i), which root's writes cannot pass either";

/// A tmpfs of `size` mounted at `dir` for as long as it lives.
pub(crate) struct Tmpfs(PathBuf);

impl Tmpfs {
    pub(crate) fn mount(dir: &Path, size: &str) -> Tmpfs {
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
/// 64 KiB by `mnt/filler`. Fails the test unless it runs as root.
pub(crate) fn nearly_full_disk(test: &str) -> (TestEnv, Tmpfs, PathBuf) {
    require_root(test, TMPFS);
    let env = TestEnv::new();
    let disk = Tmpfs::mount(&env.path("mnt"), "4m");
    let filler = fill(&env.path("mnt"), 64 << 10);
    (env, disk, filler)
}

/// Fills the file system holding `dir` but for about `leave` bytes, with
/// a file `dir/filler`, and returns its path.
pub(crate) fn fill(dir: &Path, leave: u64) -> PathBuf {
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
pub(crate) fn collect_stderr(child: &mut std::process::Child) -> Arc<Mutex<String>> {
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
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn a_full_disk_pauses_and_resumes_without_loss() {
    let (env, _disk, filler) = nearly_full_disk("a_full_disk_pauses_and_resumes_without_loss");
    let input = numbered(0, 60_000); // 2.9 MB: more than the free space plus the pipe
    let mut child = env.spawn(&["--compress", "none", "--size", "1M", "mnt/out/"]);
    let stderr = collect_stderr(&mut child);
    let stdin = child.stdin.take().unwrap();
    // A second descriptor of the pipe, to look into it; closed before the
    // end of input is awaited.
    let probe = stdin.as_fd().try_clone_to_owned().unwrap();
    let (fed, feeder) = feed(stdin, input.clone());

    env.wait_until("the pause", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("pausing")
    });
    // While paused logpipe reads nothing: the pipe fills up and the
    // producer is held back...
    env.wait_until("a full pipe", Duration::from_secs(30), || {
        pipe_full(probe.as_raw_fd())
    });
    let in_pipe = pipe_len(probe.as_raw_fd());
    let fed_before = fed.load(Ordering::Relaxed);
    assert!(!feeder.is_finished() && fed_before < input.len() as u64);
    // ...and what it took from the pipe is on disk but for at most its
    // read buffer (the feeder may be part-way into one 4 KiB write).
    let taken = fed_before + 4096 - in_pipe;
    let on_disk = disk_bytes(&env.path("mnt/out/current"));
    assert!(
        taken <= on_disk + READ_BUFFER,
        "logpipe took {taken} bytes from the pipe while paused, with {on_disk} on disk"
    );

    fs::remove_file(&filler).unwrap();
    feeder.join().unwrap();
    drop(probe);
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

/// logpipe's read buffer: the most input it holds that is not on disk.
const READ_BUFFER: u64 = 256 << 10;

/// Bytes in the active file `active` and its segments.
fn disk_bytes(active: &Path) -> u64 {
    let segments: u64 = crate::util::segments_in(active)
        .iter()
        .map(|s| s.len())
        .sum();
    fs::metadata(active).map_or(0, |m| m.len()) + segments
}

/// Bytes waiting in the pipe whose write end is `fd`.
fn pipe_len(fd: std::os::fd::RawFd) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int into `n`, which we own.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as u64
}

/// Whether the pipe whose write end is `fd` is full: it holds more than
/// its capacity less one page, so every one of its page slots is taken
/// and a write of a page (the feeder's 4 KiB) must wait.
fn pipe_full(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: F_GETPIPE_SZ takes no argument and touches no memory.
    let capacity = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    assert!(
        capacity > 0,
        "F_GETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    pipe_len(fd) > capacity as u64 - 4096
}

/// SIGTERM while writes fail ends logpipe at once with exit 1 and one line
/// saying how many bytes were not written; what was written is intact.
#[test]
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn sigterm_while_paused_exits_1_saying_what_was_not_written() {
    let (env, _disk, _filler) =
        nearly_full_disk("sigterm_while_paused_exits_1_saying_what_was_not_written");
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
/// before the last sync and the wait for the worker: a producer that goes
/// on writing gets EPIPE instead of having its lines accepted into a pipe
/// that nobody will read. (It used to keep the pipe open while compression
/// ran and drop what was written meanwhile.) Here an `--on-rotate` hook
/// that waits for the test keeps logpipe waiting for its worker for as
/// long as the test likes, and the producer writes again only once
/// logpipe's standard input is /dev/null: nothing races with the signal.
#[test]
fn writes_after_sigterm_are_kept_or_refused_never_dropped() {
    let env = TestEnv::new();
    let (hook_started, release) = (env.path("hook-started"), env.path("release"));
    // The hook first lets go of the standard input it inherits from
    // logpipe (the producer's pipe), which would otherwise keep the pipe
    // open for as long as it runs.
    let hook = format!(
        "exec </dev/null; touch '{}'; while [ ! -e '{}' ]; do sleep 0.01; done; :",
        hook_started.display(),
        release.display()
    );
    let mut child = env.spawn(&["--on-rotate", &hook, "out/"]);
    let pid = child.id() as libc::pid_t;
    let send = |sig| {
        // SAFETY: kill only sends a signal to our own child, by its pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    env.wait_until("the first line", Duration::from_secs(30), || {
        fs::read(env.path("out/current")).is_ok_and(|b| b == b"first\n")
    });
    send(libc::SIGUSR1);
    env.wait_until("the hook", Duration::from_secs(30), || {
        hook_started.exists()
    });
    let before = numbered(0, 1000);
    stdin.write_all(&before).unwrap();
    env.wait_until(
        "the lines before the signal",
        Duration::from_secs(30),
        || fs::read(env.path("out/current")).is_ok_and(|b| b == before),
    );

    send(libc::SIGTERM);
    // logpipe stops reading and puts /dev/null in place of its input...
    let input = format!("/proc/{pid}/fd/0");
    env.wait_until("the input closed", Duration::from_secs(30), || {
        fs::read_link(&input).is_ok_and(|to| to == Path::new("/dev/null"))
    });
    // ...while the hook still holds it: a write now must be refused.
    let refused = stdin.write_all(&numbered(1000, 1));
    fs::write(&release, "").unwrap();
    let run = env.finish(child, "logpipe, SIGTERM, a write after it");
    assert!(run.status.success(), "{run:?}");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
        "a write after logpipe closed its input: {refused:?}"
    );
    let expected = [&b"first\n"[..], &before].concat();
    assert!(
        env.collated("out/current") == expected,
        "the output is not exactly the input written before the signal"
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
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn compression_on_a_full_disk_is_retried_without_loss() {
    require_root("compression_on_a_full_disk_is_retried_without_loss", TMPFS);
    full_disk_compression("gzip", "1");
}

/// The same with zstd on two compression threads: the failures of both
/// are retried, and the hooks still run once each, in segment order.
#[test]
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn zstd_on_two_threads_on_a_full_disk_is_retried_in_order() {
    require_root(
        "zstd_on_two_threads_on_a_full_disk_is_retried_in_order",
        TMPFS,
    );
    full_disk_compression("zstd", "2");
}

fn full_disk_compression(method: &str, threads: &str) {
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
    let hooks = env.path("hooks");
    let hook = format!("echo >> {}", hooks.display());
    let args = [
        "--compress",
        method,
        "--compress-threads",
        threads,
        "--on-rotate",
        &hook,
        "mnt/out/",
    ];
    let mut child = env.spawn(&args);
    let stderr = collect_stderr(&mut child);
    drop(child.stdin.take());
    // Two failed attempts, the second a retry after the first was cleaned
    // up.
    env.wait_until("a retried compression", Duration::from_secs(30), || {
        stderr.lock().unwrap().matches("unable to compress").count() >= 2
    });
    let leftovers: Vec<String> = fs::read_dir(env.path("mnt/out"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    // At most the ones being written right now.
    assert!(leftovers.len() <= threads.parse().unwrap(), "{leftovers:?}");
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
    let compressed = |s: &crate::util::Seg| if method == "zstd" { s.zst } else { s.gz };
    assert!(segments.iter().all(compressed), "{}", env.listing());
    crate::util::assert_hooked_in_order(&hooks, &segments, method);
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

/// The calls a traced logpipe made, by call and path (relative to the
/// test directory): `("fdatasync", "out/current")`.
struct Calls(BTreeMap<(String, String), u64>);

impl Calls {
    /// Reads the trace that [`traced`] left in `env`.
    fn read(env: &TestEnv) -> Calls {
        let dir = format!(
            "{}/",
            env.path("").display().to_string().trim_end_matches('/')
        );
        let mut calls = BTreeMap::new();
        for line in trace_lines(env).into_iter().flatten() {
            // `fdatasync(4</tmp/logpipe-test-x/out/current>) = 0`
            let Some((call, rest)) = line.split_once('(') else {
                continue;
            };
            let path = rest
                .split_once('<')
                .and_then(|(_, rest)| rest.split_once('>'))
                .map_or("", |(path, _)| path);
            let path = path.strip_prefix(&dir).unwrap_or(path);
            *calls
                .entry((call.to_string(), path.to_string()))
                .or_default() += 1;
        }
        Calls(calls)
    }

    /// How many `call`s there were on `path`.
    fn on(&self, call: &str, path: &str) -> u64 {
        let key = (call.to_string(), path.to_string());
        self.0.get(&key).copied().unwrap_or(0)
    }

    /// How many `call`s there were, on any path.
    fn total(&self, call: &str) -> u64 {
        self.0
            .iter()
            .filter(|((c, _), _)| c == call)
            .map(|(_, n)| n)
            .sum()
    }

    /// Checks what the worker syncs for `--compress none`: each finished
    /// segment once, and for each batch of them the state file and the
    /// directory; returns the number of batches.
    fn check_worker(&self, env: &TestEnv) -> u64 {
        let segments = env.segments("out/current");
        assert_eq!(segments.len(), 2, "{}", env.listing());
        for seg in &segments {
            let name = seg.path.file_name().unwrap().to_string_lossy();
            let path = format!("out/{name}");
            assert_eq!(self.on("fdatasync", &path), 1, "{path}: {:?}", self.0);
        }
        let batches = self.on("fsync", "out");
        assert!((1..=2).contains(&batches), "{:?}", self.0);
        assert_eq!(self.on("fdatasync", "out/.current.state"), batches);
        assert_eq!(self.total("fsync"), batches, "{:?}", self.0);
        batches
    }
}

/// Runs logpipe with `args` under strace, feeding it `lines` numbered
/// lines one at a time, each once the one before is on disk, so that each
/// is one read and one write; then, before the end of input, waits until
/// `before_end` holds of the trace. Returns the calls it made.
fn syncs_of(
    env: &TestEnv,
    args: &[&str],
    lines: u64,
    before_end: impl Fn(&Calls) -> bool,
) -> Calls {
    let mut child = env.spawn_cmd(traced(env, args, "fsync,fdatasync,write"));
    let mut stdin = child.stdin.take().unwrap();
    let mut on_disk = 0;
    for i in 0..lines {
        let line = numbered(i, 1);
        stdin.write_all(&line).unwrap();
        on_disk += line.len() as u64;
        env.wait_until("the line on disk", Duration::from_secs(30), || {
            env.bytes_on_disk(&["out"]) == on_disk
        });
    }
    env.wait_until("the syncs awaited", Duration::from_secs(30), || {
        before_end(&Calls::read(env))
    });
    drop(stdin);
    let run = env.finish(child, &format!("logpipe {args:?} under strace"));
    assert!(run.status.success(), "{run:?}");
    assert_eq!(env.collated_sha("out/current"), sha(&numbered(0, lines)));
    Calls::read(env)
}

/// `--fsync` calls what it says: `rotate` syncs each segment, and the
/// state file and the directory with each batch of segments, and the
/// active file only at exit; `always` syncs after every write; `1s` syncs
/// data that waited that long even though no more input comes. Counted in
/// an strace of the run, whatever the machine's speed: lines are fed one
/// by one, each once the one before is on disk, and the worker's batches
/// are counted, not assumed.
#[test]
#[ignore = "installs strace with apt-get"]
fn fsync_policies_call_what_they_say() {
    // 40 lines of 46 bytes, 16 per segment: 2 rotations.
    let base = ["--compress", "none", "--size", "768", "out/"];
    let with = |policy: &'static str| -> Vec<&str> {
        ["--fsync", policy].into_iter().chain(base).collect()
    };

    let env = TestEnv::new();
    let calls = syncs_of(&env, &with("rotate"), 40, |_| true);
    let batches = calls.check_worker(&env);
    // The active file once, at exit; nothing else.
    assert_eq!(
        calls.on("fdatasync", "out/current"),
        1,
        "rotate: {:?}",
        calls.0
    );
    assert_eq!(
        calls.total("fdatasync"),
        2 + batches + 1,
        "rotate: {:?}",
        calls.0
    );

    let env = TestEnv::new();
    let calls = syncs_of(&env, &with("always"), 40, |_| true);
    let batches = calls.check_worker(&env);
    // One write per line, each followed by a sync of the active file.
    let writes = calls.on("write", "out/current");
    assert_eq!(writes, 40, "always: {:?}", calls.0);
    assert_eq!(calls.on("fdatasync", "out/current"), writes, "always");
    assert_eq!(
        calls.total("fdatasync"),
        40 + 2 + batches,
        "always: {:?}",
        calls.0
    );

    let env = TestEnv::new();
    // 30 lines, one segment: no rotation. Input stays open until a sync
    // of the active file is seen: only the period can have caused it.
    let periodic: Vec<&str> = ["--fsync", "1s", "--compress", "none", "out/"].into();
    let started = Instant::now();
    let calls = syncs_of(&env, &periodic, 30, |calls| {
        calls.on("fdatasync", "out/current") >= 1
    });
    let ran_for = started.elapsed();
    // A sync at most once a second while logpipe ran (a bound that a slow
    // machine only loosens), not one per write.
    let syncs = calls.on("fdatasync", "out/current");
    assert!(
        syncs <= 1 + ran_for.as_secs(),
        "1s: {syncs} syncs of the active file in {ran_for:?}"
    );
    assert_eq!(calls.total("fdatasync"), syncs, "1s: {:?}", calls.0);
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
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn on_full_drop_counts_exactly_and_never_blocks() {
    let (env, _disk, filler) = nearly_full_disk("on_full_drop_counts_exactly_and_never_blocks");
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
    // logpipe may still be dropping its last read when space comes back;
    // then that part is written after the marker, and the marker counts
    // only what was dropped. The checks below allow for that.
    let mut stdin = producer.join().unwrap();
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
    // After the marker: the end of the input read while the disk was full
    // (if any of it was not dropped after all), then the later input.
    let late = rest
        .strip_suffix(after.as_slice())
        .expect("the later input does not end the output");
    assert!(
        during.ends_with(late),
        "what followed the marker is not the end of the earlier input"
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
    assert!(
        kept.len() + late.len() <= during.len(),
        "input written twice"
    );
    let dropped = &during[kept.len()..during.len() - late.len()];
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

/// logpipe with `args` under `strace -f -ff -y`, tracing `calls`: each
/// thread's calls go to `trace.<thread id>` in the test directory, one per
/// line, in order, descriptors shown with their paths.
fn traced(env: &TestEnv, args: &[&str], calls: &str) -> Command {
    ensure_program("strace", "strace");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-ff", "-qq", "-y", "-e"])
        .arg(format!("trace={calls}"))
        .arg("-o")
        .arg(env.path("trace"))
        .arg(env!("CARGO_BIN_EXE_logpipe"))
        .args(args)
        .current_dir(env.path(""))
        .env("TZ", "UTC");
    cmd
}

/// The lines [`traced`] wrote so far, one list per thread.
fn trace_lines(env: &TestEnv) -> Vec<Vec<String>> {
    let mut threads = Vec::new();
    for entry in fs::read_dir(env.path("")).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("trace.") {
            let text = fs::read_to_string(entry.path()).unwrap();
            threads.push(text.lines().map(str::to_string).collect());
        }
    }
    threads
}

/// The trace lines, of any thread, of calls that failed with `errno`.
fn failed_calls(env: &TestEnv, errno: &str) -> Vec<String> {
    let needle = format!(" = -1 {errno} ");
    trace_lines(env)
        .into_iter()
        .flatten()
        .filter(|line| line.contains(&needle))
        .collect()
}

/// For each stretch between two calls that failed with `errno`, in the one
/// thread that made them, the milliseconds it asked `poll` to wait and that
/// it then waited out (`= 0 (Timeout)`): how long logpipe slept between
/// two attempts, read from the arguments it passed, not from a clock.
fn waits_between_failures(env: &TestEnv, errno: &str) -> Vec<u64> {
    let needle = format!(" = -1 {errno} ");
    let threads: Vec<Vec<String>> = trace_lines(env)
        .into_iter()
        .filter(|lines| lines.iter().any(|l| l.contains(&needle)))
        .collect();
    assert_eq!(threads.len(), 1, "{errno} in several threads: {threads:?}");
    let mut waits = Vec::new();
    let mut since_failure: Option<u64> = None;
    for line in &threads[0] {
        if line.contains(&needle) {
            waits.extend(since_failure);
            since_failure = Some(0);
        } else if let (Some(waited), Some(ms)) = (since_failure.as_mut(), timed_out_poll(line)) {
            *waited += ms;
        }
    }
    waits
}

/// Checks that `stderr` holds exactly the pause, saying `why` the state
/// file could not be written, and the resumption.
fn said_paused_once(stderr: &str, why: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let pause = format!("logpipe: warning: pausing: unable to write out/.current.state: {why}");
    assert!(lines[0].starts_with(&pause), "{stderr}");
    assert!(
        lines[1].starts_with("logpipe: info: resumed writing out/current after "),
        "{stderr}"
    );
}

/// The timeout, in milliseconds, of a traced `poll(...)` or `ppoll(...)`
/// that timed out.
fn timed_out_poll(line: &str) -> Option<u64> {
    let (call, result) = line.rsplit_once(" = ")?;
    if !result.starts_with("0 (Timeout)") {
        return None;
    }
    if call.starts_with("poll(") {
        return call
            .strip_suffix(')')?
            .rsplit_once(", ")?
            .1
            .trim()
            .parse()
            .ok();
    }
    // ppoll([...], N, {tv_sec=S, tv_nsec=NS}, NULL, 8)
    let rest = call.strip_prefix("ppoll(")?;
    let secs: u64 = rest
        .split_once("tv_sec=")?
        .1
        .split([',', '}'])
        .next()?
        .trim()
        .parse()
        .ok()?;
    let nanos: u64 = rest
        .split_once("tv_nsec=")?
        .1
        .split([',', '}'])
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some(secs * 1000 + nanos / 1_000_000)
}

/// The target directory made unwritable under a running logpipe (made
/// immutable, since root ignores permission bits): the next rotation
/// pauses without spinning (it waits about a second before trying again,
/// as the arguments of its `poll` calls show), and everything resumes
/// without loss once it is writable again.
#[test]
#[ignore = "needs root: makes the target directory immutable (chattr +i); installs strace with apt-get"]
fn a_read_only_directory_pauses_without_spinning() {
    require_root("a_read_only_directory_pauses_without_spinning", IMMUTABLE);
    let env = TestEnv::new();
    let args = ["--compress", "none", "--size", "16K", "out/"];
    let mut child = env.spawn_cmd(traced(&env, &args, "openat,poll,ppoll"));
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
    env.wait_until("a second attempt", Duration::from_secs(30), || {
        failed_calls(&env, "EPERM").len() >= 2
    });
    drop(read_only);
    drop(stdin);
    let run = env.finish(child, "logpipe in a read-only directory");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        env.collated_sha("out/current"),
        sha(&[first, second].concat())
    );
    said_paused_once(&stderr.lock().unwrap(), "Operation not permitted");
    // Every failed attempt is the state file's open, and between two of
    // them logpipe waited (1 s, then 2 s, ...).
    let failed = failed_calls(&env, "EPERM");
    assert!(
        failed.iter().all(|l| l.contains("\".current.state\"")),
        "{failed:#?}"
    );
    let waits = waits_between_failures(&env, "EPERM");
    assert!(!waits.is_empty(), "{failed:#?}");
    assert!(
        waits.iter().all(|&ms| ms >= 900),
        "attempts without a wait of about a second between them: {waits:?} ms"
    );
}

/// The target directory made unwritable under a running logpipe by its
/// permission bits (root ignores them, so as root logpipe runs as nobody):
/// the next rotation pauses, saying so once, and everything resumes
/// without loss once the directory is writable again. Needs no root, so
/// the pause runs in every `cargo test`; the tests above add a real full
/// disk and the wait between attempts.
#[test]
fn an_unwritable_directory_pauses_and_resumes_without_loss() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new();
    let mut cmd = env.cmd(&["--compress", "none", "--size", "16K", "out/"]);
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        fs::set_permissions(env.path(""), fs::Permissions::from_mode(0o777)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    let mut child = env.spawn_cmd(cmd);
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let first = numbered(0, 100);
    stdin.write_all(&first).unwrap();
    env.wait_until("the first lines", Duration::from_secs(30), || {
        fs::read(env.path("out/current")).is_ok_and(|b| b == first)
    });
    let out = env.path("out");
    let mode = |bits| fs::set_permissions(&out, fs::Permissions::from_mode(bits)).unwrap();
    mode(0o555);
    // Enough for a rotation, which needs to write in the directory.
    let second = numbered(100, 1000);
    stdin.write_all(&second).unwrap();
    env.wait_until("the pause", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("pausing")
    });
    mode(0o755);
    drop(stdin);
    let run = env.finish(child, "logpipe in an unwritable directory");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        env.collated_sha("out/current"),
        sha(&[first, second].concat())
    );
    said_paused_once(&stderr.lock().unwrap(), "Permission denied");
}

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
/// spinning (a wait of a second between attempts, as the arguments of its
/// `poll` calls show), done once the directory is writable; nothing lost.
#[test]
#[ignore = "needs root: makes the target directory immutable (chattr +i); installs strace with apt-get"]
fn a_failing_clock_rotation_in_drop_mode_does_not_spin() {
    require_root(
        "a_failing_clock_rotation_in_drop_mode_does_not_spin",
        IMMUTABLE,
    );
    let env = TestEnv::new();
    let args = [
        "--on-full",
        "drop",
        "--every",
        "1s",
        "--utc",
        "--compress",
        "none",
        "out/",
    ];
    let mut child = env.spawn_cmd(traced(&env, &args, "openat,poll,ppoll"));
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
    env.wait_until("three attempts", Duration::from_secs(30), || {
        failed_calls(&env, "EPERM").len() >= 3
    });
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
            "logpipe: warning: unable to write out/.current.state: Operation not permitted"
        ),
        "{stderr}"
    );
    let failed = failed_calls(&env, "EPERM");
    assert!(
        failed.iter().all(|l| l.contains("\".current.state\"")),
        "{failed:#?}"
    );
    let waits = waits_between_failures(&env, "EPERM");
    assert!(waits.len() >= 2, "{failed:#?}");
    assert!(
        waits.iter().all(|&ms| ms >= 900),
        "attempts without a wait of about a second between them: {waits:?} ms"
    );
}

/// `--on-full drop` with the disk still full at end of input: the file
/// may end inside a line (the closing newline cannot be written either),
/// as the README says; the next start closes that line before writing,
/// so no line ever fuses with the next.
#[test]
#[ignore = "needs root: mounts a small tmpfs"]
fn drop_mode_full_at_the_end_leaves_the_line_to_the_next_start() {
    let (env, _disk, filler) =
        nearly_full_disk("drop_mode_full_at_the_end_leaves_the_line_to_the_next_start");
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

/// Standard error on the very disk that fills up: the diagnostics that
/// cannot be written are dropped, never fatal, and logpipe pauses and
/// resumes without loss as with a working stderr.
#[test]
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn stderr_on_the_full_disk_loses_no_line() {
    let (env, _disk, filler) = nearly_full_disk("stderr_on_the_full_disk_loses_no_line");
    let errors = fs::File::create(env.path("mnt/logpipe.err")).unwrap();
    let input = numbered(0, 60_000); // more than the room, plus the pipe
    let mut cmd = env.cmd(&["--compress", "none", "mnt/out/"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(errors);
    let mut child = cmd.spawn().unwrap();
    env.wait_until("logpipe started", Duration::from_secs(30), || {
        env.path("mnt/out/current").exists()
    });
    // Then the last of the room goes too, so that the first diagnostic
    // fails.
    let mut rest = fs::File::create(env.path("mnt/rest")).unwrap();
    while rest.write_all(&[0u8; 512]).is_ok() {}
    let stdin = child.stdin.take().unwrap();
    let probe = stdin.as_fd().try_clone_to_owned().unwrap();
    let (_, feeder) = feed(stdin, input.clone());
    // Paused (its "pausing" line lost to the full disk): logpipe reads
    // nothing more, and the pipe fills up.
    env.wait_until("a full pipe", Duration::from_secs(30), || {
        pipe_full(probe.as_raw_fd())
    });
    drop(rest);
    fs::remove_file(env.path("mnt/rest")).unwrap();
    fs::remove_file(&filler).unwrap();
    feeder.join().unwrap();
    drop(probe);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(env.collated_sha("mnt/out/current"), sha(&input));
    // The pause was said to a full disk, and lost; the resumption, with
    // room again, was not.
    let said = fs::read_to_string(env.path("mnt/logpipe.err")).unwrap();
    assert!(
        !said.contains("pausing") && said.starts_with("logpipe: info: resumed writing"),
        "{said}"
    );
}
