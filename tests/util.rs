//! The test harness: a fresh directory per test, the real binary run in it
//! with a deadline, and readers for what it left on disk.
//!
//! Segment names are parsed here independently of the crate's own parser,
//! so a bug there cannot hide itself.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long any one run of logpipe may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(300);

/// A finished segment as the test sees it: `<active>.<date>.<n>`, or
/// `<active>.<date>.<n>.gz` or `.zst` once compressed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seg {
    pub date: String,
    pub n: u64,
    pub path: PathBuf,
    pub gz: bool,
    pub zst: bool,
}

impl Seg {
    /// The segment's content, decompressed.
    pub fn read(&self) -> Vec<u8> {
        let bytes =
            fs::read(&self.path).unwrap_or_else(|e| panic!("read {}: {e}", self.path.display()));
        if self.zst {
            return zstd::stream::decode_all(&bytes[..])
                .unwrap_or_else(|e| panic!("decompress {}: {e}", self.path.display()));
        }
        if !self.gz {
            return bytes;
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("decompress {}: {e}", self.path.display()));
        out
    }

    /// The length of the content: the file's, or the gzip trailer's (the
    /// last 4 bytes: the length modulo 2^32), or for zstd what it
    /// decompresses to.
    pub fn len(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        if self.zst {
            let Ok(file) = fs::File::open(&self.path) else {
                return 0;
            };
            let Ok(decoder) = zstd::stream::read::Decoder::new(file) else {
                return 0;
            };
            return io::copy(&mut { decoder }, &mut io::sink()).unwrap_or(0);
        }
        let Ok(file) = fs::File::open(&self.path) else {
            return 0;
        };
        let Ok(meta) = file.metadata() else {
            return 0;
        };
        if !self.gz {
            return meta.len();
        }
        let mut trailer = [0u8; 4];
        match meta.len().checked_sub(4) {
            Some(at) if file.read_exact_at(&mut trailer, at).is_ok() => {
                u64::from(u32::from_le_bytes(trailer))
            }
            _ => 0,
        }
    }

    /// Feeds the content to `hasher`, decompressing as it goes.
    pub fn hash_into(&self, hasher: &mut Sha256) {
        let file = fs::File::open(&self.path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.path.display()));
        if self.zst {
            let decoder = zstd::stream::read::Decoder::new(file)
                .unwrap_or_else(|e| panic!("decompress {}: {e}", self.path.display()));
            hash_reader(hasher, decoder, &self.path);
        } else if self.gz {
            hash_reader(
                hasher,
                flate2::read::GzDecoder::new(io::BufReader::new(file)),
                &self.path,
            );
        } else {
            hash_reader(hasher, file, &self.path);
        }
    }
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
        // A test that reads stderr itself has taken it already.
        let stderr_pipe = child.stderr.take();
        let reader = thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = stderr_pipe {
                let _ = pipe.read_to_string(&mut text);
            }
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

    /// sha256 of the segments of `active` in order (decompressed), then
    /// `active` itself.
    pub fn collated_sha(&self, active: &str) -> String {
        collated_sha_of(&self.segments(active), &self.path(active))
    }

    /// Bytes in `out/current` and in the segments of `current` in each of
    /// `dirs`: what logpipe has written so far.
    pub fn bytes_on_disk(&self, dirs: &[&str]) -> u64 {
        let active = fs::metadata(self.path("out/current")).map_or(0, |m| m.len());
        let segments: u64 = dirs
            .iter()
            .flat_map(|dir| segments_in(&self.path(dir).join("current")))
            .map(|s| s.len())
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

/// Checks that the hook recorded in `hooks` (one segment path a line) ran
/// once for each of `segments`, in their order.
pub fn assert_hooked_in_order(hooks: &Path, segments: &[Seg], what: &str) {
    let called: Vec<String> = fs::read_to_string(hooks)
        .unwrap()
        .lines()
        .map(|line| line.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    let expected: Vec<String> = segments
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(called, expected, "{what}: hooks not once each, in order");
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
            let (rest, gz) = match rest.strip_suffix(".gz") {
                Some(rest) => (rest, true),
                None => (rest, false),
            };
            let (rest, zst) = match rest.strip_suffix(".zst") {
                Some(rest) if !gz => (rest, true),
                _ => (rest, false),
            };
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
                gz,
                zst,
            })
        })
        .collect();
    segs.sort();
    // Between the rename of `X.gz` into place and the unlink of `X`, both
    // exist with the same content: count the segment once (plain first;
    // `.gz` before `.zst` when a change of --compress left both).
    segs.dedup_by(|later, earlier| later.date == earlier.date && later.n == earlier.n);
    segs
}

/// sha256 of `segments` (decompressed) followed by `active`.
pub fn collated_sha_of(segments: &[Seg], active: &Path) -> String {
    let mut hasher = Sha256::new();
    for seg in segments {
        seg.hash_into(&mut hasher);
    }
    hash_file(&mut hasher, active);
    hex(&hasher.finalize())
}

pub fn hash_file(hasher: &mut Sha256, path: &Path) {
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    hash_reader(hasher, file, path);
}

fn hash_reader(hasher: &mut Sha256, mut reader: impl Read, path: &Path) {
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
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
        let bytes = seg.read();
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

impl TestEnv {
    /// Runs `cmd` (from [`TestEnv::cmd`], perhaps with another `TZ`) on
    /// `input` and waits for it.
    pub fn run_cmd(&self, cmd: Command, input: &[u8]) -> Run {
        let input = input.to_vec();
        self.run_fed(cmd, move |stdin| drop(stdin.write_all(&input)))
    }

    /// The segments of `active` in (date, N) order, then `active` itself:
    /// each one's name (a segment's without `.gz`: the name it was given at
    /// rotation) and contents (decompressed).
    pub fn files(&self, active: &str) -> Vec<(String, Vec<u8>)> {
        let active = self.path(active);
        let name = |path: &Path| {
            let name = path.file_name().unwrap().to_string_lossy();
            let name = name.strip_suffix(".gz").unwrap_or(&name);
            name.strip_suffix(".zst").unwrap_or(name).to_string()
        };
        let mut files: Vec<_> = segments_in(&active)
            .iter()
            .map(|s| (name(&s.path), s.read()))
            .collect();
        let bytes = fs::read(&active).unwrap_or_else(|e| panic!("read {}: {e}", active.display()));
        files.push((name(&active), bytes));
        files
    }

    /// Like [`TestEnv::files`], with the contents as text, for files that
    /// hold short text lines.
    pub fn texts(&self, active: &str) -> Vec<(String, String)> {
        self.files(active)
            .into_iter()
            .map(|(name, bytes)| (name, String::from_utf8(bytes).expect("text")))
            .collect()
    }

    /// The segments of `active` in (date, N) order followed by `active`,
    /// concatenated: what a round trip must give back.
    pub fn collated(&self, active: &str) -> Vec<u8> {
        self.files(active)
            .into_iter()
            .flat_map(|(_, bytes)| bytes)
            .collect()
    }
}

/// The control line that sets logpipe's `--debug-clock` to `at` (RFC 3339).
pub fn clock_line(at: &str) -> String {
    format!("#logpipe-clock {at}\n")
}

/// Fails the test, saying why, unless it runs as root. Tests that need root
/// are `#[ignore]`d, so a plain `cargo test` leaves them out; run with
/// `--ignored` as another user, they fail loudly rather than pass without
/// having checked anything.
pub fn require_root(test: &str, why: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "{test} needs root ({why}); it is #[ignore]d for that reason: run the \
         ignored tests as root (`sudo cargo test -- --ignored`, as CI does)"
    );
}

/// Makes sure `program` is on `PATH`, without installing anything: for
/// programs every Linux system has (Debian marks `gzip` and `bash`
/// essential). Panics with what to install when it is missing.
pub fn require_program(program: &str, package: &str) {
    assert!(
        on_path(program),
        "this test needs `{program}`: install the `{package}` package \
         (on Debian: apt-get install {package})"
    );
}

/// Makes sure `program` is on `PATH`, installing the Debian package
/// `package` with apt-get when it is missing and we are root. Panics with
/// what to install when that is not possible: a test that needs a program
/// never skips silently. Tests that call it are `#[ignore]`d (they may
/// change the machine), and run in CI, as root.
pub fn ensure_program(program: &str, package: &str) {
    // Parallel tests must not run apt-get at once (it takes a lock and
    // fails rather than wait).
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if on_path(program) {
        return;
    }
    let mut log = String::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let mut apt = |args: &[&str]| {
            let out = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(out) => {
                    log.push_str(&String::from_utf8_lossy(&out.stderr));
                    out.status.success()
                }
                Err(e) => {
                    log.push_str(&format!("unable to run apt-get: {e}\n"));
                    false
                }
            }
        };
        if !apt(&["install", "-y", package]) {
            apt(&["update"]);
            apt(&["install", "-y", package]);
        }
    } else {
        log.push_str("not root, so apt-get was not tried\n");
    }
    assert!(
        on_path(program),
        "this test needs `{program}`: install Debian's `{package}` package \
         (apt-get install {package}).\n{log}"
    );
}

/// Whether an executable file named `program` is in a directory of `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}
