//! Where an artifact lands on the site: its path checked (relative,
//! inside the run directory, a name git allows), active content renamed
//! to `.txt`, and percent-encoded for a URL. Pure, so that the exports
//! link artifacts where the dashboard puts them without depending on it.

/// Extensions a browser (or GitHub Pages, which sets the content type from
/// the extension) would treat as active content. An artifact named like this
/// could carry a script onto the dashboard's origin, so its copy gets a
/// `.txt` suffix and is served as text.
pub(super) const ACTIVE_EXTENSIONS: &[&str] = &[
    "htm", "html", "xhtml", "xht", "shtml", "svg", "svgz", "xml", "xsl", "xslt", "js", "mjs",
    "css", "swf", "pdf", "mht", "mhtml", "wasm",
];

/// The components of a relative artifact path, or why it is refused.
pub(super) fn relative_components(path: &str) -> Result<Vec<&str>, &'static str> {
    if path.is_empty() {
        return Err("refused: empty path");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err("refused: not a relative path");
    }
    let mut components = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => continue,
            ".." => return Err("refused: the path leads outside the run directory"),
            c if !allowed_in_git_tree(c) => {
                return Err("refused: a name git does not allow in a tree");
            }
            c => components.push(c),
        }
    }
    if components.is_empty() {
        return Err("refused: empty path");
    }
    Ok(components)
}

/// Whether git (and so the git publisher) accepts `component` as a tree
/// entry: not `.git` in any disguise (NTFS short names, HFS+ ignorables),
/// no NTFS alternate-data-stream syntax. Windows device names are allowed,
/// as git allows them by default on other systems.
pub(super) fn allowed_in_git_tree(component: &str) -> bool {
    use gix::bstr::ByteSlice;
    let options = gix::validate::path::component::Options {
        protect_windows: false,
        protect_hfs: true,
        protect_ntfs: true,
    };
    gix::validate::path::component(component.as_bytes().as_bstr(), None, options).is_ok()
}

/// The names an artifact's path components get on the site: the last one
/// with `.txt` added when a browser would treat it as active content.
pub(super) fn site_components(components: &[&str]) -> Vec<String> {
    let mut site: Vec<String> = components.iter().map(|c| (*c).to_owned()).collect();
    if let Some(last) = site.last_mut()
        && is_active_content(last)
    {
        last.push_str(".txt");
    }
    site
}

pub(super) fn url_path(components: &[String]) -> String {
    components
        .iter()
        .map(|c| percent_encode(c))
        .collect::<Vec<_>>()
        .join("/")
}

/// Where the site publishes the artifact at `path` (relative to the run
/// directory), as a URL path below the run's `files/`; the reason when the
/// dashboard refuses the path. The copy may still be refused for what the
/// file is (missing, not a regular file).
pub(crate) fn artifact_url_path(path: &str) -> Result<String, &'static str> {
    Ok(url_path(&site_components(&relative_components(path)?)))
}

pub(super) fn is_active_content(file_name: &str) -> bool {
    file_name.rsplit_once('.').is_some_and(|(_, ext)| {
        ACTIVE_EXTENSIONS
            .iter()
            .any(|a| a.eq_ignore_ascii_case(ext))
    })
}

/// Percent-encodes one path component for a URL: everything but unreserved characters.
pub(super) fn percent_encode(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    for byte in component.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
