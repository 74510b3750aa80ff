//! Removing secrets from what machines print, before it reaches a recording,
//! a log or a caller.
//!
//! Pure: bytes in, bytes out, no I/O. [`Redactor`] knows the exact secrets
//! of a run (the values of the environment variables it uses, and of every
//! variable whose name looks secret, see [`is_secret_name`]) and the shapes
//! of common credentials; [`RedactingStream`] applies it to output that
//! arrives in chunks, holding back the end of a chunk that could be the
//! beginning of a secret, however long, so a secret split across chunks is
//! still caught.

use std::ffi::OsString;
use std::ops::Range;

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Exact secrets shorter than this are ignored: redacting every `abc` in a
/// log would destroy it and protect nothing.
const MIN_SECRET_LEN: usize = 6;

/// Values of variables found by their name alone ([`is_secret_name`])
/// shorter than this are ignored: such names also hold flags and ids
/// (`KEY_TYPE=ed25519`) that are everywhere in a log.
const MIN_DETECTED_SECRET_LEN: usize = 8;

/// What a variable name holds when its value is a secret, compared ignoring
/// case (`GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`, `DB_PASSWORD`,
/// `GOOGLE_APPLICATION_CREDENTIALS`).
const SECRET_NAME_WORDS: &[&str] = &["TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL"];

/// At least this much of a chunk's end can be held back, so a credential
/// pattern split across chunks is seen whole.
const MIN_HOLD: usize = 256;

/// A stream holds back at most this much for a secret that may still go on
/// (a token whose end has not arrived). Past it the secret so far is
/// replaced, and the rest of its word is dropped as it arrives.
const MAX_HOLD: usize = 1 << 20;

const PEM_BEGIN: &[u8] = b"-----BEGIN ";
const PEM_END: &[u8] = b"-----END ";
const PEM_PRIVATE: &[u8] = b"PRIVATE KEY-----";

/// Keywords after which a value is a secret (`AWS_SECRET_ACCESS_KEY=...`,
/// `aws_session_token = ...`, `"SecretAccessKey": "..."`), compared ignoring case.
const SECRET_KEYS: &[&[u8]] = &[
    b"aws_secret_access_key",
    b"aws_session_token",
    b"secretaccesskey",
    b"sessiontoken",
];

/// GitHub token prefixes followed by at least 36 alphanumerics.
const GITHUB_PREFIXES: &[&[u8]] = &[b"ghp_", b"gho_", b"ghs_", b"ghu_", b"ghr_"];

/// Whether an environment variable of this name holds a secret: its name
/// contains `TOKEN`, `SECRET`, `PASSWORD`, `KEY` or `CREDENTIAL`, in any case.
///
/// ```
/// assert!(btrfsqa_remote::is_secret_name("github_token"));
/// assert!(!btrfsqa_remote::is_secret_name("PATH"));
/// ```
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAME_WORDS.iter().any(|word| upper.contains(word))
}

/// An exact secret and its KMP failure table (for the longest end of a
/// chunk that starts it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Secret {
    bytes: Vec<u8>,
    /// `fail[i]`: the length of the longest proper prefix of `bytes[..=i]`
    /// that is also a suffix of it.
    fail: Vec<usize>,
}

impl Secret {
    fn new(bytes: Vec<u8>) -> Self {
        let mut fail = vec![0; bytes.len()];
        let mut k = 0;
        for i in 1..bytes.len() {
            while k > 0 && bytes[i] != bytes[k] {
                k = fail[k - 1];
            }
            if bytes[i] == bytes[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Secret { bytes, fail }
    }

    /// The length of the longest end of `data` that is the start (not the
    /// whole) of this secret.
    fn started_at_end(&self, data: &[u8]) -> usize {
        let len = self.bytes.len();
        let window = &data[data.len() - data.len().min(len - 1)..];
        let mut k = 0;
        for &b in window {
            while k > 0 && self.bytes[k] != b {
                k = self.fail[k - 1];
            }
            if self.bytes[k] == b {
                k += 1;
            }
            if k == len {
                k = self.fail[k - 1];
            }
        }
        k
    }
}

/// Finds and replaces secrets in text.
///
/// ```
/// use btrfsqa_remote::Redactor;
///
/// let redactor = Redactor::new(["hunter2-secret"]);
/// assert_eq!(
///     redactor.redact_str("pw=hunter2-secret key=AKIAABCDEFGHIJKLMNOP"),
///     "pw=[REDACTED] key=[REDACTED]"
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    secrets: Vec<Secret>,
}

impl Redactor {
    /// A redactor for `secrets` (exact values) and the credential patterns.
    /// Empty and very short values (under 6 bytes) are ignored.
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Self {
        Redactor::default().with_secrets(secrets)
    }

    /// This redactor, knowing `secrets` too (same rules as [`Redactor::new`]).
    pub fn with_secrets<S: AsRef<str>>(self, secrets: impl IntoIterator<Item = S>) -> Self {
        let mut all: Vec<Vec<u8>> = self.secrets.into_iter().map(|s| s.bytes).collect();
        all.extend(
            secrets
                .into_iter()
                .map(|s| s.as_ref().trim().as_bytes().to_vec())
                .filter(|s| s.len() >= MIN_SECRET_LEN),
        );
        all.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        all.dedup();
        Redactor {
            secrets: all.into_iter().map(Secret::new).collect(),
        }
    }

    /// A redactor for the values of this process's environment variables
    /// named in `names` (explicitly secret: 6 bytes or more), and of every
    /// variable whose name looks secret ([`is_secret_name`]; 8 bytes or
    /// more), plus the credential patterns.
    pub fn from_env(names: &[&str]) -> Self {
        Redactor::from_vars(std::env::vars_os(), names)
    }

    /// [`Redactor::from_env`] over the variables `vars` instead of this
    /// process's environment.
    pub fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>, names: &[&str]) -> Self {
        let mut values = Vec::new();
        for (name, value) in vars {
            // A name or value that is not UTF-8 cannot come back as text in a
            // log line; one that does is handled by its bytes below.
            let name = name.to_string_lossy();
            let value = value.to_string_lossy().trim().to_owned();
            let named = names.iter().any(|n| *n == name);
            if named || (is_secret_name(&name) && value.len() >= MIN_DETECTED_SECRET_LEN) {
                values.push(value);
            }
        }
        Redactor::new(values)
    }

    /// How many exact secrets it knows.
    pub fn secret_count(&self) -> usize {
        self.secrets.len()
    }

    /// `data` with every secret replaced by [`REDACTED`]. A private key
    /// block without its end is redacted to the end of `data`.
    pub fn redact(&self, data: &[u8]) -> Vec<u8> {
        let found = self.find(data);
        let mut out = Vec::with_capacity(data.len());
        let mut at = 0;
        for range in &found.ranges {
            out.extend_from_slice(&data[at..range.start]);
            out.extend_from_slice(REDACTED.as_bytes());
            at = range.end;
        }
        match found.open_pem {
            Some(start) => {
                out.extend_from_slice(&data[at..start]);
                out.extend_from_slice(REDACTED.as_bytes());
            }
            None => out.extend_from_slice(&data[at..]),
        }
        out
    }

    /// [`redact`](Self::redact) for text.
    pub fn redact_str(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.redact(text.as_bytes())).into_owned()
    }

    /// A stream redactor for output that arrives in chunks.
    pub fn stream(&self) -> RedactingStream {
        RedactingStream {
            redactor: self.clone(),
            pending: Vec::new(),
            in_pem: false,
            in_long_secret: false,
        }
    }

    /// How much of a chunk's end may be held back for a trailing word or
    /// line that may start a pattern.
    fn hold(&self) -> usize {
        MIN_HOLD.max(self.secrets.first().map_or(0, |s| 2 * s.bytes.len()))
    }

    /// The secret ranges of `data`, sorted and disjoint, and the start of
    /// the body of a private key block whose end is not in `data` (then
    /// every range ends before it: the rest of `data` is redacted whole).
    fn find(&self, data: &[u8]) -> Found {
        let mut ranges = Vec::new();
        for secret in &self.secrets {
            let mut from = 0;
            while let Some(pos) = find_bytes(&data[from..], &secret.bytes) {
                ranges.push(from + pos..from + pos + secret.bytes.len());
                from += pos + secret.bytes.len();
            }
        }
        find_aws_key_ids(data, &mut ranges);
        find_github_tokens(data, &mut ranges);
        find_assignments(data, &mut ranges);
        find_authorization(data, &mut ranges);
        let open_pem = find_pem(data, &mut ranges);
        if let Some(body) = open_pem {
            ranges.retain(|r| r.start < body);
            for range in &mut ranges {
                range.end = range.end.min(body);
            }
        }
        Found {
            ranges: merge(ranges),
            open_pem,
        }
    }
}

struct Found {
    ranges: Vec<Range<usize>>,
    open_pem: Option<usize>,
}

/// Redacts output that arrives in chunks. Feed every chunk to
/// [`push`](Self::push) and emit what it returns; call
/// [`finish`](Self::finish) at the end for what was held back.
///
/// It holds back only the end of a chunk that could be the beginning of a
/// secret: a trailing word or a line that starts an assignment or an
/// `Authorization` header (at most a few hundred bytes), the start of a
/// known secret, or a credential that may still go on (up to 1 MiB; past
/// that it is replaced and the rest of its word dropped). So a line that
/// ends in spaces, like fstests' `btrfs/011       ` before its verdict, is
/// passed on at once.
#[derive(Debug, Clone)]
pub struct RedactingStream {
    redactor: Redactor,
    pending: Vec<u8>,
    /// Inside a private key block whose end has not arrived: everything is
    /// dropped until it does.
    in_pem: bool,
    /// Inside a credential longer than [`MAX_HOLD`]: the rest of its word
    /// is dropped.
    in_long_secret: bool,
}

impl RedactingStream {
    /// Takes a chunk; returns the redacted bytes that are safe to pass on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            if self.in_pem && !self.skip_pem_body() {
                return out;
            }
            if self.in_long_secret {
                let word = run_len(&self.pending, |b| !b.is_ascii_whitespace());
                self.pending.drain(..word);
                if self.pending.is_empty() {
                    return out;
                }
                self.in_long_secret = false;
            }
            let found = self.redactor.find(&self.pending);
            if let Some(start) = found.open_pem {
                // Emit up to the key's header, drop the body, and keep
                // dropping until its end line arrives.
                let mut at = 0;
                for range in &found.ranges {
                    out.extend_from_slice(&self.pending[at..range.start]);
                    out.extend_from_slice(REDACTED.as_bytes());
                    at = range.end;
                }
                out.extend_from_slice(&self.pending[at..start]);
                out.extend_from_slice(REDACTED.as_bytes());
                self.pending.drain(..start);
                self.in_pem = true;
                continue;
            }
            let cut = self.safe_cut(&found.ranges);
            let mut at = 0;
            for range in found.ranges.iter().filter(|r| r.end <= cut) {
                out.extend_from_slice(&self.pending[at..range.start]);
                out.extend_from_slice(REDACTED.as_bytes());
                at = range.end;
            }
            out.extend_from_slice(&self.pending[at..cut]);
            self.pending.drain(..cut);
            if self.pending.len() > MAX_HOLD {
                // A credential that has not ended after a megabyte: what
                // came of it is replaced now, the rest of it dropped.
                out.extend_from_slice(REDACTED.as_bytes());
                self.pending.clear();
                self.in_long_secret = true;
            }
            return out;
        }
    }

    /// Everything still held back, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.in_pem || self.in_long_secret {
            self.pending.clear();
            return Vec::new();
        }
        let out = self.redactor.redact(&self.pending);
        self.pending.clear();
        out
    }

    /// Inside a key block: drops pending bytes up to and including the end
    /// line, returning whether it was found. Without it, keeps only enough
    /// of the end to recognize an end line split across chunks.
    fn skip_pem_body(&mut self) -> bool {
        if let Some(end) = find_bytes(&self.pending, PEM_END) {
            let line_end = self.pending[end..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| end + p);
            let marker_end =
                find_bytes(&self.pending[end..], PEM_PRIVATE).map(|p| end + p + PEM_PRIVATE.len());
            if let Some(marker_end) = marker_end
                && line_end.is_none_or(|l| marker_end <= l)
            {
                self.pending.drain(..end);
                self.in_pem = false;
                return true;
            }
            if line_end.is_some() {
                // An end line of something else: keep looking after it.
                self.pending.drain(..end + PEM_END.len());
                return self.skip_pem_body();
            }
            self.pending.drain(..end);
            return false;
        }
        let keep = PEM_END.len() + 64;
        if self.pending.len() > keep {
            let drop = self.pending.len() - keep;
            self.pending.drain(..drop);
        }
        false
    }

    /// Where the pending bytes can be cut so that the rest cannot be the
    /// start of a secret that continues in the next chunk; `ranges` are the
    /// secrets found in them.
    fn safe_cut(&self, ranges: &[Range<usize>]) -> usize {
        let data = &self.pending;
        let hold = self.redactor.hold();
        let floor = data.len().saturating_sub(hold);
        // The trailing word: a token or a secret without spaces.
        let mut cut = data
            .iter()
            .rposition(|b| b.is_ascii_whitespace())
            .map_or(0, |p| p + 1);
        // A last line that could still be completing an assignment, a
        // header or a key block's first line.
        let line_start = data
            .iter()
            .rposition(|&b| b == b'\n' || b == b'\r')
            .map_or(0, |p| p + 1);
        let line = &data[line_start..];
        let lower = line.to_ascii_lowercase();
        let risky = SECRET_KEYS.iter().any(|k| find_bytes(&lower, k).is_some())
            || find_bytes(&lower, b"authorization").is_some()
            || find_bytes(&lower, b"bearer").is_some()
            || find_bytes(line, b"-----").is_some();
        if risky {
            cut = cut.min(line_start);
        }
        // Shapes are recognized within the hold; past it, only what the
        // rules below keep is held.
        cut = cut.max(floor);
        // The start of a known secret, spaces and all, whatever its length.
        for secret in &self.redactor.secrets {
            cut = cut.min(data.len() - secret.started_at_end(data));
        }
        // Never split a secret, and never pass on one that reaches the end:
        // it may go on (a token) or turn out to be something else.
        for range in ranges.iter().rev() {
            if range.start < cut && (cut < range.end || range.end == data.len()) {
                cut = range.start;
            }
        }
        cut
    }
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut from = 0;
    while let Some(pos) = haystack[from..=haystack.len() - needle.len()]
        .iter()
        .position(|&b| b == first)
    {
        let at = from + pos;
        if &haystack[at..at + needle.len()] == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The length of the run at the start of `data` whose bytes pass `keep`.
fn run_len(data: &[u8], keep: impl Fn(u8) -> bool) -> usize {
    data.iter().position(|&b| !keep(b)).unwrap_or(data.len())
}

/// `AKIA` or `ASIA` and 16 upper-case letters or digits, as a whole word.
fn find_aws_key_ids(data: &[u8], ranges: &mut Vec<Range<usize>>) {
    for prefix in [b"AKIA", b"ASIA"] {
        let mut from = 0;
        while let Some(pos) = find_bytes(&data[from..], prefix) {
            let at = from + pos;
            from = at + 1;
            if at > 0 && data[at - 1].is_ascii_alphanumeric() {
                continue;
            }
            let body = run_len(&data[at + 4..], |b| {
                b.is_ascii_uppercase() || b.is_ascii_digit()
            });
            if body == 16 {
                ranges.push(at..at + 20);
            }
        }
    }
}

/// `ghp_` (and the other GitHub prefixes) with 36 or more alphanumerics,
/// and fine-grained `github_pat_` tokens.
fn find_github_tokens(data: &[u8], ranges: &mut Vec<Range<usize>>) {
    for prefix in GITHUB_PREFIXES {
        let mut from = 0;
        while let Some(pos) = find_bytes(&data[from..], prefix) {
            let at = from + pos;
            from = at + 1;
            if at > 0 && is_word(data[at - 1]) {
                continue;
            }
            let body = run_len(&data[at + prefix.len()..], |b| b.is_ascii_alphanumeric());
            if body >= 36 {
                ranges.push(at..at + prefix.len() + body);
            }
        }
    }
    let mut from = 0;
    while let Some(pos) = find_bytes(&data[from..], b"github_pat_") {
        let at = from + pos;
        from = at + 1;
        let body = run_len(&data[at + 11..], is_word);
        if body >= 22 {
            ranges.push(at..at + 11 + body);
        }
    }
}

/// The value after a secret key name: `KEY=value`, `KEY: value`,
/// `"KEY": "value"`, `KEY = 'value'`.
fn find_assignments(data: &[u8], ranges: &mut Vec<Range<usize>>) {
    let lower = data.to_ascii_lowercase();
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(pos) = find_bytes(&lower[from..], key) {
            let at = from + pos;
            from = at + 1;
            if at > 0 && is_word(data[at - 1]) && data[at - 1] != b'_' {
                continue;
            }
            let mut i = at + key.len();
            i += run_len(&data[i..], |b| {
                b == b'"' || b == b'\'' || b == b' ' || b == b'\t'
            });
            if !matches!(data.get(i), Some(b'=' | b':')) {
                continue;
            }
            i += 1;
            i += run_len(&data[i..], |b| {
                b == b'"' || b == b'\'' || b == b' ' || b == b'\t'
            });
            let value = run_len(&data[i..], |b| {
                b.is_ascii_alphanumeric() || b"/+=_-".contains(&b)
            });
            if value >= 8 {
                ranges.push(i..i + value);
            }
        }
    }
}

/// The credentials of `Authorization: <scheme> <value>` and of a bare
/// `Bearer <value>`.
fn find_authorization(data: &[u8], ranges: &mut Vec<Range<usize>>) {
    let lower = data.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = find_bytes(&lower[from..], b"authorization:") {
        let at = from + pos;
        from = at + 1;
        let mut i = at + b"authorization:".len();
        i += run_len(&data[i..], |b| b == b' ' || b == b'\t');
        // The scheme (`Bearer`, `Basic`, `token`), when a value follows it.
        let scheme = run_len(&data[i..], |b| b.is_ascii_alphabetic());
        let after = i + scheme;
        let spaces = run_len(&data[after..], |b| b == b' ' || b == b'\t');
        if scheme > 0 && spaces > 0 {
            i = after + spaces;
        }
        let value = run_len(&data[i..], |b| {
            !b.is_ascii_whitespace() && b != b'"' && b != b'\''
        });
        if value > 0 {
            ranges.push(i..i + value);
        }
    }
    let mut from = 0;
    while let Some(pos) = find_bytes(&lower[from..], b"bearer ") {
        let at = from + pos;
        from = at + 1;
        if at > 0 && is_word(data[at - 1]) {
            continue;
        }
        let i = at + b"bearer ".len();
        let value = run_len(&data[i..], |b| {
            !b.is_ascii_whitespace() && b != b'"' && b != b'\''
        });
        if value >= 16 {
            ranges.push(i..i + value);
        }
    }
}

/// The body of every `-----BEGIN ... PRIVATE KEY-----` block; returns the
/// start of the body of a block whose end line is missing.
fn find_pem(data: &[u8], ranges: &mut Vec<Range<usize>>) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = find_bytes(&data[from..], PEM_BEGIN) {
        let at = from + pos;
        from = at + 1;
        let line_end = data[at..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(data.len(), |p| at + p);
        let Some(marker) = find_bytes(&data[at..line_end], PEM_PRIVATE) else {
            continue;
        };
        let body = at + marker + PEM_PRIVATE.len();
        let mut search = body;
        loop {
            let Some(end) = find_bytes(&data[search..], PEM_END) else {
                return Some(body);
            };
            let end = search + end;
            let end_line = data[end..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map_or(data.len(), |p| end + p);
            if find_bytes(&data[end..end_line], PEM_PRIVATE).is_some() {
                ranges.push(body..end);
                from = end_line;
                break;
            }
            search = end + PEM_END.len();
        }
    }
    None
}

/// Sorts ranges and merges overlapping ones.
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

#[cfg(test)]
mod tests;
