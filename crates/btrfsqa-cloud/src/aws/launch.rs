//! The pieces of a launch that are computed, not asked: device names, the
//! paths the guest will see, the self-destruct user data, names, idempotency
//! tokens, and the SSH source range. Pure.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;

use chrono::{DateTime, Utc};

/// Device names for `count` data volumes: `/dev/sdf` onwards (EC2's
/// recommended range for EBS data volumes; at most 21).
pub(crate) fn data_device_names(count: u32) -> Result<Vec<String>, String> {
    let letters = b'f'..=b'z';
    if count == 0 || count as usize > letters.len() {
        return Err(format!(
            "`volume-count` must be between 1 and {}, not {count}",
            letters.len()
        ));
    }
    Ok(letters
        .take(count as usize)
        .map(|letter| format!("/dev/sd{}", letter as char))
        .collect())
}

/// The stable path of an EBS volume inside a Nitro guest: udev names NVMe
/// disks by model and serial, and EBS puts the volume id (without its dash)
/// in the serial. The attach order of NVMe names (`/dev/nvme1n1`, ...) is
/// not guaranteed, so the volume id is the only safe key.
pub(crate) fn nitro_device_path(volume_id: &str) -> String {
    format!(
        "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}",
        volume_id.replace('-', "")
    )
}

/// Where a Xen guest (older instance types) shows a volume mapped at
/// `/dev/sdX`: `/dev/xvdX`.
pub(crate) fn xen_device_path(device_name: &str) -> String {
    match device_name.strip_prefix("/dev/sd") {
        Some(rest) => format!("/dev/xvd{rest}"),
        None => device_name.to_owned(),
    }
}

/// cloud-config that powers the machine off at `deadline`, on every boot:
/// a boot into a test kernel cancels a pending `shutdown`, so it is set
/// again each time. With the instance's shutdown behaviour set to
/// `terminate`, power-off ends the bill even when no controller is left.
/// Holds no secret: user data is readable from inside the instance.
pub(crate) fn self_destruct_user_data(deadline: DateTime<Utc>) -> String {
    let epoch = deadline.timestamp();
    format!(
        "#cloud-config\n\
         # btrfsqa: power off (and so terminate) at {deadline}, even if the controller is gone.\n\
         bootcmd:\n  \
         - [sh, -c, 'left=$(( ({epoch} - $(date +%s)) / 60 )); \
         if [ \"$left\" -lt 1 ]; then poweroff; else shutdown -h \"+$left\"; fi']\n",
        deadline = deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// `btrfsqa-<run>-<machine>`, kept to what key pair and security group names
/// accept.
pub(crate) fn resource_name(run: &str, machine: &str) -> String {
    safe_name(&format!("btrfsqa-{run}-{machine}"))
}

/// `btrfsqa-<run>`: what the machines of a run share (key pair, security
/// group, launch template), kept to what their names accept.
pub(crate) fn run_resource_name(run: &str) -> String {
    safe_name(&format!("btrfsqa-{run}"))
}

fn safe_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.chars().take(200).collect()
}

/// An idempotency token for RunInstances (at most 64 characters): the same
/// for a retry of one request, different for each type, market and
/// provisioning attempt (`nonce`).
pub(crate) fn client_token(parts: &[&str], nonce: u64) -> String {
    // FNV-1a: stable across processes and Rust versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.join("\0").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("btrfsqa-{hash:016x}-{nonce:016x}")
}

/// A random 64-bit number for tokens and jitter (std's per-process random
/// seed; not for secrets).
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// A source range for SSH, checked: `address/prefix`, IPv4 or IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshCidr {
    pub text: String,
    pub open_to_world: bool,
}

pub(crate) fn parse_cidr(text: &str) -> Result<SshCidr, String> {
    let text = text.trim();
    let (address, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a CIDR range (`203.0.113.7/32`)"))?;
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("`{address}` in `{text}` is not an IP address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("`{prefix}` in `{text}` is not a prefix length"))?;
    let bits = if address.is_ipv4() { 32 } else { 128 };
    if prefix > bits {
        return Err(format!("prefix `/{prefix}` is too long for `{address}`"));
    }
    Ok(SshCidr {
        text: format!("{address}/{prefix}"),
        open_to_world: prefix == 0,
    })
}

/// The range of exactly one address.
pub(crate) fn single_address(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_volumes_go_to_sdf_to_sdk() {
        assert_eq!(
            data_device_names(6).unwrap(),
            [
                "/dev/sdf", "/dev/sdg", "/dev/sdh", "/dev/sdi", "/dev/sdj", "/dev/sdk"
            ]
        );
        assert_eq!(data_device_names(21).unwrap().last().unwrap(), "/dev/sdz");
        assert!(data_device_names(0).is_err());
        assert!(data_device_names(22).is_err());
    }

    #[test]
    fn device_paths_come_from_volume_ids() {
        assert_eq!(
            nitro_device_path("vol-0123456789abcdef0"),
            "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"
        );
        assert_eq!(xen_device_path("/dev/sdf"), "/dev/xvdf");
    }

    #[test]
    fn user_data_powers_off_at_the_deadline_on_every_boot() {
        let deadline = DateTime::parse_from_rfc3339("2025-03-01T22:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let data = self_destruct_user_data(deadline);
        assert!(data.starts_with("#cloud-config\n"));
        assert!(data.contains("bootcmd:"), "{data}");
        assert!(data.contains(&deadline.timestamp().to_string()), "{data}");
        assert!(data.contains("shutdown -h"), "{data}");
        assert!(data.contains("poweroff"), "{data}");
    }

    #[test]
    fn names_and_tokens() {
        assert_eq!(resource_name("r-1", "aws 0"), "btrfsqa-r-1-aws_0");
        assert_eq!(run_resource_name("r-1"), "btrfsqa-r-1");
        let token = client_token(&["r", "m", "m6i.large", "spot"], 7);
        assert!(token.len() <= 64, "{token}");
        assert_eq!(token, client_token(&["r", "m", "m6i.large", "spot"], 7));
        assert_ne!(token, client_token(&["r", "m", "m5.large", "spot"], 7));
        assert_ne!(token, client_token(&["r", "m", "m6i.large", "spot"], 8));
    }

    #[test]
    fn cidrs_are_checked() {
        assert_eq!(parse_cidr("203.0.113.7/32").unwrap().text, "203.0.113.7/32");
        assert!(!parse_cidr("203.0.113.0/24").unwrap().open_to_world);
        assert!(parse_cidr("0.0.0.0/0").unwrap().open_to_world);
        assert!(parse_cidr("::/0").unwrap().open_to_world);
        assert_eq!(
            parse_cidr("2001:db8::1/128").unwrap().text,
            "2001:db8::1/128"
        );
        assert!(parse_cidr("203.0.113.7").is_err());
        assert!(parse_cidr("203.0.113.7/33").is_err());
        assert!(parse_cidr("example.org/32").is_err());
        assert_eq!(single_address("192.0.2.1".parse().unwrap()), "192.0.2.1/32");
        assert_eq!(
            single_address("2001:db8::1".parse().unwrap()),
            "2001:db8::1/128"
        );
    }
}
