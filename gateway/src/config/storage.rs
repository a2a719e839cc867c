//! `[storage]` of `verigated.toml`: the encrypted container that holds the data dir
//! (`crate::storage`). Present means "the data dir is that container, mounted": the
//! storage commands take their paths and PCRs from here, and verigated refuses to start
//! on a data dir that is not the mounted volume (it would otherwise write a new
//! certificate to the bare disk, and the next `verify` would report a changed one).
//!
//! ```toml
//! [storage]
//! image = "/var/lib/verigate-data.luks"     # the container (a file, made by `storage init`)
//! header = "/var/lib/verigate-data.header"  # its detached LUKS2 header
//! size = "1G"                                # for `storage init`
//! pcrs = [0, 7]                              # SHA-256 PCRs the key is sealed to
//! tmpfs_size = "64M"                         # the RAM tmpfs at <data_dir>/run
//! integrity = "none"                         # or "hmac-sha256"
//! recovery = false                           # a recovery passphrase in keyslot 1
//! ```

use crate::storage::luks::{Integrity, Layout};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The default sealing PCRs: the firmware (0) and the Secure Boot policy and keys (7).
/// Both stay the same across reboots and across kernel or bootloader updates signed by
/// the same keys; PCR 1 (firmware settings, boot order), 4, 8 and 9 (bootloader and
/// kernel, changed by every update) and 10 (IMA, different at every boot) do not.
pub const DEFAULT_PCRS: [u8; 2] = [0, 7];

/// `[storage]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// The container file; default `<data_dir>/../verigate-data.luks`.
    #[serde(default)]
    pub image: Option<PathBuf>,
    /// The detached LUKS2 header; default `<data_dir>/../verigate-data.header`.
    #[serde(default)]
    pub header: Option<PathBuf>,
    /// The container size for `storage init`, e.g. `"1G"`.
    #[serde(default)]
    pub size: Option<String>,
    /// SHA-256 PCRs the key is sealed to; default [`DEFAULT_PCRS`].
    #[serde(default)]
    pub pcrs: Option<Vec<u8>>,
    /// The RAM tmpfs size at `<data_dir>/run`, e.g. `"64M"`.
    #[serde(default)]
    pub tmpfs_size: Option<String>,
    /// Authenticated encryption: `"none"` (default) or `"hmac-sha256"`.
    #[serde(default)]
    pub integrity: Option<String>,
    /// The container has a recovery passphrase in keyslot 1; default false.
    #[serde(default)]
    pub recovery: Option<bool>,
}

/// `[storage]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSettings {
    /// The container file (absolute, outside the data dir).
    pub image: PathBuf,
    /// The detached header (absolute, outside the data dir).
    pub header: PathBuf,
    /// The container size for `storage init`, in bytes, when given.
    pub size: Option<u64>,
    /// SHA-256 PCRs the key is sealed to.
    pub pcrs: Vec<u8>,
    /// The RAM tmpfs size in bytes.
    pub tmpfs_size: u64,
    /// What `storage init` makes and `storage open` pins: integrity and recovery.
    pub layout: Layout,
}

/// Checks `[storage]`, reporting each problem through `problem`.
pub fn validate(
    raw: RawStorage,
    data_dir: &Path,
    problem: &mut impl FnMut(&str, String),
) -> StorageSettings {
    let defaults = crate::storage::StoragePaths::for_data_dir(data_dir);
    let image = raw.image.unwrap_or(defaults.image);
    let header = raw.header.unwrap_or(defaults.header);
    for (field, path) in [("storage.image", &image), ("storage.header", &header)] {
        if !path.is_absolute() {
            problem(
                field,
                format!(
                    "`{}` is relative: give an absolute path outside gateway.data_dir",
                    path.display()
                ),
            );
        } else if path.starts_with(data_dir) {
            problem(
                field,
                format!(
                    "`{}` is inside gateway.data_dir, which the container is mounted over: \
                     put it outside, e.g. next to it",
                    path.display()
                ),
            );
        }
    }
    if header == image {
        problem(
            "storage.header",
            format!(
                "`{}` is also storage.image: the header is kept apart from the image",
                header.display()
            ),
        );
    }
    let integrity = match raw.integrity.as_deref() {
        None => Integrity::None,
        Some(s) => Integrity::parse(s).unwrap_or_else(|e| {
            problem("storage.integrity", e);
            Integrity::None
        }),
    };
    let size = raw.size.as_deref().and_then(|s| {
        crate::storage::parse_size(s)
            .map_err(|e| problem("storage.size", e.to_string()))
            .ok()
    });
    let pcrs = raw.pcrs.unwrap_or_else(|| DEFAULT_PCRS.to_vec());
    for (i, pcr) in pcrs.iter().enumerate() {
        if *pcr > 23 {
            problem(
                &format!("storage.pcrs[{i}]"),
                format!("PCR {pcr} does not exist (0..=23)"),
            );
        }
    }
    let tmpfs_size = match raw.tmpfs_size.as_deref() {
        None => crate::storage::RUN_TMPFS_SIZE,
        Some(s) => crate::storage::parse_tmpfs_size(s).unwrap_or_else(|e| {
            problem("storage.tmpfs_size", e.to_string());
            crate::storage::RUN_TMPFS_SIZE
        }),
    };
    StorageSettings {
        image,
        header,
        size,
        pcrs,
        tmpfs_size,
        layout: Layout {
            integrity,
            recovery: raw.recovery.unwrap_or(false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawStorage) -> (StorageSettings, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let s = validate(raw, Path::new("/var/lib/verigate"), &mut |f: &str, m| {
            problems.push((f.to_string(), m));
        });
        (s, problems)
    }

    #[test]
    fn defaults_sit_next_to_the_data_dir_with_the_boot_chain_pcrs() {
        let (s, problems) = check(RawStorage::default());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.image, Path::new("/var/lib/verigate-data.luks"));
        assert_eq!(s.header, Path::new("/var/lib/verigate-data.header"));
        assert_eq!(s.layout, Layout::default());
        assert_eq!(s.pcrs, vec![0, 7]);
        assert_eq!(s.tmpfs_size, 64 << 20);
        assert_eq!(s.size, None);
    }

    #[test]
    fn integrity_and_recovery_are_read() {
        let (s, problems) = check(RawStorage {
            integrity: Some("hmac-sha256".into()),
            recovery: Some(true),
            header: Some("/etc/verigate/data.header".into()),
            ..Default::default()
        });
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            s.layout,
            Layout {
                integrity: Integrity::HmacSha256,
                recovery: true
            }
        );
        assert_eq!(s.header, Path::new("/etc/verigate/data.header"));
    }

    #[test]
    fn each_bad_field_is_named() {
        for (raw, field, why) in [
            (
                RawStorage {
                    image: Some("data.luks".into()),
                    ..Default::default()
                },
                "storage.image",
                "relative",
            ),
            (
                RawStorage {
                    image: Some("/var/lib/verigate/data.luks".into()),
                    ..Default::default()
                },
                "storage.image",
                "inside gateway.data_dir",
            ),
            (
                RawStorage {
                    header: Some("/var/lib/verigate/data.header".into()),
                    ..Default::default()
                },
                "storage.header",
                "inside gateway.data_dir",
            ),
            (
                RawStorage {
                    header: Some("hdr".into()),
                    ..Default::default()
                },
                "storage.header",
                "relative",
            ),
            (
                RawStorage {
                    image: Some("/srv/data.luks".into()),
                    header: Some("/srv/data.luks".into()),
                    ..Default::default()
                },
                "storage.header",
                "also storage.image",
            ),
            (
                RawStorage {
                    integrity: Some("aead".into()),
                    ..Default::default()
                },
                "storage.integrity",
                "`aead`: expected `none` or `hmac-sha256`",
            ),
            (
                RawStorage {
                    size: Some("1M".into()),
                    ..Default::default()
                },
                "storage.size",
                "too small",
            ),
            (
                RawStorage {
                    pcrs: Some(vec![0, 24]),
                    ..Default::default()
                },
                "storage.pcrs[1]",
                "PCR 24",
            ),
            (
                RawStorage {
                    tmpfs_size: Some("lots".into()),
                    ..Default::default()
                },
                "storage.tmpfs_size",
                "no number",
            ),
        ] {
            let (_, problems) = check(raw);
            assert!(
                problems.iter().any(|(f, m)| f == field && m.contains(why)),
                "{field}: {problems:?}"
            );
        }
    }
}
