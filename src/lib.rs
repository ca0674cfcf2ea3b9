//! logpipe: a log sink for the far end of a pipe.
//!
//! Standard input goes to an active file that is rolled, at line
//! boundaries, into dated and numbered segments. The binary in `main.rs`
//! only parses arguments and reports errors; everything else is here, as a
//! library, so that tests and benchmarks can reach the parts.
//!
//! Linux only: rotation relies on `renameat2(RENAME_NOREPLACE)`, input on
//! `F_SETPIPE_SZ`, the worker on `sync_file_range`. The module map is in
//! ARCHITECTURE.md.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "logpipe runs on Linux only: it needs renameat2(RENAME_NOREPLACE), F_SETPIPE_SZ and sync_file_range"
);

pub mod app;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod compress;
pub mod config;
pub mod diag;
pub mod filter;
pub mod follow;
pub mod gzip;
pub mod hooks;
pub mod inventory;
pub mod lock;
pub mod manpage;
pub mod metrics;
pub mod naming;
pub mod notify;
pub mod numbering;
pub mod onfull;
pub mod owner;
pub mod pool;
pub mod prune;
pub mod reader;
pub mod retention;
pub mod rules;
pub mod schedule;
pub mod signals;
pub mod sink;
pub mod stamp;
pub mod sys;
pub mod target;
pub mod tee;
pub mod units;
pub mod wait;
pub mod worker;
pub mod zone;
