//! Integration tests: each runs the real `logpipe` binary on generated
//! input and checks what it left on disk byte for byte.

mod cli;
mod compress;
mod corpus;
mod faults;
mod filter;
mod follow;
mod hostile;
mod memory;
mod metrics;
mod naming;
mod owner;
mod prune;
mod ready;
mod retention;
mod rootsafe;
mod size;
mod stamp;
mod streams;
mod time;
mod util;
mod worker;
mod zone;
mod zst;
