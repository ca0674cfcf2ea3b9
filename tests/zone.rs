//! Time zones where there is no zone database: the binary alone in an
//! empty root directory, as in a `FROM scratch` or distroless container.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{Run, TestEnv, clock_line, require_root, segments_in};

/// Makes `root` a directory holding only the logpipe binary (as
/// `/logpipe`), the shared libraries it loads (found with `ldd`), and
/// `/dev/null`, which a container runtime always provides. No
/// /usr/share/zoneinfo, no /etc/localtime.
fn scratch_root(root: &Path) {
    let binary = Path::new(env!("CARGO_BIN_EXE_logpipe"));
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::copy(binary, root.join("logpipe")).unwrap();
    let ldd = Command::new("ldd").arg(binary).output().expect("run ldd");
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, and the
    // loader as `/lib64/ld-linux-x86-64.so.2 (0x…)`; a static binary has
    // none ("not a dynamic executable").
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|word| word.starts_with('/'))
            .map(PathBuf::from);
        let Some(path) = path else { continue };
        let inside = root.join(path.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::copy(&path, &inside).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
    }
    let null = root.join("dev/null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod {}", null.display());
    assert!(!root.join("usr/share/zoneinfo").exists());
    assert!(!root.join("etc/localtime").exists());
}

/// Runs `/logpipe ARGS` chrooted into `root` with only `TZ` (if any) in
/// its environment, on `input`.
fn run_chrooted(
    env: &TestEnv,
    root: &Path,
    tz: Option<&str>,
    args: &[&str],
    input: &[u8],
) -> crate::util::Run {
    // By its path: with the environment cleared, Command would look for it
    // in the child's (empty) PATH.
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("chroot (coreutils)");
    let mut cmd = Command::new(chroot);
    cmd.arg(root).arg("/logpipe").args(args).env_clear();
    if let Some(tz) = tz {
        cmd.env("TZ", tz);
    }
    cmd.stdout(Stdio::null());
    env.run_cmd(cmd, input)
}

/// The moves of the manual clock across Berlin's midnight in summer:
/// 21:59Z on 1 July is 23:59 in Berlin (CEST, +2) and 22:00:01Z is past
/// it, so with `--every 1d` a segment of 1 July is rolled. In UTC both
/// are on 1 July and nothing is rolled.
const START: &str = "2026-07-01T21:59:00Z";

fn across_berlin_midnight() -> Vec<u8> {
    [
        "before midnight in Berlin\n".to_string(),
        clock_line("2026-07-01T22:00:01Z"),
        "after midnight in Berlin\n".to_string(),
    ]
    .concat()
    .into_bytes()
}

/// Each `TZ` (None: unset), and whether it is Berlin's zone (else UTC).
fn tz_forms(with_unset: bool) -> Vec<(Option<&'static str>, bool)> {
    let berlin = [
        "Europe/Berlin",
        ":Europe/Berlin",
        "CET-1CEST,M3.5.0,M10.5.0/3",
    ];
    let utc = [
        Some(""),
        Some("UTC"),
        Some("UTC0"),
        Some(":UTC"),
        Some("Etc/UTC"),
    ];
    let unset = with_unset.then_some((None, false));
    berlin
        .into_iter()
        .map(|tz| (Some(tz), true))
        .chain(utc.into_iter().map(|tz| (tz, false)))
        .chain(unset)
        .collect()
}

/// Checks what a run across Berlin's midnight left in `active`'s directory.
fn check_across_berlin_midnight(tz: Option<&str>, in_berlin: bool, run: &Run, active: &Path) {
    assert!(run.status.success(), "TZ={tz:?}: {run:?}");
    assert_eq!(run.stderr, "", "TZ={tz:?}: a warning");
    let segments = segments_in(active);
    let names: Vec<String> = segments
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    if in_berlin {
        assert_eq!(names, ["current.2026-07-01.1"], "TZ={tz:?}");
        assert_eq!(
            segments[0].read(),
            b"before midnight in Berlin\n",
            "TZ={tz:?}"
        );
        assert_eq!(fs::read(active).unwrap(), b"after midnight in Berlin\n");
    } else {
        assert!(names.is_empty(), "TZ={tz:?}: {names:?}");
    }
    // Byte for byte, whatever the zone.
    let mut all: Vec<u8> = segments.iter().flat_map(|s| s.read()).collect();
    all.extend(fs::read(active).unwrap());
    assert_eq!(
        all, b"before midnight in Berlin\nafter midnight in Berlin\n",
        "TZ={tz:?}"
    );
}

const ARGS: [&str; 7] = [
    "--every",
    "1d",
    "--compress",
    "none",
    "--debug-clock",
    START,
    "out/",
];

#[test]
fn every_form_of_tz_works_with_an_empty_zone_directory() {
    // TZDIR moves the lookup by name to an empty directory: the zones
    // come from the rules in TZ, or from the copy built into logpipe.
    for (tz, in_berlin) in tz_forms(false) {
        let env = TestEnv::new();
        fs::create_dir(env.path("zoneinfo")).unwrap();
        let mut cmd = env.cmd(&ARGS);
        cmd.env("TZ", tz.unwrap())
            .env("TZDIR", env.path("zoneinfo"));
        let run = env.run_cmd(cmd, &across_berlin_midnight());
        check_across_berlin_midnight(tz, in_berlin, &run, &env.path("out/current"));
    }
}

#[test]
#[ignore = "needs root: chroot"]
fn every_form_of_tz_works_in_an_empty_root() {
    require_root("every_form_of_tz_works_in_an_empty_root", "chroot");
    for (tz, in_berlin) in tz_forms(true) {
        let env = TestEnv::new();
        let root = env.path("root");
        scratch_root(&root);
        let mut args = ARGS;
        args[6] = "/out/";
        let run = run_chrooted(&env, &root, tz, &args, &across_berlin_midnight());
        check_across_berlin_midnight(tz, in_berlin, &run, &root.join("out/current"));
    }
}

#[test]
#[ignore = "needs root: chroot"]
fn timestamps_carry_the_zone_found_in_an_empty_root() {
    require_root("timestamps_carry_the_zone_found_in_an_empty_root", "chroot");
    let env = TestEnv::new();
    let root = env.path("root");
    scratch_root(&root);
    let args = [
        "--timestamp",
        "rfc3339",
        "--compress",
        "none",
        "--debug-clock",
        "2026-01-15T12:00:00Z",
        "/out/",
    ];
    let run = run_chrooted(&env, &root, Some("America/New_York"), &args, b"a line\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(
        fs::read_to_string(root.join("out/current")).unwrap(),
        "2026-01-15T07:00:00.000000-05:00 a line\n"
    );
}

#[test]
#[ignore = "needs root: chroot"]
fn a_zone_that_is_nowhere_is_one_warning_and_utc() {
    require_root("a_zone_that_is_nowhere_is_one_warning_and_utc", "chroot");
    let env = TestEnv::new();
    let root = env.path("root");
    scratch_root(&root);
    let args = ["--compress", "none", "/out/"];
    let run = run_chrooted(&env, &root, Some("Nowhere/Atlantis"), &args, b"a line\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        run.stderr,
        "logpipe: warning: unable to find the local time zone, using UTC: \
         TZ=Nowhere/Atlantis: no zone Nowhere/Atlantis in /usr/share/zoneinfo \
         nor in the zone database built into logpipe\n"
    );
    assert_eq!(fs::read(root.join("out/current")).unwrap(), b"a line\n");
}
