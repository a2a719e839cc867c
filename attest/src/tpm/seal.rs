//! Sealing a small secret (the storage key) to the TPM (feature `tpm-collect`).
//!
//! [`seal`] creates a keyed-hash *sealed data object* whose sensitive part is the
//! secret, under a storage root key (SRK) that is a primary key of the owner
//! hierarchy. The SRK is never persisted: a primary key is derived from the
//! hierarchy's seed and its template, so the same template gives the same key after
//! every boot, and nothing is left in the TPM's persistent handles. The object's
//! public and private areas go to a [`SealedBlob`]; the private area is encrypted by
//! the SRK, so the blob is not secret by itself: only this TPM can load it.
//!
//! With PCRs to bind, the object's `authPolicy` is a `TPM2_PolicyPCR` over the current
//! SHA-256 values of those PCRs (computed by the TPM in a trial session) and
//! `userWithAuth` is clear, so the only way to unseal is a policy session in which the
//! PCRs still hold those values. Without PCRs, an empty password unseals it.
//!
//! Every command that carries the secret runs in a session salted by the SRK with
//! parameter encryption, so the secret never crosses the TPM interface in clear (a
//! host that emulates the TPM device, or anyone reading TCTI traces, sees ciphertext).
//!
//! There is no resource manager between us and the TPM: the SRK, the loaded object and
//! every session are flushed before the call returns, on error paths too (swtpm has
//! three transient object slots).

use std::str::FromStr;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{SessionType, Tss2ResponseCodeKind};
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, EccPoint, EccScheme, KeyDerivationFunctionScheme, KeyedHashScheme, PcrSelectionList,
    PcrSelectionListBuilder, PcrSlot, Private, Public, PublicBuilder, PublicEccParametersBuilder,
    PublicKeyedHashParameters, SensitiveData, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;
use wire::Reader;

/// The largest secret a sealed data object holds (`MAX_SYM_DATA`).
pub const MAX_SECRET_LEN: usize = 128;

/// PC Client TPMs (and swtpm) implement 24 PCRs per bank.
const MAX_PCR_INDEX: u8 = 23;

/// The blob's first bytes: format name and version.
const BLOB_MAGIC: &[u8; 8] = b"VGSEAL\x00\x01";

/// Why sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The TCTI string does not parse, or libtss2 could not open the TPM behind it.
    #[error("TCTI `{tcti}`: {source}")]
    Tcti {
        /// The TCTI string as given.
        tcti: String,
        /// libtss2's error.
        #[source]
        source: tss_esapi::Error,
    },
    /// A TPM command failed (other than the two failures named below).
    #[error("TPM {op}: {source}")]
    Tpm {
        /// What was being done (`creating the sealed object`, `unsealing`, ...).
        op: &'static str,
        /// libtss2's error (a TPM response code, or a marshalling error).
        #[source]
        source: tss_esapi::Error,
    },
    /// The secret is empty or longer than [`MAX_SECRET_LEN`].
    #[error("the secret has {got} bytes; a sealed object holds 1..={MAX_SECRET_LEN}")]
    SecretLength {
        /// The secret's size in bytes.
        got: usize,
    },
    /// A PCR index above 23.
    #[error("PCR index {index} is out of range (0..=23)")]
    BadPcrIndex {
        /// The index given.
        index: u8,
    },
    /// The TPM refused to unseal because the bound PCRs no longer hold their values at
    /// sealing time: another boot chain, or a PCR was extended since.
    #[error(
        "the TPM refused to unseal: the PCR policy failed (SHA-256 PCR(s) {pcrs:?} no longer \
         hold the values they had when the key was sealed: different boot chain or a PCR \
         was extended)"
    )]
    PolicyFailed {
        /// The SHA-256 PCRs the blob is bound to.
        pcrs: Vec<u8>,
    },
    /// The TPM refused to load the blob: its integrity check failed, so it was sealed by
    /// another TPM or under another owner seed, or altered.
    #[error(
        "the TPM cannot load the sealed blob (integrity check failed): it was sealed by \
         another TPM, or under another owner seed, or it was altered"
    )]
    WrongTpm,
    /// The blob's bytes are not a [`SealedBlob`] (bad format marker, truncated, a PCR
    /// index out of range, ...), or the TPM refused to load its parts.
    #[error("sealed blob: {reason} at offset {offset}")]
    BadBlob {
        /// Offset in the blob where the problem is.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

fn tpm(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> SealError {
    move |source| SealError::Tpm { op, source }
}

fn rc_kind(e: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match e {
        tss_esapi::Error::Tss2Error(rc) => rc.kind(),
        tss_esapi::Error::WrapperError(_) => None,
    }
}

/// A secret out of the TPM. Its bytes are overwritten when it drops and `Debug` never
/// shows them.
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes that are secret (they are cleared on drop).
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
        // Keeps the writes above from being optimised away as dead stores.
        std::hint::black_box(&mut self.0);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// A sealed data object as stored on disk: the SHA-256 PCR indices it is bound to, its
/// `TPM2B_PUBLIC` and its `TPM2B_PRIVATE` (encrypted by the SRK of the TPM that sealed
/// it). Format: `VGSEAL\0\1`, one byte PCR count, the indices, then the two TPM2B
/// structures as on the TPM wire (big-endian u16 size, bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// SHA-256 PCR indices of the policy (empty: not bound).
    pub pcrs: Vec<u8>,
    /// Marshalled `TPMT_PUBLIC` of the sealed object.
    pub public: Vec<u8>,
    /// The `TPM2B_PRIVATE` buffer (without its size).
    pub private: Vec<u8>,
}

impl SealedBlob {
    /// The blob's file format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.public.len() + self.private.len());
        out.extend_from_slice(BLOB_MAGIC);
        // At most 24 distinct indices (checked by `seal`), so the count fits a byte.
        out.push(u8::try_from(self.pcrs.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.pcrs);
        for part in [&self.public, &self.private] {
            out.extend_from_slice(&u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Parses a blob file; every length is checked against what is left.
    pub fn from_bytes(bytes: &[u8]) -> Result<SealedBlob, SealError> {
        let mut r = Reader::new(bytes);
        let magic = r.take(BLOB_MAGIC.len(), "format marker")?;
        if magic != BLOB_MAGIC {
            return Err(SealError::BadBlob {
                offset: 0,
                reason: "not a verigate sealed blob (bad format marker)".into(),
            });
        }
        let count = usize::from(r.u8("PCR count")?);
        let pcrs = r.take(count, "PCR indices")?.to_vec();
        if let Some(&index) = pcrs.iter().find(|&&i| i > MAX_PCR_INDEX) {
            return Err(SealError::BadBlob {
                offset: BLOB_MAGIC.len() + 1,
                reason: format!("PCR index {index} out of range"),
            });
        }
        let public = r.vec_u16_be("TPM2B_PUBLIC")?.rest().to_vec();
        let private = r.vec_u16_be("TPM2B_PRIVATE")?.rest().to_vec();
        r.finish("the sealed blob")?;
        Public::unmarshall(&public).map_err(|e| SealError::BadBlob {
            offset: BLOB_MAGIC.len() + 3 + pcrs.len(),
            reason: format!("TPMT_PUBLIC does not parse: {e}"),
        })?;
        Ok(SealedBlob {
            pcrs,
            public,
            private,
        })
    }
}

/// A blob that ends inside a field names the field, where it starts, and what was left.
impl From<wire::Truncated> for SealError {
    fn from(e: wire::Truncated) -> SealError {
        SealError::BadBlob {
            offset: e.offset,
            reason: format!(
                "truncated {}: {} bytes needed, {} left",
                e.field, e.needed, e.available
            ),
        }
    }
}

/// Bytes after the private part: not a blob this code wrote.
impl From<wire::Trailing> for SealError {
    fn from(e: wire::Trailing) -> SealError {
        SealError::BadBlob {
            offset: e.offset,
            reason: format!("{} trailing bytes", e.extra),
        }
    }
}

/// A TPM connection for sealing and unsealing (the same TCTI strings as
/// [`crate::tpm::collect::Tpm::open`]). Only one connection to swtpm can be open at a
/// time: drop other contexts first.
pub struct SealTpm {
    ctx: Context,
}

impl SealTpm {
    /// Opens the TPM behind a TCTI string (`device:/dev/tpmrm0`,
    /// `swtpm:host=127.0.0.1,port=2321`).
    pub fn open(tcti: &str) -> Result<SealTpm, SealError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|source| SealError::Tcti {
            tcti: tcti.to_string(),
            source,
        })?;
        let ctx = Context::new(conf).map_err(|source| SealError::Tcti {
            tcti: tcti.to_string(),
            source,
        })?;
        Ok(SealTpm { ctx })
    }

    /// How many transient objects and loaded sessions the TPM holds (a test checks
    /// that sealing leaks none).
    pub fn transient_count(&mut self) -> Result<usize, SealError> {
        use tss_esapi::constants::CapabilityType;
        use tss_esapi::structures::CapabilityData;
        let mut total = 0;
        // Transient objects, then loaded HMAC and policy sessions.
        for first in [0x8000_0000u32, 0x0200_0000, 0x0300_0000] {
            let (data, _) = self
                .ctx
                .execute_without_session(|ctx| {
                    ctx.get_capability(CapabilityType::Handles, first, 64)
                })
                .map_err(tpm("listing handles"))?;
            if let CapabilityData::Handles(list) = data {
                total += list
                    .iter()
                    .filter(|h| u32::from(**h) >> 24 == first >> 24)
                    .count();
            }
        }
        Ok(total)
    }

    fn srk(&mut self) -> Result<KeyHandle, SealError> {
        let template = srk_template()?;
        let created = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(tpm("creating the storage root key"))?;
        Ok(created.key_handle)
    }

    fn flush(&mut self, handle: ObjectHandle) {
        // Best effort: the handle was created by this call and nothing else uses it.
        let _ = self.ctx.flush_context(handle);
    }

    /// Starts a session of `kind`. With `salt_key` (the SRK) the session is salted by
    /// it and encrypts the first parameter of commands (`decrypt`) and responses
    /// (`encrypt`) with AES-128-CFB: the secret crosses the TPM interface (a socket,
    /// a bus, a hypervisor-emulated device) only encrypted.
    fn start_session(
        &mut self,
        kind: SessionType,
        salt_key: Option<KeyHandle>,
    ) -> Result<AuthSession, SealError> {
        let session = self
            .ctx
            .execute_without_session(|ctx| {
                ctx.start_auth_session(
                    salt_key,
                    None,
                    None,
                    kind,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )
            })
            .map_err(tpm("starting a session"))?
            .ok_or(SealError::Tpm {
                op: "starting a session",
                source: tss_esapi::Error::WrapperError(
                    tss_esapi::WrapperErrorKind::WrongValueFromTpm,
                ),
            })?;
        let encrypted = salt_key.is_some();
        let (attrs, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .with_decrypt(encrypted)
            .with_encrypt(encrypted)
            .build();
        if let Err(e) = self.ctx.tr_sess_set_attributes(session, attrs, mask) {
            self.flush(session_object(session));
            return Err(SealError::Tpm {
                op: "session attributes",
                source: e,
            });
        }
        Ok(session)
    }

    fn start_policy(
        &mut self,
        kind: SessionType,
        salt_key: Option<KeyHandle>,
    ) -> Result<PolicySession, SealError> {
        let session = self.start_session(kind, salt_key)?;
        PolicySession::try_from(session).map_err(|e| {
            self.flush(session_object(session));
            SealError::Tpm {
                op: "policy session",
                source: e,
            }
        })
    }

    /// `TPM2_PolicyPCR` over `pcrs` in `session` with an empty digest: the TPM uses the
    /// PCRs' current values.
    fn policy_pcr(&mut self, session: PolicySession, pcrs: &[u8]) -> Result<(), SealError> {
        let list = selection(pcrs)?;
        self.ctx
            .execute_without_session(|ctx| ctx.policy_pcr(session, Digest::default(), list))
            .map_err(tpm("PolicyPCR"))
    }

    fn pcr_policy_digest(&mut self, pcrs: &[u8]) -> Result<Digest, SealError> {
        let session = self.start_policy(SessionType::Trial, None)?;
        let digest = self.policy_pcr(session, pcrs).and_then(|()| {
            self.ctx
                .policy_get_digest(session)
                .map_err(tpm("reading the policy digest"))
        });
        self.flush(session_object(AuthSession::from(session)));
        digest
    }

    fn seal_under(
        &mut self,
        srk: KeyHandle,
        secret: &[u8],
        pcrs: &[u8],
    ) -> Result<SealedBlob, SealError> {
        let policy = if pcrs.is_empty() {
            None
        } else {
            Some(self.pcr_policy_digest(pcrs)?)
        };
        let template = sealed_template(policy)?;
        let data = SensitiveData::try_from(secret.to_vec())
            .map_err(|_| SealError::SecretLength { got: secret.len() })?;
        // The SRK's empty auth is proven with an HMAC session salted by the SRK itself,
        // which also encrypts `inSensitive` (the secret) on its way to the TPM.
        let session = self.start_session(SessionType::Hmac, Some(srk))?;
        let created = self
            .ctx
            .execute_with_session(Some(session), |ctx| {
                ctx.create(srk, template, None, Some(data), None, None)
            })
            .map_err(tpm("creating the sealed object"));
        self.flush(session_object(session));
        let created = created?;
        Ok(SealedBlob {
            pcrs: pcrs.to_vec(),
            public: created
                .out_public
                .marshall()
                .map_err(tpm("marshalling TPMT_PUBLIC"))?,
            private: created.out_private.value().to_vec(),
        })
    }

    fn unseal_under(&mut self, srk: KeyHandle, blob: &SealedBlob) -> Result<Secret, SealError> {
        let public = Public::unmarshall(&blob.public).map_err(|e| SealError::BadBlob {
            offset: 0,
            reason: format!("TPMT_PUBLIC does not parse: {e}"),
        })?;
        let private = Private::try_from(blob.private.clone()).map_err(|_| SealError::BadBlob {
            offset: 0,
            reason: format!("TPM2B_PRIVATE of {} bytes is too long", blob.private.len()),
        })?;
        let object = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.load(srk, private, public)
            })
            .map_err(|e| match rc_kind(&e) {
                Some(Tss2ResponseCodeKind::Integrity) => SealError::WrongTpm,
                Some(
                    Tss2ResponseCodeKind::Size
                    | Tss2ResponseCodeKind::Value
                    | Tss2ResponseCodeKind::Type
                    | Tss2ResponseCodeKind::Attributes
                    | Tss2ResponseCodeKind::Hash
                    | Tss2ResponseCodeKind::Scheme
                    | Tss2ResponseCodeKind::Insufficient
                    | Tss2ResponseCodeKind::KeySize,
                ) => SealError::BadBlob {
                    offset: 0,
                    reason: format!("the TPM refused to load it: {e}"),
                },
                _ => SealError::Tpm {
                    op: "loading the sealed object",
                    source: e,
                },
            })?;
        let result = self.unseal_loaded(srk, object, &blob.pcrs);
        self.flush(object.into());
        result
    }

    fn unseal_loaded(
        &mut self,
        srk: KeyHandle,
        object: KeyHandle,
        pcrs: &[u8],
    ) -> Result<Secret, SealError> {
        // Either way the session is salted by the SRK and encrypts the response, so
        // the unsealed secret leaves the TPM encrypted.
        let (session, policy) = if pcrs.is_empty() {
            (self.start_session(SessionType::Hmac, Some(srk))?, None)
        } else {
            let policy = self.start_policy(SessionType::Policy, Some(srk))?;
            (AuthSession::from(policy), Some(policy))
        };
        let result = match policy {
            Some(p) => self.policy_pcr(p, pcrs),
            None => Ok(()),
        }
        .and_then(|()| {
            self.ctx
                .execute_with_session(Some(session), |ctx| ctx.unseal(object.into()))
                .map_err(|e| match rc_kind(&e) {
                    Some(Tss2ResponseCodeKind::PolicyFail | Tss2ResponseCodeKind::PcrChanged) => {
                        SealError::PolicyFailed {
                            pcrs: pcrs.to_vec(),
                        }
                    }
                    _ => SealError::Tpm {
                        op: "unsealing",
                        source: e,
                    },
                })
        });
        self.flush(session_object(session));
        // `SensitiveData` clears itself on drop; the copy lives in a `Secret`.
        result.map(|data| Secret::new(data.value().to_vec()))
    }
}

fn session_object(session: AuthSession) -> ObjectHandle {
    ObjectHandle::from(SessionHandle::from(session))
}

/// Seals `secret` (1..=128 bytes) to this TPM, bound to the current values of SHA-256
/// PCRs `pcrs` (empty: not bound).
pub fn seal(tpm: &mut SealTpm, secret: &[u8], pcrs: &[u8]) -> Result<SealedBlob, SealError> {
    if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
        return Err(SealError::SecretLength { got: secret.len() });
    }
    let mut pcrs = pcrs.to_vec();
    pcrs.sort_unstable();
    pcrs.dedup();
    if let Some(&index) = pcrs.iter().find(|&&i| i > MAX_PCR_INDEX) {
        return Err(SealError::BadPcrIndex { index });
    }
    let srk = tpm.srk()?;
    let result = tpm.seal_under(srk, secret, &pcrs);
    tpm.flush(srk.into());
    result
}

/// Unseals a blob made by [`seal`] on this TPM. Fails with
/// [`SealError::PolicyFailed`] when a bound PCR changed, [`SealError::WrongTpm`] when
/// another TPM sealed it.
pub fn unseal(tpm: &mut SealTpm, blob: &SealedBlob) -> Result<Secret, SealError> {
    if let Some(&index) = blob.pcrs.iter().find(|&&i| i > MAX_PCR_INDEX) {
        return Err(SealError::BadPcrIndex { index });
    }
    let srk = tpm.srk()?;
    let result = tpm.unseal_under(srk, blob);
    tpm.flush(srk.into());
    result
}

fn selection(pcrs: &[u8]) -> Result<PcrSelectionList, SealError> {
    let mut slots = Vec::new();
    for &index in pcrs {
        if index > MAX_PCR_INDEX {
            return Err(SealError::BadPcrIndex { index });
        }
        slots.push(PcrSlot::try_from(1u32 << index).map_err(|_| SealError::BadPcrIndex { index })?);
    }
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(tpm("PCR selection"))
}

/// The SRK template: ECC P-256 restricted decryption key with AES-128-CFB, the same
/// every time so the owner seed derives the same key (TCG's "storage primary key"
/// shape, usable with an empty password).
fn srk_template() -> Result<Public, SealError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_restricted(true)
        .with_decrypt(true)
        .with_sign_encrypt(false)
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .build()
        .map_err(tpm("SRK attributes"))?;
    let parameters = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::AES_128_CFB)
        .with_ecc_scheme(EccScheme::Null)
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(false)
        .with_is_decryption_key(true)
        .with_restricted(true)
        .build()
        .map_err(tpm("SRK parameters"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tpm("SRK template"))
}

/// The sealed object: keyed-hash with a null scheme, data supplied by us. With a policy,
/// `userWithAuth` is clear so the password path is closed.
fn sealed_template(policy: Option<Digest>) -> Result<Public, SealError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(policy.is_none())
        .with_no_da(true)
        .build()
        .map_err(tpm("sealed object attributes"))?;
    let mut builder = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default());
    if let Some(policy) = policy {
        builder = builder.with_auth_policy(policy);
    }
    builder.build().map_err(tpm("sealed object template"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> SealedBlob {
        SealedBlob {
            pcrs: vec![7],
            public: vec![1, 2, 3],
            private: vec![4, 5],
        }
    }

    #[test]
    fn blob_truncated_anywhere_is_a_named_error() {
        let bytes = blob().to_bytes();
        for n in 0..bytes.len() {
            match SealedBlob::from_bytes(&bytes[..n]) {
                Err(SealError::BadBlob { .. }) => {}
                other => panic!("prefix of {n} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn blob_with_bad_marker_or_pcr_or_trailer_is_refused() {
        let mut bytes = blob().to_bytes();
        bytes[0] = b'X';
        assert!(matches!(
            SealedBlob::from_bytes(&bytes),
            Err(SealError::BadBlob { offset: 0, .. })
        ));
        let mut bytes = blob().to_bytes();
        bytes[9] = 30;
        assert!(matches!(
            SealedBlob::from_bytes(&bytes),
            Err(SealError::BadBlob { reason, .. }) if reason.contains("PCR index 30")
        ));
        let mut bytes = blob().to_bytes();
        bytes.push(0);
        assert!(matches!(
            SealedBlob::from_bytes(&bytes),
            Err(SealError::BadBlob { reason, .. }) if reason.contains("trailing")
        ));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new(vec![0xAB; 4]);
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab"),
            "{shown}"
        );
        assert_eq!(s.expose(), &[0xAB; 4]);
    }
}
