//! Checks of rendered pages: only the templates' markup, links that resolve.

use std::fs;
use std::path::Path;

use super::read;

/// Every element of `html` is one the templates write, with attributes the
/// templates write: nothing from the data became markup.
pub(super) fn assert_only_template_markup(html: &str) {
    const TAGS: &[&str] = &[
        "!DOCTYPE",
        "html",
        "head",
        "meta",
        "title",
        "link",
        "body",
        "header",
        "details",
        "summary",
        "footer",
        "main",
        "h1",
        "h2",
        "h3",
        "p",
        "a",
        "dl",
        "dt",
        "dd",
        "pre",
        "ul",
        "li",
        "code",
        "span",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "br",
        "nav",
        "section",
        "figure",
        "figcaption",
        "svg",
        "line",
        "polyline",
        "circle",
        "rect",
        "strong",
        "script",
        "text",
        "form",
        "label",
        "input",
        "select",
        "option",
        "output",
    ];
    const ATTRIBUTES: &[&str] = &[
        "lang",
        "charset",
        "name",
        "content",
        "http-equiv",
        "rel",
        "href",
        "class",
        "id",
        "data-label",
        "html",
        "viewBox",
        "width",
        "height",
        "role",
        "aria-label",
        "x",
        "y",
        "x1",
        "x2",
        "y1",
        "y2",
        "cx",
        "cy",
        "r",
        "points",
        "title",
        "colspan",
        "xmlns",
        "data-src",
        "data-start",
        "data-player",
        "src",
        "data-v",
        "hidden",
        "type",
        "autocomplete",
        "spellcheck",
        "placeholder",
        "value",
    ];
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        let tag = tag.strip_prefix('/').unwrap_or(tag);
        if tag.starts_with("script ") {
            assert!(
                tag.ends_with("assets/asciinema-player/asciinema-player.min.js\"")
                    || tag.ends_with("assets/btrfsqa-player.js\"")
                    || tag.ends_with("assets/btrfsqa-filter.js\""),
                "unexpected script <{tag}>"
            );
        }
        let mut parts = tag.splitn(2, char::is_whitespace);
        let name = parts.next().unwrap();
        assert!(
            TAGS.contains(&name),
            "unexpected element <{tag}> in:\n{html}"
        );
        let mut attributes = parts.next().unwrap_or("").trim();
        while !attributes.is_empty() {
            let (attribute, after) = attributes.split_once('=').unwrap_or((attributes, ""));
            assert!(
                ATTRIBUTES.contains(&attribute.trim()),
                "unexpected attribute `{attribute}` in <{tag}>"
            );
            let after = after.trim_start();
            if let Some(value) = after.strip_prefix('"') {
                let close = value.find('"').expect("unclosed attribute value");
                attributes = value[close + 1..].trim_start();
            } else {
                attributes = "";
            }
        }
        rest = &rest[end + 1..];
    }
}

/// Every `href` of `page`, unescaped.
pub(super) fn hrefs(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .map(|rest| {
            rest[..rest.find('"').unwrap()]
                .replace("&#x2f;", "/")
                .replace("&amp;", "&")
        })
        .collect()
}

pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Every relative link of every page of the site leads to a file of the
/// site, and none is absolute or leaves the site.
pub(super) fn assert_links_resolve(site: &Path) {
    let mut pages = Vec::new();
    let mut stack = vec![site.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("files") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "html") {
                pages.push(path);
            }
        }
    }
    assert!(pages.len() > 2);
    for page in pages {
        let html = read(&page);
        assert_only_template_markup(&html);
        for href in hrefs(&html).into_iter().chain(srcs(&html)) {
            if href.starts_with('#') {
                continue;
            }
            let href = href.split('#').next().unwrap();
            assert!(
                !href.contains(':') && !href.starts_with('/'),
                "absolute link `{href}` in {}",
                page.display()
            );
            let target = page.parent().unwrap().join(percent_decode(href));
            let target = fs::canonicalize(&target)
                .unwrap_or_else(|_| panic!("`{href}` in {} is broken", page.display()));
            assert!(
                target.starts_with(fs::canonicalize(site).unwrap()),
                "`{href}` leaves the site"
            );
        }
    }
}

/// Every `src` and `data-src` of `page`, unescaped.
pub(super) fn srcs(page: &str) -> Vec<String> {
    page.split("src=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].replace("&#x2f;", "/"))
        .collect()
}
