//! TPM 2.0 quotes in pure Rust: parse the three structures a quote travels as
//! (`TPMS_ATTEST`, `TPMT_SIGNATURE`, the attestation key's `TPMT_PUBLIC`) and verify
//! them — the signature under the AK, the qualifying data (`extraData`), and the PCR
//! values against the quoted `pcrDigest`. No libtss2: the verifier CLI links this.
//!
//! Every parser reads untrusted bytes through `wire::Reader`, bounds-checked, so a short,
//! long or corrupted structure is a [`QuoteError`] that names the field and offset,
//! never a panic. Byte order is the TPM's wire format (big-endian), except for the
//! `tpm2_quote -o` "serialized" PCR file, which tpm2-tools writes as raw C structures
//! in the host's (little-endian) order.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use wire::Reader;

pub use crate::hash::HashAlg;
#[cfg(test)]
use crate::hash::TPM_ALG_SHA256;

/// `TPM_GENERATED_VALUE`: the first field of every structure the TPM signs itself, so a
/// restricted key never signs outside data that looks like a quote.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`: the `type` of a `TPMS_ATTEST` produced by `TPM2_Quote`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

const TPM_ALG_RSA: u16 = 0x0001;
const TPM_ALG_NULL: u16 = 0x0010;
const TPM_ALG_RSASSA: u16 = 0x0014;
const TPM_ALG_RSAES: u16 = 0x0015;
const TPM_ALG_RSAPSS: u16 = 0x0016;
const TPM_ALG_ECDSA: u16 = 0x0018;
const TPM_ALG_ECDAA: u16 = 0x001a;
const TPM_ALG_ECC: u16 = 0x0023;
const TPM_ECC_NIST_P256: u16 = 0x0003;
const TPM_ECC_NIST_P384: u16 = 0x0004;

/// `objectAttributes` bits that make a key an attestation key.
const ATTR_FIXED_TPM: u32 = 1 << 1;
const ATTR_RESTRICTED: u32 = 1 << 16;
const ATTR_DECRYPT: u32 = 1 << 17;
const ATTR_SIGN: u32 = 1 << 18;

/// Largest `sizeofSelect` accepted: 32 bytes select PCRs 0..=255, far more than any TPM
/// implements (24), and keeps every index in a `u8`.
const MAX_PCR_SELECT_BYTES: usize = 32;
/// `TPML_PCR_SELECTION` holds at most `HASH_COUNT` banks; no TPM has more than a few.
const MAX_PCR_BANKS: u32 = 16;

/// Why a quote, its signature, its key or its PCR values were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The structure ends inside a field.
    #[error("{what}: truncated at offset {offset}")]
    Truncated {
        /// The field, by its TPM name (`TPMS_ATTEST.extraData`, ...).
        what: &'static str,
        /// Offset of the field's first byte in the structure.
        offset: usize,
    },
    /// Bytes are left after the end of the structure.
    #[error("{what}: {extra} unexpected trailing bytes at offset {offset}")]
    TrailingBytes {
        /// The structure, by its TPM name.
        what: &'static str,
        /// Offset where the structure ended.
        offset: usize,
        /// How many bytes follow it.
        extra: usize,
    },
    /// `TPMS_ATTEST.magic` is not `TPM_GENERATED_VALUE`: the TPM did not produce these
    /// bytes (a TPM signs only attestations it generated with that magic).
    #[error("TPMS_ATTEST.magic is {got:#010x}, expected TPM_GENERATED_VALUE 0xff544347")]
    BadMagic {
        /// The magic found.
        got: u32,
    },
    /// `TPMS_ATTEST.type` is not `TPM_ST_ATTEST_QUOTE`: an attestation of another kind
    /// (a certify, a time attestation, ...), not a quote.
    #[error("TPMS_ATTEST.type is {got:#06x}, expected TPM_ST_ATTEST_QUOTE 0x8018")]
    WrongType {
        /// The type found.
        got: u16,
    },
    /// A field names a `TPM_ALG_ID` this verifier does not support.
    #[error("{what}: unsupported algorithm {id:#06x}")]
    UnsupportedAlgorithm {
        /// The field, by its TPM name.
        what: &'static str,
        /// The `TPM_ALG_ID` found.
        id: u16,
    },
    /// A field's value is out of range or inconsistent (a count too large, a selection
    /// bitmap too long, ...).
    #[error("{what}: {detail}")]
    Malformed {
        /// The field, by its TPM name.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The attestation key's public part is not a usable key (a point off the curve, a bad
    /// RSA modulus, a PEM that does not parse, ...); holds the reason.
    #[error("attestation key: {0}")]
    InvalidKey(String),
    /// The attestation key lacks `restricted`, `sign` or `fixedTPM`, or has `decrypt`: a
    /// key the TPM would also sign forged attestations with, or one that could have left
    /// the TPM.
    #[error(
        "attestation key is not a restricted signing key bound to its TPM \
         (objectAttributes {attributes:#010x}); such a key could sign forged quotes"
    )]
    AkNotRestrictedSigning {
        /// The key's `objectAttributes`.
        attributes: u32,
    },
    /// The TEE report vouches for a TPM key (Azure's `HCLAkPub`) and the quote's key is
    /// not it, or the TEE report did not verify so the vouched key is unknown.
    #[error("attestation key: {0}")]
    AkNotVouched(String),
    /// The signature's scheme does not fit the key's type (an RSA signature for an ECC
    /// key, ...).
    #[error("signature is {signature}, but the attestation key is {key}")]
    SignatureKeyMismatch {
        /// The signature's scheme: `ECDSA`, `RSASSA` or `RSAPSS`.
        signature: &'static str,
        /// The key's family: `an ECC key` or `an RSA key`.
        key: &'static str,
    },
    /// The signature does not verify over the `TPMS_ATTEST` bytes under the attestation
    /// key: the quote was altered, or another key signed it.
    #[error("signature does not verify over the quote under the attestation key")]
    BadSignature,
    /// The quote's `extraData` is not the qualifying data the verifier expects: the quote
    /// was made for another call (a replay).
    #[error(
        "extraData of the quote is {}, expected qualifying data {}",
        hex::encode(.got),
        hex::encode(.expected)
    )]
    QualifyingDataMismatch {
        /// The qualifying data the verifier computed.
        expected: Vec<u8>,
        /// The quote's `extraData`.
        got: Vec<u8>,
    },
    /// The quote selects a PCR for which no value was given.
    #[error("no value given for {bank} PCR {index}, which the quote selects")]
    MissingPcr {
        /// The PCR bank's name (`sha256`, ...).
        bank: &'static str,
        /// The PCR index.
        index: u8,
    },
    /// A value was given for a PCR the quote does not select, so nothing vouches for it.
    #[error("a value is given for {bank} PCR {index}, which the quote does not select")]
    UnquotedPcr {
        /// The PCR bank's name (`sha256`, ...).
        bank: &'static str,
        /// The PCR index.
        index: u8,
    },
    /// A PCR value is not the size of its bank's digest.
    #[error("{bank} PCR {index}: value has {got} bytes, expected {expected}")]
    PcrLength {
        /// The PCR bank's name (`sha256`, ...).
        bank: &'static str,
        /// The PCR index.
        index: u8,
        /// The bank's digest size in bytes.
        expected: usize,
        /// The size given, in bytes.
        got: usize,
    },
    /// The given PCR values do not hash to the quote's `pcrDigest`: they are not the
    /// values the TPM quoted.
    #[error(
        "pcrDigest of the quote is {}, the given PCR values hash to {}",
        hex::encode(.quoted),
        hex::encode(.computed)
    )]
    PcrDigestMismatch {
        /// The quote's `pcrDigest`.
        quoted: Vec<u8>,
        /// The hash of the given values, in selection order.
        computed: Vec<u8>,
    },
    /// The quote's `resetCount` differs from the snapshot's: the TPM was reset (the VM
    /// rebooted) since.
    #[error("resetCount is {got}, expected {expected}: the TPM was reset (a reboot) since")]
    ResetCountMismatch {
        /// The snapshot's count.
        expected: u32,
        /// The quote's count.
        got: u32,
    },
    /// The quote's `restartCount` differs from the snapshot's: the TPM was restarted
    /// (the VM resumed from hibernation) since.
    #[error(
        "restartCount is {got}, expected {expected}: the TPM was restarted (hibernation) since"
    )]
    RestartCountMismatch {
        /// The snapshot's count.
        expected: u32,
        /// The quote's count.
        got: u32,
    },
    /// A PCR values file or JSON object is malformed; holds what is wrong.
    #[error("PCR values: {0}")]
    PcrValues(String),
}

/// The input ended inside a field: the offset is the field's first byte (for a `TPM2B`
/// body, its size field's), as `wire` reports it.
impl From<wire::Truncated> for QuoteError {
    fn from(e: wire::Truncated) -> QuoteError {
        QuoteError::Truncated {
            what: e.field,
            offset: e.offset,
        }
    }
}

/// A structure with a tail is not the structure that was signed.
impl From<wire::Trailing> for QuoteError {
    fn from(e: wire::Trailing) -> QuoteError {
        QuoteError::TrailingBytes {
            what: e.field,
            offset: e.offset,
            extra: e.extra,
        }
    }
}

/// A `TPM2B_*`: a big-endian u16 size, then that many bytes.
fn tpm2b<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], QuoteError> {
    Ok(r.vec_u16_be(what)?.rest())
}

/// `TPMS_CLOCK_INFO`: the TPM's clock and its reboot counters at the time of the quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered (not wall-clock time).
    pub clock: u64,
    /// TPM resets (`TPM2_Startup(CLEAR)` after a power cycle): goes up on each reboot.
    pub reset_count: u32,
    /// TPM restarts (resume from hibernation): back to 0 on each reset.
    pub restart_count: u32,
    /// False if `clock` may have gone back since it was last reported.
    pub safe: bool,
}

/// One `TPMS_PCR_SELECTION`: a bank and the PCRs selected in it, in ascending order
/// (the order in which the TPM hashes them into `pcrDigest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcrSelection {
    /// The PCR bank (the bank's hash algorithm).
    pub bank: HashAlg,
    /// The selected PCR indices, ascending.
    pub pcrs: Vec<u8>,
}

impl PcrSelection {
    /// Parses one selection; the bitmap is `sizeofSelect` bytes, PCR `n` is bit `n % 8`
    /// of byte `n / 8`.
    fn read(r: &mut Reader<'_>) -> Result<PcrSelection, QuoteError> {
        let alg = r.u16_be("TPMS_PCR_SELECTION.hash")?;
        let bank = HashAlg::from_tpm(alg).ok_or(QuoteError::UnsupportedAlgorithm {
            what: "TPMS_PCR_SELECTION.hash (PCR bank)",
            id: alg,
        })?;
        let size = usize::from(r.u8("TPMS_PCR_SELECTION.sizeofSelect")?);
        if size > MAX_PCR_SELECT_BYTES {
            return Err(QuoteError::Malformed {
                what: "TPMS_PCR_SELECTION.sizeofSelect",
                detail: format!("{size} bytes, at most {MAX_PCR_SELECT_BYTES} supported"),
            });
        }
        let bitmap = r.take(size, "TPMS_PCR_SELECTION.pcrSelect")?;
        Ok(PcrSelection {
            bank,
            pcrs: bitmap_to_indices(bitmap),
        })
    }

    /// `sha256:10,16` — the notation of tpm2-tools.
    pub fn display(&self) -> String {
        let list: Vec<String> = self.pcrs.iter().map(u8::to_string).collect();
        format!("{}:{}", self.bank, list.join(","))
    }
}

fn bitmap_to_indices(bitmap: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (byte_index, byte) in bitmap.iter().enumerate() {
        for bit in 0..8u8 {
            if byte & (1 << bit) != 0 {
                // byte_index < MAX_PCR_SELECT_BYTES (32), so the index fits in a u8.
                if let Ok(i) = u8::try_from(byte_index * 8 + usize::from(bit)) {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// Formats a whole selection list as tpm2-tools does: `sha256:10,16+sha1:10`.
pub fn display_selection(selection: &[PcrSelection]) -> String {
    let parts: Vec<String> = selection.iter().map(PcrSelection::display).collect();
    parts.join("+")
}

fn read_pcr_selection_list(r: &mut Reader<'_>) -> Result<Vec<PcrSelection>, QuoteError> {
    let count = r.u32_be("TPML_PCR_SELECTION.count")?;
    if count > MAX_PCR_BANKS {
        return Err(QuoteError::Malformed {
            what: "TPML_PCR_SELECTION.count",
            detail: format!("{count} banks, at most {MAX_PCR_BANKS}"),
        });
    }
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(PcrSelection::read(r)?);
    }
    Ok(out)
}

/// A parsed `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`. Parsing checks only the
/// structure (and magic and type); nothing in it is trusted until [`verify`] checked
/// the signature over the bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// `qualifiedSigner`: the qualified name of the AK (depends on its hierarchy).
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the qualifying data (nonce) the caller passed to `TPM2_Quote`.
    pub extra_data: Vec<u8>,
    /// The TPM's clock and its reset and restart counts when it signed.
    pub clock_info: ClockInfo,
    /// Vendor-defined firmware version.
    pub firmware_version: u64,
    /// The PCRs covered by `pcr_digest`, in the order they were hashed.
    pub pcr_select: Vec<PcrSelection>,
    /// Hash (with the signing scheme's algorithm) of the selected PCR values, concatenated.
    pub pcr_digest: Vec<u8>,
}

/// The name used across the crate for the parsed `TPMS_ATTEST`.
pub type Attest = QuoteInfo;

impl QuoteInfo {
    /// Parses a marshalled `TPMS_ATTEST` (what `tpm2_quote -m` writes). Fails on a wrong
    /// magic or type, a truncated field, or trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<QuoteInfo, QuoteError> {
        let mut r = Reader::new(bytes);
        let magic = r.u32_be("TPMS_ATTEST.magic")?;
        if magic != TPM_GENERATED_VALUE {
            return Err(QuoteError::BadMagic { got: magic });
        }
        let kind = r.u16_be("TPMS_ATTEST.type")?;
        if kind != TPM_ST_ATTEST_QUOTE {
            return Err(QuoteError::WrongType { got: kind });
        }
        let qualified_signer = tpm2b(&mut r, "TPMS_ATTEST.qualifiedSigner")?.to_vec();
        let extra_data = tpm2b(&mut r, "TPMS_ATTEST.extraData")?.to_vec();
        let clock = r.u64_be("TPMS_CLOCK_INFO.clock")?;
        let reset_count = r.u32_be("TPMS_CLOCK_INFO.resetCount")?;
        let restart_count = r.u32_be("TPMS_CLOCK_INFO.restartCount")?;
        let safe = match r.u8("TPMS_CLOCK_INFO.safe")? {
            0 => false,
            1 => true,
            other => {
                return Err(QuoteError::Malformed {
                    what: "TPMS_CLOCK_INFO.safe",
                    detail: format!("{other} is not a TPMI_YES_NO (0 or 1)"),
                })
            }
        };
        let firmware_version = r.u64_be("TPMS_ATTEST.firmwareVersion")?;
        let pcr_select = read_pcr_selection_list(&mut r)?;
        let pcr_digest = tpm2b(&mut r, "TPMS_QUOTE_INFO.pcrDigest")?.to_vec();
        r.finish("TPMS_ATTEST")?;
        Ok(QuoteInfo {
            qualified_signer,
            extra_data,
            clock_info: ClockInfo {
                clock,
                reset_count,
                restart_count,
                safe,
            },
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }

    /// Checks `extraData` against the qualifying data the verifier expects.
    pub fn check_qualifying(&self, expected: &[u8]) -> Result<(), QuoteError> {
        if self.extra_data == expected {
            Ok(())
        } else {
            Err(QuoteError::QualifyingDataMismatch {
                expected: expected.to_vec(),
                got: self.extra_data.clone(),
            })
        }
    }

    /// Checks that `pcrs` holds exactly the selected PCRs and that their values, in
    /// selection order, hash (with `hash`, the signature scheme's algorithm, as the TPM
    /// does) to `pcrDigest`.
    pub fn check_pcrs(&self, pcrs: &PcrValues, hash: HashAlg) -> Result<(), QuoteError> {
        let mut concatenated = Vec::new();
        for sel in &self.pcr_select {
            for &index in &sel.pcrs {
                let value = pcrs.get(sel.bank, index).ok_or(QuoteError::MissingPcr {
                    bank: sel.bank.name(),
                    index,
                })?;
                concatenated.extend_from_slice(value);
            }
        }
        // A value the quote does not cover must not look attested to whoever reads the
        // verified PCR values afterwards.
        for (bank, index, _) in pcrs.iter() {
            let selected = self
                .pcr_select
                .iter()
                .any(|s| s.bank == bank && s.pcrs.contains(&index));
            if !selected {
                return Err(QuoteError::UnquotedPcr {
                    bank: bank.name(),
                    index,
                });
            }
        }
        let computed = hash.digest(&concatenated);
        if computed == self.pcr_digest {
            Ok(())
        } else {
            Err(QuoteError::PcrDigestMismatch {
                quoted: self.pcr_digest.clone(),
                computed,
            })
        }
    }
}

/// The public part of an attestation key, from a `TPMT_PUBLIC`, a `TPM2B_PUBLIC`
/// (`tpm2_createak -u`, `tpm2_readpublic -o`) or a PEM SubjectPublicKeyInfo
/// (`tpm2_readpublic -f pem`).
#[derive(Debug, Clone)]
pub struct AkPublic {
    /// The key material.
    pub key: AkKey,
    /// TPM attributes; `None` for a PEM key, which does not carry them.
    pub attributes: Option<u32>,
    /// The signing scheme fixed in the key (`None` if TPM_ALG_NULL or PEM).
    pub scheme: Option<(u16, HashAlg)>,
    /// `nameAlg`, `None` for PEM or an algorithm not listed in [`HashAlg`].
    pub name_alg: Option<HashAlg>,
    tpmt: Option<Vec<u8>>,
}

/// The key material of an attestation key.
#[derive(Debug, Clone)]
pub enum AkKey {
    /// An ECC key on NIST P-256, for ECDSA.
    EccP256(p256::ecdsa::VerifyingKey),
    /// An ECC key on NIST P-384, for ECDSA.
    EccP384(p384::ecdsa::VerifyingKey),
    /// An RSA key, for RSASSA-PKCS1-v1_5 or RSASSA-PSS.
    Rsa(rsa::RsaPublicKey),
}

impl AkKey {
    /// A short description: `ECC P-256`, `ECC P-384`, `RSA 2048`.
    pub fn describe(&self) -> String {
        match self {
            AkKey::EccP256(_) => "ECC P-256".to_string(),
            AkKey::EccP384(_) => "ECC P-384".to_string(),
            AkKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts;
                format!("RSA {}", k.size() * 8)
            }
        }
    }

    fn family(&self) -> &'static str {
        match self {
            AkKey::EccP256(_) | AkKey::EccP384(_) => "an ECC key",
            AkKey::Rsa(_) => "an RSA key",
        }
    }
}

/// Left-pads a big-endian integer to `N` bytes; longer (after leading zeros) fails.
fn left_pad<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let trimmed = bytes.get(first..)?;
    if trimmed.len() > N {
        return None;
    }
    let mut out = [0u8; N];
    out.get_mut(N - trimmed.len()..)?.copy_from_slice(trimmed);
    Some(out)
}

/// Reads a `TPMT_SYM_DEF_OBJECT` and ignores it (signing keys have none).
fn skip_sym_def_object(r: &mut Reader<'_>) -> Result<(), QuoteError> {
    let alg = r.u16_be("TPMT_SYM_DEF_OBJECT.algorithm")?;
    if alg != TPM_ALG_NULL {
        r.u16_be("TPMT_SYM_DEF_OBJECT.keyBits")?;
        r.u16_be("TPMT_SYM_DEF_OBJECT.mode")?;
    }
    Ok(())
}

/// Reads a `TPMT_RSA_SCHEME` / `TPMT_ECC_SCHEME`: the scheme and its hash, if any.
fn read_scheme(r: &mut Reader<'_>) -> Result<Option<(u16, HashAlg)>, QuoteError> {
    let scheme = r.u16_be("TPMT_ASYM_SCHEME.scheme")?;
    match scheme {
        TPM_ALG_NULL | TPM_ALG_RSAES => Ok(None),
        _ => {
            let hash = r.u16_be("TPMT_ASYM_SCHEME.details.hashAlg")?;
            if scheme == TPM_ALG_ECDAA {
                r.u16_be("TPMS_SCHEME_ECDAA.count")?;
            }
            match HashAlg::from_tpm(hash) {
                Some(h) => Ok(Some((scheme, h))),
                None => Err(QuoteError::UnsupportedAlgorithm {
                    what: "TPMT_ASYM_SCHEME.details.hashAlg",
                    id: hash,
                }),
            }
        }
    }
}

impl AkPublic {
    /// Parses a marshalled `TPMT_PUBLIC` (the form carried in evidence JSON).
    pub fn from_tpmt(bytes: &[u8]) -> Result<AkPublic, QuoteError> {
        let mut r = Reader::new(bytes);
        let mut ak = Self::read_tpmt(&mut r)?;
        r.finish("TPMT_PUBLIC")?;
        ak.tpmt = Some(bytes.to_vec());
        Ok(ak)
    }

    /// Parses a marshalled `TPM2B_PUBLIC` (u16 size, then a `TPMT_PUBLIC`).
    pub fn from_tpm2b(bytes: &[u8]) -> Result<AkPublic, QuoteError> {
        let mut r = Reader::new(bytes);
        let inner = tpm2b(&mut r, "TPM2B_PUBLIC")?;
        r.finish("TPM2B_PUBLIC")?;
        AkPublic::from_tpmt(inner)
    }

    /// Parses a PEM SubjectPublicKeyInfo (P-256, P-384 or RSA). It carries no TPM
    /// attributes, so [`AkPublic::attributes`] is `None` and the key's TPM identity
    /// (`TPMT_PUBLIC`, AK digest) is unknown.
    pub fn from_pem(text: &str) -> Result<AkPublic, QuoteError> {
        use p256::pkcs8::DecodePublicKey;
        let key = if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(text) {
            AkKey::EccP256(k)
        } else if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_pem(text) {
            AkKey::EccP384(k)
        } else {
            match rsa::RsaPublicKey::from_public_key_pem(text) {
                Ok(k) => AkKey::Rsa(k),
                Err(e) => {
                    return Err(QuoteError::InvalidKey(format!(
                        "PEM is not a P-256, P-384 or RSA SubjectPublicKeyInfo ({e})"
                    )))
                }
            }
        };
        Ok(AkPublic {
            key,
            attributes: None,
            scheme: None,
            name_alg: None,
            tpmt: None,
        })
    }

    /// A bare RSA key (e.g. Azure's `HCLAkPub` JWK): like PEM, it carries no TPM
    /// attributes.
    pub fn from_rsa(key: rsa::RsaPublicKey) -> AkPublic {
        AkPublic {
            key: AkKey::Rsa(key),
            attributes: None,
            scheme: None,
            name_alg: None,
            tpmt: None,
        }
    }

    /// Whether this is the RSA key `other` (same modulus and exponent).
    pub fn is_rsa_key(&self, other: &rsa::RsaPublicKey) -> bool {
        matches!(&self.key, AkKey::Rsa(k) if k == other)
    }

    /// Accepts any of the forms tpm2-tools writes: PEM (starts with `-----BEGIN`),
    /// `TPM2B_PUBLIC` (its leading size equals the rest of the file), else `TPMT_PUBLIC`.
    pub fn from_any(bytes: &[u8]) -> Result<AkPublic, QuoteError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN") {
            let text = std::str::from_utf8(bytes).map_err(|_| QuoteError::Malformed {
                what: "PEM public key",
                detail: "not UTF-8".to_string(),
            })?;
            return AkPublic::from_pem(text);
        }
        if let Some(size) = bytes.get(..2) {
            let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
            if size + 2 == bytes.len() {
                return AkPublic::from_tpm2b(bytes);
            }
        }
        AkPublic::from_tpmt(bytes)
    }

    fn read_tpmt(r: &mut Reader<'_>) -> Result<AkPublic, QuoteError> {
        let kind = r.u16_be("TPMT_PUBLIC.type")?;
        let name_alg = HashAlg::from_tpm(r.u16_be("TPMT_PUBLIC.nameAlg")?);
        let attributes = r.u32_be("TPMT_PUBLIC.objectAttributes")?;
        tpm2b(r, "TPMT_PUBLIC.authPolicy")?;
        let (key, scheme) = match kind {
            TPM_ALG_RSA => {
                skip_sym_def_object(r)?;
                let scheme = read_scheme(r)?;
                let key_bits = r.u16_be("TPMS_RSA_PARMS.keyBits")?;
                let exponent = match r.u32_be("TPMS_RSA_PARMS.exponent")? {
                    // 0 means the default exponent, 2^16 + 1.
                    0 => 65_537,
                    e => e,
                };
                let modulus = tpm2b(r, "TPMT_PUBLIC.unique.rsa")?;
                let n = rsa::BigUint::from_bytes_be(modulus);
                if n.bits() != usize::from(key_bits) {
                    return Err(QuoteError::InvalidKey(format!(
                        "RSA modulus has {} bits, keyBits says {key_bits}",
                        n.bits()
                    )));
                }
                let key = rsa::RsaPublicKey::new(n, rsa::BigUint::from(exponent))
                    .map_err(|e| QuoteError::InvalidKey(format!("RSA key: {e}")))?;
                (AkKey::Rsa(key), scheme)
            }
            TPM_ALG_ECC => {
                skip_sym_def_object(r)?;
                let scheme = read_scheme(r)?;
                let curve = r.u16_be("TPMS_ECC_PARMS.curveID")?;
                let kdf = r.u16_be("TPMT_KDF_SCHEME.scheme")?;
                if kdf != TPM_ALG_NULL {
                    r.u16_be("TPMT_KDF_SCHEME.details.hashAlg")?;
                }
                let x = tpm2b(r, "TPMS_ECC_POINT.x")?;
                let y = tpm2b(r, "TPMS_ECC_POINT.y")?;
                let key = match curve {
                    TPM_ECC_NIST_P256 => AkKey::EccP256(ecc_key::<32, _>(x, y, |sec1| {
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()
                    })?),
                    TPM_ECC_NIST_P384 => AkKey::EccP384(ecc_key::<48, _>(x, y, |sec1| {
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()
                    })?),
                    other => {
                        return Err(QuoteError::UnsupportedAlgorithm {
                            what: "TPMS_ECC_PARMS.curveID",
                            id: other,
                        })
                    }
                };
                (key, scheme)
            }
            other => {
                return Err(QuoteError::UnsupportedAlgorithm {
                    what: "TPMT_PUBLIC.type",
                    id: other,
                })
            }
        };
        Ok(AkPublic {
            key,
            attributes: Some(attributes),
            scheme,
            name_alg,
            tpmt: None,
        })
    }

    /// The marshalled `TPMT_PUBLIC`, when the key came in a TPM form. The
    /// `ak_digest` of ARCHITECTURE.md ("Binding") is SHA-256 of these bytes.
    pub fn tpmt_bytes(&self) -> Option<&[u8]> {
        self.tpmt.as_deref()
    }

    /// The TPM name of the key: `nameAlg || H_nameAlg(TPMT_PUBLIC)`.
    pub fn name(&self) -> Option<Vec<u8>> {
        let alg = self.name_alg?;
        let tpmt = self.tpmt.as_deref()?;
        let mut name = alg.tpm_id().to_be_bytes().to_vec();
        name.extend(alg.digest(tpmt));
        Some(name)
    }

    /// Fails unless the key is restricted, signing-only and fixed to its TPM: only such
    /// a key refuses to sign data that starts with `TPM_GENERATED_VALUE` unless the TPM
    /// produced it. A PEM key (no attributes) passes: the caller says so to the user.
    pub fn check_restricted_signing(&self) -> Result<(), QuoteError> {
        let Some(attributes) = self.attributes else {
            return Ok(());
        };
        let required = ATTR_RESTRICTED | ATTR_SIGN | ATTR_FIXED_TPM;
        if attributes & required != required || attributes & ATTR_DECRYPT != 0 {
            return Err(QuoteError::AkNotRestrictedSigning { attributes });
        }
        Ok(())
    }
}

fn ecc_key<const N: usize, K>(
    x: &[u8],
    y: &[u8],
    build: impl Fn(&[u8]) -> Option<K>,
) -> Result<K, QuoteError> {
    let (Some(x), Some(y)) = (left_pad::<N>(x), left_pad::<N>(y)) else {
        return Err(QuoteError::InvalidKey(format!(
            "ECC point coordinate longer than {N} bytes"
        )));
    };
    let mut sec1 = Vec::with_capacity(1 + 2 * N);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    build(&sec1).ok_or_else(|| QuoteError::InvalidKey("ECC point is not on the curve".into()))
}

/// A parsed `TPMT_SIGNATURE` (what `tpm2_quote -s` writes by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmSignature {
    /// `TPM_ALG_ECDSA`: an ECDSA signature.
    Ecdsa {
        /// The hash algorithm of the signed digest.
        hash: HashAlg,
        /// The signature's `r`, big-endian.
        r: Vec<u8>,
        /// The signature's `s`, big-endian.
        s: Vec<u8>,
    },
    /// `TPM_ALG_RSASSA`: an RSASSA-PKCS1-v1_5 signature.
    RsaSsa {
        /// The hash algorithm of the signed digest.
        hash: HashAlg,
        /// The signature bytes, big-endian (a valid one is the modulus's size).
        sig: Vec<u8>,
    },
    /// `TPM_ALG_RSAPSS`: an RSASSA-PSS signature.
    RsaPss {
        /// The hash algorithm of the signed digest (and of the MGF1 mask).
        hash: HashAlg,
        /// The signature bytes, big-endian (a valid one is the modulus's size).
        sig: Vec<u8>,
    },
}

impl TpmSignature {
    /// Parses a marshalled `TPMT_SIGNATURE`. SHA-1 signatures are refused: a collision
    /// would let one signed quote stand for another.
    pub fn parse(bytes: &[u8]) -> Result<TpmSignature, QuoteError> {
        let mut r = Reader::new(bytes);
        let alg = r.u16_be("TPMT_SIGNATURE.sigAlg")?;
        let hash_id = match alg {
            TPM_ALG_ECDSA | TPM_ALG_RSASSA | TPM_ALG_RSAPSS => r.u16_be("TPMT_SIGNATURE.hash")?,
            other => {
                return Err(QuoteError::UnsupportedAlgorithm {
                    what: "TPMT_SIGNATURE.sigAlg",
                    id: other,
                })
            }
        };
        let hash = match HashAlg::from_tpm(hash_id) {
            Some(HashAlg::Sha1) | None => {
                return Err(QuoteError::UnsupportedAlgorithm {
                    what: "TPMT_SIGNATURE.hash",
                    id: hash_id,
                })
            }
            Some(h) => h,
        };
        let sig = match alg {
            TPM_ALG_ECDSA => {
                let r_ = tpm2b(&mut r, "TPMS_SIGNATURE_ECDSA.signatureR")?.to_vec();
                let s = tpm2b(&mut r, "TPMS_SIGNATURE_ECDSA.signatureS")?.to_vec();
                TpmSignature::Ecdsa { hash, r: r_, s }
            }
            TPM_ALG_RSASSA => TpmSignature::RsaSsa {
                hash,
                sig: tpm2b(&mut r, "TPMS_SIGNATURE_RSA.sig")?.to_vec(),
            },
            _ => TpmSignature::RsaPss {
                hash,
                sig: tpm2b(&mut r, "TPMS_SIGNATURE_RSA.sig")?.to_vec(),
            },
        };
        r.finish("TPMT_SIGNATURE")?;
        Ok(sig)
    }

    /// Parses a `TPMT_SIGNATURE`, or, for an RSA key, the plain signature bytes that
    /// `tpm2_quote -f plain` writes (exactly the modulus's size): those carry no scheme,
    /// so it is the key's own (RSASSA-SHA256 when the key fixes none, as Azure's vTPM AK
    /// does not need to). A plain signature of another length is refused as such.
    pub fn parse_for_key(bytes: &[u8], ak: &AkPublic) -> Result<TpmSignature, QuoteError> {
        use rsa::traits::PublicKeyParts as _;
        let AkKey::Rsa(key) = &ak.key else {
            return TpmSignature::parse(bytes);
        };
        if bytes.len() != key.size() {
            return TpmSignature::parse(bytes);
        }
        let sig = bytes.to_vec();
        Ok(match ak.scheme {
            Some((TPM_ALG_RSAPSS, hash)) => TpmSignature::RsaPss { hash, sig },
            Some((_, hash)) => TpmSignature::RsaSsa { hash, sig },
            None => TpmSignature::RsaSsa {
                hash: HashAlg::Sha256,
                sig,
            },
        })
    }

    /// The digest algorithm of the scheme (also the one of `pcrDigest`).
    pub fn hash(&self) -> HashAlg {
        match self {
            TpmSignature::Ecdsa { hash, .. }
            | TpmSignature::RsaSsa { hash, .. }
            | TpmSignature::RsaPss { hash, .. } => *hash,
        }
    }

    /// `ECDSA-SHA256`, `RSASSA-SHA256`, `RSAPSS-SHA384`...
    pub fn describe(&self) -> String {
        let scheme = match self {
            TpmSignature::Ecdsa { .. } => "ECDSA",
            TpmSignature::RsaSsa { .. } => "RSASSA",
            TpmSignature::RsaPss { .. } => "RSAPSS",
        };
        format!("{scheme}-{}", self.hash().name().to_uppercase())
    }

    fn scheme_id(&self) -> u16 {
        match self {
            TpmSignature::Ecdsa { .. } => TPM_ALG_ECDSA,
            TpmSignature::RsaSsa { .. } => TPM_ALG_RSASSA,
            TpmSignature::RsaPss { .. } => TPM_ALG_RSAPSS,
        }
    }

    /// Verifies this signature over `message` (the marshalled `TPMS_ATTEST`) under `ak`.
    pub fn verify(&self, ak: &AkPublic, message: &[u8]) -> Result<(), QuoteError> {
        // A key created with a scheme signs only with that scheme; anything else was not
        // produced by this key.
        if let Some((scheme, hash)) = ak.scheme {
            if scheme != self.scheme_id() || hash != self.hash() {
                return Err(QuoteError::BadSignature);
            }
        }
        let digest = self.hash().digest(message);
        match (self, &ak.key) {
            (TpmSignature::Ecdsa { r, s, .. }, AkKey::EccP256(key)) => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                let (Some(r), Some(s)) = (left_pad::<32>(r), left_pad::<32>(s)) else {
                    return Err(QuoteError::BadSignature);
                };
                let sig = p256::ecdsa::Signature::from_scalars(r, s)
                    .map_err(|_| QuoteError::BadSignature)?;
                key.verify_prehash(&digest, &sig)
                    .map_err(|_| QuoteError::BadSignature)
            }
            (TpmSignature::Ecdsa { r, s, .. }, AkKey::EccP384(key)) => {
                use p384::ecdsa::signature::hazmat::PrehashVerifier;
                let (Some(r), Some(s)) = (left_pad::<48>(r), left_pad::<48>(s)) else {
                    return Err(QuoteError::BadSignature);
                };
                let sig = p384::ecdsa::Signature::from_scalars(r, s)
                    .map_err(|_| QuoteError::BadSignature)?;
                key.verify_prehash(&digest, &sig)
                    .map_err(|_| QuoteError::BadSignature)
            }
            (TpmSignature::RsaSsa { sig, hash }, AkKey::Rsa(key)) => {
                let scheme = match hash {
                    HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                    HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                    HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                    HashAlg::Sha1 => return Err(QuoteError::BadSignature),
                };
                key.verify(scheme, &digest, sig)
                    .map_err(|_| QuoteError::BadSignature)
            }
            (TpmSignature::RsaPss { sig, hash }, AkKey::Rsa(key)) => {
                verify_pss(key, *hash, &digest, sig)
            }
            (sig, key) => Err(QuoteError::SignatureKeyMismatch {
                signature: match sig {
                    TpmSignature::Ecdsa { .. } => "ECDSA",
                    TpmSignature::RsaSsa { .. } => "RSASSA",
                    TpmSignature::RsaPss { .. } => "RSAPSS",
                },
                key: key.family(),
            }),
        }
    }
}

/// RSA-PSS as TPMs produce it: salt as long as the digest (TPM 2.0 since revision 1.16),
/// or, on older TPMs, the longest salt that fits.
fn verify_pss(
    key: &rsa::RsaPublicKey,
    hash: HashAlg,
    digest: &[u8],
    sig: &[u8],
) -> Result<(), QuoteError> {
    use rsa::traits::PublicKeyParts;
    let h = hash.size();
    let em_bytes = (key.n().bits().saturating_sub(1)).div_ceil(8);
    let max_salt = em_bytes.saturating_sub(h + 2);
    for salt in [h, max_salt] {
        let scheme = match hash {
            HashAlg::Sha256 => rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
            HashAlg::Sha384 => rsa::Pss::new_with_salt::<sha2::Sha384>(salt),
            HashAlg::Sha512 => rsa::Pss::new_with_salt::<sha2::Sha512>(salt),
            HashAlg::Sha1 => return Err(QuoteError::BadSignature),
        };
        if key.verify(scheme, digest, sig).is_ok() {
            return Ok(());
        }
    }
    Err(QuoteError::BadSignature)
}

/// PCR values by bank and index, as the verifier receives them beside a quote. In JSON
/// (ARCHITECTURE.md, "Evidence"): `{"sha256": {"10": "<hex>"}}`. Each value has its bank's
/// digest length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcrValues {
    banks: BTreeMap<HashAlg, BTreeMap<u8, Vec<u8>>>,
}

impl PcrValues {
    /// No values.
    pub fn new() -> PcrValues {
        PcrValues::default()
    }

    /// Sets one value; fails if its length is not the bank's digest length.
    pub fn insert(&mut self, bank: HashAlg, index: u8, value: Vec<u8>) -> Result<(), QuoteError> {
        if value.len() != bank.size() {
            return Err(QuoteError::PcrLength {
                bank: bank.name(),
                index,
                expected: bank.size(),
                got: value.len(),
            });
        }
        self.banks.entry(bank).or_default().insert(index, value);
        Ok(())
    }

    /// One value, if present.
    pub fn get(&self, bank: HashAlg, index: u8) -> Option<&[u8]> {
        self.banks.get(&bank)?.get(&index).map(Vec::as_slice)
    }

    /// Every value, by bank then ascending index.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u8, &[u8])> + '_ {
        self.banks
            .iter()
            .flat_map(|(bank, m)| m.iter().map(move |(i, v)| (*bank, *i, v.as_slice())))
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.banks.values().map(BTreeMap::len).sum()
    }

    /// True if no value is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a PCR file beside a quote, in any of the forms we accept:
    /// - the evidence JSON `{"sha256": {"10": "<hex>"}}` (starts with `{`);
    /// - `tpm2_quote -o FILE` in its default "serialized" form: the raw C structures
    ///   `TPML_PCR_SELECTION`, a u32 count, then that many `TPML_DIGEST`, little-endian
    ///   (tpm2-tools writes host order; every platform it targets here is little-endian);
    /// - `tpm2_quote -o FILE -F values`: the digests concatenated in the order of
    ///   `selection` (the quote's own selection, since the file does not say).
    pub fn from_file_bytes(
        bytes: &[u8],
        selection: &[PcrSelection],
    ) -> Result<PcrValues, QuoteError> {
        if bytes.trim_ascii_start().starts_with(b"{") {
            return serde_json::from_slice(bytes)
                .map_err(|e| QuoteError::PcrValues(format!("JSON: {e}")));
        }
        match PcrValues::from_tpm2_tools_serialized(bytes) {
            Ok(v) => Ok(v),
            Err(serialized_err) => PcrValues::from_values_blob(bytes, selection).map_err(|e| {
                QuoteError::PcrValues(format!(
                    "neither tpm2-tools \"serialized\" ({serialized_err}) nor \"values\" ({e})"
                ))
            }),
        }
    }

    /// Parses the tpm2-tools "serialized" PCR file (see [`PcrValues::from_file_bytes`]).
    pub fn from_tpm2_tools_serialized(bytes: &[u8]) -> Result<PcrValues, QuoteError> {
        // C layout on x86-64/aarch64: TPMS_PCR_SELECTION {u16 hash; u8 sizeofSelect;
        // u8 pcrSelect[4]; 1 byte padding} = 8 bytes, 16 of them after a u32 count;
        // TPM2B_DIGEST {u16 size; u8 buffer[64]} = 66 bytes, 8 of them after a u32 count.
        const SEL_MAX: usize = 16;
        const SEL_SIZE: usize = 8;
        const PCR_SELECT_MAX: usize = 4;
        const DIGESTS_PER_LIST: usize = 8;
        const TPM2B_DIGEST_SIZE: usize = 66;
        let mut r = Reader::new(bytes);
        let count = usize::try_from(r.u32_le("TPML_PCR_SELECTION.count")?).unwrap_or(usize::MAX);
        if count > SEL_MAX {
            return Err(QuoteError::Malformed {
                what: "TPML_PCR_SELECTION.count",
                detail: format!("{count} > {SEL_MAX}"),
            });
        }
        let selections = r.take(SEL_MAX * SEL_SIZE, "TPML_PCR_SELECTION.pcrSelections")?;
        let mut wanted: Vec<(HashAlg, u8)> = Vec::new();
        for i in 0..count {
            let sel =
                selections
                    .get(i * SEL_SIZE..(i + 1) * SEL_SIZE)
                    .ok_or(QuoteError::Truncated {
                        what: "TPMS_PCR_SELECTION",
                        offset: 4 + i * SEL_SIZE,
                    })?;
            let alg = u16::from_le_bytes([sel[0], sel[1]]);
            let bank = HashAlg::from_tpm(alg).ok_or(QuoteError::UnsupportedAlgorithm {
                what: "TPMS_PCR_SELECTION.hash (PCR bank)",
                id: alg,
            })?;
            let size = usize::from(sel[2]);
            if size > PCR_SELECT_MAX {
                return Err(QuoteError::Malformed {
                    what: "TPMS_PCR_SELECTION.sizeofSelect",
                    detail: format!("{size} > {PCR_SELECT_MAX}"),
                });
            }
            let bitmap = sel.get(3..3 + size).unwrap_or_default();
            wanted.extend(bitmap_to_indices(bitmap).into_iter().map(|p| (bank, p)));
        }
        let lists = usize::try_from(r.u32_le("TPML_DIGEST list count")?).unwrap_or(usize::MAX);
        // One TPML_DIGEST per 8 PCRs, so the count is bounded by the selection.
        if lists > wanted.len().div_ceil(DIGESTS_PER_LIST).max(1) {
            return Err(QuoteError::Malformed {
                what: "TPML_DIGEST list count",
                detail: format!("{lists} lists for {} selected PCRs", wanted.len()),
            });
        }
        let mut digests: Vec<&[u8]> = Vec::new();
        for _ in 0..lists {
            let n = usize::try_from(r.u32_le("TPML_DIGEST.count")?).unwrap_or(usize::MAX);
            if n > DIGESTS_PER_LIST {
                return Err(QuoteError::Malformed {
                    what: "TPML_DIGEST.count",
                    detail: format!("{n} > {DIGESTS_PER_LIST}"),
                });
            }
            let entries = r.take(DIGESTS_PER_LIST * TPM2B_DIGEST_SIZE, "TPML_DIGEST.digests")?;
            for j in 0..n {
                let entry = entries
                    .get(j * TPM2B_DIGEST_SIZE..(j + 1) * TPM2B_DIGEST_SIZE)
                    .unwrap_or_default();
                let (Some(lo), Some(hi)) = (entry.first(), entry.get(1)) else {
                    continue;
                };
                let size = usize::from(u16::from_le_bytes([*lo, *hi]));
                let value = entry.get(2..2 + size).ok_or(QuoteError::Malformed {
                    what: "TPM2B_DIGEST.size",
                    detail: format!("{size} > 64"),
                })?;
                digests.push(value);
            }
        }
        r.finish("tpm2-tools serialized PCR file")?;
        if digests.len() != wanted.len() {
            return Err(QuoteError::Malformed {
                what: "tpm2-tools serialized PCR file",
                detail: format!(
                    "{} digests for {} selected PCRs",
                    digests.len(),
                    wanted.len()
                ),
            });
        }
        let mut out = PcrValues::new();
        for ((bank, index), value) in wanted.into_iter().zip(digests) {
            out.insert(bank, index, value.to_vec())?;
        }
        Ok(out)
    }

    /// Splits a concatenation of PCR values in `selection` order (tpm2-tools "values").
    pub fn from_values_blob(
        bytes: &[u8],
        selection: &[PcrSelection],
    ) -> Result<PcrValues, QuoteError> {
        let mut r = Reader::new(bytes);
        let mut out = PcrValues::new();
        for sel in selection {
            for &index in &sel.pcrs {
                let value = r.take(sel.bank.size(), "PCR value")?;
                out.insert(sel.bank, index, value.to_vec())?;
            }
        }
        r.finish("PCR values")?;
        Ok(out)
    }
}

impl Serialize for PcrValues {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.banks.len()))?;
        for (bank, values) in &self.banks {
            let inner: BTreeMap<u8, String> =
                values.iter().map(|(i, v)| (*i, hex::encode(v))).collect();
            // serde_json writes integer keys as strings: {"10": "..."}.
            map.serialize_entry(bank.name(), &inner)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for PcrValues {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::deserialize(deserializer)?;
        let mut out = PcrValues::new();
        for (bank_name, values) in raw {
            let bank = bank_name.parse::<HashAlg>().map_err(|_| {
                D::Error::custom(format!(
                    "unknown PCR bank `{bank_name}` (expected sha1, sha256, sha384 or sha512)"
                ))
            })?;
            for (index, value) in values {
                let i: u8 = index.parse().map_err(|_| {
                    D::Error::custom(format!(
                        "{bank_name}: PCR index `{index}` is not a number 0..=255"
                    ))
                })?;
                let bytes = hex::decode(&value).map_err(|e| {
                    D::Error::custom(format!("{bank_name} PCR {i}: value is not hex ({e})"))
                })?;
                out.insert(bank, i, bytes).map_err(D::Error::custom)?;
            }
        }
        Ok(out)
    }
}

/// What a verified quote tells: the TPM's counters and clock, and which PCRs the
/// verified `pcrDigest` covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQuote {
    /// TPM resets since the TPM was manufactured or cleared: a reboot raises it.
    pub reset_count: u32,
    /// Resumes from hibernation since the last reset.
    pub restart_count: u32,
    /// Milliseconds the TPM has been running since its clock was last set.
    pub clock: u64,
    /// False if the clock may have gone back since last reported.
    pub safe: bool,
    /// Vendor-defined firmware version, from the quote.
    pub firmware_version: u64,
    /// The PCRs whose values the quote attests.
    pub pcr_select: Vec<PcrSelection>,
    /// The verified `extraData`.
    pub extra_data: Vec<u8>,
    /// The signature scheme, e.g. `ECDSA-SHA256`.
    pub signature_scheme: String,
}

impl VerifiedQuote {
    /// Compares the counters with those recorded in a snapshot: a different
    /// `resetCount` means the VM rebooted, a different `restartCount` that it resumed.
    pub fn check_counts(
        &self,
        expected_reset: u32,
        expected_restart: u32,
    ) -> Result<(), QuoteError> {
        if self.reset_count != expected_reset {
            return Err(QuoteError::ResetCountMismatch {
                expected: expected_reset,
                got: self.reset_count,
            });
        }
        if self.restart_count != expected_restart {
            return Err(QuoteError::RestartCountMismatch {
                expected: expected_restart,
                got: self.restart_count,
            });
        }
        Ok(())
    }
}

/// Verifies a quote: `ak_public_tpmt` (marshalled `TPMT_PUBLIC`) must be a restricted
/// signing key, `signature` must verify over `attest` under it, `extraData` must equal
/// `expected_qualifying`, and `pcrs` must be exactly the selected PCRs, hashing to
/// `pcrDigest`. The reboot counters are returned, not judged: see
/// [`VerifiedQuote::check_counts`].
pub fn verify(
    ak_public_tpmt: &[u8],
    attest: &[u8],
    signature: &[u8],
    pcrs: &PcrValues,
    expected_qualifying: &[u8],
) -> Result<VerifiedQuote, QuoteError> {
    let ak = AkPublic::from_tpmt(ak_public_tpmt)?;
    verify_with_key(&ak, attest, signature, pcrs, expected_qualifying)
}

/// [`verify`] with an already parsed key (e.g. from PEM, whose attributes are unknown).
pub fn verify_with_key(
    ak: &AkPublic,
    attest: &[u8],
    signature: &[u8],
    pcrs: &PcrValues,
    expected_qualifying: &[u8],
) -> Result<VerifiedQuote, QuoteError> {
    ak.check_restricted_signing()?;
    let info = QuoteInfo::parse(attest)?;
    let sig = TpmSignature::parse_for_key(signature, ak)?;
    // Nothing in `info` is trusted before this line.
    sig.verify(ak, attest)?;
    info.check_qualifying(expected_qualifying)?;
    info.check_pcrs(pcrs, sig.hash())?;
    Ok(VerifiedQuote {
        reset_count: info.clock_info.reset_count,
        restart_count: info.clock_info.restart_count,
        clock: info.clock_info.clock,
        safe: info.clock_info.safe,
        firmware_version: info.firmware_version,
        pcr_select: info.pcr_select,
        extra_data: info.extra_data,
        signature_scheme: sig.describe(),
    })
}

#[cfg(test)]
mod tests {
    //! Structures built field by field as the TPM 2.0 specification lays them out, signed
    //! with a software P-256 key: this covers every bad-input path without a TPM. The
    //! same checks against a real TPM are in `tests/tpm_swtpm.rs` and `tests/tpm_tools.rs`.
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use sha2::Digest as _;

    const ATTRS_AK: u32 = 0x0005_0072;

    fn signing_key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_bytes(&[7u8; 32].into()).unwrap()
    }

    fn tpm2b(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend(u16::try_from(bytes.len()).unwrap().to_be_bytes());
        out.extend(bytes);
    }

    fn ecc_tpmt(key: &p256::ecdsa::VerifyingKey, attributes: u32) -> Vec<u8> {
        let point = key.to_encoded_point(false);
        let mut t = Vec::new();
        t.extend(TPM_ALG_ECC.to_be_bytes());
        t.extend(TPM_ALG_SHA256.to_be_bytes());
        t.extend(attributes.to_be_bytes());
        tpm2b(&mut t, &[]);
        t.extend(TPM_ALG_NULL.to_be_bytes());
        t.extend(TPM_ALG_ECDSA.to_be_bytes());
        t.extend(TPM_ALG_SHA256.to_be_bytes());
        t.extend(TPM_ECC_NIST_P256.to_be_bytes());
        t.extend(TPM_ALG_NULL.to_be_bytes());
        tpm2b(&mut t, point.x().unwrap());
        tpm2b(&mut t, point.y().unwrap());
        t
    }

    /// A TPMS_ATTEST quoting SHA-256 PCR 10 with the given value.
    fn attest(extra: &[u8], pcr10: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend(TPM_GENERATED_VALUE.to_be_bytes());
        a.extend(TPM_ST_ATTEST_QUOTE.to_be_bytes());
        tpm2b(&mut a, &[0x00, 0x0b, 1, 2, 3]);
        tpm2b(&mut a, extra);
        a.extend(1234u64.to_be_bytes());
        a.extend(15u32.to_be_bytes());
        a.extend(2u32.to_be_bytes());
        a.push(1);
        a.extend(0x2019_1023u64.to_be_bytes());
        a.extend(1u32.to_be_bytes());
        a.extend(TPM_ALG_SHA256.to_be_bytes());
        a.extend([3, 0x00, 0x04, 0x00]);
        tpm2b(&mut a, &sha2::Sha256::digest(pcr10));
        a
    }

    fn sign(key: &p256::ecdsa::SigningKey, message: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = key.sign_prehash(&sha2::Sha256::digest(message)).unwrap();
        let (r, s) = sig.split_bytes();
        let mut out = Vec::new();
        out.extend(TPM_ALG_ECDSA.to_be_bytes());
        out.extend(TPM_ALG_SHA256.to_be_bytes());
        tpm2b(&mut out, &r);
        tpm2b(&mut out, &s);
        out
    }

    fn pcrs(value: &[u8]) -> PcrValues {
        let mut p = PcrValues::new();
        p.insert(HashAlg::Sha256, 10, value.to_vec()).unwrap();
        p
    }

    struct Fixture {
        ak: Vec<u8>,
        attest: Vec<u8>,
        sig: Vec<u8>,
        pcrs: PcrValues,
        nonce: Vec<u8>,
    }

    fn fixture() -> Fixture {
        let key = signing_key();
        let nonce = vec![0x42; 32];
        let pcr = [0x11u8; 32];
        let attest = attest(&nonce, &pcr);
        let sig = sign(&key, &attest);
        Fixture {
            ak: ecc_tpmt(key.verifying_key(), ATTRS_AK),
            attest,
            sig,
            pcrs: pcrs(&pcr),
            nonce,
        }
    }

    #[test]
    fn a_well_formed_quote_verifies() {
        let f = fixture();
        let v = verify(&f.ak, &f.attest, &f.sig, &f.pcrs, &f.nonce).unwrap();
        assert_eq!((v.reset_count, v.restart_count, v.clock), (15, 2, 1234));
        assert!(v.safe);
        assert_eq!(display_selection(&v.pcr_select), "sha256:10");
        assert_eq!(v.check_counts(15, 2), Ok(()));
        assert_eq!(
            v.check_counts(15, 3),
            Err(QuoteError::RestartCountMismatch {
                expected: 3,
                got: 2
            })
        );
    }

    #[test]
    fn every_prefix_of_the_attest_is_truncated() {
        let f = fixture();
        for len in 0..f.attest.len() {
            let err = QuoteInfo::parse(&f.attest[..len]).unwrap_err();
            assert!(
                matches!(err, QuoteError::Truncated { offset, .. } if offset <= len),
                "prefix {len}: {err:?}"
            );
        }
        let err = QuoteInfo::parse(&f.attest[..5]).unwrap_err();
        assert_eq!(err.to_string(), "TPMS_ATTEST.type: truncated at offset 4");
        let mut long = f.attest.clone();
        long.push(0);
        assert_eq!(
            QuoteInfo::parse(&long),
            Err(QuoteError::TrailingBytes {
                what: "TPMS_ATTEST",
                offset: f.attest.len(),
                extra: 1
            })
        );
    }

    #[test]
    fn malformed_attest_fields_are_named() {
        let f = fixture();
        let mut other_type = f.attest.clone();
        other_type[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert_eq!(
            QuoteInfo::parse(&other_type),
            Err(QuoteError::WrongType { got: 0x8017 })
        );
        // Offsets: magic 4 + type 2 + signer (2+5) + extra (2+32) + clock 8 + counts 8.
        let safe_at = 4 + 2 + 7 + 34 + 8 + 8;
        let mut bad_safe = f.attest.clone();
        bad_safe[safe_at] = 2;
        assert!(matches!(
            QuoteInfo::parse(&bad_safe),
            Err(QuoteError::Malformed {
                what: "TPMS_CLOCK_INFO.safe",
                ..
            })
        ));
        let count_at = safe_at + 1 + 8;
        let mut many_banks = f.attest.clone();
        many_banks[count_at + 3] = 17;
        assert!(matches!(
            QuoteInfo::parse(&many_banks),
            Err(QuoteError::Malformed {
                what: "TPML_PCR_SELECTION.count",
                ..
            })
        ));
        let mut sm3 = f.attest.clone();
        sm3[count_at + 5] = 0x12;
        assert!(matches!(
            QuoteInfo::parse(&sm3),
            Err(QuoteError::UnsupportedAlgorithm { id: 0x0012, .. })
        ));
        let mut huge_select = f.attest.clone();
        huge_select[count_at + 6] = 33;
        assert!(matches!(
            QuoteInfo::parse(&huge_select),
            Err(QuoteError::Malformed {
                what: "TPMS_PCR_SELECTION.sizeofSelect",
                ..
            })
        ));
    }

    #[test]
    fn every_prefix_of_signature_and_key_fails() {
        let f = fixture();
        for len in 0..f.sig.len() {
            assert!(matches!(
                TpmSignature::parse(&f.sig[..len]),
                Err(QuoteError::Truncated { .. })
            ));
        }
        for len in 0..f.ak.len() {
            assert!(
                AkPublic::from_tpmt(&f.ak[..len]).is_err(),
                "prefix {len} of TPMT_PUBLIC"
            );
        }
        let mut long = f.ak.clone();
        long.push(0);
        assert!(matches!(
            AkPublic::from_tpmt(&long),
            Err(QuoteError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn unsupported_or_weak_signatures_are_refused() {
        let f = fixture();
        let mut sha1 = f.sig.clone();
        sha1[3] = 0x04;
        assert_eq!(
            TpmSignature::parse(&sha1),
            Err(QuoteError::UnsupportedAlgorithm {
                what: "TPMT_SIGNATURE.hash",
                id: 4
            })
        );
        let mut sm2 = f.sig.clone();
        sm2[1] = 0x1b;
        assert!(matches!(
            TpmSignature::parse(&sm2),
            Err(QuoteError::UnsupportedAlgorithm {
                what: "TPMT_SIGNATURE.sigAlg",
                ..
            })
        ));
        // r of 33 significant bytes, and r = 0: not a P-256 signature.
        let ak = AkPublic::from_tpmt(&f.ak).unwrap();
        let wide = TpmSignature::Ecdsa {
            hash: HashAlg::Sha256,
            r: vec![1; 33],
            s: vec![1; 32],
        };
        assert_eq!(wide.verify(&ak, &f.attest), Err(QuoteError::BadSignature));
        let zero = TpmSignature::Ecdsa {
            hash: HashAlg::Sha256,
            r: vec![],
            s: vec![1; 32],
        };
        assert_eq!(zero.verify(&ak, &f.attest), Err(QuoteError::BadSignature));
        // An RSA signature under an ECC key.
        let rsa_sig = TpmSignature::RsaSsa {
            hash: HashAlg::Sha256,
            sig: vec![1; 256],
        };
        let mut no_scheme = ak.clone();
        no_scheme.scheme = None;
        assert_eq!(
            rsa_sig.verify(&no_scheme, &f.attest),
            Err(QuoteError::SignatureKeyMismatch {
                signature: "RSASSA",
                key: "an ECC key"
            })
        );
    }

    #[test]
    fn leading_zeros_in_ecdsa_scalars_are_accepted() {
        let f = fixture();
        let ak = AkPublic::from_tpmt(&f.ak).unwrap();
        let TpmSignature::Ecdsa { hash, r, s } = TpmSignature::parse(&f.sig).unwrap() else {
            panic!("ECDSA")
        };
        let mut padded_r = vec![0, 0];
        padded_r.extend(&r);
        let sig = TpmSignature::Ecdsa {
            hash,
            r: padded_r,
            s,
        };
        assert_eq!(sig.verify(&ak, &f.attest), Ok(()));
    }

    #[test]
    fn bad_keys_are_named() {
        let key = signing_key();
        let good = ecc_tpmt(key.verifying_key(), ATTRS_AK);
        // x, y start after type 2, nameAlg 2, attrs 4, policy 2, sym 2, scheme 4, curve 2,
        // kdf 2 = 20 bytes; y's last byte is the last byte.
        let mut off_curve = good.clone();
        let last = off_curve.len() - 1;
        off_curve[last] ^= 1;
        assert!(matches!(
            AkPublic::from_tpmt(&off_curve),
            Err(QuoteError::InvalidKey(_))
        ));
        let mut curve25519 = good.clone();
        curve25519[17] = 0x40;
        assert!(matches!(
            AkPublic::from_tpmt(&curve25519),
            Err(QuoteError::UnsupportedAlgorithm {
                what: "TPMS_ECC_PARMS.curveID",
                ..
            })
        ));
        let mut keyedhash = good.clone();
        keyedhash[1] = 0x08;
        assert!(matches!(
            AkPublic::from_tpmt(&keyedhash),
            Err(QuoteError::UnsupportedAlgorithm {
                what: "TPMT_PUBLIC.type",
                ..
            })
        ));
        // A decrypt key, and a signing key that is not restricted.
        for attrs in [ATTRS_AK | ATTR_DECRYPT, ATTRS_AK & !ATTR_RESTRICTED] {
            let f = fixture();
            let ak = ecc_tpmt(key.verifying_key(), attrs);
            assert_eq!(
                verify(&ak, &f.attest, &f.sig, &f.pcrs, &f.nonce),
                Err(QuoteError::AkNotRestrictedSigning { attributes: attrs })
            );
        }
        // TPM2B_PUBLIC whose size is wrong.
        let mut tpm2b_pub = Vec::new();
        tpm2b(&mut tpm2b_pub, &good);
        assert!(AkPublic::from_any(&tpm2b_pub).is_ok());
        tpm2b_pub[1] -= 1;
        assert!(AkPublic::from_tpm2b(&tpm2b_pub).is_err());
        assert!(matches!(
            AkPublic::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            Err(QuoteError::InvalidKey(_))
        ));
    }

    #[test]
    fn rsa_key_with_inconsistent_key_bits_is_refused() {
        let mut t = Vec::new();
        t.extend(TPM_ALG_RSA.to_be_bytes());
        t.extend(TPM_ALG_SHA256.to_be_bytes());
        t.extend(ATTRS_AK.to_be_bytes());
        tpm2b(&mut t, &[]);
        t.extend(TPM_ALG_NULL.to_be_bytes());
        t.extend(TPM_ALG_RSASSA.to_be_bytes());
        t.extend(TPM_ALG_SHA256.to_be_bytes());
        t.extend(2048u16.to_be_bytes());
        t.extend(0u32.to_be_bytes());
        let mut modulus = vec![0xc5; 128];
        modulus[127] |= 1;
        tpm2b(&mut t, &modulus);
        assert!(
            matches!(AkPublic::from_tpmt(&t), Err(QuoteError::InvalidKey(m)) if m.contains("1024 bits"))
        );
    }

    #[test]
    fn pcr_values_json_is_the_design_form_and_validated() {
        let p = pcrs(&[0xab; 32]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            format!("{{\"sha256\":{{\"10\":\"{}\"}}}}", "ab".repeat(32))
        );
        assert_eq!(serde_json::from_str::<PcrValues>(&json).unwrap(), p);
        for (bad, words) in [
            (r#"{"md5": {"10": "00"}}"#, "unknown PCR bank `md5`"),
            (r#"{"sha256": {"ten": "00"}}"#, "PCR index `ten`"),
            (r#"{"sha256": {"256": "00"}}"#, "PCR index `256`"),
            (r#"{"sha256": {"10": "zz"}}"#, "not hex"),
            (
                r#"{"sha256": {"10": "0011"}}"#,
                "value has 2 bytes, expected 32",
            ),
            (r#"{"sha256": ["00"]}"#, "invalid type"),
        ] {
            let err = serde_json::from_str::<PcrValues>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(words), "{bad}: {err}");
        }
    }

    #[test]
    fn pcr_files_of_the_wrong_shape_are_refused() {
        let sel = vec![PcrSelection {
            bank: HashAlg::Sha256,
            pcrs: vec![10],
        }];
        // "values": exactly one digest.
        assert!(PcrValues::from_values_blob(&[0; 32], &sel).is_ok());
        assert!(matches!(
            PcrValues::from_values_blob(&[0; 31], &sel),
            Err(QuoteError::Truncated { .. })
        ));
        assert!(matches!(
            PcrValues::from_values_blob(&[0; 33], &sel),
            Err(QuoteError::TrailingBytes { .. })
        ));
        // "serialized": a well-formed file, then broken copies of it.
        let mut file = Vec::new();
        file.extend(1u32.to_le_bytes());
        let mut sels = [0u8; 128];
        sels[..7].copy_from_slice(&[0x0b, 0x00, 3, 0x00, 0x04, 0x00, 0x00]);
        file.extend(sels);
        file.extend(1u32.to_le_bytes());
        file.extend(1u32.to_le_bytes());
        let mut digests = [0u8; 8 * 66];
        digests[0] = 32;
        digests[2..34].fill(0x5a);
        file.extend(digests);
        let parsed = PcrValues::from_tpm2_tools_serialized(&file).unwrap();
        assert_eq!(parsed.get(HashAlg::Sha256, 10), Some([0x5a; 32].as_slice()));
        assert_eq!(PcrValues::from_file_bytes(&file, &sel).unwrap(), parsed);

        for len in 0..file.len() {
            assert!(PcrValues::from_tpm2_tools_serialized(&file[..len]).is_err());
        }
        let mut many = file.clone();
        many[0] = 17;
        assert!(matches!(
            PcrValues::from_tpm2_tools_serialized(&many),
            Err(QuoteError::Malformed {
                what: "TPML_PCR_SELECTION.count",
                ..
            })
        ));
        let mut long_digest = file.clone();
        long_digest[140] = 65;
        assert!(matches!(
            PcrValues::from_tpm2_tools_serialized(&long_digest),
            Err(QuoteError::Malformed {
                what: "TPM2B_DIGEST.size",
                ..
            })
        ));
        let mut short_digest = file.clone();
        short_digest[140] = 20;
        assert!(matches!(
            PcrValues::from_tpm2_tools_serialized(&short_digest),
            Err(QuoteError::PcrLength { got: 20, .. })
        ));
        let mut lists = file.clone();
        lists[132] = 9;
        assert!(matches!(
            PcrValues::from_tpm2_tools_serialized(&lists),
            Err(QuoteError::Malformed {
                what: "TPML_DIGEST list count",
                ..
            })
        ));
        let mut no_digest = file.clone();
        no_digest[136] = 0;
        assert!(matches!(
            PcrValues::from_tpm2_tools_serialized(&no_digest),
            Err(QuoteError::Malformed { .. })
        ));
        // Neither form: the message says both.
        let err = PcrValues::from_file_bytes(&[1, 2, 3], &sel).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
    }

    #[test]
    fn pcr_indices_come_from_the_bitmap_in_order() {
        assert_eq!(bitmap_to_indices(&[0x01, 0x04, 0x81]), vec![0, 10, 16, 23]);
        assert_eq!(bitmap_to_indices(&[0xff; 32]).len(), 256);
        assert_eq!(bitmap_to_indices(&[]), Vec::<u8>::new());
    }
}
