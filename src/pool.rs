//! The compression threads of `--compress-threads`: threads that bring
//! finished segments to their compressed form ([`compress::finish`]) while
//! the worker thread keeps the order.
//!
//! How the N threads are spent ([`split`]):
//! - gzip, and zstd above level [`codec::WORKERS_UP_TO`]: up to N segments
//!   at once, each on a thread of the pool with its own compressor;
//! - zstd up to that level: one segment at a time, on the pool's one
//!   thread, whose compressor has N worker threads of zstd's own that
//!   compress the segment in jobs while the pool's thread reads and writes
//!   it ([`codec::Zstd`]). With one thread, that is what makes logpipe's
//!   zstd as fast as the `zstd` program's; with two, 256 MiB at level 3
//!   took 0.685 s against 0.699 s for two segments at once (medians of 9
//!   alternating runs), for 1.08 s of CPU against 1.23 s, and the last
//!   segment of a run, compressed after the end of the input, is shared
//!   too.
//!
//! The worker hands over a segment ([`Pool::submit`]) only when a thread
//! is free, so at most one segment per thread is under way and memory is
//! bounded by the threads' compressors (each made at its first segment,
//! then reset from file to file): about 0.5 MiB each for gzip, about 10
//! MiB for zstd 3 with one worker and 3 more per worker, up to about 90
//! MiB each at zstd 19. What happens next
//! (the hook, retention, the report at shutdown) is the worker's, in
//! segment order, from what [`Done`] says.
//!
//! A panic while compressing one segment is caught and reported as that
//! segment's failure (retried like a full disk), with a fresh compressor
//! for the next, so that one bad segment cannot take a thread away.

use std::ffi::OsString;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use anyhow::{Context, Result, anyhow};

use crate::codec::{self, Compressor, Method};
use crate::compress::{self, Outcome};
use crate::inventory::{self, Form};
use crate::naming::SegmentId;
use crate::prune::{self, Pruner};
use crate::sys::Dir;

/// One segment to compress, in the directory the worker used when it
/// handed it over.
#[derive(Debug)]
pub struct Job {
    pub id: SegmentId,
    pub dir: Arc<Dir>,
}

/// How a job ended.
#[derive(Debug)]
pub struct Done {
    pub id: SegmentId,
    /// The size of the plain segment before (0 if it was not there).
    pub len: u64,
    pub result: Result<Outcome>,
}

/// What the threads ask of the worker: whether `id` may be committed now
/// (see `commit` in [`compress::finish`]), and what to do once it is done.
pub trait Owner: Send + Sync + 'static {
    /// Right before the first step that changes a final name.
    fn commit(&self, id: SegmentId) -> bool;
    /// The job ended (also when it failed, or was refused its commit).
    fn done(&self, done: Done);
}

/// The worker's handle on the threads. Dropping it lets each thread end
/// once its segment is done.
#[derive(Debug)]
pub struct Pool {
    jobs: Sender<Job>,
    segments: usize,
}

/// What every thread knows.
struct Setup {
    method: Method,
    level: u32,
    /// The worker threads of each compressor (zstd's, see [`split`]).
    workers: u32,
    /// The active file's name, whose segments these are.
    active: OsString,
    mode: u32,
    /// `--on-full prune`: held while a segment is compressed, so that the
    /// main thread deletes none meanwhile; and the way to make room when
    /// the compressed copy does not fit.
    prune: Option<Pruner>,
}

impl Pool {
    /// Starts compressing with `method` at `level` into files of
    /// permission bits `mode`, on `threads` (at least 1) threads as the
    /// module docs say.
    pub fn start(
        threads: usize,
        method: Method,
        level: u32,
        active: OsString,
        mode: u32,
        prune: Option<Pruner>,
        owner: Arc<dyn Owner>,
    ) -> Result<Pool> {
        let (jobs, receiver) = mpsc::channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let (segments, workers) = split(method, level, threads);
        let setup = Arc::new(Setup {
            method,
            level,
            workers,
            active,
            mode,
            prune,
        });
        for i in 0..segments {
            let (receiver, setup, owner) = (receiver.clone(), setup.clone(), owner.clone());
            thread::Builder::new()
                .name(format!("logpipe-compress-{}", i + 1))
                .spawn(move || run(&receiver, &setup, &*owner))
                .context("unable to start a compression thread")?;
        }
        Ok(Pool { jobs, segments })
    }

    /// How many segments may be under way at once.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// Hands `job` to the next free thread. The caller keeps the count:
    /// at most [`Pool::segments`] jobs not yet [`Owner::done`].
    pub fn submit(&self, job: Job) {
        // The threads end only when this sender is dropped, or by a panic
        // outside a job, which would leave the job undone and reported by
        // the worker's shutdown as left uncompressed.
        let _ = self.jobs.send(job);
    }
}

/// How `threads` (at least 1) compression threads are spent: how many
/// segments at once, and how many worker threads of its own each
/// compressor has (see the module docs).
pub fn split(method: Method, level: u32, threads: usize) -> (usize, u32) {
    let threads = threads.max(1);
    match method {
        Method::Zstd if level <= codec::WORKERS_UP_TO => {
            (1, u32::try_from(threads).unwrap_or(u32::MAX))
        }
        Method::Gzip | Method::Zstd => (threads, 0),
    }
}

/// One thread: takes jobs until the pool is dropped.
fn run(receiver: &Mutex<Receiver<Job>>, setup: &Setup, owner: &dyn Owner) {
    let mut compressor: Option<Compressor> = None;
    loop {
        // The lock is held only while waiting for the next job.
        let job = receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        let Ok(Job { id, dir }) = job else {
            return;
        };
        let name = inventory::name(&setup.active, id, Form::Plain);
        let mut prune = setup.prune.clone();
        let held = setup.prune.as_ref().map(Pruner::hold);
        let len = dir.stat(&name).ok().flatten().map_or(0, |m| m.len);
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            let compressor = match &mut compressor {
                Some(compressor) => compressor,
                slot => slot.insert(
                    Compressor::new(setup.method, setup.level, setup.workers).with_context(
                        || format!("unable to start {} compression", setup.method.name()),
                    )?,
                ),
            };
            loop {
                let mut commit = || owner.commit(id);
                let result =
                    compress::finish(&dir, &setup.active, id, compressor, setup.mode, &mut commit);
                // No room for the compressed copy: the oldest segment goes
                // (perhaps this one), and the compression is tried again.
                if let (Err(e), Some(pruner)) = (&result, &mut prune)
                    && prune::is_no_space(e)
                {
                    match pruner.prune_for_compression(&dir) {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(why) => crate::warning!(
                            "unable to make room in {}: {why}",
                            dir.path().display()
                        ),
                    }
                }
                break result;
            }
        }))
        .unwrap_or_else(|_| {
            // Whatever state the compressor was left in, it is not reused.
            compressor = None;
            Err(anyhow!(
                "unable to compress {}: the compression thread panicked",
                dir.display(&name).display()
            ))
        });
        drop(held);
        if let Some(pruner) = &mut prune {
            pruner.report();
            if result.is_ok() {
                pruner.advanced();
            }
        }
        owner.done(Done { id, len, result });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::Condvar;

    use jiff::civil::date;

    fn id(n: u64) -> SegmentId {
        SegmentId {
            date: date(2026, 11, 21),
            n,
        }
    }

    /// Records what the threads report; refuses the commit of one id.
    #[derive(Default)]
    struct Recorder {
        done: Mutex<Vec<(SegmentId, Result<Outcome, String>)>>,
        changed: Condvar,
        refuse: Option<SegmentId>,
    }

    impl Owner for Recorder {
        fn commit(&self, id: SegmentId) -> bool {
            self.refuse != Some(id)
        }

        fn done(&self, done: Done) {
            let result = done.result.map_err(|e| format!("{e:#}"));
            self.done.lock().unwrap().push((done.id, result));
            self.changed.notify_all();
        }
    }

    #[test]
    fn threads_compress_every_segment_and_report_each_once() {
        // gzip and zstd 9: three segments at once; zstd 3: one, on three
        // workers.
        for (method, level, segments) in [
            (Method::Gzip, 6, 3),
            (Method::Zstd, 3, 1),
            (Method::Zstd, 9, 3),
        ] {
            compress_twenty(method, level, segments);
        }
    }

    fn compress_twenty(method: Method, level: u32, segments: usize) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(Dir::open(tmp.path()).unwrap());
        let name = |n, form| inventory::name("current".as_ref(), id(n), form);
        let content = |n: u64| format!("segment {n}\n").repeat(1000 * n as usize);
        for n in 1..=20 {
            std::fs::write(tmp.path().join(name(n, Form::Plain)), content(n)).unwrap();
        }
        let recorder = Arc::new(Recorder {
            refuse: Some(id(7)),
            ..Recorder::default()
        });
        let pool = Pool::start(
            3,
            method,
            level,
            "current".into(),
            0o640,
            None,
            recorder.clone(),
        )
        .unwrap();
        assert_eq!(pool.segments(), segments);
        for n in 1..=21 {
            pool.submit(Job {
                id: id(n),
                dir: dir.clone(),
            });
        }
        let mut done = recorder.done.lock().unwrap();
        while done.len() < 21 {
            done = recorder.changed.wait(done).unwrap();
        }
        done.sort_by_key(|(id, _)| *id);
        for (i, (got, result)) in done.iter().enumerate() {
            let n = i as u64 + 1;
            assert_eq!(*got, id(n));
            let want = match n {
                7 => Outcome::Stopped,
                21 => Outcome::Gone,
                _ => Outcome::Done(name(n, method.form())),
            };
            assert_eq!(result.as_ref().unwrap(), &want, "{method:?} {n}");
        }
        for n in (1..=20).filter(|&n| n != 7) {
            let file = std::fs::File::open(tmp.path().join(name(n, method.form()))).unwrap();
            let mut back = String::new();
            method
                .decoder(file)
                .unwrap()
                .read_to_string(&mut back)
                .unwrap();
            assert_eq!(back, content(n), "{method:?} {n}");
            assert!(!tmp.path().join(name(n, Form::Plain)).exists());
        }
        assert!(tmp.path().join(name(7, Form::Plain)).exists());
        assert!(!tmp.path().join(name(7, method.temp_form())).exists());
    }
}
