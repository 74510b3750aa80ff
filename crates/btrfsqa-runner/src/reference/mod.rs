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

mod defaults;
mod docs;
mod shape;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::Config;
use crate::plugins;
use defaults::{DebugParser, Debugged, render};
use docs::{ItemDocs, docs_for, scan_items, table_docs};
use shape::join;
pub use shape::{Field, Shape};

/// Why the reference cannot be made: a configuration type it cannot
/// describe, or docs missing from the sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// A type does not tell serde its shape (it takes any value), or the
    /// walk through it failed.
    #[error("the configuration's shape: {0}")]
    Shape(String),
    /// The file with every table once does not parse.
    #[error("the file with every table once does not parse: {message}\n{file}")]
    Defaults {
        /// The parser's message.
        message: String,
        /// The file.
        file: String,
    },
    /// Types or keys without their `///` docs in the sources, one line each.
    #[error("{}", problems.join("\n"))]
    Docs {
        /// What is missing.
        problems: Vec<String>,
    },
}

/// The shape of `btrfsqa.toml`, with required keys marked.
pub fn config_shape() -> Result<Shape, ReferenceError> {
    shape::config_shape().map_err(ReferenceError::Shape)
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
pub fn generate(sources: &[&str]) -> Result<String, ReferenceError> {
    let shape = config_shape()?;
    let mut items = BTreeMap::new();
    for source in sources {
        scan_items(source, &mut items);
    }
    table_docs::<plugins::Providers>(&mut items);
    table_docs::<plugins::Suites>(&mut items);
    let minimal = minimal_file(&shape, "", true);
    let config: Config = toml::from_str(&minimal).map_err(|e| ReferenceError::Defaults {
        message: e.to_string(),
        file: minimal.clone(),
    })?;
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
        Err(ReferenceError::Docs {
            problems: writer.problems,
        })
    }
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
