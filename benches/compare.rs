//! logpipe side by side with `cat > file` and with the log sinks it
//! replaces, all at the far end of a pipe, in one session.
//!
//! Three parts, each printed as markdown with its context:
//!
//! - **peers**: a seeded log corpus (default 1 GiB, tests/corpus.rs) is
//!   generated once, then fed by `cat CORPUS |` to each sink in turn, round
//!   after round (one untimed warm-up round first): `cat > file`, logpipe
//!   (no compression, gzip, `--timestamp rfc3339`), and rotatelogs,
//!   multilog, svlogd, s6-log and cronolog as Debian ships them (installed
//!   with apt-get when missing; the run fails if they cannot be). Per sink:
//!   MB/s as the producer sees it (bytes over the time until `cat` has
//!   written everything into the pipe), CPU seconds per GiB (`wait4`),
//!   peak RSS (`VmHWM`, sampled every 10 ms: `ru_maxrss` would report the
//!   benchmark's own pre-exec size), whether the reassembled output is
//!   byte-exact (sha256 against the corpus) and whether every file ends at a
//!   line end (no line straddles two files).
//! - **scaling**: `cat` and logpipe on corpora of 16 B, 200 B, 4 KiB and
//!   1 MiB lines; `--size 64M` against `--size 1M`; and a producer that
//!   writes each 200-byte line with its own `write(2)` (as gunicorn's
//!   workers do) against one that writes 64 KiB blocks. The producers are
//!   this binary, re-run with `--produce lines|blocks FILE`.
//! - **latency**: the time from a producer's `write` of one 100-byte line
//!   to the moment the line is in the active file (its size covers it),
//!   p50 and p99 over 10,000 lines, idle (1 ms apart) and with a second
//!   writer pushing 64 KiB blocks at 50 MB/s into the same pipe.
//!
//! Before each timed run, untimed, `out/` is recreated and `sync(2)` called
//! so that the previous run's writeback does not land in this one.
//!
//! Run with `cargo bench --bench compare`. Environment:
//!
//! - `LOGPIPE_BENCH`: the parts to run, comma-separated (default
//!   `peers,scaling,latency`);
//! - `LOGPIPE_BENCH_MB`: corpus size in MiB for `peers` (default 1024; at
//!   least 512 is representative); `scaling` uses a quarter of it;
//! - `LOGPIPE_BENCH_RUNS`: timed runs per sink (default 5);
//! - `LOGPIPE_BENCH_DIR`: scratch directory (default: a fresh directory
//!   under the system temp dir, removed at the end). Its filesystem
//!   matters: on a disk fsyncs cost real time, on tmpfs next to nothing.

#[path = "../tests/corpus.rs"]
mod corpus;
#[allow(dead_code)]
#[path = "common/scratch.rs"]
mod scratch;
#[path = "common/stats.rs"]
mod stats;
#[allow(dead_code)]
#[path = "../tests/util.rs"]
mod util;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use corpus::Corpus;
use scratch::env_number;
use stats::median;

const SEED: u64 = 0x5eed;
/// Corpus generation block: the benchmark never holds more than this.
const BLOCK: usize = 4 << 20;
const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

/// What reads the pipe.
#[derive(Clone, Copy, PartialEq)]
enum Tool {
    /// `cat > out/file`: the floor, a plain copy.
    Cat,
    /// logpipe with these arguments before `out/`.
    Logpipe(&'static [&'static str]),
    /// `rotatelogs -n 24 out/log 64M` (Apache): raw 64 KiB chunks.
    Rotatelogs,
    /// `multilog s16777215 n100 ./out` (daemontools; 16 MiB is its most).
    Multilog,
    /// `svlogd -b 65536 out` with `s67108864` and `n100` in out/config (runit).
    Svlogd,
    /// `s6-log -l 0 n100 s67108864 ./out` (s6).
    S6Log,
    /// `cronolog out/%Y-%m-%d.log`: no size rotation at all.
    Cronolog,
}

/// A sink in a table: a label and a tool.
#[derive(Clone, Copy)]
struct Sink {
    label: &'static str,
    tool: Tool,
    /// Its output carries `--timestamp rfc3339 --utc` prefixes.
    stamped: bool,
}

const CAT: Sink = Sink {
    label: "`cat > file`",
    tool: Tool::Cat,
    stamped: false,
};
const LOGPIPE_NONE: Sink = Sink {
    label: "logpipe `--size 64M --compress none`",
    tool: Tool::Logpipe(&["--size", "64M", "--compress", "none"]),
    stamped: false,
};

/// The sinks of the peers table, `cat` first as the baseline of ratios.
const PEERS: &[Sink] = &[
    CAT,
    LOGPIPE_NONE,
    Sink {
        label: "logpipe `--size 64M` (gzip -6)",
        tool: Tool::Logpipe(&["--size", "64M", "--shutdown-timeout", "600s"]),
        stamped: false,
    },
    Sink {
        label: "logpipe `--size 64M --compress none --metrics`",
        tool: Tool::Logpipe(&[
            "--size",
            "64M",
            "--compress",
            "none",
            "--metrics",
            "metrics.prom",
        ]),
        stamped: false,
    },
    Sink {
        label: "logpipe `--size 64M --compress none --timestamp rfc3339`",
        tool: Tool::Logpipe(&[
            "--size",
            "64M",
            "--compress",
            "none",
            "--timestamp",
            "rfc3339",
            "--utc",
        ]),
        stamped: true,
    },
    Sink {
        label: "rotatelogs `-n 24 out/log 64M`",
        tool: Tool::Rotatelogs,
        stamped: false,
    },
    Sink {
        label: "multilog `s16777215 n100`",
        tool: Tool::Multilog,
        stamped: false,
    },
    Sink {
        label: "svlogd `-b 65536`, `s67108864`",
        tool: Tool::Svlogd,
        stamped: false,
    },
    Sink {
        label: "s6-log `-l 0 n100 s67108864`",
        tool: Tool::S6Log,
        stamped: false,
    },
    Sink {
        label: "cronolog `%Y-%m-%d.log` (no size limit)",
        tool: Tool::Cronolog,
        stamped: false,
    },
];

/// The length of an rfc3339 prefix under `--utc`:
/// `2026-11-21T14:03:07.123456Z `.
const PREFIX_LEN: usize = 28;

/// How the producer writes the corpus into the pipe.
#[derive(Clone, Copy, PartialEq)]
enum Producer {
    /// `cat CORPUS` (128 KiB writes).
    Cat,
    /// This binary, one `write(2)` per line.
    Lines,
    /// This binary, one `write(2)` per 64 KiB.
    Blocks,
}

/// One timed run of one sink.
struct Sample {
    /// Until the producer has written everything into the pipe.
    read_s: f64,
    cpu_s: f64,
    peak_rss_kib: u64,
}

/// What a sink's output looked like after a run.
struct Check {
    files: usize,
    byte_exact: bool,
    lines_whole: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--produce") {
        produce(&args[2], Path::new(&args[3]));
        return;
    }
    let parts = std::env::var("LOGPIPE_BENCH").unwrap_or("peers,scaling,latency".into());
    let mib = env_number("LOGPIPE_BENCH_MB", 1024);
    let runs = env_number("LOGPIPE_BENCH_RUNS", 5) as usize;
    let (scratch, fresh) = match std::env::var_os("LOGPIPE_BENCH_DIR") {
        Some(dir) => (PathBuf::from(dir), false),
        None => {
            let name = format!("logpipe-bench-{}", std::process::id());
            (std::env::temp_dir().join(name), true)
        }
    };
    fs::create_dir_all(&scratch).expect("create the scratch directory");
    println!("# logpipe side by side");
    println!();
    println!(
        "- date: {}",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!(
        "- CPU: {}, nproc {}; kernel {}",
        cpu_model(),
        command_output("nproc", &[]),
        command_output("uname", &["-r"])
    );
    println!("- scratch filesystem (df -hT): {}", filesystem_of(&scratch));
    println!("- runs: {runs} per sink, alternating, after one untimed warm-up round");

    let mut ok = true;
    for part in parts.split(',').map(str::trim) {
        ok &= match part {
            "peers" => peers(&scratch, mib, runs),
            "scaling" => scaling(&scratch, (mib / 4).max(1), runs),
            "latency" => latency(&scratch),
            other => panic!("LOGPIPE_BENCH: unknown part {other:?} (peers, scaling, latency)"),
        };
    }
    let _ = fs::remove_dir_all(scratch.join("out"));
    if fresh {
        let _ = fs::remove_dir_all(&scratch);
    }
    if !ok {
        eprintln!("logpipe's output was not byte-exact in some run (see above)");
        std::process::exit(1);
    }
}

/// The peers table. Returns whether every logpipe run was byte-exact.
fn peers(scratch: &Path, mib: u64, runs: usize) -> bool {
    for (program, package) in [
        ("rotatelogs", "apache2-utils"),
        ("multilog", "daemontools"),
        ("svlogd", "runit"),
        ("s6-log", "s6"),
        ("cronolog", "cronolog"),
    ] {
        util::ensure_program(program, package);
    }
    let corpus = scratch.join("corpus.log");
    let (bytes, sha) = generate(&corpus, mib << 20, |c, out, n| c.fill(out, n));
    println!();
    println!("## Peers");
    println!();
    println!(
        "- corpus: {bytes} bytes ({:.0} MiB) of generated log lines (tests/corpus.rs, seed {SEED:#x}), read by `cat CORPUS |` from the page cache",
        bytes as f64 / MIB
    );
    println!(
        "- versions: {}",
        [
            "apache2-utils",
            "daemontools",
            "runit",
            "s6",
            "cronolog",
            "coreutils"
        ]
        .map(|p| format!(
            "{p} {}",
            command_output("dpkg-query", &["-W", "-f=${Version}", p])
        ))
        .join(", ")
    );
    let results = rounds(PEERS, scratch, &corpus, Producer::Cat, runs, &sha);
    println!();
    println!(
        "| sink | MB/s median (min–max) | vs cat | CPU-s per GiB | peak RSS MiB | byte-exact | lines whole | files |"
    );
    println!("|---|---:|---:|---:|---:|---|---|---:|");
    let cat = median(&throughputs(&results[0].0, bytes));
    let mut exact = true;
    for (sink, (samples, check)) in PEERS.iter().zip(&results) {
        let mbps = throughputs(samples, bytes);
        let (min, max) = min_max(&mbps);
        let cpu = cpu_per_gib(samples, bytes);
        let rss = samples.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0);
        let med = median(&mbps);
        println!(
            "| {} | {med:.0} ({min:.0}–{max:.0}) | {:.2} | {cpu:.2} | {:.1} | {} | {} | {} |",
            sink.label,
            med / cat,
            rss as f64 / 1024.0,
            yes_no(check.byte_exact),
            yes_no(check.lines_whole),
            check.files,
        );
        if matches!(sink.tool, Tool::Logpipe(_)) {
            exact &= check.byte_exact && check.lines_whole;
        }
    }
    let _ = fs::remove_file(&corpus);
    exact
}

/// The scaling table. Returns whether every logpipe run was byte-exact.
fn scaling(scratch: &Path, mib: u64, runs: usize) -> bool {
    println!();
    println!("## Scaling");
    println!();
    println!(
        "- corpora of {mib} MiB each; ratios are logpipe's MB/s over cat's, measured in the same rounds with the same producer"
    );
    println!();
    println!(
        "| case | cat MB/s | logpipe MB/s | logpipe / cat | logpipe CPU-s per GiB | logpipe segments |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let corpus = scratch.join("corpus.log");
    let mut exact = true;
    let mut row = |label: &str, sinks: &[Sink], producer: Producer, bytes: u64, sha: &str| {
        let results = rounds(sinks, scratch, &corpus, producer, runs, sha);
        let cat = median(&throughputs(&results[0].0, bytes));
        for (sink, (samples, check)) in sinks.iter().zip(&results).skip(1) {
            let ours = median(&throughputs(samples, bytes));
            let cpu = cpu_per_gib(samples, bytes);
            println!(
                "| {label}{} | {cat:.0} | {ours:.0} | {:.2} | {cpu:.2} | {} |",
                if sinks.len() > 2 {
                    format!(", {}", sink.label)
                } else {
                    String::new()
                },
                ours / cat,
                check.files,
            );
            exact &= check.byte_exact && check.lines_whole;
        }
    };
    for (label, len) in [
        ("16 B lines", 16),
        ("200 B lines", 200),
        ("4 KiB lines", 4096),
        ("1 MiB lines", 1 << 20),
    ] {
        let (bytes, sha) = generate(&corpus, mib << 20, |c, out, n| fixed_lines(c, out, n, len));
        row(label, &[CAT, LOGPIPE_NONE], Producer::Cat, bytes, &sha);
        if len == 200 {
            row(
                "200 B lines, one write(2) per line",
                &[CAT, LOGPIPE_NONE],
                Producer::Lines,
                bytes,
                &sha,
            );
            row(
                "200 B lines, 64 KiB writes",
                &[CAT, LOGPIPE_NONE],
                Producer::Blocks,
                bytes,
                &sha,
            );
        }
    }
    let (bytes, sha) = generate(&corpus, mib << 20, |c, out, n| c.fill(out, n));
    let one_mib = Sink {
        label: "`--size 1M`",
        tool: Tool::Logpipe(&["--size", "1M", "--compress", "none"]),
        stamped: false,
    };
    let sizes = [
        CAT,
        Sink {
            label: "`--size 64M`",
            ..LOGPIPE_NONE
        },
        one_mib,
    ];
    row("realistic lines", &sizes, Producer::Cat, bytes, &sha);
    let _ = fs::remove_file(&corpus);
    exact
}

/// Lines of exactly `len` bytes (newline included), numbered, with a
/// varying filler so that they do not compress to nothing.
fn fixed_lines(c: &mut Corpus, out: &mut Vec<u8>, bytes: usize, len: usize) {
    let target = out.len() + bytes;
    while out.len() < target {
        let start = out.len();
        let _ = write!(out, "{:08x} ", c.next_u64() as u32);
        while out.len() < start + len - 1 {
            out.push(b'a' + (c.next_u64() % 26) as u8);
        }
        out.truncate(start + len - 1);
        out.push(b'\n');
    }
}

/// Runs every sink once untimed, then `runs` timed rounds, alternating.
/// Returns each sink's samples and the check of its first timed run.
fn rounds(
    sinks: &[Sink],
    scratch: &Path,
    corpus: &Path,
    producer: Producer,
    runs: usize,
    sha: &str,
) -> Vec<(Vec<Sample>, Check)> {
    for &sink in sinks {
        run(sink, scratch, corpus, producer);
    }
    let mut results: Vec<(Vec<Sample>, Option<Check>)> =
        sinks.iter().map(|_| (Vec::new(), None)).collect();
    for i in 1..=runs {
        for (k, &sink) in sinks.iter().enumerate() {
            let sample = run(sink, scratch, corpus, producer);
            let bytes = fs::metadata(corpus).map_or(0, |m| m.len());
            eprintln!(
                "run {i}/{runs} {:<58} {:8.1} MB/s  cpu {:6.3} s  peak RSS {:5.1} MiB",
                sink.label,
                bytes as f64 / 1e6 / sample.read_s,
                sample.cpu_s,
                sample.peak_rss_kib as f64 / 1024.0,
            );
            results[k].0.push(sample);
            if results[k].1.is_none() {
                results[k].1 = Some(check(sink, &scratch.join("out"), sha));
            }
        }
    }
    results
        .into_iter()
        .map(|(samples, check)| (samples, check.expect("at least one run")))
        .collect()
}

/// Runs `producer | sink` once in a fresh `out/` and measures the sink.
fn run(sink: Sink, scratch: &Path, corpus: &Path, producer: Producer) -> Sample {
    let out = scratch.join("out");
    if out.exists() {
        fs::remove_dir_all(&out).expect("remove out/");
    }
    fs::create_dir(&out).expect("create out/");
    if sink.tool == Tool::Svlogd {
        fs::write(out.join("config"), "s67108864\nn100\n").expect("write out/config");
    }
    // SAFETY: sync(2) takes no arguments and always succeeds.
    unsafe { libc::sync() };

    let start = Instant::now();
    let mut producer = match producer {
        Producer::Cat => Command::new("cat")
            .arg(corpus)
            .stdout(Stdio::piped())
            .spawn(),
        Producer::Lines | Producer::Blocks => Command::new(std::env::current_exe().unwrap())
            .arg("--produce")
            .arg(if producer == Producer::Lines {
                "lines"
            } else {
                "blocks"
            })
            .arg(corpus)
            .stdout(Stdio::piped())
            .spawn(),
    }
    .expect("start the producer");
    let pipe = producer.stdout.take().expect("producer stdout is piped");
    let mut cmd = sink_command(sink.tool, &out);
    let pid = cmd
        .stdin(pipe)
        .current_dir(scratch)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", sink.label))
        .id();
    // Close our copies of the pipe's read end and of any output file.
    drop(cmd);
    let producer = thread::spawn(move || {
        let status = producer.wait().expect("wait for the producer");
        (status, start.elapsed().as_secs_f64())
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                // A zombie has no VmHWM line: the last live value stays.
                peak = util::peak_rss_kib(pid).unwrap_or(peak);
                thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    // The sink is reaped here, so its `Child` must not be waited for.
    let (status, usage) = wait4(pid);
    stop.store(true, Ordering::Relaxed);
    let peak_rss_kib = sampler.join().expect("RSS sampler thread");
    let (produced, read_s) = producer.join().expect("producer thread");
    assert!(produced.success(), "the producer failed: {produced}");
    // cronolog ends with status 3 at end of input, by design.
    let cronolog_done = sink.tool == Tool::Cronolog && status.code() == Some(3);
    assert!(
        status.success() || cronolog_done,
        "{} failed: {status}",
        sink.label
    );
    Sample {
        read_s,
        cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        peak_rss_kib,
    }
}

/// The command line of `tool`, writing into `out` (its working directory
/// is out's parent).
fn sink_command(tool: Tool, out: &Path) -> Command {
    let out_arg = format!("./{}", out.file_name().unwrap().to_string_lossy());
    let (program, args): (&str, Vec<String>) = match tool {
        Tool::Cat => {
            let mut cmd = Command::new("cat");
            cmd.stdout(File::create(out.join("file")).expect("create out/file"));
            return cmd;
        }
        Tool::Logpipe(args) => (
            env!("CARGO_BIN_EXE_logpipe"),
            args.iter()
                .map(|a| a.to_string())
                .chain([out_arg + "/"])
                .collect(),
        ),
        Tool::Rotatelogs => (
            "rotatelogs",
            vec!["-n".into(), "24".into(), out_arg + "/log", "64M".into()],
        ),
        Tool::Multilog => ("multilog", vec!["s16777215".into(), "n100".into(), out_arg]),
        Tool::Svlogd => ("svlogd", vec!["-b".into(), "65536".into(), out_arg]),
        Tool::S6Log => (
            "s6-log",
            vec![
                "-l".into(),
                "0".into(),
                "n100".into(),
                "s67108864".into(),
                out_arg,
            ],
        ),
        Tool::Cronolog => ("cronolog", vec![out_arg + "/%Y-%m-%d.log"]),
    };
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// The files of `tool`'s output in `out`, in the order they were written.
fn output_files(tool: Tool, out: &Path) -> Vec<(PathBuf, bool)> {
    let mut names: Vec<String> = fs::read_dir(out)
        .expect("list out/")
        .map(|e| {
            e.expect("list out/")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let plain = |names: Vec<String>| names.into_iter().map(|n| (out.join(n), false)).collect();
    match tool {
        Tool::Cat => plain(vec!["file".into()]),
        Tool::Logpipe(_) => {
            let active = out.join("current");
            let mut files: Vec<_> = util::segments_in(&active)
                .into_iter()
                .map(|seg| (seg.path.clone(), seg.gz))
                .collect();
            files.push((active, false));
            files
        }
        // log, log.1, log.2, … in the order they were opened.
        Tool::Rotatelogs => {
            let mut logs: Vec<(u32, String)> = names
                .into_iter()
                .filter_map(|n| {
                    let k = match n.strip_prefix("log") {
                        Some("") => 0,
                        Some(rest) => rest.strip_prefix('.')?.parse().ok()?,
                        None => return None,
                    };
                    Some((k, n))
                })
                .collect();
            logs.sort();
            plain(logs.into_iter().map(|(_, n)| n).collect())
        }
        // @<tai64n>.s (or .u) in time order, then current.
        Tool::Multilog | Tool::Svlogd | Tool::S6Log => {
            let mut files: Vec<String> = names.into_iter().filter(|n| n.starts_with('@')).collect();
            files.push("current".into());
            plain(files)
        }
        Tool::Cronolog => plain(names.into_iter().filter(|n| n.ends_with(".log")).collect()),
    }
}

/// Reassembles `sink`'s output and compares it with the corpus.
fn check(sink: Sink, out: &Path, sha: &str) -> Check {
    let files = output_files(sink.tool, out);
    let mut hasher = Sha256::new();
    let mut lines_whole = true;
    for (path, gz) in &files {
        let bytes = if *gz {
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(File::open(path).expect("open a segment"))
                .read_to_end(&mut text)
                .expect("decompress a segment");
            text
        } else {
            fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        };
        lines_whole &= bytes.last().is_none_or(|&b| b == b'\n');
        if sink.stamped {
            hash_unstamped(&mut hasher, &bytes);
        } else {
            hasher.update(&bytes);
        }
    }
    Check {
        files: files.len(),
        byte_exact: util::hex(&hasher.finalize()) == sha,
        lines_whole,
    }
}

/// Hashes `bytes` with the prefix of each line left out; a line without a
/// well-formed prefix is hashed so that it cannot match the corpus.
fn hash_unstamped(hasher: &mut Sha256, bytes: &[u8]) {
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let prefixed = line.len() > PREFIX_LEN
            && line[10] == b'T'
            && line[PREFIX_LEN - 2..PREFIX_LEN] == *b"Z ";
        if prefixed {
            hasher.update(&line[PREFIX_LEN..]);
        } else {
            hasher.update(b"missing prefix");
            hasher.update(line);
        }
    }
}

/// The producer mode of this binary: writes `file` to standard output one
/// line per `write(2)` (`lines`) or 64 KiB per `write(2)` (`blocks`).
fn produce(how: &str, file: &Path) {
    let mut input = BufReader::with_capacity(1 << 20, File::open(file).expect("open the corpus"));
    // Unbuffered: each write_all below is one write(2) (a pipe takes a
    // whole small write at once).
    let mut out = File::from(
        io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .expect("standard output"),
    );
    match how {
        "lines" => {
            let mut line = Vec::new();
            while input.read_until(b'\n', &mut line).expect("read") > 0 {
                out.write_all(&line).expect("write");
                line.clear();
            }
        }
        "blocks" => {
            let mut block = vec![0; 64 << 10];
            loop {
                let n = read_full(&mut input, &mut block);
                if n == 0 {
                    break;
                }
                out.write_all(&block[..n]).expect("write");
            }
        }
        other => panic!("--produce {other:?}: lines or blocks"),
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]).expect("read") {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// The latency table: `cat` and logpipe, idle and under load.
fn latency(scratch: &Path) -> bool {
    const LINES: usize = 10_000;
    println!();
    println!("## Latency");
    println!();
    println!(
        "- from a producer's write(2) of one 100-byte line to the active file's size covering it (polled with stat in a loop), {LINES} lines per case; load: a second writer pushing 64 KiB blocks at 50 MB/s into the same pipe"
    );
    println!();
    println!("| sink | idle p50 µs | idle p99 µs | loaded p50 µs | loaded p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    for sink in [CAT, LOGPIPE_NONE] {
        let idle = probe(sink, scratch, LINES, false);
        let loaded = probe(sink, scratch, LINES, true);
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            sink.label,
            percentile(&idle, 50.0),
            percentile(&idle, 99.0),
            percentile(&loaded, 50.0),
            percentile(&loaded, 99.0),
        );
    }
    true
}

/// Writes `lines` probe lines into `sink` and returns each one's latency
/// in microseconds.
fn probe(sink: Sink, scratch: &Path, lines: usize, loaded: bool) -> Vec<f64> {
    let out = scratch.join("out");
    if out.exists() {
        fs::remove_dir_all(&out).expect("remove out/");
    }
    fs::create_dir(&out).expect("create out/");
    let (mut cmd, active) = match sink.tool {
        Tool::Cat => (sink_command(Tool::Cat, &out), out.join("file")),
        _ => {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_logpipe"));
            cmd.args(["--size", "4G", "--compress", "none", "out/"]);
            (cmd, out.join("current"))
        }
    };
    let mut child = cmd
        .current_dir(scratch)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start the sink");
    drop(cmd);
    let stdin: Arc<Mutex<(ChildStdin, u64)>> =
        Arc::new(Mutex::new((child.stdin.take().expect("piped stdin"), 0)));
    while !active.exists() {
        thread::sleep(Duration::from_millis(1));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load_bytes = Arc::new(AtomicU64::new(0));
    let load = loaded.then(|| {
        let (stdin, stop, load_bytes) = (
            Arc::clone(&stdin),
            Arc::clone(&stop),
            Arc::clone(&load_bytes),
        );
        thread::spawn(move || {
            let mut block = Vec::with_capacity(64 << 10);
            let mut corpus = Corpus::new(SEED);
            corpus.fill(&mut block, (64 << 10) - 400);
            // 64 KiB every 1.31 ms is 50 MB/s.
            let every = Duration::from_nanos(1_310_720);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                {
                    let mut guard = stdin.lock().expect("stdin lock");
                    let (pipe, offset) = &mut *guard;
                    pipe.write_all(&block).expect("load write");
                    *offset += block.len() as u64;
                }
                load_bytes.fetch_add(block.len() as u64, Ordering::Relaxed);
                next += every;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
        })
    });
    let mut latencies = Vec::with_capacity(lines);
    for i in 0..lines {
        let line = format!("{i:08} {:>90}\n", "probe");
        let (start, end) = {
            let mut guard = stdin.lock().expect("stdin lock");
            let (pipe, offset) = &mut *guard;
            let start = Instant::now();
            pipe.write_all(line.as_bytes()).expect("probe write");
            *offset += line.len() as u64;
            (start, *offset)
        };
        while fs::metadata(&active).map_or(0, |m| m.len()) < end {
            std::hint::spin_loop();
        }
        latencies.push(start.elapsed().as_secs_f64() * 1e6);
        thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(load) = load {
        load.join().expect("load thread");
    }
    drop(stdin);
    let status = child.wait().expect("wait for the sink");
    assert!(status.success(), "{} failed: {status}", sink.label);
    latencies
}

fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (xs.len() - 1) as f64).round() as usize;
    xs[rank]
}

/// Writes at least `bytes` made by `fill` to `path` in [`BLOCK`]-sized
/// pieces. Returns the exact length and the sha256.
fn generate(
    path: &Path,
    bytes: u64,
    mut fill: impl FnMut(&mut Corpus, &mut Vec<u8>, usize),
) -> (u64, String) {
    let mut file = File::create(path).expect("create the corpus file");
    let mut corpus = Corpus::new(SEED);
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(BLOCK + (2 << 20));
    let mut written = 0;
    while written < bytes {
        buf.clear();
        fill(&mut corpus, &mut buf, BLOCK.min((bytes - written) as usize));
        file.write_all(&buf).expect("write the corpus file");
        hasher.update(&buf);
        written += buf.len() as u64;
    }
    (written, util::hex(&hasher.finalize()))
}

/// Waits for child `pid` to exit; returns its status and resource usage.
fn wait4(pid: u32) -> (ExitStatus, libc::rusage) {
    let pid = pid as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the types wait4 expects.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return (ExitStatus::from_raw(status), usage);
        }
        let err = io::Error::last_os_error();
        assert!(
            err.kind() == io::ErrorKind::Interrupted,
            "wait4 on the sink: {err}"
        );
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// The median CPU seconds per GiB of input.
fn cpu_per_gib(samples: &[Sample], bytes: u64) -> f64 {
    let per_gib: Vec<f64> = samples
        .iter()
        .map(|s| s.cpu_s / (bytes as f64 / GIB))
        .collect();
    median(&per_gib)
}

/// Input MB/s of each sample, as the producer saw it.
fn throughputs(samples: &[Sample], bytes: u64) -> Vec<f64> {
    samples
        .iter()
        .map(|s| bytes as f64 / 1e6 / s.read_s)
        .collect()
}

fn min_max(xs: &[f64]) -> (f64, f64) {
    xs.iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

/// The data line of `df -hT DIR`, spaces squeezed.
fn filesystem_of(dir: &Path) -> String {
    let df = command_output("df", &["-hT", &dir.to_string_lossy()]);
    let line = df.lines().last().unwrap_or("unknown");
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cpu_model() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find(|l| l.starts_with("model name"));
    model
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".into(), |(_, m)| m.trim().to_string())
}

/// The trimmed standard output of a small command, or "unknown".
fn command_output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    }
}
