//! The line stage: `--drop`, `--route`, `--redact` and `--continuation`,
//! between standard input and the targets. Without any of them there is
//! no stage at all, and input goes to the sink as it was read.
//!
//! A record is a line and the continuation lines after it (with
//! `--continuation`, lines matching it: a traceback's indented lines). A
//! record is dropped or routed by its first line, and its continuation
//! lines follow it wherever it went, even when they arrive in a later
//! read: a record is never split between two targets. Every line written
//! is redacted on its own; a private key block spread over several lines is
//! followed from its BEGIN line to its END line.
//!
//! Speed: all patterns together make one search over a whole run of lines
//! (`regex-automata`'s multi-pattern regex, with its literal prefilters),
//! and only the lines where it finds something are looked at one by one;
//! the lines between go to the main target as one piece. Runs are gathered
//! per target and written with one write each.

pub mod redact;

use anyhow::Result;
use memchr::{memchr, memrchr};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use regex_automata::meta;
use regex_automata::{Input, util::syntax};

use redact::Redactor;

/// The line stage's options, as given.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--drop` patterns.
    pub drop: Vec<String>,
    /// `--route` patterns, with the index of the target each sends to
    /// (1 and up: 0 is the main target).
    pub routes: Vec<(String, usize)>,
    /// `--redact` values: patterns or `@NAME`.
    pub redact: Vec<String>,
    /// `--continuation`.
    pub continuation: Option<String>,
}

impl Options {
    /// Whether any option of the stage was given.
    pub fn is_used(&self) -> bool {
        !(self.drop.is_empty()
            && self.routes.is_empty()
            && self.redact.is_empty()
            && self.continuation.is_none())
    }
}

/// Compiles one pattern as the stage matches it: a byte regex with
/// Unicode classes off unless the pattern turns them on with `(?u)`, so
/// that `\S`, `.` and `[^…]` match any byte. Input that is not UTF-8 is
/// matched, never refused, and a secret holding invalid UTF-8 is still
/// one match. The error is one line naming the pattern.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .map_err(|e| bad_pattern(pattern, &e))
}

fn bad_pattern(pattern: &str, e: &regex::Error) -> String {
    // The syntax errors draw a caret under the pattern over several
    // lines; their last line says what is wrong.
    let text = e.to_string();
    let why = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid")
        .trim()
        .trim_start_matches("error: ");
    format!("invalid pattern '{pattern}': {why}")
}

/// Where a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Drop,
    /// The main target (0) or a routed one.
    Target(usize),
}

/// What the stage did, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub dropped: u64,
    pub routed: u64,
    pub redacted: u64,
}

/// The line stage.
#[derive(Debug)]
pub struct Stage {
    /// Every pattern of the stage at once, in multi-line mode: a line with
    /// no match here goes to the main target unchanged.
    any: meta::Regex,
    drop: RegexSet,
    /// The routes in order, each with its target: the first that matches
    /// wins, so they are tried one by one (a `RegexSet` would run them
    /// all).
    routes: Vec<(Regex, usize)>,
    continuation: Option<Regex>,
    redactor: Redactor,
    /// Where the current record went: its continuation lines follow it.
    record: Dest,
    /// The last run ended inside a line (one longer than the read buffer)
    /// that went here.
    inside_line: Option<Dest>,
    /// What to write, per target, gathered over a run.
    out: Vec<Vec<u8>>,
    counts: Counts,
}

impl Stage {
    /// The stage for `options`, writing to `targets` targets (the main one
    /// and the routed ones).
    pub fn new(options: &Options, targets: usize) -> Result<Stage, String> {
        let mut all: Vec<String> = Vec::new();
        all.extend(options.drop.iter().cloned());
        all.extend(options.routes.iter().map(|(p, _)| p.clone()));
        for spec in &options.redact {
            all.extend(redact::patterns(spec)?);
        }
        all.extend(options.continuation.iter().cloned());
        for pattern in &all {
            compile(pattern)?;
        }
        let any = meta::Builder::new()
            .configure(meta::Config::new().utf8_empty(false))
            .syntax(
                syntax::Config::new()
                    .multi_line(true)
                    .unicode(false)
                    .utf8(false),
            )
            .build_many(&all)
            .map_err(|e| format!("unable to combine the patterns: {e}"))?;
        let set = |patterns: Vec<&String>| {
            RegexSetBuilder::new(patterns)
                .unicode(false)
                .build()
                .map_err(|e| format!("unable to combine the patterns: {e}"))
        };
        Ok(Stage {
            any,
            drop: set(options.drop.iter().collect())?,
            routes: options
                .routes
                .iter()
                .map(|(p, t)| compile(p).map(|r| (r, *t)))
                .collect::<Result<_, _>>()?,
            continuation: options.continuation.as_deref().map(compile).transpose()?,
            redactor: Redactor::new(&options.redact)?,
            record: Dest::Target(0),
            inside_line: None,
            out: vec![Vec::new(); targets],
            counts: Counts::default(),
        })
    }

    /// What the stage did so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Runs `run` (whole lines, or a piece of a line longer than the read
    /// buffer) through the stage, then hands what each target gets to
    /// `write`, one piece per target.
    pub fn process(
        &mut self,
        run: &[u8],
        mut write: impl FnMut(usize, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut pos = 0;
        if let Some(dest) = self.inside_line.take() {
            let end = memchr(b'\n', run).map_or(run.len(), |i| i + 1);
            self.deliver(dest, &run[..end]);
            pos = end;
        }
        // Lines from `plain` to `pos` matched nothing: the main target's.
        let mut plain = pos;
        while pos < run.len() {
            if !self.redactor.in_block() {
                match self.any.find(Input::new(run).range(pos..)) {
                    None => break,
                    Some(m) => {
                        pos = memrchr(b'\n', &run[pos..m.start()]).map_or(pos, |i| pos + i + 1);
                    }
                }
            }
            if pos > plain {
                self.out[0].extend_from_slice(&run[plain..pos]);
                self.record = Dest::Target(0);
            }
            let end = memchr(b'\n', &run[pos..]).map_or(run.len(), |i| pos + i + 1);
            let line = &run[pos..end];
            let dest = self.decide(line);
            self.deliver(dest, line);
            pos = end;
            plain = end;
        }
        if plain < run.len() {
            self.out[0].extend_from_slice(&run[plain..]);
            self.record = Dest::Target(0);
            if run.last() != Some(&b'\n') {
                self.inside_line = Some(Dest::Target(0));
            }
        }
        for (target, out) in self.out.iter_mut().enumerate() {
            if !out.is_empty() {
                let result = write(target, out);
                out.clear();
                result?;
            }
        }
        Ok(())
    }

    /// Where the record that `line` begins or continues goes.
    fn decide(&mut self, line: &[u8]) -> Dest {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(continuation) = &self.continuation
            && continuation.is_match(text)
        {
            return self.record;
        }
        let dest = if self.drop.is_match(text) {
            self.counts.dropped += 1;
            Dest::Drop
        } else if let Some((_, target)) = self.routes.iter().find(|(r, _)| r.is_match(text)) {
            self.counts.routed += 1;
            Dest::Target(*target)
        } else {
            Dest::Target(0)
        };
        self.record = dest;
        dest
    }

    /// Adds `line` (or a piece of one), redacted, to what `dest` gets.
    fn deliver(&mut self, dest: Dest, line: &[u8]) {
        if line.last() != Some(&b'\n') && !line.is_empty() {
            self.inside_line = Some(dest);
        }
        let redacted = self.redactor.apply(line);
        // A dropped line went through the redactor too, so that a private
        // key block is followed even through lines that are not written.
        let Dest::Target(target) = dest else { return };
        if matches!(redacted, std::borrow::Cow::Owned(_)) {
            self.counts.redacted += 1;
        }
        self.out[target].extend_from_slice(&redacted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(options: Options) -> Stage {
        let targets = 1 + options.routes.iter().map(|&(_, t)| t).max().unwrap_or(0);
        Stage::new(&options, targets).unwrap()
    }

    /// Runs `runs` through `stage`; returns what each target got.
    fn run(stage: &mut Stage, runs: &[&str]) -> Vec<String> {
        let mut got = vec![String::new(); stage.out.len()];
        for piece in runs {
            stage
                .process(piece.as_bytes(), |t, bytes| {
                    got[t].push_str(std::str::from_utf8(bytes).unwrap());
                    Ok(())
                })
                .unwrap();
        }
        got
    }

    #[test]
    fn drop_route_and_redact() {
        let mut stage = stage(Options {
            drop: vec!["GET /healthz".into()],
            routes: vec![(r"\bERROR\b".into(), 1)],
            redact: vec!["@credentials".into()],
            continuation: Some(r"^\s".into()),
        });
        let got = run(
            &mut stage,
            &[
                "a GET /x 200\nb GET /healthz 200\n  continued health\nc ERROR boom\n  File x\n",
                "    more of the traceback\nd password=hunter2\ne ERROR password=x\n",
            ],
        );
        assert_eq!(
            got,
            [
                "a GET /x 200\nd password=[REDACTED]\n",
                "c ERROR boom\n  File x\n    more of the traceback\ne ERROR password=[REDACTED]\n"
            ]
        );
        assert_eq!(
            stage.counts(),
            Counts {
                dropped: 1,
                routed: 2,
                redacted: 2
            }
        );
    }

    #[test]
    fn first_route_wins_and_drop_beats_route() {
        let mut stage = stage(Options {
            drop: vec!["noise".into()],
            routes: vec![("error".into(), 1), ("err".into(), 2)],
            ..Options::default()
        });
        let got = run(&mut stage, &["an error\nan err\nerror noise\nplain\n"]);
        assert_eq!(got, ["plain\n", "an error\n", "an err\n"]);
    }

    #[test]
    fn a_line_longer_than_a_run_stays_with_its_record() {
        let mut stage = stage(Options {
            routes: vec![("^ERROR".into(), 1)],
            ..Options::default()
        });
        let got = run(
            &mut stage,
            &["ok\nERROR a very", " long line", " ends\nok again\n"],
        );
        assert_eq!(got, ["ok\nok again\n", "ERROR a very long line ends\n"]);
        let got = run(&mut stage, &["start of a long", " ERROR-less line\n"]);
        assert_eq!(got, ["start of a long ERROR-less line\n", ""]);
    }

    #[test]
    fn anchors_are_line_anchors() {
        let mut stage = stage(Options {
            drop: vec!["^x$".into()],
            ..Options::default()
        });
        let got = run(&mut stage, &["x\nxx\nx\n x\nx"]);
        assert_eq!(got, ["xx\n x\n"]);
    }

    #[test]
    fn bad_patterns_are_one_line_naming_them() {
        let err = Stage::new(
            &Options {
                drop: vec!["(unclosed".into()],
                ..Options::default()
            },
            1,
        )
        .unwrap_err();
        assert_eq!(err, "invalid pattern '(unclosed': unclosed group");
    }
}
