//! Command-line arguments: the clap definition and the parsers for its
//! values.
//!
//! Everything here is checked before logpipe touches the disk, so a bad
//! value exits with status 2 (clap's own) and creates nothing.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::schedule::{self, Every};
use crate::stamp::Format;
use crate::units::{parse_duration, parse_file_mode, parse_size};

const ABOUT: &str =
    "Write standard input to a log file, rolled by size into dated, numbered segments";

const LONG_ABOUT: &str = "\
logpipe sits at the far end of a pipe and writes what it reads to an active
file. Before a write would take the active file past --size, and at every
wall-clock boundary of --every, it rolls the file into a finished segment,
at a line boundary, and carries on in a fresh active file. Finished
segments are gzipped by a worker thread, so the reading loop never waits for
compression. The producing program never holds a log file handle, and
rotation never loses or splits a line.

TARGET is either a directory (an existing directory, or any path ending in
/), in which case the active file is DIR/current (see --name), or the path
of the active file itself. Missing directories are created.";

const AFTER_HELP: &str = "\
Example:
  gunicorn app:wsgi --access-logfile - 2>&1 | logpipe --size 64M /var/log/app/

Files:
  ACTIVE                    the file being written (DIR/current, or TARGET)
  ACTIVE.YYYY-MM-DD.N       finished segments; the date is the day the
                            segment was opened (local time, or UTC with
                            --utc), N counts from 1 for each date and is
                            never reused for this target
  ACTIVE.YYYY-MM-DD.N.gz    the same, once compressed
  ACTIVE.lock               held while logpipe runs; holds its pid
  ACTIVE.state              the highest N used per date, so that segments
                            moved away or deleted never lead to a reused name

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
#[derive(Parser, Debug)]
#[command(
    name = "logpipe",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_HELP
)]
pub struct Args {
    /// Directory (DIR/ writes DIR/current) or active file path.
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,

    /// Name of the active file inside a directory TARGET.
    ///
    /// Only for a directory TARGET. By default, this is `current`.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,

    /// Roll the active file before a write would take it past SIZE.
    ///
    /// Plain bytes, or a number with K, M, G, T (or KiB, MiB, GiB, TiB):
    /// all are powers of 1024. By default, this is 100M.
    #[arg(long, value_name = "SIZE", default_value = "100M", value_parser = parse_size)]
    pub size: u64,

    /// Also roll at wall-clock boundaries: every INTERVAL, aligned to the
    /// clock.
    ///
    /// `1d` (midnight), `1h` (on the hour), `15m`, `30s`: any whole number
    /// of s, m, h or d that divides a day evenly; or `never`. A boundary
    /// rolls a non-empty active file even when no input arrives. By
    /// default, this is 1d.
    #[arg(long, value_name = "INTERVAL", default_value = "1d", value_parser = schedule::parse_every)]
    pub every: Every,

    /// Use UTC for boundaries, segment dates and timestamps instead of the
    /// local time zone (TZ, or /etc/localtime).
    #[arg(long)]
    pub utc: bool,

    /// Prefix each line with the time it was read, and a space.
    #[arg(long, value_name = "FORMAT")]
    pub timestamp: Option<Format>,

    /// Testing only: start a manual clock at this instant; input lines
    /// `#logpipe-clock <RFC 3339 instant>` then set it and are not written.
    #[arg(long, value_name = "RFC3339", hide = true)]
    pub debug_clock: Option<jiff::Timestamp>,

    /// What to do while writes fail (a full disk): `block` (pause reading,
    /// so the producer waits, and resume where it stopped) or `drop`
    /// (discard input, count it, and write a marker line when writes work
    /// again; the producer never waits).
    ///
    /// By default, this is block.
    #[arg(long, value_name = "POLICY", default_value = "block")]
    pub on_full: OnFull,

    /// Also copy the input to standard output (after it is written to the
    /// file). A closed standard output stops the copy, never the sink.
    #[arg(long)]
    pub tee: bool,

    /// Compress finished segments, in a worker thread: gzip or none.
    ///
    /// By default, this is gzip.
    #[arg(long, value_name = "METHOD", default_value = "gzip")]
    pub compress: Compress,

    /// Gzip level, 1 (fastest) to 9 (smallest). By default, this is 6.
    #[arg(long, value_name = "LEVEL", default_value = "6", value_parser = clap::value_parser!(u32).range(1..=9))]
    pub level: u32,

    /// Keep at most N finished segments; delete the oldest.
    ///
    /// Retention is off unless asked: by default logpipe deletes nothing.
    #[arg(long, value_name = "N")]
    pub keep: Option<u64>,

    /// Delete finished segments finished longer ago than DURATION (like
    /// 30d, 12h, 90m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,

    /// Keep the finished segments' total size at most SIZE; delete the
    /// oldest.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_total: Option<u64>,

    /// After each segment is finished (and compressed), run the shell
    /// command CMD with the segment's path as its last argument.
    ///
    /// Hooks run one at a time, in segment order, without holding up input;
    /// a failure is reported on stderr and nothing else.
    #[arg(long, value_name = "CMD")]
    pub on_rotate: Option<String>,

    /// When to fsync the active file: `rotate` (before each segment is
    /// renamed, then its directory), `always` (after every write), or a
    /// duration like `5s` (at most that much time of data at risk, checked
    /// at least once a second), each with what `rotate` does.
    ///
    /// By default, this is rotate.
    #[arg(long, value_name = "WHEN", default_value = "rotate", value_parser = parse_fsync)]
    pub fsync: Fsync,

    /// At the end, wait at most DURATION for queued compressions; what is
    /// left is finished by the next start. By default, this is 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Permission bits, in octal, for files logpipe creates.
    ///
    /// Set exactly, whatever the umask. By default, this is 0640.
    #[arg(long, value_name = "OCTAL", default_value = "0640", value_parser = parse_file_mode)]
    pub mode: u32,

    /// Permission bits, in octal, for directories logpipe creates.
    ///
    /// The umask applies, as for mkdir. By default, this is 0750.
    #[arg(long, value_name = "OCTAL", default_value = "0750", value_parser = parse_file_mode)]
    pub dir_mode: u32,

    /// For packaging: print the man page or a shell completion script to
    /// standard output and exit. Alone on the command line: TARGET is not
    /// needed.
    #[arg(long, value_name = "WHAT", hide = true, exclusive = true)]
    pub generate: Option<Generate>,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// The man page, logpipe(1), in roff.
    Man,
    /// A bash completion script.
    Bash,
    /// A zsh completion script.
    Zsh,
    /// A fish completion script.
    Fish,
}

/// The man page or completion script `what`, made from the clap
/// definition above, so it never falls behind `--help`.
pub fn generate(what: Generate) -> Vec<u8> {
    let cmd = Args::command();
    let shell = match what {
        Generate::Man => return man_page(cmd).into_bytes(),
        Generate::Bash => clap_complete::Shell::Bash,
        Generate::Zsh => clap_complete::Shell::Zsh,
        Generate::Fish => clap_complete::Shell::Fish,
    };
    // clap_complete offers hidden options too (clap_mangen leaves them
    // out), so completions get a command without them: no --debug-clock,
    // no --generate.
    let visible: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .cloned()
        .collect();
    let mut visible = clap::Command::new("logpipe")
        .version(env!("CARGO_PKG_VERSION"))
        .args(visible);
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut visible, "logpipe", &mut out);
    out
}

/// What roff writes before each piece it renders: a definition of the
/// string `Aq` (an apostrophe) that the pieces use.
const ROFF_PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// The man page, logpipe(1): clap_mangen's sections, except for two things.
/// The `.TH` line is written here, since clap_mangen drops its empty date
/// argument and so shifts the version into the date's place; and the parts
/// of AFTER_HELP become sections of their own (EXAMPLE, FILES, SIGNALS,
/// EXIT STATUS) with their indented tables kept as laid out, where
/// clap_mangen would fill all of it into one EXTRA section.
fn man_page(cmd: clap::Command) -> String {
    let mut page = format!(
        ".TH LOGPIPE 1 \"\" \"{} {}\" \"User Commands\"\n{ROFF_PREAMBLE}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default(),
    );
    let man = clap_mangen::Man::new(cmd);
    type Render = fn(&clap_mangen::Man, &mut dyn Write) -> std::io::Result<()>;
    let parts: [Render; 6] = [
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
        |_, out| after_help_sections().to_writer(out),
        clap_mangen::Man::render_version_section,
    ];
    for render in parts {
        let mut part = Vec::new();
        render(&man, &mut part).expect("writing to a Vec never fails");
        let part = String::from_utf8(part).expect("clap and roff write UTF-8");
        // Once, above, is enough (should roff change it, a repeat is
        // harmless).
        page.push_str(part.strip_prefix(ROFF_PREAMBLE).unwrap_or(&part));
    }
    page
}

/// AFTER_HELP as man page sections: a line at the left margin that ends in
/// `:` is a heading, indented lines are kept as they are (tables), other
/// lines are filled, and a blank line starts a paragraph.
fn after_help_sections() -> roff::Roff {
    let mut roff = roff::Roff::new();
    let mut preformatted = false;
    // A blank line starts a paragraph, unless a heading comes next.
    let mut paragraph = false;
    for line in AFTER_HELP.lines() {
        let indented = line.starts_with(' ');
        if preformatted && !indented {
            roff.control("fi", []);
            preformatted = false;
        }
        if line.is_empty() {
            paragraph = true;
            continue;
        }
        if let Some(heading) = line.strip_suffix(':').filter(|_| !indented) {
            roff.control("SH", [heading.to_uppercase().as_str()]);
            paragraph = false;
            continue;
        }
        if std::mem::take(&mut paragraph) {
            roff.control("PP", []);
        }
        if indented {
            if !preformatted {
                roff.control("nf", []);
                preformatted = true;
            }
            // The section already indents; keep the columns after it.
            roff.text([roff::roman(line.strip_prefix("  ").unwrap_or(line))]);
        } else {
            roff.text([roff::roman(line)]);
        }
    }
    if preformatted {
        roff.control("fi", []);
    }
    roff
}

/// How finished segments are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    /// `X` becomes `X.gz`.
    Gzip,
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
}

/// When the active file is fsynced, beyond the fsync of every segment
/// before it is renamed and of its directory after.
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
    fn names() {
        assert_eq!(parse_name("app.log"), Ok("app.log".into()));
        for bad in ["", ".", "..", "a/b"] {
            assert!(parse_name(bad).is_err(), "{bad} should be refused");
        }
    }
}
