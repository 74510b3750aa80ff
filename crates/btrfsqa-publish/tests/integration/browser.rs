//! The published site in a real browser: headless Chromium loads it from a
//! local HTTP server, finds the run and its failing test, and the terminal
//! player shows the recording at that test. Hostile test names and log lines
//! must show as text and run nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use btrfsqa_model::{Artifact, ArtifactKind, ResultsStore, RunId, Verdict};
use btrfsqa_publish::Dashboard;

use crate::report;

const RUN: &str = "20261124-101500-b0b0";

/// What a hostile payload would leave behind if it ran: an attribute on
/// `<body>` (the payloads' text, shown escaped, never has the `="`).
const PWNED: &str = "data-pwned";
const PWNED_ATTRIBUTE: &str = "data-pwned=\"";

fn hostile(n: u32) -> String {
    format!(r#"<img src=x onerror="document.body.setAttribute('{PWNED}','{n}')">"#)
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
            })
        })
}

/// A static file server on 127.0.0.1, stopped when dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_owned();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = serve(stream, &root);
                }
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let mut file = root.to_owned();
    for part in percent_decode(path).split('/') {
        if part.is_empty() || part == "." || part == ".." {
            continue;
        }
        file.push(part);
    }
    if file.is_dir() {
        file.push("index.html");
    }
    let mut stream = stream;
    match std::fs::File::open(&file) {
        Ok(mut f) => {
            let mut body = Vec::new();
            f.read_to_end(&mut body)?;
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("json") => "application/json",
                _ => "text/plain; charset=utf-8",
            };
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)
        }
        Err(_) => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The DOM of `url` after scripts ran (in virtual time), from headless Chromium.
fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(45) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish loading {url} within 45 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// [`dump_dom`] until the DOM has `text` on the player's terminal, a few
/// times: on a loaded machine the player may not have drawn within the
/// first page load (network and wasm run in real time, not virtual time).
fn dump_dom_showing(chromium: &Path, url: &str, text: &str) -> String {
    let mut dom = String::new();
    for _ in 0..4 {
        dom = dump_dom(chromium, url);
        if dom
            .find("ap-term")
            .is_some_and(|at| dom[at..].contains(text))
        {
            break;
        }
    }
    dom
}

/// The first `href="…"` in `html` after `marker`, with `&#x2f;` unescaped.
fn href_after(html: &str, marker: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let rest = &rest[rest.find("href=\"")? + 6..];
    Some(
        rest[..rest.find('"')?]
            .replace("&#x2f;", "/")
            .replace("&amp;", "&"),
    )
}

/// A store with one run: a failing test whose recording shows a known line
/// at its start, and hostile names, messages and log lines everywhere.
fn hostile_store(dir: &Path) -> ResultsStore {
    let mut run = report(
        RUN,
        "2026-11-24T10:15:00Z",
        &[
            ("raid5-data-repair", Verdict::Pass),
            ("raid6-scrub", Verdict::Fail),
        ],
    );
    let suite = &mut run.suites[0];
    suite.tests[0]
        .artifacts
        .push(Artifact::new(ArtifactKind::Cast, "casts/local-0.cast").starting_at(0.5));
    let failing = &mut suite.tests[1];
    failing.message = Some(format!(
        "csum mismatch {}\n</pre>{}",
        hostile(1),
        hostile(2)
    ));
    failing
        .artifacts
        .push(Artifact::new(ArtifactKind::Cast, "casts/local-0.cast").starting_at(20.0));
    let mut evil = btrfsqa_model::TestOutcome::new("raid56-scrub", hostile(3), Verdict::Fail)
        .with_message(format!(
            "<script>document.body.setAttribute('{PWNED}','4')</script>"
        ));
    evil.profile = Some(hostile(5));
    suite.tests.push(evil);
    run.labels.insert(hostile(6), hostile(7));
    run.finish(
        btrfsqa_model::RunStatus::Completed,
        run.finished_at.unwrap(),
    );
    let store = crate::store_with(dir, &[run]);
    let lines = [
        r#"{"version":2,"width":80,"height":10,"title":"local-0"}"#.to_owned(),
        r#"[0.5,"m","raid56-scrub: raid5-data-repair"]"#.to_owned(),
        r#"[0.6,"o","EARLY-TEXT before the failing test\r\n"]"#.to_owned(),
        serde_json::to_string(&(
            1.0,
            "o",
            format!("{}\r\n<script>document.body.setAttribute('{PWNED}','8')</script>\r\n", hostile(9)),
        ))
        .unwrap(),
        "[20.0,\"m\",\"raid56-scrub: raid6-scrub\"]".to_owned(),
        "[20.1,\"o\",\"\\u001b[2J\\u001b[HRAID6-SCRUB-STARTS scrub started on /mnt/scratch\\r\\n\"]".to_owned(),
        "[25.0,\"o\",\"ERROR: there are uncorrectable errors\\r\\n\"]".to_owned(),
    ];
    let cast = store
        .run_dir(&RunId::parse(RUN).unwrap())
        .join("casts/local-0.cast");
    std::fs::create_dir_all(cast.parent().unwrap()).unwrap();
    std::fs::write(&cast, lines.join("\n") + "\n").unwrap();
    store
}

#[test]
fn chromium_finds_the_failing_test_and_plays_its_recording_and_nothing_hostile_runs() {
    let Some(chromium) = chromium() else {
        eprintln!("skipping: no Chromium on PATH (Debian's package `chromium`)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = hostile_store(&tmp.path().join("results"));
    let site = tmp.path().join("site");
    Dashboard::new().render(&store, &site).unwrap();
    let server = Server::start(&site);

    // The index lists the run.
    let index = dump_dom(&chromium, &server.url("index.html"));
    let run_href = href_after(&index, "<tbody>").expect("a run on the index");
    assert_eq!(run_href, format!("runs/{RUN}/index.html"));
    assert!(
        !index.contains(PWNED_ATTRIBUTE),
        "a hostile label ran on the index"
    );

    // The run page lists its failing tests; the first is the one we want.
    let run_page = dump_dom_showing(&chromium, &server.url(&run_href), "RAID6-SCRUB-STARTS");
    let anchor = href_after(&run_page, "class=\"problems\"").expect("a failing test");
    assert_eq!(anchor, "#t-0-1");
    assert!(
        !run_page.contains(PWNED_ATTRIBUTE),
        "a hostile string ran on the run page"
    );
    assert!(
        run_page.contains("&lt;img src=x onerror="),
        "hostile names are shown as text"
    );

    // Opened at that test, the player shows the recording where it starts.
    let at_test = dump_dom_showing(
        &chromium,
        &server.url(&format!("{run_href}{anchor}")),
        "RAID6-SCRUB-STARTS",
    );
    assert!(
        !at_test.contains(PWNED_ATTRIBUTE),
        "a hostile log line ran in the player"
    );
    let terminal = &at_test[at_test
        .find("ap-term")
        .expect("the player rendered its terminal")..];
    assert!(
        terminal.contains("RAID6-SCRUB-STARTS"),
        "the terminal shows the failing test's first output:\n{}",
        &terminal[..terminal.len().min(3000)]
    );
    // The screen was cleared at the test's start, and its later output is
    // not shown yet: the player is at the test's first second.
    let excerpt = &terminal[..terminal.len().min(3000)];
    assert!(!terminal.contains("EARLY-TEXT"), "not seeked:\n{excerpt}");
    assert!(
        !terminal.contains("uncorrectable errors"),
        "seeked past the start:\n{excerpt}"
    );
    // A log line with markup in it is shown on the terminal as text and runs nothing.
    let at_first = dump_dom_showing(
        &chromium,
        &server.url(&format!("{run_href}#t-0-0")),
        "EARLY-TEXT",
    );
    let terminal = &at_first[at_first.find("ap-term").expect("the player rendered")..];
    assert!(terminal.contains("EARLY-TEXT"), "opened at the first test");
    assert!(
        terminal.contains("&lt;img src=x onerror=") && terminal.contains("&lt;script&gt;"),
        "the hostile log lines are on the screen as text"
    );
    assert!(
        !at_first.contains(PWNED_ATTRIBUTE),
        "a hostile log line ran in the player"
    );
    // Without the hash it opens at the first failing test too.
    assert!(run_page.contains("RAID6-SCRUB-STARTS"));
}
