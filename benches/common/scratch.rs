//! A corpus file and a scratch directory, shared by the benchmarks that
//! time whole `logpipe` runs on files.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::corpus::Corpus;

/// Writes `bytes` of seeded corpus (tests/corpus.rs) to `path`; returns
/// its sha256.
pub fn generate(path: &Path, bytes: u64) -> String {
    let mut file = File::create(path).expect("create the corpus");
    let mut corpus = Corpus::new(0x5eed);
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(6 << 20);
    let mut written = 0;
    while written < bytes {
        buf.clear();
        corpus.fill(&mut buf, (4usize << 20).min((bytes - written) as usize));
        file.write_all(&buf).expect("write the corpus");
        hasher.update(&buf);
        written += buf.len() as u64;
    }
    hex(&hasher.finalize())
}

pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A whole number from the environment, at least 1.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
    .max(1)
}
