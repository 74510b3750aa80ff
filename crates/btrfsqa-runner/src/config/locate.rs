//! Where in the file a dotted key (`a.b[2].c`) is: serde's path of an
//! error as a dotted key, and the span of the deepest part of a key that the
//! parsed document holds.

use toml::de::{DeTable, DeValue};

/// `a.b[2].c` from serde_path_to_error's path.
pub(super) fn dotted_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// The span of the deepest part of `key` (`a.b[1].c`) present in the document.
pub(super) fn lookup_span(root: &DeTable<'_>, key: &str) -> Option<std::ops::Range<usize>> {
    let mut span = None;
    let mut table = Some(root);
    let mut value: Option<&DeValue<'_>> = None;
    for part in key_parts(key) {
        let next = match (part, table, value) {
            (KeyPart::Name(name), Some(table), _) => table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == name)
                .map(|(k, v)| (k.span(), v)),
            (KeyPart::Index(index), _, Some(DeValue::Array(array))) => {
                array.get(index).map(|v| (v.span(), v))
            }
            _ => None,
        };
        let Some((found, item)) = next else { break };
        span = Some(found);
        value = Some(item.get_ref());
        table = match item.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    span
}

enum KeyPart<'a> {
    Name(&'a str),
    Index(usize),
}

fn key_parts(key: &str) -> Vec<KeyPart<'_>> {
    let mut parts = Vec::new();
    for piece in key.split('.') {
        let (name, mut rest) = match piece.find('[') {
            Some(i) => (&piece[..i], &piece[i..]),
            None => (piece, ""),
        };
        if !name.is_empty() {
            parts.push(KeyPart::Name(name));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(index) = rest[1..end].parse() {
                parts.push(KeyPart::Index(index));
            }
            rest = &rest[end + 1..];
        }
    }
    parts
}
