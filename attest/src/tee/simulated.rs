//! The simulated TEE: lets the whole flow run on a machine without SEV-SNP or TDX (a
//! laptop, CI). It proves nothing about hardware, and the verifier refuses it unless told
//! otherwise.
//!
//! Its report carries the fields of an SNP report that verigate compares (version,
//! guest policy, a 48-byte launch measurement, the 64-byte report_data) and is signed
//! with ECDSA P-384 / SHA-384 by a key that verigated creates once and keeps in its data
//! dir. The evidence carries the public key; a snapshot pins its SHA-256, so a swapped
//! key fails verification.
//!
//! The measurement is the caller's choice: verigated reports the SHA-384 of its own
//! executable (so a new build looks like a new VM image), or the configured
//! `attestation.simulated_measurement` (see `gateway/src/attestation/tee.rs`).
//!
//! Report layout (little-endian integers, 228 bytes):
//! `magic "VGSIMTEE" (8) | version u32 | policy u64 | measurement [48] | report_data [64]
//!  | signature r||s [96]` — the signature covers everything before it.

use p384::ecdsa::signature::{Signer, Verifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use p384::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// First bytes of every simulated report.
pub const MAGIC: [u8; 8] = *b"VGSIMTEE";
/// The report layout this code writes and reads.
pub const REPORT_VERSION: u32 = 1;
/// Bytes covered by the signature.
pub const SIGNED_LEN: usize = 8 + 4 + 8 + 48 + 64;
/// The whole report.
pub const REPORT_LEN: usize = SIGNED_LEN + 96;
/// The key file's name under the data dir.
pub const KEY_FILE: &str = "simulated-tee-key.pem";
/// Guest policy of simulated reports: SNP's "SMT allowed" and reserved bit 17, debug off.
pub const DEFAULT_POLICY: u64 = 0x3_0000;
/// The SNP policy bit that allows a debugger into the guest; never set here.
pub const POLICY_DEBUG_BIT: u64 = 1 << 19;

/// Why a simulated key or report was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimulatedError {
    /// The report is not exactly [`REPORT_LEN`] bytes.
    #[error("simulated TEE report is {len} bytes; expected {REPORT_LEN}")]
    ReportLength {
        /// Length of the bytes given.
        len: usize,
    },
    /// The report does not start with [`MAGIC`].
    #[error("simulated TEE report does not start with the magic \"VGSIMTEE\"")]
    BadMagic,
    /// The report's version is not [`REPORT_VERSION`]; holds it.
    #[error("simulated TEE report version {0} is not supported (expected {REPORT_VERSION})")]
    UnsupportedVersion(u32),
    /// The signature is malformed or does not verify under the public key given.
    #[error("simulated TEE report signature does not verify under the given public key")]
    BadSignature,
    /// The public key is not P-384 SubjectPublicKeyInfo DER; holds the decoder's message.
    #[error("simulated TEE public key is not a P-384 SubjectPublicKeyInfo: {0}")]
    BadPublicKey(String),
    /// The key file exists but does not hold a P-384 PKCS#8 PEM key (or a new key
    /// could not be encoded).
    #[error("simulated TEE key file {path}: {why} (remove it to create a new key, which changes the pinned key)")]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// Why it was refused.
        why: String,
    },
    /// The key file or its folder cannot be read or created.
    #[error("simulated TEE key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The error from the file system.
        source: std::io::Error,
    },
    /// Writing a new key file failed.
    #[error("simulated TEE key file: {0}")]
    Save(durable::Error),
}

/// The verified content of a simulated report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedReport {
    /// Report layout version: [`REPORT_VERSION`].
    pub version: u32,
    /// Guest policy, with SNP's bit meanings ([`DEFAULT_POLICY`] in reports made here).
    pub policy: u64,
    /// The measurement the gateway chose: SHA-384 of its executable, or the configured
    /// one.
    pub measurement: [u8; 48],
    /// Data bound into the report; verigate puts the binding here (ARCHITECTURE.md,
    /// 'Binding').
    pub report_data: [u8; 64],
}

impl SimulatedReport {
    /// Whether the policy lets a debugger in (never true for reports this code makes).
    pub fn debug_allowed(&self) -> bool {
        self.policy & POLICY_DEBUG_BIT != 0
    }

    fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut out = [0u8; SIGNED_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..20].copy_from_slice(&self.policy.to_le_bytes());
        out[20..68].copy_from_slice(&self.measurement);
        out[68..132].copy_from_slice(&self.report_data);
        out
    }
}

/// The key of the simulated TEE, as verigated keeps it.
pub struct SimulatedTee {
    key: SigningKey,
}

impl SimulatedTee {
    /// Loads `<data_dir>/simulated-tee-key.pem`, or creates it (mode 0600, written to a
    /// temporary file and renamed, so a crash never leaves half a key). A file that
    /// exists but does not parse is an error, never silently replaced: replacing it
    /// would change the key that snapshots pin.
    pub fn load_or_create(data_dir: &Path) -> Result<SimulatedTee, SimulatedError> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(pem) => {
                let key =
                    SigningKey::from_pkcs8_pem(&pem).map_err(|e| SimulatedError::BadKeyFile {
                        path: path.clone(),
                        why: e.to_string(),
                    })?;
                Ok(SimulatedTee { key })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::random(&mut rand::rngs::OsRng);
                let pem =
                    key.to_pkcs8_pem(LineEnding::LF)
                        .map_err(|e| SimulatedError::BadKeyFile {
                            path: path.clone(),
                            why: e.to_string(),
                        })?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| SimulatedError::Io {
                        path: path.clone(),
                        source,
                    })?;
                }
                // Mode 0600 from creation: the key is never readable by others.
                durable::write(&path, pem.as_bytes(), 0o600).map_err(SimulatedError::Save)?;
                Ok(SimulatedTee { key })
            }
            Err(source) => Err(SimulatedError::Io { path, source }),
        }
    }

    /// A key that lives only in memory (tests).
    pub fn ephemeral() -> SimulatedTee {
        SimulatedTee {
            key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    /// The public key as SubjectPublicKeyInfo DER, the form the evidence carries.
    pub fn public_key_der(&self) -> Vec<u8> {
        VerifyingKey::from(&self.key)
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .expect("a P-384 public key always encodes")
    }

    /// A signed report binding `report_data` under `measurement`.
    pub fn report(&self, measurement: [u8; 48], report_data: [u8; 64]) -> Vec<u8> {
        let fields = SimulatedReport {
            version: REPORT_VERSION,
            policy: DEFAULT_POLICY,
            measurement,
            report_data,
        };
        let signed = fields.signed_bytes();
        let signature: Signature = self.key.sign(&signed);
        let mut out = signed.to_vec();
        out.extend_from_slice(&signature.to_bytes());
        out
    }
}

/// SHA-256 of a public key's SPKI DER: what a snapshot pins.
pub fn public_key_sha256(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

/// Checks the signature of a simulated report under `public_key` (SPKI DER) and returns
/// its fields.
pub fn verify(report: &[u8], public_key: &[u8]) -> Result<SimulatedReport, SimulatedError> {
    if report.len() != REPORT_LEN {
        return Err(SimulatedError::ReportLength { len: report.len() });
    }
    let (signed, sig) = report.split_at(SIGNED_LEN);
    if signed[..8] != MAGIC {
        return Err(SimulatedError::BadMagic);
    }
    let version = u32::from_le_bytes(signed[8..12].try_into().expect("4 bytes"));
    if version != REPORT_VERSION {
        return Err(SimulatedError::UnsupportedVersion(version));
    }
    let key = VerifyingKey::from_public_key_der(public_key)
        .map_err(|e| SimulatedError::BadPublicKey(e.to_string()))?;
    let signature = Signature::from_slice(sig).map_err(|_| SimulatedError::BadSignature)?;
    key.verify(signed, &signature)
        .map_err(|_| SimulatedError::BadSignature)?;
    Ok(SimulatedReport {
        version,
        policy: u64::from_le_bytes(signed[12..20].try_into().expect("8 bytes")),
        measurement: signed[20..68].try_into().expect("48 bytes"),
        report_data: signed[68..132].try_into().expect("64 bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_verifies_under_its_key_only() {
        let tee = SimulatedTee::ephemeral();
        let report = tee.report([3; 48], [4; 64]);
        assert_eq!(report.len(), REPORT_LEN);
        let fields = verify(&report, &tee.public_key_der()).unwrap();
        assert_eq!(fields.measurement, [3; 48]);
        assert_eq!(fields.report_data, [4; 64]);
        assert!(!fields.debug_allowed());
        let other = SimulatedTee::ephemeral();
        assert!(matches!(
            verify(&report, &other.public_key_der()),
            Err(SimulatedError::BadSignature)
        ));
    }

    #[test]
    fn every_flipped_byte_fails() {
        let tee = SimulatedTee::ephemeral();
        let report = tee.report([3; 48], [4; 64]);
        for i in 0..report.len() {
            let mut bad = report.clone();
            bad[i] ^= 0x01;
            assert!(
                verify(&bad, &tee.public_key_der()).is_err(),
                "flip at {i} passed"
            );
        }
    }

    #[test]
    fn bad_shapes_are_named() {
        let tee = SimulatedTee::ephemeral();
        let report = tee.report([0; 48], [0; 64]);
        assert!(matches!(
            verify(&report[..10], &tee.public_key_der()),
            Err(SimulatedError::ReportLength { len: 10 })
        ));
        let mut v2 = report.clone();
        v2[8] = 2;
        assert!(matches!(
            verify(&v2, &tee.public_key_der()),
            Err(SimulatedError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            verify(&report, b"junk"),
            Err(SimulatedError::BadPublicKey(_))
        ));
    }

    #[test]
    fn key_is_created_once_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = SimulatedTee::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = SimulatedTee::load_or_create(dir.path()).unwrap();
        assert_eq!(a.public_key_der(), b.public_key_der());
        std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        assert!(matches!(
            SimulatedTee::load_or_create(dir.path()),
            Err(SimulatedError::BadKeyFile { .. })
        ));
        // The corrupt file was kept for the operator to look at, not replaced.
        assert_eq!(
            std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap(),
            "not a key"
        );
    }
}
