//! The `///` docs of the configuration types, read from their source.

use std::collections::BTreeMap;

use super::defaults::kebab;
use crate::plugins;

/// The `///` docs of one struct's fields or one enum's variants, by their
/// Rust names, with each field's key and Rust type.
#[derive(Debug, Clone, Default)]
pub(super) struct ItemDocs {
    /// `(rust name, key, rust type, doc)` in order.
    pub(super) members: Vec<(String, String, String, String)>,
    /// The type's own doc.
    pub(super) doc: String,
}

/// Joins doc lines into one paragraph, rustdoc links as plain code.
pub(super) fn clean_doc(lines: &[String]) -> String {
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
pub(super) fn scan_items(source: &str, items: &mut BTreeMap<String, Vec<ItemDocs>>) {
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
pub(super) fn docs_for<'a>(
    items: &'a BTreeMap<String, Vec<ItemDocs>>,
    name: &str,
    keys: &[&str],
) -> Option<&'a ItemDocs> {
    items.get(name)?.iter().find(|item| {
        let mine: Vec<&str> = item.members.iter().map(|m| m.1.as_str()).collect();
        mine == keys
    })
}

/// The docs of a registry table (`[providers]`, `[suites]`): one member
/// per entry, documented by its section type's own doc.
pub(super) fn table_docs<T: plugins::Table>(items: &mut BTreeMap<String, Vec<ItemDocs>>) {
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
pub(super) fn docs_of_type(items: &BTreeMap<String, Vec<ItemDocs>>, name: &str) -> String {
    items
        .get(name)
        .and_then(|found| found.first())
        .map(|item| item.doc.clone())
        .unwrap_or_default()
}
