//! Seeded, realistic log streams for tests and benchmarks.
//!
//! A xorshift generator (no `rand` dependency) drives a mix like real
//! traffic: access-log lines in nginx and gunicorn styles, JSON application
//! lines, and now and then a long stack trace folded onto one line. The
//! same seed always gives the same bytes, so a failure can be replayed.
//!
//! Shared with `benches/` through `#[path]`, so not every function is used
//! by every includer.
#![allow(dead_code)]

use std::io::Write;

/// A deterministic generator of log lines.
pub struct Corpus {
    state: u64,
}

const METHODS: &[&str] = &["GET", "GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD"];
const PATHS: &[&str] = &[
    "/",
    "/api/v1/users",
    "/api/v1/orders/search",
    "/static/app.3f9c1e.js",
    "/static/css/main.css",
    "/healthz",
    "/login",
    "/wp-login.php",
    "/api/v2/items/export",
    "/favicon.ico",
];
const STATUSES: &[u16] = &[
    200, 200, 200, 200, 200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 404, 500, 502,
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const MESSAGES: &[&str] = &[
    "request handled",
    "cache miss, fetching from origin",
    "retrying upstream call",
    "user signed in",
    "payment authorised – réf. façade ✓",
    "批量导入完成",
    "slow query\tmore than 500 ms",
];

impl Corpus {
    /// A generator for `seed` (any value; 0 is replaced).
    pub fn new(seed: u64) -> Corpus {
        Corpus { state: seed.max(1) }
    }

    /// The next pseudo-random number (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Appends one realistic line, newline included.
    pub fn line(&mut self, out: &mut Vec<u8>) {
        let kind = self.below(1000);
        let (ip, t) = (self.next_u64(), self.below(86_400));
        let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
        let (method, path) = (*self.pick(METHODS), *self.pick(PATHS));
        let (status, bytes, id) = (*self.pick(STATUSES), self.below(90_000), self.next_u64());
        let _ = if kind < 600 {
            writeln!(
                out,
                "{}.{}.{}.{} - - [21/Nov/2026:{h:02}:{m:02}:{s:02} +0000] \"{method} {path}?id={id:x} HTTP/1.1\" {status} {bytes} \"-\" \"{}\" {}.{:03}",
                ip as u8,
                (ip >> 8) as u8,
                (ip >> 16) as u8,
                (ip >> 24) as u8,
                self.pick(AGENTS),
                bytes % 3,
                id % 1000,
            )
        } else if kind < 860 {
            writeln!(
                out,
                "[2026-11-21 {h:02}:{m:02}:{s:02} +0000] [{}] [INFO] {method} {path} {status} {bytes}",
                id % 65_536
            )
        } else if kind < 999 {
            writeln!(
                out,
                "{{\"ts\":\"2026-11-21T{h:02}:{m:02}:{s:02}Z\",\"level\":\"info\",\"msg\":\"{}\",\"trace\":\"{id:016x}\",\"status\":{status},\"bytes\":{bytes}}}",
                self.pick(MESSAGES)
            )
        } else {
            // A stack trace folded onto one line, a few KiB long.
            let frames = 20 + self.below(100);
            let _ = write!(out, "Traceback (most recent call last):");
            for frame in 0..frames {
                let _ = write!(
                    out,
                    " File \"/srv/app/module{frame}.py\", line {}, in handler{frame};",
                    id % 997
                );
            }
            writeln!(out, " ValueError: bad input {id:x}")
        };
    }

    /// Appends realistic lines until `out` has grown by at least `bytes`.
    pub fn fill(&mut self, out: &mut Vec<u8>, bytes: usize) {
        let target = out.len() + bytes;
        while out.len() < target {
            self.line(out);
        }
    }

    /// Appends lines of hostile content, interleaved with realistic ones:
    /// empty lines, CR LF endings, NUL bytes, bytes that are not UTF-8, a
    /// line of only `\r`, and a run of lines of every length from 0 to 300.
    pub fn hostile(&mut self, out: &mut Vec<u8>) {
        let edges: &[&[u8]] = &[
            b"\n",
            b"\n\n\n",
            b"crlf line\r\n",
            b"\r\n",
            b"\r\r\r\n",
            b"nul\0inside\0\0line\n",
            b"\0\n",
            b"latin-1 caf\xe9 na\xefve\n",
            b"invalid utf-8 \xff\xfe\xc3\x28 \xed\xa0\x80 \xf8\x88\x80\x80\x80\n",
            b"\xff\n",
        ];
        for edge in edges {
            out.extend_from_slice(edge);
            self.line(out);
        }
        for len in 0..300 {
            out.extend((0..len).map(|i| b'a' + (i % 26) as u8));
            out.push(b'\n');
        }
    }

    /// Appends one line of `len` bytes (newline included) of varied
    /// printable content, with no newline inside.
    pub fn long_line(&mut self, out: &mut Vec<u8>, len: usize) {
        let start = out.len();
        while out.len() < start + len - 1 {
            out.extend_from_slice(b"frame ");
            let id = self.next_u64();
            let _ = write!(out, "{id:x};");
        }
        out.truncate(start + len - 1);
        out.push(b'\n');
    }
}

/// Realistic lines only, at least `bytes` of them, from `seed`.
pub fn lines(seed: u64, bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    Corpus::new(seed).fill(&mut out, bytes);
    out
}

/// Realistic lines with hostile ones (NULs, CR LF, bytes that are not
/// UTF-8, lines of every length up to 300) every MiB, and lines longer
/// than a 16 KiB segment: at least `bytes`, from `seed`.
pub fn mixed(seed: u64, bytes: usize) -> Vec<u8> {
    let mut corpus = Corpus::new(seed);
    let mut out = Vec::with_capacity(bytes + (1 << 20));
    while out.len() < bytes {
        corpus.hostile(&mut out);
        corpus.fill(&mut out, 1 << 20);
        corpus.long_line(&mut out, 40 << 10);
    }
    out
}
