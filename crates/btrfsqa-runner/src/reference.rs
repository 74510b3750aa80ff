//! The reference of every key of `btrfsqa.toml` (`docs/config.md`, printed by
//! `btrfsqa config reference`), made from the configuration types so it
//! cannot drift from them:
//!
//! - the keys, their nesting, their types and the values an enum takes come
//!   from serde itself: [`Config`] is deserialized from a deserializer that
//!   records what each type asks for (the field names after renaming, in
//!   order), and a field is required when leaving it out makes serde say
//!   `missing field`;
//! - the defaults are what an empty file (plus one element with only its
//!   required keys in each array of tables and map of tables) deserializes
//!   to, read from its `Debug` form;
//! - the text is the `///` doc of each field and enum variant, read from the
//!   source files handed to [`generate`] (a test compares the result with
//!   `docs/config.md`, and rewrites it with `BTRFSQA_UPDATE_DOCS=1`).
//!
//! No I/O here: the caller reads the source files.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

use crate::config::Config;
use crate::plugins;

/// What a type asks serde for.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A struct: a TOML table with these keys, in declaration order.
    Struct {
        /// The Rust type's name (to find its docs).
        name: &'static str,
        /// Its keys.
        fields: Vec<Field>,
    },
    /// `string`, `integer`, `number`, `boolean`.
    Scalar(&'static str),
    /// An `Option`.
    Optional(Box<Shape>),
    /// A sequence (a TOML array, or an array of tables).
    Array(Box<Shape>),
    /// A map with names chosen by the user (a table of tables).
    Map(Box<Shape>),
    /// An enum of unit variants: a string, one of these.
    Enum {
        /// The Rust type's name (to find its variants' docs).
        name: &'static str,
        /// The values, as serde names them.
        variants: &'static [&'static str],
    },
}

/// One key of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The key as written in the file.
    pub key: &'static str,
    /// Its value.
    pub shape: Shape,
    /// Whether serde refuses a table without it.
    pub required: bool,
}

#[derive(Debug)]
struct WalkError {
    message: String,
    /// The key whose absence serde refused.
    missing: Option<String>,
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WalkError {}

impl de::Error for WalkError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        let message = message.to_string();
        // A section's own type reaches serde through a type-erased
        // deserializer, which hands its `missing_field` on as text.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
            .map(str::to_owned);
        WalkError { message, missing }
    }

    fn missing_field(field: &'static str) -> Self {
        WalkError {
            message: format!("missing field `{field}`"),
            missing: Some(field.to_owned()),
        }
    }
}

/// A deserializer that hands every type a made-up value of the kind it
/// asks for, and records what that was in `out`.
struct Walker<'a> {
    /// The dotted path of the value (`providers.static.hosts[]`).
    path: String,
    out: &'a RefCell<Option<Shape>>,
    /// A key left out of the struct at a path, to see whether it is required.
    omit: Option<&'a (String, &'static str)>,
}

impl<'a> Walker<'a> {
    fn child(&self, path: String, out: &'a RefCell<Option<Shape>>) -> Walker<'a> {
        Walker {
            path,
            out,
            omit: self.omit,
        }
    }

    fn set(&self, shape: Shape) {
        *self.out.borrow_mut() = Some(shape);
    }

    /// Runs `f` with a walker for a value inside this one, and returns
    /// what it recorded.
    fn nested<T>(
        &self,
        path: String,
        f: impl FnOnce(Walker<'_>) -> Result<T, WalkError>,
    ) -> Result<(T, Shape), WalkError> {
        let slot = RefCell::new(None);
        let value = f(self.child(path, &slot))?;
        let shape = slot.into_inner().unwrap_or(Shape::Scalar("value"));
        Ok((value, shape))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

macro_rules! scalar {
    ($($method:ident => $kind:literal, $visit:ident($($value:expr)?);)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
            self.set(Shape::Scalar($kind));
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = WalkError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, WalkError> {
        Err(de::Error::custom(format!(
            "`{}`: a type the reference cannot describe (it takes any value)",
            self.path
        )))
    }

    scalar! {
        deserialize_bool => "boolean", visit_bool(false);
        deserialize_i8 => "integer", visit_i64(1);
        deserialize_i16 => "integer", visit_i64(1);
        deserialize_i32 => "integer", visit_i64(1);
        deserialize_i64 => "integer", visit_i64(1);
        deserialize_u8 => "integer", visit_u64(1);
        deserialize_u16 => "integer", visit_u64(1);
        deserialize_u32 => "integer", visit_u64(1);
        deserialize_u64 => "integer", visit_u64(1);
        deserialize_f32 => "number", visit_f64(1.0);
        deserialize_f64 => "number", visit_f64(1.0);
        deserialize_char => "string", visit_char('x');
        deserialize_str => "string", visit_str("x");
        deserialize_string => "string", visit_str("x");
        deserialize_bytes => "bytes", visit_bytes(b"x");
        deserialize_byte_buf => "bytes", visit_bytes(b"x");
        deserialize_unit => "unit", visit_unit();
        deserialize_identifier => "string", visit_str("x");
        deserialize_ignored_any => "unit", visit_unit();
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        let (value, inner) = self.nested(self.path.clone(), |w| visitor.visit_some(w))?;
        self.set(Shape::Optional(Box::new(inner)));
        Ok(value)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        let slot = RefCell::new(None);
        let value = visitor.visit_seq(OneElement {
            walker: self.child(format!("{}[]", self.path), &slot),
            done: false,
        })?;
        let inner = slot.into_inner().unwrap_or(Shape::Scalar("value"));
        self.set(Shape::Array(Box::new(inner)));
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        let slot = RefCell::new(None);
        let value = visitor.visit_map(OneEntry {
            walker: self.child(join(&self.path, "NAME"), &slot),
            state: 0,
        })?;
        let inner = slot.into_inner().unwrap_or(Shape::Scalar("value"));
        self.set(Shape::Map(Box::new(inner)));
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        let keys: Vec<&'static str> = fields
            .iter()
            .copied()
            .filter(|key| self.omit != Some(&(self.path.clone(), *key)))
            .collect();
        let recorded = RefCell::new(Vec::new());
        let value = visitor.visit_map(Fields {
            walker: &self,
            keys,
            next: 0,
            recorded: &recorded,
        })?;
        self.set(Shape::Struct {
            name,
            fields: recorded.into_inner(),
        });
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.set(Shape::Enum { name, variants });
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(first.into_deserializer())
    }
}

struct OneElement<'a> {
    walker: Walker<'a>,
    done: bool,
}

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = WalkError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, WalkError> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let walker = self.walker.child(self.walker.path.clone(), self.walker.out);
        seed.deserialize(walker).map(Some)
    }
}

struct OneEntry<'a> {
    walker: Walker<'a>,
    state: u8,
}

impl<'de> de::MapAccess<'de> for OneEntry<'_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        if self.state > 0 {
            return Ok(None);
        }
        self.state = 1;
        seed.deserialize("NAME".into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, WalkError> {
        let walker = self.walker.child(self.walker.path.clone(), self.walker.out);
        seed.deserialize(walker)
    }
}

struct Fields<'a, 'w> {
    walker: &'a Walker<'w>,
    keys: Vec<&'static str>,
    next: usize,
    recorded: &'a RefCell<Vec<Field>>,
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        let Some(key) = self.keys.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize((*key).into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, WalkError> {
        let key = self.keys[self.next];
        self.next += 1;
        let (value, shape) = self
            .walker
            .nested(join(&self.walker.path, key), |w| seed.deserialize(w))?;
        self.recorded.borrow_mut().push(Field {
            key,
            shape,
            required: false,
        });
        Ok(value)
    }
}

/// Walks [`Config`] with `omit` left out.
fn walk(omit: Option<&(String, &'static str)>) -> Result<Shape, WalkError> {
    let slot = RefCell::new(None);
    let walker = Walker {
        path: String::new(),
        out: &slot,
        omit,
    };
    <Config as serde::Deserialize>::deserialize(walker)?;
    Ok(slot.into_inner().unwrap_or(Shape::Scalar("value")))
}

/// The shape of `btrfsqa.toml`, with required keys marked.
pub fn config_shape() -> Result<Shape, String> {
    let mut shape = walk(None).map_err(|e| e.to_string())?;
    mark_required(&mut shape, "")?;
    Ok(shape)
}

fn mark_required(shape: &mut Shape, path: &str) -> Result<(), String> {
    match shape {
        Shape::Struct { fields, .. } => {
            for field in fields {
                let omit = (path.to_owned(), field.key);
                field.required = match walk(Some(&omit)) {
                    Ok(_) => false,
                    Err(err) if err.missing.as_deref() == Some(field.key) => true,
                    Err(err) => return Err(format!("`{}`: {err}", join(path, field.key))),
                };
                mark_required(&mut field.shape, &join(path, field.key))?;
            }
        }
        Shape::Optional(inner) => mark_required(inner, path)?,
        Shape::Array(inner) => mark_required(inner, &format!("{path}[]"))?,
        Shape::Map(inner) => mark_required(inner, &join(path, "NAME"))?,
        Shape::Scalar(_) | Shape::Enum { .. } => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Defaults, from the `Debug` form of what a near-empty file deserializes to.

/// A value as `{:?}` prints it.
#[derive(Debug, Clone, PartialEq)]
enum Debugged {
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

struct DebugParser<'a> {
    text: &'a [u8],
    at: usize,
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

    fn value(&mut self) -> Debugged {
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

fn kebab(camel: &str) -> String {
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
fn render(shape: &Shape, value: &Debugged) -> Option<String> {
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

// ---------------------------------------------------------------------------
// Docs, from the source files.

/// The `///` docs of one struct's fields or one enum's variants, by their
/// Rust names, with each field's key and Rust type.
#[derive(Debug, Clone, Default)]
struct ItemDocs {
    /// `(rust name, key, rust type, doc)` in order.
    members: Vec<(String, String, String, String)>,
    /// The type's own doc.
    doc: String,
}

/// Joins doc lines into one paragraph, rustdoc links as plain code.
fn clean_doc(lines: &[String]) -> String {
    let text = lines
        .iter()
        .map(|l| l.trim())
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut text = text.replace("[`", "`").replace("`]", "`");
    // `[`X`](path)` links: keep the text.
    while let Some(start) = text.find("`(crate::") {
        match text[start..].find(')') {
            Some(end) => text.replace_range(start + 1..start + end + 1, ""),
            None => break,
        }
    }
    text.trim().to_owned()
}

/// Reads every `pub struct` and `pub enum` of `source` with its members' docs.
fn scan_items(source: &str, items: &mut BTreeMap<String, Vec<ItemDocs>>) {
    let lines: Vec<&str> = source.lines().collect();
    let mut doc: Vec<String> = Vec::new();
    let mut rename_all_kebab = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim().to_owned());
        } else if line.starts_with("#[") {
            if line.contains("rename_all = \"kebab-case\"") {
                rename_all_kebab = true;
            }
        } else if let Some(rest) = line.strip_prefix("pub struct ")
            && line.ends_with(';')
        {
            // A newtype (`pub struct ScriptSuites(pub BTreeMap<..>);`): its own doc.
            let name = rest.split(['(', '<', ';']).next().unwrap_or_default();
            items.entry(name.to_owned()).or_default().push(ItemDocs {
                doc: clean_doc(&doc),
                ..ItemDocs::default()
            });
            doc.clear();
            rename_all_kebab = false;
        } else if let Some(rest) = line
            .strip_prefix("pub struct ")
            .or_else(|| line.strip_prefix("pub enum "))
            && line.ends_with('{')
        {
            let is_enum = line.starts_with("pub enum ");
            let name = rest
                .split([' ', '<', '{'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let mut item = ItemDocs {
                doc: clean_doc(&doc),
                ..ItemDocs::default()
            };
            let mut member_doc: Vec<String> = Vec::new();
            let mut rename: Option<String> = None;
            i += 1;
            while i < lines.len() && lines[i].trim() != "}" {
                let member = lines[i].trim();
                if let Some(text) = member.strip_prefix("///") {
                    member_doc.push(text.trim().to_owned());
                } else if member.starts_with("#[") {
                    if let Some(at) = member.find("rename = \"") {
                        let rest = &member[at + 10..];
                        rename = rest.split('"').next().map(str::to_owned);
                    }
                } else if !member.is_empty() && !member.starts_with("//") {
                    let (rust, ty) = if is_enum {
                        let name = member
                            .split([',', ' ', '(', '{'])
                            .next()
                            .unwrap_or_default();
                        (name.to_owned(), String::new())
                    } else {
                        let Some(field) = member.strip_prefix("pub ") else {
                            i += 1;
                            continue;
                        };
                        let (name, ty) = field.split_once(':').unwrap_or((field, ""));
                        (
                            name.trim().to_owned(),
                            ty.trim().trim_end_matches(',').to_owned(),
                        )
                    };
                    let key = match rename.take() {
                        Some(key) => key,
                        None if is_enum => kebab(&rust),
                        None if rename_all_kebab => rust.replace('_', "-"),
                        None => rust.clone(),
                    };
                    item.members.push((rust, key, ty, clean_doc(&member_doc)));
                    member_doc.clear();
                    // A struct variant's or field's body on further lines.
                    if member.ends_with('{') {
                        let mut depth = 1;
                        while depth > 0 && i + 1 < lines.len() {
                            i += 1;
                            depth += lines[i].matches('{').count();
                            depth -= lines[i].matches('}').count();
                        }
                    }
                }
                i += 1;
            }
            items.entry(name).or_default().push(item);
            doc.clear();
            rename_all_kebab = false;
        } else if !line.is_empty() {
            doc.clear();
            rename_all_kebab = false;
        }
        i += 1;
    }
}

/// The docs of struct `name` whose members are `keys`, in order.
fn docs_for<'a>(
    items: &'a BTreeMap<String, Vec<ItemDocs>>,
    name: &str,
    keys: &[&str],
) -> Option<&'a ItemDocs> {
    items.get(name)?.iter().find(|item| {
        let mine: Vec<&str> = item.members.iter().map(|m| m.1.as_str()).collect();
        mine == keys
    })
}

// ---------------------------------------------------------------------------
// The document.

struct Writer<'a> {
    items: &'a BTreeMap<String, Vec<ItemDocs>>,
    defaults: &'a Debugged,
    out: String,
    problems: Vec<String>,
}

fn type_text(shape: &Shape, rust_type: &str) -> String {
    match shape {
        Shape::Optional(inner) => type_text(inner, rust_type),
        Shape::Scalar("string") if rust_type.contains("PathBuf") => "path".to_owned(),
        Shape::Scalar(kind) => (*kind).to_owned(),
        Shape::Array(inner) => format!("array of {}", type_text(inner, rust_type)),
        Shape::Map(inner) => format!("table of {}", type_text(inner, rust_type)),
        Shape::Enum { variants, .. } => format!(
            "one of {}",
            variants
                .iter()
                .map(|v| format!("`\"{v}\"`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Shape::Struct { .. } => "table".to_owned(),
    }
}

/// The struct a key holds as a table: `[key]`, `[[key]]` or `[key.NAME]`.
fn table_of(shape: &Shape) -> Option<(&Shape, &'static str)> {
    match shape {
        Shape::Struct { .. } => Some((shape, "")),
        Shape::Array(inner) if matches!(**inner, Shape::Struct { .. }) => Some((inner, "[]")),
        Shape::Map(inner) if matches!(**inner, Shape::Struct { .. }) => Some((inner, ".NAME")),
        Shape::Optional(inner) => table_of(inner),
        _ => None,
    }
}

impl Writer<'_> {
    /// Writes the table `path` (a struct) and, after it, its sub-tables.
    fn table(&mut self, path: &str, shape: &Shape, value: Option<&Debugged>, heading: &str) {
        let Shape::Struct { name, fields } = shape else {
            return;
        };
        let keys: Vec<&str> = fields.iter().map(|f| f.key).collect();
        let Some(docs) = docs_for(self.items, name, &keys) else {
            self.problems.push(format!(
                "`{name}` (`{path}`): no `pub struct {name}` with the keys {keys:?} in the sources"
            ));
            return;
        };
        let values: BTreeMap<&str, &Debugged> = match value {
            Some(Debugged::Struct(values)) => values.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            _ => BTreeMap::new(),
        };
        let mut subtables = Vec::new();
        if !path.is_empty() {
            let _ = writeln!(self.out, "\n## `{heading}`\n");
            // A doc that only names the table says nothing more.
            if !docs.doc.is_empty() && !is_just(&docs.doc, heading) {
                let _ = writeln!(self.out, "{}\n", docs.doc);
            }
        }
        for (field, (rust, _, rust_type, doc)) in fields.iter().zip(&docs.members) {
            let dotted = join(path, field.key);
            if doc.is_empty() {
                self.problems
                    .push(format!("`{dotted}` (`{name}::{rust}`) has no `///` doc"));
            }
            let value = values.get(rust.as_str()).copied();
            if let Some((table, suffix)) = table_of(&field.shape) {
                let element = match (suffix, value) {
                    ("[]", Some(Debugged::Seq(items))) => items.first(),
                    (".NAME", Some(Debugged::Map(entries))) => entries.first().map(|(_, v)| v),
                    (_, Some(Debugged::Tuple(_, items))) => items.first(),
                    (_, value) => value,
                };
                let heading = match suffix {
                    "[]" => format!("[[{dotted}]]"),
                    ".NAME" => format!("[{dotted}.NAME]"),
                    _ => format!("[{dotted}]"),
                };
                subtables.push((format!("{dotted}{suffix}"), table, element, heading));
                if path.is_empty() {
                    continue;
                }
                let heading = subtables.last().map_or("", |s| s.3.as_str());
                let doc = if is_just(doc, heading) { "" } else { doc };
                let _ = writeln!(
                    self.out,
                    "- **`{}`** (see `{heading}` below){}{doc}",
                    field.key,
                    if doc.is_empty() { "." } else { ": " },
                );
                continue;
            }
            let mut facts = vec![type_text(&field.shape, rust_type)];
            if field.required {
                facts.push("required".to_owned());
            } else if let Some(default) = value.and_then(|v| render(&field.shape, v)) {
                facts.push(format!("default `{default}`"));
            } else {
                facts.push("unset by default".to_owned());
            }
            let _ = writeln!(
                self.out,
                "- **`{}`** ({}): {doc}",
                field.key,
                facts.join("; ")
            );
            if let Some((name, variants)) = enum_of(&field.shape) {
                self.variants(name, variants);
            }
        }
        for (path, table, element, heading) in subtables {
            self.table(&path, table, element, &heading);
        }
    }

    fn variants(&mut self, name: &str, variants: &[&str]) {
        let Some(docs) = docs_for(self.items, name, variants) else {
            self.problems.push(format!(
                "enum `{name}`: no `pub enum {name}` with the values {variants:?} in the sources"
            ));
            return;
        };
        for (_, key, _, doc) in &docs.members {
            let _ = writeln!(self.out, "  - `\"{key}\"`: {doc}");
        }
    }
}

/// Whether `doc` only names the table `heading` (`` `[run]`. ``).
fn is_just(doc: &str, heading: &str) -> bool {
    doc.trim_end_matches('.') == format!("`{heading}`")
}

/// The enum a key takes, optional or not.
fn enum_of(shape: &Shape) -> Option<(&'static str, &'static [&'static str])> {
    match shape {
        Shape::Enum { name, variants } => Some((name, variants)),
        Shape::Optional(inner) => enum_of(inner),
        _ => None,
    }
}

/// The reference of every key, as Markdown; `Err` lists what is missing
/// (a type whose source was not given, a key without a `///` doc).
/// `sources` are the Rust files that define the configuration types.
pub fn generate(sources: &[&str]) -> Result<String, String> {
    let shape = config_shape()?;
    let mut items = BTreeMap::new();
    for source in sources {
        scan_items(source, &mut items);
    }
    table_docs::<plugins::Providers>(&mut items);
    table_docs::<plugins::Suites>(&mut items);
    let minimal = minimal_file(&shape, "", true);
    let config: Config = toml::from_str(&minimal)
        .map_err(|e| format!("the file with every table once does not parse: {e}\n{minimal}"))?;
    let debugged = DebugParser {
        text: format!("{config:?}").as_bytes(),
        at: 0,
    }
    .value();
    let mut writer = Writer {
        items: &items,
        defaults: &debugged,
        out: String::new(),
        problems: Vec::new(),
    };
    writer.out.push_str(HEADER);
    let defaults = writer.defaults;
    writer.table("", &shape, Some(defaults), "");
    if writer.problems.is_empty() {
        Ok(writer.out)
    } else {
        Err(writer.problems.join("\n"))
    }
}

/// The docs of a registry table (`[providers]`, `[suites]`): one member
/// per entry, documented by its section type's own doc.
fn table_docs<T: plugins::Table>(items: &mut BTreeMap<String, Vec<ItemDocs>>) {
    let members = T::entries()
        .into_iter()
        .map(|(id, kind)| {
            let doc = docs_of_type(items, kind.type_name());
            // "`[providers.local]`: this machine" says "this machine" here.
            let doc = doc
                .strip_prefix(&format!("`[{}.{id}]`: ", T::KEY))
                .or_else(|| doc.strip_prefix(&format!("`[{}.{id}.NAME]`: ", T::KEY)))
                .unwrap_or(&doc);
            (
                id.to_owned(),
                id.to_owned(),
                kind.type_name().to_owned(),
                doc.to_owned(),
            )
        })
        .collect();
    let item = ItemDocs {
        doc: format!("`[{}]`.", T::KEY),
        members,
    };
    items.entry(T::TYPE_NAME.to_owned()).or_default().push(item);
}

/// The doc of the struct `name` (the first of that name).
fn docs_of_type(items: &BTreeMap<String, Vec<ItemDocs>>, name: &str) -> String {
    items
        .get(name)
        .and_then(|found| found.first())
        .map(|item| item.doc.clone())
        .unwrap_or_default()
}

const HEADER: &str = "# `btrfsqa.toml` reference

Every key of every table, made from the configuration types (keys, types,
defaults) and their doc comments by `btrfsqa-runner`'s `reference` module:
do not edit; `BTRFSQA_UPDATE_DOCS=1 cargo test -p btrfsqa-runner reference`
rewrites it. `btrfsqa config reference` prints it, `btrfsqa config default`
prints a commented starter file, `btrfsqa config check FILE` checks one.

Every key is optional unless it says *required*; a table may be left out
entirely. Paths relative to the file are resolved against its directory.
`NAME` stands for a name you choose (`[suites.scripts.smoke]`).
";

/// A TOML file that holds every array of tables and map of tables once,
/// each with only its required keys, so their defaults show too.
/// `header` is whether the table's header is written already.
fn minimal_file(shape: &Shape, path: &str, header: bool) -> String {
    let mut out = String::new();
    let Shape::Struct { fields, .. } = shape else {
        return out;
    };
    let mut required = String::new();
    for field in fields.iter().filter(|f| f.required) {
        let _ = writeln!(required, "{} = {}", field.key, dummy(&field.shape));
    }
    if !required.is_empty() {
        if !header {
            let _ = writeln!(out, "[{path}]");
        }
        out.push_str(&required);
    }
    for field in fields {
        let dotted = join(path, field.key);
        match table_of(&field.shape) {
            Some((table, "")) => out.push_str(&minimal_file(table, &dotted, false)),
            Some((table, "[]")) => {
                let _ = writeln!(out, "[[{dotted}]]");
                out.push_str(&minimal_file(table, &dotted, true));
            }
            Some((table, _)) => {
                let _ = writeln!(out, "[{dotted}.name]");
                out.push_str(&minimal_file(table, &format!("{dotted}.name"), true));
            }
            None => {}
        }
    }
    out
}

/// A value of `shape` that serde takes.
fn dummy(shape: &Shape) -> String {
    match shape {
        Shape::Scalar("integer") => "1".to_owned(),
        Shape::Scalar("number") => "1.0".to_owned(),
        Shape::Scalar("boolean") => "false".to_owned(),
        Shape::Enum { variants, .. } => format!("\"{}\"", variants.first().unwrap_or(&"")),
        Shape::Array(_) => "[]".to_owned(),
        Shape::Map(_) | Shape::Struct { .. } => "{}".to_owned(),
        Shape::Optional(inner) => dummy(inner),
        Shape::Scalar(_) => "\"x\"".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// The Rust files of the crates that define configuration types.
    fn sources() -> Vec<String> {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut stack: Vec<PathBuf> = [
            "btrfsqa-runner/src",
            "btrfsqa-cloud/src",
            "btrfsqa-suites/src",
            "btrfsqa-model/src",
        ]
        .iter()
        .map(|dir| crates.join(dir))
        .collect();
        let mut files = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }

    fn find<'a>(shape: &'a Shape, dotted: &str) -> Option<&'a Field> {
        let mut shape = shape;
        let mut found = None;
        for key in dotted.split('.') {
            let inner = match shape {
                Shape::Array(inner) | Shape::Map(inner) | Shape::Optional(inner) => inner,
                other => other,
            };
            let Shape::Struct { fields, .. } = inner else {
                return None;
            };
            let field = fields.iter().find(|f| f.key == key)?;
            shape = &field.shape;
            found = Some(field);
        }
        found
    }

    #[test]
    fn serde_tells_the_keys_types_and_required_ones() {
        let shape = config_shape().unwrap();
        let provider = find(&shape, "run.provider").unwrap();
        assert_eq!(provider.shape, Shape::Scalar("string"));
        // Each provider's and suite's own section is a table of its keys.
        for id in plugins::provider_ids() {
            assert!(find(&shape, &format!("providers.{id}")).is_some(), "{id}");
        }
        assert!(find(&shape, "providers.hosts-file.path").unwrap().required);
        // Renamed fields keep their file spelling.
        assert!(find(&shape, "providers.static.hosts").is_some());
        assert!(find(&shape, "kernel.ref").is_some());
        let host = find(&shape, "providers.static.hosts.host").unwrap();
        assert!(host.required);
        assert!(
            !find(&shape, "providers.static.hosts.port")
                .unwrap()
                .required
        );
        assert!(find(&shape, "suites.scripts.dir").unwrap().required);
        assert!(!find(&shape, "run.suites").unwrap().required);
        assert_eq!(
            find(&shape, "suites.xfstests.test-timeout-secs")
                .unwrap()
                .shape,
            Shape::Optional(Box::new(Shape::Scalar("integer")))
        );
    }

    #[test]
    fn debug_forms_parse() {
        let value = DebugParser {
            text: br#"A { b: Some(3), c: ["x\"y", "z"], d: {}, e: Local, f: None }"#,
            at: 0,
        }
        .value();
        let Debugged::Struct(fields) = value else {
            panic!("{value:?}")
        };
        assert_eq!(fields.len(), 5);
        assert_eq!(
            fields[1].1,
            Debugged::Seq(vec![
                Debugged::Atom(r#""x\"y""#.into()),
                Debugged::Atom(r#""z""#.into())
            ])
        );
    }

    /// `docs/config.md` is what the types say now; with
    /// `BTRFSQA_UPDATE_DOCS=1` it is rewritten instead.
    #[test]
    fn the_reference_in_docs_is_up_to_date() {
        let texts = sources();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let generated = generate(&refs).unwrap_or_else(|problems| panic!("{problems}"));
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
        if std::env::var_os("BTRFSQA_UPDATE_DOCS").is_some() {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &generated).unwrap();
        }
        let current = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            current == generated,
            "docs/config.md is out of date: run `BTRFSQA_UPDATE_DOCS=1 cargo test -p btrfsqa-runner reference`"
        );
        for key in [
            "`git-url`",
            "`profiles`",
            "`mount-options`",
            "`case-timeout-secs`",
        ] {
            assert!(generated.contains(key), "{key}");
        }
    }
}
