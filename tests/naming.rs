//! Segment names across restarts: appended, continued, never replaced,
//! never reused; and one writer per target.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::corpus::lines;
use crate::util::{Seg, TestEnv, check_segments, collated_sha_of, segments_in, sha};

/// The instant the manual clock (`--debug-clock`) shows in the tests that
/// name segments after the day: the real date could change mid-test.
const NOW: &str = "2026-11-21T12:00:00Z";
const TODAY: &str = "2026-11-21";

#[test]
fn three_runs_continue_the_files_and_the_numbering() {
    let env = TestEnv::new();
    let args = ["--size", "32K", "out/"];
    let first = lines(1, 1 << 20);
    let mut second = lines(2, 1 << 20);
    second.extend_from_slice(b"second run ends without a newline");
    let third = lines(3, 1 << 20);

    assert!(env.run(&args, &first).status.success());
    let after_first: Vec<(Seg, u64, String)> = env
        .segments("out/current")
        .into_iter()
        .map(|s| {
            let ino = fs::metadata(&s.path).unwrap().ino();
            let digest = sha(&s.read());
            (s, ino, digest)
        })
        .collect();
    assert!(after_first.len() > 20);
    let run = env.run(&args, &second);
    assert!(run.status.success(), "{run:?}");
    let run = env.run(&args, &third);
    assert!(run.status.success(), "{run:?}");

    // Nothing finished by the first run was replaced or changed.
    for (seg, ino, digest) in &after_first {
        let meta = fs::metadata(&seg.path).unwrap();
        assert_eq!(meta.ino(), *ino, "{} was replaced", seg.path.display());
        assert_eq!(sha(&seg.read()), *digest, "{} changed", seg.path.display());
    }
    // Numbers run on without a gap or a repeat, per date.
    let segments = env.segments("out/current");
    let mut next = BTreeMap::new();
    for seg in &segments {
        let n = next.entry(seg.date.clone()).or_insert(1);
        assert_eq!(seg.n, *n, "{}\n{}", seg.path.display(), env.listing());
        *n += 1;
    }
    check_segments(&segments, 32 << 10);
    let expected = [first, second, b"\n".to_vec(), third].concat();
    assert_eq!(env.collated_sha("out/current"), sha(&expected));
}

#[test]
fn a_file_with_the_next_name_is_never_overwritten() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    let day = TODAY;
    let mut planted = BTreeMap::new();
    let mut plant = |n: u64| {
        let path = env.path(&format!("out/current.{day}.{n}"));
        let content = format!("planted as number {n}\n");
        fs::write(&path, &content).unwrap();
        planted.insert(path, content);
    };
    // One before the start, seen by the directory scan...
    plant(1);
    // Without compression: a plain file named like a segment that is there
    // at start would be taken for a crash leftover and compressed.
    let mut child = env.spawn(&[
        "--debug-clock",
        NOW,
        "--size",
        "4K",
        "--compress",
        "none",
        "out/",
    ]);
    let mut stdin = child.stdin.take().unwrap();
    let first = lines(11, 9 << 10);
    stdin.write_all(&first).unwrap();
    env.wait_until("the first input on disk", Duration::from_secs(30), || {
        env.bytes_on_disk(&["out"]) == first.len() as u64 + planted_len(day, &env)
    });
    // ...and two while running, under the very next names, which only the
    // no-replace link at rotation can notice.
    let highest = env.segments("out/current").last().unwrap().n;
    assert!(highest >= 2, "{}", env.listing());
    plant(highest + 1);
    plant(highest + 2);
    let second = lines(12, 64 << 10);
    stdin.write_all(&second).unwrap();
    drop(stdin);
    let run = env.finish(child, "logpipe --size 4K --compress none out/");
    assert!(run.status.success(), "{run:?}");

    for (path, content) in &planted {
        assert_eq!(
            fs::read_to_string(path).unwrap(),
            *content,
            "{} was overwritten",
            path.display()
        );
    }
    let written: Vec<Seg> = env
        .segments("out/current")
        .into_iter()
        .filter(|s| !planted.contains_key(&s.path))
        .collect();
    assert_eq!(
        collated_sha_of(&written, &env.path("out/current")),
        sha(&[first, second].concat())
    );
}

/// Bytes of the planted files present for `day` (they count as segments
/// in `bytes_on_disk`).
fn planted_len(day: &str, env: &TestEnv) -> u64 {
    env.segments("out/current")
        .iter()
        .filter(|s| s.date == day && s.read().starts_with(b"planted"))
        .map(|s| fs::metadata(&s.path).unwrap().len())
        .sum()
}

#[test]
fn names_are_never_reused_after_segments_move_away() {
    let env = TestEnv::new();
    let args = ["--size", "4K", "out/"];
    fs::create_dir(env.path("shipped")).unwrap();
    // Like a log shipper with compression on, take finished `.gz` files.
    let ship = || {
        for seg in env.segments("out/current").into_iter().filter(|s| s.gz) {
            fs::rename(
                &seg.path,
                env.path("shipped").join(seg.path.file_name().unwrap()),
            )
            .unwrap();
        }
    };
    let mut inputs = Vec::new();

    // Between two runs: the second run must not start again at 1.
    inputs.push(lines(21, 64 << 10));
    assert!(env.run(&args, &inputs[0]).status.success());
    ship();

    // During a run: numbering carries on past what moved away.
    let mut child = env.spawn(&args);
    let mut stdin = child.stdin.take().unwrap();
    let mut fed = 0;
    for seed in 22..25 {
        let input = lines(seed, 64 << 10);
        stdin.write_all(&input).unwrap();
        fed += input.len() as u64;
        inputs.push(input);
        let before = inputs[0].len() as u64;
        env.wait_until("the input on disk", Duration::from_secs(30), || {
            env.bytes_on_disk(&["out", "shipped"]) == before + fed
        });
        ship();
    }
    drop(stdin);
    let run = env.finish(child, "logpipe --size 4K out/");
    assert!(run.status.success(), "{run:?}");

    // Every segment that ever existed has its own name, and they collate.
    let mut all = segments_in(&env.path("shipped/current"));
    all.extend(env.segments("out/current"));
    all.sort();
    let names: BTreeSet<_> = all.iter().map(|s| (s.date.clone(), s.n)).collect();
    assert_eq!(names.len(), all.len(), "a name was used twice");
    assert!(all.len() > 40);
    assert!(all.iter().all(|s| s.gz), "{}", env.listing());
    assert_eq!(
        collated_sha_of(&all, &env.path("out/current")),
        sha(&inputs.concat())
    );
}

#[test]
fn a_second_instance_on_the_same_target_is_refused() {
    let env = TestEnv::new();
    let mut first = env.spawn(&["out/"]);
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(b"from the first instance\n").unwrap();
    env.wait_until("the first instance's lock", Duration::from_secs(30), || {
        fs::read_to_string(env.path("out/.current.lock"))
            .is_ok_and(|pid| pid.trim() == first.id().to_string())
    });

    let second = env.run(&["out/"], b"from the second instance\n");
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    let expected = format!(
        "logpipe: unable to lock {}: held by pid {}",
        "out/.current.lock",
        first.id()
    );
    assert!(second.stderr.starts_with(&expected), "{:?}", second.stderr);
    assert_eq!(second.stderr.lines().count(), 1, "{:?}", second.stderr);

    drop(stdin);
    let run = env.finish(first, "logpipe out/");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        fs::read(env.path("out/current")).unwrap(),
        b"from the first instance\n"
    );
}

#[test]
fn an_active_file_from_an_earlier_day_is_rolled_first_under_that_day() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    let earlier = b"written on the fifth of January\n".to_vec();
    fs::write(env.path("out/current"), &earlier).unwrap();
    let last_written: std::time::SystemTime =
        jiff::Timestamp::from_second(1_767_614_400).unwrap().into(); // 2026-01-05T12:00:00Z
    fs::File::options()
        .write(true)
        .open(env.path("out/current"))
        .unwrap()
        .set_modified(last_written)
        .unwrap();

    let later = lines(41, 4 << 10);
    let run = env.run(&["--debug-clock", NOW, "--size", "1K", "out/"], &later);
    assert!(run.status.success(), "{run:?}");
    let segments = env.segments("out/current");
    assert_eq!(segments[0].date, "2026-01-05", "{}", env.listing());
    assert!(segments[0].read() == earlier, "{}", env.listing());
    assert!(
        segments[1..].iter().all(|s| s.date == TODAY),
        "{}",
        env.listing()
    );
    assert_eq!(
        env.collated_sha("out/current"),
        sha(&[earlier, later].concat())
    );
}

/// A target written by an earlier version has `current.lock` and
/// `current.state`: at start they move out of the way of readers' globs to
/// `.current.lock` and `.current.state`, and the numbering goes on.
#[test]
fn companion_files_of_an_earlier_release_move_and_the_numbering_goes_on() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    fs::write(env.path("out/current.lock"), "4242\n").unwrap();
    fs::write(env.path("out/current.state"), format!("{TODAY}.7\n")).unwrap();
    fs::write(env.path("out/current"), b"left by the old release\n").unwrap();
    // Last written an hour before the manual clock's instant.
    fs::File::options()
        .write(true)
        .open(env.path("out/current"))
        .unwrap()
        .set_modified(jiff::Timestamp::from_second(1_795_258_800).unwrap().into())
        .unwrap();
    let input = lines(4, 64 << 10);
    let run = env.run(&["--debug-clock", NOW, "--size", "16K", "out/"], &input);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        run.stderr,
        "logpipe: info: moved out/current.state to out/.current.state (its name in this version)\n"
    );
    assert!(!env.path("out/current.lock").exists(), "{}", env.listing());
    assert!(!env.path("out/current.state").exists(), "{}", env.listing());
    assert!(env.path("out/.current.lock").exists());
    let segments = env.segments("out/current");
    assert_eq!(segments[0].n, 8, "{}", env.listing());
    let mut expected = b"left by the old release\n".to_vec();
    expected.extend_from_slice(&input);
    assert_eq!(sha(&env.collated("out/current")), sha(&expected));
    let state = fs::read_to_string(env.path("out/.current.state")).unwrap();
    let last = segments.last().unwrap();
    assert_eq!(state.trim_end(), format!("{TODAY}.{}", last.n));
    // A reader's glob now finds log data only.
    let mut names: Vec<String> = fs::read_dir(env.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("current"))
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n == "current" || n.starts_with(&format!("current.{TODAY}."))),
        "{names:?}"
    );
}

/// An older logpipe still writing the target holds `current.lock`: the new
/// one refuses to start beside it, as it refuses any second writer.
#[test]
fn an_older_release_still_running_is_refused() {
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    fs::write(env.path("out/current.lock"), "4242\n").unwrap();
    let held = fs::File::open(env.path("out/current.lock")).unwrap();
    held.lock().unwrap();
    let run = env.run(&["out/"], b"line\n");
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        "logpipe: unable to lock out/.current.lock: out/current.lock is held by pid 4242, an earlier version of logpipe on this target\n"
    );
    assert!(!env.path("out/current").exists(), "nothing was written");
}
