//! The line stage on the real binary: `--drop`, `--route`, `--redact`
//! and `--continuation`, byte for byte, across reads and rotations.

use std::fs;
use std::io::Write;
use std::thread;
use std::time::Duration;

use crate::util::{TestEnv, sha};

/// A record of the crafted stream and where it must end up.
enum Kind {
    /// Untouched, in the main target.
    Plain,
    /// Dropped.
    Health,
    /// Routed to `errors/`, with its traceback.
    Error,
}

/// A stream mixing access lines, health checks and errors with
/// tracebacks, and what each target must hold afterwards.
struct Stream {
    records: Vec<(Kind, Vec<u8>)>,
}

impl Stream {
    fn new(count: u64) -> Stream {
        let mut records = Vec::new();
        for n in 0..count {
            let (kind, text) = match n % 10 {
                3 => (
                    Kind::Health,
                    format!("10.0.0.{} - - \"GET /healthz HTTP/1.1\" 200 2\n", n % 250),
                ),
                7 => (
                    Kind::Error,
                    format!(
                        "[2026-11-21 10:00:{:02}] [ERROR] Error handling request /item/{n}\n\
                         Traceback (most recent call last):\n  File \"app.py\", line {n}, in handler\n\
                         \x20   raise ValueError({n})\nValueError: {n}\n",
                        n % 60
                    ),
                ),
                _ => (
                    Kind::Plain,
                    format!(
                        "10.0.0.{} - - \"GET /api/items/{n} HTTP/1.1\" 200 {}\n",
                        n % 250,
                        n * 7
                    ),
                ),
            };
            let mut bytes = text.into_bytes();
            // Now and then not UTF-8: matched, never refused.
            if n % 97 == 5 {
                bytes.splice(0..0, *b"\xff\xfe ");
            }
            records.push((kind, bytes));
        }
        Stream { records }
    }

    fn input(&self) -> Vec<u8> {
        self.records.iter().flat_map(|(_, b)| b.clone()).collect()
    }

    fn expected(&self, want: fn(&Kind) -> bool) -> Vec<u8> {
        self.records
            .iter()
            .filter(|(k, _)| want(k))
            .flat_map(|(_, b)| b.clone())
            .collect()
    }
}

const CONTINUATION: &str = r"^(\s|Traceback |\w+Error: )";

#[test]
fn drop_and_route_leave_every_other_byte_as_it_was_across_rotations() {
    let env = TestEnv::new();
    let stream = Stream::new(20_000);
    let input = stream.input();
    let args = [
        "--size",
        "16K",
        "--drop",
        "GET /healthz",
        "--route",
        r"\[ERROR\]=errors/",
        "--continuation",
        CONTINUATION,
        "out/",
    ];
    // Fed in pieces that cut records and lines anywhere, with pauses, so
    // that a traceback often arrives in a later read than its first line.
    let run = env.run_fed(env.cmd(&args), move |stdin| {
        for piece in input.chunks(4093) {
            stdin.write_all(piece).unwrap();
            stdin.flush().unwrap();
            thread::sleep(Duration::from_micros(300));
        }
    });
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert!(env.segments("out/current").len() > 20);
    assert!(env.segments("errors/current").len() > 20);
    let main = stream.expected(|k| matches!(k, Kind::Plain));
    let errors = stream.expected(|k| matches!(k, Kind::Error));
    assert_eq!(sha(&env.collated("out/current")), sha(&main));
    assert_eq!(sha(&env.collated("errors/current")), sha(&errors));
}

#[test]
fn redaction_catches_secrets_cut_by_reads_and_next_to_rotations() {
    let env = TestEnv::new();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for n in 0..3_000 {
        let line = match n % 4 {
            0 => format!("POST /login user=u{n} password=hunter{n}x&next=/\n"),
            1 => format!("{{\"event\":\"token\",\"api_key\":\"AKIA{n}SECRET\"}}\n"),
            2 => format!("GET /me Authorization: Bearer eyJ{n}.payload.sig\n"),
            _ => format!("paid with 4111 1111 1111 1111 order {n}\n"),
        };
        let redacted = match n % 4 {
            0 => format!("POST /login user=u{n} password=[REDACTED]&next=/\n"),
            1 => "{\"event\":\"token\",\"api_key\":\"[REDACTED]\"}\n".to_string(),
            2 => "GET /me Authorization: Bearer [REDACTED]\n".to_string(),
            _ => format!("paid with [REDACTED] order {n}\n"),
        };
        input.extend_from_slice(line.as_bytes());
        expected.extend_from_slice(redacted.as_bytes());
    }
    let args = [
        "--size",
        "2K",
        "--redact",
        "@credentials",
        "--redact",
        "@auth",
        "--redact",
        "@card",
        "out/",
    ];
    let fed = input.clone();
    let run = env.run_fed(env.cmd(&args), move |stdin| {
        // Cut every secret in two: the pieces end in the middle of each
        // line, and the rest comes after a pause, in another read.
        for line in fed.split_inclusive(|&b| b == b'\n') {
            let (a, b) = line.split_at(line.len() * 2 / 3);
            stdin.write_all(a).unwrap();
            stdin.flush().unwrap();
            thread::sleep(Duration::from_micros(200));
            stdin.write_all(b).unwrap();
        }
    });
    assert!(run.status.success(), "{run:?}");
    assert!(env.segments("out/current").len() > 50);
    let written = env.collated("out/current");
    assert_eq!(sha(&written), sha(&expected));
    for secret in [&b"hunter"[..], b"SECRET", b"eyJ", b"4111"] {
        assert!(
            !written.windows(secret.len()).any(|w| w == secret),
            "{} reached the disk",
            String::from_utf8_lossy(secret)
        );
    }
}

#[test]
fn a_routed_target_keeps_its_own_numbering_across_restarts() {
    let env = TestEnv::new();
    let args = ["--size", "1K", "--route", "^ERR=errors/", "out/"];
    let mut all_errors = Vec::new();
    for run in 0..3 {
        let mut input = Vec::new();
        for n in 0..400 {
            let line = format!(
                "{} run {run} line {n} .................\n",
                if n % 2 == 0 { "ERR" } else { "OK " }
            );
            if n % 2 == 0 {
                all_errors.extend_from_slice(line.as_bytes());
            }
            input.extend_from_slice(line.as_bytes());
        }
        let result = env.run(&args, &input);
        assert!(result.status.success(), "{result:?}");
    }
    let segments = env.segments("errors/current");
    let numbers: Vec<u64> = segments.iter().map(|s| s.n).collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "{}", env.listing());
    assert!(env.path("errors/.current.state").exists());
    assert!(env.path("errors/.current.lock").exists());
    assert_eq!(sha(&env.collated("errors/current")), sha(&all_errors));
    // A second writer on the routed target is refused, as on any target.
    let mut held = env.spawn(&args);
    env.wait_until("the routed target's lock", Duration::from_secs(30), || {
        fs::read_to_string(env.path("errors/.current.lock"))
            .is_ok_and(|pid| pid.trim() == held.id().to_string())
    });
    let second = env.run(&["errors/"], b"x\n");
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(
        second
            .stderr
            .contains("unable to lock errors/.current.lock: held by pid")
    );
    drop(held.stdin.take());
    assert!(env.finish(held, "the first writer").status.success());
}

#[test]
fn timestamps_come_after_the_line_stage_and_metrics_count_it() {
    let env = TestEnv::new();
    let input = b"keep a\nnoise\nERR b\n  more of b\nkeep token=abc\n";
    let args = [
        "--timestamp",
        "unix",
        "--drop",
        "^noise",
        "--route",
        "^ERR=errors/",
        "--continuation",
        r"^\s",
        "--redact",
        "@credentials",
        "--metrics",
        "metrics.prom",
        "out/",
    ];
    let run = env.run(&args, input);
    assert!(run.status.success(), "{run:?}");
    let strip = |path: &str| -> String {
        fs::read_to_string(env.path(path))
            .unwrap()
            .lines()
            .map(|l| {
                let (stamp, rest) = l.split_once(' ').unwrap();
                assert!(stamp.parse::<f64>().is_ok(), "{l}");
                format!("{rest}\n")
            })
            .collect()
    };
    assert_eq!(strip("out/current"), "keep a\nkeep token=[REDACTED]\n");
    assert_eq!(strip("errors/current"), "ERR b\n  more of b\n");
    let metrics = fs::read_to_string(env.path("metrics.prom")).unwrap();
    for (name, value) in [
        ("logpipe_records_dropped_total", 1),
        ("logpipe_records_routed_total", 1),
        ("logpipe_lines_redacted_total", 1),
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(name) && l.ends_with(&format!(" {value}"))),
            "{name} {value}:\n{metrics}"
        );
    }
}

#[test]
fn bad_patterns_and_routes_are_refused_before_anything_is_made() {
    let env = TestEnv::new();
    for (args, message) in [
        (
            &["--drop", "(unclosed", "out/"][..],
            "invalid pattern '(unclosed': unclosed group",
        ),
        (
            &["--redact", "@nope", "out/"][..],
            "no preset '@nope'; the presets are @credentials, @auth, @private-key, @card",
        ),
        (
            &["--route", "no-equals", "out/"][..],
            "expected REGEX=TARGET",
        ),
        (
            &["--route", "x=", "out/"][..],
            "expected a TARGET after the last '='",
        ),
        (
            &["--continuation", "[z-a]", "out/"][..],
            "invalid pattern '[z-a]'",
        ),
        (
            &["--route", "x=out/", "out/"][..],
            "that is the main target",
        ),
    ] {
        let run = env.run(args, b"line\n");
        assert_eq!(run.status.code(), Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
        assert_eq!(
            run.stderr.lines().next().map(|l| l.starts_with("error: ")),
            Some(true)
        );
        assert!(!env.path("out").exists(), "{args:?} made out/");
    }
}
