//! The test harness: a fresh directory per test, the real binary run in it
//! with a deadline, and readers for what it left on disk.
//!
//! Segment names are parsed here independently of the crate's own parser,
//! so a bug there cannot hide itself.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long any one run of logpipe may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(300);

/// A finished segment as the test sees it: `<active>.<date>.<n>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seg {
    pub date: String,
    pub n: u64,
    pub path: PathBuf,
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stderr: String,
}

/// A temporary directory in which logpipe runs.
pub struct TestEnv {
    dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::Builder::new()
                .prefix("logpipe-test-")
                .tempdir()
                .expect("create temp dir"),
        }
    }

    /// A path inside the test directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The logpipe binary, in the test directory, with UTC dates.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_logpipe"));
        cmd.args(args).current_dir(self.dir.path()).env("TZ", "UTC");
        cmd
    }

    /// Starts logpipe with piped stdin and stderr.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.spawn_cmd(self.cmd(args))
    }

    pub fn spawn_cmd(&self, mut cmd: Command) -> Child {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.spawn().expect("start logpipe")
    }

    /// Runs logpipe on `input` and waits for it.
    pub fn run(&self, args: &[&str], input: &[u8]) -> Run {
        let input = input.to_vec();
        // A run that is meant to fail may exit before reading everything.
        self.run_fed(self.cmd(args), move |stdin| drop(stdin.write_all(&input)))
    }

    /// Runs `cmd`, feeding its stdin from `feed` on another thread (so a
    /// full pipe never deadlocks the test), and waits for it with a
    /// deadline.
    pub fn run_fed(
        &self,
        cmd: Command,
        feed: impl FnOnce(&mut ChildStdin) + Send + 'static,
    ) -> Run {
        let describe = format!("{cmd:?}");
        let mut child = self.spawn_cmd(cmd);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let feeder = thread::spawn(move || feed(&mut stdin));
        let run = self.finish(child, &describe);
        feeder.join().expect("feeder thread");
        run
    }

    /// Waits for a started child (stdin already closed or being fed) and
    /// collects its status and stderr.
    pub fn finish(&self, mut child: Child, describe: &str) -> Run {
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let reader = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for logpipe") {
                break status;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                panic!(
                    "{describe} did not finish within {DEADLINE:?}; directory:\n{}",
                    self.listing()
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let stderr = reader.join().expect("stderr reader");
        Run { status, stderr }
    }

    /// `ls -l` of the test directory, recursively, for failure messages.
    pub fn listing(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let mut entries: Vec<_> = entries.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let meta = e.metadata().ok();
                let len = meta.as_ref().map_or(0, |m| m.len());
                out.push_str(&format!("  {:>12} {}\n", len, e.path().display()));
                if meta.is_some_and(|m| m.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out
    }

    /// The finished segments of active file `active` (relative to the test
    /// directory), in (date, N) order.
    pub fn segments(&self, active: &str) -> Vec<Seg> {
        segments_in(&self.path(active))
    }

    /// sha256 of the segments of `active` in order, then `active` itself.
    pub fn collated_sha(&self, active: &str) -> String {
        let segments = self.segments(active);
        sha_of_files(
            segments
                .iter()
                .map(|s| s.path.as_path())
                .chain([self.path(active).as_path()]),
        )
    }

    /// Bytes in `out/current` and in the segments of `current` in each of
    /// `dirs`: what logpipe has written so far.
    pub fn bytes_on_disk(&self, dirs: &[&str]) -> u64 {
        let active = fs::metadata(self.path("out/current")).map_or(0, |m| m.len());
        let segments: u64 = dirs
            .iter()
            .flat_map(|dir| segments_in(&self.path(dir).join("current")))
            .map(|s| fs::metadata(&s.path).map_or(0, |m| m.len()))
            .sum();
        active + segments
    }

    /// Polls `cond` until it holds, failing the test after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > timeout {
                panic!(
                    "timed out waiting for {what}; directory:\n{}",
                    self.listing()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The finished segments beside the active file `active`, in (date, N)
/// order.
pub fn segments_in(active: &Path) -> Vec<Seg> {
    let dir = active.parent().expect("active file has a directory");
    let prefix = format!(
        "{}.",
        active
            .file_name()
            .expect("active file name")
            .to_string_lossy()
    );
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut segs: Vec<Seg> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&prefix)?;
            let (date, n) = rest.split_once('.')?;
            let date_ok = date.len() == 10
                && date.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                });
            let n_ok = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
            (date_ok && n_ok).then(|| Seg {
                date: date.to_string(),
                n: n.parse().unwrap(),
                path: e.path(),
            })
        })
        .collect();
    segs.sort();
    segs
}

/// sha256 of the concatenation of `paths`.
pub fn sha_of_files<'a>(paths: impl IntoIterator<Item = &'a Path>) -> String {
    let mut hasher = Sha256::new();
    for path in paths {
        hash_file(&mut hasher, path);
    }
    hex(&hasher.finalize())
}

pub fn hash_file(hasher: &mut Sha256, path: &Path) {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
}

pub fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts that every segment ends in a newline and stays within `limit`
/// bytes unless it holds exactly one line. Returns how many there are.
pub fn check_segments(segs: &[Seg], limit: u64) -> usize {
    for seg in segs {
        let bytes = fs::read(&seg.path).expect("read segment");
        assert!(!bytes.is_empty(), "{} is empty", seg.path.display());
        assert_eq!(
            bytes.last(),
            Some(&b'\n'),
            "{} does not end in a newline",
            seg.path.display()
        );
        let lines = memchr::memchr_iter(b'\n', &bytes).count();
        assert!(
            bytes.len() as u64 <= limit || lines == 1,
            "{} has {} bytes in {lines} lines, over the limit of {limit}",
            seg.path.display(),
            bytes.len()
        );
    }
    segs.len()
}

/// The peak resident set size of a live process, in KiB (`VmHWM`), or
/// `None` once it has exited.
///
/// Read from /proc while the process runs, because `wait4`'s `ru_maxrss`
/// also counts the memory of the process that spawned it (Linux records the
/// pre-exec image's peak at exec).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
