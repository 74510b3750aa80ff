//! Removing secrets from what machines print, before it reaches a recording,
//! a log or a caller.
//!
//! Pure: bytes in, bytes out, no I/O. [`Redactor`] knows the exact secrets
//! of a run (the values of the environment variables it uses) and the shapes
//! of common credentials; [`RedactingStream`] applies it to output that
//! arrives in chunks, holding back just enough of the end of a chunk that a
//! secret split across two chunks is still caught.

use std::ops::Range;

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Exact secrets shorter than this are ignored: redacting every `abc` in a
/// log would destroy it and protect nothing.
const MIN_SECRET_LEN: usize = 6;

/// At least this much of a chunk's end can be held back, so a credential
/// pattern split across chunks is seen whole.
const MIN_HOLD: usize = 256;

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
    secrets: Vec<Vec<u8>>,
}

impl Redactor {
    /// A redactor for `secrets` (exact values) and the credential patterns.
    /// Empty and very short values are ignored.
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().trim().as_bytes().to_vec())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// A redactor for the values of the environment variables `names` that
    /// are set, plus the credential patterns.
    pub fn from_env(names: &[&str]) -> Self {
        Redactor::new(names.iter().filter_map(|name| std::env::var(name).ok()))
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
        }
    }

    /// How much of a chunk's end may be held back.
    fn hold(&self) -> usize {
        MIN_HOLD.max(self.secrets.first().map_or(0, |s| 2 * s.len()))
    }

    /// The secret ranges of `data`, sorted and disjoint, and the start of
    /// the body of a private key block whose end is not in `data`.
    fn find(&self, data: &[u8]) -> Found {
        let mut ranges = Vec::new();
        for secret in &self.secrets {
            let mut from = 0;
            while let Some(pos) = find_bytes(&data[from..], secret) {
                ranges.push(from + pos..from + pos + secret.len());
                from += pos + secret.len();
            }
        }
        find_aws_key_ids(data, &mut ranges);
        find_github_tokens(data, &mut ranges);
        find_assignments(data, &mut ranges);
        find_authorization(data, &mut ranges);
        let open_pem = find_pem(data, &mut ranges);
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
/// secret (a trailing word, or a line that starts an assignment or an
/// `Authorization` header), at most a few hundred bytes, so a line that
/// ends in spaces, like fstests' `btrfs/011       ` before its verdict,
/// is passed on at once.
#[derive(Debug, Clone)]
pub struct RedactingStream {
    redactor: Redactor,
    pending: Vec<u8>,
    /// Inside a private key block whose end has not arrived: everything is
    /// dropped until it does.
    in_pem: bool,
}

impl RedactingStream {
    /// Takes a chunk; returns the redacted bytes that are safe to pass on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        if self.in_pem && !self.skip_pem_body() {
            return out;
        }
        let found = self.redactor.find(&self.pending);
        if let Some(start) = found.open_pem {
            // Emit up to the key's header, drop the body, and keep dropping
            // until its end line arrives.
            out.extend(self.redactor.redact(&self.pending));
            self.pending.drain(..start);
            self.in_pem = true;
            if self.skip_pem_body() {
                out.extend(self.push(&[]));
            }
            return out;
        }
        let mut cut = self.safe_cut(&self.pending);
        // Never split a secret: the whole of one is either emitted or held.
        for range in &found.ranges {
            if range.start < cut && cut < range.end {
                cut = range.start;
            }
        }
        let mut at = 0;
        for range in found.ranges.iter().filter(|r| r.end <= cut) {
            out.extend_from_slice(&self.pending[at..range.start]);
            out.extend_from_slice(REDACTED.as_bytes());
            at = range.end;
        }
        out.extend_from_slice(&self.pending[at..cut]);
        self.pending.drain(..cut);
        out
    }

    /// Everything still held back, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.in_pem {
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

    /// Where `data` can be cut so that the rest cannot be the start of a
    /// secret that continues in the next chunk.
    fn safe_cut(&self, data: &[u8]) -> usize {
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
        cut.max(floor)
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
}
