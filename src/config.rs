//! The configuration: the command line turned, once, into the values each
//! part of logpipe takes. `app::run` reads nothing of `Args`.
//!
//! Every value was checked by clap's parsers already (exit 2 before
//! anything is touched); what happens here cannot fail: the time zone is
//! found (UTC, with a warning, when none is), and options are grouped by
//! the part that uses them.

use std::time::Duration;

use jiff::tz::TimeZone;

use crate::cli::{Args, Compress, OnFull};
use crate::clock::Clock;
use crate::retention::Retention;
use crate::schedule::Schedule;
use crate::sink::Options;
use crate::stamp::Stamper;
use crate::target::Target;
use crate::worker::Policy;

/// Everything `app::run` needs.
#[derive(Debug)]
pub struct Config {
    /// Where the files live.
    pub target: Target,
    /// Permission bits of directories logpipe creates.
    pub dir_mode: u32,
    /// How the active file is written and rolled.
    pub sink: Options,
    /// What happens while writes fail.
    pub on_full: OnFull,
    /// `--prune-keep`: segments `--on-full prune` leaves.
    pub prune_keep: u64,
    /// `--owner`: who created files and directories are given to.
    pub owner: Option<crate::owner::Owner>,
    /// What happens to finished segments.
    pub worker: Policy,
    /// The source of `now`: the system clock, or `--debug-clock`.
    pub clock: Clock,
    /// `--timestamp`: the prefix maker, in the configured zone.
    pub stamper: Option<Stamper>,
    /// `--tee`.
    pub tee: bool,
    /// How long the end waits for queued compressions and hooks.
    pub shutdown_timeout: Duration,
    /// `--metrics`, `--metrics-interval`.
    pub metrics: Option<crate::metrics::Options>,
    /// `--ready-fd`: where readiness is written.
    pub ready_fd: Option<i32>,
}

impl Config {
    /// The configuration for `args` on the resolved `target`.
    pub fn new(args: Args, target: Target) -> Config {
        let tz = if args.utc {
            TimeZone::UTC
        } else {
            crate::zone::local()
        };
        Config {
            target,
            dir_mode: args.dir_mode,
            sink: Options {
                size: args.size,
                mode: args.mode,
                schedule: Schedule::new(args.every, tz.clone()),
                fsync: args.fsync,
                dir_mode: args.dir_mode,
            },
            on_full: args.on_full,
            prune_keep: args.prune_keep,
            owner: args.owner,
            worker: Policy {
                gzip: (args.compress == Compress::Gzip).then_some(args.level),
                mode: args.mode,
                retention: Retention {
                    keep: args.keep,
                    max_age: args.max_age,
                    max_total: args.max_total,
                },
                on_rotate: args.on_rotate,
                // Made by `app::run`, with the main thread's side.
                prune: None,
            },
            clock: args.debug_clock.map_or(Clock::System, Clock::Manual),
            stamper: args
                .timestamp
                .map(|format| Stamper::new(format, tz, args.utc)),
            tee: args.tee,
            shutdown_timeout: args.shutdown_timeout,
            metrics: args.metrics.map(|file| crate::metrics::Options {
                file,
                interval: args.metrics_interval,
            }),
            ready_fd: args.ready_fd,
        }
    }
}
