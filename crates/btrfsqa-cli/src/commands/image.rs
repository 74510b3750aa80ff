//! `btrfsqa image build`.

use btrfsqa_cloud::qemu::{ImagePaths, ImageSettings, build_image};
use btrfsqa_runner::RunOverrides;

use super::{failed, load_settings, print_error};
use crate::args::ImageBuildArgs;
use crate::exit::Code;

pub async fn build(args: ImageBuildArgs) -> Code {
    let paths = match &args.image_dir {
        Some(dir) => ImagePaths::from_path(dir),
        None => match load_settings(&args.config, RunOverrides::default()) {
            Ok(settings) => settings
                .config
                .providers
                .get::<btrfsqa_cloud::QemuConfig>()
                .map_or_else(ImagePaths::from_env_or_default, |qemu| qemu.image()),
            Err(err) => return failed(&err),
        },
    };
    let mut settings = ImageSettings::new(paths.clone());
    settings.force = args.force;
    settings.extra_packages = args.packages.clone();
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
    match tokio::task::spawn_blocking(move || build_image(&settings)).await {
        Ok(Ok(built)) => {
            let verb = if built.built { "built" } else { "cached" };
            outln!(
                "{verb} {} (Debian {}, kernel {}, {:.0} s to build)",
                built.paths.rootfs().display(),
                built.info.suite,
                built.info.kernel_release,
                built.info.build_secs
            );
            Code::Ok
        }
        Ok(Err(err)) => {
            print_error(&err);
            Code::Infrastructure
        }
        Err(err) => {
            print_error(&err);
            Code::Infrastructure
        }
    }
}
