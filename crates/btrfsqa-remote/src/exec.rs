use std::time::Duration;

/// A command to run on a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Shell command line, run by `sh -c`.
    pub command: String,
    /// Kill the command's process group after this long.
    pub timeout: Option<Duration>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory on the machine.
    pub cwd: Option<String>,
    /// Keep at most this many bytes of each stream in [`ExecOutput`] (the
    /// tail is kept); the sink still sees everything. Default 8 MiB.
    pub capture_limit: usize,
}

impl ExecRequest {
    /// A request to run `command` with no timeout.
    pub fn new(command: impl Into<String>) -> Self {
        ExecRequest {
            command: command.into(),
            timeout: None,
            env: Vec::new(),
            cwd: None,
            capture_limit: 8 << 20,
        }
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The full shell script for a remote shell: `cd`, exports, then the
    /// command, each value quoted.
    pub fn script(&self) -> String {
        let mut script = String::new();
        if let Some(cwd) = &self.cwd {
            script.push_str(&format!("cd {} || exit 125; ", shell_quote(cwd)));
        }
        for (key, value) in &self.env {
            script.push_str(&format!("export {}={}; ", key, shell_quote(value)));
        }
        script.push_str(&self.command);
        script
    }
}

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of output as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Its stream.
    pub stream: StreamKind,
    /// The bytes (not necessarily whole lines or valid UTF-8).
    pub data: Vec<u8>,
}

/// Where streamed output goes. Unbounded so a slow consumer never stalls the
/// command; the consumer writes to disk, which keeps up.
pub type OutputSink = tokio::sync::mpsc::UnboundedSender<OutputChunk>;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// The exit code; `None` when killed by a signal or on timeout.
    pub code: Option<i32>,
    /// Whether the timeout expired and the command was killed.
    pub timed_out: bool,
    /// The captured standard output (its tail, if over the capture limit).
    pub stdout: Vec<u8>,
    /// The captured standard error (its tail, if over the capture limit).
    pub stderr: Vec<u8>,
    /// How long it ran.
    pub duration: Duration,
}

impl ExecOutput {
    /// Exit code 0 and no timeout.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// Standard output as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Quotes `value` for a POSIX shell.
pub fn shell_quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b))
    {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Reads a stream to its end (or until `stop` says so), forwarding chunks
/// to the sink and keeping the capped tail: the one capture of a command's
/// output, for local processes and SSH channels alike.
pub(crate) async fn pump(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    stream: StreamKind,
    sink: Option<OutputSink>,
    limit: usize,
    mut stop: Option<tokio::sync::watch::Receiver<bool>>,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut captured = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let stopped = async {
            match &mut stop {
                Some(stop) => {
                    let _ = stop.wait_for(|stop| *stop).await;
                }
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            read = reader.read(&mut buf) => read,
            () = stopped => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                push_capped(&mut captured, &buf[..n], limit);
                if let Some(sink) = &sink {
                    // A closed receiver means nobody wants the stream any more.
                    let _ = sink.send(OutputChunk {
                        stream,
                        data: buf[..n].to_vec(),
                    });
                }
            }
        }
    }
    captured
}

/// Appends `data` to `buf`, keeping only the last `limit` bytes.
pub fn push_capped(buf: &mut Vec<u8>, data: &[u8], limit: usize) {
    buf.extend_from_slice(data);
    if buf.len() > limit {
        let excess = buf.len() - limit;
        buf.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_values() {
        assert_eq!(shell_quote("plain/path-1"), "plain/path-1");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a'b; rm -rf /"), r"'a'\''b; rm -rf /'");
    }

    #[test]
    fn scripts_quote_env_and_cwd() {
        let req = ExecRequest::new("echo $X").env("X", "a b").cwd("/tmp/x y");
        assert_eq!(
            req.script(),
            "cd '/tmp/x y' || exit 125; export X='a b'; echo $X"
        );
    }

    #[test]
    fn capture_keeps_the_tail() {
        let mut buf = Vec::new();
        push_capped(&mut buf, b"hello ", 8);
        push_capped(&mut buf, b"world", 8);
        assert_eq!(buf, b"lo world");
    }
}
