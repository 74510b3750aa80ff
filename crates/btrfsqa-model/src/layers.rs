//! Checks that a crate's modules form layers: a module imports only modules
//! below it, so the import graph between the crate's files has no cycle.
//!
//! Every `.rs` file under `src` is a node (`kernel/config.rs` is
//! `kernel::config`, `kernel/mod.rs` is `kernel`, `lib.rs` is `crate`);
//! test code (`tests.rs`, `tests/`, items under `#[cfg(test)]`) is left out.
//! An edge goes from a file to the file that defines what it names: `use`
//! trees and `crate::`, `super::`, `self::` and child-module paths in code,
//! followed through `use` re-exports (`crate::Bar` with `pub use foo::Bar`
//! in `lib.rs` is an edge to `foo`), to the deepest file on the path.
//! Declaring `mod child;` is not an edge; using the child's items is.
//!
//! It reads the source text with a small lexer rather than a parser, which
//! is enough for paths and keeps the workspace free of a syntax crate; it
//! lives here because every crate that checks itself depends on the model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// The groups of modules of the crate at `src_dir` that import each other
/// in a circle (strongly connected components of more than one module),
/// each sorted, in order.
///
/// # Panics
///
/// When `src_dir` or a file in it cannot be read: this is a check for
/// tests.
pub fn cycles(src_dir: &Path) -> Vec<Vec<String>> {
    Graph::read(src_dir).cycles()
}

/// Panics, naming every cycle with its modules, their files and the import
/// behind each edge between them, unless the modules of the crate at
/// `src_dir` form layers.
pub fn assert_layered(src_dir: &Path) {
    let graph = Graph::read(src_dir);
    let cycles = graph.cycles();
    if cycles.is_empty() {
        return;
    }
    let mut message = format!(
        "the modules of {} import each other in {} cycle(s):\n",
        src_dir.display(),
        cycles.len()
    );
    for cycle in &cycles {
        let files: Vec<&str> = cycle
            .iter()
            .map(|module| graph.files[module].as_str())
            .collect();
        let _ = writeln!(message, "- cycle through {}", files.join(", "));
        for ((from, to), why) in &graph.edges {
            if cycle.contains(from) && cycle.contains(to) {
                let _ = writeln!(message, "    {from} -> {to}: {why}");
            }
        }
    }
    panic!("{message}");
}

/// The files of a crate and which imports which.
struct Graph {
    /// Module path (`kernel::config`, `crate`) to its file, relative to `src`.
    files: BTreeMap<String, String>,
    /// `(from, to)` to the first place that makes the edge (`file:line: path`).
    edges: BTreeMap<(String, String), String>,
}

/// A path a file names, in the scope it names it from.
struct Named {
    /// The module the path is written in: the file's, or an inline module's in it.
    scope: Vec<String>,
    segments: Vec<String>,
    line: usize,
    kind: NameKind,
}

/// A leaf of a `use` tree: its path and what it brings in.
type Leaf = (Vec<String>, NameKind);

#[derive(Clone, PartialEq, Eq)]
enum NameKind {
    /// `use a::b;` or `use a::b as c;`: brings `b` (or `c`) into scope.
    Import(Option<String>),
    /// `use a::*;`
    Glob,
    /// `a::b::c` in code.
    Code,
}

/// A name a `use` brings into a module: where it points, or `None` when
/// outside the crate.
type Aliases = BTreeMap<String, BTreeMap<String, Option<Vec<String>>>>;

impl Graph {
    fn read(src_dir: &Path) -> Graph {
        let mut sources = BTreeMap::new();
        collect_files(src_dir, src_dir, &mut sources);
        let files: BTreeMap<String, String> = sources
            .iter()
            .map(|(module, (file, _))| (module.clone(), file.clone()))
            .collect();
        let modules: BTreeSet<Vec<String>> = files.keys().map(|name| segments_of(name)).collect();
        let named: BTreeMap<String, Vec<Named>> = sources
            .iter()
            .map(|(module, (_, text))| (module.clone(), names_in(&segments_of(module), text)))
            .collect();

        // Names each scope imports, first without their targets: a `use` may
        // start from a name another `use` of the same scope brought in.
        let mut local: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
        for named in named.values().flatten() {
            if let NameKind::Import(Some(name)) = &named.kind {
                local
                    .entry(named.scope.clone())
                    .or_default()
                    .insert(name.clone());
            }
        }
        let resolver = Resolver {
            modules: &modules,
            local: &local,
            aliases: Aliases::new(),
        };
        let mut aliases = Aliases::new();
        for named in named.values().flatten() {
            if let NameKind::Import(Some(name)) = &named.kind {
                let target = resolver.absolute(&named.scope, &named.segments);
                aliases
                    .entry(named.scope.join("::"))
                    .or_default()
                    .insert(name.clone(), target);
            }
        }
        let resolver = Resolver {
            aliases,
            ..resolver
        };

        let mut edges = BTreeMap::new();
        for (from, named) in &named {
            for named in named {
                let Some(absolute) = resolver.absolute(&named.scope, &named.segments) else {
                    continue;
                };
                let Some((to, exact)) = resolver.resolve(&absolute, 0) else {
                    continue;
                };
                // Importing a module itself uses nothing of it yet: the
                // paths through that name are the edges.
                if (exact && matches!(named.kind, NameKind::Import(_))) || &to == from {
                    continue;
                }
                let why = format!(
                    "{}:{}: {}",
                    files[from],
                    named.line,
                    named.segments.join("::")
                );
                edges.entry((from.clone(), to)).or_insert(why);
            }
        }
        Graph { files, edges }
    }

    /// Tarjan's strongly connected components of more than one module.
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in self.edges.keys() {
            next.entry(from).or_default().push(to);
        }
        let mut tarjan = Tarjan {
            next: &next,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            components: Vec::new(),
        };
        for module in self.files.keys() {
            if !tarjan.index.contains_key(module.as_str()) {
                tarjan.visit(module);
            }
        }
        let mut cycles = tarjan.components;
        cycles.retain(|component| component.len() > 1);
        for cycle in &mut cycles {
            cycle.sort();
        }
        cycles.sort();
        cycles
    }
}

struct Tarjan<'a> {
    next: &'a BTreeMap<&'a str, Vec<&'a str>>,
    index: BTreeMap<&'a str, usize>,
    low: BTreeMap<&'a str, usize>,
    stack: Vec<&'a str>,
    on_stack: BTreeSet<&'a str>,
    components: Vec<Vec<String>>,
}

impl<'a> Tarjan<'a> {
    fn visit(&mut self, module: &'a str) {
        let index = self.index.len();
        self.index.insert(module, index);
        self.low.insert(module, index);
        self.stack.push(module);
        self.on_stack.insert(module);
        for &to in self.next.get(module).into_iter().flatten() {
            if !self.index.contains_key(to) {
                self.visit(to);
                let low = self.low[module].min(self.low[to]);
                self.low.insert(module, low);
            } else if self.on_stack.contains(to) {
                let low = self.low[module].min(self.index[to]);
                self.low.insert(module, low);
            }
        }
        if self.low[module] == index {
            let mut component = Vec::new();
            while let Some(top) = self.stack.pop() {
                self.on_stack.remove(top);
                component.push(top.to_string());
                if top == module {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

struct Resolver<'a> {
    /// Every file's module path (empty for `lib.rs`).
    modules: &'a BTreeSet<Vec<String>>,
    /// The names each scope imports.
    local: &'a BTreeMap<Vec<String>, BTreeSet<String>>,
    aliases: Aliases,
}

impl Resolver<'_> {
    /// `segments` as written in `scope`, from the crate root; `None` when
    /// they lead outside the crate (`std::`, another crate) or to nothing
    /// known (a type's associated item, a local enum).
    fn absolute(&self, scope: &[String], segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => Some([scope, rest].concat()),
            "super" => {
                let ups = segments
                    .iter()
                    .take_while(|segment| *segment == "super")
                    .count();
                let base = scope.len().checked_sub(ups)?;
                Some([&scope[..base], &segments[ups..]].concat())
            }
            _ => {
                let child = [scope, std::slice::from_ref(first)].concat();
                let imported = self
                    .local
                    .get(scope)
                    .is_some_and(|names| names.contains(first));
                (self.modules.contains(&child) || imported).then(|| [scope, segments].concat())
            }
        }
    }

    /// The file that defines `absolute`, and whether `absolute` is that
    /// file's module itself. Follows imports, at most a few deep.
    fn resolve(&self, absolute: &[String], depth: usize) -> Option<(String, bool)> {
        let mut deepest = 0;
        while deepest < absolute.len() && self.modules.contains(&absolute[..=deepest]) {
            deepest += 1;
        }
        let module = &absolute[..deepest];
        let name = module_name(module);
        let Some(next) = absolute.get(deepest) else {
            return Some((name, true));
        };
        match self
            .aliases
            .get(&module.join("::"))
            .and_then(|names| names.get(next))
        {
            Some(None) => None,
            Some(Some(target)) if depth < 8 => {
                self.resolve(&[target, &absolute[deepest + 1..]].concat(), depth + 1)
            }
            _ => Some((name, false)),
        }
    }
}

fn module_name(segments: &[String]) -> String {
    if segments.is_empty() {
        "crate".to_string()
    } else {
        segments.join("::")
    }
}

fn segments_of(name: &str) -> Vec<String> {
    if name == "crate" {
        Vec::new()
    } else {
        name.split("::").map(str::to_string).collect()
    }
}

/// Every non-test `.rs` file under `dir`: module name to (file relative to
/// `src_dir`, source with comments, literals and test items blanked).
fn collect_files(src_dir: &Path, dir: &Path, out: &mut BTreeMap<String, (String, String)>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .path();
        let file_name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if file_name != "tests" {
                collect_files(src_dir, &path, out);
            }
            continue;
        }
        if file_name == "tests.rs" || !file_name.ends_with(".rs") {
            continue;
        }
        let relative = path
            .strip_prefix(src_dir)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let mut segments: Vec<&str> = relative.trim_end_matches(".rs").split('/').collect();
        if matches!(segments.last(), Some(&"mod")) || relative == "lib.rs" {
            segments.pop();
        }
        let source =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let module: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
        out.insert(module_name(&module), (relative, blank_literals(&source)));
    }
}

/// `source` with comments, strings and char literals blanked, lines kept.
fn blank_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if let Some(end) =
            string_end(&chars, i).filter(|_| i == 0 || !is_ident(chars[i - 1]))
        {
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' && next == Some('\\') {
            let end = (i + 3..chars.len())
                .find(|&j| chars[j] == '\'')
                .map_or(chars.len(), |j| j + 1);
            out.extend(chars[i..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where the string literal starting at `start` ends (`"..."`, `b"..."`,
/// `r#"..."#`, `br"..."`), if one starts there.
fn string_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start;
    if chars.get(i) == Some(&'b') {
        i += 1;
    }
    let raw = chars.get(i) == Some(&'r');
    if raw {
        i += 1;
    }
    let hashes = chars[i.min(chars.len())..]
        .iter()
        .take_while(|&&c| c == '#')
        .count();
    i += hashes;
    if chars.get(i) != Some(&'"') || (!raw && hashes > 0) {
        return None;
    }
    i += 1;
    while i < chars.len() {
        if !raw && chars[i] == '\\' {
            i += 2;
        } else if chars[i] == '"'
            && chars[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(i + 1 + hashes);
        } else {
            i += 1;
        }
    }
    Some(chars.len())
}

struct Token {
    text: String,
    line: usize,
}

fn tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&next) = chars.peek().filter(|&&c| c.is_alphanumeric() || c == '_') {
                word.push(next);
                chars.next();
            }
            tokens.push(Token { text: word, line });
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push(Token {
                text: "::".to_string(),
                line,
            });
        } else if !c.is_whitespace() {
            tokens.push(Token {
                text: c.to_string(),
                line,
            });
        }
    }
    tokens
}

/// The paths the (blanked) source of module `module` names outside test
/// items.
fn names_in(module: &[String], text: &str) -> Vec<Named> {
    let tokens = tokens(text);
    let text_at = |i: usize| tokens.get(i).map_or("", |token| token.text.as_str());
    let is_ident = |i: usize| text_at(i).starts_with(|c: char| c.is_alphanumeric() || c == '_');
    let mut named = Vec::new();
    // Inline modules (`mod marks { .. }`): their name and the brace depth
    // they close at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let scope: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        match text_at(i) {
            "#" if (1..7)
                .map(|k| text_at(i + k))
                .eq(["[", "cfg", "(", "test", ")", "]"]) =>
            {
                i = item_end(&tokens, i + 7);
            }
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                if inline.last().is_some_and(|(_, at)| *at == depth) {
                    inline.pop();
                }
                depth -= 1;
                i += 1;
            }
            "mod" if is_ident(i + 1) && text_at(i + 2) == "{" => {
                depth += 1;
                inline.push((text_at(i + 1).to_string(), depth));
                i += 3;
            }
            "use" => {
                let line = tokens[i].line;
                i += 1;
                let mut leaves = Vec::new();
                use_tree(&tokens, &mut i, Vec::new(), &mut leaves);
                while i < tokens.len() && text_at(i) != ";" {
                    i += 1;
                }
                for (segments, kind) in leaves {
                    named.push(Named {
                        scope: scope.clone(),
                        segments,
                        line,
                        kind,
                    });
                }
            }
            _ if is_ident(i)
                && text_at(i + 1) == "::"
                && is_ident(i + 2)
                && (i == 0 || text_at(i - 1) != "::")
                // `pub(in crate::x)` is visibility, not use.
                && !(text_at(i.wrapping_sub(1)) == "in" && text_at(i.wrapping_sub(2)) == "(") =>
            {
                let line = tokens[i].line;
                let mut segments = vec![text_at(i).to_string()];
                i += 1;
                while text_at(i) == "::" && is_ident(i + 1) {
                    segments.push(text_at(i + 1).to_string());
                    i += 2;
                }
                named.push(Named {
                    scope,
                    segments,
                    line,
                    kind: NameKind::Code,
                });
            }
            _ => i += 1,
        }
    }
    named
}

/// The index after the item that starts at `start`: its `;`, or the `}`
/// that closes its body.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(token) = tokens.get(i) {
        i += 1;
        match token.text.as_str() {
            ";" if depth == 0 => break,
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    i
}

/// Parses the use tree at `*i` with `prefix` before it into its leaves.
fn use_tree(tokens: &[Token], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Leaf>) {
    let text_at = |i: usize| tokens.get(i).map_or("", |token| token.text.as_str());
    let mut segments = prefix;
    if text_at(*i) == "::" {
        // `use ::name` is always another crate.
        segments.push("::".to_string());
        *i += 1;
    }
    loop {
        match text_at(*i) {
            "{" => {
                *i += 1;
                while !matches!(text_at(*i), "}" | ";" | "") {
                    use_tree(tokens, i, segments.clone(), out);
                    if text_at(*i) == "," {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "*" => {
                *i += 1;
                out.push((segments, NameKind::Glob));
                return;
            }
            word if word.starts_with(|c: char| c.is_alphanumeric() || c == '_') => {
                segments.push(word.to_string());
                *i += 1;
                if text_at(*i) != "::" {
                    break;
                }
                *i += 1;
            }
            _ => return,
        }
    }
    if segments.last().is_some_and(|last| last == "self") && segments.len() > 1 {
        segments.pop();
    }
    let mut name = segments.last().cloned();
    if text_at(*i) == "as" {
        // `as _` brings no name in.
        name = Some(text_at(*i + 1).to_string()).filter(|alias| alias != "_");
        *i += 2;
    }
    out.push((segments, NameKind::Import(name)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crate's `src` in a temporary directory with `files` in it.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn finds_a_cycle_between_files() {
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            ("b.rs", "pub struct B(crate::a::A);\n"),
            ("c.rs", "use crate::a::A;\n"),
        ]);
        assert_eq!(
            cycles(dir.path()),
            vec![vec!["a".to_string(), "b".to_string()]]
        );
        let panic = std::panic::catch_unwind(|| assert_layered(dir.path())).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("a.rs, b.rs"), "{message}");
        assert!(message.contains("a -> b: a.rs:1: crate::b::B"), "{message}");
        assert!(message.contains("b -> a: b.rs:1: crate::a::A"), "{message}");
    }

    #[test]
    fn layered_modules_pass() {
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::A;\n"),
            ("a.rs", "use crate::b::{self, B};\npub struct A(B, b::C);\n"),
            ("b.rs", "pub struct B;\npub struct C;\nuse std::fmt;\n"),
        ]);
        assert!(cycles(dir.path()).is_empty());
        assert_layered(dir.path());
    }

    #[test]
    fn re_exports_lead_to_the_defining_file() {
        // `crate::B` is `b::B`; nothing in `b` uses `lib.rs` itself.
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\npub use b::{B as Renamed, C};\n"),
            ("a.rs", "pub struct A;\n"),
            (
                "b.rs",
                "use crate::{Renamed, a::A};\npub struct B(A);\npub struct C;\n",
            ),
            ("c/mod.rs", "mod d;\npub use d::D;\n"),
            ("c/d.rs", "pub struct D(crate::C);\n"),
        ]);
        assert!(cycles(dir.path()).is_empty(), "{:?}", cycles(dir.path()));
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\npub use b::B;\n"),
            ("a.rs", "pub struct A(crate::B);\n"),
            ("b.rs", "pub struct B;\nfn f() { let _ = crate::a::A; }\n"),
        ]);
        assert_eq!(
            cycles(dir.path()),
            vec![vec!["a".to_string(), "b".to_string()]]
        );
    }

    #[test]
    fn declaring_a_child_is_no_edge_but_using_it_is() {
        let declared = tree(&[
            ("lib.rs", "mod k;\n"),
            ("k/mod.rs", "mod config;\npub struct Kernel;\n"),
            ("k/config.rs", "use super::Kernel;\n"),
        ]);
        assert!(cycles(declared.path()).is_empty());
        let used = tree(&[
            ("lib.rs", "mod k;\n"),
            (
                "k/mod.rs",
                "mod config;\npub struct Kernel(config::Config);\n",
            ),
            ("k/config.rs", "pub struct Config(super::Kernel);\n"),
        ]);
        assert_eq!(
            cycles(used.path()),
            vec![vec!["k".to_string(), "k::config".to_string()]]
        );
    }

    #[test]
    fn paths_go_to_the_deepest_file() {
        let dir = tree(&[
            ("lib.rs", "mod k;\nmod run;\n"),
            ("k/mod.rs", "mod config;\nfn build(_: crate::run::Run) {}\n"),
            ("k/config.rs", "pub struct KernelConfig;\n"),
            (
                "run.rs",
                "pub struct Run(crate::k::config::KernelConfig);\n",
            ),
        ]);
        assert!(cycles(dir.path()).is_empty(), "{:?}", cycles(dir.path()));
    }

    #[test]
    fn test_code_comments_and_strings_are_ignored() {
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            (
                "a.rs",
                "pub struct A;\n#[cfg(test)]\nmod tests { use crate::b::B; }\n",
            ),
            (
                "b.rs",
                "use crate::a::A;\n#[cfg(test)]\nuse crate::a::*;\n\
                 // crate::a::A in a comment\n\
                 /* crate::a::A */\n\
                 pub struct B;\n\
                 const S: &str = \"crate::a::A\";\n",
            ),
            ("a/tests.rs", "use crate::b::B;\n"),
            ("tests/x.rs", "use crate::b::B;\n"),
        ]);
        assert!(cycles(dir.path()).is_empty(), "{:?}", cycles(dir.path()));
        // What follows a test item still counts.
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            (
                "a.rs",
                "#[cfg(test)]\nmod tests;\nuse crate::b::B;\npub struct A;\n",
            ),
            (
                "b.rs",
                "use crate::a::A;\nfn f(_: &'static str, _: char) { let _ = '\"'; }\n",
            ),
        ]);
        assert_eq!(
            cycles(dir.path()),
            vec![vec!["a".to_string(), "b".to_string()]]
        );
    }

    #[test]
    fn inline_modules_resolve_super_from_themselves() {
        let dir = tree(&[
            ("lib.rs", "mod a;\nmod b;\npub fn g(_: a::A) {}\n"),
            ("a.rs", "pub struct A;\nmod inner { use super::A; }\n"),
            ("b.rs", "pub struct B;\n"),
        ]);
        assert!(cycles(dir.path()).is_empty(), "{:?}", cycles(dir.path()));
    }
}
