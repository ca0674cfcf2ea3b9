//! Standard streams that are not pipes: a standard output closed before
//! logpipe starts, and a terminal as standard input.

use std::fs;
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
