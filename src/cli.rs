//! Command-line arguments: the clap definition and the parsers for the
//! values that only it uses (the units are in `units`, the man page and
//! completions in `manpage`).
//!
//! Everything here is checked before logpipe touches the disk, so a bad
//! value exits with status 2 (clap's own) and creates nothing.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::manpage::Generate;
use crate::schedule::{self, Every};
use crate::stamp::Format;
use crate::units::{
    parse_duration, parse_file_mode, parse_positive_count, parse_positive_duration, parse_size,
};

const ABOUT: &str =
    "Write standard input to a log file, rolled by size into dated, numbered segments";

const LONG_ABOUT: &str = "\
logpipe sits at the far end of a pipe and writes what it reads to an active
file. Before a write would take the active file past --size, and at every
wall-clock boundary of --every, it rolls the file into a finished segment,
at a line boundary, and carries on in a fresh active file. Finished
segments are compressed (gzip or zstd) by a worker thread, so the reading
loop never waits for compression. The producing program never holds a log file handle, and
rotation never loses or splits a line.

TARGET is either a directory (an existing directory, or any path ending in
/ or /.), in which case the active file is DIR/current (see --name), or the path
of the active file itself. Missing directories are created.";

const AFTER_HELP: &str = "\
Example:
  gunicorn app:wsgi --access-logfile - 2>&1 | logpipe --size 64M /var/log/app/

Reading:
  logpipe --read /var/log/app/ | grep ERROR
                            every line of the target, in the order written,
                            each once, decompressed
  logpipe --follow --cursor app.cursor /var/log/app/ | shipper
                            the same, then every new line through any
                            rotation; a restart resumes after the last line
                            the cursor file records

Files:
  ACTIVE                    the file being written (DIR/current, or TARGET)
  ACTIVE.YYYY-MM-DD.N       finished segments; the date is the day the
                            segment was opened (local time, or UTC with
                            --utc), N counts from 1 for each date and is
                            never reused for this target
  ACTIVE.YYYY-MM-DD.N.gz    the same, once compressed (.zst with
                            --compress zstd)
  .ACTIVE.lock              held while logpipe runs; holds its pid
  .ACTIVE.state             the highest N used per date, so that segments
                            moved away or deleted never lead to a reused name
                            (hidden, so that globs like ACTIVE* and log
                            viewers see only log data; earlier versions
                            named them ACTIVE.lock and ACTIVE.state, and
                            logpipe moves those at start)

A second run on the same target appends to the active file (after rolling
it, if it was last written in an earlier window) and continues the
numbering. A line longer than --size makes one oversized segment rather
than being cut. At end of input a final line without a newline gets one.

Signals:
  SIGUSR1, SIGALRM          roll now, if the active file is not empty
  SIGHUP                    reopen the active file by its path (after a
                            tool moved it away)
  SIGTERM, SIGINT           write the input already waiting, then stop as
                            at end of input

Exit status:
  0  end of input reached, everything written and synced (and compressed,
     unless --shutdown-timeout ran out first)
  1  a runtime error; one line `logpipe: <what>: <why>` on stderr
  2  bad usage";

/// The raw command line, as the user typed it.
///
/// Each option's doc comment is written for two readers: its first
/// paragraph, one short line, is what `-h` shows (one line per option, as
/// in ripgrep and fd: keep it under about 45 characters, since `-h` wraps
/// at 100 columns and adds the default); the whole comment is what
/// `--help` and the man page show. A default is given by clap's
/// `[default: …]` only, never also in the text.
#[derive(Parser, Debug)]
#[command(
    name = "logpipe",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_HELP,
    max_term_width = 100
)]
pub struct Args {
    /// Directory (DIR/ writes DIR/current) or active file path.
    ///
    /// A path ending in `/` or `/.`, or naming an existing directory, is a
    /// directory (one ending in `/..` must exist); anything else is the
    /// active file.
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,

    /// Name of the active file in a directory TARGET.
    ///
    /// Only for a directory TARGET; without it the name is `current`.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,

    /// Roll before a write would pass SIZE.
    ///
    /// Plain bytes, or a number with K, M, G, T (or KiB, MiB, GiB, TiB):
    /// all are powers of 1024.
    #[arg(long, value_name = "SIZE", default_value = "100M", value_parser = parse_size)]
    pub size: u64,

    /// Also roll every INTERVAL, on the clock.
    ///
    /// At wall-clock boundaries aligned to the clock: `1d` (midnight), `1h`
    /// (on the hour), `15m`, `30s`: any whole number of s, m, h or d that
    /// divides a day evenly; or `never`. A boundary rolls a non-empty
    /// active file even when no input arrives.
    #[arg(long, value_name = "INTERVAL", default_value = "1d", value_parser = schedule::parse_every)]
    pub every: Every,

    /// Use UTC instead of the local time zone.
    ///
    /// For boundaries, segment dates and timestamps. The local zone is the
    /// one `TZ` names (a POSIX rule like `CET-1CEST,M3.5.0,M10.5.0/3`, or
    /// a zone name like `Europe/Berlin`, found in the system's zoneinfo or
    /// in the copy built into logpipe), or /etc/localtime when `TZ` is not
    /// set.
    #[arg(long)]
    pub utc: bool,

    /// Prefix lines with the time read: rfc3339, tai64n, unix.
    ///
    /// Each line gets the time it was read and a space: `rfc3339` is
    /// `2026-11-21T14:03:07.123456Z` with --utc, else the local time and
    /// offset (`2026-11-21T15:03:07.123456+01:00`); `tai64n` is
    /// `@400000006b01a4a5075bca00`, as multilog and s6-log write it;
    /// `unix` is seconds and microseconds, `1795269787.123456`.
    #[arg(long, value_name = "FORMAT", hide_possible_values = true)]
    pub timestamp: Option<Format>,

    /// Testing only: start a manual clock at this instant; input lines
    /// `#logpipe-clock <RFC 3339 instant>` then set it and are not written.
    #[arg(long, value_name = "RFC3339", hide = true)]
    pub debug_clock: Option<jiff::Timestamp>,

    /// While writes fail: block, drop input, or prune.
    ///
    /// `block` pauses reading, so the producer waits, and resumes where it
    /// stopped; `drop` discards input, counts it, and writes a marker line
    /// when writes work again, so the producer never waits; `prune`, when
    /// a write fails for lack of space (ENOSPC, EDQUOT), deletes this
    /// target's oldest finished segments one at a time, compressed or
    /// waiting for compression, retrying after each, until the write
    /// succeeds or only --prune-keep segments are left, then blocks. One
    /// line on stderr says what was deleted once writes work again.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "block",
        hide_possible_values = true
    )]
    pub on_full: OnFull,

    /// Also copy the input to standard output.
    ///
    /// The copy is made after the input is written to the file. A closed
    /// standard output stops the copy, never the sink.
    #[arg(long)]
    pub tee: bool,

    /// Compress finished segments: gzip, zstd, none.
    ///
    /// In a worker thread: `gzip` turns `X` into `X.gz`, `zstd` into
    /// `X.zst` (about five times faster than gzip at their default levels,
    /// for output no larger); `none` leaves segments as they are. A target
    /// may hold segments of both methods after a change: each counts once.
    #[arg(
        long,
        value_name = "METHOD",
        default_value = "gzip",
        hide_possible_values = true
    )]
    pub compress: Compress,

    /// Compression level: gzip 1-9, zstd 1-19.
    ///
    /// Lower is faster, higher is smaller. Without it, each method's own
    /// default: 6 for gzip, 3 for zstd.
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<u32>,

    /// Compress on up to N threads.
    ///
    /// gzip, and zstd above level 8, compress up to N waiting segments at
    /// once, each on its own thread with its own compressor (about 0.5 MiB
    /// for gzip, up to 90 MiB at zstd 19). zstd up to level 8 compresses
    /// one segment at a time on N threads (at level 3, about 10 MiB for one
    /// and 3 more for each other). Hooks still run in segment order. 1 to
    /// 64.
    #[arg(long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub compress_threads: u16,

    /// Keep at most N finished segments.
    ///
    /// The oldest are deleted first. Retention is off unless asked: without
    /// --keep, --max-age or --max-total logpipe deletes nothing.
    #[arg(long, value_name = "N", value_parser = parse_positive_count)]
    pub keep: Option<u64>,

    /// Delete segments finished over DURATION ago.
    ///
    /// A whole number of s, m, h or d, like 30d, 12h or 90m.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub max_age: Option<Duration>,

    /// Keep finished segments within SIZE in total.
    ///
    /// The oldest are deleted first; SIZE as for --size.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_total: Option<u64>,

    /// Run CMD SEGMENT after each segment is finished.
    ///
    /// The shell command CMD runs with the finished (and compressed)
    /// segment's path as its last argument. Hooks run one at a time, in
    /// segment order, without holding up input; a failure is reported on
    /// stderr and nothing else.
    #[arg(long, value_name = "CMD", value_parser = parse_command)]
    pub on_rotate: Option<String>,

    /// Write a newline to descriptor N once ready.
    ///
    /// s6's notification-fd protocol: once the lock on the target is held
    /// and the active file is open, logpipe writes a newline to descriptor
    /// N (3 or more), through a descriptor of its own, and never writes to
    /// it again. If N is not open for writing, logpipe exits with status 1.
    /// Under systemd, `READY=1` goes to `NOTIFY_SOCKET` at the same moment,
    /// without this option.
    #[arg(long, value_name = "N", value_parser = parse_ready_fd)]
    pub ready_fd: Option<i32>,

    /// When to fsync: rotate, always, or like 5s.
    ///
    /// `rotate`: each finished segment is made durable soon after its
    /// rename, without holding up the reading loop: the worker thread
    /// fsyncs finished segments in batches (with compression, each `.gz`
    /// once made), then the state file and the directory. The active file
    /// is fsynced at exit. `always`: also after every write. A duration
    /// like `5s`: also when data written that long ago is not synced yet,
    /// checked at least once a second.
    #[arg(long, value_name = "WHEN", default_value = "rotate", value_parser = parse_fsync)]
    pub fsync: Fsync,

    /// Wait at exit for compressions and hooks.
    ///
    /// Segments left uncompressed are compressed by the next start, which
    /// then runs their --on-rotate; a hook that did not run for a segment
    /// already compressed does not run later. logpipe names both on stderr.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Write counters to FILE (Prometheus text).
    ///
    /// In the text exposition format, for node_exporter's textfile
    /// collector (name it `*.prom` in the collector's directory). Replaced
    /// atomically every --metrics-interval, at each rotation, when a pause
    /// or a run of drops starts or ends, and at exit.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,

    /// How often to write the --metrics file.
    ///
    /// A whole number of s, m, h or d.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_positive_duration, requires = "metrics")]
    pub metrics_interval: Duration,

    /// Owner of created files: USER, USER:GROUP, :GROUP.
    ///
    /// Every file and directory logpipe creates (the active file, segments,
    /// their compressed copies, the lock and state files, directories) is
    /// given to USER and GROUP through its descriptor right after it is
    /// created; nothing that exists is changed. `:GROUP` alone changes the
    /// group only (a user may give its files to a group it is a member
    /// of); `USER:` takes the user's login group. Names are looked up in
    /// /etc/passwd and /etc/group (not through NSS); numeric ids always
    /// work. Only root may give files to another user: running logpipe as
    /// that user is simpler, and safer.
    #[arg(long, value_name = "USER[:GROUP]", value_parser = crate::owner::parse_arg)]
    pub owner: Option<crate::owner::Owner>,

    /// Segments --on-full prune never deletes.
    ///
    /// With --on-full prune, the number of finished segments (the newest)
    /// that are kept when the disk is full; once only they are left,
    /// logpipe pauses as `block` does.
    #[arg(long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u64))]
    pub prune_keep: u64,

    /// Do not write records matching REGEX (repeatable).
    ///
    /// A record is a line and its continuation lines (--continuation); it
    /// is dropped when its first line matches any --drop pattern. Patterns
    /// are byte regexes (Rust's regex syntax) matched against each line
    /// without its newline: `^` and `$` are the line's ends; `\w`, `\d`
    /// and `\s` are ASCII and `.` matches any byte unless `(?u)` turns
    /// Unicode on. A --drop pattern wins over --route.
    #[arg(long, value_name = "REGEX", value_parser = parse_pattern)]
    pub drop: Vec<String>,

    /// Send records matching REGEX to TARGET (repeatable).
    ///
    /// The first --route whose pattern matches a record's first line
    /// takes the record, continuation lines included. TARGET is a target
    /// as the main one (a directory, or an active file), written with the
    /// same options: its own lock, state, numbering, compression and
    /// retention. The pattern ends at the last `=`.
    #[arg(long, value_name = "REGEX=TARGET", value_parser = parse_route)]
    pub route: Vec<(String, PathBuf)>,

    /// Redact matches of REGEX or preset @NAME.
    ///
    /// Each match becomes `[REDACTED]`. Repeatable; in every target, before anything is written. A pattern
    /// with a group named `secret` replaces only that group
    /// (`password=(?P<secret>\S+)` keeps `password=`). Presets:
    /// @credentials (key=value and JSON), @auth (Authorization headers,
    /// bearer tokens), @private-key (PEM blocks, over several lines too),
    /// @card (card numbers that pass the Luhn check); the README lists
    /// their patterns.
    #[arg(long, value_name = "REGEX|@NAME", value_parser = parse_redact)]
    pub redact: Vec<String>,

    /// Lines matching REGEX belong to the record before them.
    ///
    /// For multi-line records such as tracebacks: `^\s` takes indented
    /// lines (Python's `  File ...`, Java's `\tat ...`). They follow the line
    /// that began the record to its target, or are dropped with it, even
    /// when they arrive later.
    #[arg(long, value_name = "REGEX", value_parser = parse_pattern)]
    pub continuation: Option<String>,

    /// Print the target's lines in order, then exit.
    ///
    /// Finished segments in (date, N) order, decompressed, each once (from
    /// its plain file while that is there), then the active file. Never
    /// writes to the target and takes no lock: it runs beside the writer,
    /// or on a copy of its directory. Takes --name, --since, --until,
    /// --cursor and --utc, no option of writing.
    #[arg(long, group = "reading")]
    pub read: bool,

    /// Print the target's lines in order, then follow it.
    ///
    /// As --read, then every line written from then on, through any
    /// number of rotations and compressions, each once and in order, until
    /// SIGTERM or SIGINT (which end at a line end) or until standard output
    /// is closed.
    #[arg(long, group = "reading")]
    pub follow: bool,

    /// Reading: skip segments dated before DATE.
    ///
    /// DATE is YYYY-MM-DD, compared with the date in segment names; whole
    /// segments are skipped without being opened. The active file counts
    /// as today's (in the local zone, or UTC with --utc).
    #[arg(long, value_name = "DATE", requires = "reading")]
    pub since: Option<jiff::civil::Date>,

    /// Reading: skip segments dated after DATE.
    ///
    /// As --since; the active file counts as today's.
    #[arg(
        long,
        value_name = "DATE",
        requires = "read",
        conflicts_with = "follow"
    )]
    pub until: Option<jiff::civil::Date>,

    /// Reading: resume after the line saved in FILE.
    ///
    /// FILE records where the last line written to standard output ends
    /// (segment and offset), replaced atomically at most once a second and
    /// at a clean stop; a missing FILE starts at the oldest line. After a
    /// kill, the lines of the last second may come again; none is missed.
    #[arg(long, value_name = "FILE", requires = "reading")]
    pub cursor: Option<PathBuf>,

    /// Permission bits of created files.
    ///
    /// In octal, at most 0777; set exactly, whatever the umask.
    #[arg(long, value_name = "OCTAL", default_value = "0640", value_parser = parse_file_mode)]
    pub mode: u32,

    /// Permission bits of created directories.
    ///
    /// In octal, at most 0777; the umask applies, as for mkdir.
    #[arg(long, value_name = "OCTAL", default_value = "0750", value_parser = parse_file_mode)]
    pub dir_mode: u32,

    /// For packaging: print the man page or a shell completion script to
    /// standard output and exit. Alone on the command line: TARGET is not
    /// needed.
    #[arg(long, value_name = "WHAT", hide = true, exclusive = true)]
    pub generate: Option<Generate>,
}

/// The options of writing, which `--read` and `--follow` refuse: every
/// option but these.
const READING_OPTIONS: [&str; 8] = [
    "target", "name", "utc", "read", "follow", "since", "until", "cursor",
];

/// The first option of writing given on a command line that reads (with
/// `--read` or `--follow`), as `--size`.
pub fn writing_option_in(matches: &clap::ArgMatches) -> Option<String> {
    use clap::CommandFactory;
    Args::command()
        .get_arguments()
        .filter(|arg| !READING_OPTIONS.contains(&arg.get_id().as_str()))
        .find(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|arg| format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str())))
}

/// How finished segments are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    /// `X` becomes `X.gz`.
    Gzip,
    /// `X` becomes `X.zst`.
    Zstd,
    /// Segments stay as they are.
    None,
}

/// What happens to input while writes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFull {
    /// Stop reading and retry; nothing is lost.
    Block,
    /// Discard and count; the producer never waits.
    Drop,
    /// Delete the oldest finished segments, then block.
    Prune,
}

/// When the active file is fsynced, beyond what the worker does for every
/// finished segment after its rename (an fsync of the segment, the state
/// file and the directory, in batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Only at rotation and at exit.
    Rotate,
    /// After every write.
    Always,
    /// When data written this long ago is not synced yet.
    Every(Duration),
}

fn parse_fsync(text: &str) -> Result<Fsync, String> {
    match text {
        "rotate" => Ok(Fsync::Rotate),
        "always" => Ok(Fsync::Always),
        _ => parse_duration(text)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Fsync::Every)
            .ok_or_else(|| "expected rotate, always, or a duration like 5s".into()),
    }
}

/// Checks a shell command given with `--on-rotate`. The hook runs
/// `sh -c 'CMD "$@"' logpipe SEGMENT`, so an empty CMD would have the shell
/// try to run each segment itself as a program.
fn parse_command(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("expected a shell command, not an empty one".into());
    }
    Ok(text.to_string())
}

/// Checks a descriptor given with `--ready-fd`: not standard input,
/// output or error, and a descriptor number at all.
fn parse_ready_fd(text: &str) -> Result<i32, String> {
    match text.parse::<i32>() {
        Ok(fd) if fd >= 3 => Ok(fd),
        _ => Err("expected a descriptor number of 3 or more".into()),
    }
}

/// Checks a pattern of the line stage: it must compile.
fn parse_pattern(text: &str) -> Result<String, String> {
    crate::filter::compile(text)?;
    Ok(text.to_string())
}

/// Splits `REGEX=TARGET` at its last `=` and checks the pattern.
fn parse_route(text: &str) -> Result<(String, PathBuf), String> {
    let Some((pattern, target)) = text.rsplit_once('=') else {
        return Err("expected REGEX=TARGET".into());
    };
    if target.is_empty() {
        return Err("expected a TARGET after the last '='".into());
    }
    Ok((parse_pattern(pattern)?, PathBuf::from(target)))
}

/// Checks a `--redact` value: a pattern, or the name of a preset.
fn parse_redact(text: &str) -> Result<String, String> {
    for pattern in crate::filter::redact::patterns(text)? {
        parse_pattern(&pattern)?;
    }
    Ok(text.to_string())
}

/// Checks an active file name given with `--name`: one path component.
fn parse_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text == "." || text == ".." || text.contains('/') {
        return Err("expected a file name, without '/'".into());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn fsync_policies() {
        assert_eq!(parse_fsync("rotate"), Ok(Fsync::Rotate));
        assert_eq!(parse_fsync("always"), Ok(Fsync::Always));
        assert_eq!(parse_fsync("5s"), Ok(Fsync::Every(Duration::from_secs(5))));
        for bad in ["", "0s", "never", "5"] {
            assert!(parse_fsync(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn commands() {
        assert_eq!(parse_command("gzip -t"), Ok("gzip -t".into()));
        for bad in ["", " ", "\t\n "] {
            assert!(parse_command(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn ready_fds() {
        assert_eq!(parse_ready_fd("3"), Ok(3));
        assert_eq!(parse_ready_fd("2147483647"), Ok(i32::MAX));
        for bad in ["", "0", "1", "2", "-1", "x", "2147483648", "3.0"] {
            assert!(parse_ready_fd(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("app.log"), Ok("app.log".into()));
        for bad in ["", ".", "..", "a/b"] {
            assert!(parse_name(bad).is_err(), "{bad} should be refused");
        }
    }
}
