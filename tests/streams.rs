//! Standard streams that are not pipes: a standard output closed before
//! logpipe starts, and a terminal (a real pseudo-terminal) as standard
//! input.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use crate::util::TestEnv;

const TEE_OFF: &str = "logpipe: warning: --tee is off: standard output is /dev/null \
                       (or was closed when logpipe started)\n";

#[test]
fn tee_with_stdout_closed_at_start_says_once_that_it_is_off() {
    let env = TestEnv::new();
    let mut cmd = env.cmd(&["--tee", "--compress", "none", "out/"]);
    // SAFETY: close(2) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            Ok(())
        });
    }
    let input = b"one\ntwo\nthree\n".repeat(1000);
    let run = env.run_cmd(cmd, &input);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, TEE_OFF);
    assert_eq!(fs::read(env.path("out/current")).unwrap(), input);
}

#[test]
fn tee_to_dev_null_says_once_that_it_is_off() {
    let env = TestEnv::new();
    let mut cmd = env.cmd(&["--tee", "--compress", "none", "out/"]);
    cmd.stdout(Stdio::null());
    let run = env.run_cmd(cmd, b"a line\n");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stderr, TEE_OFF);
    assert_eq!(fs::read(env.path("out/current")).unwrap(), b"a line\n");
}

/// A new pseudo-terminal: its controlling side, and its terminal side (in
/// the default, canonical mode: input is read a line at a time, and ^D
/// ends a read).
fn pty() -> (fs::File, fs::File) {
    // SAFETY: plain calls on a descriptor we own; ptsname_r writes at most
    // `buf.len()` bytes into `buf`.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = fs::File::from_raw_fd(master);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), buf.as_mut_ptr(), buf.len()),
            0
        );
        let name = std::ffi::CStr::from_ptr(buf.as_ptr());
        let slave = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(name.to_str().unwrap())
            .unwrap();
        (master, slave)
    }
}

#[test]
fn at_a_terminal_two_ctrl_d_end_a_partial_last_line() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let env = TestEnv::new();
    let (mut master, slave) = pty();
    let mut cmd = env.cmd(&["--compress", "none", "out/"]);
    cmd.stdin(slave)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Typed: a whole line, then `abc` and ^D (the terminal hands over
    // `abc`), then ^D again (a read of 0 bytes: end of input). However
    // logpipe's reads fall, the terminal keeps the two ^D apart.
    master.write_all(b"one line\nabc\x04\x04").unwrap();
    // Nothing more is typed: logpipe must end by itself. A logpipe that
    // waits for a third ^D never does; it is killed after a generous
    // deadline (the pass does not depend on timing).
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let run = env.finish(child, "logpipe at a terminal");
    let status = status.expect("two ^D did not end the input: logpipe still waited");
    assert!(status.success(), "{run:?}");
    assert_eq!(run.stderr, "");
    assert_eq!(
        fs::read(env.path("out/current")).unwrap(),
        b"one line\nabc\n"
    );
    drop(master);
}
