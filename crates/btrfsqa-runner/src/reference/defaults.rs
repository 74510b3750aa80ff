//! Defaults, from the `Debug` form of what a near-empty file deserializes
//! to.

use super::shape::Shape;

/// A value as `{:?}` prints it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Debugged {
    /// `Name { field: value, ... }` (fields by their Rust names).
    Struct(Vec<(String, Debugged)>),
    /// `Name(value, ...)` (`Some(3)`).
    Tuple(String, Vec<Debugged>),
    /// `[a, b]`.
    Seq(Vec<Debugged>),
    /// `{"k": v}`.
    Map(Vec<(Debugged, Debugged)>),
    /// A string, number, `true`, `None`, a unit variant.
    Atom(String),
}

pub(super) struct DebugParser<'a> {
    pub(super) text: &'a [u8],
    pub(super) at: usize,
}

impl DebugParser<'_> {
    fn skip_space(&mut self) {
        while self.at < self.text.len() && self.text[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> String {
        self.skip_space();
        let start = self.at;
        while self.at < self.text.len()
            && (self.text[self.at].is_ascii_alphanumeric()
                || matches!(self.text[self.at], b'_' | b'.' | b'-' | b'+'))
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn string(&mut self) -> String {
        let start = self.at;
        self.at += 1;
        while self.at < self.text.len() && self.text[self.at] != b'"' {
            if self.text[self.at] == b'\\' {
                self.at += 1;
            }
            self.at += 1;
        }
        self.at += 1;
        String::from_utf8_lossy(&self.text[start..self.at.min(self.text.len())]).into_owned()
    }

    fn items(&mut self, close: u8) -> Vec<Debugged> {
        let mut items = Vec::new();
        while self.peek().is_some() && !self.eat(close) {
            items.push(self.value());
            self.eat(b',');
        }
        items
    }

    pub(super) fn value(&mut self) -> Debugged {
        match self.peek() {
            Some(b'"') => Debugged::Atom(self.string()),
            Some(b'[') => {
                self.at += 1;
                Debugged::Seq(self.items(b']'))
            }
            Some(b'{') => {
                self.at += 1;
                let mut entries = Vec::new();
                while self.peek().is_some() && !self.eat(b'}') {
                    let key = self.value();
                    self.eat(b':');
                    entries.push((key, self.value()));
                    self.eat(b',');
                }
                Debugged::Map(entries)
            }
            _ => {
                let word = self.word();
                if word.is_empty() {
                    // Not something `Debug` of a config prints: stop here.
                    self.at = self.text.len();
                    return Debugged::Atom(String::new());
                }
                if self.eat(b'{') {
                    let mut fields = Vec::new();
                    while self.peek().is_some() && !self.eat(b'}') {
                        let name = self.word();
                        self.eat(b':');
                        fields.push((name, self.value()));
                        self.eat(b',');
                    }
                    Debugged::Struct(fields)
                } else if self.eat(b'(') {
                    Debugged::Tuple(word, self.items(b')'))
                } else {
                    Debugged::Atom(word)
                }
            }
        }
    }
}

pub(super) fn kebab(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The TOML spelling of a leaf value, `None` when it is unset.
pub(super) fn render(shape: &Shape, value: &Debugged) -> Option<String> {
    match (shape, value) {
        (Shape::Optional(_), Debugged::Atom(word)) if word == "None" => None,
        (Shape::Optional(inner), Debugged::Tuple(word, items)) if word == "Some" => {
            render(inner, items.first()?)
        }
        (Shape::Enum { .. }, Debugged::Atom(word)) => Some(format!("\"{}\"", kebab(word))),
        (Shape::Array(inner), Debugged::Seq(items)) => {
            let items: Option<Vec<String>> = items.iter().map(|i| render(inner, i)).collect();
            Some(format!("[{}]", items?.join(", ")))
        }
        (Shape::Map(_), Debugged::Map(entries)) if entries.is_empty() => Some("{}".to_owned()),
        (Shape::Scalar(_), Debugged::Atom(atom)) => Some(atom.clone()),
        _ => None,
    }
}
