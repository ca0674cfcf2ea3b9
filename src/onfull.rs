//! What happens while writes fail (`--on-full`): pause and retry, so
//! back-pressure reaches the producer through the pipe (`block`); delete
//! the oldest finished segments to make room, then pause (`prune`, see
//! [`crate::prune`]); or discard and count, so the producer never waits
//! (`drop`).
//!
//! Some failures are not a full disk and no wait would cure them: a name
//! too long for the filesystem, no segment number left, a file planted
//! where logpipe must create one. Those stop logpipe under either policy
//! ([`is_permanent`]).

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::backoff;
use crate::naming::SegmentId;
use crate::numbering::NoNumberLeft;
use crate::owner::NotGiven;
use crate::prune::{self, Pruner};
use crate::sys::{Dir, Refused};

/// How a blocking sink waits between attempts. The main loop's signals
/// provide it, so that SIGTERM cuts a wait short.
pub trait Pause: std::fmt::Debug {
    /// Waits for `wait`; returns false if logpipe is to stop instead.
    fn pause(&self, wait: Duration) -> bool;
}

/// The policy and its state.
#[derive(Debug)]
pub enum OnFull {
    /// Pause and retry, from exactly where the write stopped; with a
    /// pruner (`--on-full prune`), first make room while a lack of space
    /// is why, and segments are left to delete.
    Block {
        pauser: Rc<dyn Pause>,
        prune: Option<Pruner>,
        /// Since when, and how long the next wait is, while writes fail.
        pausing: Option<(Instant, Duration)>,
        /// Asked to stop while writes were failing: one last attempt was
        /// made.
        stopping: bool,
    },
    /// Discard what cannot be written, count it, and say so in a marker
    /// line once writes work again.
    Drop {
        /// Lines and bytes dropped since writes began to fail.
        dropped: Option<(u64, u64)>,
        /// A failed step of the tick was reported and is tried again at
        /// this instant.
        retry_at: Option<Instant>,
    },
}

/// What to do after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again now (a pause has passed).
    Retry,
    /// Give up with the error.
    Fail,
}

/// What the sink is doing, for `--metrics` and systemd's `STATUS=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Writes work.
    Writing,
    /// Writes fail and input is held back (`--on-full block`).
    Paused,
    /// Writes fail and input is dropped (`--on-full drop`).
    Dropping,
}

impl OnFull {
    /// What the sink is doing now.
    pub fn condition(&self) -> Condition {
        match self {
            OnFull::Block {
                pausing: Some(_), ..
            } => Condition::Paused,
            OnFull::Drop {
                dropped: Some(_), ..
            }
            | OnFull::Drop {
                retry_at: Some(_), ..
            } => Condition::Dropping,
            _ => Condition::Writing,
        }
    }

    /// `--on-full block`.
    pub fn block(pauser: Rc<dyn Pause>) -> OnFull {
        OnFull::Block {
            pauser,
            prune: None,
            pausing: None,
            stopping: false,
        }
    }

    /// `--on-full prune`: `block`, after making room with `pruner`.
    pub fn prune(pauser: Rc<dyn Pause>, pruner: Pruner) -> OnFull {
        OnFull::Block {
            pauser,
            prune: Some(pruner),
            pausing: None,
            stopping: false,
        }
    }

    /// `--on-full drop`.
    pub fn drop_input() -> OnFull {
        OnFull::Drop {
            dropped: None,
            retry_at: None,
        }
    }

    pub fn is_drop(&self) -> bool {
        matches!(self, OnFull::Drop { .. })
    }

    /// After a failed operation in `dir`: with `prune` and a lack of
    /// space, deletes the oldest segment and asks for a retry at once;
    /// with `block` (or `prune` when no segment is left to delete), says
    /// so once, waits (1 s, doubling up to 30 s) and asks for a retry;
    /// after a stop was asked for, allows one last attempt. With `drop`,
    /// or for an error no wait can cure, gives up.
    ///
    /// `finished` are the segments the sink finished and has not handed to
    /// the worker yet ([`Pruner::make_room`] may).
    pub fn after_failure(
        &mut self,
        e: &anyhow::Error,
        dir: &Dir,
        finished: &mut Vec<SegmentId>,
    ) -> Next {
        crate::metrics::write_error();
        if is_permanent(e) {
            return Next::Fail;
        }
        let OnFull::Block {
            pauser,
            prune,
            pausing,
            stopping,
        } = self
        else {
            return Next::Fail;
        };
        if *stopping {
            return Next::Fail;
        }
        if let Some(pruner) = prune
            && prune::is_no_space(e)
        {
            match pruner.make_room(dir, finished) {
                Ok(true) => return Next::Retry,
                Ok(false) => {}
                Err(why) => {
                    crate::warning!("unable to make room in {}: {why}", dir.path().display())
                }
            }
        }
        let (since, wait) = *pausing.get_or_insert_with(|| {
            crate::warning!("pausing: {e:#}");
            crate::metrics::pause_started();
            (Instant::now(), backoff::FIRST)
        });
        if !pauser.pause(wait) {
            // Asked to stop: one last attempt, then give up.
            *stopping = true;
            return Next::Retry;
        }
        *pausing = Some((since, backoff::next(Some(wait))));
        Next::Retry
    }

    /// After a success: says that writing resumed, if it had paused.
    /// `what` names the file, and is called only then: this runs after
    /// every write.
    pub fn after_success(&mut self, what: impl FnOnce() -> std::path::PathBuf) {
        if let OnFull::Block {
            prune: Some(pruner),
            ..
        } = self
        {
            pruner.report();
        }
        if let OnFull::Block { pausing, .. } = self
            && let Some((since, _)) = pausing.take()
        {
            crate::metrics::pause_ended();
            crate::info!(
                "resumed writing {} after {}s",
                what().display(),
                since.elapsed().as_secs()
            );
        }
    }

    /// With `drop`: counts `rest` as dropped; returns true if this starts
    /// a run of drops (the moment to say why).
    pub fn count_dropped(&mut self, rest: &[u8]) -> bool {
        let OnFull::Drop { dropped, .. } = self else {
            return false;
        };
        let first = dropped.is_none();
        let (lines, bytes) = dropped.get_or_insert((0, 0));
        let more = memchr::memchr_iter(b'\n', rest).count() as u64;
        *lines += more;
        *bytes += rest.len() as u64;
        crate::metrics::dropped(more, rest.len() as u64);
        if first {
            crate::metrics::poke();
        }
        first
    }

    /// With `drop`: what was dropped and not said in the log yet.
    pub fn dropped(&self) -> Option<(u64, u64)> {
        match self {
            OnFull::Drop { dropped, .. } => *dropped,
            OnFull::Block { .. } => None,
        }
    }

    /// With `drop`: the marker line is written.
    pub fn marker_written(&mut self) {
        if let OnFull::Drop { dropped, .. } = self {
            *dropped = None;
            crate::metrics::poke();
        }
    }

    /// With `drop`: whether a failed step waits for its retry still.
    pub fn waiting(&self, now: Instant) -> bool {
        matches!(self, OnFull::Drop { retry_at: Some(at), .. } if now < *at)
    }

    /// With `drop`: whether a failed step is to be retried later.
    pub fn retry_pending(&self) -> bool {
        matches!(
            self,
            OnFull::Drop {
                retry_at: Some(_),
                ..
            }
        )
    }

    /// With `drop`: a step of the tick failed; returns true the first
    /// time (the moment to say why), and retries a second later.
    pub fn tick_failed(&mut self) -> bool {
        match self {
            OnFull::Drop { retry_at, .. } => {
                let first = retry_at.is_none();
                *retry_at = Some(Instant::now() + backoff::FIRST);
                first
            }
            OnFull::Block { .. } => true,
        }
    }

    /// A tick went through.
    pub fn tick_worked(&mut self) {
        if let OnFull::Drop { retry_at, .. } = self {
            *retry_at = None;
        }
    }
}

/// Whether no wait can cure `e`: a name the filesystem cannot hold, no
/// segment number left, a file of the wrong kind planted where logpipe
/// must write.
pub fn is_permanent(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        if cause.is::<NoNumberLeft>() || cause.is::<Refused>() || cause.is::<NotGiven>() {
            return true;
        }
        let Some(io) = cause.downcast_ref::<io::Error>() else {
            return false;
        };
        io.raw_os_error() == Some(libc::ENAMETOOLONG)
            || io.get_ref().is_some_and(|inner| {
                inner.is::<Refused>() || inner.is::<NoNumberLeft>() || inner.is::<NotGiven>()
            })
    })
}
