//! The snapshot: the reference state of a VM that later verifications compare against
//! (ARCHITECTURE.md, "Snapshot"). Field names follow the Cosmian VM snapshot so its users
//! feel at home.
//!
//! The policy parts (`tee_policy`, `tpm_policy`) are built from *verified* evidence with
//! the `from_*` helpers here, and verification compares exactly those fields, so what a
//! snapshot pins and what `verify` checks cannot drift apart.

use crate::binding::{hex_digest, Manifest};
use crate::ima::HashAlg;
use crate::tee::simulated::SimulatedReport;
use crate::tee::snp::SnpVerified;
use crate::tee::tdx::TdxVerified;
use crate::tpm::quote::VerifiedQuote;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// The only snapshot format this code reads and writes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The most snapshot JSON parsed (a whole root filesystem is a few hundred thousand files).
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;

/// What the TEE must keep reporting, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields, from = "TeePolicyWire")]
pub enum TeePolicy {
    /// SEV-SNP: the launch measurement and the guest policy.
    #[serde(rename = "sev-snp")]
    SevSnp {
        /// The launch measurement (48 bytes): the digest of the initial guest memory and VMSA.
        #[serde(with = "hex::serde")]
        measurement: Vec<u8>,
        /// The guest policy the VM was launched with (the report's `POLICY` field).
        policy: u64,
        /// The host-provided data bound at launch (32 bytes, the report's `HOST_DATA`).
        #[serde(with = "hex::serde")]
        host_data: Vec<u8>,
    },
    /// TDX: the TD's build-time measurement, the boot-time RTMRs 0..2 (RTMR3 is for
    /// run-time use and changes), the owner-provided IDs and the TD attributes.
    #[serde(rename = "tdx")]
    Tdx {
        /// The TD's build-time measurement (48 bytes).
        #[serde(with = "hex::serde")]
        mrtd: Vec<u8>,
        /// RTMR0, RTMR1 and RTMR2 as hex (48 bytes each), extended by firmware and boot loader.
        rtmrs: [String; 3],
        /// The owner-defined configuration ID (48 bytes).
        #[serde(with = "hex::serde")]
        mr_config_id: Vec<u8>,
        /// The TD owner's ID (48 bytes).
        #[serde(with = "hex::serde")]
        mr_owner: Vec<u8>,
        /// The owner-defined configuration of the TD (48 bytes).
        #[serde(with = "hex::serde")]
        mr_owner_config: Vec<u8>,
        /// The TD attributes (8 bytes), e.g. whether the TD is debuggable.
        #[serde(with = "hex::serde")]
        td_attributes: Vec<u8>,
        /// The extended features the TD may use (XFAM, 8 bytes).
        #[serde(with = "hex::serde")]
        xfam: Vec<u8>,
    },
    /// The simulated TEE: its measurement and policy, and the SHA-256 of its key.
    #[serde(rename = "simulated")]
    Simulated {
        /// The simulated measurement (48 bytes).
        #[serde(with = "hex::serde")]
        measurement: Vec<u8>,
        /// The simulated guest policy.
        policy: u64,
        /// SHA-256 of the simulated TEE's public key (SPKI DER), so a new key is a different VM.
        #[serde(with = "hex_digest")]
        public_key_sha256: [u8; 32],
    },
    /// No TEE at snapshot time.
    #[serde(rename = "none")]
    None,
}

/// The wire form of [`TeePolicy`] for parsing: `none` as an empty struct variant, so
/// that `deny_unknown_fields` refuses fields next to it (serde lets a unit variant of an
/// internally tagged enum take any).
#[derive(Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
enum TeePolicyWire {
    #[serde(rename = "sev-snp")]
    SevSnp {
        #[serde(with = "hex::serde")]
        measurement: Vec<u8>,
        policy: u64,
        #[serde(with = "hex::serde")]
        host_data: Vec<u8>,
    },
    #[serde(rename = "tdx")]
    Tdx {
        #[serde(with = "hex::serde")]
        mrtd: Vec<u8>,
        rtmrs: [String; 3],
        #[serde(with = "hex::serde")]
        mr_config_id: Vec<u8>,
        #[serde(with = "hex::serde")]
        mr_owner: Vec<u8>,
        #[serde(with = "hex::serde")]
        mr_owner_config: Vec<u8>,
        #[serde(with = "hex::serde")]
        td_attributes: Vec<u8>,
        #[serde(with = "hex::serde")]
        xfam: Vec<u8>,
    },
    #[serde(rename = "simulated")]
    Simulated {
        #[serde(with = "hex::serde")]
        measurement: Vec<u8>,
        policy: u64,
        #[serde(with = "hex_digest")]
        public_key_sha256: [u8; 32],
    },
    #[serde(rename = "none")]
    None {},
}

impl From<TeePolicyWire> for TeePolicy {
    fn from(w: TeePolicyWire) -> TeePolicy {
        match w {
            TeePolicyWire::SevSnp {
                measurement,
                policy,
                host_data,
            } => TeePolicy::SevSnp {
                measurement,
                policy,
                host_data,
            },
            TeePolicyWire::Tdx {
                mrtd,
                rtmrs,
                mr_config_id,
                mr_owner,
                mr_owner_config,
                td_attributes,
                xfam,
            } => TeePolicy::Tdx {
                mrtd,
                rtmrs,
                mr_config_id,
                mr_owner,
                mr_owner_config,
                td_attributes,
                xfam,
            },
            TeePolicyWire::Simulated {
                measurement,
                policy,
                public_key_sha256,
            } => TeePolicy::Simulated {
                measurement,
                policy,
                public_key_sha256,
            },
            TeePolicyWire::None {} => TeePolicy::None,
        }
    }
}

impl TeePolicy {
    /// The policy a verified SEV-SNP report pins.
    pub fn from_snp(v: &SnpVerified) -> TeePolicy {
        TeePolicy::SevSnp {
            measurement: v.measurement.to_vec(),
            policy: v.policy,
            host_data: v.host_data.to_vec(),
        }
    }

    /// The policy a verified TDX quote pins.
    pub fn from_tdx(v: &TdxVerified) -> TeePolicy {
        TeePolicy::Tdx {
            mrtd: v.mrtd.to_vec(),
            rtmrs: [
                hex::encode(v.rtmrs[0]),
                hex::encode(v.rtmrs[1]),
                hex::encode(v.rtmrs[2]),
            ],
            mr_config_id: v.mr_config_id.to_vec(),
            mr_owner: v.mr_owner.to_vec(),
            mr_owner_config: v.mr_owner_config.to_vec(),
            td_attributes: v.td_attributes.to_vec(),
            xfam: v.xfam.to_vec(),
        }
    }

    /// The policy a verified simulated report pins, with the SHA-256 of its key.
    pub fn from_simulated(v: &SimulatedReport, public_key_sha256: [u8; 32]) -> TeePolicy {
        TeePolicy::Simulated {
            measurement: v.measurement.to_vec(),
            policy: v.policy,
            public_key_sha256,
        }
    }

    /// Refuses fields of the wrong size, so that a hand-edited snapshot is reported as
    /// such rather than as a measurement that differs.
    fn check_lengths(&self) -> Result<(), SnapshotError> {
        fn len(field: &'static str, v: &[u8], expected: usize) -> Result<(), SnapshotError> {
            if v.len() == expected {
                Ok(())
            } else {
                Err(SnapshotError::BadPolicyField {
                    field,
                    expected,
                    got: hex::encode(v.get(..expected.min(v.len())).unwrap_or(&[])),
                })
            }
        }
        match self {
            TeePolicy::SevSnp {
                measurement,
                host_data,
                ..
            } => {
                len("measurement", measurement, 48)?;
                len("host_data", host_data, 32)
            }
            TeePolicy::Tdx {
                mrtd,
                rtmrs,
                mr_config_id,
                mr_owner,
                mr_owner_config,
                td_attributes,
                xfam,
            } => {
                len("mrtd", mrtd, 48)?;
                for r in rtmrs {
                    let bytes = hex::decode(r).map_err(|_| SnapshotError::BadPolicyField {
                        field: "rtmrs",
                        expected: 48,
                        got: r.chars().take(100).collect(),
                    })?;
                    len("rtmrs", &bytes, 48)?;
                }
                len("mr_config_id", mr_config_id, 48)?;
                len("mr_owner", mr_owner, 48)?;
                len("mr_owner_config", mr_owner_config, 48)?;
                len("td_attributes", td_attributes, 8)?;
                len("xfam", xfam, 8)
            }
            TeePolicy::Simulated { measurement, .. } => len("measurement", measurement, 48),
            TeePolicy::None => Ok(()),
        }
    }

    /// The `kind` string (ARCHITECTURE.md, "Snapshot").
    pub fn kind(&self) -> &'static str {
        match self {
            TeePolicy::SevSnp { .. } => "sev-snp",
            TeePolicy::Tdx { .. } => "tdx",
            TeePolicy::Simulated { .. } => "simulated",
            TeePolicy::None => "none",
        }
    }

    /// Field-by-field differences from `current` (empty when equal), each naming the
    /// field and both values, for a check's detail.
    pub fn differences(&self, current: &TeePolicy) -> Vec<String> {
        if self == current {
            return Vec::new();
        }
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
            (serde_json::to_value(self), serde_json::to_value(current))
        else {
            return vec!["TEE policy differs".into()];
        };
        let mut out = Vec::new();
        for (k, va) in &a {
            match b.get(k) {
                Some(vb) if vb == va => {}
                Some(vb) => out.push(format!("{k}: snapshot {}, now {}", short(va), short(vb))),
                None => out.push(format!("{k}: in the snapshot, absent now")),
            }
        }
        for k in b.keys().filter(|k| !a.contains_key(*k)) {
            out.push(format!("{k}: absent from the snapshot, present now"));
        }
        out
    }
}

fn short(v: &serde_json::Value) -> String {
    match v {
        // chars, not bytes: a string from a user's snapshot file may be any UTF-8.
        serde_json::Value::String(s) if s.chars().count() > 16 => {
            format!("{}…", s.chars().take(16).collect::<String>())
        }
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(short).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// What the TPM must keep reporting: the same boot (reset and restart counts) and the
/// same attestation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmPolicy {
    /// TPM resets (power cycles) since the TPM was provisioned: a reboot raises it.
    pub reset_count: u32,
    /// TPM restarts (resumes from hibernation) since the last reset.
    pub restart_count: u32,
    /// SHA-256 of the attestation key's `TPMT_PUBLIC`: a new key is a different TPM (or VM).
    #[serde(with = "hex_digest")]
    pub ak_sha256: [u8; 32],
}

impl TpmPolicy {
    /// The policy a verified quote and its attestation key (`TPMT_PUBLIC`) pin: the
    /// fields that verification compares (`tpm reboot`, `tpm key`).
    pub fn from_quote(quote: &VerifiedQuote, ak_public_tpmt: &[u8]) -> TpmPolicy {
        TpmPolicy {
            reset_count: quote.reset_count,
            restart_count: quote.restart_count,
            ak_sha256: Sha256::digest(ak_public_tpmt).into(),
        }
    }
}

/// Where the IMA log is quoted and which algorithm its file digests use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImaPolicy {
    /// The PCR the kernel extends with each IMA entry (10 by default).
    pub pcr: u32,
    /// The algorithm of the file digests in `filehashes`.
    pub hash_algorithm: HashAlg,
}

/// The reference state of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The snapshot format, always [`SNAPSHOT_VERSION`]; any other value is refused.
    pub version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// What the TEE reported when the snapshot was taken.
    pub tee_policy: TeePolicy,
    /// What the TPM reported when the snapshot was taken; absent without a TPM.
    pub tpm_policy: Option<TpmPolicy>,
    /// Where the IMA log was quoted; absent without IMA.
    pub ima: Option<ImaPolicy>,
    /// The certificates the VM served when the snapshot was taken.
    pub manifest: Manifest,
    /// `[path, hex digest]`: every file of the IMA log at snapshot time plus the scan of
    /// files the IMA policy would measure.
    pub filehashes: Vec<(String, String)>,
}

/// Why snapshot or whitelist bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The input is larger than [`MAX_SNAPSHOT_BYTES`].
    #[error("snapshot is {len} bytes; the most accepted is {max}")]
    TooLarge {
        /// Size of the input in bytes.
        len: usize,
        /// The most accepted, [`MAX_SNAPSHOT_BYTES`].
        max: usize,
    },
    /// The bytes are not JSON of the snapshot's shape; holds the parser's error.
    #[error("not a verigate snapshot: {0}")]
    Json(#[from] serde_json::Error),
    /// The manifest's entries carry no `spki_sha256`: the snapshot was taken before
    /// snapshots pinned keys. Refused rather than read as a certificate pin, so that one
    /// rule (the key) decides every verification.
    #[error(
        "the snapshot's manifest has no key digests (spki_sha256): it was taken by an older \
         verigate, before snapshots pinned keys; take a new snapshot with `verigate snapshot`"
    )]
    NoKeyPins,
    /// The `version` field is not [`SNAPSHOT_VERSION`].
    #[error(
        "snapshot version {0} is not supported (this verigate reads version {SNAPSHOT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// A `filehashes` digest is not hex.
    #[error("filehashes[{index}] ({path}): digest is not hex")]
    BadDigest {
        /// Position of the pair in `filehashes`, from 0.
        index: usize,
        /// The pair's path.
        path: String,
    },
    /// A `tee_policy` field does not have its fixed size (a hand-edited snapshot).
    #[error("tee_policy.{field}: expected {expected} bytes of hex, got `{got}`")]
    BadPolicyField {
        /// The field's name.
        field: &'static str,
        /// Its size in bytes.
        expected: usize,
        /// The value found, hex, cut to `expected` bytes (or the first 100 characters if not hex).
        got: String,
    },
    /// A `--whitelist` file is neither a list of pairs nor a snapshot; holds the snapshot parser's
    /// error.
    #[error("whitelist is neither a list of [path, hex digest] nor a snapshot: {0}")]
    BadWhitelist(String),
}

impl Snapshot {
    /// Parses and checks a snapshot from untrusted bytes (a file the user passed).
    pub fn from_json(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                len: bytes.len(),
                max: MAX_SNAPSHOT_BYTES,
            });
        }
        let s: Snapshot = serde_json::from_slice(bytes).map_err(|e| {
            if lacks_key_pins(bytes) {
                SnapshotError::NoKeyPins
            } else {
                SnapshotError::Json(e)
            }
        })?;
        if s.version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(s.version));
        }
        s.tee_policy.check_lengths()?;
        FileIndex::from_pairs(&s.filehashes)?;
        Ok(s)
    }

    /// The snapshot as pretty-printed JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a snapshot serializes: every field is plain data")
    }

    /// The `filehashes` as an index (they were checked when parsed).
    pub fn file_index(&self) -> FileIndex {
        FileIndex::from_pairs(&self.filehashes).unwrap_or_default()
    }
}

/// Whether `bytes` is a JSON object whose `manifest` has an entry without `spki_sha256`
/// (a snapshot from before key pins), so that its refusal can say what to do.
fn lacks_key_pins(bytes: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return false;
    };
    v.get("manifest")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|m| m.iter().any(|e| e.get("spki_sha256").is_none()))
}

/// Known (path, digest) pairs, for the question "is this IMA entry expected?". A path may
/// have several accepted digests (a snapshot plus a whitelist, or a file that changed
/// during the scan and is listed with both contents).
#[derive(Debug, Clone, Default)]
pub struct FileIndex {
    by_path: HashMap<String, HashSet<Vec<u8>>>,
}

impl FileIndex {
    /// An index of `[path, hex digest]` pairs; a digest that is not hex is an error.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<FileIndex, SnapshotError> {
        let mut idx = FileIndex::default();
        for (index, (path, digest)) in pairs.iter().enumerate() {
            let d = hex::decode(digest).map_err(|_| SnapshotError::BadDigest {
                index,
                path: path.clone(),
            })?;
            idx.by_path.entry(path.clone()).or_default().insert(d);
        }
        Ok(idx)
    }

    /// Reads a `--whitelist` file: a JSON list of `[path, hex digest]`, a snapshot
    /// (whose `filehashes` are taken), or, when it does not start as JSON, `path hex`
    /// lines ([`FileIndex::from_whitelist_lines`]).
    pub fn from_whitelist_json(bytes: &[u8]) -> Result<FileIndex, SnapshotError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if !matches!(first, Some(b'[' | b'{')) {
            return FileIndex::from_whitelist_lines(bytes);
        }
        if let Ok(pairs) = serde_json::from_slice::<Vec<(String, String)>>(bytes) {
            return FileIndex::from_pairs(&pairs);
        }
        match Snapshot::from_json(bytes) {
            Ok(s) => Ok(s.file_index()),
            Err(e) => Err(SnapshotError::BadWhitelist(e.to_string())),
        }
    }

    /// Reads a whitelist of `path hex-digest` lines (the Cosmian VM format): the digest
    /// is the last word, so a path may hold spaces; blank lines and `#` comments are
    /// skipped. A line that is not a path and a hex digest is an error naming the line.
    pub fn from_whitelist_lines(bytes: &[u8]) -> Result<FileIndex, SnapshotError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| SnapshotError::BadWhitelist("not UTF-8 text".into()))?;
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| SnapshotError::BadWhitelist(format!("line {}: {why}", n + 1));
            let (path, digest) = line
                .rsplit_once(char::is_whitespace)
                .ok_or_else(|| bad("expected `path hex-digest`"))?;
            let path = path.trim_end();
            if !path.starts_with('/') {
                return Err(bad("the path must be absolute (`path hex-digest`)"));
            }
            if digest.is_empty() || hex::decode(digest).is_err() {
                return Err(bad("the digest is not hex"));
            }
            pairs.push((path.to_string(), digest.to_ascii_lowercase()));
        }
        FileIndex::from_pairs(&pairs)
    }

    /// Adds every pair of `other`.
    pub fn extend(&mut self, other: FileIndex) {
        for (path, digests) in other.by_path {
            self.by_path.entry(path).or_default().extend(digests);
        }
    }

    /// Whether `digest` is an accepted digest of `path` (exact path bytes).
    pub fn contains(&self, path: &str, digest: &[u8]) -> bool {
        self.by_path.get(path).is_some_and(|d| d.contains(digest))
    }

    /// Number of distinct paths.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// Whether the index holds no path.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::ManifestEntry;

    fn sample() -> Snapshot {
        Snapshot {
            version: 1,
            created_at: "2026-11-28T00:00:00Z".into(),
            tee_policy: TeePolicy::Simulated {
                measurement: vec![1; 48],
                policy: 0x30000,
                public_key_sha256: [2; 32],
            },
            tpm_policy: Some(TpmPolicy {
                reset_count: 3,
                restart_count: 0,
                ak_sha256: [4; 32],
            }),
            ima: Some(ImaPolicy {
                pcr: 10,
                hash_algorithm: HashAlg::Sha256,
            }),
            manifest: Manifest::new(vec![ManifestEntry {
                name: "vm.example.com".into(),
                cert_sha256: [5; 32],
                spki_sha256: [6; 32],
            }])
            .unwrap(),
            filehashes: vec![("/usr/bin/bash".into(), "ab".repeat(32))],
        }
    }

    #[test]
    fn round_trips_in_the_design_shape() {
        let s = sample();
        let v: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(v["tee_policy"]["kind"], "simulated");
        assert_eq!(v["tpm_policy"]["reset_count"], 3);
        assert_eq!(v["ima"]["hash_algorithm"], "sha256");
        assert_eq!(v["filehashes"][0][0], "/usr/bin/bash");
        assert_eq!(Snapshot::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn a_snapshot_from_before_key_pins_is_refused_with_what_to_do() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["manifest"][0]
            .as_object_mut()
            .unwrap()
            .remove("spki_sha256");
        let e = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(e, SnapshotError::NoKeyPins), "{e}");
        assert!(e.to_string().contains("verigate snapshot"), "{e}");
        // Another problem in a snapshot that has its key pins is reported as itself.
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["manifest"][0]["spki_sha256"] = "xyz".into();
        let e = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(e, SnapshotError::Json(_)), "{e}");
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["version"] = 9.into();
        let e = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(e, SnapshotError::UnsupportedVersion(9)));
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["filehashes"][0][1] = "xyz".into();
        let e = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(e, SnapshotError::BadDigest { index: 0, .. }),
            "{e}"
        );
        assert!(Snapshot::from_json(b"{}").is_err());
        // `none` takes no fields: a measurement beside it is a mistake, not ignored.
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["tee_policy"] = serde_json::json!({"kind": "none", "measurement": "00"});
        let e = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("measurement"), "{e}");
        v["tee_policy"] = serde_json::json!({"kind": "none"});
        let s = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(s.tee_policy, TeePolicy::None);
        v["tee_policy"] = serde_json::json!({"kind": "sgx"});
        let e = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("sgx"), "{e}");
    }

    #[test]
    fn policy_fields_of_the_wrong_size_are_named() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["tee_policy"]["measurement"] = "abcd".into();
        let e = Snapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(
                e,
                SnapshotError::BadPolicyField {
                    field: "measurement",
                    expected: 48,
                    ..
                }
            ),
            "{e}"
        );
        let tdx = |rtmr: &str| {
            serde_json::json!({
                "version": 1, "created_at": "x", "tpm_policy": null, "ima": null,
                "manifest": [], "filehashes": [],
                "tee_policy": {"kind": "tdx", "mrtd": "00".repeat(48),
                    "rtmrs": [rtmr, "00".repeat(48), "00".repeat(48)],
                    "mr_config_id": "00".repeat(48), "mr_owner": "00".repeat(48),
                    "mr_owner_config": "00".repeat(48), "td_attributes": "00".repeat(8),
                    "xfam": "00".repeat(8)}
            })
        };
        let ok = tdx(&"00".repeat(48));
        assert!(Snapshot::from_json(&serde_json::to_vec(&ok).unwrap()).is_ok());
        // Multi-byte characters: refused by name, and never sliced mid-character.
        let bad = tdx(&"é".repeat(60));
        let e = Snapshot::from_json(&serde_json::to_vec(&bad).unwrap()).unwrap_err();
        assert!(
            matches!(e, SnapshotError::BadPolicyField { field: "rtmrs", .. }),
            "{e}"
        );
        let a: TeePolicy = serde_json::from_value(ok["tee_policy"].clone()).unwrap();
        let b: TeePolicy = serde_json::from_value(bad["tee_policy"].clone()).unwrap();
        let d = a.differences(&b);
        assert!(d[0].starts_with("rtmrs: snapshot [000000"), "{d:?}");
        assert!(d[0].len() < 200, "{d:?}");
    }

    #[test]
    fn file_index_and_whitelist() {
        let idx = sample().file_index();
        assert!(idx.contains("/usr/bin/bash", &[0xab; 32]));
        assert!(!idx.contains("/usr/bin/bash", &[0xac; 32]));
        assert!(!idx.contains("/usr/bin/sh", &[0xab; 32]));
        let wl = FileIndex::from_whitelist_json(
            format!(r#"[["/opt/x", "{}"]]"#, "01".repeat(32)).as_bytes(),
        )
        .unwrap();
        assert!(wl.contains("/opt/x", &[1; 32]));
        let from_snapshot = FileIndex::from_whitelist_json(&sample().to_json()).unwrap();
        assert_eq!(from_snapshot.len(), 1);
        assert!(matches!(
            FileIndex::from_whitelist_json(b"{\"a\": 1}"),
            Err(SnapshotError::BadWhitelist(_))
        ));
    }

    #[test]
    fn whitelist_lines_read_path_then_digest() {
        let text = format!(
            "# accepted\n/usr/bin/my app {}\n\n  /opt/x {}  \n",
            "AB".repeat(32),
            "01".repeat(32)
        );
        let wl = FileIndex::from_whitelist_json(text.as_bytes()).unwrap();
        assert!(wl.contains("/usr/bin/my app", &[0xab; 32]));
        assert!(wl.contains("/opt/x", &[1; 32]));
        assert_eq!(wl.len(), 2);
        for (bad, why) in [
            ("/opt/x\n", "line 1: expected"),
            ("/opt/x zz\n", "line 1: the digest is not hex"),
            ("# c\nopt/x 00\n", "line 2: the path must be absolute"),
        ] {
            match FileIndex::from_whitelist_json(bad.as_bytes()) {
                Err(SnapshotError::BadWhitelist(e)) => assert!(e.contains(why), "{bad}: {e}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(FileIndex::from_whitelist_json(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn policy_differences_name_the_field() {
        let a = sample().tee_policy;
        let TeePolicy::Simulated {
            policy,
            public_key_sha256,
            ..
        } = a.clone()
        else {
            unreachable!()
        };
        let b = TeePolicy::Simulated {
            measurement: vec![9; 48],
            policy,
            public_key_sha256,
        };
        let d = a.differences(&b);
        assert_eq!(d.len(), 1);
        assert!(d[0].starts_with("measurement: snapshot 0101"), "{d:?}");
        assert!(a.differences(&a).is_empty());
        assert!(a.differences(&TeePolicy::None)[0].starts_with("kind"));
    }
}
