//! The kernel stage: build a kernel from a git ref, boot the machine into
//! it, and check that it runs, between preparing the machine and the suites.
//!
//! ```text
//! fetch REF of URL (shallow) ─ pin the commit
//! .config = config-file | defconfig | the machine's running config, + fragments
//! key = sha256(commit, arch, .config) ── RESULTS/.kernels/<key>/ complete? ── reuse
//!                                     └─ build (ccache, nice) on the controller or the machine, store
//! modules → machine; boot: provider relaunch (qemu) | kexec | bootloader + reboot
//! check: uname -r is the built release, btrfs is available
//! ```
//!
//! The stage's outcome is a `kernel` entry in the report's suites (no
//! tests; its source with the commit, the build log, the console) and the
//! kernel's [`SourceInfo`] in the provenance. A failure stops the run with
//! an error naming the step (`kernel build failed: ...`); teardown follows.

mod boot;
pub mod config;
mod console;
pub mod fragments;
mod script;
mod step;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use btrfsqa_cloud::Machine;
use btrfsqa_model::{
    Artifact, ArtifactKind, Event, KernelInfo, RunReport, SourceInfo, Stage, SuiteReport,
    redact_url,
};
use btrfsqa_remote::{ExecRequest, LocalHost, RemoteHost};

pub use config::{BootMethod, BuildOn, GitSource, KernelBase, KernelConfig};
use script::{BuildPaths, ConfigStart};

use boot::install_and_boot;
use console::console_artifact;
use step::{STEP_TIMEOUT, exec, exec_request, last_lines, write_file};
pub(crate) use step::{StageEnv, StageError};
pub use store::StoredKernel;
pub(crate) use store::build_key;
use store::{read_stored, url_digest};

/// The suite id under which the stage reports.
pub const SUITE_ID: &str = "kernel";
/// Where built kernels are kept in the results store.
pub const STORE_DIR: &str = ".kernels";

const FETCH_TIMEOUT: Duration = Duration::from_secs(3600);
/// Runs the stage when `[kernel]` names a source; returns the host to use
/// from now on (a new connection when the machine rebooted), or the run's
/// error. Records its outcome in `report` either way.
pub(crate) async fn run_stage(
    env: &StageEnv<'_>,
    machine: &Machine,
    host: Arc<dyn RemoteHost>,
    report: &mut RunReport,
) -> Result<Arc<dyn RemoteHost>, String> {
    let config = &env.settings.config.kernel;
    let Some(source) = config.git_source() else {
        return Ok(host);
    };
    (env.sink)(Event::StageStarted {
        machine: Some(machine.name.clone()),
        stage: Stage::Kernel,
    });
    let started = Instant::now();
    let mut suite = SuiteReport::new(SUITE_ID);
    suite.source = Some(SourceInfo::new(
        "kernel",
        &source.url,
        Some(source.git_ref.clone()),
        None,
    ));
    let outcome = tokio::select! {
        outcome = stage(env, machine, host, &source, &mut suite) => outcome,
        () = env.stop.cancelled() => Err(StageError("kernel stage stopped before the end".to_owned())),
    };
    suite.duration_secs = Some(started.elapsed().as_secs_f64());
    if let Some(console) = console_artifact(machine, env.run_dir) {
        suite.artifacts.push(console);
    }
    let result = match outcome {
        Ok((host, done)) => {
            let info = KernelInfo {
                release: Some(done.release.clone()),
                version: done.version.clone(),
                source: suite.source.clone(),
            };
            if let Some(m) = report
                .provenance
                .machines
                .iter_mut()
                .find(|m| m.name == machine.name)
            {
                m.kernel = info.clone();
            }
            report.provenance.kernel = info;
            (env.sink)(Event::StageFinished {
                machine: Some(machine.name.clone()),
                stage: Stage::Kernel,
                ok: true,
                message: Some(done.summary),
            });
            Ok(host)
        }
        Err(StageError(message)) => {
            suite.error = Some(message.clone());
            report.provenance.kernel.source = suite.source.clone();
            (env.sink)(Event::StageFinished {
                machine: Some(machine.name.clone()),
                stage: Stage::Kernel,
                ok: false,
                message: Some(message.clone()),
            });
            Err(message)
        }
    };
    report.suites.push(suite);
    result
}

/// How often a machine waiting for a build tree looks again.
const TREE_POLL: Duration = Duration::from_millis(500);

/// Takes the lock of the build tree `paths` on the controller, waiting
/// (and saying so once) while another machine or process builds in it.
async fn wait_for_tree(
    env: &StageEnv<'_>,
    machine: &Machine,
    paths: &BuildPaths,
) -> Result<crate::lock::Held, StageError> {
    let path = PathBuf::from(format!("{}.lock", paths.root));
    let mut said = false;
    loop {
        match crate::lock::take(&path, true, &format!("builds a kernel in {}", paths.root)) {
            Ok(held) => return Ok(held),
            Err(crate::lock::Refused::Held(owner)) if !said => {
                (env.sink)(Event::Warning {
                    machine: Some(machine.name.clone()),
                    message: format!("waiting for the kernel build tree {} ({owner})", paths.root),
                });
                said = true;
            }
            Err(crate::lock::Refused::Held(_)) => {}
            Err(crate::lock::Refused::Io(action, e)) => {
                return Err(StageError::new(
                    "kernel source failed",
                    format!("cannot {action} `{}`: {e}", path.display()),
                ));
            }
        }
        tokio::time::sleep(TREE_POLL).await;
    }
}

/// Puts the built kernel's source (from the `kernel` suite entry) back on
/// the provenance after the runner re-read `uname` on the machine.
pub(crate) fn record_source(report: &mut RunReport) {
    let Some(source) = report
        .suites
        .iter()
        .find(|s| s.id == SUITE_ID)
        .and_then(|s| s.source.clone())
    else {
        return;
    };
    report.provenance.kernel.source = Some(source.clone());
    for machine in &mut report.provenance.machines {
        machine.kernel.source = Some(source.clone());
    }
}

/// What a successful stage found.
struct Done {
    release: String,
    version: Option<String>,
    summary: String,
}

async fn stage(
    env: &StageEnv<'_>,
    machine: &Machine,
    host: Arc<dyn RemoteHost>,
    source: &GitSource,
    suite: &mut SuiteReport,
) -> Result<(Arc<dyn RemoteHost>, Done), StageError> {
    let config = &env.settings.config.kernel;
    let results = env.settings.results_dir();
    let (builder, cache): (Arc<dyn RemoteHost>, String) = match config.build_on {
        BuildOn::Controller => (
            env.builder
                .clone()
                .unwrap_or_else(|| Arc::new(LocalHost::new("controller"))),
            config
                .work_dir
                .clone()
                .unwrap_or_else(|| results.join(".cache").join("kernel"))
                .display()
                .to_string(),
        ),
        BuildOn::Machine => (
            env.builder.clone().unwrap_or_else(|| host.clone()),
            format!("{}/kernel", machine.work_dir.trim_end_matches('/')),
        ),
    };
    let paths = BuildPaths::new(&cache, &url_digest(&source.url));
    let local = tempfile::tempdir().map_err(|e| {
        StageError::new(
            "kernel stage failed",
            format!("no temporary directory: {e}"),
        )
    })?;
    let kernel_dir = env.run_dir.join("kernel");
    std::fs::create_dir_all(&kernel_dir).map_err(|e| {
        StageError::new(
            "kernel stage failed",
            format!("cannot create `{}`: {e}", kernel_dir.display()),
        )
    })?;

    // One build in a tree at a time: the run's other machines, and other
    // btrfsqa processes, wait for it and then find its build stored. (A
    // tree on a test machine is that machine's alone.)
    let tree_lock = match config.build_on {
        BuildOn::Controller => Some(wait_for_tree(env, machine, &paths).await?),
        BuildOn::Machine => None,
    };

    // 1. The source, pinned to a commit. The URL's credentials go to git
    // in its environment, not in the script (a command line).
    let (bare_url, auth) = btrfsqa_suites::git_url_and_auth(&source.url);
    let mut fetch =
        ExecRequest::new(script::fetch(&paths, &bare_url, &source.git_ref)).timeout(FETCH_TIMEOUT);
    for (key, value) in auth {
        fetch = fetch.env(key, value);
    }
    let out = exec_request(builder.as_ref(), fetch).await.map_err(|e| {
        StageError::new(
            "kernel source failed",
            // What git printed may quote the URL: neither keeps its credentials.
            redact_url(&format!(
                "cannot fetch `{}` of `{}`: {e}",
                source.git_ref, source.url
            )),
        )
    })?;
    let commit = out.lines().last().unwrap_or("").trim().to_owned();
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StageError::new(
            "kernel source failed",
            format!("`git rev-parse` printed `{commit}`, not a commit"),
        ));
    }
    if let Some(source) = &mut suite.source {
        source.commit = Some(commit.clone());
    }

    // 2. The configuration.
    let start = config_start(
        env,
        config,
        machine,
        &host,
        builder.as_ref(),
        &paths,
        local.path(),
    )
    .await?;
    let fragment_names = config
        .fragments
        .clone()
        .unwrap_or_else(|| fragments::defaults(&machine.provider));
    let mut fragment_files = Vec::new();
    exec(
        builder.as_ref(),
        format!(
            "mkdir -p {}/fragments",
            btrfsqa_remote::shell_quote(&paths.root)
        ),
        STEP_TIMEOUT,
    )
    .await
    .map_err(|e| StageError::new("kernel config failed", e))?;
    for (i, name) in fragment_names.iter().enumerate() {
        let text = match fragments::shipped(name) {
            Some(text) => text.to_owned(),
            None => std::fs::read_to_string(name).map_err(|e| {
                StageError::new(
                    "kernel config failed",
                    format!("cannot read fragment `{name}`: {e}"),
                )
            })?,
        };
        let file_name = format!("{i:02}-{}.config", sanitize(name));
        let local_file = local.path().join(&file_name);
        write_file(&local_file, &text)?;
        let remote = format!("{}/fragments/{file_name}", paths.root);
        builder
            .upload(&local_file, &remote)
            .await
            .map_err(|e| StageError::new("kernel config failed", crate::error::error_chain(&e)))?;
        fragment_files.push(remote);
    }
    let out = exec(
        builder.as_ref(),
        script::configure(&paths, &start, &fragment_files),
        STEP_TIMEOUT,
    )
    .await
    .map_err(|e| StageError::new("kernel config failed", e))?;
    let arch = out.lines().last().unwrap_or("").trim().to_owned();
    let final_config = local.path().join("final.config");
    builder
        .download(&format!("{}/.config", paths.build), &final_config)
        .await
        .map_err(|e| StageError::new("kernel config failed", crate::error::error_chain(&e)))?;
    let config_text = std::fs::read_to_string(&final_config).map_err(|e| {
        StageError::new(
            "kernel config failed",
            format!("cannot read the final .config: {e}"),
        )
    })?;
    let _ = std::fs::write(kernel_dir.join("config"), &config_text);
    suite
        .artifacts
        .push(Artifact::new(ArtifactKind::Other, "kernel/config"));

    // 3. Reuse, or build and store.
    let key = build_key(&commit, &arch, &config_text);
    let store = results.join(STORE_DIR).join(&key);
    let build_log = kernel_dir.join("build.log");
    let (stored, reused) = match read_stored(&store) {
        Some(stored) => {
            let _ = std::fs::copy(store.join("build.log"), &build_log);
            (stored, true)
        }
        None => {
            let built = build(
                env,
                builder.as_ref(),
                &paths,
                &build_log,
                &store,
                source,
                &commit,
                &arch,
                &key,
            )
            .await;
            if build_log.exists() {
                suite
                    .artifacts
                    .push(Artifact::new(ArtifactKind::BuildLog, "kernel/build.log"));
            }
            (built?, false)
        }
    };
    if reused && build_log.exists() {
        suite
            .artifacts
            .push(Artifact::new(ArtifactKind::BuildLog, "kernel/build.log"));
    }

    drop(tree_lock);

    // 4. Install and boot.
    let boot_started = Instant::now();
    let host = install_and_boot(env, config, machine, host, &store, &stored).await?;
    let boot_secs = boot_started.elapsed().as_secs();

    // 5. Check.
    let out = exec(host.as_ref(), script::VERIFY.to_owned(), STEP_TIMEOUT)
        .await
        .map_err(|e| StageError::new("kernel boot check failed", e))?;
    let value = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let running = value("release=");
    if running != stored.release {
        return Err(StageError::new(
            "kernel boot check failed",
            format!(
                "the machine runs `{running}`, not the built `{}`",
                stored.release
            ),
        ));
    }
    if value("btrfs=") != "yes" {
        return Err(StageError::new(
            "kernel boot check failed",
            format!("btrfs is not available in `{}`", stored.release),
        ));
    }
    let version = exec(host.as_ref(), "uname -v".to_owned(), STEP_TIMEOUT)
        .await
        .ok()
        .map(|v| v.trim().to_owned());
    let how = if reused {
        "reused".to_owned()
    } else {
        format!("built in {} s", stored.build_secs)
    };
    Ok((
        host,
        Done {
            summary: format!(
                "{} ({}) {how}, booted in {boot_secs} s",
                stored.release,
                &commit[..12]
            ),
            release: stored.release,
            version,
        },
    ))
}

/// Where the configuration starts from, uploaded to the builder if a file.
async fn config_start(
    env: &StageEnv<'_>,
    config: &KernelConfig,
    machine: &Machine,
    host: &Arc<dyn RemoteHost>,
    builder: &dyn RemoteHost,
    paths: &BuildPaths,
    local: &Path,
) -> Result<ConfigStart, StageError> {
    let _ = env;
    let remote_start = format!("{}/start.config", paths.root);
    let file = if let Some(file) = &config.config_file {
        file.clone()
    } else {
        let base = config
            .base
            .unwrap_or(if fragments::virtio_guest(&machine.provider) {
                KernelBase::Defconfig
            } else {
                KernelBase::Running
            });
        if base == KernelBase::Defconfig {
            return Ok(ConfigStart::Defconfig);
        }
        let text = exec(
            host.as_ref(),
            script::RUNNING_CONFIG.to_owned(),
            STEP_TIMEOUT,
        )
        .await
        .map_err(|e| {
            StageError::new(
                "kernel config failed",
                format!("cannot read the machine's running config: {e}"),
            )
        })?;
        let file = local.join("running.config");
        write_file(&file, &text)?;
        file
    };
    exec(
        builder,
        format!("mkdir -p {}", btrfsqa_remote::shell_quote(&paths.root)),
        STEP_TIMEOUT,
    )
    .await
    .map_err(|e| StageError::new("kernel config failed", e))?;
    builder
        .upload(&file, &remote_start)
        .await
        .map_err(|e| StageError::new("kernel config failed", crate::error::error_chain(&e)))?;
    Ok(ConfigStart::File(remote_start))
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all of it build state"
)]
async fn build(
    env: &StageEnv<'_>,
    builder: &dyn RemoteHost,
    paths: &BuildPaths,
    build_log: &Path,
    store: &Path,
    source: &GitSource,
    commit: &str,
    arch: &str,
    key: &str,
) -> Result<StoredKernel, StageError> {
    let config = &env.settings.config.kernel;
    let started = Instant::now();
    let timeout = Duration::from_secs(config.build_timeout_minutes.unwrap_or(240) * 60);
    let request = ExecRequest::new(script::build(
        paths,
        config.jobs,
        config.ccache.unwrap_or(true),
    ))
    .timeout(timeout);
    let result = builder.exec(request, None).await;
    // The log comes back whatever happened: it says why.
    let _ = builder
        .download(&format!("{}/build.log", paths.build), build_log)
        .await;
    let out = match result {
        Ok(out) if out.success() => out,
        Ok(out) if out.timed_out => {
            return Err(StageError::new(
                "kernel build failed",
                format!(
                    "no result within {} min (log: kernel/build.log)",
                    timeout.as_secs() / 60
                ),
            ));
        }
        Ok(out) => {
            return Err(StageError::new(
                "kernel build failed",
                format!(
                    "{} (log: kernel/build.log)",
                    last_lines(&out.stderr_text(), 7)
                ),
            ));
        }
        Err(e) => {
            return Err(StageError::new(
                "kernel build failed",
                crate::error::error_chain(&e),
            ));
        }
    };
    let parsed = script::parse_build_output(&out.stdout_text()).ok_or_else(|| {
        StageError::new(
            "kernel build failed",
            "the build printed no release or image".to_owned(),
        )
    })?;
    let stored = StoredKernel {
        key: key.to_owned(),
        url: redact_url(&source.url),
        git_ref: source.git_ref.clone(),
        commit: commit.to_owned(),
        arch: arch.to_owned(),
        release: parsed.release.clone(),
        built_at: chrono::Utc::now(),
        build_secs: started.elapsed().as_secs(),
        ccache: parsed.ccache,
    };
    // Into a temporary directory first: a store entry is complete or absent.
    let temp = store.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir_all(&temp).map_err(|e| {
        StageError::new(
            "kernel build failed",
            format!("cannot create `{}`: {e}", temp.display()),
        )
    })?;
    for (remote, name) in [
        (parsed.image.clone(), "bzImage"),
        (format!("{}/modules.tar.gz", paths.build), "modules.tar.gz"),
        (format!("{}/.config", paths.build), "config"),
    ] {
        builder
            .download(&remote, &temp.join(name))
            .await
            .map_err(|e| {
                StageError::new(
                    "kernel build failed",
                    format!("cannot keep `{name}`: {}", crate::error::error_chain(&e)),
                )
            })?;
    }
    let _ = std::fs::copy(build_log, temp.join("build.log"));
    let json = serde_json::to_vec_pretty(&stored).unwrap_or_default();
    write_file(&temp.join("meta.json"), &String::from_utf8_lossy(&json))?;
    let _ = std::fs::remove_dir_all(store);
    std::fs::rename(&temp, store).map_err(|e| {
        StageError::new(
            "kernel build failed",
            format!("cannot store `{}`: {e}", store.display()),
        )
    })?;
    Ok(stored)
}

fn sanitize(name: &str) -> String {
    let base = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    base.trim_end_matches(".config")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
