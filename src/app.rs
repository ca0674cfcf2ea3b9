//! The main loop: set up the target, then move standard input into it
//! until end of input.

use std::fs::{DirBuilder, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jiff::Timestamp;

use crate::cli::Args;
use crate::lock;
use crate::numbering::Numbering;
use crate::reader::LineReader;
use crate::segment::Segment;
use crate::target::Target;

/// The pipe size asked for when standard input is a pipe: the largest an
/// unprivileged process may set by default (`/proc/sys/fs/pipe-max-size`).
/// A fuller pipe lets a producer run ahead while logpipe is busy syncing a
/// segment, and lets each read take more at once.
const PIPE_SIZE: i32 = 1 << 20;

/// Runs logpipe with parsed arguments until end of input.
pub fn run(args: Args, target: Target) -> Result<()> {
    create_dir(&target.dir, args.dir_mode)?;
    let _lock = lock::acquire(&target.lock(), args.mode)?;
    let numbering = Numbering::load(&target, args.mode)?;
    let mut segment = Segment::open(target, numbering, args.size, args.mode, Timestamp::now())?;

    let stdin = stdin_file()?;
    enlarge_pipe(&stdin);
    let mut reader = LineReader::new(stdin);
    while let Some(run) = reader.next_run().context("unable to read standard input")? {
        segment.write(Timestamp::now(), run)?;
    }
    segment.close(Timestamp::now())
}

/// Creates `dir` and its missing parents with `mode` (umask applied).
fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    let created = DirBuilder::new().recursive(true).mode(mode).create(dir);
    // mkdir's EEXIST for an existing file would read as nonsense here.
    // (Rebuilding from components drops a trailing `/`, which makes stat
    // fail with ENOTDIR instead of seeing the file.)
    let plain: PathBuf = dir.components().collect();
    if plain.exists() && !plain.is_dir() {
        bail!(
            "unable to create directory {}: a file of that name exists",
            dir.display()
        );
    }
    created.with_context(|| format!("unable to create directory {}", dir.display()))
}

/// Standard input as a plain `File`, read without std's 8 KiB `BufReader`
/// in between (the reader has its own, larger buffer).
fn stdin_file() -> Result<File> {
    let fd = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("unable to use standard input")?;
    Ok(File::from(fd))
}

/// Asks for a larger pipe buffer when standard input is a pipe. Refusal
/// (not a pipe, or over the system's limit) is fine: the default works,
/// just with more, smaller reads.
fn enlarge_pipe(stdin: &File) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;
    let is_pipe = stdin.metadata().is_ok_and(|m| m.file_type().is_fifo());
    if is_pipe {
        // SAFETY: fcntl on a descriptor we own, with integer arguments only;
        // it cannot touch our memory. Its result is deliberately ignored.
        unsafe {
            if libc::fcntl(stdin.as_raw_fd(), libc::F_GETPIPE_SZ) < PIPE_SIZE {
                libc::fcntl(stdin.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
            }
        }
    }
}
