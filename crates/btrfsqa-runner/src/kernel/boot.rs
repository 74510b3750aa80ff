//! Installing a built kernel on the machine, booting it (the provider's
//! relaunch, kexec or the bootloader) and reconnecting to the new boot.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use btrfsqa_cloud::{BootKernel, Machine, ProvisionError};
use btrfsqa_remote::RemoteHost;

use super::config::{BootMethod, KernelConfig};
use super::console::{console_hint, console_panic, console_path};
use super::script;
use super::step::{STEP_TIMEOUT, StageEnv, StageError, exec};
use super::store::StoredKernel;

pub(super) async fn install_and_boot(
    env: &StageEnv<'_>,
    config: &KernelConfig,
    machine: &Machine,
    host: Arc<dyn RemoteHost>,
    store: &Path,
    stored: &StoredKernel,
) -> Result<Arc<dyn RemoteHost>, StageError> {
    let release = &stored.release;
    let fail = |what: &str, detail: String| StageError::new(what, detail);
    let install = "kernel install failed";
    let boot_timeout = Duration::from_secs(config.boot_timeout_secs.unwrap_or(600));
    let tarball = format!("/tmp/btrfsqa-modules-{release}.tar.gz");
    host.upload(&store.join("modules.tar.gz"), &tarball)
        .await
        .map_err(|e| fail(install, crate::error::error_chain(&e)))?;
    exec(
        host.as_ref(),
        script::install_modules(&tarball, release),
        STEP_TIMEOUT,
    )
    .await
    .map_err(|e| fail(install, e))?;

    let mut method = config.boot;
    if matches!(method, BootMethod::Auto | BootMethod::Provider) {
        let kernel = BootKernel {
            image: store.join("bzImage"),
            initrd: None,
            extra_args: config.extra_args.clone(),
            release: release.clone(),
        };
        // What the console held before: a panic of the new kernel shows
        // after this point.
        let console_offset = console_path(machine)
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        match env.provider.boot_kernel(machine, &kernel).await {
            Ok(()) => {
                drop(host);
                return reconnect(env, machine, release, boot_timeout, console_offset).await;
            }
            Err(ProvisionError::Unsupported { .. }) if method == BootMethod::Auto => {
                let has_kexec = exec(host.as_ref(), "command -v kexec".to_owned(), STEP_TIMEOUT)
                    .await
                    .is_ok();
                method = if has_kexec {
                    BootMethod::Kexec
                } else {
                    BootMethod::Bootloader
                };
            }
            Err(e) => {
                return Err(fail(
                    &format!("kernel `{release}` did not boot"),
                    crate::error::error_chain(&e),
                ));
            }
        }
    }

    let uploaded = format!("/tmp/btrfsqa-vmlinuz-{release}");
    host.upload(&store.join("bzImage"), &uploaded)
        .await
        .map_err(|e| fail(install, crate::error::error_chain(&e)))?;
    let out = exec(
        host.as_ref(),
        script::install_image(&uploaded, release),
        STEP_TIMEOUT,
    )
    .await
    .map_err(|e| fail(install, e))?;
    let initrd = out
        .lines()
        .find_map(|l| l.strip_prefix("initrd="))
        .map(str::to_owned);
    match method {
        BootMethod::Kexec => {
            let old = boot_id(host.as_ref()).await;
            exec(
                host.as_ref(),
                script::kexec(release, initrd.as_deref()),
                STEP_TIMEOUT,
            )
            .await
            .map_err(|e| fail("kernel install failed (kexec)", e))?;
            drop(host);
            wait_new_boot(env, machine, release, old, boot_timeout).await
        }
        _ => {
            exec(host.as_ref(), script::bootloader(release), STEP_TIMEOUT)
                .await
                .map_err(|e| fail("kernel install failed (bootloader)", e))?;
            host.reboot_and_wait(boot_timeout).await.map_err(|e| {
                fail(
                    &format!("kernel `{release}` did not boot"),
                    crate::error::error_chain(&e),
                )
            })?;
            Ok(host)
        }
    }
}

/// Connects to the machine again after the provider booted it. A kernel
/// panic on the console (after `console_offset`) ends the wait at once: the
/// VM is gone and SSH would only time out.
pub(super) async fn reconnect(
    env: &StageEnv<'_>,
    machine: &Machine,
    release: &str,
    timeout: Duration,
    console_offset: u64,
) -> Result<Arc<dyn RemoteHost>, StageError> {
    let panicked = async {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Some(line) = console_panic(machine, console_offset) {
                return line;
            }
        }
    };
    let connected = tokio::select! {
        connected = tokio::time::timeout(timeout, env.connector.connect(machine)) => connected,
        line = panicked => {
            return Err(StageError::new(
                &format!("kernel `{release}` did not boot"),
                format!("{line}{}", console_hint(machine)),
            ));
        }
    };
    match connected {
        Ok(Ok(host)) => Ok(host),
        Ok(Err(e)) => Err(StageError::new(
            &format!("kernel `{release}` did not boot"),
            format!("{}{}", crate::error::error_chain(&e), console_hint(machine)),
        )),
        Err(_) => Err(StageError::new(
            &format!("kernel `{release}` did not boot"),
            format!(
                "no SSH within {} s{}",
                timeout.as_secs(),
                console_hint(machine)
            ),
        )),
    }
}

/// Waits until the machine answers with a boot id other than `old`.
pub(super) async fn wait_new_boot(
    env: &StageEnv<'_>,
    machine: &Machine,
    release: &str,
    old: Option<String>,
    timeout: Duration,
) -> Result<Arc<dyn RemoteHost>, StageError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StageError::new(
                &format!("kernel `{release}` did not boot"),
                format!(
                    "the machine did not come back within {} s",
                    timeout.as_secs()
                ),
            ));
        }
        if let Ok(Ok(host)) = tokio::time::timeout(left, env.connector.connect(machine)).await {
            let now = boot_id(host.as_ref()).await;
            if now.is_some() && now != old {
                return Ok(host);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub(super) async fn boot_id(host: &dyn RemoteHost) -> Option<String> {
    exec(
        host,
        "cat /proc/sys/kernel/random/boot_id".to_owned(),
        Duration::from_secs(30),
    )
    .await
    .ok()
    .map(|id| id.trim().to_owned())
}
