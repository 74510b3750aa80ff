//! The run of one fstests section on one machine: the machine reset
//! before it, the exclusion file, one `./check`, and the outcomes made from
//! what it left (with the hang evidence and the kernel log's problems).

use std::collections::BTreeSet;
use std::time::Duration;

use btrfsqa_model::{Artifact, ArtifactKind, SuiteReport, TestOutcome, Verdict, safe_file_name};
use btrfsqa_remote::{ExecRequest, shell_quote};

use super::check::Check;
use super::common::{ID, remote_error};
use super::config::{self, MachineLayout, ResolvedSection, XfstestsConfig};
use super::parse;
use super::results::{CollectedTests, Collector, merge_results};
use crate::setup::run_step;
use crate::{SuiteContext, SuiteError};

/// How a section ended.
pub(super) enum SectionEnd {
    Done,
    Cancelled,
    /// This test hung: `./check` was stopped after it.
    Hung(String),
}

/// Runs the sections of one run on one machine.
pub(super) struct SectionRunner<'a> {
    pub(super) ctx: &'a SuiteContext,
    pub(super) config: &'a XfstestsConfig,
    pub(super) dir: &'a str,
    pub(super) layout: &'a MachineLayout,
    /// This `run`'s number within the suite (names a batch's files).
    pub(super) invocation: usize,
}

impl SectionRunner<'_> {
    /// Clears earlier results and mounts, and makes a btrfs on TEST_DEV (fstests expects one).
    pub(super) async fn reset_machine(&self) -> Result<(), SuiteError> {
        let d = &self.ctx.devices;
        let l = self.layout;
        run_step(
            self.ctx.host.as_ref(),
            ID,
            "prepare the test device",
            ExecRequest::new(format!(
                "umount {test} 2>/dev/null; umount {scratch} 2>/dev/null; \
                 rm -rf {results} && mkdir -p {test} {scratch} {results} && mkfs.btrfs -f -q {dev}",
                test = shell_quote(&l.test_dir),
                scratch = shell_quote(&l.scratch_mnt),
                results = shell_quote(&l.result_base),
                dev = shell_quote(&d.test_dev),
            ))
            .timeout(Duration::from_secs(300)),
        )
        .await
        .map(drop)
    }

    /// Leaves no fstests mount behind (best effort: the run is over either way).
    pub(super) async fn unmount(&self) {
        let command = format!(
            "umount {} 2>/dev/null; umount {} 2>/dev/null; true",
            shell_quote(&self.layout.test_dir),
            shell_quote(&self.layout.scratch_mnt)
        );
        let _ = self
            .ctx
            .host
            .exec(
                ExecRequest::new(command).timeout(Duration::from_secs(120)),
                None,
            )
            .await;
    }

    /// Its machine's `./check`.
    fn check(&self) -> Check<'_> {
        Check {
            ctx: self.ctx,
            config: self.config,
            dir: self.dir,
            layout: self.layout,
        }
    }

    /// Its machine's results files.
    fn collector(&self) -> Collector<'_> {
        Collector {
            ctx: self.ctx,
            config: self.config,
            layout: self.layout,
        }
    }

    /// Runs one section's `./check` once; a hung test stops it.
    pub(super) async fn run(
        &self,
        section: &ResolvedSection,
        expunged: &[String],
        report: &mut SuiteReport,
    ) -> Result<SectionEnd, SuiteError> {
        let ctx = self.ctx;
        let only = ctx.only.as_deref();
        if only.is_some_and(|o| !o.iter().any(|t| parse::is_test_name(t))) {
            return Ok(SectionEnd::Done);
        }
        let section_rel = format!("{ID}/{}", safe_file_name(&section.name));
        // A batch's own files (console, results) beside the other batches'
        // of the section, which other machines may be writing right now.
        let batch_rel = match only {
            Some(_) => format!(
                "{section_rel}/{}-{}",
                safe_file_name(&ctx.devices.name),
                self.invocation
            ),
            None => section_rel.clone(),
        };
        let local_dir = ctx.run_dir.join(&batch_rel);
        std::fs::create_dir_all(&local_dir).map_err(|source| SuiteError::Store {
            path: local_dir.clone(),
            source,
        })?;
        let console_path = local_dir.join("console.log");
        let mut console =
            std::fs::File::create(&console_path).map_err(|source| SuiteError::Store {
                path: console_path.clone(),
                source,
            })?;
        report.artifacts.push(Artifact::new(
            ArtifactKind::Stdout,
            format!("{batch_rel}/console.log"),
        ));

        let mut done: BTreeSet<String> = BTreeSet::new();
        {
            let mut excluded: Vec<String> = section.exclude_tests.clone();
            excluded.extend(expunged.iter().cloned());
            // A resumed run's finished tests (by name) are not run again.
            excluded.extend(ctx.skip.iter().filter(|t| parse::is_test_name(t)).cloned());
            let exclude_file = if excluded.is_empty() {
                None
            } else {
                let local = local_dir.join("exclude");
                crate::context::write_file(
                    &local,
                    format!("{}\n", excluded.join("\n")).as_bytes(),
                )?;
                let remote = format!("{}/btrfsqa-exclude-{}", self.dir, section.fstests_name);
                ctx.host
                    .upload(&local, &remote)
                    .await
                    .map_err(remote_error)?;
                Some(remote)
            };
            let invocation = self
                .check()
                .invoke(section, exclude_file.as_deref(), &mut console)
                .await;
            let tests = if invocation.lost.is_none() {
                self.collector()
                    .collect(section, &section_rel, &batch_rel, &done, report)
                    .await
            } else {
                CollectedTests::default()
            };
            let merged = merge_results(
                tests.xunit.clone(),
                tests.check_log_tests.clone(),
                invocation.live.finished.clone(),
                invocation.interrupted.clone(),
            );
            for test in merged {
                if done.contains(&test.name) {
                    continue;
                }
                let mut outcome = TestOutcome::new(ID, test.name.clone(), test.verdict);
                outcome.profile = Some(section.name.clone());
                outcome.duration_secs = test.duration_secs;
                outcome.message = test.message.clone();
                outcome.machine = Some(ctx.devices.name.clone());
                outcome.started_at = invocation.live.started.get(&test.name).map(|(at, _)| *at);
                if let Some(files) = tests.files.get(&test.name) {
                    outcome.artifacts = files.clone();
                }
                if test.verdict == Verdict::Hung
                    && let Some(evidence) = &invocation.evidence
                    && invocation
                        .interrupted
                        .as_ref()
                        .is_some_and(|t| t.name == test.name)
                {
                    let artifact = ctx.write_artifact(
                        ID,
                        &test.name,
                        "hang-evidence.txt",
                        ArtifactKind::Log,
                        evidence.as_bytes(),
                    )?;
                    outcome.artifacts.push(artifact);
                }
                // fstests fails a test whose kernel log shows a problem and
                // keeps that log as `.dmesg`: name the problems.
                if let Some(dmesg) = outcome
                    .artifacts
                    .iter()
                    .find(|a| a.kind == ArtifactKind::Dmesg)
                    && let Ok(bytes) = std::fs::read(ctx.run_dir.join(&dmesg.path))
                {
                    let text = String::from_utf8_lossy(&bytes);
                    outcome.kernel_log =
                        crate::kernel_log::problems(&crate::kernel_log::parse_records(&text));
                }
                if !invocation.live.finished.iter().any(|t| t.name == test.name) {
                    // Not seen to end on the console (stopped, or a line the
                    // console parser did not read): reported now.
                    ctx.test_finished(outcome.clone());
                }
                done.insert(test.name.clone());
                report.tests.push(outcome);
            }
            if let Some(err) = invocation.lost {
                return Err(remote_error(err));
            }
            if let Some(message) = invocation.refused {
                return Err(SuiteError::Setup {
                    suite: ID.to_owned(),
                    step: format!("`./check` for section `{}`", section.name),
                    message,
                });
            }
            if invocation.idle_stop {
                self.unmount().await;
                return Err(SuiteError::Setup {
                    suite: ID.to_owned(),
                    step: format!("section `{}`", section.name),
                    message: format!(
                        "`./check` printed nothing for {} s outside a test: stopped",
                        self.config
                            .test_timeout_secs
                            .unwrap_or(config::DEFAULT_TEST_TIMEOUT_SECS)
                    ),
                });
            }
            match (invocation.stopped, invocation.interrupted) {
                (Some(Verdict::Interrupted), _) => Ok(SectionEnd::Cancelled),
                (Some(Verdict::Hung), Some(test)) => {
                    // What the stopped test left mounted would fail the next one.
                    self.unmount().await;
                    Ok(SectionEnd::Hung(test.name))
                }
                _ => Ok(SectionEnd::Done),
            }
        }
    }
}
