//! Telling someone when a run has regressions: a command and/or a webhook
//! receive the run's [`ComparisonSummary`] as JSON.
//!
//! ```toml
//! [notify]
//! # Run with `sh -c`, the summary on stdin; BTRFSQA_RUN_ID, BTRFSQA_BASELINE,
//! # BTRFSQA_REGRESSIONS and BTRFSQA_DASHBOARD_URL in the environment.
//! command = "mail -s 'btrfsqa: regressions' btrfs-qa@example.org"
//! # POSTed as application/json. Plain http:// only: for https, use the
//! # command hook with curl, which also keeps a secret URL out of this file:
//! #   command = "curl -fsS -H 'Content-Type: application/json' --data-binary @- \"$SLACK_URL\""
//! webhook = "http://ci.example.org:8080/hooks/btrfsqa"
//! on = "regressions"          # or "always"
//! timeout-secs = 30
//! dashboard-url = "https://btrfsqa.github.io/site/"
//! ```
//!
//! The webhook client is a few lines of HTTP/1.1 over a TCP stream rather
//! than an HTTP crate with a TLS stack: one POST to a plain-http endpoint
//! (an internal CI hook) needs nothing more, and https goes through curl.

use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use btrfsqa_model::RunId;
use btrfsqa_model::compare::ComparisonSummary;

use crate::error::NotifyError;

/// When hooks fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyOn {
    /// Only when the run has at least one regression.
    #[default]
    Regressions,
    /// After every compared run.
    Always,
}

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifyConfig {
    /// A shell command that gets the summary JSON on stdin.
    #[serde(default)]
    pub command: Option<String>,
    /// An `http://` URL the summary JSON is POSTed to.
    #[serde(default)]
    pub webhook: Option<String>,
    /// When to fire.
    #[serde(default)]
    pub on: NotifyOn,
    /// How long each hook may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The dashboard's root URL; the summary links the run's page under it.
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

fn default_timeout_secs() -> u64 {
    30
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            command: None,
            webhook: None,
            on: NotifyOn::default(),
            timeout_secs: default_timeout_secs(),
            dashboard_url: None,
        }
    }
}

impl NotifyConfig {
    /// Problems as `(key under [notify], message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if let Some(command) = &self.command
            && command.trim().is_empty()
        {
            issues.push(("command".to_owned(), "must not be empty".to_owned()));
        }
        if let Some(url) = &self.webhook
            && let Err(NotifyError::BadWebhook { reason, .. }) = WebhookTarget::parse(url)
        {
            issues.push(("webhook".to_owned(), reason));
        }
        if self.timeout_secs == 0 {
            issues.push(("timeout-secs".to_owned(), "must be at least 1".to_owned()));
        }
        if let Some(url) = &self.dashboard_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            issues.push((
                "dashboard-url".to_owned(),
                format!("`{url}` is not an http(s) URL"),
            ));
        }
        issues
    }

    /// Whether any hook is configured.
    pub fn is_configured(&self) -> bool {
        self.command.is_some() || self.webhook.is_some()
    }

    /// Whether `summary` should be sent.
    pub fn should_notify(&self, summary: &ComparisonSummary) -> bool {
        self.is_configured()
            && match self.on {
                NotifyOn::Regressions => {
                    summary.counts.new_failure > 0 || !summary.slower.is_empty()
                }
                NotifyOn::Always => true,
            }
    }

    /// The run's dashboard page, when `dashboard-url` is set.
    pub fn run_page(&self, run: &RunId) -> Option<String> {
        self.dashboard_url
            .as_deref()
            .map(|base| run_page_url(base, run))
    }
}

/// `BASE/runs/<run-id>/`: where the dashboard puts a run's page.
pub fn run_page_url(base: &str, run: &RunId) -> String {
    format!("{}/runs/{run}/", base.trim_end_matches('/'))
}

/// What [`send`] did.
#[derive(Debug, Default)]
pub struct Notified {
    /// The hooks that succeeded (`command`, `webhook`).
    pub delivered: Vec<&'static str>,
    /// The hooks that failed, and why.
    pub errors: Vec<NotifyError>,
}

/// Runs every configured hook with `summary`, whether or not it should fire
/// (ask [`NotifyConfig::should_notify`] first). A failing hook does not stop
/// the other; neither fails the run. URLs in the summary reach the hooks
/// without their credentials.
pub async fn send(config: &NotifyConfig, summary: &ComparisonSummary) -> Notified {
    let mut summary = summary.clone();
    summary.redact_credentials();
    let summary = &summary;
    let json = serde_json::to_vec_pretty(summary).expect("a summary always serializes");
    let timeout = Duration::from_secs(config.timeout_secs.max(1));
    let mut notified = Notified::default();
    if let Some(command) = &config.command {
        match run_command(command, &json, summary, timeout).await {
            Ok(()) => notified.delivered.push("command"),
            Err(err) => notified.errors.push(err),
        }
    }
    if let Some(url) = &config.webhook {
        match post_json(url, &json, timeout).await {
            Ok(_) => notified.delivered.push("webhook"),
            Err(err) => notified.errors.push(err),
        }
    }
    notified
}

/// Runs `command` with `sh -c`, `json` on its stdin, in its own process
/// group so a timeout stops everything it started.
pub async fn run_command(
    command: &str,
    json: &[u8],
    summary: &ComparisonSummary,
    timeout: Duration,
) -> Result<(), NotifyError> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("BTRFSQA_RUN_ID", summary.run_id.as_str())
        .env(
            "BTRFSQA_BASELINE",
            summary.baseline.as_ref().map_or("", |b| b.as_str()),
        )
        .env(
            "BTRFSQA_REGRESSIONS",
            summary.counts.new_failure.to_string(),
        )
        .env(
            "BTRFSQA_DASHBOARD_URL",
            summary.dashboard_url.as_deref().unwrap_or(""),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NotifyError::Spawn {
            command: command.to_owned(),
            source,
        })?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let work = async {
        // A command that does not read its input closes the pipe early:
        // that is its business, not an error.
        if let Err(err) = stdin.write_all(json).await
            && err.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(NotifyError::Spawn {
                command: command.to_owned(),
                source: err,
            });
        }
        drop(stdin);
        child
            .wait_with_output()
            .await
            .map_err(|source| NotifyError::Spawn {
                command: command.to_owned(),
                source,
            })
    };
    let output = match tokio::time::timeout(timeout, work).await {
        Ok(output) => output?,
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(NotifyError::CommandTimeout {
                command: command.to_owned(),
                secs: timeout.as_secs(),
            });
        }
    };
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(NotifyError::CommandFailed {
            command: command.to_owned(),
            status: output.status.to_string(),
            stderr: tail(stderr.trim(), 500),
        })
    }
}

fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Where a webhook goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WebhookTarget {
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
    /// `http://host:port/…`: the URL without its path, which may carry a token.
    shown: String,
}

impl WebhookTarget {
    fn parse(url: &str) -> Result<WebhookTarget, NotifyError> {
        let bad = |reason: String| NotifyError::BadWebhook {
            url: shown_url(url),
            reason,
        };
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad(
                "https webhooks are not sent directly: use `command` with curl \
                 (`curl -fsS -H 'Content-Type: application/json' --data-binary @- URL`)"
                    .to_owned(),
            ));
        } else {
            return Err(bad("must start with `http://`".to_owned()));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        let path = path.split('#').next().unwrap_or("/").to_owned();
        if authority.contains('@') {
            return Err(bad(
                "must not carry credentials: put them in a `command` hook's environment".to_owned(),
            ));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let end = bracketed
                .find(']')
                .ok_or_else(|| bad("unclosed `[` in the host".to_owned()))?;
            let host = &bracketed[..end];
            let port = match &bracketed[end + 1..] {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("junk after the host".to_owned()))?,
                ),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("has no host".to_owned()));
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("the path has spaces or control characters".to_owned()));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(format!("`{p}` is not a port")))?,
        };
        Ok(WebhookTarget {
            shown: format!("http://{authority}/…"),
            host,
            port,
            path,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A URL for messages: scheme and host, never the path or query (a webhook
/// path is often its secret).
fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{authority}/…")
        }
        None => "<not a URL>".to_owned(),
    }
}

/// POSTs `body` as JSON to an `http://` URL with HTTP/1.1; a 2xx status is
/// success and is returned.
pub async fn post_json(url: &str, body: &[u8], timeout: Duration) -> Result<u16, NotifyError> {
    let target = WebhookTarget::parse(url)?;
    let shown = target.shown.clone();
    let io = |source: std::io::Error| NotifyError::Webhook {
        url: shown.clone(),
        source,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(io)?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: btrfsqa/{}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            target.path,
            target.host_header(),
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(body).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        // `Connection: close`: the response ends when the server closes.
        // Only the status matters; keep a little of the body for errors.
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 || response.len() > 64 * 1024 {
                break;
            }
            response.extend_from_slice(&chunk[..n]);
        }
        Ok::<Vec<u8>, NotifyError>(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| NotifyError::WebhookTimeout {
            url: target.shown.clone(),
            secs: timeout.as_secs(),
        })??;
    let status = parse_status(&response).ok_or_else(|| NotifyError::WebhookStatus {
        url: target.shown.clone(),
        status: 0,
        body: "no HTTP status line in the response".to_owned(),
    })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        let text = String::from_utf8_lossy(&response);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Err(NotifyError::WebhookStatus {
            url: target.shown,
            status,
            body: tail(body.trim(), 300),
        })
    }
}

/// `HTTP/1.1 204 No Content` → 204.
fn parse_status(response: &[u8]) -> Option<u16> {
    let line_end = response.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::Verdict;
    use btrfsqa_model::compare::{Class, ClassCounts, TestComparison};
    use tokio::net::TcpListener;

    fn summary(regressions: u32) -> ComparisonSummary {
        ComparisonSummary {
            run_id: RunId::parse("20261124-120000-abcd").unwrap(),
            baseline: Some(RunId::parse("20261123-120000-0001").unwrap()),
            counts: ClassCounts {
                new_failure: regressions,
                pass: 10,
                ..ClassCounts::default()
            },
            regressions: (0..regressions)
                .map(|i| TestComparison {
                    suite: "xfstests".into(),
                    profile: None,
                    name: format!("btrfs/{i:03}"),
                    class: Class::NewFailure,
                    verdict: Some(Verdict::Fail),
                    baseline_verdict: Some(Verdict::Pass),
                    attempts: Vec::new(),
                    message: Some("output mismatch".into()),
                })
                .collect(),
            notable: Vec::new(),
            droppable: Vec::new(),
            slower: Vec::new(),
            dashboard_url: Some("https://qa.example.org/runs/20261124-120000-abcd/".into()),
        }
    }

    #[test]
    fn webhook_urls_parse_and_refuse_what_cannot_be_sent() {
        let t = WebhookTarget::parse("http://127.0.0.1:8080/hooks/x?token=s3cret").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/hooks/x?token=s3cret")
        );
        assert_eq!(t.host_header(), "127.0.0.1:8080");
        assert!(!t.shown.contains("s3cret"));
        let t = WebhookTarget::parse("http://ci.example.org").unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.host_header().as_str()),
            (80, "/", "ci.example.org")
        );
        let t = WebhookTarget::parse("http://[::1]:9/x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.host_header().as_str()),
            ("::1", "[::1]:9")
        );
        let t = WebhookTarget::parse("http://h?x=1").unwrap();
        assert_eq!(t.path, "/?x=1");

        for (url, expect) in [
            ("https://hooks.slack.com/services/T/B/secret", "curl"),
            ("ftp://x/", "http://"),
            ("http://user:pw@host/", "credentials"),
            ("http://host:99999/", "not a port"),
            ("http:///path", "no host"),
            ("http://h/a b", "spaces"),
        ] {
            let err = WebhookTarget::parse(url).unwrap_err().to_string();
            assert!(err.contains(expect), "{url}: {err}");
            assert!(!err.contains("secret") && !err.contains("pw"), "{err}");
        }
        let config = NotifyConfig {
            webhook: Some("https://x/y".into()),
            timeout_secs: 0,
            dashboard_url: Some("qa.example.org".into()),
            ..NotifyConfig::default()
        };
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["webhook", "timeout-secs", "dashboard-url"]);
    }

    #[test]
    fn hooks_fire_on_regressions_unless_told_always() {
        let mut config = NotifyConfig::default();
        assert!(!config.should_notify(&summary(1)), "nothing configured");
        config.command = Some("true".into());
        assert!(config.should_notify(&summary(1)));
        assert!(!config.should_notify(&summary(0)));
        config.on = NotifyOn::Always;
        assert!(config.should_notify(&summary(0)));
        let parsed: NotifyConfig =
            toml::from_str("command = \"cat\"\non = \"always\"\ndashboard-url = \"https://q/\"\n")
                .unwrap();
        assert_eq!(parsed.on, NotifyOn::Always);
        assert_eq!(
            parsed.run_page(&RunId::parse("r1").unwrap()).as_deref(),
            Some("https://q/runs/r1/")
        );
    }

    #[tokio::test]
    async fn the_command_gets_the_summary_on_stdin_and_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("summary.json");
        let env = dir.path().join("env.txt");
        let config = NotifyConfig {
            command: Some(format!(
                "cat > '{}' && echo \"$BTRFSQA_RUN_ID $BTRFSQA_BASELINE $BTRFSQA_REGRESSIONS\" > '{}'",
                out.display(),
                env.display()
            )),
            ..NotifyConfig::default()
        };
        let notified = send(&config, &summary(2)).await;
        assert!(notified.errors.is_empty(), "{:?}", notified.errors);
        assert_eq!(notified.delivered, ["command"]);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(json["run_id"], "20261124-120000-abcd");
        assert_eq!(json["baseline"], "20261123-120000-0001");
        assert_eq!(json["counts"]["new_failure"], 2);
        assert_eq!(json["regressions"][1]["name"], "btrfs/001");
        assert_eq!(json["regressions"][0]["message"], "output mismatch");
        assert_eq!(
            json["dashboard_url"],
            "https://qa.example.org/runs/20261124-120000-abcd/"
        );
        assert_eq!(
            std::fs::read_to_string(&env).unwrap().trim(),
            "20261124-120000-abcd 20261123-120000-0001 2"
        );
    }

    #[tokio::test]
    async fn hooks_get_urls_without_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("summary.json");
        let config = NotifyConfig {
            command: Some(format!("cat > '{}'", out.display())),
            ..NotifyConfig::default()
        };
        let mut summary = summary(1);
        summary.regressions[0].message =
            Some("cannot clone https://me:tok-1234567@git.example/fstests.git".into());
        let notified = send(&config, &summary).await;
        assert!(notified.errors.is_empty(), "{:?}", notified.errors);
        let sent = std::fs::read_to_string(&out).unwrap();
        assert!(!sent.contains("tok-1234567"), "{sent}");
        assert!(sent.contains("https://git.example/fstests.git"), "{sent}");
    }

    #[tokio::test]
    async fn a_failing_or_hanging_command_is_an_error_not_a_hang() {
        let failing = NotifyConfig {
            command: Some("echo 'mailer: no route' >&2; exit 7".into()),
            ..NotifyConfig::default()
        };
        let notified = send(&failing, &summary(1)).await;
        let err = notified.errors[0].to_string();
        assert!(err.contains("mailer: no route"), "{err}");
        assert!(err.contains('7'), "{err}");

        // Ignoring stdin is fine.
        let ignores = NotifyConfig {
            command: Some("true".into()),
            ..NotifyConfig::default()
        };
        assert!(send(&ignores, &summary(1)).await.errors.is_empty());

        let hanging = NotifyConfig {
            command: Some("sleep 30 & sleep 30".into()),
            timeout_secs: 1,
            ..NotifyConfig::default()
        };
        let notified = send(&hanging, &summary(1)).await;
        assert!(
            matches!(
                notified.errors[0],
                NotifyError::CommandTimeout { secs: 1, .. }
            ),
            "{:?}",
            notified.errors
        );
    }

    /// A one-request HTTP server on 127.0.0.1 that answers with `status`
    /// and hands back the request it read.
    async fn server(status: &'static str) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/btrfsqa?key=abc",
            listener.local_addr().unwrap()
        );
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then as many body bytes as it announces.
            loop {
                let n = socket.read(&mut chunk).await.unwrap();
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= length {
                        break;
                    }
                }
                assert!(n > 0, "client closed early");
            }
            let reply =
                format!("HTTP/1.1 {status}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope!");
            socket.write_all(reply.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            request
        });
        (url, handle)
    }

    #[tokio::test]
    async fn the_webhook_receives_the_summary_as_a_json_post() {
        let (url, server) = server("204 No Content").await;
        let config = NotifyConfig {
            webhook: Some(url),
            ..NotifyConfig::default()
        };
        let notified = send(&config, &summary(1)).await;
        assert!(notified.errors.is_empty(), "{:?}", notified.errors);
        assert_eq!(notified.delivered, ["webhook"]);
        let request = String::from_utf8(server.await.unwrap()).unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("POST /hooks/btrfsqa?key=abc HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("Content-Type: application/json"), "{head}");
        assert!(head.contains("Host: 127.0.0.1:"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["regressions"][0]["name"], "btrfs/000");
        assert_eq!(json["counts"]["new_failure"], 1);
    }

    #[tokio::test]
    async fn webhook_errors_name_the_status_and_hide_the_path() {
        let (url, server) = server("500 Internal Server Error").await;
        let err = post_json(&url, b"{}", Duration::from_secs(10))
            .await
            .unwrap_err()
            .to_string();
        server.await.unwrap();
        assert!(err.contains("500"), "{err}");
        assert!(err.contains("nope!"), "{err}");
        assert!(!err.contains("key=abc"), "the URL's secret leaked: {err}");

        // Nobody listening.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let err = post_json(&closed, b"{}", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, NotifyError::Webhook { .. }), "{err:?}");

        // A server that accepts and never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = format!("http://{}/", listener.local_addr().unwrap());
        let err = post_json(&silent, b"{}", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, NotifyError::WebhookTimeout { .. }), "{err:?}");
        drop(listener);
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 404\r\n"), Some(404));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
