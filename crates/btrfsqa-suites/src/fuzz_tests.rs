//! Property tests: every parser of what a machine prints (fstests'
//! result.xml, check.log, check.time and console; btrfs-progs' results files
//! and consoles; the kernel log; raid56's tool output) takes any input
//! without panicking. Each parser gets [`CASES`] inputs: real captured
//! output (`fixtures/`) mutated at random (bytes flipped, cut short,
//! slices repeated or dropped, hostile strings and random bytes inserted),
//! plus purely random bytes. Deterministic (seeded), so a failure repeats.

use std::path::Path;

/// Inputs per parser.
const CASES: usize = 3000;

/// Strings that have broken parsers elsewhere: markup, paths out of a
/// directory, terminal escapes, huge numbers, lone delimiters.
const HOSTILE: &[&str] = &[
    "<testcase name=\"../../x\" time=\"1e999\">",
    "</testsuite>",
    "<![CDATA[",
    "&#0;&bogus;",
    "btrfs/../../etc/passwd",
    "\u{1b}[2J\u{1b}]0;title\u{7}",
    "Ran: ",
    "Failures: ",
    "Not run: ",
    "=== START TEST ",
    "    [NOTRUN] ",
    "failed: ",
    "test failed for case ",
    "99999999999999999999999999",
    "-1",
    "NaN",
    "\u{0}",
    "\r\n",
    "6,1234,5678,-;BUG: kernel NULL pointer",
    "Kernel panic - not syncing",
    "[ 1.0] ",
    ": ",
    "    ",
];

/// xorshift64*: enough randomness to mutate inputs, and repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One mutation of `input`.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(at),
            2 => {
                let end = (at + rng.below(64)).min(out.len());
                let slice = out[at..end].to_vec();
                out.splice(
                    at..at,
                    slice
                        .iter()
                        .cycle()
                        .take(slice.len() * (1 + rng.below(3)))
                        .copied(),
                );
            }
            3 => {
                let end = (at + rng.below(256)).min(out.len());
                out.drain(at..end);
            }
            4 => {
                let hostile = HOSTILE[rng.below(HOSTILE.len())].as_bytes();
                out.splice(at..at, hostile.iter().copied());
            }
            _ => {
                let noise: Vec<u8> = (0..rng.below(32)).map(|_| rng.next() as u8).collect();
                out.splice(at..at, noise);
            }
        }
    }
    out
}

/// [`CASES`] inputs made from `seeds`: mutations of them, then random bytes.
fn inputs(name: &str, seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    let mut all = Vec::with_capacity(CASES);
    all.extend(seeds.iter().cloned());
    all.push(Vec::new());
    while all.len() < CASES {
        if rng.below(10) == 0 || seeds.is_empty() {
            let len = rng.below(512);
            all.push((0..len).map(|_| rng.next() as u8).collect());
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            all.push(mutate(&mut rng, seed));
        }
    }
    all
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn fixtures_in(dir: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn fstests_result_xml_never_panics() {
    use crate::xfstests::parse::{is_test_name, parse_xunit};
    let seeds = vec![fixture("xfstests/btrfs-loop-30/result.xml")];
    for input in inputs("result.xml", &seeds) {
        if let Ok(report) = parse_xunit(&input) {
            for test in &report.tests {
                // Names are taken as written; the suite checks them before
                // they become paths.
                let _ = is_test_name(&test.name);
                assert!(test.duration_secs.is_none_or(|d| d.is_finite() && d >= 0.0));
            }
        }
    }
}

#[test]
fn fstests_check_log_and_check_time_never_panic() {
    use crate::xfstests::parse::{parse_check_log, parse_check_time};
    let seeds = vec![
        fixture("xfstests/btrfs-loop-30/check.log"),
        fixture("xfstests/btrfs-loop-30/check.time"),
        fixture("xfstests/btrfs-auto-340/check.time"),
    ];
    for input in inputs("check.log", &seeds) {
        let times = parse_check_time(&text(&input));
        assert!(times.values().all(|d| d.is_finite() && *d >= 0.0));
        if let Some(log) = parse_check_log(&text(&input)) {
            let _ = log.tests(&times);
        }
    }
}

#[test]
fn the_fstests_console_never_panics_in_any_chunking() {
    use crate::xfstests::parse::ConsoleParser;
    let seeds = vec![
        fixture("xfstests/btrfs-loop-30/console.txt"),
        fixture("xfstests/consoles/hung-btrfs-002.txt"),
    ];
    let mut rng = Rng(7);
    for input in inputs("console", &seeds) {
        let mut parser = ConsoleParser::new();
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(1 + rng.below(rest.len().min(300)));
            let _ = parser.push(chunk);
            let _ = parser.running();
            rest = tail;
        }
        let _ = parser.finish();
    }
}

#[test]
fn btrfs_progs_results_and_consoles_never_panic() {
    use crate::btrfs_progs::parse::{case_verdict, parse_console, parse_results, split_results};
    let seeds = fixtures_in("btrfs-progs");
    for input in inputs("btrfs-progs", &seeds) {
        let text = text(&input);
        let results = parse_results(&text);
        let _ = split_results(&text);
        let consoles = parse_console(&text);
        let _ = case_verdict(
            input.len() % 2 == 0,
            input.len() % 7 == 0,
            consoles.first(),
            results.first(),
            &text,
        );
    }
}

#[test]
fn the_kernel_log_never_panics() {
    use crate::kernel_log::{parse_records, problems, problems_on, render, split_stderr};
    let seeds = vec![
        b"6,812,1234567,-;BTRFS info (device loop3): first mount\n4,813,1234600,-;WARNING: CPU: 0 PID: 1 at fs/btrfs/x.c:1\n SUBSYSTEM=block\n".to_vec(),
        b"0,1,2,-;Kernel panic - not syncing: sysrq triggered crash\n2,3,4,c;BTRFS critical (device vdb): corrupt leaf\n".to_vec(),
    ];
    let devices = vec!["/dev/loop3".to_owned()];
    for input in inputs("kmsg", &seeds) {
        let records = parse_records(&text(&input));
        let _ = problems(&records);
        let _ = problems_on(&records, &devices);
        let _ = render(&records);
        let _ = split_stderr(&input);
    }
}

#[test]
fn raid56_tool_output_never_panics() {
    use crate::raid56::parse::{
        parse_filefrag, parse_map_logical, parse_replace_status, parse_scrub, parse_sha256sum,
        parse_tree_blocks,
    };
    let seeds = fixtures_in("raid56");
    for input in inputs("raid56", &seeds) {
        let text = text(&input);
        let _ = parse_scrub(&text);
        let _ = parse_map_logical(&text);
        let _ = parse_filefrag(&text);
        let _ = parse_sha256sum(&text);
        let _ = parse_tree_blocks(&text);
        let _ = parse_replace_status(&text);
    }
}
