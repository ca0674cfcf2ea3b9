//! Retention and --on-rotate hooks.

use std::fs;
use std::time::{Duration, SystemTime};

use crate::corpus::Corpus;
use crate::util::{Seg, TestEnv, collated_sha_of, sha};

fn lines(seed: u64, bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    Corpus::new(seed).fill(&mut out, bytes);
    out
}

/// Files that are not this target's segments, planted before a run; each
/// must be there, unchanged, afterwards.
const STRANGERS: &[&str] = &[
    "notes.txt",
    "current.old",
    "other.2026-11-20.1",
    "current.2026-11-20.1.bak",
];

fn plant_strangers(env: &TestEnv) {
    fs::create_dir_all(env.path("out")).unwrap();
    for name in STRANGERS {
        fs::write(
            env.path(&format!("out/{name}")),
            format!("stranger {name}\n"),
        )
        .unwrap();
    }
}

fn check_strangers(env: &TestEnv) {
    for name in STRANGERS {
        let content = fs::read_to_string(env.path(&format!("out/{name}")));
        assert_eq!(
            content.ok(),
            Some(format!("stranger {name}\n")),
            "{name} was touched"
        );
    }
}

/// The kept segments are the newest ones: their numbers are the last ones
/// used, with no hole, and their content followed by the active file is
/// the end of the input.
fn check_kept_tail(env: &TestEnv, kept: &[Seg], highest: u64, input: &[u8]) {
    let numbers: Vec<u64> = kept.iter().map(|s| s.n).collect();
    let expected: Vec<u64> = (highest + 1 - kept.len() as u64..=highest).collect();
    assert_eq!(numbers, expected, "{}", env.listing());
    let tail: Vec<u8> = kept
        .iter()
        .flat_map(|s| s.read())
        .chain(fs::read(env.path("out/current")).unwrap())
        .collect();
    assert!(
        input.ends_with(&tail),
        "the kept segments are not the end of the input"
    );
}

#[test]
fn keep_deletes_the_oldest_by_date_then_number() {
    for compress in ["gzip", "none"] {
        let env = TestEnv::new();
        plant_strangers(&env);
        let input = lines(51, 40 << 10);
        let run = env.run(
            &[
                "--size",
                "3K",
                "--keep",
                "3",
                "--compress",
                compress,
                "out/",
            ],
            &input,
        );
        assert!(run.status.success(), "{run:?}");
        let kept = env.segments("out/current");
        // More than 10 segments were made, so (date, N) order differs from
        // string order; the numbers are contiguous per date in one run.
        let highest = fs::read_to_string(env.path("out/.current.state")).unwrap();
        let highest: u64 = highest.trim().rsplit_once('.').unwrap().1.parse().unwrap();
        assert!(highest > 10, "only {highest} segments");
        assert_eq!(kept.len(), 3, "{compress}: {}", env.listing());
        assert!(
            kept.iter().all(|s| s.gz == (compress == "gzip")),
            "{}",
            env.listing()
        );
        check_kept_tail(&env, &kept, highest, &input);
        check_strangers(&env);
    }
}

#[test]
fn max_total_keeps_the_newest_segments_that_fit() {
    let env = TestEnv::new();
    plant_strangers(&env);
    let input = lines(52, 64 << 10);
    let run = env.run(
        &[
            "--size",
            "4K",
            "--max-total",
            "10K",
            "--compress",
            "none",
            "out/",
        ],
        &input,
    );
    assert!(run.status.success(), "{run:?}");
    let kept = env.segments("out/current");
    let total: u64 = kept
        .iter()
        .map(|s| fs::metadata(&s.path).unwrap().len())
        .sum();
    assert!(total <= 10 << 10, "{total} bytes kept");
    // Segments hold just under 4 KiB: one more would not have fitted, so
    // only what had to go went.
    assert!(
        total > (10 << 10) - 4096,
        "{total} bytes kept: too much was deleted"
    );
    let highest = kept.last().unwrap().n;
    assert!(highest > 10);
    check_kept_tail(&env, &kept, highest, &input);
    check_strangers(&env);
}

#[test]
fn max_age_deletes_segments_finished_too_long_ago() {
    let env = TestEnv::new();
    plant_strangers(&env);
    let first = lines(53, 16 << 10);
    assert!(env.run(&["--size", "4K", "out/"], &first).status.success());
    let old = env.segments("out/current");
    assert!(old.len() >= 3);
    // Make them two hours old, as if finished then.
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    for seg in &old {
        fs::File::options()
            .write(true)
            .open(&seg.path)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    let second = lines(54, 16 << 10);
    let run = env.run(&["--size", "4K", "--max-age", "1h", "out/"], &second);
    assert!(run.status.success(), "{run:?}");
    let kept = env.segments("out/current");
    assert!(
        kept.iter()
            .all(|s| !old.iter().any(|o| o.n == s.n && o.date == s.date)),
        "{}",
        env.listing()
    );
    assert!(kept.len() >= 3, "{}", env.listing());
    // What is left is exactly the second run's segments and the active file.
    let active = fs::read(env.path("out/current")).unwrap();
    let kept_content: Vec<u8> = kept.iter().flat_map(|s| s.read()).chain(active).collect();
    let all = [first, second].concat();
    assert!(all.ends_with(&kept_content));
    assert!(
        kept_content.len() > 16 << 10,
        "the second run's segments were deleted too"
    );
    check_strangers(&env);
}

#[test]
fn on_rotate_runs_once_per_segment_in_order_with_the_final_path() {
    let env = TestEnv::new();
    let log = env.path("hooks.log");
    // The hook records its argument, and whether that file was complete
    // (a valid gzip file) when it ran.
    let hook = env.path("hook.sh");
    fs::write(
        &hook,
        format!(
            "if gzip -t \"$1\"; then echo \"ok $1\"; else echo \"bad $1\"; fi >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    let input = lines(55, 48 << 10);
    let command = format!("sh {}", hook.display());
    let run = env.run(&["--size", "4K", "--on-rotate", &command, "out/"], &input);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");

    let segments = env.segments("out/current");
    assert!(segments.len() > 10);
    // The hook gets the path as logpipe names it: TARGET's directory, then
    // the compressed segment's name.
    let expected: Vec<String> = segments
        .iter()
        .map(|s| format!("ok out/{}", s.path.file_name().unwrap().to_string_lossy()))
        .collect();
    let calls = fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls, expected);
    assert_eq!(
        collated_sha_of(&segments, &env.path("out/current")),
        sha(&input)
    );
}

#[test]
fn a_failing_hook_is_reported_and_logging_goes_on() {
    let env = TestEnv::new();
    let input = lines(56, 16 << 10);
    let run = env.run(
        &[
            "--size",
            "4K",
            "--compress",
            "none",
            "--on-rotate",
            "exit 3",
            "out/",
        ],
        &input,
    );
    assert!(run.status.success(), "{run:?}");
    let segments = env.segments("out/current");
    let warnings: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(warnings.len(), segments.len(), "{}", run.stderr);
    for (warning, seg) in warnings.iter().zip(&segments) {
        let name = seg.path.file_name().unwrap().to_string_lossy();
        let expected = format!(
            "logpipe: warning: --on-rotate for out/{name}: `exit 3` failed: exit status: 3"
        );
        assert_eq!(*warning, expected);
    }
    assert_eq!(env.collated_sha("out/current"), sha(&input));
}
