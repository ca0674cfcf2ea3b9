//! `--on-full prune` on a real full disk: the oldest finished segments go
//! to make room for new lines, and nothing else does.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::faults::{TMPFS, Tmpfs, collect_stderr, fill, numbered};
use crate::metrics::samples;
use crate::util::{TestEnv, clock_line, require_root, sha};

/// Lines of 64 hex digits from a fixed pseudo-random sequence: they
/// compress to about half, so segments stay large once compressed.
fn hex_lines(bytes: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(bytes + 65);
    while out.len() < bytes {
        for _ in 0..4 {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend(format!("{state:016x}").into_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// A size as the marker line gives it, written here independently: bytes
/// below 1 KiB, else one decimal below 10 units and none above.
fn human(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = "KiB";
    for next in ["MiB", "GiB"] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// A 4 MiB disk holding an earlier run's compressed segments, a
/// stranger's file named like the oldest segment, another target's
/// segment and a file of notes; then 8 MiB of new lines with `--on-full
/// prune --size 256K`. The run completes without a pause; every new line
/// is on disk, in order; the earlier segments that went are the oldest,
/// and exactly those the marker lines name, with their sizes; the rest
/// and everything else is untouched.
#[test]
#[ignore = "needs root: it mounts a small tmpfs to make a real full disk"]
fn prune_deletes_the_oldest_segments_and_nothing_else() {
    require_root("prune_deletes_the_oldest_segments_and_nothing_else", TMPFS);
    let env = TestEnv::new();

    // The earlier run, on an ordinary disk; it ends at the next midnight,
    // so its active file is rolled and left empty.
    let mut earlier = clock_line("2026-11-20T00:00:00Z").into_bytes();
    earlier.extend(hex_lines(6_200_000));
    earlier.extend(clock_line("2026-11-21T00:00:00Z").into_bytes());
    let prep = ["--debug-clock", "2026-11-20T00:00:00Z", "--size", "256K"];
    let run = env.run(&[&prep[..], &["prep/"]].concat(), &earlier);
    assert!(run.status.success(), "{run:?}");
    let old = env.segments("prep/current");
    assert!(
        old.len() >= 20 && old.iter().all(|s| s.gz),
        "{}",
        env.listing()
    );
    assert!(old.iter().zip(1..).all(|(s, n)| s.n == n));

    let _disk = Tmpfs::mount(&env.path("mnt"), "4m");
    let out = env.path("mnt/out");
    fs::create_dir(&out).unwrap();
    let mut sizes = Vec::new();
    for seg in &old {
        let name = seg.path.file_name().unwrap();
        fs::copy(&seg.path, out.join(name)).unwrap();
        sizes.push(fs::metadata(&seg.path).unwrap().len());
    }
    // Untouchable: a stranger's file with the oldest segment name of all,
    // another target's segment, and notes.
    let untouchable = [
        ("current.2026-11-19.1.gz", hex_lines(200_000)),
        ("other.2026-11-19.1.gz", hex_lines(200_000)),
        ("notes", b"not a log\n".to_vec()),
    ];
    for (name, bytes) in &untouchable {
        fs::write(out.join(name), bytes).unwrap();
    }
    std::os::unix::fs::chown(out.join("current.2026-11-19.1.gz"), Some(65534), None).unwrap();

    let new = numbered(0, 183_000);
    assert!(new.len() > 8 << 20);
    let mut input = clock_line("2026-11-21T00:00:01Z").into_bytes();
    input.extend(&new);
    let prom = env.path("prune.prom");
    let args = [
        "--metrics",
        prom.to_str().unwrap(),
        "--debug-clock",
        "2026-11-21T00:00:01Z",
        "--size",
        "256K",
        "--on-full",
        "prune",
        "mnt/out/",
    ];
    let run = env.run(&args, &input);
    assert!(run.status.success(), "{run:?}");

    // Every new line, in order, byte for byte.
    let segments = env.segments("mnt/out/current");
    let (now, before): (Vec<_>, Vec<_>) =
        segments.into_iter().partition(|s| s.date == "2026-11-21");
    let mut written: Vec<u8> = now.iter().flat_map(|s| s.read()).collect();
    written.extend(fs::read(out.join("current")).unwrap());
    assert_eq!(written.len(), new.len(), "{}", env.listing());
    assert_eq!(sha(&written), sha(&new));

    // The earlier segments left are the newest ones, untouched; the
    // stranger's file is older still, and stays.
    let (stranger, before): (Vec<_>, Vec<_>) =
        before.into_iter().partition(|s| s.date == "2026-11-19");
    assert_eq!(stranger.len(), 1);
    assert!(before.iter().all(|s| s.date == "2026-11-20"));
    let gone = old.len() - before.len();
    assert!(gone >= 1 && gone < old.len(), "{gone} gone; {}", run.stderr);
    for (seg, kept) in before.iter().zip(&old[gone..]) {
        assert_eq!(seg.n, kept.n);
        assert_eq!(fs::read(&seg.path).unwrap(), fs::read(&kept.path).unwrap());
    }
    for (name, bytes) in &untouchable {
        assert_eq!(&fs::read(out.join(name)).unwrap(), bytes, "{name}");
    }
    assert_eq!(
        fs::metadata(out.join("current.2026-11-19.1.gz"))
            .unwrap()
            .uid(),
        65534
    );

    // Nothing but marker lines, and they name exactly what went, in
    // runs of consecutive segments, with their sizes.
    let mut said = Vec::new();
    for line in run.stderr.lines() {
        let rest = line
            .strip_prefix("logpipe: info: pruned ")
            .unwrap_or_else(|| panic!("unexpected line: {line}\n{}", run.stderr));
        let (head, names) = rest.split_once(" to make room: ").expect(line);
        let first: usize = names
            .strip_prefix("current.2026-11-20.")
            .and_then(|n| n.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect(line);
        let last = names
            .split_once(" … .")
            .map_or(first, |(_, n)| n.parse().expect(line));
        let count = last - first + 1;
        let bytes: u64 = sizes[first - 1..last].iter().sum();
        let plural = if count == 1 { "" } else { "s" };
        assert_eq!(
            head,
            format!("{count} segment{plural} ({})", human(bytes)),
            "{line}"
        );
        said.push((first, last));
    }
    said.sort();
    let mut next = 1;
    for (first, last) in said {
        assert_eq!(first, next, "{}", run.stderr);
        next = last + 1;
    }
    assert_eq!(next - 1, gone, "{}", run.stderr);

    // And the metrics count them.
    let m = samples(&prom, out.join("current").to_str().unwrap());
    assert_eq!(m["logpipe_pruned_segments_total"], gone.to_string());
    let bytes: u64 = sizes[..gone].iter().sum();
    assert_eq!(m["logpipe_pruned_bytes_total"], bytes.to_string());
}

/// With only `--prune-keep` segments left, a full disk pauses as `block`
/// does, and resumes without a loss once there is room; the marker names
/// the one segment that went, and the kept ones stay.
#[test]
#[ignore = "needs root: it mounts a small tmpfs to make a real full disk"]
fn prune_keeps_the_newest_segments_then_pauses() {
    require_root("prune_keeps_the_newest_segments_then_pauses", TMPFS);
    let env = TestEnv::new();
    let _disk = Tmpfs::mount(&env.path("mnt"), "4m");
    let out = env.path("mnt/out");
    fs::create_dir(&out).unwrap();
    let old: Vec<_> = (1..=3)
        .map(|n| {
            let path = out.join(format!("current.2026-11-20.{n}.gz"));
            let bytes = hex_lines(200_000);
            fs::write(&path, &bytes).unwrap();
            (path, bytes)
        })
        .collect();
    let filler = fill(&env.path("mnt"), 64 << 10);

    // 400 KB in one active file: more than the free space and the first
    // segment together.
    let input = numbered(0, 9_000);
    let mut child = env.spawn(&[
        "--on-full",
        "prune",
        "--prune-keep",
        "2",
        "--size",
        "1M",
        "mnt/out/",
    ]);
    let stderr = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let feed = input.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
    env.wait_until("the pause", Duration::from_secs(60), || {
        stderr.lock().unwrap().contains("pausing")
    });
    fs::remove_file(&filler).unwrap();
    feeder.join().unwrap();
    let run = env.finish(child, "logpipe --on-full prune --prune-keep 2");
    assert!(run.status.success(), "{run:?}");

    assert_eq!(fs::read(out.join("current")).unwrap(), input);
    assert!(!old[0].0.exists());
    for (path, bytes) in &old[1..] {
        assert_eq!(&fs::read(path).unwrap(), bytes);
    }
    let stderr = stderr.lock().unwrap().clone();
    let mut lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    // The marker comes once a write went through: before the pause if one
    // did between the deletion and the pause, else when writing resumes.
    lines[..2].sort_by_key(|line| !line.contains("pruned"));
    assert_eq!(
        lines[1],
        "logpipe: warning: pausing: unable to write mnt/out/current: \
         No space left on device (os error 28)"
    );
    assert_eq!(
        lines[0],
        format!(
            "logpipe: info: pruned 1 segment ({}) to make room: current.2026-11-20.1",
            human(old[0].1.len() as u64)
        )
    );
    assert!(
        lines[2].starts_with("logpipe: info: resumed writing mnt/out/current after "),
        "{stderr}"
    );
}
