//! The LUKS2 container, driven through `cryptsetup` as a subprocess, with its header
//! detached (`--header FILE`): the header lives on the VM's own file system beside the
//! sealed key, never on the image the host stores, so whoever holds the disk cannot
//! swap in a header of their own. Secrets only ever travel on cryptsetup's stdin
//! (`--key-file=-`, and `--new-keyfile=-` after it when a call needs two): never in
//! argv (readable by every user in `/proc/*/cmdline`), never in a file. cryptsetup's
//! own messages never echo a key, so its stderr is kept for error messages.
//!
//! The container key is 64 random bytes and the recovery passphrase carries 260 random
//! bits, so PBKDF stretching adds nothing: the keyslots use PBKDF2 at cryptsetup's
//! minimum of 1000 iterations, which also keeps `open` fast on small VMs (argon2id
//! would reserve memory for nothing).
//!
//! Keyslot 0 holds the key sealed to the TPM; keyslot 1, when the container has one,
//! the recovery passphrase ([`super::recovery`]).

use super::StorageError;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The data cipher: AES-256 in XTS mode (a 512-bit XTS key is two AES-256 keys).
pub const CIPHER: &str = "aes-xts-plain64";
/// The encryption key size in bits as cryptsetup counts it (`--key-size`).
pub const KEY_BITS: u32 = 512;
/// The length in bytes of the secret in keyslot 0 (the one sealed to the TPM).
pub const KEY_LEN: usize = 64;
/// The keyslot of the TPM-sealed key.
pub const TPM_KEYSLOT: u8 = 0;
/// The keyslot of the recovery passphrase.
pub const RECOVERY_KEYSLOT: u8 = 1;
/// The size a detached LUKS2 header takes with cryptsetup's defaults (16 KiB of
/// metadata twice, then the keyslots area); `luksFormat` refuses a smaller file.
pub const HEADER_SIZE: u64 = 16 << 20;
/// The iterations of each keyslot's PBKDF2 (see the module doc).
const PBKDF2_ITERATIONS: &str = "1000";

/// Authenticated encryption of the data (`[storage] integrity`).
///
/// With `hmac-sha256`, every sector carries an HMAC-SHA-256 tag kept by
/// dm-integrity under dm-crypt: a block the host changed, or moved to another sector,
/// fails to read (an I/O error) instead of decrypting to garbage. A whole old sector
/// with its old tag still verifies: integrity does not detect a replay of the past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Integrity {
    /// Length-preserving AES-XTS only: confidentiality, no authentication.
    #[default]
    None,
    /// AES-XTS plus an HMAC-SHA-256 tag per sector (`--integrity hmac-sha256`).
    HmacSha256,
}

impl Integrity {
    /// Parses the configuration and command-line spelling: `none` or `hmac-sha256`.
    pub fn parse(value: &str) -> Result<Integrity, String> {
        match value {
            "none" => Ok(Integrity::None),
            "hmac-sha256" => Ok(Integrity::HmacSha256),
            other => Err(format!("`{other}`: expected `none` or `hmac-sha256`")),
        }
    }

    /// The spelling [`Integrity::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Integrity::None => "none",
            Integrity::HmacSha256 => "hmac-sha256",
        }
    }

    /// The segment's `integrity.type` in the LUKS2 metadata: the kernel crypto API
    /// name cryptsetup records for `--integrity hmac-sha256`.
    pub fn header_type(self) -> Option<&'static str> {
        match self {
            Integrity::None => None,
            Integrity::HmacSha256 => Some("hmac(sha256)"),
        }
    }

    /// The volume key size in bytes: cryptsetup keeps the HMAC key (32 bytes for
    /// SHA-256) in the same keyslot, after the 64-byte XTS key.
    pub fn volume_key_len(self) -> u64 {
        match self {
            Integrity::None => u64::from(KEY_BITS / 8),
            Integrity::HmacSha256 => u64::from(KEY_BITS / 8) + 32,
        }
    }
}

/// What a container of ours looks like, so `open` can refuse any other: the
/// integrity mode and whether it has a recovery keyslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// Authenticated encryption of the data.
    pub integrity: Integrity,
    /// Keyslot 1 holds a recovery passphrase.
    pub recovery: bool,
}

impl Layout {
    /// The keyslots a header of this layout has: 0, and 1 with recovery. More means
    /// a key someone else added, so `open` refuses it.
    pub fn keyslots(self) -> &'static [&'static str] {
        if self.recovery {
            &["0", "1"]
        } else {
            &["0"]
        }
    }
}

/// What `open` needs to know about a header before it trusts the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The cipher of each data segment (`aes-xts-plain64`).
    pub segment_ciphers: Vec<String>,
    /// The `integrity.type` of each data segment (`None`: no integrity).
    pub segment_integrity: Vec<Option<String>>,
    /// The keyslot numbers, in order.
    pub keyslot_ids: Vec<String>,
    /// The cipher of each keyslot's area.
    pub keyslot_ciphers: Vec<String>,
    /// The volume key size, in bytes, of each keyslot.
    pub keyslot_key_sizes: Vec<u64>,
}

/// A finished cryptsetup run: exit code, stderr, stdout.
type Outcome = (i32, String, Vec<u8>);

/// Runs cryptsetup with `args`, writing `secrets` (if any), one after the other, to
/// its stdin.
fn cryptsetup(args: &[&OsStr], secrets: &[&[u8]]) -> Result<Outcome, StorageError> {
    let mut child = Command::new("cryptsetup")
        .args(args)
        .stdin(if secrets.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| StorageError::Spawn {
            program: "cryptsetup",
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        for secret in secrets {
            // A write error means cryptsetup exited early; its status says why.
            if stdin.write_all(secret).is_err() {
                break;
            }
        }
        // Dropping stdin closes it: the last secret is read to end of file.
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

/// What the exit status of `cryptsetup isLuks --type luks2 HEADER` means: 0 a LUKS2
/// header, 1 something else; any other status is cryptsetup failing to tell (the file
/// cannot be read, say), which is not the same as a header swapped for another.
fn is_luks2(header: &Path, code: i32, stderr: String) -> Result<(), StorageError> {
    match code {
        0 => Ok(()),
        1 => Err(StorageError::NotLuks2 {
            header: header.to_path_buf(),
        }),
        _ => Err(failed("isLuks", code, stderr)),
    }
}

/// The keyslot PBKDF arguments (see the module doc).
fn pbkdf_args() -> [&'static OsStr; 4] {
    [
        "--pbkdf".as_ref(),
        "pbkdf2".as_ref(),
        "--pbkdf-force-iterations".as_ref(),
        PBKDF2_ITERATIONS.as_ref(),
    ]
}

/// The argument vector of [`format`]: LUKS2, [`CIPHER`] with a [`KEY_BITS`]-bit key,
/// `--integrity hmac-sha256` when asked, the header in `header`, the key on stdin.
pub fn format_args(image: &Path, header: &Path, integrity: Integrity) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "luksFormat",
        "--type",
        "luks2",
        "--batch-mode",
        "--cipher",
        CIPHER,
        "--key-size",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(KEY_BITS.to_string().into());
    if integrity == Integrity::HmacSha256 {
        // dm-integrity wipes the whole device once so that every sector starts with
        // a valid tag (without it, reading a never-written sector fails).
        args.push("--integrity".into());
        args.push("hmac-sha256".into());
    }
    args.extend(pbkdf_args().iter().map(OsString::from));
    args.push("--header".into());
    args.push(header.into());
    args.push("--key-slot".into());
    args.push(TPM_KEYSLOT.to_string().into());
    args.push("--key-file=-".into());
    args.push(image.into());
    args
}

/// Formats `image` (an existing file) as LUKS2 with its header in `header` (an
/// existing file of [`HEADER_SIZE`] bytes) and `key` in keyslot 0.
pub fn format(
    image: &Path,
    header: &Path,
    key: &[u8],
    integrity: Integrity,
) -> Result<(), StorageError> {
    let args = format_args(image, header, integrity);
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    match cryptsetup(&args, &[key])? {
        (0, _, _) => Ok(()),
        (code, stderr, _) => Err(failed("luksFormat", code, stderr)),
    }
}

/// Adds `new` in keyslot `slot`, authorised by `existing` (which must open keyslot
/// `existing_slot`). Both travel on stdin, `existing` first, cut at its length.
pub fn add_key(
    image: &Path,
    header: &Path,
    existing: &[u8],
    existing_slot: u8,
    new: &[u8],
    slot: u8,
) -> Result<(), StorageError> {
    let existing_len = existing.len().to_string();
    let existing_slot = existing_slot.to_string();
    let slot = slot.to_string();
    let mut args: Vec<&OsStr> = vec!["luksAddKey".as_ref(), "--batch-mode".as_ref()];
    args.extend(pbkdf_args());
    args.extend::<[&OsStr; 11]>([
        "--header".as_ref(),
        header.as_os_str(),
        "--key-file=-".as_ref(),
        "--keyfile-size".as_ref(),
        existing_len.as_ref(),
        "--key-slot".as_ref(),
        existing_slot.as_ref(),
        "--new-keyfile=-".as_ref(),
        "--new-key-slot".as_ref(),
        slot.as_ref(),
        image.as_os_str(),
    ]);
    match cryptsetup(&args, &[existing, new])? {
        (0, _, _) => Ok(()),
        (code, stderr, _) => Err(failed("luksAddKey", code, stderr)),
    }
}

/// Wipes keyslot `slot`, authorised by `remaining` (a secret of another keyslot).
pub fn kill_slot(
    image: &Path,
    header: &Path,
    slot: u8,
    remaining: &[u8],
) -> Result<(), StorageError> {
    let slot = slot.to_string();
    let args: Vec<&OsStr> = vec![
        "luksKillSlot".as_ref(),
        "--batch-mode".as_ref(),
        "--header".as_ref(),
        header.as_os_str(),
        "--key-file=-".as_ref(),
        image.as_os_str(),
        slot.as_ref(),
    ];
    match cryptsetup(&args, &[remaining])? {
        (0, _, _) => Ok(()),
        (code, stderr, _) => Err(failed("luksKillSlot", code, stderr)),
    }
}

/// Reads and checks the detached header `header`: LUKS2, no segment or keyslot with
/// `cipher_null` (a header swapped in to make the "encrypted" data dir plaintext),
/// and exactly the shape `layout` says ([`check_pinned`]).
pub fn check_header(header: &Path, layout: Layout) -> Result<Header, StorageError> {
    if !header.is_file() {
        return Err(StorageError::HeaderMissing {
            header: header.to_path_buf(),
        });
    }
    let args: Vec<&OsStr> = vec![
        "isLuks".as_ref(),
        "--type".as_ref(),
        "luks2".as_ref(),
        header.as_os_str(),
    ];
    let (code, stderr, _) = cryptsetup(&args, &[])?;
    is_luks2(header, code, stderr)?;
    let args: Vec<&OsStr> = vec![
        "luksDump".as_ref(),
        "--dump-json-metadata".as_ref(),
        header.as_os_str(),
    ];
    let (code, stderr, stdout) = cryptsetup(&args, &[])?;
    if code != 0 {
        return Err(failed("luksDump", code, stderr));
    }
    let parsed = parse_metadata(&stdout).map_err(|reason| StorageError::BadHeader {
        header: header.to_path_buf(),
        reason,
    })?;
    for cipher in parsed.segment_ciphers.iter().chain(&parsed.keyslot_ciphers) {
        if cipher.starts_with("cipher_null") {
            return Err(StorageError::CipherNull {
                header: header.to_path_buf(),
                cipher: cipher.clone(),
            });
        }
    }
    if parsed.segment_ciphers.is_empty() {
        return Err(StorageError::BadHeader {
            header: header.to_path_buf(),
            reason: "no data segment".into(),
        });
    }
    check_pinned(&parsed, layout).map_err(|reason| StorageError::Unpinned {
        header: header.to_path_buf(),
        reason,
    })?;
    Ok(parsed)
}

/// The header must be exactly what [`format`] (and [`add_key`] for recovery) write:
/// [`CIPHER`] on every segment and keyslot, the integrity `layout` names, volume keys
/// of [`Integrity::volume_key_len`] bytes, keyslots 0 (and 1 with recovery) and no
/// other. Anything else was made or changed by someone else: a weaker cipher, a
/// dropped integrity tag, an extra keyslot holding someone else's key.
pub fn check_pinned(header: &Header, layout: Layout) -> Result<(), String> {
    for cipher in header.segment_ciphers.iter().chain(&header.keyslot_ciphers) {
        if cipher != CIPHER {
            return Err(format!("cipher `{cipher}`, expected `{CIPHER}`"));
        }
    }
    let expected = layout.integrity.header_type();
    for found in &header.segment_integrity {
        if found.as_deref() != expected {
            return Err(format!(
                "integrity `{}`, expected `{}` ([storage] integrity = \"{}\")",
                found.as_deref().unwrap_or("none"),
                expected.unwrap_or("none"),
                layout.integrity.as_str()
            ));
        }
    }
    let key_len = layout.integrity.volume_key_len();
    for size in &header.keyslot_key_sizes {
        if *size != key_len {
            return Err(format!("key size {size} bytes, expected {key_len}"));
        }
    }
    let wanted = layout.keyslots();
    if header.keyslot_ids != wanted {
        return Err(format!(
            "{} keyslot(s) [{}], expected {} [{}]{}",
            header.keyslot_ids.len(),
            header.keyslot_ids.join(", "),
            wanted.len(),
            wanted.join(", "),
            if layout.recovery {
                " (the TPM key and the recovery passphrase)"
            } else {
                " (the TPM key; [storage] recovery = true expects a second, for recovery)"
            }
        ));
    }
    Ok(())
}

/// Parses cryptsetup's LUKS2 JSON metadata (untrusted: it comes from the header file).
pub fn parse_metadata(json: &[u8]) -> Result<Header, String> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("metadata is not JSON: {e}"))?;
    let section = |name: &str| {
        value
            .get(name)
            .and_then(|s| s.as_object())
            .ok_or_else(|| format!("`{name}` is missing or not an object"))
    };
    let segments = section("segments")?;
    let keyslots = section("keyslots")?;
    let mut header = Header {
        segment_ciphers: Vec::new(),
        segment_integrity: Vec::new(),
        keyslot_ids: Vec::new(),
        keyslot_ciphers: Vec::new(),
        keyslot_key_sizes: Vec::new(),
    };
    for (id, entry) in segments {
        let cipher = entry
            .get("encryption")
            .and_then(|e| e.as_str())
            .ok_or_else(|| format!("segments.{id}: no `encryption` string"))?;
        header.segment_ciphers.push(cipher.to_string());
        let integrity = match entry.get("integrity") {
            None | Some(serde_json::Value::Null) => None,
            Some(i) => Some(
                i.get("type")
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| format!("segments.{id}.integrity: no `type` string"))?
                    .to_string(),
            ),
        };
        header.segment_integrity.push(integrity);
    }
    // serde_json's map is ordered by key; keyslot numbers are sorted numerically so
    // that "10" does not come before "2".
    let mut slots: Vec<(&String, &serde_json::Value)> = keyslots.iter().collect();
    slots.sort_by_key(|(id, _)| (id.len(), id.as_str().to_owned()));
    for (id, entry) in slots {
        header.keyslot_ids.push(id.clone());
        let cipher = entry
            .get("area")
            .and_then(|a| a.get("encryption"))
            .and_then(|e| e.as_str())
            .ok_or_else(|| format!("keyslots.{id}: no `encryption` string"))?;
        header.keyslot_ciphers.push(cipher.to_string());
        let size = entry
            .get("key_size")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("keyslots.{id}: no `key_size` number"))?;
        header.keyslot_key_sizes.push(size);
    }
    Ok(header)
}

/// Checks that `secret` opens keyslot `slot` of the container, without
/// device-mapper (`cryptsetup open --test-passphrase`). `Ok(false)`: it does not.
pub fn test_key(
    image: &Path,
    header: &Path,
    secret: &[u8],
    slot: u8,
) -> Result<bool, StorageError> {
    if secret.is_empty() {
        // cryptsetup reads an empty stdin as "nothing to read", not as a wrong key.
        return Ok(false);
    }
    let slot = slot.to_string();
    let args: Vec<&OsStr> = vec![
        "open".as_ref(),
        "--type".as_ref(),
        "luks2".as_ref(),
        "--test-passphrase".as_ref(),
        "--header".as_ref(),
        header.as_os_str(),
        "--key-slot".as_ref(),
        slot.as_ref(),
        "--key-file=-".as_ref(),
        image.as_os_str(),
    ];
    match cryptsetup(&args, &[secret])? {
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

/// The argument vector of [`open`]: the detached header, only the TPM keyslot, the
/// key on stdin.
pub fn open_args(image: &Path, header: &Path, name: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["open", "--type", "luks2", "--header"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(header.into());
    args.push("--key-slot".into());
    args.push(TPM_KEYSLOT.to_string().into());
    args.push("--key-file=-".into());
    args.push(image.into());
    args.push(name.into());
    args
}

/// Opens `image` as `/dev/mapper/<name>` with `key` (keyslot 0).
pub fn open(image: &Path, header: &Path, name: &str, key: &[u8]) -> Result<(), StorageError> {
    require_device_mapper()?;
    let args = open_args(image, header, name);
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    match cryptsetup(&args, &[key])? {
        (0, _, _) => Ok(()),
        (code, stderr, _) => Err(failed("open", code, stderr)),
    }
}

/// Closes `/dev/mapper/<name>`.
pub fn close(name: &str) -> Result<(), StorageError> {
    let args: Vec<&OsStr> = vec!["close".as_ref(), name.as_ref()];
    match cryptsetup(&args, &[])? {
        (0, _, _) => Ok(()),
        (code, stderr, _) => Err(failed("close", code, stderr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_luks_tells_another_header_from_a_failure_to_read_one() {
        let header = Path::new("/data/verigate-data.header");
        assert!(is_luks2(header, 0, String::new()).is_ok());
        let other = is_luks2(header, 1, String::new()).unwrap_err();
        assert!(matches!(other, StorageError::NotLuks2 { .. }), "{other}");
        let failure = is_luks2(
            header,
            4,
            "Device /data/verigate-data.header is not accessible.".into(),
        )
        .unwrap_err();
        assert!(
            matches!(
                failure,
                StorageError::Cryptsetup {
                    op: "isLuks",
                    code: 4,
                    ..
                }
            ),
            "{failure}"
        );
        assert!(failure.to_string().contains("not accessible"), "{failure}");
    }

    fn header(seg: &str, integrity: Option<&str>, slots: &[(&str, &str, u64)]) -> Header {
        Header {
            segment_ciphers: vec![seg.to_string()],
            segment_integrity: vec![integrity.map(str::to_string)],
            keyslot_ids: slots.iter().map(|s| s.0.to_string()).collect(),
            keyslot_ciphers: slots.iter().map(|s| s.1.to_string()).collect(),
            keyslot_key_sizes: slots.iter().map(|s| s.2).collect(),
        }
    }

    #[test]
    fn metadata_without_sections_or_ciphers_is_refused() {
        assert!(parse_metadata(b"not json").is_err());
        assert!(parse_metadata(b"{}").unwrap_err().contains("segments"));
        let e =
            parse_metadata(br#"{"segments":{"0":{"type":"crypt"}},"keyslots":{}}"#).unwrap_err();
        assert!(e.contains("segments.0"), "{e}");
        let e = parse_metadata(
            br#"{"segments":{"0":{"encryption":"aes-xts-plain64","integrity":{}}},"keyslots":{}}"#,
        )
        .unwrap_err();
        assert!(e.contains("segments.0.integrity"), "{e}");
        let h = parse_metadata(
            br#"{"segments":{"0":{"encryption":"cipher_null-ecb"}},
                 "keyslots":{"10":{"key_size":64,"area":{"encryption":"aes-xts-plain64"}},
                             "2":{"key_size":96,"area":{"encryption":"aes-xts-plain64"}}}}"#,
        )
        .unwrap();
        assert_eq!(h.segment_ciphers, vec!["cipher_null-ecb"]);
        assert_eq!(h.segment_integrity, vec![None]);
        assert_eq!(h.keyslot_ids, vec!["2", "10"]);
        assert_eq!(h.keyslot_key_sizes, vec![96, 64]);
        let e = parse_metadata(
            br#"{"segments":{"0":{"encryption":"aes-xts-plain64"}},
                 "keyslots":{"0":{"area":{"encryption":"aes-xts-plain64"}}}}"#,
        )
        .unwrap_err();
        assert!(e.contains("keyslots.0: no `key_size`"), "{e}");
    }

    #[test]
    fn only_the_header_init_writes_is_accepted() {
        let plain = Layout::default();
        let recovery = Layout {
            recovery: true,
            ..plain
        };
        let hmac = Layout {
            integrity: Integrity::HmacSha256,
            recovery: false,
        };
        assert!(check_pinned(&header(CIPHER, None, &[("0", CIPHER, 64)]), plain).is_ok());
        assert!(check_pinned(
            &header(CIPHER, None, &[("0", CIPHER, 64), ("1", CIPHER, 64)]),
            recovery
        )
        .is_ok());
        assert!(check_pinned(
            &header(CIPHER, Some("hmac(sha256)"), &[("0", CIPHER, 96)]),
            hmac
        )
        .is_ok());
        for (h, layout, why) in [
            (
                header("aes-cbc-essiv:sha256", None, &[("0", CIPHER, 64)]),
                plain,
                "cipher `aes-cbc",
            ),
            (
                header(CIPHER, None, &[("0", "aes-xts-plain", 64)]),
                plain,
                "cipher `aes-xts-plain`",
            ),
            (
                header(CIPHER, None, &[("0", CIPHER, 32)]),
                plain,
                "key size 32",
            ),
            (
                header(CIPHER, None, &[("0", CIPHER, 64), ("1", CIPHER, 64)]),
                plain,
                "2 keyslot(s) [0, 1], expected 1",
            ),
            (
                header(CIPHER, None, &[("0", CIPHER, 64)]),
                recovery,
                "1 keyslot(s) [0], expected 2",
            ),
            (
                header(CIPHER, None, &[("0", CIPHER, 64), ("2", CIPHER, 64)]),
                recovery,
                "[0, 2]",
            ),
            (header(CIPHER, None, &[]), plain, "0 keyslot(s)"),
            (
                header(CIPHER, None, &[("0", CIPHER, 64)]),
                hmac,
                "integrity `none`, expected `hmac(sha256)`",
            ),
            (
                header(CIPHER, Some("hmac(sha256)"), &[("0", CIPHER, 96)]),
                plain,
                "integrity `hmac(sha256)`, expected `none`",
            ),
            (
                header(CIPHER, Some("hmac(sha256)"), &[("0", CIPHER, 64)]),
                hmac,
                "key size 64 bytes, expected 96",
            ),
        ] {
            let e = check_pinned(&h, layout).unwrap_err();
            assert!(e.contains(why), "{h:?}: {e}");
        }
    }

    #[test]
    fn integrity_spellings() {
        assert_eq!(Integrity::parse("none"), Ok(Integrity::None));
        assert_eq!(Integrity::parse("hmac-sha256"), Ok(Integrity::HmacSha256));
        for bad in ["", "HMAC-SHA256", "hmac(sha256)", "aead"] {
            assert!(Integrity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn format_and_open_arguments_name_the_header_and_no_secret() {
        let image = Path::new("/var/lib/verigate-data.luks");
        let header = Path::new("/var/lib/verigate-data.header");
        let joined = |v: Vec<OsString>| {
            v.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            joined(format_args(image, header, Integrity::HmacSha256)),
            "luksFormat --type luks2 --batch-mode --cipher aes-xts-plain64 --key-size 512 \
             --integrity hmac-sha256 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
             --header /var/lib/verigate-data.header --key-slot 0 --key-file=- \
             /var/lib/verigate-data.luks"
        );
        assert!(!joined(format_args(image, header, Integrity::None)).contains("--integrity"));
        assert_eq!(
            joined(open_args(image, header, "verigate-data")),
            "open --type luks2 --header /var/lib/verigate-data.header --key-slot 0 \
             --key-file=- /var/lib/verigate-data.luks verigate-data"
        );
    }
}
