//! The LUKS2 container, driven through `cryptsetup` as a subprocess. The key only ever
//! travels on cryptsetup's stdin (`--key-file=-`): never in argv (readable by every
//! user in `/proc/*/cmdline`), never in a file. cryptsetup's own messages never echo
//! the key, so its stderr is kept for error messages.
//!
//! The container key is 64 random bytes, not a passphrase, so PBKDF stretching adds
//! nothing: the keyslot uses PBKDF2 at cryptsetup's minimum of 1000 iterations, which
//! also keeps `open` fast on small VMs (argon2id would reserve memory for nothing).

use super::StorageError;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The data cipher: AES-256 in XTS mode (a 512-bit XTS key is two AES-256 keys).
pub const CIPHER: &str = "aes-xts-plain64";
/// Key size in bits as cryptsetup counts it.
pub const KEY_BITS: u32 = 512;
/// The container key length in bytes.
pub const KEY_LEN: usize = 64;
/// Keyslots a container of ours has: the sealed key's. A header with more holds a key
/// someone else added (the host can rewrite an attached header), so `open` refuses it.
pub const KEYSLOTS: usize = 1;

/// What `open` needs to know about a header before it trusts the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The cipher of each data segment (`aes-xts-plain64`).
    pub segment_ciphers: Vec<String>,
    /// The cipher of each keyslot's area.
    pub keyslot_ciphers: Vec<String>,
    /// The volume key size, in bytes, of each keyslot.
    pub keyslot_key_sizes: Vec<u64>,
}

/// A finished cryptsetup run: exit code, stderr, stdout.
type Outcome = (i32, String, Vec<u8>);

/// Runs cryptsetup with `args`, writing `key` (if any) to its stdin.
fn cryptsetup(args: &[&std::ffi::OsStr], key: Option<&[u8]>) -> Result<Outcome, StorageError> {
    let mut child = Command::new("cryptsetup")
        .args(args)
        .stdin(if key.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| StorageError::Spawn {
            program: "cryptsetup",
            source,
        })?;
    if let (Some(key), Some(mut stdin)) = (key, child.stdin.take()) {
        // A write error means cryptsetup exited early; its status says why.
        let _ = stdin.write_all(key);
        // Dropping stdin closes it: `--key-file=-` reads to end of file.
    }
    let out = child
        .wait_with_output()
        .map_err(|source| StorageError::Spawn {
            program: "cryptsetup",
            source,
        })?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
        out.stdout,
    ))
}

fn failed(op: &'static str, code: i32, stderr: String) -> StorageError {
    StorageError::Cryptsetup { op, code, stderr }
}

/// Formats `image` (an existing file) as LUKS2, AES-XTS-512, with `key` in keyslot 0.
pub fn format(image: &Path, key: &[u8]) -> Result<(), StorageError> {
    let iterations = "1000";
    let bits = KEY_BITS.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        "luksFormat".as_ref(),
        "--type".as_ref(),
        "luks2".as_ref(),
        "--batch-mode".as_ref(),
        "--cipher".as_ref(),
        CIPHER.as_ref(),
        "--key-size".as_ref(),
        bits.as_ref(),
        "--pbkdf".as_ref(),
        "pbkdf2".as_ref(),
        "--pbkdf-force-iterations".as_ref(),
        iterations.as_ref(),
        "--key-file=-".as_ref(),
        image.as_os_str(),
    ];
    match cryptsetup(&args, Some(key))? {
        (0, _, _) => Ok(()),
        (code, stderr, _) => Err(failed("luksFormat", code, stderr)),
    }
}

/// Reads and checks the header: LUKS2, and no segment or keyslot with `cipher_null`
/// (a header an attacker swapped in to make the "encrypted" data dir plaintext).
pub fn check_header(image: &Path) -> Result<Header, StorageError> {
    if !image.is_file() {
        return Err(StorageError::ImageMissing {
            image: image.to_path_buf(),
        });
    }
    let args: Vec<&std::ffi::OsStr> = vec![
        "isLuks".as_ref(),
        "--type".as_ref(),
        "luks2".as_ref(),
        image.as_os_str(),
    ];
    if cryptsetup(&args, None)?.0 != 0 {
        return Err(StorageError::NotLuks2 {
            image: image.to_path_buf(),
        });
    }
    let args: Vec<&std::ffi::OsStr> = vec![
        "luksDump".as_ref(),
        "--dump-json-metadata".as_ref(),
        image.as_os_str(),
    ];
    let (code, stderr, stdout) = cryptsetup(&args, None)?;
    if code != 0 {
        return Err(failed("luksDump", code, stderr));
    }
    let header = parse_metadata(&stdout).map_err(|reason| StorageError::BadHeader {
        image: image.to_path_buf(),
        reason,
    })?;
    for cipher in header.segment_ciphers.iter().chain(&header.keyslot_ciphers) {
        if cipher.starts_with("cipher_null") {
            return Err(StorageError::CipherNull {
                image: image.to_path_buf(),
                cipher: cipher.clone(),
            });
        }
    }
    if header.segment_ciphers.is_empty() {
        return Err(StorageError::BadHeader {
            image: image.to_path_buf(),
            reason: "no data segment".into(),
        });
    }
    check_pinned(&header).map_err(|reason| StorageError::Unpinned {
        image: image.to_path_buf(),
        reason,
    })?;
    Ok(header)
}

/// The header must be exactly what [`format`] writes: [`CIPHER`] on every segment and
/// keyslot, [`KEY_LEN`]-byte keys, [`KEYSLOTS`] keyslot(s). Anything else was made or
/// changed by someone else, e.g. a weaker cipher or an extra keyslot the host added.
pub fn check_pinned(header: &Header) -> Result<(), String> {
    for cipher in header.segment_ciphers.iter().chain(&header.keyslot_ciphers) {
        if cipher != CIPHER {
            return Err(format!("cipher `{cipher}`, expected `{CIPHER}`"));
        }
    }
    for size in &header.keyslot_key_sizes {
        if *size != KEY_LEN as u64 {
            return Err(format!("key size {size} bytes, expected {KEY_LEN}"));
        }
    }
    if header.keyslot_ciphers.len() != KEYSLOTS {
        return Err(format!(
            "{} keyslot(s), expected {KEYSLOTS}",
            header.keyslot_ciphers.len()
        ));
    }
    Ok(())
}

/// Parses cryptsetup's LUKS2 JSON metadata (untrusted: it comes from the image).
pub fn parse_metadata(json: &[u8]) -> Result<Header, String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("metadata is not JSON: {e}"))?;
    let ciphers =
        |section: &str, field: &dyn Fn(&serde_json::Value) -> Option<&serde_json::Value>| {
            let mut out = Vec::new();
            let Some(map) = value.get(section).and_then(|s| s.as_object()) else {
                return Err(format!("`{section}` is missing or not an object"));
            };
            for (id, entry) in map {
                match field(entry).and_then(|e| e.as_str()) {
                    Some(c) => out.push(c.to_string()),
                    None => return Err(format!("{section}.{id}: no `encryption` string")),
                }
            }
            Ok(out)
        };
    Ok(Header {
        segment_ciphers: ciphers("segments", &|e| e.get("encryption"))?,
        keyslot_ciphers: ciphers("keyslots", &|e| {
            e.get("area").and_then(|a| a.get("encryption"))
        })?,
        keyslot_key_sizes: value
            .get("keyslots")
            .and_then(|k| k.as_object())
            .map(|map| {
                map.iter()
                    .map(|(id, e)| {
                        e.get("key_size")
                            .and_then(serde_json::Value::as_u64)
                            .ok_or_else(|| format!("keyslots.{id}: no `key_size` number"))
                    })
                    .collect::<Result<Vec<u64>, String>>()
            })
            .transpose()?
            .unwrap_or_default(),
    })
}

/// Checks that `key` opens a keyslot of `image`, without device-mapper
/// (`cryptsetup open --test-passphrase`). `Ok(false)`: the key is wrong.
pub fn test_key(image: &Path, key: &[u8]) -> Result<bool, StorageError> {
    if key.is_empty() {
        // cryptsetup reads an empty stdin as "nothing to read", not as a wrong key.
        return Ok(false);
    }
    let args: Vec<&std::ffi::OsStr> = vec![
        "open".as_ref(),
        "--type".as_ref(),
        "luks2".as_ref(),
        "--test-passphrase".as_ref(),
        "--key-file=-".as_ref(),
        image.as_os_str(),
    ];
    match cryptsetup(&args, Some(key))? {
        (0, _, _) => Ok(true),
        // cryptsetup's exit code 2: "No key available with this passphrase".
        (2, _, _) => Ok(false),
        (code, stderr, _) => Err(failed("open --test-passphrase", code, stderr)),
    }
}

/// Where device-mapper's control node lives; without it nothing can be opened.
pub const DM_CONTROL: &str = "/dev/mapper/control";

/// Fails with [`StorageError::NoDeviceMapper`] where the kernel has no device-mapper.
/// The control node alone proves nothing: libdevmapper creates `/dev/mapper/control`
/// itself (cryptsetup does so even for `luksFormat` on a file), so the kernel's own
/// list of misc devices decides; a `dm_mod` module not loaded yet is loaded first.
pub fn require_device_mapper() -> Result<(), StorageError> {
    if kernel_has_device_mapper() {
        return Ok(());
    }
    // Best effort: where dm is a module, loading it registers the misc device.
    let _ = Command::new("modprobe")
        .arg("dm_mod")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if kernel_has_device_mapper() {
        return Ok(());
    }
    let reason = if Path::new(DM_CONTROL).exists() {
        format!("{DM_CONTROL} exists but the kernel does not register device-mapper in /proc/misc")
    } else {
        format!("no {DM_CONTROL}")
    };
    Err(StorageError::NoDeviceMapper { reason })
}

fn kernel_has_device_mapper() -> bool {
    std::fs::read_to_string("/proc/misc").is_ok_and(|misc| {
        misc.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("device-mapper"))
    })
}

/// Opens `image` as `/dev/mapper/<name>` with `key`.
pub fn open(image: &Path, name: &str, key: &[u8]) -> Result<(), StorageError> {
    require_device_mapper()?;
    let args: Vec<&std::ffi::OsStr> = vec![
        "open".as_ref(),
        "--type".as_ref(),
        "luks2".as_ref(),
        "--key-file=-".as_ref(),
        image.as_os_str(),
        name.as_ref(),
    ];
    match cryptsetup(&args, Some(key))? {
        (0, _, _) => Ok(()),
        (code, stderr, _) => Err(failed("open", code, stderr)),
    }
}

/// Closes `/dev/mapper/<name>`.
pub fn close(name: &str) -> Result<(), StorageError> {
    let args: Vec<&std::ffi::OsStr> = vec!["close".as_ref(), name.as_ref()];
    match cryptsetup(&args, None)? {
        (0, _, _) => Ok(()),
        (code, stderr, _) => Err(failed("close", code, stderr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_without_sections_or_ciphers_is_refused() {
        assert!(parse_metadata(b"not json").is_err());
        assert!(parse_metadata(b"{}").unwrap_err().contains("segments"));
        let e =
            parse_metadata(br#"{"segments":{"0":{"type":"crypt"}},"keyslots":{}}"#).unwrap_err();
        assert!(e.contains("segments.0"), "{e}");
        let h = parse_metadata(
            br#"{"segments":{"0":{"encryption":"cipher_null-ecb"}},
                 "keyslots":{"0":{"key_size":64,"area":{"encryption":"aes-xts-plain64"}}}}"#,
        )
        .unwrap();
        assert_eq!(h.segment_ciphers, vec!["cipher_null-ecb"]);
        assert_eq!(h.keyslot_ciphers, vec!["aes-xts-plain64"]);
        assert_eq!(h.keyslot_key_sizes, vec![64]);
    }

    #[test]
    fn only_the_header_format_writes_is_accepted() {
        let header = |seg: &str, slots: &[(&str, u64)]| Header {
            segment_ciphers: vec![seg.to_string()],
            keyslot_ciphers: slots.iter().map(|s| s.0.to_string()).collect(),
            keyslot_key_sizes: slots.iter().map(|s| s.1).collect(),
        };
        assert!(check_pinned(&header(CIPHER, &[(CIPHER, 64)])).is_ok());
        for (h, why) in [
            (
                header("aes-cbc-essiv:sha256", &[(CIPHER, 64)]),
                "cipher `aes-cbc",
            ),
            (
                header(CIPHER, &[("aes-xts-plain", 64)]),
                "cipher `aes-xts-plain`",
            ),
            (header(CIPHER, &[(CIPHER, 32)]), "key size 32"),
            (
                header(CIPHER, &[(CIPHER, 64), (CIPHER, 64)]),
                "2 keyslot(s)",
            ),
            (header(CIPHER, &[]), "0 keyslot(s)"),
        ] {
            let e = check_pinned(&h).unwrap_err();
            assert!(e.contains(why), "{h:?}: {e}");
        }
        let e = parse_metadata(
            br#"{"segments":{"0":{"encryption":"aes-xts-plain64"}},
                 "keyslots":{"0":{"area":{"encryption":"aes-xts-plain64"}}}}"#,
        )
        .unwrap_err();
        assert!(e.contains("keyslots.0: no `key_size`"), "{e}");
    }
}
