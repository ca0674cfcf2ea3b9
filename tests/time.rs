//! Wall-clock rotation: idle boundaries on a real clock; midnight, local
//! zones, DST and clock steps through the hidden `--debug-clock`, whose
//! control lines move time between any two lines; restarts; and the
//! SIGUSR1 and SIGALRM roll requests.

use std::fs;
use std::io::Write;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::util::{TestEnv, check_segments, clock_line};

/// Expected files, as (name, contents), for comparison with
/// [`TestEnv::texts`].
fn files(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|&(name, text)| (name.to_string(), text.to_string()))
        .collect()
}

/// The input without its clock control lines: what must come out.
fn without_clock_lines(input: &str) -> String {
    input
        .split_inclusive('\n')
        .filter(|line| !line.starts_with("#logpipe-clock "))
        .collect()
}

/// Sets the modification time of `path` to the RFC 3339 instant `at`.
fn set_mtime(path: &std::path::Path, at: &str) {
    let at: SystemTime = at.parse::<Timestamp>().unwrap().into();
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

/// Runs logpipe with `args` on `input` (TZ=UTC) and checks that it
/// succeeds, says nothing, and gives back the input minus clock lines.
fn run_ok(env: &TestEnv, args: &[&str], input: &str) {
    check_run(env, env.cmd(args), input);
}

fn check_run(env: &TestEnv, cmd: std::process::Command, input: &str) {
    let run = env.run_cmd(cmd, input.as_bytes());
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert!(
        env.collated("out/current") == without_clock_lines(input).as_bytes(),
        "the round trip differs from the input:\n{}",
        env.listing()
    );
    check_segments(&env.segments("out/current"), u64::MAX);
}

/// With `--every 1s`, a line followed by no input at all is rolled by the
/// clock alone, on the real clock: the manual clock only moves with input.
/// Where the boundaries fall is checked on the manual clock by the tests
/// below; this one only waits for the roll, however long a loaded machine
/// takes to get there.
#[test]
fn an_idle_active_file_is_rolled_at_the_next_boundary() {
    let env = TestEnv::new();
    let mut child = env.spawn(&["--every", "1s", "--utc", "out/"]);
    let mut stdin = child.stdin.take().unwrap();
    let line = b"the only line, then silence\n";
    stdin.write_all(line).unwrap();
    env.wait_until("a roll with no input", Duration::from_secs(30), || {
        env.segments("out/current").len() == 1
    });

    drop(stdin);
    let run = env.finish(child, "logpipe --every 1s --utc out/");
    assert!(run.status.success(), "{run:?}");
    let segments = env.segments("out/current");
    assert_eq!(check_segments(&segments, u64::MAX), 1, "{}", env.listing());
    assert_eq!(segments[0].read(), line);
    assert_eq!(env.collated("out/current"), line);
}

/// Lines before and after midnight land in segments named after their own
/// days, the first one after the day it was opened at 23:59:58.
#[test]
fn segments_are_named_after_the_day_they_were_opened() {
    let env = TestEnv::new();
    let input = [
        "before midnight 1\nbefore midnight 2\n",
        &clock_line("2026-11-22T00:00:01Z"),
        "after midnight 1\nafter midnight 2\n",
        &clock_line("2026-11-23T00:00:00Z"),
        "on the 23rd\n",
    ]
    .concat();
    run_ok(
        &env,
        &["--debug-clock", "2026-11-21T23:59:58Z", "out/"],
        &input,
    );
    assert_eq!(
        env.texts("out/current"),
        files(&[
            (
                "current.2026-11-21.1",
                "before midnight 1\nbefore midnight 2\n"
            ),
            (
                "current.2026-11-22.1",
                "after midnight 1\nafter midnight 2\n"
            ),
            ("current", "on the 23rd\n"),
        ])
    );
}

/// Days end at midnight of the zone in TZ (04:59Z on Nov 22 is still
/// Nov 21 in New York); `--utc` puts the boundary at 00:00Z instead.
#[test]
fn days_end_at_local_midnight_unless_utc() {
    let input = [
        "23:59 on Nov 21 in New York\n",
        &clock_line("2026-11-22T05:00:30Z"),
        "00:00:30 on Nov 22 in New York\n",
        &clock_line("2026-11-23T00:00:00Z"),
        "00:00 on Nov 23 in UTC\n",
    ]
    .concat();
    let run_in_new_york = |extra: &[&str]| {
        let env = TestEnv::new();
        let mut args = vec!["--debug-clock", "2026-11-22T04:59:00Z"];
        args.extend_from_slice(extra);
        args.push("out/");
        let mut cmd = env.cmd(&args);
        cmd.env("TZ", "America/New_York");
        check_run(&env, cmd, &input);
        env.texts("out/current")
    };

    // Local: New York's midnight is 05:00Z; 00:00Z means nothing.
    assert_eq!(
        run_in_new_york(&[]),
        files(&[
            ("current.2026-11-21.1", "23:59 on Nov 21 in New York\n"),
            (
                "current",
                "00:00:30 on Nov 22 in New York\n00:00 on Nov 23 in UTC\n"
            ),
        ])
    );
    // UTC: both first instants are on Nov 22, and 00:00Z ends that day.
    assert_eq!(
        run_in_new_york(&["--utc"]),
        files(&[
            (
                "current.2026-11-22.1",
                "23:59 on Nov 21 in New York\n00:00:30 on Nov 22 in New York\n"
            ),
            ("current", "00:00 on Nov 23 in UTC\n"),
        ])
    );
}

/// Hourly boundaries across Berlin's autumn fold happen once each: the
/// local hour 02:00-03:00 that is lived twice is one window, not two.
#[test]
fn hourly_boundaries_in_the_dst_fold_happen_once() {
    // 2026-10-25 in Berlin: at 03:00 CEST (01:00Z) clocks go back to
    // 02:00 CET, so local 02:00-03:00 runs from 00:00Z to 02:00Z. The
    // 02:00 boundary is taken at its first occurrence (00:00Z) and not
    // again at 01:00Z; the 03:00 boundary exists once (02:00Z); then 04:00
    // (03:00Z). These are the instants of schedule.rs's
    // berlin_hours_across_both_changes table.
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let start: Timestamp = "2026-10-24T23:00:00Z".parse().unwrap();
    let boundaries: Vec<Timestamp> = [
        "2026-10-25T00:00:00Z",
        "2026-10-25T02:00:00Z",
        "2026-10-25T03:00:00Z",
    ]
    .iter()
    .map(|t| t.parse().unwrap())
    .collect();
    let mut input = String::new();
    let mut groups = vec![String::new(); boundaries.len() + 1];
    // Every 15 minutes from 23:00Z to 03:00Z: 17 steps, one line each.
    for step in 0..=16 {
        let at = Timestamp::from_second(start.as_second() + step * 15 * 60).unwrap();
        let local = at.to_zoned(berlin.clone()).strftime("%H:%M %Z");
        let line = format!("{at} is {local} in Berlin\n");
        input.push_str(&clock_line(&at.to_string()));
        input.push_str(&line);
        groups[boundaries.iter().filter(|&&b| b <= at).count()].push_str(&line);
    }
    let env = TestEnv::new();
    let mut cmd = env.cmd(&["--every", "1h", "--debug-clock", &start.to_string(), "out/"]);
    cmd.env("TZ", "Europe/Berlin");
    check_run(&env, cmd, &input);

    // 4 lines (01:00-01:45 CEST), 8 (02:00 CEST to 02:45 CET), 4 (03:00-
    // 03:45 CET), and the 04:00 line still active; all on Oct 25, local.
    let line_counts: Vec<usize> = groups.iter().map(|g| g.lines().count()).collect();
    assert_eq!(line_counts, [4, 8, 4, 1]);
    let names = [
        "current.2026-10-25.1",
        "current.2026-10-25.2",
        "current.2026-10-25.3",
        "current",
    ];
    let expected: Vec<(&str, &str)> = names
        .into_iter()
        .zip(groups.iter().map(String::as_str))
        .collect();
    assert_eq!(env.texts("out/current"), files(&expected));
}

/// A clock step three days forward rolls once (no burst of rolls); a step
/// two days back afterwards never replaces or reuses a segment name.
#[test]
fn clock_steps_roll_at_most_once_and_never_reuse_a_name() {
    let env = TestEnv::new();
    let input = [
        "a1\na2\n",
        // Three days forward: the file of the 22nd is rolled, once.
        &clock_line("2026-11-25T10:30:00Z"),
        "b1\n",
        // Same window: no roll.
        &clock_line("2026-11-25T10:45:00Z"),
        "b2\n",
        &clock_line("2026-11-25T11:00:00Z"),
        "b3\n",
        // Two days back: no roll now, but the window of the file opened on
        // the 25th ends at the next boundary of the new time...
        &clock_line("2026-11-23T11:00:00Z"),
        "c1\n",
        // ...where it is rolled under its own date, as number 2.
        &clock_line("2026-11-23T12:00:00Z"),
        "c2\n",
    ]
    .concat();
    run_ok(
        &env,
        &[
            "--every",
            "1h",
            "--utc",
            "--debug-clock",
            "2026-11-22T10:00:00Z",
            "out/",
        ],
        &input,
    );
    assert_eq!(
        env.texts("out/current"),
        files(&[
            ("current.2026-11-22.1", "a1\na2\n"),
            ("current.2026-11-25.1", "b1\nb2\n"),
            ("current.2026-11-25.2", "b3\nc1\n"),
            ("current", "c2\n"),
        ])
    );
}

/// At start, an active file last written in an earlier window is rolled
/// under its own date before any new line is written.
#[test]
fn an_active_file_from_an_earlier_window_is_rolled_at_start() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    fs::write(env.path("out/current"), "written at 10:30\n").unwrap();
    set_mtime(&env.path("out/current"), "2026-11-21T10:30:00Z");
    let args = [
        "--every",
        "1h",
        "--utc",
        "--debug-clock",
        "2026-11-21T12:00:00Z",
        "out/",
    ];
    let run = env.run(&args, b"written at 12:00\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        env.texts("out/current"),
        files(&[
            ("current.2026-11-21.1", "written at 10:30\n"),
            ("current", "written at 12:00\n"),
        ])
    );
}

/// At start, an active file last written in the current window is
/// appended to, and rolled with the new lines at the window's end.
#[test]
fn an_active_file_from_the_current_window_is_continued() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    fs::write(env.path("out/current"), "written at 12:10\n").unwrap();
    set_mtime(&env.path("out/current"), "2026-11-21T12:10:00Z");
    let args = [
        "--every",
        "1h",
        "--utc",
        "--debug-clock",
        "2026-11-21T12:45:00Z",
        "out/",
    ];
    let input = [
        "written at 12:45\n",
        &clock_line("2026-11-21T13:00:00Z"),
        "written at 13:00\n",
    ]
    .concat();
    let run = env.run(&args, input.as_bytes());
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        env.texts("out/current"),
        files(&[
            (
                "current.2026-11-21.1",
                "written at 12:10\nwritten at 12:45\n"
            ),
            ("current", "written at 13:00\n"),
        ])
    );
}

/// SIGUSR1 and SIGALRM roll a non-empty active file at once, and do
/// nothing to an empty one.
#[test]
fn roll_signals_roll_a_non_empty_file_only() {
    let env = TestEnv::new();
    // Segments are read while logpipe runs: keep them plain.
    let mut child = env.spawn(&["--every", "never", "--compress", "none", "out/"]);
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let signal = |sig| {
        // SAFETY: kill only sends a signal to our own child, by its pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid} {sig}");
    };
    let active_holds = |bytes: &[u8]| fs::read(env.path("out/current")).is_ok_and(|b| b == bytes);
    let mut stdin = child.stdin.take().unwrap();
    let timeout = Duration::from_secs(30);

    let first = b"first line\nsecond line\n";
    stdin.write_all(first).unwrap();
    env.wait_until("the first lines on disk", timeout, || active_holds(first));
    signal(libc::SIGUSR1);
    env.wait_until("a roll on SIGUSR1", timeout, || {
        env.segments("out/current").len() == 1 && active_holds(b"")
    });
    assert_eq!(env.segments("out/current")[0].read(), first);

    // SIGUSR1 to an empty active file. Whether logpipe sees it before the
    // next line or together with it (then it rolls that line, which is
    // right too), no empty segment may come of it: the checks at the end
    // find one if it did, whenever it was made.
    signal(libc::SIGUSR1);
    let second = b"third line\n";
    stdin.write_all(second).unwrap();
    env.wait_until("the third line on disk", timeout, || {
        active_holds(second) || env.segments("out/current").len() == 2
    });
    signal(libc::SIGALRM);
    env.wait_until("a roll on SIGALRM", timeout, || {
        env.segments("out/current").len() >= 2 && active_holds(b"")
    });

    drop(stdin);
    let run = env.finish(child, "logpipe --every never out/");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    let segments = env.segments("out/current");
    // Exactly two segments, neither empty: the roll asked for with an
    // empty active file made none.
    assert_eq!(check_segments(&segments, u64::MAX), 2, "{}", env.listing());
    assert_eq!(segments[1].read(), second);
    assert_eq!(env.collated("out/current"), [&first[..], second].concat());
}
