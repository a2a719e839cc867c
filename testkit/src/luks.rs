//! LUKS2 headers edited as someone with write access to them could: the JSON metadata
//! rewritten, both copies, with their SHA-256 checksums recomputed so that cryptsetup
//! reads the result. Used where cryptsetup cannot write such a header here (a
//! `cipher_null` or `--integrity` format needs device-mapper).

use sha2::{Digest, Sha256};
use std::path::Path;

/// Rewrites the JSON metadata of the LUKS2 header in `file` with `edit` (both header
/// copies) and recomputes their checksums. Panics on a file that is not a LUKS2 header
/// with room for the result: this is a test helper.
pub fn rewrite_metadata(file: &Path, edit: impl Fn(&str) -> String) {
    let mut bytes = std::fs::read(file).expect("header file");
    let size = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let hdr_size = usize::try_from(size).expect("header size");
    for start in [0, hdr_size] {
        let area = &mut bytes[start..start + hdr_size];
        let json_end = 4096 + area[4096..].iter().position(|b| *b == 0).expect("NUL");
        let json = std::str::from_utf8(&area[4096..json_end])
            .expect("UTF-8 JSON")
            .to_string();
        let new = edit(&json);
        assert!(new.len() < hdr_size - 4096, "edited metadata too large");
        area[4096..].fill(0);
        area[4096..4096 + new.len()].copy_from_slice(new.as_bytes());
        // The checksum field (offset 448, 64 bytes) is zero while hashing.
        area[448..512].fill(0);
        let sum = Sha256::digest(&*area);
        area[448..480].copy_from_slice(&sum);
    }
    std::fs::write(file, bytes).expect("write header file");
}

/// Marks every data segment of the header in `file` as `cryptsetup luksFormat
/// --integrity hmac-sha256` records it (segment `integrity`, 96-byte volume keys: the
/// 64-byte XTS key and the 32-byte HMAC key), as the LUKS2 format describes it.
pub fn mark_integrity_hmac_sha256(file: &Path) {
    rewrite_metadata(file, |json| {
        let mut v: serde_json::Value = serde_json::from_str(json).expect("JSON");
        for seg in v["segments"]
            .as_object_mut()
            .expect("segments")
            .values_mut()
        {
            seg["integrity"] = serde_json::json!({
                "type": "hmac(sha256)",
                "journal_encryption": "none",
                "journal_integrity": "none"
            });
        }
        for slot in v["keyslots"]
            .as_object_mut()
            .expect("keyslots")
            .values_mut()
        {
            slot["key_size"] = 96.into();
        }
        v.to_string()
    });
}

/// A `cryptsetup` first on `PATH` that appends each argv it gets to a log, then runs
/// the real cryptsetup with the same arguments and stdin: the real tool does the work,
/// the wrapper only observes the command boundary (to show no secret is in argv,
/// which every user can read in `/proc/PID/cmdline`).
pub struct ArgvRecorder {
    /// The `PATH` to give the process under test: the wrapper's folder first.
    pub path: String,
    /// One line per cryptsetup run, its arguments joined by spaces.
    pub log: std::path::PathBuf,
}

impl ArgvRecorder {
    /// Writes the wrapper under `dir`. `None` (after `crate::require`, which fails
    /// under CI) when no real cryptsetup is installed.
    pub fn new(dir: &Path) -> Option<ArgvRecorder> {
        use std::os::unix::fs::PermissionsExt;
        let real = [
            "/usr/sbin/cryptsetup",
            "/sbin/cryptsetup",
            "/usr/bin/cryptsetup",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists());
        let Some(real) = real else {
            crate::require(
                false,
                "cryptsetup in /usr/sbin, /sbin or /usr/bin",
                crate::require::install::CRYPTSETUP,
            );
            return None;
        };
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let log = dir.join("argv.log");
        let wrapper = bin.join("cryptsetup");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec {real} \"$@\"\n",
                log.display()
            ),
        )
        .expect("wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Some(ArgvRecorder { path, log })
    }

    /// Everything recorded so far.
    pub fn argv(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
