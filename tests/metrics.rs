//! `--metrics FILE`: exact values after a known input, the file's format
//! (`promtool check metrics`), and how it is written (atomically, never
//! through a symbolic link).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::faults::{collect_stderr, nearly_full_disk};
use crate::util::{TestEnv, clock_line, ensure_program, sha};

/// The samples of a metrics file: `name{labels}` (without the `target`
/// label, checked to be `target` on every line) to value.
pub(crate) fn samples(path: &Path, target: &str) -> BTreeMap<String, String> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let label = format!("target=\"{target}\"");
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a value");
        assert!(series.contains(&label), "{line} lacks {label}");
        let series = series
            .replace(&format!("{label},"), "")
            .replace(&format!("{{{label}}}"), "");
        out.insert(series, value.to_string());
    }
    out
}

fn lines(from: usize, count: usize) -> Vec<u8> {
    (from..from + count)
        .flat_map(|i| format!("line {i:02}\n").into_bytes())
        .collect()
}

/// Every counter exact after a known input: lines and bytes read (the
/// clock's control lines included), bytes written, and one rotation of
/// each reason: a restart (the active file of an ended window), SIGUSR1,
/// a clock boundary, the size limit.
#[test]
fn values_are_exact_after_a_known_input() {
    let env = TestEnv::new();
    let prom = env.path("m.prom");
    let common = [
        "--every",
        "1h",
        "--size",
        "100",
        "--compress",
        "none",
        "--metrics",
        "m.prom",
        "--metrics-interval",
        "1h",
        "out/",
    ];
    let first = lines(0, 5);
    let mut args = vec!["--debug-clock", "2026-11-21T10:00:00Z"];
    args.extend(common);
    let run = env.run(&args, &first);
    assert!(run.status.success(), "{run:?}");
    let target = env.path("out/current").display().to_string();
    let m = samples(&prom, &target);
    assert_eq!(m["logpipe_input_lines_total"], "5");
    assert_eq!(m["logpipe_input_bytes_total"], "40");
    assert_eq!(m["logpipe_written_bytes_total"], "40");
    assert_eq!(m["logpipe_active_file_bytes"], "40");
    assert_eq!(m["logpipe_segments_finished_total"], "0");

    // Years later by the manual clock: the active file's window has ended,
    // so the start rolls it.
    let mut args = vec!["--debug-clock", "2030-01-01T12:00:00Z"];
    args.extend(common);
    let mut child = env.spawn(&args);
    let mut stdin = child.stdin.take().unwrap();
    let signalled = lines(5, 3);
    stdin.write_all(&signalled).unwrap();
    let active = env.path("out/current");
    env.wait_until("the lines written", Duration::from_secs(30), || {
        fs::metadata(&active).is_ok_and(|m| m.len() == 24)
    });
    let usr1 = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(usr1.success());
    // The rotation has the file written at once, without waiting for the
    // interval.
    env.wait_until(
        "the signal's rotation in the file",
        Duration::from_secs(30),
        || {
            samples(&prom, &target).get("logpipe_rotations_total{reason=\"signal\"}")
                == Some(&"1".to_string())
        },
    );
    let mut rest = lines(8, 2);
    rest.extend(clock_line("2030-01-01T13:00:01Z").into_bytes());
    rest.extend(lines(10, 20));
    stdin.write_all(&rest).unwrap();
    drop(stdin);
    let run = env.finish(child, "logpipe --metrics");
    assert!(run.status.success(), "{run:?}");

    let m = samples(&prom, &target);
    let expect = [
        ("logpipe_input_lines_total", "26"),
        ("logpipe_input_bytes_total", "236"),
        ("logpipe_written_bytes_total", "200"),
        ("logpipe_segments_finished_total", "4"),
        ("logpipe_segments_compressed_total", "0"),
        ("logpipe_rotations_total{reason=\"size\"}", "1"),
        ("logpipe_rotations_total{reason=\"clock\"}", "1"),
        ("logpipe_rotations_total{reason=\"signal\"}", "1"),
        ("logpipe_rotations_total{reason=\"restart\"}", "1"),
        ("logpipe_compression_backlog_segments", "0"),
        ("logpipe_compression_backlog_bytes", "0"),
        ("logpipe_paused", "0"),
        ("logpipe_paused_seconds_total", "0.000"),
        ("logpipe_dropped_lines_total", "0"),
        ("logpipe_dropped_bytes_total", "0"),
        ("logpipe_pruned_segments_total", "0"),
        ("logpipe_pruned_bytes_total", "0"),
        ("logpipe_write_errors_total", "0"),
        ("logpipe_hook_failures_total", "0"),
        ("logpipe_active_file_bytes", "64"),
    ];
    for (name, value) in expect {
        assert_eq!(m.get(name).map(String::as_str), Some(value), "{name}");
    }
    let version = format!(
        "logpipe_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(m[&version], "1");
    let started: f64 = m["logpipe_start_time_seconds"].parse().unwrap();
    let rotated: f64 = m["logpipe_last_rotation_timestamp_seconds"]
        .parse()
        .unwrap();
    assert!(started > 1.7e9 && rotated >= started, "{started} {rotated}");
    // Segments: the restart's 40 bytes, the signal's 24, the clock's 16,
    // the size limit's 96; then 64 in the active file.
    let lens: Vec<u64> = env
        .segments("out/current")
        .iter()
        .map(|s| s.len())
        .collect();
    assert_eq!(lens, [40, 24, 16, 96]);
    let mut input = first;
    input.extend(signalled);
    input.extend(lines(8, 2));
    input.extend(lines(10, 20));
    assert_eq!(env.collated_sha("out/current"), sha(&input));
    let names: Vec<_> = fs::read_dir(env.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

/// With compression, the backlog drains and each segment is counted as
/// compressed; a failing hook is counted.
#[test]
fn compressions_and_hook_failures_are_counted() {
    let env = TestEnv::new();
    let input = lines(0, 30);
    let run = env.run(
        &[
            "--size",
            "100",
            "--on-rotate",
            "false",
            "--metrics",
            "m.prom",
            "out/",
        ],
        &input,
    );
    assert!(run.status.success(), "{run:?}");
    let target = env.path("out/current").display().to_string();
    let m = samples(&env.path("m.prom"), &target);
    // 240 bytes in segments of 96: two finished, 48 bytes left active.
    assert_eq!(m["logpipe_segments_finished_total"], "2");
    assert_eq!(m["logpipe_segments_compressed_total"], "2");
    assert_eq!(m["logpipe_hook_failures_total"], "2");
    assert_eq!(m["logpipe_compression_backlog_segments"], "0");
    assert_eq!(m["logpipe_compression_backlog_bytes"], "0");
    assert_eq!(m["logpipe_active_file_bytes"], "48");
    assert_eq!(env.collated_sha("out/current"), sha(&input));
}

/// The file is replaced by rename: a symbolic link at its name is
/// replaced, never followed, and no temporary is left. A symbolic link
/// planted at the temporary's name is not followed either: the write
/// fails, with one warning for the whole run of failures.
#[test]
fn a_symlink_at_the_metrics_name_is_replaced_not_followed() {
    let env = TestEnv::new();
    fs::create_dir(env.path("m")).unwrap();
    fs::write(env.path("victim"), "keep\n").unwrap();
    std::os::unix::fs::symlink(env.path("victim"), env.path("m/x.prom")).unwrap();
    let run = env.run(&["--metrics", "m/x.prom", "out/"], b"one\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(fs::read(env.path("victim")).unwrap(), b"keep\n");
    assert!(
        fs::symlink_metadata(env.path("m/x.prom"))
            .unwrap()
            .is_file()
    );
    let text = fs::read_to_string(env.path("m/x.prom")).unwrap();
    assert!(text.contains("logpipe_input_lines_total{"), "{text}");
    let names: Vec<_> = fs::read_dir(env.path("m")).unwrap().collect();
    assert_eq!(names.len(), 1, "{names:?}");

    std::os::unix::fs::symlink(env.path("victim"), env.path("m/.x.prom.tmp")).unwrap();
    let run = env.run(&["--metrics", "m/x.prom", "out/"], b"two\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(fs::read(env.path("victim")).unwrap(), b"keep\n");
    let warning = "logpipe: warning: unable to write m/x.prom: \
                   m/.x.prom.tmp is in the way and is not a file logpipe made\n";
    assert_eq!(run.stderr, warning);
    assert_eq!(env.collated("out/current"), b"one\ntwo\n");
}

/// A --metrics file in a missing directory: one line, exit 1, nothing
/// made on disk.
#[test]
fn a_missing_metrics_directory_stops_before_anything_is_made() {
    let env = TestEnv::new();
    let run = env.run(&["--metrics", "nowhere/x.prom", "out/"], b"one\n");
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        "logpipe: unable to open directory nowhere: No such file or directory (os error 2)\n"
    );
    assert!(!env.path("out").exists());
    let usage = env.run(&["--metrics-interval", "5s", "out/"], b"");
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}

/// `promtool check metrics` accepts the file, label escaping included (a
/// target path with a double quote and a backslash).
#[test]
#[ignore = "installs prometheus with apt-get"]
fn promtool_accepts_the_file() {
    ensure_program("promtool", "prometheus");
    let env = TestEnv::new();
    let input = lines(0, 30);
    let run = env.run(
        &["--size", "100", "--metrics", "m.prom", "we\"ird\\dir/"],
        &input,
    );
    assert!(run.status.success(), "{run:?}");
    let text = fs::read_to_string(env.path("m.prom")).unwrap();
    assert!(text.contains(r#"we\"ird\\dir/current""#), "{text}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics: {said}\n{text}"
    );
    assert!(said.trim().is_empty(), "promtool has remarks: {said}");
}

/// While paused on a full disk, the file says so at once (it is written
/// from the pause, while the main loop waits), and once writes resume it
/// counts the time spent paused.
#[test]
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn a_pause_is_in_the_file_while_it_lasts() {
    let (env, _disk, filler) = nearly_full_disk("a_pause_is_in_the_file_while_it_lasts");
    let input = lines(0, 20_000); // 160 KB, more than the room left
    let mut child = env.spawn(&[
        "--compress",
        "none",
        "--metrics",
        "m.prom",
        "--metrics-interval",
        "1h",
        "mnt/out/",
    ]);
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let feed = input.clone();
    let producer = std::thread::spawn(move || {
        stdin.write_all(&feed).unwrap();
    });
    let target = env.path("mnt/out/current").display().to_string();
    let prom = env.path("m.prom");
    env.wait_until("the pause in the file", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("pausing")
            && samples(&prom, &target)["logpipe_paused"] == "1"
    });
    std::thread::sleep(Duration::from_millis(1500));
    fs::remove_file(&filler).unwrap();
    producer.join().unwrap();
    let run = env.finish(child, "logpipe on a full disk");
    assert!(run.status.success(), "{run:?}");
    let m = samples(&prom, &target);
    assert_eq!(m["logpipe_paused"], "0");
    let paused: f64 = m["logpipe_paused_seconds_total"].parse().unwrap();
    assert!(paused >= 1.0, "{paused}");
    assert_ne!(m["logpipe_write_errors_total"], "0");
    assert_eq!(m["logpipe_dropped_lines_total"], "0");
    assert_eq!(m["logpipe_input_lines_total"], "20000");
    assert_eq!(m["logpipe_written_bytes_total"], input.len().to_string());
    assert_eq!(env.collated_sha("mnt/out/current"), sha(&input));
}

/// `--on-full drop` on a full disk: the dropped lines and bytes in the
/// file are exactly what the marker lines in the log say.
#[test]
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn drops_on_a_full_disk_are_counted_exactly() {
    let (env, _disk, filler) = nearly_full_disk("drops_on_a_full_disk_are_counted_exactly");
    let during = lines(0, 40_000); // 320 KB, far more than the room left
    let mut child = env.spawn(&[
        "--on-full",
        "drop",
        "--compress",
        "none",
        "--metrics",
        "m.prom",
        "--metrics-interval",
        "1h",
        "mnt/out/",
    ]);
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&during).unwrap();
    let target = env.path("mnt/out/current").display().to_string();
    let prom = env.path("m.prom");
    env.wait_until("all input read", Duration::from_secs(30), || {
        stderr.lock().unwrap().contains("dropping input")
            && fs::read_to_string(&prom)
                .is_ok_and(|_| samples(&prom, &target)["logpipe_dropped_lines_total"] != "0")
    });
    fs::remove_file(&filler).unwrap();
    let after = lines(0, 10);
    stdin.write_all(&after).unwrap();
    drop(stdin);
    let run = env.finish(child, "logpipe --on-full drop on a full disk");
    assert!(run.status.success(), "{run:?}");
    let output = fs::read_to_string(env.path("mnt/out/current")).unwrap();
    let (mut lines_said, mut bytes_said) = (0u64, 0u64);
    for line in output
        .lines()
        .filter(|l| l.starts_with("logpipe: dropped "))
    {
        let words: Vec<&str> = line.split(' ').collect();
        lines_said += words[2].parse::<u64>().unwrap();
        bytes_said += words[4].trim_start_matches('(').parse::<u64>().unwrap();
    }
    assert!(lines_said > 0, "no marker line");
    let m = samples(&prom, &target);
    assert_eq!(m["logpipe_dropped_lines_total"], lines_said.to_string());
    assert_eq!(m["logpipe_dropped_bytes_total"], bytes_said.to_string());
    assert_eq!(m["logpipe_input_lines_total"], "40010");
    assert_ne!(m["logpipe_write_errors_total"], "0");
    assert_eq!(m["logpipe_paused"], "0");
    let written: u64 = m["logpipe_written_bytes_total"].parse().unwrap();
    assert_eq!(written, output.len() as u64);
}
