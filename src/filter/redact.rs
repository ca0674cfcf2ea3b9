//! `--redact`: secrets replaced by `[REDACTED]` before they reach disk.
//!
//! A pattern replaces each of its matches, or only the part its group
//! named `secret` matched, so that `password=(?P<secret>\S+)` keeps
//! `password=`. The presets (`--redact @NAME`) are patterns of that kind,
//! listed in [`PRESETS`] and in the README with their exact text, plus two
//! things a pattern alone cannot do: card numbers are replaced only when
//! their digits pass the Luhn check, and a private key block spread over
//! several lines has every line between its BEGIN and END lines replaced.

use std::borrow::Cow;

use regex::bytes::Regex;

/// The key names of the credentials preset.
macro_rules! credential_keys {
    () => {
        "(?:[pP]ass(?:word|wd|phrase)|PASS(?:WORD|WD|PHRASE)|[pP]wd|PWD|[sS]ecret|SECRET|[tT]oken|TOKEN\
         |[aA]pi[_-]?[kK]ey|API[_-]?KEY|[aA]ccess[_-]?(?:[kK]ey|[tT]oken)|ACCESS[_-]?(?:KEY|TOKEN)\
         |[aA]uth[_-]?[tT]oken|AUTH[_-]?TOKEN|[rR]efresh[_-]?[tT]oken|REFRESH[_-]?TOKEN\
         |[cC]lient[_-]?[sS]ecret|CLIENT[_-]?SECRET|[pP]rivate[_-]?[kK]ey|PRIVATE[_-]?KEY)"
    };
}

/// What a secret becomes.
pub const REPLACEMENT: &[u8] = b"[REDACTED]";

/// The presets: name, what it is for, and its patterns.
///
/// The key names are spelt out in lower case, camelCase, PascalCase and
/// upper case rather than matched with `(?i)`: a case-insensitive list this
/// long has too many spellings for the regex engine's literal prefilter,
/// and the search over every line then runs several times slower.
pub const PRESETS: &[(&str, &str, &[&str])] = &[
    (
        "credentials",
        "passwords, tokens, API keys and client secrets as key=value, key: value or JSON",
        &[
            concat!(
                r"\b",
                credential_keys!(),
                r#"\s*[=:]\s*(?P<secret>[^\s&;,"']+)"#
            ),
            concat!(
                r#"""#,
                credential_keys!(),
                r#""\s*:\s*"(?P<secret>(?:[^"\\]|\\.)*)""#
            ),
        ],
    ),
    (
        "auth",
        "Authorization headers and bearer tokens",
        &[
            r#"\b(?:[pP]roxy-|PROXY-)?(?:[aA]uthorization|AUTHORIZATION)\s*[:=]\s*(?:(?:[bB]earer|BEARER|[bB]asic|BASIC|[dD]igest|DIGEST|[tT]oken|TOKEN|[nN]egotiate|NEGOTIATE)\s+)?(?P<secret>[^\s"',;]+)"#,
            r"\b(?:[bB]earer|BEARER)\s+(?P<secret>[A-Za-z0-9\-._~+/]+=*)",
        ],
    ),
    (
        "private-key",
        "PEM private key blocks, on one line or over several",
        &[
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?P<secret>.*?)-----END [A-Z0-9 ]*PRIVATE KEY-----",
        ],
    ),
    (
        "card",
        "payment card numbers (13 to 19 digits, spaces or dashes allowed) that pass the Luhn check",
        &[r"\b(?:\d[ -]?){12,18}\d\b"],
    ),
];

/// A line that opens a private key block without closing it.
const KEY_BEGIN: &str = r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----";
/// The line that closes it.
const KEY_END: &str = r"-----END [A-Z0-9 ]*PRIVATE KEY-----";

/// One `--redact` pattern.
#[derive(Debug, Clone)]
struct Rule {
    regex: Regex,
    /// The index of the group named `secret`, if the pattern has one.
    secret: Option<usize>,
    /// Only matches whose digits pass the Luhn check (the card preset).
    luhn: bool,
}

/// The patterns of `--redact`, in the order given.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// `@private-key`: the lines of a block spread over several lines.
    blocks: Option<(Regex, Regex)>,
    in_block: bool,
}

/// The patterns `--redact` adds to the line stage's search (so that lines
/// they could change are looked at): `@NAME` expanded.
pub fn patterns(spec: &str) -> Result<Vec<String>, String> {
    match spec.strip_prefix('@') {
        Some(name) => PRESETS
            .iter()
            .find(|(preset, _, _)| *preset == name)
            .map(|(_, _, patterns)| patterns.iter().map(|p| p.to_string()).collect())
            .ok_or_else(|| {
                let names: Vec<String> = PRESETS.iter().map(|(n, _, _)| format!("@{n}")).collect();
                format!("no preset '{spec}'; the presets are {}", names.join(", "))
            }),
        None => Ok(vec![spec.to_string()]),
    }
}

impl Redactor {
    /// The redactor for the `--redact` values `specs` (patterns, or
    /// `@NAME`), checked already by the command line.
    pub fn new(specs: &[String]) -> Result<Redactor, String> {
        let mut rules = Vec::new();
        let mut blocks = None;
        for spec in specs {
            for pattern in patterns(spec)? {
                let regex = super::compile(&pattern)?;
                let secret = regex
                    .capture_names()
                    .position(|name| name == Some("secret"));
                rules.push(Rule {
                    regex,
                    secret,
                    luhn: spec == "@card",
                });
            }
            if spec == "@private-key" {
                let begin = super::compile(KEY_BEGIN)?;
                let end = super::compile(KEY_END)?;
                blocks = Some((begin, end));
            }
        }
        Ok(Redactor {
            rules,
            blocks,
            in_block: false,
        })
    }

    /// Whether the next line must be looked at whatever it holds: inside a
    /// private key block, every line is a secret.
    pub fn in_block(&self) -> bool {
        self.in_block
    }

    /// `line` (with its newline, if it has one) with its secrets
    /// replaced; borrowed as it was when it holds none.
    pub fn apply<'a>(&mut self, line: &'a [u8]) -> Cow<'a, [u8]> {
        let (text, newline) = match line.strip_suffix(b"\n") {
            Some(text) => (text, &b"\n"[..]),
            None => (line, &b""[..]),
        };
        if let Some((begin, end)) = &self.blocks {
            if self.in_block {
                if end.is_match(text) {
                    self.in_block = false;
                    return Cow::Borrowed(line);
                }
                return Cow::Owned([REPLACEMENT, newline].concat());
            }
            if begin.is_match(text) && !end.is_match(text) {
                self.in_block = true;
            }
        }
        let mut current = Cow::Borrowed(text);
        for rule in &self.rules {
            if let Some(replaced) = rule.replace(&current) {
                current = Cow::Owned(replaced);
            }
        }
        match current {
            Cow::Borrowed(_) => Cow::Borrowed(line),
            Cow::Owned(mut text) => {
                text.extend_from_slice(newline);
                Cow::Owned(text)
            }
        }
    }
}

impl Rule {
    /// `text` with this rule's matches replaced, or `None` if none is.
    fn replace(&self, text: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut copied = 0;
        for caps in self.regex.captures_iter(text) {
            let Some(whole) = caps.get(0) else { continue };
            if self.luhn && !luhn(whole.as_bytes()) {
                continue;
            }
            let secret = match self.secret {
                Some(i) => match caps.get(i) {
                    Some(m) => m,
                    None => continue,
                },
                None => whole,
            };
            if secret.is_empty() {
                continue;
            }
            out.extend_from_slice(&text[copied..secret.start()]);
            out.extend_from_slice(REPLACEMENT);
            copied = secret.end();
        }
        if copied == 0 && out.is_empty() {
            return None;
        }
        out.extend_from_slice(&text[copied..]);
        Some(out)
    }
}

/// Whether the digits of `number` (spaces and dashes ignored) pass the
/// Luhn check, as payment card numbers do.
fn luhn(number: &[u8]) -> bool {
    let digits: Vec<u32> = number
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| u32::from(b - b'0'))
        .collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match i % 2 {
            0 => d,
            _ if d * 2 > 9 => d * 2 - 9,
            _ => d * 2,
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(specs: &[&str], lines: &[&str]) -> Vec<String> {
        let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
        let mut redactor = Redactor::new(&specs).unwrap();
        lines
            .iter()
            .map(|line| String::from_utf8(redactor.apply(line.as_bytes()).into_owned()).unwrap())
            .collect()
    }

    #[test]
    fn a_secret_group_keeps_the_rest_of_the_match() {
        assert_eq!(
            redact(
                &[r"password=(?P<secret>\S+)"],
                &["login password=hunter2 ok\n"]
            ),
            ["login password=[REDACTED] ok\n"]
        );
        assert_eq!(
            redact(
                &[r"\d{3}-\d{4}"],
                &["call 555-1234 or 555-9876\n", "nothing\n"]
            ),
            ["call [REDACTED] or [REDACTED]\n", "nothing\n"]
        );
    }

    #[test]
    fn credentials_in_key_value_and_json_form() {
        assert_eq!(
            redact(
                &["@credentials"],
                &[
                    "POST /login?user=bob&password=s3cr%21t&next=/ 200\n",
                    r#"{"user": "bob", "api_key": "AKIA\"XY", "ok": true}"#,
                    "TOKEN: abc.def.ghi\n",
                    "the password policy changed\n",
                ]
            ),
            [
                "POST /login?user=bob&password=[REDACTED]&next=/ 200\n",
                r#"{"user": "bob", "api_key": "[REDACTED]", "ok": true}"#,
                "TOKEN: [REDACTED]\n",
                "the password policy changed\n",
            ]
        );
    }

    #[test]
    fn authorization_headers_and_bearer_tokens() {
        assert_eq!(
            redact(
                &["@auth"],
                &[
                    "Authorization: Bearer eyJhbGciOi.eyJzdWIi.SflKxw\n",
                    "authorization=Basic dXNlcjpwYXNz\n",
                    "curl -H 'bearer abc123=='\n",
                ]
            ),
            [
                "Authorization: Bearer [REDACTED]\n",
                "authorization=Basic [REDACTED]\n",
                "curl -H 'bearer [REDACTED]'\n",
            ]
        );
    }

    #[test]
    fn card_numbers_only_when_they_pass_luhn() {
        assert_eq!(
            redact(
                &["@card"],
                &[
                    "paid with 4111 1111 1111 1111 today\n",
                    "paid with 4111-1111-1111-1112 today\n",
                    "order 1234567890123 shipped\n",
                    "card 5500005555555559\n",
                ]
            ),
            [
                "paid with [REDACTED] today\n",
                "paid with 4111-1111-1111-1112 today\n",
                "order 1234567890123 shipped\n",
                "card [REDACTED]\n",
            ]
        );
    }

    #[test]
    fn private_key_blocks_on_one_line_or_several() {
        assert_eq!(
            redact(
                &["@private-key"],
                &[
                    "key: -----BEGIN PRIVATE KEY-----MIIEvQ-----END PRIVATE KEY----- loaded\n",
                    "-----BEGIN RSA PRIVATE KEY-----\n",
                    "MIIEpAIBAAKCAQEA\n",
                    "q83hJ4==\n",
                    "-----END RSA PRIVATE KEY-----\n",
                    "after\n",
                ]
            ),
            [
                "key: -----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY----- loaded\n",
                "-----BEGIN RSA PRIVATE KEY-----\n",
                "[REDACTED]\n",
                "[REDACTED]\n",
                "-----END RSA PRIVATE KEY-----\n",
                "after\n",
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_matched_not_rejected() {
        let specs = vec![r"token=(?P<secret>\S+)".to_string()];
        let mut redactor = Redactor::new(&specs).unwrap();
        let line = b"\xff\xfe token=\xc3\x28abc end\n";
        assert_eq!(&*redactor.apply(line), b"\xff\xfe token=[REDACTED] end\n");
    }

    #[test]
    fn unknown_presets_are_refused_naming_the_known_ones() {
        let err = patterns("@nope").unwrap_err();
        assert_eq!(
            err,
            "no preset '@nope'; the presets are @credentials, @auth, @private-key, @card"
        );
    }

    #[test]
    fn luhn_check() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"378282246310005"));
        assert!(!luhn(b"4111111111111112"));
        assert!(!luhn(b"0000 0000 00"));
    }
}

#[cfg(test)]
mod documented {
    /// The README lists every preset's patterns exactly.
    #[test]
    fn the_readme_has_every_preset_pattern() {
        let readme = include_str!("../../README.md");
        for (name, _, patterns) in super::PRESETS {
            assert!(readme.contains(&format!("`@{name}`")), "@{name}");
            for pattern in *patterns {
                assert!(readme.contains(pattern), "@{name}: {pattern}");
            }
        }
    }
}
