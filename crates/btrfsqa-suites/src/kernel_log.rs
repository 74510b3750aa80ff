//! What the kernel logged while a test ran, and the lines of it that matter.
//!
//! A test's command opens `/dev/kmsg` at its start and drains it (each open
//! file of `/dev/kmsg` reads from its own position, so draining it moves that
//! position to the end of the log); after the test, reading the same file
//! gives exactly the records logged meanwhile. The records are printed on
//! standard error between two marker lines, and [`split_stderr`] takes them
//! back out. Two `dd` processes per test: reading the whole log with `dmesg`
//! after every test would cost more than many tests take.
//!
//! Without permission to read `/dev/kmsg` (not root, `dmesg_restrict`) the
//! snippets do nothing and the test has no kernel log.
//!
//! The lines that matter are those fstests' `_check_dmesg` fails a test on
//! (BUG, WARNING, Oops, lockdep reports, RCU misuse, general protection
//! faults, UBSAN), plus KASAN reports, hung-task reports and btrfs critical
//! errors. `BTRFS error` and `BTRFS warning` are not among them: repairing
//! corruption, which tests do on purpose, logs those.

use btrfsqa_model::{ArtifactKind, TestOutcome, Verdict};

use crate::SuiteContext;

/// The line before the kernel log on standard error.
pub const BEGIN_MARKER: &str = "btrfsqa: kernel log begin";
/// The line after it.
pub const END_MARKER: &str = "btrfsqa: kernel log end";

/// At most this many problem lines are kept in an outcome.
const MAX_PROBLEMS: usize = 20;

/// Shell (POSIX sh) that starts following the kernel log: opens fd 9 on
/// `/dev/kmsg` and skips what is already there. Sets `k` when it could.
/// Ends with `; `, ready to be followed by the test's command.
pub fn follow_snippet() -> &'static str {
    // `command exec`: a failed redirection of a special builtin would end
    // the shell; through `command` it is only a failed command. A reader
    // overtaken by the ring buffer gets EPIPE (and its position moves to the
    // oldest record): drain until EAGAIN says the end is reached.
    "k=; { command exec 9</dev/kmsg; } 2>/dev/null && k=1 && i=0 && \
     until [ $i -ge 8 ] || LC_ALL=C dd <&9 iflag=nonblock bs=65536 of=/dev/null 2>&1 | grep -q temporarily; \
     do i=$((i+1)); done; "
}

/// Shell that prints, on standard error between the markers, what the kernel
/// logged since [`follow_snippet`]. The test's own processes must not
/// inherit fd 9: run them with `9<&-`.
pub fn report_snippet() -> String {
    format!(
        "[ -n \"$k\" ] && {{ echo; echo '{BEGIN_MARKER}'; dd <&9 iflag=nonblock bs=65536 2>/dev/null; echo '{END_MARKER}'; }} >&2; "
    )
}

/// What a hung machine shows: the blocked tasks (sysrq `w` writes their
/// stacks to the kernel log), the processes in uninterruptible sleep, and the
/// end of the kernel log and the mounts.
pub const HANG_EVIDENCE_COMMAND: &str = "\
echo '== btrfsqa: blocked tasks (sysrq w) and the kernel log =='; \
echo w > /proc/sysrq-trigger 2>/dev/null || echo '(sysrq unavailable)'; sleep 1; \
dmesg 2>/dev/null | tail -n 400; \
echo; echo '== btrfsqa: processes in uninterruptible sleep (D) =='; \
ps -eo pid,ppid,stat,wchan:32,etimes,args 2>/dev/null | awk 'NR == 1 || $3 ~ /^D/'; \
echo; echo '== btrfsqa: mounts =='; cat /proc/self/mounts";

/// Runs [`HANG_EVIDENCE_COMMAND`] on the machine; `None` when it does not
/// answer within a minute.
pub async fn hang_evidence(host: &dyn btrfsqa_remote::RemoteHost) -> Option<String> {
    let request = btrfsqa_remote::ExecRequest::new(HANG_EVIDENCE_COMMAND)
        .timeout(std::time::Duration::from_secs(60));
    let run = tokio::time::timeout(std::time::Duration::from_secs(75), host.exec(request, None));
    match run.await {
        Ok(Ok(out)) => Some(format!("{}{}", out.stdout_text(), out.stderr_text())),
        _ => None,
    }
}

/// The kernel log position of a machine, for tests that run many commands:
/// [`KernelLogCursor::start`] before the test, [`KernelLogCursor::since`]
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLogCursor {
    /// The sequence number of the last record seen.
    pub seq: u64,
}

impl KernelLogCursor {
    /// Where the kernel log of `host` ends now; `None` when it cannot be
    /// read (no permission, an empty log, the machine did not answer).
    pub async fn start(host: &dyn btrfsqa_remote::RemoteHost) -> Option<KernelLogCursor> {
        let request = btrfsqa_remote::ExecRequest::new(
            "dd if=/dev/kmsg iflag=nonblock bs=65536 2>/dev/null | grep -v '^ ' | tail -n 1",
        )
        .timeout(std::time::Duration::from_secs(30));
        let out = host.exec(request, None).await.ok()?;
        let text = out.stdout_text();
        let (_, seq, _) = parse_fields(text.trim())?;
        Some(KernelLogCursor { seq })
    }

    /// The raw records logged after the cursor (`/dev/kmsg` format, for
    /// [`parse_records`]); `None` when the log cannot be read.
    pub async fn since(&self, host: &dyn btrfsqa_remote::RemoteHost) -> Option<String> {
        let request = btrfsqa_remote::ExecRequest::new(format!(
            "dd if=/dev/kmsg iflag=nonblock bs=65536 2>/dev/null | \
             awk -F'[,;]' -v s={} 'substr($0, 1, 1) == \" \" {{ if (p) print; next }} {{ p = ($2 + 0 > s) }} p'",
            self.seq
        ))
        .timeout(std::time::Duration::from_secs(60));
        let out = host.exec(request, None).await.ok()?;
        out.success().then(|| out.stdout_text())
    }

    /// [`apply`]s what was logged after the cursor to `outcome`; nothing
    /// when the log cannot be read.
    pub async fn apply_since(&self, ctx: &SuiteContext, outcome: &mut TestOutcome) {
        if let Some(raw) = self.since(ctx.host.as_ref()).await {
            apply(ctx, outcome, &raw);
        }
    }
}

/// Splits a test's standard error into what the test printed and the kernel
/// log block the report snippet appended (the last one: a test printing the
/// marker itself cannot hide the real block).
pub fn split_stderr(stderr: &[u8]) -> (Vec<u8>, Option<String>) {
    let begin = format!("\n{BEGIN_MARKER}\n");
    let Some(at) = find_last(stderr, begin.as_bytes()) else {
        return (stderr.to_vec(), None);
    };
    // `at` is the snippet's own newline (its `echo`), not the test's.
    let own = stderr[..at].to_vec();
    let rest = &stderr[at + begin.len()..];
    let end = format!("{END_MARKER}\n");
    let body = match find_last(rest, end.as_bytes()) {
        Some(end_at) => &rest[..end_at],
        None => rest,
    };
    (own, Some(String::from_utf8_lossy(body).into_owned()))
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len())
        .rev()
        .find(|&i| &haystack[i..i + needle.len()] == needle)
}

/// One record of the kernel log.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelRecord {
    /// Seconds since boot.
    pub seconds: f64,
    /// The syslog level (0 emerg .. 7 debug).
    pub level: u8,
    /// The message (continuation lines joined with newlines).
    pub text: String,
}

/// Parses `/dev/kmsg` records (`level,seq,usecs,flags;message`, then
/// ` KEY=value` continuation lines). Lines that are not records (a `dmesg`
/// excerpt, garbage) are kept as level-4 records of their own.
pub fn parse_records(raw: &str) -> Vec<KernelRecord> {
    let mut records: Vec<KernelRecord> = Vec::new();
    for line in raw.lines() {
        if line.starts_with(' ') {
            // Dictionary lines (` SUBSYSTEM=...`) add nothing to read.
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        match parse_header(line) {
            Some((level, usecs, text)) => records.push(KernelRecord {
                seconds: usecs as f64 / 1e6,
                level,
                text: unescape(text),
            }),
            None => {
                // `dmesg` output (`[  12.345678] text`), as fstests keeps it.
                let (seconds, text) = line
                    .strip_prefix('[')
                    .and_then(|rest| rest.split_once("] "))
                    .and_then(|(at, text)| Some((at.trim().parse::<f64>().ok()?, text)))
                    .unwrap_or((0.0, line));
                records.push(KernelRecord {
                    seconds,
                    level: 4,
                    text: text.to_owned(),
                });
            }
        }
    }
    records
}

fn parse_header(line: &str) -> Option<(u8, u64, &str)> {
    let (level, _seq, usecs) = parse_fields(line)?;
    let (_, text) = line.split_once(';')?;
    Some((level, usecs, text))
}

/// Level, sequence number and microseconds of a record's header.
fn parse_fields(line: &str) -> Option<(u8, u64, u64)> {
    let (header, _) = line.split_once(';')?;
    let mut fields = header.split(',');
    let prefix: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let usecs: u64 = fields.next()?.parse().ok()?;
    Some(((prefix & 7) as u8, seq, usecs))
}

/// `/dev/kmsg` escapes non-printable bytes as `\xNN`.
fn unescape(text: &str) -> String {
    if !text.contains("\\x") {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(hex) = text.get(i + 2..i + 4)
            && let Ok(value) = u8::from_str_radix(hex, 16)
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Renders records as `dmesg` does: `[  12.345678] message`.
pub fn render(records: &[KernelRecord]) -> String {
    let mut out = String::new();
    for record in records {
        out.push_str(&format!("[{:>12.6}] {}\n", record.seconds, record.text));
    }
    out
}

/// The messages that mean the kernel went wrong, in order.
pub fn problems(records: &[KernelRecord]) -> Vec<String> {
    problems_on(records, &[])
}

/// [`problems`], leaving out btrfs messages about another machine's loop
/// devices. Machines made of loop devices share the controller's kernel
/// (and its log) with whatever else runs there; a message naming
/// `(device loopN)` for a loop device not in `devices` is not this test's.
pub fn problems_on(records: &[KernelRecord], devices: &[String]) -> Vec<String> {
    let loops: Vec<&str> = devices
        .iter()
        .filter_map(|d| d.strip_prefix("/dev/"))
        .collect();
    let shared_kernel = !loops.is_empty() && loops.iter().all(|d| d.starts_with("loop"));
    records
        .iter()
        .filter(|r| is_problem(&r.text))
        .filter(|r| !shared_kernel || !names_other_loop_device(&r.text, &loops))
        .map(|r| r.text.trim().to_owned())
        .take(MAX_PROBLEMS)
        .collect()
}

fn names_other_loop_device(text: &str, ours: &[&str]) -> bool {
    let Some(at) = text.find("(device loop") else {
        return false;
    };
    let name: String = text[at + "(device ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    !ours.contains(&name.as_str())
}

fn is_problem(text: &str) -> bool {
    const ANYWHERE: [&str; 14] = [
        "kernel BUG at",
        "WARNING:",
        "Oops:",
        "possible recursive locking detected",
        "possible circular locking dependency detected",
        "inconsistent lock state",
        "Internal error",
        "suspicious RCU usage",
        "general protection fault",
        "UBSAN:",
        "KASAN:",
        "Kernel panic",
        "BTRFS critical",
        "blocked for more than",
    ];
    if ANYWHERE.iter().any(|p| text.contains(p)) {
        return true;
    }
    // `BUG:` as a word: `BUG: kernel NULL pointer dereference`, `BUG: KASAN`,
    // `BUG: sleeping function called...`, but not `DEBUG:`.
    text.match_indices("BUG:").any(|(at, _)| {
        at == 0
            || !text.as_bytes()[at - 1].is_ascii_alphanumeric() && text.as_bytes()[at - 1] != b'_'
    })
}

/// Puts what the kernel logged during a test into its outcome: the problems
/// in [`TestOutcome::kernel_log`] and the message, the excerpt as a `dmesg`
/// artifact (kept when there are problems or the test did not pass). A test
/// that passed while the kernel reported a problem fails: the kernel is what
/// is under test. An excerpt that cannot be stored is said in the message;
/// the verdict stands.
pub fn apply(ctx: &SuiteContext, outcome: &mut TestOutcome, raw: &str) {
    let records = parse_records(raw);
    if records.is_empty() {
        return;
    }
    let mut devices = ctx.devices.scratch_devs.clone();
    devices.push(ctx.devices.test_dev.clone());
    let found = problems_on(&records, &devices);
    let mut unsaved = None;
    if !found.is_empty() || outcome.verdict != Verdict::Pass {
        match ctx.write_artifact(
            &outcome.suite,
            &outcome.name,
            "dmesg",
            ArtifactKind::Dmesg,
            render(&records).as_bytes(),
        ) {
            Ok(artifact) => outcome.artifacts.push(artifact),
            Err(err) => unsaved = Some(err),
        }
    }
    if found.is_empty() {
        return;
    }
    let said = format!(
        "the kernel logged {} problem line{}: {}",
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        found[0]
    );
    if outcome.verdict == Verdict::Pass {
        outcome.verdict = Verdict::Fail;
        outcome.message = Some(format!("passed, but {said}"));
    } else {
        outcome.message = Some(match outcome.message.take() {
            Some(message) => format!("{message}\n{said}"),
            None => said,
        });
    }
    if let Some(err) = unsaved {
        let message = outcome.message.get_or_insert_with(String::new);
        message.push_str(&format!("\n(the kernel log excerpt was not stored: {err})"));
    }
    outcome.kernel_log = found;
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDS: &str = "6,1201,5214889077,-;BTRFS info (device loop1): first mount of filesystem 5f3c\n \
SUBSYSTEM=block\n \
DEVICE=b7:1\n\
4,1202,5214901000,-;------------[ cut here ]------------\n\
4,1203,5214901010,-;WARNING: CPU: 1 PID: 4242 at fs/btrfs/extent-tree.c:3141 __btrfs_free_extent+0x6d/0x9a0 [btrfs]\n\
3,1204,5214901500,-;BTRFS error (device loop1): bdev /dev/loop1 errs: wr 0, rd 0, flush 0, corrupt 1, gen 0\n\
2,1205,5214902000,-;BTRFS critical (device loop1): corrupt leaf: root=2 block=30408704 slot=4\n\
4,1206,5214903000,-;DEBUG: not a bug\\x0a\n";

    #[test]
    fn records_are_parsed_with_level_time_and_unescaped_text() {
        let records = parse_records(RECORDS);
        assert_eq!(records.len(), 6);
        assert_eq!(records[0].level, 6);
        assert!((records[0].seconds - 5214.889077).abs() < 1e-6);
        assert_eq!(records[5].text, "DEBUG: not a bug\n");
        assert!(render(&records).contains("[ 5214.889077] BTRFS info (device loop1)"));
    }

    #[test]
    fn warnings_and_btrfs_critical_are_problems_but_repair_errors_are_not() {
        let found = problems(&parse_records(RECORDS));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("WARNING: CPU: 1 PID: 4242 at fs/btrfs/extent-tree.c"));
        assert!(found[1].starts_with("BTRFS critical"));
    }

    #[test]
    fn each_kind_of_kernel_report_is_a_problem() {
        for text in [
            "BUG: kernel NULL pointer dereference, address: 0000000000000008",
            "kernel BUG at fs/btrfs/inode.c:3261!",
            "Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
            "BUG: KASAN: slab-use-after-free in btrfs_finish_ordered_io+0x1f/0x40",
            "WARNING: possible circular locking dependency detected",
            "WARNING: possible recursive locking detected",
            "INFO: task btrfs:812 blocked for more than 122 seconds.",
            "UBSAN: array-index-out-of-bounds in fs/btrfs/raid56.c:1234:5",
            "general protection fault, probably for non-canonical address 0xdead",
            "Kernel panic - not syncing: sysrq triggered crash",
        ] {
            assert!(is_problem(text), "{text}");
        }
        for text in [
            "BTRFS warning (device loop2): checksum error at logical 30408704",
            "BTRFS error (device loop2): fixed up error at logical 30408704",
            "DEBUG: bugs are fine here",
            "MY_BUG: not a kernel report",
        ] {
            assert!(!is_problem(text), "{text}");
        }
    }

    #[test]
    fn the_kernel_block_is_taken_out_of_stderr() {
        let stderr = format!("test said this\n\n{BEGIN_MARKER}\n6,1,100,-;hello\n{END_MARKER}\n");
        let (own, log) = split_stderr(stderr.as_bytes());
        assert_eq!(own, b"test said this\n");
        assert_eq!(log.as_deref(), Some("6,1,100,-;hello\n"));
        let (own, log) = split_stderr(b"nothing else\n");
        assert_eq!(own, b"nothing else\n");
        assert!(log.is_none());
    }

    #[test]
    fn a_test_printing_the_marker_cannot_hide_the_real_block() {
        let stderr = format!(
            "\n{BEGIN_MARKER}\nfake\n{END_MARKER}\n\n{BEGIN_MARKER}\n4,2,200,-;WARNING: real\n{END_MARKER}\n"
        );
        let (own, log) = split_stderr(stderr.as_bytes());
        assert!(String::from_utf8_lossy(&own).contains("fake"));
        assert_eq!(problems(&parse_records(&log.unwrap())), ["WARNING: real"]);
    }

    #[tokio::test]
    async fn a_cursor_sees_only_what_is_logged_after_it() {
        let host = btrfsqa_remote::LocalHost::new("m");
        let Some(cursor) = KernelLogCursor::start(&host).await else {
            eprintln!("skipped: the kernel log cannot be read here");
            return;
        };
        let token = format!("btrfsqa cursor probe {}", std::process::id());
        if let Err(err) = std::fs::write("/dev/kmsg", format!("{token}\n")) {
            eprintln!("skipped: writing /dev/kmsg needs root ({err})");
            return;
        }
        let raw = cursor.since(&host).await.unwrap();
        let records = parse_records(&raw);
        assert!(records.iter().any(|r| r.text == token), "{raw}");
        let later = KernelLogCursor::start(&host).await.unwrap();
        assert!(later.seq > cursor.seq);
        let raw = later.since(&host).await.unwrap();
        assert!(!raw.contains(&token));
    }

    #[test]
    fn on_loop_devices_btrfs_messages_about_other_loop_devices_are_not_ours() {
        let records = parse_records(
            "2,1,1,-;BTRFS critical (device loop7): corrupt leaf: root=1\n\
             2,2,2,-;BTRFS critical (device loop3): corrupt leaf: root=1\n\
             4,3,3,-;WARNING: CPU: 0 PID: 1 at fs/btrfs/ctree.c:1 x\n",
        );
        let ours = vec!["/dev/loop3".to_owned(), "/dev/loop4".to_owned()];
        assert_eq!(
            problems_on(&records, &ours),
            [
                "BTRFS critical (device loop3): corrupt leaf: root=1",
                "WARNING: CPU: 0 PID: 1 at fs/btrfs/ctree.c:1 x"
            ]
        );
        // A machine of its own (a VM's disks) keeps every message.
        let vm = vec!["/dev/vdb".to_owned()];
        assert_eq!(problems_on(&records, &vm).len(), 3);
    }

    #[test]
    fn dmesg_text_as_fstests_keeps_it_is_read_too() {
        let text = "[ 1523.337561] run fstests btrfs/001 at 2026-11-20 10:00:00\n\
[ 1524.002000] WARNING: CPU: 1 PID: 9 at fs/btrfs/transaction.c:2000 cleanup_transaction+0x1\n";
        let records = parse_records(text);
        assert!((records[1].seconds - 1524.002).abs() < 1e-9);
        assert_eq!(
            problems(&records),
            ["WARNING: CPU: 1 PID: 9 at fs/btrfs/transaction.c:2000 cleanup_transaction+0x1"]
        );
    }

    #[test]
    fn garbage_and_truncated_records_do_not_panic() {
        let garbage = "\u{0}\u{1}\u{fffd};;;,,\n4,abc;x\n6,5,;\n9999999999999999999999,1,1,-;big\n,,,\n\\x\\xZZ";
        let records = parse_records(garbage);
        assert!(!records.is_empty());
        let _ = problems(&records);
        let _ = render(&records);
    }

    #[test]
    fn a_passing_test_with_a_kernel_warning_fails_and_keeps_the_excerpt() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = SuiteContext::new(
            std::sync::Arc::new(btrfsqa_remote::LocalHost::new("m")),
            crate::MachineDevices::default(),
            dir.path().to_owned(),
        );
        let mut outcome = TestOutcome::new("smoke", "001_x", Verdict::Pass);
        apply(&ctx, &mut outcome, RECORDS);
        assert_eq!(outcome.verdict, Verdict::Fail);
        assert!(
            outcome
                .message
                .as_deref()
                .unwrap()
                .starts_with("passed, but the kernel logged 2 problem lines: WARNING: CPU: 1")
        );
        assert_eq!(outcome.kernel_log.len(), 2);
        let kept = std::fs::read_to_string(dir.path().join("smoke/001_x/dmesg")).unwrap();
        assert!(kept.contains("BTRFS critical"));

        // A quiet kernel log on a passing test leaves the outcome alone.
        let mut quiet = TestOutcome::new("smoke", "002_y", Verdict::Pass);
        apply(&ctx, &mut quiet, "6,1,100,-;BTRFS info: ok\n");
        assert_eq!(quiet.verdict, Verdict::Pass);
        assert!(quiet.artifacts.is_empty() && quiet.kernel_log.is_empty());
    }
}
