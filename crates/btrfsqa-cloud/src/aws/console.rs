//! Host keys from an instance's console output. Pure.
//!
//! cloud-init writes the generated host keys to the console between
//! `-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----`.
//! The console is written by the instance alone, so keys read there can be
//! trusted before the first SSH contact. Only complete blocks count; lines
//! inside a block that are not well-formed public keys (a kernel message
//! that fell in) are skipped; two blocks that disagree make the answer
//! [`ConsoleHostKeys::Conflicting`].
//!
//! An instance may also report its key itself, in a tag (see
//! [`HOST_KEY_TAG`]; only whoever may tag instances in the account can set it).

/// What the console says about the host keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConsoleHostKeys {
    /// No complete block yet (or an image that does not print one).
    NotYet,
    /// The keys, as `type base64` (no comment), in the order printed.
    Keys(Vec<String>),
    /// Two blocks show different keys of one type.
    Conflicting,
}

const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
const END: &str = "-----END SSH HOST KEY KEYS-----";

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// GetConsoleOutput's text is base64; an emulator may send it plain.
pub(crate) fn decode_console_output(raw: &str) -> String {
    let compact: String = raw.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    match aws_smithy_types::base64::decode(&compact) {
        Ok(bytes) if !compact.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => raw.to_owned(),
    }
}

/// `type base64` when `line` is a well-formed public key (the type named in
/// the line matches the one encoded in the key).
fn public_key(line: &str) -> Option<String> {
    let mut fields = line.split_ascii_whitespace();
    let (kind, blob) = (fields.next()?, fields.next()?);
    if !KEY_TYPES.contains(&kind) {
        return None;
    }
    let bytes = aws_smithy_types::base64::decode(blob).ok()?;
    let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    (bytes.get(4..4 + length)? == kind.as_bytes()).then(|| format!("{kind} {blob}"))
}

/// Reads the host keys from a console output.
pub(crate) fn host_keys(console: &str) -> ConsoleHostKeys {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in console
        .lines()
        .map(|line| line.trim_end_matches('\r').trim())
    {
        if line == BEGIN {
            current = Some(Vec::new());
        } else if line == END {
            if let Some(block) = current.take() {
                if !block.is_empty() {
                    blocks.push(block);
                }
            }
        } else if let Some(block) = current.as_mut() {
            block.extend(public_key(line));
        }
    }
    let Some(first) = blocks.first() else {
        return ConsoleHostKeys::NotYet;
    };
    let kind = |key: &str| key.split(' ').next().unwrap_or_default().to_owned();
    for block in &blocks[1..] {
        for key in block {
            if first
                .iter()
                .any(|known| kind(known) == kind(key) && known != key)
            {
                return ConsoleHostKeys::Conflicting;
            }
        }
    }
    ConsoleHostKeys::Keys(first.clone())
}

/// The tag (and the prefix of further ones: `btrfsqa:host-key-ecdsa`) in
/// which an instance may report its own public host key, `type base64
/// [comment]`.
pub(crate) const HOST_KEY_TAG: &str = "btrfsqa:host-key";

/// The well-formed host keys in an instance's tags, as `type base64`.
pub(crate) fn tag_host_keys<'a>(
    tags: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<String> {
    let mut keys: Vec<String> = tags
        .into_iter()
        .filter(|(name, _)| name.starts_with(HOST_KEY_TAG))
        .filter_map(|(_, value)| public_key(value))
        .collect();
    keys.dedup();
    keys
}

/// known_hosts lines for `host` (port 22).
pub(crate) fn known_hosts_lines(host: &str, keys: &[String]) -> String {
    keys.iter().map(|key| format!("{host} {key}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINISHED: &str = include_str!("../../fixtures/aws/console-cloud-init.txt");
    const EARLY: &str = include_str!("../../fixtures/aws/console-early-boot.txt");
    const CONFLICTING: &str = include_str!("../../fixtures/aws/console-conflicting-keys.txt");

    #[test]
    fn keys_come_only_from_the_complete_block() {
        let ConsoleHostKeys::Keys(keys) = host_keys(FINISHED) else {
            panic!("no keys in {FINISHED}");
        };
        let kinds: Vec<_> = keys.iter().map(|k| k.split(' ').next().unwrap()).collect();
        assert_eq!(kinds, ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]);
        assert!(
            keys.iter().all(|key| !key.contains("root@")),
            "comments are dropped"
        );
        assert!(
            !keys.iter().any(|key| FINISHED
                .lines()
                .any(|line| line.contains("root@decoy") && line.contains(key.as_str()))),
            "the decoy outside the block is ignored"
        );
    }

    #[test]
    fn an_unfinished_block_is_not_yet_an_answer() {
        assert_eq!(host_keys(EARLY), ConsoleHostKeys::NotYet);
        assert_eq!(host_keys(""), ConsoleHostKeys::NotYet);
        // What the EC2 emulator answers: a kernel log without cloud-init.
        assert_eq!(
            host_keys("Linux version 2.6.16-xenU\nKernel command line: root=/dev/sda1 ro 4\n"),
            ConsoleHostKeys::NotYet
        );
    }

    #[test]
    fn blocks_that_disagree_are_reported() {
        assert_eq!(host_keys(CONFLICTING), ConsoleHostKeys::Conflicting);
        let twice = format!("{FINISHED}\n{FINISHED}");
        assert!(matches!(host_keys(&twice), ConsoleHostKeys::Keys(_)));
    }

    #[test]
    fn a_key_whose_type_does_not_match_its_blob_is_skipped() {
        let ConsoleHostKeys::Keys(keys) = host_keys(FINISHED) else {
            unreachable!()
        };
        let ed25519_blob = keys[1].split(' ').nth(1).unwrap();
        assert_eq!(public_key(&format!("ssh-rsa {ed25519_blob} x")), None);
        assert_eq!(public_key("ssh-ed25519 not-base64"), None);
    }

    #[test]
    fn console_output_is_decoded_from_base64() {
        let encoded = aws_smithy_types::base64::encode(FINISHED);
        assert_eq!(decode_console_output(&encoded), FINISHED);
        assert_eq!(
            decode_console_output("plain text, not base64"),
            "plain text, not base64"
        );
        assert_eq!(
            known_hosts_lines("192.0.2.1", &["ssh-ed25519 AAAA".to_owned()]),
            "192.0.2.1 ssh-ed25519 AAAA\n"
        );
    }
}
