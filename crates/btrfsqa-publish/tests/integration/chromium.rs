//! Headless Chromium and a tiny static file server for the browser tests.
//!
//! The server serves the site as it is, except that a request whose query
//! has `__measure` gets a test-only copy of an HTML page: its
//! Content-Security-Policy allows scripts from the server, and
//! [`MEASURE_JS`] is added at the end of its body. That script measures the
//! laid-out page (widths, how many lines each test name takes, the matrix
//! headers, which rows the filter shows) and writes the numbers as JSON
//! text into a `<pre id="__measure">`, which `--dump-dom` returns. The
//! published pages themselves never carry it: their scripts stay the
//! site's own, and no script of the site reads data into markup.
//!
//! Headless Chromium's window is never narrower than 500 px, so a page is
//! laid out at a given width inside an `<iframe>` that wide, on a test-only
//! wrapper page (`/__frame.html`): the iframe is the page's viewport, its
//! media queries see that width, and the measuring script writes its
//! numbers into the wrapper, which is what `--dump-dom` returns.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub fn chromium() -> Option<PathBuf> {
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

/// Returns early from a test, saying why, when Chromium is missing.
#[macro_export]
macro_rules! require_chromium {
    () => {
        match $crate::chromium::chromium() {
            Some(chromium) => chromium,
            None => {
                eprintln!("skipping: no Chromium on PATH (Debian's package `chromium`)");
                return;
            }
        }
    };
}

/// The test-only measuring script (see the module doc). It reads the page
/// and writes numbers and names as text (`textContent`), never markup.
pub const MEASURE_JS: &str = r#"
window.addEventListener("load", function () {
  var doc = document.documentElement;
  var out = {
    inner_width: window.innerWidth,
    client_width: doc.clientWidth,
    scroll_width: Math.max(doc.scrollWidth, document.body.scrollWidth),
    names: [],
    wrapped: [],
    matrix_headers: [],
    rows_shown: 0,
    rows: 0,
    order: [],
    filter_shown: false,
    unreadable_cells: [],
  };
  document.querySelectorAll(".tn, table.tests td:first-child a code, th.test code").forEach(function (el) {
    out.names.push(el.textContent);
    var lines = el.getClientRects().length;
    if (lines > 1) {
      out.wrapped.push(el.textContent + " (" + lines + " lines)");
    }
  });
  document.querySelectorAll("table.matrix th.run").forEach(function (th) {
    var link = th.querySelector("a");
    out.matrix_headers.push({
      text: th.textContent.replace(/\s+/g, " ").trim(),
      href: link ? link.getAttribute("href") : null,
    });
  });
  document.querySelectorAll("td.cell a").forEach(function (link) {
    var cell = link.parentNode;
    if (getComputedStyle(link).color === getComputedStyle(cell).backgroundColor) {
      out.unreadable_cells.push(cell.className + ": " + link.textContent);
    }
  });
  document.querySelectorAll("tr[data-v]").forEach(function (row) {
    out.rows += 1;
    if (row.getClientRects().length > 0) {
      out.rows_shown += 1;
    }
  });
  ["changes", "problems", "tests"].forEach(function (id) {
    var el = document.getElementById(id);
    if (el) {
      out.order.push([id, el.getBoundingClientRect().top + window.scrollY]);
    }
  });
  var form = document.getElementById("filter");
  out.filter_shown = !!form && form.getClientRects().length > 0;
  var target = window.parent !== window ? window.parent.document : document;
  var pre = target.createElement("pre");
  pre.id = "__measure";
  pre.textContent = JSON.stringify(out);
  target.body.appendChild(pre);
});
"#;

/// A static file server on 127.0.0.1, stopped when dropped.
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(root: &Path) -> Server {
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

    pub fn url(&self, path: &str) -> String {
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

/// The test-only copy of a page: scripts allowed from the server, and the
/// measuring script at the end of the body.
fn with_measuring_script(page: &[u8]) -> Vec<u8> {
    let page = String::from_utf8_lossy(page);
    let csp_start = page.find("<meta http-equiv=\"Content-Security-Policy\"");
    let page = match csp_start {
        Some(start) => {
            let end = start + page[start..].find('>').unwrap() + 1;
            format!(
                "{}<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:\">{}",
                &page[..start],
                &page[end..]
            )
        }
        None => page.into_owned(),
    };
    let at = page.rfind("</body>").unwrap_or(page.len());
    format!(
        "{}<script src=\"/__measure.js\"></script>{}",
        &page[..at],
        &page[at..]
    )
    .into_bytes()
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
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let measure = target
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p == "__measure"));
    let mut stream = stream;
    if path == "/__measure.js" {
        return respond(&mut stream, "text/javascript", MEASURE_JS.as_bytes());
    }
    if path == "/__frame.html" {
        return respond(
            &mut stream,
            "text/html; charset=utf-8",
            &frame(target).into_bytes(),
        );
    }
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
    match std::fs::File::open(&file) {
        Ok(mut f) => {
            let mut body = Vec::new();
            f.read_to_end(&mut body)?;
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("json") => "application/json",
                Some("gz") => "application/gzip",
                _ => "text/plain; charset=utf-8",
            };
            if measure && kind.starts_with("text/html") {
                body = with_measuring_script(&body);
            }
            respond(&mut stream, kind, &body)
        }
        Err(_) => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

/// The wrapper page of `/__frame.html?w=WIDTH&src=PATH`: the page at PATH
/// (percent-encoded, with its own query) in an iframe WIDTH pixels wide.
fn frame(target: &str) -> String {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .map(percent_decode)
            .unwrap_or_default()
    };
    let width: u32 = param("w").parse().unwrap_or(1280);
    let src = param("src").replace('"', "%22");
    format!(
        "<!DOCTYPE html><html><head><style>body {{ margin: 0 }} iframe {{ border: 0; display: block }}</style></head>\
         <body><iframe src=\"{src}\" style=\"width: {width}px; height: 900px\"></iframe></body></html>"
    )
}

fn respond(stream: &mut TcpStream, kind: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)
}

pub fn percent_decode(text: &str) -> String {
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

/// Runs headless Chromium on `url` with `extra` arguments (after the
/// common ones) and returns its standard output.
pub fn run(chromium: &Path, url: &str, extra: &[&str]) -> String {
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
            "--hide-scrollbars",
        ])
        .args(extra)
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

/// The DOM of `url` after scripts ran (in virtual time).
pub fn dump_dom(chromium: &Path, url: &str) -> String {
    run(
        chromium,
        url,
        &["--virtual-time-budget=10000", "--dump-dom"],
    )
}

/// The URL of the wrapper page that shows `path` (of `server`) `width`
/// pixels wide, and the window size that holds it.
fn framed(server: &Server, path: &str, width: u32) -> (String, String) {
    let url = server.url(&format!(
        "__frame.html?w={width}&src={}",
        percent_encode(&format!("/{path}"))
    ));
    (url, format!("--window-size={},900", width.max(500)))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A screenshot of `path` laid out `width` CSS pixels wide, at `png`.
pub fn screenshot(chromium: &Path, server: &Server, path: &str, width: u32, png: &Path) {
    std::fs::create_dir_all(png.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(png);
    let (url, window) = framed(server, path, width);
    run(
        chromium,
        &url,
        &[
            &window,
            "--virtual-time-budget=5000",
            &format!("--screenshot={}", png.display()),
        ],
    );
    assert!(png.is_file(), "no screenshot of {url} at {}", png.display());
}

/// What [`MEASURE_JS`] measured of `path` (of `server`, with its query)
/// laid out `width` CSS pixels wide.
pub fn measure(chromium: &Path, server: &Server, path: &str, width: u32) -> serde_json::Value {
    let sep = if path.contains('?') { '&' } else { '?' };
    let path = format!("{path}{sep}__measure");
    let (url, window) = framed(server, &path, width);
    let dom = run(
        chromium,
        &url,
        &[&window, "--virtual-time-budget=10000", "--dump-dom"],
    );
    let start = dom
        .find("<pre id=\"__measure\">")
        .unwrap_or_else(|| panic!("nothing measured on {url}:\n{dom}"))
        + "<pre id=\"__measure\">".len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Where the browser tests keep their screenshots:
/// `target/test-artifacts/dashboard/`.
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts/dashboard")
}
