//! Tests of the redactor: exact secrets and secret shapes, private keys, and
//! secrets split across the chunks of a stream.

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
