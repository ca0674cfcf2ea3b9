//! `--read` and `--follow` on the real binary: every line once, in the
//! order written, across rotations, compression, restarts of the reader,
//! and with the writer rolling over a thousand times a second.

use std::fs::{self, File};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::corpus::Corpus;
use crate::util::{TestEnv, sha};

/// Lines `line N` for N in `first..first + count`, padded to 24 bytes.
fn numbered(first: u64, count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * 24);
    for n in first..first + count {
        writeln!(out, "line {n:>12} .....").unwrap();
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Runs `logpipe ARGS` (a reader) to its end and returns its exit status,
/// standard output and standard error.
fn read(env: &TestEnv, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = env
        .cmd(args)
        .stdin(Stdio::null())
        .output()
        .expect("run logpipe");
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts a follower writing to `out` (a file in the test directory).
fn follow(env: &TestEnv, args: &[&str], out: &str) -> Child {
    env.cmd(args)
        .stdin(Stdio::null())
        .stdout(File::create(env.path(out)).unwrap())
        .stderr(File::create(env.path(&format!("{out}.err"))).unwrap())
        .spawn()
        .expect("start logpipe --follow")
}

fn signal(child: &Child, sig: i32) {
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// Waits for `child` to exit after a signal and returns its exit code.
fn wait_exit(env: &TestEnv, mut child: Child) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the reader did not stop; directory:\n{}", env.listing());
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn len(env: &TestEnv, file: &str) -> u64 {
    fs::metadata(env.path(file)).map_or(0, |m| m.len())
}

/// A directory laid out by hand: two dates, numbers past 9 (which sort
/// before 2 as strings), plain, `.gz` and `.zst` segments, segments present
/// in two forms, temporaries, the companion files, and another target.
fn hand_made(env: &TestEnv) -> Vec<(&'static str, Vec<u8>)> {
    fs::create_dir(env.path("out")).unwrap();
    let mut expected = Vec::new();
    let mut n = 0;
    let mut content = |name: &'static str| {
        n += 1;
        let data = numbered(n * 1000, 50);
        expected.push((name, data.clone()));
        data
    };
    let plain = |env: &TestEnv, name: &str, data: &[u8]| fs::write(env.path(name), data).unwrap();
    let data = content("out/current.2026-11-20.2");
    plain(env, "out/current.2026-11-20.2.gz", &gzip(&data));
    let data = content("out/current.2026-11-20.10");
    plain(env, "out/current.2026-11-20.10", &data);
    for i in 1..=12 {
        let name: &'static str = Box::leak(format!("out/current.2026-11-21.{i}").into_boxed_str());
        let data = content(name);
        match i % 4 {
            0 => plain(env, &format!("{name}.gz"), &gzip(&data)),
            1 => plain(env, name, &data),
            // After a change to --compress zstd.
            3 => plain(
                env,
                &format!("{name}.zst"),
                &zstd::encode_all(&data[..], 3).unwrap(),
            ),
            _ => {
                // Both forms, as while the worker compresses: read once.
                plain(env, name, &data);
                plain(env, &format!("{name}.gz"), &gzip(&data));
            }
        }
    }
    let data = content("out/current");
    plain(env, "out/current", &data);
    // Never read: a temporary, the companions, another target's segment,
    // a name with a suffix logpipe does not write.
    plain(env, "out/current.2026-11-21.13.gz.tmp", b"half a gzip");
    plain(
        env,
        "out/current.2026-11-21.13.zst.tmp",
        b"half a zstd frame",
    );
    plain(env, "out/.current.lock", b"4242\n");
    plain(env, "out/.current.state", b"2026-11-21.13\n");
    plain(env, "out/current.2026-11-21.14.bak", b"a copy\n");
    plain(env, "out/other.2026-11-21.1", b"another target\n");
    expected
}

fn concat(parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    parts.iter().flat_map(|(_, data)| data.clone()).collect()
}

#[test]
fn read_prints_segments_in_date_and_number_order_each_once() {
    let env = TestEnv::new();
    let expected = hand_made(&env);
    let (code, stdout, stderr) = read(&env, &["--read", "out/"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, "");
    assert!(
        stdout == concat(&expected),
        "{}",
        String::from_utf8_lossy(&stdout)
    );
    // The same target named by its active file.
    let (code, by_file, _) = read(&env, &["--read", "out/current"]);
    assert_eq!(code, Some(0));
    assert_eq!(sha(&by_file), sha(&stdout));
}

#[test]
fn since_and_until_skip_whole_segments_by_date() {
    let env = TestEnv::new();
    let expected = hand_made(&env);
    let of_day = |day: &str| -> Vec<(&str, Vec<u8>)> {
        expected
            .iter()
            .filter(|(name, _)| name.contains(day))
            .cloned()
            .collect()
    };
    let (code, stdout, stderr) = read(&env, &["--read", "--until", "2026-11-20", "out/"]);
    assert_eq!(code, Some(0), "{stderr}");
    // The active file counts as today's, after the 20th.
    assert!(stdout == concat(&of_day("2026-11-20")));
    let (_, stdout, _) = read(
        &env,
        &[
            "--read",
            "--since",
            "2026-11-21",
            "--until",
            "2026-11-21",
            "out/",
        ],
    );
    assert!(stdout == concat(&of_day("2026-11-21")));
    let (_, stdout, _) = read(&env, &["--read", "--since", "2026-11-21", "out/"]);
    let mut later = of_day("2026-11-21");
    later.push(expected.last().unwrap().clone());
    assert!(stdout == concat(&later));
    // Skipped without being opened: an unreadable old segment is no error.
    fs::write(env.path("out/current.2026-11-19.1.gz"), b"not gzip").unwrap();
    let (code, stdout, stderr) = read(&env, &["--read", "--since", "2026-11-21", "out/"]);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    assert!(stdout == concat(&later));
    let (code, _, stderr) = read(&env, &["--read", "--since", "2026-11-31", "out/"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("2026-11-31"), "{stderr}");
}

#[test]
fn read_gives_back_exactly_what_a_real_run_wrote() {
    let env = TestEnv::new();
    let mut input = Vec::new();
    Corpus::new(15).fill(&mut input, 8 << 20);
    input.extend_from_slice(b"a last line without a newline");
    let run = env.run(&["--size", "64K", "out/"], &input);
    assert!(run.status.success(), "{run:?}");
    assert!(env.segments("out/current").len() > 100);
    let (code, stdout, stderr) = read(&env, &["--read", "out/"]);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    let mut closed = input.clone();
    closed.push(b'\n');
    assert_eq!(sha(&stdout), sha(&closed));
    // A copy elsewhere (new inodes, no lock held, read-only) reads the
    // same, and the read leaves it exactly as it was.
    fs::create_dir(env.path("copy")).unwrap();
    for entry in fs::read_dir(env.path("out")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), env.path("copy").join(entry.file_name())).unwrap();
    }
    let snapshot = || {
        let mut names: Vec<(String, u64)> = fs::read_dir(env.path("copy"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        names.sort();
        names
    };
    let before = snapshot();
    let mode = |path: &str, bits| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(env.path(path), fs::Permissions::from_mode(bits)).unwrap();
    };
    mode("copy", 0o555);
    let (code, stdout, stderr) = read(&env, &["--read", "--utc", "copy/"]);
    mode("copy", 0o755);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    assert_eq!(sha(&stdout), sha(&closed));
    assert_eq!(snapshot(), before);
}

/// Follows a writer that rolls every 4 KiB, without compression so that
/// it rolls as fast as it can, and checks every line arrives once.
#[test]
fn follow_misses_and_repeats_nothing_at_over_a_thousand_rotations_a_second() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    let follower = follow(&env, &["--follow", "out/"], "followed");
    let input = numbered(1, 1_000_000);
    let start = Instant::now();
    let run = env.run(&["--size", "4K", "--compress", "none", "out/"], &input);
    let took = start.elapsed();
    assert!(run.status.success(), "{run:?}");
    let rotations = env.segments("out/current").len();
    eprintln!(
        "{rotations} rotations in {:.2} s: {:.0} per second",
        took.as_secs_f64(),
        rotations as f64 / took.as_secs_f64()
    );
    assert!(rotations > 5000);
    env.wait_until("the follower to catch up", Duration::from_secs(120), || {
        len(&env, "followed") >= input.len() as u64
    });
    signal(&follower, libc::SIGTERM);
    assert_eq!(wait_exit(&env, follower), Some(0));
    assert_eq!(fs::read_to_string(env.path("followed.err")).unwrap(), "");
    assert_eq!(sha(&fs::read(env.path("followed")).unwrap()), sha(&input));
}

/// A follower that starts late reads the compressed backlog first, then
/// follows the writer, which compresses as it goes.
#[test]
fn follow_reads_the_compressed_backlog_then_keeps_up() {
    let env = TestEnv::new();
    let input = numbered(1, 400_000);
    let (first, second) = input.split_at(input.len() / 2);
    let mut writer = env.spawn(&["--size", "8K", "out/"]);
    let mut stdin = writer.stdin.take().unwrap();
    stdin.write_all(first).unwrap();
    env.wait_until("compressed segments", Duration::from_secs(60), || {
        env.segments("out/current")
            .iter()
            .filter(|s| s.path.extension().is_some_and(|e| e == "gz"))
            .count()
            > 100
    });
    let follower = follow(&env, &["--follow", "out/"], "followed");
    for chunk in second.chunks(64 << 10) {
        stdin.write_all(chunk).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    drop(stdin);
    assert!(env.finish(writer, "the writer").status.success());
    env.wait_until("the follower to catch up", Duration::from_secs(120), || {
        len(&env, "followed") >= input.len() as u64
    });
    signal(&follower, libc::SIGINT);
    assert_eq!(wait_exit(&env, follower), Some(0));
    assert_eq!(fs::read_to_string(env.path("followed.err")).unwrap(), "");
    assert_eq!(sha(&fs::read(env.path("followed")).unwrap()), sha(&input));
}

/// The number of whole lines before `position` (a cursor file's text) in
/// the target's content, once the writer is done.
fn lines_before(env: &TestEnv, position: Option<&str>) -> usize {
    let files = env.files("out/current");
    let index = |id: &str| {
        files
            .iter()
            .position(|(name, _)| name == &format!("current.{id}"))
            .unwrap_or_else(|| panic!("no segment {id}"))
    };
    let lines = |data: &[u8]| data.iter().filter(|&&b| b == b'\n').count();
    let whole = |upto: usize| files[..upto].iter().map(|(_, d)| lines(d)).sum::<usize>();
    let Some(position) = position else { return 0 };
    let words: Vec<&str> = position.split_whitespace().collect();
    match words.as_slice() {
        ["after", id] => whole(index(id) + 1),
        ["segment", id, offset] => {
            let i = index(id);
            whole(i) + lines(&files[i].1[..offset.parse().unwrap()])
        }
        ["active", after, _, _, offset] => {
            // The file it was: the first one after AFTER (the active file
            // if it was not rolled).
            let i = if *after == "-" { 0 } else { index(after) + 1 };
            whole(i) + lines(&files[i].1[..offset.parse().unwrap()])
        }
        _ => panic!("not a position: {position}"),
    }
}

fn line_numbers(data: &[u8]) -> Vec<u64> {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let text = std::str::from_utf8(l).unwrap();
            text.split_whitespace().nth(1).unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn a_cursor_resumes_after_a_kill_and_after_a_clean_stop() {
    let env = TestEnv::new();
    let total = 300_000;
    let input = numbered(1, total);
    let mut writer = env.spawn(&["--size", "4K", "out/"]);
    let mut stdin = writer.stdin.take().unwrap();
    let feeder = {
        let input = input.clone();
        thread::spawn(move || {
            // About three seconds of writing, rolling all the time.
            for chunk in input.chunks(input.len() / 60) {
                stdin.write_all(chunk).unwrap();
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let args = ["--follow", "--cursor", "cursor", "out/"];
    // 1: killed, after it had time to save its cursor at least once.
    let first = follow(&env, &args, "run1");
    thread::sleep(Duration::from_millis(1500));
    env.wait_until("the first run's output", Duration::from_secs(60), || {
        len(&env, "run1") > 100_000
    });
    signal(&first, libc::SIGKILL);
    assert_eq!(wait_exit(&env, first), None);
    let saved = fs::read_to_string(env.path("cursor")).ok();
    // 2: stopped cleanly while the writer still writes.
    let second = follow(&env, &args, "run2");
    env.wait_until("the second run's output", Duration::from_secs(60), || {
        len(&env, "run2") > 100_000
    });
    signal(&second, libc::SIGTERM);
    assert_eq!(wait_exit(&env, second), Some(0));
    // 3: after the writer is done, to the end.
    feeder.join().unwrap();
    assert!(env.finish(writer, "the writer").status.success());
    let third = follow(&env, &args, "run3");
    let run1 = fs::read(env.path("run1")).unwrap();
    let run2 = fs::read(env.path("run2")).unwrap();
    let expected_rest =
        total as usize - line_numbers(&run2).len() - lines_before(&env, saved.as_deref());
    env.wait_until("the third run's output", Duration::from_secs(60), || {
        len(&env, "run3") >= (expected_rest * 24) as u64
    });
    signal(&third, libc::SIGTERM);
    assert_eq!(wait_exit(&env, third), Some(0));
    let run3 = fs::read(env.path("run3")).unwrap();
    for run in ["run1", "run2", "run3"] {
        assert_eq!(
            fs::read_to_string(env.path(&format!("{run}.err"))).unwrap(),
            ""
        );
    }

    // Run 1 was killed: run 2 starts right after the saved position, which
    // is at or before run 1's last whole line (a repeat, never a gap).
    let (one, two, three) = (
        line_numbers(&run1),
        line_numbers(&run2),
        line_numbers(&run3),
    );
    let resumed = lines_before(&env, saved.as_deref()) as u64 + 1;
    assert_eq!(two[0], resumed, "saved: {saved:?}");
    assert!(resumed <= one.last().unwrap() + 1);
    eprintln!(
        "after the kill, {} lines came again (run 1 ended at line {}, the cursor said {saved:?})",
        one.last().unwrap() + 1 - resumed,
        one.last().unwrap()
    );
    // Run 2 stopped cleanly at a line end: run 3 repeats nothing.
    assert_eq!(run2.last(), Some(&b'\n'));
    assert_eq!(three[0], two.last().unwrap() + 1);
    // Each run in order, and everything there at the end.
    for run in [&one, &two, &three] {
        assert!(run.windows(2).all(|w| w[1] == w[0] + 1));
    }
    assert_eq!(*three.last().unwrap(), total);
    let mut joined = run2.clone();
    joined.extend_from_slice(&run3);
    let from = (two[0] - 1) as usize * 24;
    assert_eq!(sha(&joined), sha(&input[from..]));
}

#[test]
fn a_cursor_into_a_deleted_segment_goes_on_at_the_oldest_line_left() {
    let env = TestEnv::new();
    let expected = hand_made(&env);
    fs::write(env.path("cursor"), "segment 2026-11-20.3 1200\n").unwrap();
    let (code, stdout, stderr) = read(&env, &["--read", "--cursor", "cursor", "out/"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr,
        "logpipe: warning: the cursor's segment out/current.2026-11-20.3 is gone (deleted by retention, or moved away); going on at the oldest line after it\n"
    );
    assert!(stdout == concat(&expected[1..]));
    // The cursor now points at the end of the active file: a second read
    // prints nothing, and says nothing.
    let (code, stdout, stderr) = read(&env, &["--read", "--cursor", "cursor", "out/"]);
    assert_eq!((code, stdout.len(), stderr.as_str()), (Some(0), 0, ""));
    let saved = fs::read_to_string(env.path("cursor")).unwrap();
    assert!(saved.starts_with("active 2026-11-21.12 "), "{saved}");
    // Lines appended later are read once, from there.
    fs::OpenOptions::new()
        .append(true)
        .open(env.path("out/current"))
        .unwrap()
        .write_all(b"appended\nunfinished")
        .unwrap();
    let (_, stdout, _) = read(&env, &["--read", "--cursor", "cursor", "out/"]);
    assert_eq!(stdout, b"appended\n", "a line without its newline waits");
}

#[test]
fn readers_never_follow_a_planted_link_or_open_a_fifo() {
    let env = TestEnv::new();
    let expected = hand_made(&env);
    fs::write(env.path("secret"), "root's secret\n").unwrap();
    std::os::unix::fs::symlink(env.path("secret"), env.path("out/current.2026-11-22.1")).unwrap();
    let (code, stdout, stderr) = read(&env, &["--read", "out/"]);
    assert_eq!(code, Some(0));
    assert!(stdout == concat(&expected));
    assert_eq!(
        stderr,
        "logpipe: warning: not reading out/current.2026-11-22.1: is a symbolic link\n"
    );
    // A FIFO as the active file: refused at once, never waited on.
    fs::remove_file(env.path("out/current")).unwrap();
    let status = Command::new("mkfifo")
        .arg(env.path("out/current"))
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _, stderr) = read(&env, &["--read", "out/"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.lines().last().unwrap(),
        "logpipe: unable to read out/current: is a FIFO, not a regular file"
    );
}

#[test]
fn bad_reading_command_lines_are_one_line() {
    let env = TestEnv::new();
    hand_made(&env);
    fs::write(env.path("cursor"), "garbage\n").unwrap();
    let (code, _, stderr) = read(&env, &["--read", "--cursor", "cursor", "out/"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "logpipe: unable to read cursor cursor: 'garbage' is not a position logpipe wrote\n"
    );
    let (code, _, stderr) = read(&env, &["--read", "missing/"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "logpipe: unable to open directory missing/: No such file or directory (os error 2)\n"
    );
    assert!(!env.path("missing").exists(), "a reader creates nothing");
    for (args, what) in [
        (
            &["--read", "--size", "1M", "out/"][..],
            "--size is an option of writing",
        ),
        (
            &["--follow", "--until", "2026-11-21", "out/"][..],
            "cannot be used with",
        ),
        (&["--read", "--follow", "out/"][..], "cannot be used with"),
        (&["--since", "2026-11-21", "out/"][..], "required"),
    ] {
        let (code, _, stderr) = read(&env, args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(stderr.contains(what), "{args:?}: {stderr}");
    }
}

#[test]
fn a_reader_that_stops_reading_ends_the_read_quietly() {
    let env = TestEnv::new();
    let run = env.run(&["--size", "64K", "out/"], &numbered(1, 200_000));
    assert!(run.status.success());
    let mut reader = env
        .cmd(&["--read", "out/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = reader.stdout.take().unwrap();
    let mut first = [0u8; 24];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, &numbered(1, 1)[..]);
    drop(stdout);
    let out = reader.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// The writer stopped and started again (appending to the same active
/// file, or rolling it first when the clock passed a boundary): the
/// follower goes on through every run.
#[test]
fn follow_goes_on_across_restarts_of_the_writer() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    let follower = follow(&env, &["--follow", "out/"], "followed");
    let mut all = Vec::new();
    for run in 0..4 {
        let input = numbered(1 + run * 50_000, 50_000);
        let every = if run >= 2 { "1s" } else { "1d" };
        let result = env.run(&["--size", "16K", "--every", every, "out/"], &input);
        assert!(result.status.success(), "{result:?}");
        all.extend_from_slice(&input);
        if run == 2 {
            // Past a one-second boundary: the next start rolls first.
            thread::sleep(Duration::from_millis(1100));
        }
    }
    env.wait_until("the follower to catch up", Duration::from_secs(60), || {
        len(&env, "followed") >= all.len() as u64
    });
    signal(&follower, libc::SIGTERM);
    assert_eq!(wait_exit(&env, follower), Some(0));
    assert_eq!(fs::read_to_string(env.path("followed.err")).unwrap(), "");
    assert_eq!(sha(&fs::read(env.path("followed")).unwrap()), sha(&all));
}

/// A target written with zstd, then gzip (a change of `--compress`): read
/// back whole, each segment once.
#[test]
fn read_takes_zstd_and_gzip_segments_alike() {
    let env = TestEnv::new();
    let mut all = Vec::new();
    for method in ["zstd", "gzip", "zstd"] {
        let mut input = Vec::new();
        Corpus::new(all.len() as u64 + 7).fill(&mut input, 1 << 20);
        let run = env.run(&["--compress", method, "--size", "64K", "out/"], &input);
        assert!(run.status.success(), "{run:?}");
        all.extend_from_slice(&input);
    }
    let names: Vec<String> = fs::read_dir(env.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".zst")));
    assert!(names.iter().any(|n| n.ends_with(".gz")));
    let (code, stdout, stderr) = read(&env, &["--read", "out/"]);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    assert_eq!(sha(&stdout), sha(&all));
}
