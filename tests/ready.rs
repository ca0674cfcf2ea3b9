//! Readiness and supervision: `--ready-fd` (s6's notification-fd) and
//! systemd's `NOTIFY_SOCKET` (`READY=1`, `STATUS=`, `STOPPING=1`,
//! `WATCHDOG=1`), on the real binary.

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::faults::Tmpfs;
use crate::util::{TestEnv, require_root};

/// logpipe with `--ready-fd 3`, descriptor 3 opened by a shell on
/// `ready` (in append mode), then `args`.
fn with_ready_fd(env: &TestEnv, ready: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec \"$0\" --ready-fd 3 \"$@\" 3>>{ready}"))
        .arg(env!("CARGO_BIN_EXE_logpipe"))
        .args(args)
        .current_dir(env.path(""))
        .env("TZ", "UTC")
        .env_remove("NOTIFY_SOCKET");
    cmd
}

/// The messages that arrive on `socket` within `timeout` after the last.
fn messages(socket: &UnixDatagram, timeout: Duration) -> Vec<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

fn listener(env: &TestEnv) -> (UnixDatagram, std::path::PathBuf) {
    let path = env.path("notify");
    (UnixDatagram::bind(&path).unwrap(), path)
}

/// Readiness is one newline, written once the lock is held and the active
/// file exists; a second logpipe on the same target, refused the lock,
/// writes none. The data goes through untouched.
#[test]
fn ready_fd_gets_one_newline_once_the_lock_is_held() {
    let env = TestEnv::new();
    fs::write(env.path("ready"), b"").unwrap();
    let mut first = env.spawn_cmd(with_ready_fd(&env, "ready", &["out/"]));
    let mut stdin = first.stdin.take().unwrap();
    env.wait_until("readiness", Duration::from_secs(30), || {
        fs::metadata(env.path("ready")).is_ok_and(|m| m.len() > 0)
    });
    // Ready: the lock names this logpipe, and the active file is there.
    assert_eq!(
        fs::read_to_string(env.path("out/.current.lock"))
            .unwrap()
            .trim(),
        first.id().to_string()
    );
    assert!(env.path("out/current").is_file());
    stdin.write_all(b"from the first instance\n").unwrap();

    fs::write(env.path("ready2"), b"").unwrap();
    let second = env.run_cmd(with_ready_fd(&env, "ready2", &["out/"]), b"second\n");
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(
        second
            .stderr
            .starts_with("logpipe: unable to lock out/.current.lock: held by pid"),
        "{second:?}"
    );
    assert_eq!(fs::read(env.path("ready2")).unwrap(), b"");

    drop(stdin);
    let run = env.finish(first, "logpipe --ready-fd 3 out/");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(fs::read(env.path("ready")).unwrap(), b"\n");
    assert_eq!(
        fs::read(env.path("out/current")).unwrap(),
        b"from the first instance\n"
    );
}

/// A descriptor that is not open (one above any open-file limit Linux
/// allows, as a small one may be inherited from the test harness) stops
/// logpipe with one line, exit 1; a descriptor number below 3, or not a
/// number, is bad usage.
#[test]
fn ready_fd_not_open_or_bad() {
    let env = TestEnv::new();
    let run = env.run(&["--ready-fd", "2000000000", "out/"], b"x\n");
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    assert!(
        run.stderr.starts_with(
            "logpipe: unable to write readiness to descriptor 2000000000: Bad file descriptor"
        ),
        "{run:?}"
    );
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    for bad in ["-1", "0", "1", "2", "x", "99999999999"] {
        let run = env.run(&[&format!("--ready-fd={bad}"), "bad/"], b"x\n");
        assert_eq!(run.status.code(), Some(2), "--ready-fd {bad}: {run:?}");
        assert!(
            run.stderr
                .contains("expected a descriptor number of 3 or more"),
            "{run:?}"
        );
    }
    assert!(!env.path("bad").exists());
}

/// Under systemd: READY=1, then STATUS=writing, then STOPPING=1 at end of
/// input, each in its own datagram; the data goes through untouched.
#[test]
fn notify_socket_gets_ready_status_stopping_in_order() {
    let env = TestEnv::new();
    let (socket, path) = listener(&env);
    let mut cmd = env.cmd(&["out/"]);
    cmd.env("NOTIFY_SOCKET", &path).env_remove("WATCHDOG_USEC");
    let input: Vec<u8> = (0..10_000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let run = env.run_cmd(cmd, &input);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(
        messages(&socket, Duration::from_millis(200)),
        ["READY=1", "STATUS=writing", "STOPPING=1"]
    );
    assert_eq!(fs::read(env.path("out/current")).unwrap(), input);
}

/// SIGTERM: STOPPING=1 too, after READY=1 and STATUS=writing.
#[test]
fn notify_socket_gets_stopping_on_sigterm() {
    let env = TestEnv::new();
    let (socket, path) = listener(&env);
    let mut cmd = env.cmd(&["out/"]);
    cmd.env("NOTIFY_SOCKET", &path).env_remove("WATCHDOG_USEC");
    let mut child = env.spawn_cmd(cmd);
    let mut stdin = child.stdin.take().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    stdin.write_all(b"before the signal\n").unwrap();
    env.wait_until("the line", Duration::from_secs(30), || {
        fs::read(env.path("out/current")).is_ok_and(|d| d == b"before the signal\n")
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run = env.finish(child, "logpipe out/ with SIGTERM");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        messages(&socket, Duration::from_millis(200)),
        ["STATUS=writing", "STOPPING=1"]
    );
    drop(stdin);
}

/// WATCHDOG_USEC=200000: WATCHDOG=1 about every 100 ms while logpipe
/// waits for input; none when WATCHDOG_PID names another process.
#[test]
fn watchdog_pings_at_half_the_interval() {
    let env = TestEnv::new();
    let (socket, path) = listener(&env);
    let mut cmd = env.cmd(&["out/"]);
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut child = env.spawn_cmd(cmd);
    let stdin = child.stdin.take().unwrap();
    let start = Instant::now();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut pings = 0;
    let mut buf = [0u8; 512];
    while pings < 10 {
        let n = socket.recv(&mut buf).unwrap();
        if &buf[..n] == b"WATCHDOG=1" {
            pings += 1;
        }
    }
    let took = start.elapsed();
    drop(stdin);
    let run = env.finish(child, "logpipe with WATCHDOG_USEC");
    assert!(run.status.success(), "{run:?}");
    // Ten pings at 100 ms: about a second (a slow start adds to it).
    assert!(took >= Duration::from_millis(900), "{took:?}");

    let env = TestEnv::new();
    let (socket, path) = listener(&env);
    let mut cmd = env.cmd(&["out/"]);
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1");
    let mut child = env.spawn_cmd(cmd);
    let stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let run = env.finish(child, "logpipe with another WATCHDOG_PID");
    assert!(run.status.success(), "{run:?}");
    let got = messages(&socket, Duration::from_millis(200));
    assert_eq!(got, ["READY=1", "STATUS=writing", "STOPPING=1"]);
}

/// On a full disk: STATUS= says paused as the pause starts, the watchdog
/// goes on during the pause, and STATUS=writing comes back when space
/// does; nothing is lost.
#[test]
#[ignore = "needs root: mounts a tmpfs to make a real full disk"]
fn notify_says_paused_on_a_full_disk() {
    require_root(
        "notify_says_paused_on_a_full_disk",
        "it mounts a small tmpfs to make a real full disk",
    );
    let env = TestEnv::new();
    let _disk = Tmpfs::mount(&env.path("mnt"), "1m");
    let filler = env.path("mnt/filler");
    {
        let mut file = fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        // Room for the lock and a few lines, not for all of the input.
        let len = fs::metadata(&filler).unwrap().len();
        file.set_len(len.saturating_sub(8 << 10)).unwrap();
    }
    let (socket, path) = listener(&env);
    let mut cmd = env.cmd(&["--compress", "none", "mnt/out/"]);
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID");
    let mut child = env.spawn_cmd(cmd);
    let mut stdin = child.stdin.take().unwrap();
    let input: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i:06}\n").into_bytes())
        .collect();
    stdin.write_all(&input).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    // Until the pause has gone on for a few watchdog pings.
    let mut pings_paused = 0;
    while pings_paused < 4 {
        let n = socket.recv(&mut buf).unwrap();
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if message == "WATCHDOG=1" {
            if got
                .last()
                .is_some_and(|m: &String| m.starts_with("STATUS=paused"))
            {
                pings_paused += 1;
            }
            continue;
        }
        got.push(message);
    }
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "READY=1");
    assert_eq!(got[1], "STATUS=writing");
    assert!(got[2].starts_with("STATUS=paused"), "{got:?}");
    fs::remove_file(&filler).unwrap();
    drop(stdin);
    let run = env.finish(child, "logpipe on a full disk");
    assert!(run.status.success(), "{run:?}");
    let rest: Vec<String> = messages(&socket, Duration::from_millis(200))
        .into_iter()
        .filter(|m| m != "WATCHDOG=1")
        .collect();
    assert_eq!(rest, ["STATUS=writing", "STOPPING=1"]);
    assert_eq!(fs::read(env.path("mnt/out/current")).unwrap(), input);
}
