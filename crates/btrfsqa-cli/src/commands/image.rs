//! `btrfsqa image build`.

use btrfsqa_cloud::qemu::{ImagePaths, ImageSettings, build_image};
use btrfsqa_runner::RunOverrides;

use super::{Outcome, load_settings};
use crate::args::ImageBuildArgs;
use crate::exit::Code;

pub async fn build(args: ImageBuildArgs) -> Outcome {
    let paths = match &args.image_dir {
        Some(dir) => ImagePaths::from_path(dir),
        None => load_settings(&args.config, RunOverrides::default())?
            .config
            .providers
            .get::<btrfsqa_cloud::QemuConfig>()
            .map_or_else(ImagePaths::from_env_or_default, |qemu| qemu.image()),
    };
    let mut settings = ImageSettings::new(paths.clone());
    settings.force = args.force;
    // What the suites need to build and run inside the guest, then the
    // user's own.
    settings.extra_packages =
        btrfsqa_runner::plugins::machine_packages(btrfsqa_suites::Distro::Debian)
            .into_iter()
            .map(str::to_owned)
            .chain(args.packages.iter().cloned())
            .collect();
    if let Some(mirror) = &args.mirror {
        settings.mirror = mirror.clone();
    }
    if !args.force && paths.is_complete() {
        errln!(
            "using the cached image in {} (--force to rebuild)",
            paths.dir.display()
        );
    } else {
        errln!(
            "building the guest image in {} (debootstrap {}; a few minutes; log: {})",
            paths.dir.display(),
            settings.suite,
            paths.log().display()
        );
    }
    let built = tokio::task::spawn_blocking(move || build_image(&settings))
        .await
        // A panic while building is a panic here.
        .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))?;
    let verb = if built.built { "built" } else { "cached" };
    outln!(
        "{verb} {} (Debian {}, kernel {}, {:.0} s to build)",
        built.paths.rootfs().display(),
        built.info.suite,
        built.info.kernel_release,
        built.info.build_secs
    );
    Ok(Code::Ok)
}
