//! Credentials out of URLs, before a URL is stored or shown.
//!
//! A git URL may carry a password or token (`https://user:token@host/x.git`):
//! typed on a command line, set in the environment, or given by an embedder.
//! [`redact_url`] strips it from a URL or from any text that holds URLs (an
//! error message quoting one); [`RunReport::redact_credentials`] and
//! [`Event::redact_credentials`] apply it to every string of a report or an
//! event, so whatever field a URL lands in, it is stored and shown without
//! its credentials. The results store applies it to every report it writes.
//!
//! Pure: text in, text out.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::compare::ComparisonSummary;
use crate::{Event, RunReport, SourceInfo};

/// The user name and password of an HTTP(S) URL (`https://user:token@host/`,
/// or `https://token@host/` as `(token, "")`), for a client that sends them
/// in a header instead of on a command line; `None` without any.
///
/// ```
/// use btrfsqa_model::url_credentials;
///
/// assert_eq!(
///     url_credentials("https://me:ghp_x@github.com/a.git"),
///     Some(("me".to_owned(), "ghp_x".to_owned()))
/// );
/// assert_eq!(url_credentials("https://github.com/a.git"), None);
/// assert_eq!(url_credentials("ssh://git@host/a.git"), None);
/// ```
pub fn url_credentials(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return None;
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    Some((user.to_owned(), password.to_owned()))
}

/// `text` with the credentials of every URL in it removed: the user part
/// (`user:password@`, `token@`) of `scheme://user:password@host/...`, where
/// a token often stands in the user name. SSH user names are login names,
/// not secrets: `ssh://git:pw@host/x` keeps `git@`, and scp-like
/// `git@github.com:a/b.git` is unchanged.
///
/// ```
/// use btrfsqa_model::redact_url;
///
/// assert_eq!(redact_url("https://me:ghp_x@github.com/a/b.git"), "https://github.com/a/b.git");
/// assert_eq!(
///     redact_url("fatal: unable to access 'https://tok@h/x/': denied"),
///     "fatal: unable to access 'https://h/x/': denied"
/// );
/// assert_eq!(redact_url("git@github.com:a/b.git"), "git@github.com:a/b.git");
/// ```
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let scheme_start = rest[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = rest[scheme_start..pos].to_ascii_lowercase();
        let authority_start = pos + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_len];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let ssh = matches!(scheme.as_str(), "ssh" | "git+ssh" | "ssh+git");
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                if ssh && !user.is_empty() {
                    out.push_str(user);
                    out.push('@');
                }
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_len..];
    }
    out.push_str(rest);
    out
}

/// Whether [`redact_url`] would change `text`, without building a copy when
/// it would not.
fn has_credentials(text: &str) -> bool {
    text.contains("://") && text.contains('@') && redact_url(text) != text
}

/// Redacts every string in `value` (not map keys); whether any changed.
fn redact_json(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) if has_credentials(text) => {
            *text = redact_url(text);
            true
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| redact_json(item) | changed),
        serde_json::Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, item| redact_json(item) | changed),
        _ => false,
    }
}

/// Redacts every string field of `value`, whatever its type: through its
/// JSON form, so a field added later is covered too. Whether any changed.
fn redact_fields<T: Serialize + DeserializeOwned>(value: &mut T) -> bool {
    let Ok(mut json) = serde_json::to_value(&*value) else {
        return false;
    };
    if !redact_json(&mut json) {
        return false;
    }
    match serde_json::from_value(json) {
        Ok(redacted) => {
            *value = redacted;
            true
        }
        // Only strings holding `://` changed, and no field whose type
        // checks its text (a run id) can hold that.
        Err(_) => false,
    }
}

impl RunReport {
    /// Removes the credentials of every URL anywhere in the report (sources,
    /// messages, errors, labels) with [`redact_url`]. Whether anything changed.
    pub fn redact_credentials(&mut self) -> bool {
        redact_fields(self)
    }

    /// The report without credentials in its URLs: itself when it has none.
    pub fn without_credentials(&self) -> Cow<'_, RunReport> {
        let mut copy = self.clone();
        if copy.redact_credentials() {
            Cow::Owned(copy)
        } else {
            Cow::Borrowed(self)
        }
    }
}

impl Event {
    /// Removes the credentials of every URL anywhere in the event with
    /// [`redact_url`]. Whether anything changed.
    pub fn redact_credentials(&mut self) -> bool {
        redact_fields(self)
    }
}

impl ComparisonSummary {
    /// Removes the credentials of every URL anywhere in the summary (test
    /// messages) with [`redact_url`], before it goes to a hook. Whether
    /// anything changed.
    pub fn redact_credentials(&mut self) -> bool {
        redact_fields(self)
    }
}

impl SourceInfo {
    /// A pinned source, its URL stored without credentials ([`redact_url`]).
    pub fn new(
        name: impl Into<String>,
        url: &str,
        git_ref: Option<String>,
        commit: Option<String>,
    ) -> Self {
        SourceInfo {
            name: name.into(),
            url: redact_url(url),
            git_ref,
            commit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Provenance, RunId, RunStatus, SuiteReport, TestOutcome, Verdict};

    #[test]
    fn credentials_are_stripped_from_urls_and_text() {
        for (text, redacted) in [
            (
                "https://user:tok@github.com/a/b.git",
                "https://github.com/a/b.git",
            ),
            ("https://ghp_token@github.com/a/b", "https://github.com/a/b"),
            ("http://u:p@host:8080/x", "http://host:8080/x"),
            ("git://u:p@host/x", "git://host/x"),
            ("ftp://u:p@host", "ftp://host"),
            ("ssh://git:pw@host:22/x", "ssh://git@host:22/x"),
            ("ssh://:pw@host/x", "ssh://host/x"),
            ("ssh://git@host/x", "ssh://git@host/x"),
            ("git@github.com:a/b.git", "git@github.com:a/b.git"),
            ("/srv/site.git", "/srv/site.git"),
            ("file:///srv/site.git", "file:///srv/site.git"),
            ("https://p%40ss:x@h/x", "https://h/x"),
            (
                "https://host/path@not-userinfo",
                "https://host/path@not-userinfo",
            ),
            (
                "fatal: unable to access 'https://u:p@h/x/': denied",
                "fatal: unable to access 'https://h/x/': denied",
            ),
            (
                "from https://a:1@x/ and https://b:2@y/",
                "from https://x/ and https://y/",
            ),
            ("trailing https://u:p@host", "trailing https://host"),
            ("", ""),
            ("://@", "://"),
            ("héllo https://ü:ö@hôst/ü", "héllo https://hôst/ü"),
        ] {
            assert_eq!(redact_url(text), redacted, "{text}");
        }
    }

    fn report_with_secrets() -> RunReport {
        let mut report = RunReport::start(
            RunId::parse("r1").unwrap(),
            chrono::Utc::now(),
            Provenance::default(),
        );
        report.provenance.kernel.source = Some(SourceInfo {
            name: "kernel".into(),
            url: "https://kdave:kernel-tok@git.kernel.org/linux.git".into(),
            git_ref: Some("for-next".into()),
            commit: None,
        });
        let mut suite = SuiteReport::new("xfstests");
        suite.source = Some(SourceInfo {
            name: "fstests".into(),
            url: "https://me:suite-tok@example.org/fstests.git".into(),
            git_ref: None,
            commit: None,
        });
        suite.error = Some("cannot fetch `https://me:suite-tok@example.org/fstests.git`".into());
        suite.tests.push(
            TestOutcome::new("xfstests", "btrfs/001", Verdict::Error)
                .with_message("clone of https://x-token:msg-tok@h/y failed"),
        );
        report.suites.push(suite);
        report
            .labels
            .insert("ci".into(), "https://ci:label-tok@ci.example/job/1".into());
        report.finish(RunStatus::Completed, chrono::Utc::now());
        report
    }

    #[test]
    fn every_string_of_a_report_loses_its_credentials() {
        let mut report = report_with_secrets();
        let before = report.clone();
        assert!(report.redact_credentials());
        let json = serde_json::to_string(&report).unwrap();
        for secret in ["kernel-tok", "suite-tok", "msg-tok", "label-tok", "kdave"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert_eq!(
            report.suites[0].source.as_ref().unwrap().url,
            "https://example.org/fstests.git"
        );
        // Everything else is as it was.
        assert_eq!(report.started_at, before.started_at);
        assert_eq!(report.summary, before.summary);
        assert_eq!(report.suites[0].tests[0].name, "btrfs/001");
        assert!(!report.redact_credentials(), "nothing left to redact");
        assert!(matches!(report.without_credentials(), Cow::Borrowed(_)));
    }

    #[test]
    fn events_lose_their_credentials() {
        let mut event = Event::Warning {
            machine: None,
            message: "fetching https://u:event-tok@h/x".into(),
        };
        assert!(event.redact_credentials());
        assert!(!serde_json::to_string(&event).unwrap().contains("event-tok"));
    }

    #[test]
    fn a_source_made_with_new_has_no_credentials() {
        let source = SourceInfo::new(
            "fstests",
            "https://u:t@h/fstests.git",
            Some("master".into()),
            None,
        );
        assert_eq!(source.url, "https://h/fstests.git");
    }
}
