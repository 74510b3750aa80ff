//! The serial console file: appending a line to it, reading its end.

use std::path::Path;

/// At most this much of the end of a console is returned by
/// [`crate::CloudProvider::console`].
pub(super) const CONSOLE_TAIL: u64 = 1 << 20;

/// Appends `line` to the console file on a line of its own.
pub(super) fn append_console_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut text = String::new();
    if file.metadata()?.len() > 0 {
        // The crashed boot may have stopped mid-line.
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    text.push('\n');
    file.write_all(text.as_bytes())
}

/// The end of a console file, at most `limit` bytes, starting at a line
/// when cut; `None` when there is no such file.
pub(super) fn read_console_tail(path: &Path, limit: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), error = %e, "console not readable");
            }
            return None;
        }
    };
    let len = file.metadata().ok()?.len();
    let cut = len > limit;
    if cut {
        file.seek(SeekFrom::Start(len - limit)).ok()?;
    }
    let mut bytes = Vec::new();
    // `take`: the VM may still be writing.
    file.take(limit).read_to_end(&mut bytes).ok()?;
    if cut && let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
        bytes.drain(..=newline);
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
