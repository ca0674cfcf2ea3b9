//! The configuration: the command line turned, once, into the values each
//! part of logpipe takes. `app::run` reads nothing of `Args`.
//!
//! Every value was checked by clap's parsers already (exit 2 before
//! anything is touched), but for what depends on another option: the
//! `--level` range of the `--compress` method, checked here, with the same
//! exit. Then the time zone is found (UTC, with a warning, when none is),
//! and options are grouped by the part that uses them.

use std::time::Duration;

use jiff::tz::TimeZone;

use crate::cli::{Args, Compress, OnFull};
use crate::clock::Clock;
use crate::codec::Method;
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
    /// The configuration for `args` on the resolved `target`, or the usage
    /// error that a value in the wrong range for its method is (one line,
    /// naming the value and the range).
    pub fn new(args: Args, target: Target) -> Result<Config, String> {
        let method = match args.compress {
            Compress::Gzip => Some(Method::Gzip),
            Compress::Zstd => Some(Method::Zstd),
            Compress::None => None,
        };
        // `--level` with `--compress none` has nothing to apply to, and is
        // left unchecked, as before.
        let compress = match method {
            Some(method) => {
                let level = args.level.unwrap_or(method.default_level());
                Some((method, method.check_level(level)?))
            }
            None => None,
        };
        let tz = if args.utc {
            TimeZone::UTC
        } else {
            crate::zone::local()
        };
        Ok(Config {
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
            worker: Policy {
                compress,
                threads: usize::from(args.compress_threads),
                mode: args.mode,
                retention: Retention {
                    keep: args.keep,
                    max_age: args.max_age,
                    max_total: args.max_total,
                },
                on_rotate: args.on_rotate,
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
        })
    }
}
