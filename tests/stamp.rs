//! `--timestamp`: exactly one prefix per line, in the exact format, with
//! the time the line was read; tai64n as daemontools' `tai64nlocal` reads
//! it.

use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::corpus::Corpus;
use crate::util::{TestEnv, check_segments, clock_line, ensure_program};

/// Runs `cmd` on `input` and returns the round trip: the segments in
/// order, then the active file.
fn run_collated(env: &TestEnv, cmd: Command, input: &[u8]) -> Vec<u8> {
    let run = env.run_cmd(cmd, input);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    check_segments(&env.segments("out/current"), u64::MAX);
    env.collated("out/current")
}

/// Whether `prefix` is exactly `YYYY-MM-DDTHH:MM:SS.ffffff` followed by
/// `offset` and one space.
fn has_rfc3339_shape(prefix: &[u8], offset: &str) -> bool {
    let Some(rest) = prefix.strip_suffix(b" ") else {
        return false;
    };
    let Some(civil) = rest.strip_suffix(offset.as_bytes()) else {
        return false;
    };
    let shape = b"dddd-dd-ddTdd:dd:dd.dddddd";
    civil.len() == shape.len()
        && civil.iter().zip(shape).all(|(&b, &s)| match s {
            b'd' => b.is_ascii_digit(),
            _ => b == s,
        })
}

/// Every line, even a 600 KiB one streamed in pieces, empty ones and an
/// unterminated last one, gets exactly one rfc3339 prefix of its read time.
#[test]
fn rfc3339_prefixes_every_line_exactly_once() {
    let first_at = "2026-11-21T23:59:58Z";
    let second_at = "2026-11-22T00:00:01.000250Z";
    let mut long = Vec::new();
    Corpus::new(0x57a3).long_line(&mut long, 600 << 10);
    let before: Vec<&[u8]> = vec![b"first line\n", b"\n", b"third line\n"];
    let after: Vec<&[u8]> = vec![&long, b"\n", b"\n", b"last line without a newline"];

    let mut input = before.concat();
    input.extend_from_slice(clock_line(second_at).as_bytes());
    input.extend_from_slice(&after.concat());
    // What must come out: each line behind the prefix of its instant.
    let mut lines = Vec::new();
    lines.extend(before.iter().map(|&line| (first_at, line.to_vec())));
    lines.extend(after.iter().map(|&line| (second_at, line.to_vec())));
    lines.last_mut().unwrap().1.push(b'\n');
    let prefix = |at: &str| {
        let at: Timestamp = at.parse().unwrap();
        format!("{} ", at.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"))
    };
    assert_eq!(prefix(first_at), "2026-11-21T23:59:58.000000Z ");
    assert_eq!(prefix(second_at), "2026-11-22T00:00:01.000250Z ");
    let expected: Vec<u8> = lines
        .iter()
        .flat_map(|(at, line)| [prefix(at).as_bytes(), line].concat())
        .collect();

    let env = TestEnv::new();
    let args = [
        "--timestamp",
        "rfc3339",
        "--utc",
        "--debug-clock",
        first_at,
        "out/",
    ];
    let output = run_collated(&env, env.cmd(&args), &input);
    assert!(
        output == expected,
        "stamped output differs:\n{}",
        env.listing()
    );
    // The midnight between the two instants rolled the first lines.
    assert_eq!(env.segments("out/current").len(), 1, "{}", env.listing());

    // Each line's prefix, read strictly, and the lines without it.
    let output_lines: Vec<&[u8]> = output.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(output_lines.len(), lines.len());
    for (line, (at, original)) in output_lines.iter().zip(&lines) {
        let start = String::from_utf8_lossy(&line[..line.len().min(40)]);
        assert!(line.len() > 28, "no room for a prefix: {start:?}");
        let (stamp, rest) = line.split_at(28);
        assert!(has_rfc3339_shape(stamp, "Z"), "{start:?}");
        let read: Timestamp = std::str::from_utf8(&stamp[..27]).unwrap().parse().unwrap();
        assert_eq!(read, at.parse::<Timestamp>().unwrap());
        assert!(rest == original, "a line changed behind its prefix");
    }
}

/// Without `--utc`, rfc3339 prefixes carry the local offset of each
/// instant: +01:00 in a Berlin November, +02:00 in a Berlin July.
#[test]
fn rfc3339_prefixes_carry_the_local_offset() {
    let env = TestEnv::new();
    let input = [
        "in November\n",
        &clock_line("2026-07-15T10:00:00Z"),
        "in July\n",
    ]
    .concat();
    let mut cmd = env.cmd(&[
        "--timestamp",
        "rfc3339",
        "--every",
        "never",
        "--debug-clock",
        "2026-11-21T14:03:07.123456Z",
        "out/",
    ]);
    cmd.env("TZ", "Europe/Berlin");
    let output = String::from_utf8(run_collated(&env, cmd, input.as_bytes())).unwrap();
    assert_eq!(
        output,
        "2026-11-21T15:03:07.123456+01:00 in November\n\
         2026-07-15T12:00:00.000000+02:00 in July\n"
    );
    for (line, (offset, at)) in output.lines().zip([
        ("+01:00", "2026-11-21T14:03:07.123456Z"),
        ("+02:00", "2026-07-15T10:00:00Z"),
    ]) {
        assert!(has_rfc3339_shape(&line.as_bytes()[..33], offset), "{line}");
        let read: Timestamp = line[..32].parse().unwrap();
        assert_eq!(read, at.parse::<Timestamp>().unwrap(), "{line}");
    }
}

/// `--timestamp unix` and `--timestamp tai64n` write the exact prefixes
/// for known instants.
#[test]
fn unix_and_tai64n_prefixes_are_exact() {
    let at = "2026-11-21T14:03:07Z";
    assert_eq!(at.parse::<Timestamp>().unwrap().as_second(), 1_795_269_787);
    // TAI64N: '@', 2^62 + 10 + the Unix seconds in 16 hex digits, then the
    // nanoseconds in 8.
    let tai64n = |micros: u64| {
        format!(
            "@{:016x}{:08x}",
            (1u64 << 62) + 10 + 1_795_269_787,
            micros * 1000
        )
    };
    assert_eq!(tai64n(123_456), "@400000006b01a4a5075bca00");

    let input = [
        "whole second\n",
        &clock_line("2026-11-21T14:03:07.000042Z"),
        "42 microseconds\n",
        &clock_line("2026-11-21T14:03:07.123456789Z"),
        "123456.789 microseconds\n",
    ]
    .concat();
    let cases = [
        (
            "unix",
            [
                "1795269787.000000".to_string(),
                "1795269787.000042".into(),
                "1795269787.123456".into(),
            ],
        ),
        ("tai64n", [tai64n(0), tai64n(42), tai64n(123_456)]),
    ];
    for (format, prefixes) in cases {
        let env = TestEnv::new();
        let args = ["--timestamp", format, "--debug-clock", at, "out/"];
        let output = run_collated(&env, env.cmd(&args), input.as_bytes());
        let expected = format!(
            "{} whole second\n{} 42 microseconds\n{} 123456.789 microseconds\n",
            prefixes[0], prefixes[1], prefixes[2]
        );
        assert_eq!(String::from_utf8(output).unwrap(), expected, "{format}");
    }
}

/// On the real clock, each prefix is the time its line was read: between
/// just before the line was written into the pipe and just after it was
/// seen on disk.
#[test]
fn prefixes_on_the_real_clock_are_the_read_time() {
    let env = TestEnv::new();
    let mut child = env.spawn(&["--timestamp", "unix", "--every", "never", "out/"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut windows = Vec::new();
    for i in 0..8 {
        let before = Timestamp::now();
        writeln!(stdin, "line {i}").unwrap();
        env.wait_until("the line on disk", Duration::from_secs(30), || {
            fs::read(env.path("out/current"))
                .is_ok_and(|b| memchr::memchr_iter(b'\n', &b).count() == i + 1)
        });
        windows.push((before, Timestamp::now()));
    }
    drop(stdin);
    let run = env.finish(child, "logpipe --timestamp unix out/");
    assert!(run.status.success(), "{run:?}");

    let text = fs::read_to_string(env.path("out/current")).unwrap();
    assert_eq!(text.lines().count(), windows.len(), "{text}");
    // The prefix has whole microseconds: `before` is cut down to them.
    let micros = |t: Timestamp| t.as_microsecond();
    for (i, (line, (before, after))) in text.lines().zip(&windows).enumerate() {
        // `1795269787.123456 line 0`
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, format!("line {i}"), "{line}");
        let (secs, frac) = stamp.split_once('.').unwrap();
        assert_eq!(frac.len(), 6, "{line}");
        let read = secs.parse::<i64>().unwrap() * 1_000_000 + frac.parse::<i64>().unwrap();
        assert!(
            micros(*before) <= read && read <= micros(*after),
            "{line}: read at {read} µs, written between {before} and {after}"
        );
    }
}

/// daemontools' `tai64nlocal` decodes tai64n prefixes to the instants
/// they were made at (set on the manual clock, microseconds included).
#[test]
#[ignore = "installs daemontools (tai64nlocal) with apt-get"]
fn tai64n_is_decoded_by_tai64nlocal_to_the_instants_read() {
    ensure_program("tai64nlocal", "daemontools");
    let instants = [
        "2026-11-21T14:03:07Z",
        "2026-11-21T14:03:07.000042Z",
        "2026-11-21T14:03:07.123456Z",
        "2026-11-22T00:00:00.999999Z",
        "2027-01-01T00:00:01.5Z",
    ];
    let mut input = String::new();
    for (i, at) in instants.iter().enumerate() {
        input.push_str(&clock_line(at));
        input.push_str(&format!("line {i}\n"));
    }
    let env = TestEnv::new();
    let args = [
        "--timestamp",
        "tai64n",
        "--every",
        "never",
        "--debug-clock",
        instants[0],
        "out/",
    ];
    let output = run_collated(&env, env.cmd(&args), input.as_bytes());

    let decoded = Command::new("tai64nlocal")
        .env("TZ", "UTC")
        .stdin(fs::File::open(env.path("out/current")).unwrap())
        .output()
        .expect("run tai64nlocal");
    assert!(decoded.status.success(), "{decoded:?}");
    let decoded = String::from_utf8(decoded.stdout).unwrap();
    let expected: String = instants
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let at: Timestamp = at.parse().unwrap();
            // `2026-11-21 14:03:07.123456000 line 0`
            format!(
                "{}.{:09} line {i}\n",
                at.to_zoned(TimeZone::UTC).strftime("%Y-%m-%d %H:%M:%S"),
                at.subsec_nanosecond()
            )
        })
        .collect();
    assert_eq!(decoded, expected, "{}", String::from_utf8_lossy(&output));
}
