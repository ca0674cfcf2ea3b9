//! `--owner USER[:GROUP]`: every file and directory logpipe creates is
//! given to the user and group, by name or by number, through its
//! descriptor: a symbolic link planted where a file is to be created is
//! never followed, and what existed before is left as it is.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use logpipe::target::Target;

use crate::util::{TestEnv, clock_line, require_root};

const CHOWN: &str = "only root may give files to another user";

/// The uid and gid of `name` in /etc/passwd and /etc/group, read here
/// independently of logpipe's own parser.
fn ids(user: &str, group: &str) -> (u32, u32) {
    let find = |file: &str, name: &str| {
        fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[0] == name)
            .unwrap_or_else(|| panic!("this test needs '{name}' in {file}"))[2]
            .parse()
            .unwrap()
    };
    (find("/etc/passwd", user), find("/etc/group", group))
}

/// Lines of input over two days, so that segments are finished, compressed
/// and numbered (the state file is written).
fn input() -> (Vec<u8>, Vec<u8>) {
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for i in 0..400 {
        if i == 200 {
            input.extend(clock_line("2026-11-21T10:00:00Z").into_bytes());
        }
        let line = format!("line {i:04} of the log\n");
        input.extend(line.as_bytes());
        expected.extend(line.as_bytes());
    }
    (input, expected)
}

fn owner_of(path: &Path) -> (u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

/// Runs logpipe with `--owner SPEC` on `a/b/out/` (with `a` made by the
/// test, `b` and `out` by logpipe), then again with symbolic links planted,
/// once it has started, at the name of the first segment and at the
/// compressed temporary of the one it then takes, and checks the owner of
/// everything: `want` for what logpipe created, root for the rest.
fn check_owner(spec: &str, want: (u32, u32)) {
    let env = TestEnv::new();
    fs::create_dir(env.path("a")).unwrap();
    let victim = env.path("victim");
    fs::write(&victim, "precious\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    let args = [
        "--owner",
        spec,
        "--size",
        "2K",
        "--debug-clock",
        "2026-11-20T10:00:00Z",
        "a/b/out/",
    ];
    // The first run makes the directories and the active file and lock.
    let run = env.run(&args, &clock_line("2026-11-20T09:00:00Z").into_bytes());
    assert!(run.status.success(), "{spec}: {run:?}");
    assert_eq!(run.stderr, "", "{spec}");
    for dir in ["a/b", "a/b/out"] {
        assert_eq!(owner_of(&env.path(dir)), want, "{spec}: {dir}");
    }
    assert_eq!(owner_of(&env.path("a")), (0, 0), "{spec}: a existed before");

    // Links planted once logpipe has taken the lock (and so has read the
    // numbers in use): the first segment steps around the one at its name,
    // and the one it then takes stays plain beside the link at its
    // compressed temporary. The file behind them keeps its owner.
    let out = env.path("a/b/out");
    let target = Target::resolve(&out.join("current"), None).unwrap();
    let mut child = env.spawn(&args);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(clock_line("2026-11-20T10:00:00Z").as_bytes())
        .unwrap();
    let pid = child.id().to_string();
    env.wait_until("the lock taken", Duration::from_secs(60), || {
        fs::read_to_string(target.lock()).is_ok_and(|text| text.trim() == pid)
    });
    let traps = [
        out.join("current.2026-11-20.1"),
        out.join("current.2026-11-20.2.gz.tmp"),
    ];
    for trap in &traps {
        symlink(&victim, trap).unwrap();
    }
    let (input, expected) = input();
    stdin.write_all(&input).unwrap();
    drop(stdin);
    let run = env.finish(child, spec);
    assert!(run.status.success(), "{spec}: {run:?}");
    assert!(
        run.stderr
            .contains("leaving a/b/out/current.2026-11-20.2 uncompressed"),
        "{spec}: {}",
        run.stderr
    );
    assert_eq!(owner_of(&victim), (0, 0), "{spec}: victim chowned");
    assert_eq!(fs::read(&victim).unwrap(), b"precious\n", "{spec}");
    for trap in &traps {
        assert!(fs::symlink_metadata(trap).unwrap().is_symlink());
    }

    // The segments logpipe made: all but the link at the first name.
    let segments: Vec<_> = env
        .segments("a/b/out/current")
        .into_iter()
        .filter(|s| s.path != traps[0])
        .collect();
    assert!(segments.len() > 4, "{spec}: {}", env.listing());
    assert!(!segments[0].gz && segments[1..].iter().all(|s| s.gz));
    let mut collated: Vec<u8> = segments.iter().flat_map(|s| s.read()).collect();
    collated.extend(fs::read(target.active()).unwrap());
    assert_eq!(collated, expected, "{spec}");
    let mut checked = vec![target.lock(), target.state(), target.active()];
    checked.extend(segments.iter().map(|s| s.path.clone()));
    for path in &checked {
        assert_eq!(owner_of(path), want, "{spec}: {}", path.display());
    }
    // Nothing else is in the directory but the traps.
    let count = fs::read_dir(&out).unwrap().count();
    assert_eq!(
        count,
        checked.len() + traps.len(),
        "{spec}: {}",
        env.listing()
    );
}

/// By name and by number, user and group.
#[test]
#[ignore = "needs root: it gives files to another user"]
fn every_created_file_and_directory_is_given_away() {
    require_root("every_created_file_and_directory_is_given_away", CHOWN);
    let (uid, gid) = ids("nobody", "adm");
    check_owner("nobody:adm", (uid, gid));
    check_owner(&format!("{uid}:{gid}"), (uid, gid));
}

/// `:GROUP` changes only the group; `USER` only the owner.
#[test]
#[ignore = "needs root: it gives files to another user"]
fn group_alone_or_user_alone() {
    require_root("group_alone_or_user_alone", CHOWN);
    let (uid, gid) = ids("nobody", "adm");
    check_owner(":adm", (0, gid));
    check_owner("nobody", (uid, 0));
}

/// What exists already is not changed, and said once; logpipe goes on
/// writing it (the active file of another owner is appended to), and
/// runs again on files given to the `--owner` user.
#[test]
#[ignore = "needs root: it gives files to another user"]
fn existing_files_are_left_and_said_once() {
    require_root("existing_files_are_left_and_said_once", CHOWN);
    let (uid, gid) = ids("nobody", "adm");
    let env = TestEnv::new();
    fs::create_dir(env.path("out")).unwrap();
    fs::write(env.path("out/current"), "old line\n").unwrap();
    let run = env.run(&["--owner", "nobody:adm", "out/"], b"new line\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        run.stderr,
        "logpipe: info: --owner nobody:adm applies to what logpipe creates; these exist \
         with another owner and are left as they are: out/ (0:0), out/current (0:0)\n"
    );
    assert_eq!(owner_of(&env.path("out")), (0, 0));
    assert_eq!(owner_of(&env.path("out/current")), (0, 0));
    let target = Target::resolve(&env.path("out/current"), None).unwrap();
    assert_eq!(owner_of(&target.lock()), (uid, gid));
    assert_eq!(
        fs::read(env.path("out/current")).unwrap(),
        b"old line\nnew line\n"
    );
    // The lock given to nobody is logpipe's own at the next start.
    let first = run.stderr;
    let run = env.run(&["--owner", "nobody:adm", "out/"], b"third\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, first);
}

/// An unknown name is bad usage, named, and nothing is created.
#[test]
fn unknown_names_are_refused_before_anything_is_created() {
    let env = TestEnv::new();
    for (spec, why) in [
        (
            "no-such-user-logpipe",
            "no user 'no-such-user-logpipe' in /etc/passwd",
        ),
        (
            ":no-such-group-logpipe",
            "no group 'no-such-group-logpipe' in /etc/group",
        ),
        ("4294967295", "'4294967295' is not a valid id"),
    ] {
        let run = env.run(&["--owner", spec, "out/"], b"x\n");
        assert_eq!(run.status.code(), Some(2), "{spec}: {run:?}");
        assert!(
            run.stderr.starts_with(&format!(
                "error: invalid value '{spec}' for '--owner <USER[:GROUP]>': {why}\n"
            )),
            "{spec}: {}",
            run.stderr
        );
        assert!(!env.path("out").exists(), "{spec}");
    }
}

/// The directories made again after they were removed while logpipe runs
/// are given away too, with the lock and the active file made in them.
#[test]
#[ignore = "needs root: it gives files to another user"]
fn directories_made_again_are_given_away() {
    require_root("directories_made_again_are_given_away", CHOWN);
    let want = ids("nobody", "adm");
    let env = TestEnv::new();
    let mut child = env.spawn(&["--owner", "nobody:adm", "logs/out/"]);
    let mut stdin = child.stdin.take().unwrap();
    let timeout = Duration::from_secs(30);
    stdin.write_all(b"first\n").unwrap();
    env.wait_until("the first line", timeout, || {
        fs::read(env.path("logs/out/current")).is_ok_and(|b| b == b"first\n")
    });
    fs::remove_dir_all(env.path("logs")).unwrap();
    stdin.write_all(b"second\n").unwrap();
    env.wait_until("the directory made again", timeout, || {
        fs::read(env.path("logs/out/current")).is_ok_and(|b| b == b"first\nsecond\n")
    });
    drop(stdin);
    let run = env.finish(child, "logpipe --owner whose directory was removed");
    assert!(run.status.success(), "{run:?}");
    let target = Target::resolve(&env.path("logs/out/current"), None).unwrap();
    for path in [
        env.path("logs"),
        env.path("logs/out"),
        target.active(),
        target.lock(),
    ] {
        assert_eq!(owner_of(&path), want, "{}", path.display());
    }
}

/// A symbolic link on the way to TARGET (`/var/log/app -> /data/app`) is
/// followed, as before, and what it points to keeps its owner; only the
/// directory made below it is given away.
#[test]
#[ignore = "needs root: it gives files to another user"]
fn a_link_on_the_way_is_followed_and_not_given_away() {
    require_root("a_link_on_the_way_is_followed_and_not_given_away", CHOWN);
    let want = ids("nobody", "adm");
    let env = TestEnv::new();
    fs::create_dir(env.path("data")).unwrap();
    symlink(env.path("data"), env.path("logs")).unwrap();
    let run = env.run(&["--owner", "nobody:adm", "logs/app/"], b"line\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(owner_of(&env.path("logs")), (0, 0));
    assert_eq!(owner_of(&env.path("data")), (0, 0));
    assert_eq!(owner_of(&env.path("data/app")), want);
    assert_eq!(fs::read(env.path("data/app/current")).unwrap(), b"line\n");
    assert_eq!(owner_of(&env.path("data/app/current")), want);
}
