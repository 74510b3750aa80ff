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
mod tests {
    use super::*;

    const GHP: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    const PAT: &str = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz";

    fn r(text: &str) -> String {
        Redactor::new(["s3cr3t-value"]).redact_str(text)
    }

    #[test]
    fn exact_secrets_and_shapes_are_redacted() {
        assert_eq!(r("token s3cr3t-value!"), "token [REDACTED]!");
        assert_eq!(r("id AKIAIOSFODNN7EXAMPLE."), "id [REDACTED].");
        assert_eq!(r("id ASIAIOSFODNN7EXAMPLE"), "id [REDACTED]");
        // Not a key id: too long, or part of a word.
        assert_eq!(r("AKIAIOSFODNN7EXAMPLEX"), "AKIAIOSFODNN7EXAMPLEX");
        assert_eq!(r("xAKIAIOSFODNN7EXAMPLE"), "xAKIAIOSFODNN7EXAMPLE");
        assert_eq!(r(&format!("push {GHP} done")), "push [REDACTED] done");
        assert_eq!(r(&format!("t={PAT}")), "t=[REDACTED]");
        assert_eq!(r("ghp_short"), "ghp_short");
        assert_eq!(
            r("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            "export AWS_SECRET_ACCESS_KEY=[REDACTED]"
        );
        assert_eq!(
            r("aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'"),
            "aws_secret_access_key = '[REDACTED]'"
        );
        assert_eq!(
            r(
                r#"{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG", "SessionToken": "IQoJb3JpZ2luX2VjEXAMPLE"}"#
            ),
            r#"{"SecretAccessKey": "[REDACTED]", "SessionToken": "[REDACTED]"}"#
        );
        assert_eq!(
            r("> Authorization: Bearer eyJhbGciOi.J9.x\r\n"),
            "> Authorization: Bearer [REDACTED]\r\n"
        );
        assert_eq!(
            r("authorization: token abc"),
            "authorization: token [REDACTED]"
        );
        assert_eq!(
            r("curl -H 'bearer abcdefghijklmnopqrstuvwxyz'"),
            "curl -H 'bearer [REDACTED]'"
        );
        // Ordinary output is left alone.
        let plain = "btrfs/011 12s ... [failed, exit status 1]- output mismatch\nscrub status: ok";
        assert_eq!(r(plain), plain);
    }

    #[test]
    fn private_key_blocks_are_redacted() {
        let text = "before\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\nAAAA\n-----END OPENSSH PRIVATE KEY-----\nafter";
        assert_eq!(
            r(text),
            "before\n-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]-----END OPENSSH PRIVATE KEY-----\nafter"
        );
        assert_eq!(
            r("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"),
            "-----BEGIN RSA PRIVATE KEY-----[REDACTED]"
        );
        let public = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----";
        assert_eq!(r(public), public);
    }

    #[test]
    fn short_secrets_are_ignored() {
        let redactor = Redactor::new(["", "ab", "  "]);
        assert_eq!(redactor.secret_count(), 0);
        assert_eq!(redactor.redact_str("ab abc"), "ab abc");
    }

    /// Every way of cutting `text` into two or three chunks gives the same
    /// result as redacting it whole.
    fn assert_split_safe(redactor: &Redactor, text: &str) {
        let whole = redactor.redact(text.as_bytes());
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut stream = redactor.stream();
                let mut out = stream.push(&bytes[..i]);
                out.extend(stream.push(&bytes[i..j]));
                out.extend(stream.push(&bytes[j..]));
                out.extend(stream.finish());
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&whole),
                    "cut at {i} and {j}"
                );
            }
        }
    }

    #[test]
    fn secrets_split_across_chunks_are_caught() {
        let redactor = Redactor::new(["s3cr3t-value"]);
        assert_split_safe(&redactor, "a s3cr3t-value b\n");
        assert_split_safe(&redactor, &format!("x {GHP}\ny AKIAIOSFODNN7EXAMPLE "));
        assert_split_safe(
            &redactor,
            "AWS_SECRET_ACCESS_KEY = wJalrXUtnFEMI/K7MDENG/bPx\nAuthorization: Bearer abc.def\n",
        );
        assert_split_safe(
            &redactor,
            "k\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\nok\n",
        );
    }

    #[test]
    fn a_stream_passes_on_lines_that_wait_for_more() {
        let redactor = Redactor::new(["s3cr3t-value"]);
        let mut stream = redactor.stream();
        // fstests prints the test name, then its verdict when it ends.
        assert_eq!(stream.push(b"btrfs/011       "), b"btrfs/011       ");
        // A trailing word may be a secret's start: held until it ends.
        assert_eq!(stream.push(b"12s ... s3cr"), b"12s ... ");
        assert_eq!(stream.push(b"3t-value\n"), b"[REDACTED]\n");
        assert_eq!(stream.finish(), b"");
    }

    #[test]
    fn a_key_without_its_end_is_dropped_until_the_end_arrives() {
        let redactor = Redactor::default();
        let mut stream = redactor.stream();
        let mut out = stream.push(b"x\n-----BEGIN PRIVATE KEY-----\nMIIE");
        out.extend(stream.push(&[b'A'; 10_000]));
        out.extend(stream.push(b"\n-----END PRIV"));
        out.extend(stream.push(b"ATE KEY-----\nvisible\n"));
        out.extend(stream.finish());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "x\n-----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY-----\nvisible\n"
        );
    }
    #[test]
    fn an_unfinished_key_followed_by_another_secret_does_not_panic() {
        let redactor = Redactor::new(["s3cr3t-value"]);
        for text in [
            "-----BEGIN PRIVATE KEY-----\nMIIE AKIAIOSFODNN7EXAMPLE",
            "-----BEGIN PRIVATE KEY-----\nMIIE s3cr3t-value and more",
            "x s3cr3t-value -----BEGIN RSA PRIVATE KEY-----\nMIIE\nGITHUB_TOKEN ghp_0123456789abcdefghijABCDEFGHIJ012345",
        ] {
            let out = redactor.redact_str(text);
            assert!(out.ends_with("PRIVATE KEY-----[REDACTED]"), "{out}");
            assert!(
                !out.contains("s3cr3t-value") && !out.contains("AKIA"),
                "{out}"
            );
            assert_split_safe(&redactor, text);
        }
    }

    #[test]
    fn secrets_longer_than_the_carry_over_are_caught_across_chunks() {
        let long_token = format!("ghp_{}", "a1B2".repeat(100));
        let long_bearer = format!("Bearer {}", "x".repeat(400));
        // An exact secret with spaces: a passphrase.
        let passphrase = "correct horse battery staple ".repeat(12);
        let passphrase = passphrase.trim();
        let redactor = Redactor::new([passphrase]);
        for (text, secret) in [
            (format!("push {long_token} done\n"), long_token.as_str()),
            (
                format!("curl -H 'Authorization: {long_bearer}' x\n"),
                &long_bearer[7..],
            ),
            (
                format!(
                    "{} AWS_SECRET_ACCESS_KEY={}\n",
                    "y".repeat(300),
                    "k".repeat(500)
                ),
                &"k".repeat(500)[..],
            ),
            (format!("pw: {passphrase} ok\n"), passphrase),
        ] {
            let bytes = text.as_bytes();
            for cut in 1..bytes.len() {
                let mut stream = redactor.stream();
                let mut out = stream.push(&bytes[..cut]);
                out.extend(stream.push(&bytes[cut..]));
                out.extend(stream.finish());
                let out = String::from_utf8_lossy(&out);
                assert!(!out.contains(secret), "cut at {cut}: {out}");
                assert_eq!(out, redactor.redact_str(&text), "cut at {cut}");
            }
        }
    }

    /// A deterministic generator, so a failure can be replayed.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// 5000 cases: random bytes (biased towards the bytes the patterns look
    /// for), secrets of every kind and of lengths up to 1 KiB put at chunk
    /// boundaries, cut into random chunks. The stream never panics, never
    /// lets an inserted secret through, and says what whole redaction says.
    #[test]
    fn random_output_with_secrets_at_chunk_boundaries() {
        const CASES: u64 = 5000;
        const ALPHABET: &[u8] =
            b"aA0 _-=:\"'\n\r\t/+.ghpsKIAkey-----BEGIN END PRIVATE KEY----- \xff\x00";
        let exact = format!("exact-{}", "s3cr3t ".repeat(150));
        let redactor = Redactor::new(["hunter22", exact.trim()]);
        for seed in 1..=CASES {
            let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let secrets: Vec<Vec<u8>> = vec![
                b"hunter22".to_vec(),
                exact.trim().as_bytes().to_vec(),
                b"AKIAIOSFODNN7EXAMPLE".to_vec(),
                format!("ghp_{}", "Z9".repeat(18 + rng.below(400))).into_bytes(),
                format!("github_pat_{}", "q_".repeat(11 + rng.below(300))).into_bytes(),
            ];
            let mut text = Vec::new();
            let mut boundaries = Vec::new();
            let mut inserted = Vec::new();
            for _ in 0..1 + rng.below(8) {
                for _ in 0..rng.below(600) {
                    let byte = if rng.below(4) == 0 {
                        rng.next() as u8
                    } else {
                        ALPHABET[rng.below(ALPHABET.len())]
                    };
                    text.push(byte);
                }
                // Patterns need a word boundary; exact secrets do not.
                let secret = &secrets[rng.below(secrets.len())];
                text.push(b' ');
                let start = text.len();
                text.extend_from_slice(secret);
                text.push(b'\n');
                inserted.push(secret.clone());
                // Chunk boundaries inside and at the edges of the secret.
                boundaries.push(start);
                boundaries.push(start + rng.below(secret.len()));
                boundaries.push(start + secret.len());
            }
            for _ in 0..rng.below(6) {
                boundaries.push(rng.below(text.len() + 1));
            }
            boundaries.push(text.len());
            boundaries.sort_unstable();
            boundaries.dedup();
            let mut stream = redactor.stream();
            let mut out = Vec::new();
            let mut at = 0;
            for &boundary in &boundaries {
                out.extend(stream.push(&text[at..boundary]));
                at = boundary;
            }
            out.extend(stream.finish());
            let whole = redactor.redact(&text);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&whole),
                "seed {seed}"
            );
            for secret in &inserted {
                assert!(
                    find_bytes(&out, secret).is_none() && find_bytes(&whole, secret).is_none(),
                    "seed {seed}: a secret of {} bytes came through",
                    secret.len()
                );
            }
        }
    }

    #[test]
    fn a_credential_that_never_ends_is_cut_off_not_held_forever() {
        let redactor = Redactor::default();
        let mut stream = redactor.stream();
        let mut out = stream.push(b"token ghp_");
        let body = [b'Q'; 64 << 10];
        for _ in 0..48 {
            out.extend(stream.push(&body));
            assert!(stream.pending.len() <= MAX_HOLD + body.len());
        }
        out.extend(stream.push(b" after\n"));
        out.extend(stream.finish());
        assert_eq!(String::from_utf8_lossy(&out), "token [REDACTED] after\n");
    }

    #[test]
    fn environment_variables_with_secret_looking_names_are_redacted() {
        let vars = [
            ("GITHUB_TOKEN", "ghs_short-but-named"),
            ("MY_API_KEY", "k3y-value-1234"),
            ("db_password", "hunter2hunter2"),
            ("AZURE_CLIENT_SECRET", "az-secret-999"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/run/creds/sa.json"),
            ("CUSTOM_THING", "named-by-the-config"),
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("SHORT_TOKEN", "abc123"),
        ];
        let vars = vars
            .iter()
            .map(|(k, v)| (std::ffi::OsString::from(k), std::ffi::OsString::from(v)));
        let redactor = Redactor::from_vars(vars, &["CUSTOM_THING"]);
        let text = "ghs_short-but-named k3y-value-1234 hunter2hunter2 az-secret-999 \
                    /run/creds/sa.json named-by-the-config /usr/bin:/bin /root abc123";
        assert_eq!(
            redactor.redact_str(text),
            "[REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED] [REDACTED] \
             /usr/bin:/bin /root abc123"
        );
        assert!(is_secret_name("aws_session_token") && is_secret_name("SSH_KEY_PASSPHRASE"));
        assert!(!is_secret_name("PATH") && !is_secret_name("LANG"));
    }
}
