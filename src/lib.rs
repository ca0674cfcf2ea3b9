//! logpipe: a log sink for the far end of a pipe.
//!
//! Standard input goes to an active file that is rolled, at line
//! boundaries, into dated and numbered segments. The binary in `main.rs`
//! only parses arguments and reports errors; everything else is here, as a
//! library, so that tests and benchmarks can reach the parts.

pub mod app;
pub mod cli;
pub mod clock;
pub mod diag;
pub mod gzip;
pub mod inventory;
pub mod lock;
pub mod manpage;
pub mod naming;
pub mod numbering;
pub mod reader;
pub mod retention;
pub mod schedule;
pub mod segment;
pub mod signals;
pub mod stamp;
pub mod sys;
pub mod target;
pub mod tee;
pub mod units;
pub mod worker;
pub mod zone;
