//! The configuration fragments btrfsqa ships (`kernel-fragments/*.config`),
//! embedded in the binary.

/// `(name, text)` of every shipped fragment.
const SHIPPED: &[(&str, &str)] = &[
    (
        "btrfs-debug",
        include_str!("../../kernel-fragments/btrfs-debug.config"),
    ),
    (
        "virtio-guest",
        include_str!("../../kernel-fragments/virtio-guest.config"),
    ),
    (
        "fstests",
        include_str!("../../kernel-fragments/fstests.config"),
    ),
    (
        "minimal",
        include_str!("../../kernel-fragments/minimal.config"),
    ),
    ("kasan", include_str!("../../kernel-fragments/kasan.config")),
    (
        "lockdep",
        include_str!("../../kernel-fragments/lockdep.config"),
    ),
];

/// The names of the shipped fragments.
pub fn names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(name, _)| *name).collect()
}

/// Whether `name` is a shipped fragment.
pub fn is_shipped(name: &str) -> bool {
    shipped(name).is_some()
}

/// The text of shipped fragment `name`.
pub fn shipped(name: &str) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

/// The fragments used when `kernel.fragments` is unset: a VM needs its
/// virtio drivers built in and nothing of real hardware; other machines keep
/// their own drivers (from the running config) and get btrfs debugging.
pub fn defaults(provider: &str) -> Vec<String> {
    let names: &[&str] = if virtio_guest(provider) {
        &["virtio-guest", "btrfs-debug", "fstests", "minimal"]
    } else {
        &["btrfs-debug", "fstests"]
    };
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Whether the machines of `provider` are VMs on virtio devices (its
/// registry entry says).
pub fn virtio_guest(provider: &str) -> bool {
    crate::plugins::provider(provider).is_some_and(|entry| entry.virtio_guest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_fragment_sets_only_config_lines() {
        for (name, text) in SHIPPED {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let ok = (line.starts_with("CONFIG_") && line.contains('='))
                    || (line.starts_with("# CONFIG_") && line.ends_with(" is not set"))
                    || line.starts_with("# ");
                assert!(ok, "{name}: `{line}`");
            }
        }
    }

    #[test]
    fn btrfs_is_built_in_with_assertions() {
        let text = shipped("btrfs-debug").unwrap();
        assert!(text.contains("CONFIG_BTRFS_FS=y"));
        assert!(text.contains("CONFIG_BTRFS_ASSERT=y"));
        let guest = shipped("virtio-guest").unwrap();
        for needed in [
            "CONFIG_VIRTIO_BLK=y",
            "CONFIG_EXT4_FS=y",
            "CONFIG_FW_CFG_SYSFS=y",
        ] {
            assert!(guest.contains(needed), "{needed}");
        }
    }

    #[test]
    fn defaults_depend_on_the_provider() {
        assert!(defaults("qemu").contains(&"virtio-guest".to_owned()));
        assert!(!defaults("aws").contains(&"minimal".to_owned()));
        assert!(defaults("aws").iter().all(|n| is_shipped(n)));
    }
}
