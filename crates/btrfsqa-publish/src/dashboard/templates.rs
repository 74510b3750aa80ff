//! The templates and what they are rendered with: the minijinja
//! environment (HTML auto-escaping on for every template, undefined values
//! an error), the renderer's fingerprint that makes run pages stale when a
//! template or the stylesheet changes, and the contexts of the pages built
//! from the history.

use std::sync::Arc;

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::history::{self, IndexRow};
use super::{Dashboard, DashboardSettings};
use crate::PublishError;

/// Bumped when the code that builds a run page changes in a way the
/// templates do not show, so existing sites re-render their run pages.
pub(super) const PAGE_FORMAT: &str = "page-format-5";

pub(super) const BASE_TEMPLATE: &str = include_str!("../../templates/base.html");

pub(super) const INDEX_TEMPLATE: &str = include_str!("../../templates/index.html");

pub(super) const RUN_TEMPLATE: &str = include_str!("../../templates/run.html");

pub(super) const TEST_TEMPLATE: &str = include_str!("../../templates/test.html");

pub(super) const MATRIX_TEMPLATE: &str = include_str!("../../templates/matrix.html");
/// The list of bisections.
pub(super) const BISECTS_TEMPLATE: &str = include_str!("../../templates/bisects.html");
/// A bisection's page.
pub(super) const BISECT_TEMPLATE: &str = include_str!("../../templates/bisect.html");

pub(super) const STYLE_CSS: &str = include_str!("../../static/style.css");

pub(super) const PLAYER_INIT_JS: &str = include_str!("../../static/btrfsqa-player.js");
pub(super) const FILTER_JS: &str = include_str!("../../static/btrfsqa-filter.js");

// The template contexts. Every field is always present (absent values are
// `none`), because the environment treats undefined values as errors.

#[derive(Serialize)]
pub(super) struct IndexPage<'a> {
    pub(super) site_title: &'a str,
    pub(super) root: &'a str,
    pub(super) player: bool,
    pub(super) filter: bool,
    pub(super) archive: Option<ArchiveTitle>,
    pub(super) total: usize,
    pub(super) trend: Option<history::Trend<'a>>,
    pub(super) runs: Vec<IndexRow<'a>>,
    pub(super) pages: Vec<ArchiveLink>,
    pub(super) unreadable: &'a [String],
}

#[derive(Serialize)]
pub(super) struct ArchiveTitle {
    pub(super) title: String,
}

#[derive(Serialize)]
pub(super) struct ArchiveLink {
    pub(super) label: String,
    pub(super) href: String,
    pub(super) current: bool,
}

#[derive(Serialize)]
pub(super) struct MatrixPage<'a> {
    pub(super) site_title: &'a str,
    pub(super) root: &'a str,
    pub(super) player: bool,
    pub(super) filter: bool,
    pub(super) matrix: history::Matrix<'a>,
}

#[derive(Serialize)]
pub(super) struct TestPageContext<'a> {
    pub(super) site_title: &'a str,
    pub(super) root: &'a str,
    pub(super) player: bool,
    pub(super) filter: bool,
    pub(super) page: history::TestPage<'a>,
}

impl Dashboard {
    /// A dashboard with the default settings.
    pub fn new() -> Self {
        Dashboard::with_settings(DashboardSettings::default())
    }

    /// A dashboard with `settings`.
    pub fn with_settings(settings: DashboardSettings) -> Self {
        let mut env = Environment::new();
        // Escape everything, whatever a template is called.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        // A misspelt field in a template is an error, not an empty cell.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Strings are escaped for HTML text and quoted attributes (every
        // attribute the templates write is quoted), as minijinja does but
        // for `/`, which neither needs: a site of a thousand runs has
        // millions of them in its links.
        env.set_formatter(|out, state, value| match value.as_str() {
            Some(text) if *state.auto_escape() == AutoEscape::Html && !value.is_safe() => {
                write_html_escaped(out, text)
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        for (name, source) in [
            ("base.html", BASE_TEMPLATE),
            ("index.html", INDEX_TEMPLATE),
            ("run.html", RUN_TEMPLATE),
            ("test.html", TEST_TEMPLATE),
            ("matrix.html", MATRIX_TEMPLATE),
            ("bisects.html", BISECTS_TEMPLATE),
            ("bisect.html", BISECT_TEMPLATE),
        ] {
            env.add_template(name, source)
                .unwrap_or_else(|err| panic!("embedded template `{name}` does not parse: {err}"));
        }
        // Run pages depend on the templates, the stylesheet, the settings and
        // the code that builds their context: a change to any of them makes
        // every run page stale.
        let mut hasher = Sha256::new();
        for part in [
            PAGE_FORMAT,
            env!("CARGO_PKG_VERSION"),
            BASE_TEMPLATE,
            RUN_TEMPLATE,
            STYLE_CSS,
            &settings.title,
            settings.site_url.as_deref().unwrap_or(""),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.update(settings.max_artifact_bytes.to_le_bytes());
        hasher.update(settings.max_cast_bytes.to_le_bytes());
        Dashboard {
            settings,
            env: Arc::new(env),
            fingerprint: hasher.finalize().into(),
        }
    }

    pub(super) fn render_template(
        &self,
        name: &'static str,
        context: &impl Serialize,
    ) -> Result<String, PublishError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|source| PublishError::Template {
                template: name,
                source: Box::new(source),
            })?;
        template
            .render(Serde(context))
            .map_err(|source| PublishError::Template {
                template: name,
                source: Box::new(source),
            })
    }
}

/// Writes `text` with `&`, `<`, `>`, `"` and `'` escaped.
fn write_html_escaped(out: &mut minijinja::Output, text: &str) -> Result<(), minijinja::Error> {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.write_str(&rest[..at])?;
        out.write_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#x27;",
        })?;
        rest = &rest[at + 1..];
    }
    out.write_str(rest)?;
    Ok(())
}
