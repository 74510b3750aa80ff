//! Results collection: after a `./check`, the section's results files
//! (result.xml, check.log, check.time) and each test's `.full`, `.out.bad`
//! and `.dmesg` come from the machine into the results store, and the
//! sources are merged into one result per test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use btrfsqa_model::{Artifact, ArtifactKind, Event, SuiteReport, safe_file_name};
use btrfsqa_remote::{ExecRequest, RemoteError, shell_quote};

use super::config::{MachineLayout, ResolvedSection, XfstestsConfig};
use super::parse::{self, ParsedTest};
use crate::SuiteContext;

/// The per-test files collected as artifacts.
const TEST_FILES: &[(&str, ArtifactKind)] = &[
    (".full", ArtifactKind::Full),
    (".out.bad", ArtifactKind::OutBad),
    (".dmesg", ArtifactKind::Dmesg),
];

/// Brings one machine's results files into the store.
pub(super) struct Collector<'a> {
    pub(super) ctx: &'a SuiteContext,
    pub(super) config: &'a XfstestsConfig,
    pub(super) layout: &'a MachineLayout,
}

impl Collector<'_> {
    /// Brings the section's results into the store and parses them.
    pub(super) async fn collect(
        &self,
        section: &ResolvedSection,
        section_rel: &str,
        batch_rel: &str,
        done: &BTreeSet<String>,
        report: &mut SuiteReport,
    ) -> CollectedTests {
        let ctx = self.ctx;
        let remote_dir = format!("{}/{}", self.layout.result_base, section.fstests_name);
        let listing = self.list_files(&remote_dir).await;
        let mut collected = CollectedTests::default();
        for (file, kind) in [
            ("result.xml", ArtifactKind::Other),
            ("check.log", ArtifactKind::Log),
            ("check.time", ArtifactKind::Other),
        ] {
            if !listing.contains_key(file) {
                continue;
            }
            let rel = format!("{batch_rel}/{file}");
            let local = ctx.run_dir.join(&rel);
            if ctx
                .host
                .download(&format!("{remote_dir}/{file}"), &local)
                .await
                .is_err()
            {
                continue;
            }
            if !report.artifacts.iter().any(|a| a.path == rel) {
                report.artifacts.push(Artifact::new(kind, rel));
            }
            let Ok(bytes) = std::fs::read(&local) else {
                continue;
            };
            match file {
                "result.xml" => match parse::parse_xunit(&bytes) {
                    Ok(x) => collected.xunit = Some(x.tests),
                    Err(err) => ctx.emit(Event::Warning {
                        machine: Some(ctx.devices.name.clone()),
                        message: format!(
                            "xfstests section `{}`: result.xml unreadable ({err}); using check.log",
                            section.name
                        ),
                    }),
                },
                "check.log" => {
                    collected.check_log = parse::parse_check_log(&String::from_utf8_lossy(&bytes));
                }
                _ => collected.times = parse::parse_check_time(&String::from_utf8_lossy(&bytes)),
            }
        }
        let mut names: BTreeSet<String> = BTreeSet::new();
        if let Some(tests) = &collected.xunit {
            names.extend(tests.iter().map(|t| t.name.clone()));
        }
        if let Some(log) = &collected.check_log {
            names.extend(log.ran.iter().cloned());
        }
        names.extend(listing.keys().filter_map(|f| {
            TEST_FILES
                .iter()
                .find_map(|(suffix, _)| f.strip_suffix(suffix))
                .map(str::to_owned)
        }));
        for name in names
            .into_iter()
            .filter(|n| parse::is_test_name(n) && !done.contains(n))
        {
            let mut artifacts = Vec::new();
            // A test run again in this run (a rerun of a new failure) keeps
            // its earlier attempts' files.
            let first = format!("{section_rel}/{}", safe_file_name(&name));
            let test_rel = (1..)
                .map(|n| match n {
                    1 => first.clone(),
                    n => format!("{first}/attempt-{n}"),
                })
                .find(|rel| !ctx.run_dir.join(rel).exists())
                .unwrap_or(first);
            for (suffix, kind) in TEST_FILES {
                let file = format!("{name}{suffix}");
                let Some(&size) = listing.get(&file) else {
                    continue;
                };
                let rel = format!(
                    "{test_rel}/{}",
                    safe_file_name(&format!(
                        "{}{suffix}",
                        name.rsplit('/').next().unwrap_or(&name)
                    ))
                );
                match self
                    .fetch(&format!("{remote_dir}/{file}"), &rel, size)
                    .await
                {
                    Ok(artifact) => artifacts.push(artifact.with_kind(*kind)),
                    Err(err) => ctx.emit(Event::Warning {
                        machine: Some(ctx.devices.name.clone()),
                        message: format!("xfstests: cannot collect `{file}`: {err}"),
                    }),
                }
            }
            collected.files.insert(name, artifacts);
        }
        if let Some(log) = collected.check_log.take() {
            collected.check_log_tests = Some(log.tests(&collected.times));
        }
        collected
    }

    /// `relative path -> size` of every file under `dir` on the machine.
    async fn list_files(&self, dir: &str) -> BTreeMap<String, u64> {
        let command = format!(
            "cd {} 2>/dev/null && find . -type f -printf '%s %P\\n'",
            shell_quote(dir)
        );
        let Ok(out) = self
            .ctx
            .host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(120)),
                None,
            )
            .await
        else {
            return BTreeMap::new();
        };
        out.stdout_text()
            .lines()
            .filter_map(|line| {
                let (size, path) = line.split_once(' ')?;
                Some((path.to_owned(), size.parse().ok()?))
            })
            .collect()
    }

    /// Downloads `remote` into the store at `rel`, cut to the size limit.
    async fn fetch(&self, remote: &str, rel: &str, size: u64) -> Result<Artifact, RemoteError> {
        let ctx = self.ctx;
        let local = ctx.run_dir.join(rel);
        let max = self.config.max_artifact_bytes;
        if size <= max {
            ctx.host.download(remote, &local).await?;
            return Ok(Artifact::new(ArtifactKind::Other, rel));
        }
        // Keep the head (setup, mkfs output) and the tail (where it failed).
        let cut = format!("{remote}.btrfsqa-cut");
        let (head, tail) = (max / 2, max - max / 2);
        let command = format!(
            "{{ head -c {head} {r}; printf '\\n[... btrfsqa cut %s bytes ...]\\n' {left}; tail -c {tail} {r}; }} > {c}",
            r = shell_quote(remote),
            c = shell_quote(&cut),
            left = size - max,
        );
        ctx.host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(300)),
                None,
            )
            .await?;
        let result = ctx.host.download(&cut, &local).await;
        let _ = ctx
            .host
            .exec(
                ExecRequest::new(format!("rm -f {}", shell_quote(&cut)))
                    .timeout(Duration::from_secs(60)),
                None,
            )
            .await;
        result?;
        let mut artifact = Artifact::new(ArtifactKind::Other, rel);
        artifact.truncated_bytes = Some(size - max);
        Ok(artifact)
    }
}

trait WithKind {
    fn with_kind(self, kind: ArtifactKind) -> Self;
}

impl WithKind for Artifact {
    fn with_kind(mut self, kind: ArtifactKind) -> Self {
        self.kind = kind;
        self
    }
}

/// What a section's results files said.
#[derive(Debug, Default)]
pub(super) struct CollectedTests {
    pub(super) xunit: Option<Vec<ParsedTest>>,
    check_log: Option<parse::CheckLog>,
    pub(super) check_log_tests: Option<Vec<ParsedTest>>,
    times: BTreeMap<String, f64>,
    pub(super) files: BTreeMap<String, Vec<Artifact>>,
}

/// One result per test: result.xml first, then check.log, then the console,
/// then the test that was running when `./check` stopped. Each source only
/// adds tests the earlier ones lack (a truncated result.xml or a crash leaves
/// gaps), and a later source fills in a duration an earlier one lacks. The
/// stopped test is the exception: what btrfsqa saw (hung, lost machine)
/// beats what check.log and the console guessed, as fstests never finished
/// that test.
pub(crate) fn merge_results(
    xunit: Option<Vec<ParsedTest>>,
    check_log: Option<Vec<ParsedTest>>,
    console: Vec<ParsedTest>,
    interrupted: Option<ParsedTest>,
) -> Vec<ParsedTest> {
    let mut merged: Vec<ParsedTest> = xunit.unwrap_or_default();
    let from_xunit = merged.len();
    for test in check_log.unwrap_or_default().into_iter().chain(console) {
        match merged.iter_mut().find(|t| t.name == test.name) {
            Some(existing) => {
                if existing.duration_secs.is_none() {
                    existing.duration_secs = test.duration_secs;
                }
            }
            None => merged.push(test),
        }
    }
    if let Some(stopped) = interrupted {
        match merged.iter().position(|t| t.name == stopped.name) {
            Some(i) if i >= from_xunit => merged[i] = stopped,
            Some(_) => {}
            None => merged.push(stopped),
        }
    }
    merged
}
