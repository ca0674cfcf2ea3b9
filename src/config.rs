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
    /// The targets of `--route`, each once, in the order first named; the
    /// line stage's target 1 is the first of them (0 is `target`).
    pub routes: Vec<Target>,
    /// `--drop`, `--route`, `--redact`, `--continuation`.
    pub filter: crate::filter::Options,
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
    /// The configuration for `args` on the resolved `target`, with the
    /// routed targets and line stage from [`line_stage`], or the usage
    /// error that a value in the wrong range for its method is (one line,
    /// naming the value and the range).
    pub fn new(
        args: Args,
        target: Target,
        (routes, filter): (Vec<Target>, crate::filter::Options),
    ) -> Result<Config, String> {
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
            routes,
            filter,
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
                compress,
                threads: usize::from(args.compress_threads),
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
        })
    }
}

/// The targets of `--route` and the line stage's options: each routed
/// TARGET resolved as the main one is, each distinct target once. A route
/// to the main target, or a routed target whose name leaves no room for a
/// segment suffix, is refused (exit 2, before anything is touched).
pub fn line_stage(
    args: &Args,
    main: &Target,
) -> Result<(Vec<Target>, crate::filter::Options), String> {
    let key = |t: &Target| t.active().components().collect::<std::path::PathBuf>();
    let mut routes: Vec<Target> = Vec::new();
    let mut route_patterns = Vec::new();
    for (pattern, path) in &args.route {
        let target = Target::resolve(path, None)
            .map_err(|e| format!("--route {pattern}={}: {e}", path.display()))?;
        target.check_name_fits()?;
        if key(&target) == key(main) {
            return Err(format!(
                "--route {pattern}={}: that is the main target; a route needs a target of its own",
                path.display()
            ));
        }
        let index = match routes.iter().position(|t| key(t) == key(&target)) {
            Some(i) => i,
            None => {
                routes.push(target);
                routes.len() - 1
            }
        };
        route_patterns.push((pattern.clone(), index + 1));
    }
    let filter = crate::filter::Options {
        drop: args.drop.clone(),
        routes: route_patterns,
        redact: args.redact.clone(),
        continuation: args.continuation.clone(),
    };
    Ok((routes, filter))
}
