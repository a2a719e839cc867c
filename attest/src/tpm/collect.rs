//! TPM quote collection through tss-esapi (feature `tpm-collect`): open a TPM from a
//! TCTI string, make sure the attestation key (AK) exists at its persistent handle,
//! quote PCRs with the caller's qualifying data, read and extend PCRs.
//!
//! The AK is an ECC P-256 restricted signing key (ECDSA-SHA256), a primary key of the
//! endorsement hierarchy, persisted at a configurable handle (default 0x81010100). A
//! primary key is derived from the hierarchy's seed and its template, so even if the
//! persistent copy is lost the same template gives the same key; persisting it just
//! spares the key generation at each start. A reboot of the TPM keeps it.
//!
//! There is no resource manager between us and the TPM (swtpm, or `/dev/tpmrm0` used
//! raw): every transient object is flushed before the call that created it returns,
//! on error paths too, and authorization uses password sessions, which occupy no TPM
//! session slot. Bytes handed out are the TPM wire format (`TPMS_ATTEST`,
//! `TPMT_SIGNATURE`, `TPMT_PUBLIC`), marshalled by libtss2 itself.

use crate::tpm::quote::{AkPublic, HashAlg, PcrValues, QuoteError, QuoteInfo, TpmSignature};
use std::str::FromStr;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{KeyHandle, ObjectHandle, PcrHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{
    EccSchemeAlgorithm, HashingAlgorithm, PublicAlgorithm,
};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Data, Digest, DigestValues, EccPoint, EccScheme, KeyDerivationFunctionScheme,
    PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Public, PublicBuilder,
    PublicEccParametersBuilder, SignatureScheme, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

/// Where the AK lives unless configured otherwise (the owner-range persistent handles
/// start at 0x81000000; 0x81010100 stays clear of the EK (0x81010001) and the SRK
/// (0x81000001) that tpm2-tools and systemd use).
pub const DEFAULT_AK_HANDLE: u32 = 0x8101_0100;

/// How many times a quote is retried when a PCR changed between reading the PCRs and
/// quoting them (IMA may extend PCR 10 at any moment).
const QUOTE_ATTEMPTS: usize = 5;

/// PC Client TPMs (and swtpm) implement 24 PCRs per bank.
const MAX_PCR_INDEX: u8 = 23;

/// Why talking to the TPM failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The TCTI string does not parse, or libtss2 could not open the TPM behind it.
    #[error("TCTI `{tcti}`: {source}")]
    Tcti {
        /// The TCTI string as given.
        tcti: String,
        /// libtss2's error.
        #[source]
        source: tss_esapi::Error,
    },
    /// A TPM command failed.
    #[error("TPM {op}: {source}")]
    Tpm {
        /// What was being done (`quote`, `PCR extend`, ...).
        op: &'static str,
        /// libtss2's error (a TPM response code, or a marshalling error).
        #[source]
        source: tss_esapi::Error,
    },
    /// The configured AK handle is outside the persistent range.
    #[error("{handle:#010x} is not a persistent handle (0x81000000..=0x81ffffff)")]
    NotPersistentHandle {
        /// The handle configured.
        handle: u32,
    },
    /// The AK handle holds a key that is not a restricted signing key; verigate never
    /// replaces it.
    #[error(
        "persistent handle {handle:#010x} holds a key that is not an attestation key ({reason}); \
         verigate leaves it alone: free the handle or configure another one"
    )]
    ForeignKey {
        /// The AK handle.
        handle: u32,
        /// Which property of an attestation key it lacks.
        reason: String,
    },
    /// No key at the persistent handle, where one must already be (Azure's HCL AK is
    /// the paravisor's; verigate never creates one in its place).
    #[error("no key at persistent handle {handle:#010x}: {why}")]
    NoKey {
        /// The handle looked at.
        handle: u32,
        /// Whose key should be there.
        why: &'static str,
    },
    /// An NV index smaller than what is to be written at its start (one defined by
    /// someone else, with another size).
    #[error("NV index {handle:#010x} holds {size} bytes, too few for the {needed} to write")]
    NvTooSmall {
        /// The index.
        handle: u32,
        /// Its size.
        size: usize,
        /// The bytes to write.
        needed: usize,
    },
    /// A PCR index above 23.
    #[error("PCR index {index} is out of range (0..=23)")]
    BadPcrIndex {
        /// The index given.
        index: u8,
    },
    /// A digest to extend a PCR with is not the size of the bank's algorithm.
    #[error("{bank} digest has {got} bytes, expected {expected}")]
    DigestLength {
        /// The PCR bank.
        bank: HashAlg,
        /// The bank's digest size in bytes.
        expected: usize,
        /// The size given, in bytes.
        got: usize,
    },
    /// Qualifying data longer than a `TPM2B_DATA` holds (64 bytes).
    #[error("qualifying data has {got} bytes, at most 64")]
    QualifyingTooLong {
        /// The size given, in bytes.
        got: usize,
    },
    /// A PCR read returned no value for a selected PCR.
    #[error("the TPM did not return {bank} PCR {index} (is the bank allocated?)")]
    PcrNotReturned {
        /// The PCR bank.
        bank: HashAlg,
        /// The PCR index.
        index: u8,
    },
    /// The quote the TPM returned does not parse or does not match the PCR values read.
    #[error("the quote the TPM returned does not check: {0}")]
    Quote(#[from] QuoteError),
    /// Every attempt found the PCRs changed between reading them and quoting them
    /// (something, such as IMA, extends them faster than a quote takes).
    #[error("PCRs kept changing while quoting ({attempts} attempts); last: {last}")]
    PcrsKeptChanging {
        /// How many quotes were tried.
        attempts: usize,
        /// The mismatch of the last attempt.
        last: QuoteError,
    },
}

pub(super) fn tpm(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> CollectError {
    move |source| CollectError::Tpm { op, source }
}

/// A quote as collected: the three TPM structures, marshalled, and the PCR values it
/// covers, read in the same selection. `info` is `attest` parsed.
#[derive(Debug, Clone)]
pub struct Quote {
    /// Marshalled `TPMS_ATTEST`.
    pub attest: Vec<u8>,
    /// Marshalled `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    /// Marshalled `TPMT_PUBLIC` of the AK.
    pub ak_public: Vec<u8>,
    /// The quoted PCR values (they hash to the quote's `pcrDigest`).
    pub pcrs: PcrValues,
    /// `attest`, parsed (clock, reset and restart counts, selection).
    pub info: QuoteInfo,
}

impl Quote {
    /// TPM resets (reboots) counted by the TPM when it quoted.
    pub fn reset_count(&self) -> u32 {
        self.info.clock_info.reset_count
    }

    /// TPM restarts (resumes) since the last reset.
    pub fn restart_count(&self) -> u32 {
        self.info.clock_info.restart_count
    }
}

struct LoadedAk {
    handle: u32,
    object: ObjectHandle,
    public: Vec<u8>,
}

/// An open TPM. `Send` but not `Sync`, and every call blocks on the TPM: a server keeps
/// one behind a mutex and calls it from blocking tasks.
pub struct Tpm {
    pub(super) ctx: Context,
    ak_handle: u32,
    ak: Option<LoadedAk>,
}

impl Tpm {
    /// Opens the TPM behind a TCTI string: `device:/dev/tpmrm0`,
    /// `swtpm:host=127.0.0.1,port=2321` (or any TCTI libtss2 knows).
    pub fn open(tcti: &str) -> Result<Tpm, CollectError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|source| CollectError::Tcti {
            tcti: tcti.to_string(),
            source,
        })?;
        let ctx = Context::new(conf).map_err(|source| CollectError::Tcti {
            tcti: tcti.to_string(),
            source,
        })?;
        Ok(Tpm {
            ctx,
            ak_handle: DEFAULT_AK_HANDLE,
            ak: None,
        })
    }

    /// Makes sure the AK exists at `handle` (loads it if present, creates and persists
    /// it if not), makes it the key later quotes use, and returns its marshalled
    /// `TPMT_PUBLIC`. A key at `handle` that is not a restricted signing key is refused,
    /// never replaced.
    pub fn attestation_key(&mut self, handle: u32) -> Result<Vec<u8>, CollectError> {
        Ok(self.load_ak(handle)?.public.clone())
    }

    /// [`Tpm::attestation_key`] for a key that someone else persisted (Azure's HCL AK at
    /// 0x81000003): if `handle` is empty the answer is [`CollectError::NoKey`] with
    /// `why`, and nothing is created.
    pub fn existing_attestation_key(
        &mut self,
        handle: u32,
        why: &'static str,
    ) -> Result<Vec<u8>, CollectError> {
        if !matches!(&self.ak, Some(ak) if ak.handle == handle) && !self.handle_exists(handle)? {
            return Err(CollectError::NoKey { handle, why });
        }
        self.attestation_key(handle)
    }

    fn load_ak(&mut self, handle: u32) -> Result<&LoadedAk, CollectError> {
        let cached = matches!(&self.ak, Some(ak) if ak.handle == handle);
        if !cached {
            let persistent = PersistentTpmHandle::new(handle)
                .map_err(|_| CollectError::NotPersistentHandle { handle })?;
            self.close_ak();
            let mut object = if self.handle_exists(handle)? {
                self.ctx
                    .tr_from_tpm_public(TpmHandle::Persistent(persistent))
                    .map_err(tpm("loading the persistent AK"))?
            } else {
                self.create_and_persist_ak(persistent)?
            };
            let public = match self.read_ak_public(handle, object) {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.ctx.tr_close(&mut object);
                    return Err(e);
                }
            };
            self.ak_handle = handle;
            self.ak = Some(LoadedAk {
                handle,
                object,
                public,
            });
        }
        // Set just above, or cached: the same `Some` either way.
        self.ak
            .as_ref()
            .ok_or(CollectError::NotPersistentHandle { handle })
    }

    /// Quotes SHA-256 PCRs `pcrs` (e.g. `&[10]`) with `qualifying` as `extraData`, using
    /// the AK at the configured handle (creating it if needed).
    pub fn quote(&mut self, qualifying: &[u8], pcrs: &[u8]) -> Result<Quote, CollectError> {
        self.quote_banks(qualifying, &[(HashAlg::Sha256, pcrs.to_vec())])
    }

    /// Quotes PCRs of several banks. The PCR values are read before each quote and the
    /// quote is retried if they no longer hash to its `pcrDigest`, so the values
    /// returned are those the quote covers.
    pub fn quote_banks(
        &mut self,
        qualifying: &[u8],
        selection: &[(HashAlg, Vec<u8>)],
    ) -> Result<Quote, CollectError> {
        let data =
            Data::try_from(qualifying.to_vec()).map_err(|_| CollectError::QualifyingTooLong {
                got: qualifying.len(),
            })?;
        let ak = self.load_ak(self.ak_handle)?;
        let key = KeyHandle::from(ak.object);
        let ak_public = ak.public.clone();
        let list = selection_list(selection)?;
        let mut last = None;
        for _ in 0..QUOTE_ATTEMPTS {
            let pcrs = self.read_selection(selection)?;
            let (attest, signature) = self
                .ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.quote(key, data.clone(), SignatureScheme::Null, list.clone())
                })
                .map_err(tpm("quote"))?;
            let attest = attest.marshall().map_err(tpm("marshalling TPMS_ATTEST"))?;
            let signature = signature
                .marshall()
                .map_err(tpm("marshalling TPMT_SIGNATURE"))?;
            let info = QuoteInfo::parse(&attest)?;
            let sig = TpmSignature::parse(&signature)?;
            match info.check_pcrs(&pcrs, sig.hash()) {
                Ok(()) => {
                    return Ok(Quote {
                        attest,
                        signature,
                        ak_public,
                        pcrs,
                        info,
                    })
                }
                Err(e @ QuoteError::PcrDigestMismatch { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(CollectError::PcrsKeptChanging {
            attempts: QUOTE_ATTEMPTS,
            last: last.unwrap_or(QuoteError::BadSignature),
        })
    }

    /// Extends PCR `index` of `bank` with `digest` (as IMA does for each measurement),
    /// so tests and the demo can replay a measurement log into swtpm.
    pub fn extend_pcr(
        &mut self,
        index: u8,
        bank: HashAlg,
        digest: &[u8],
    ) -> Result<(), CollectError> {
        if digest.len() != bank.size() {
            return Err(CollectError::DigestLength {
                bank,
                expected: bank.size(),
                got: digest.len(),
            });
        }
        if index > MAX_PCR_INDEX {
            return Err(CollectError::BadPcrIndex { index });
        }
        let handle = PcrHandle::try_from(u32::from(index))
            .map_err(|_| CollectError::BadPcrIndex { index })?;
        let digest = Digest::try_from(digest.to_vec()).map_err(tpm("PCR digest"))?;
        let mut values = DigestValues::new();
        values.set(HashingAlgorithm::from(bank), digest);
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.pcr_extend(handle, values)
            })
            .map_err(tpm("PCR extend"))
    }

    /// Reads PCRs `pcrs` of `bank`.
    pub fn read_pcrs(&mut self, bank: HashAlg, pcrs: &[u8]) -> Result<PcrValues, CollectError> {
        self.read_selection(&[(bank, pcrs.to_vec())])
    }

    fn read_selection(
        &mut self,
        selection: &[(HashAlg, Vec<u8>)],
    ) -> Result<PcrValues, CollectError> {
        let mut out = PcrValues::new();
        for (bank, indices) in selection {
            let mut sorted = indices.clone();
            sorted.sort_unstable();
            sorted.dedup();
            // TPM2_PCR_Read returns at most 8 digests per call.
            for chunk in sorted.chunks(8) {
                let list = selection_list(&[(*bank, chunk.to_vec())])?;
                let (_, returned, digests) = self
                    .ctx
                    .execute_without_session(|ctx| ctx.pcr_read(list))
                    .map_err(tpm("PCR read"))?;
                let mut returned_indices = Vec::new();
                for sel in returned.get_selections() {
                    for slot in sel.selected() {
                        returned_indices.push(slot_index(slot));
                    }
                }
                for &index in chunk {
                    let pos = returned_indices
                        .iter()
                        .position(|i| *i == index)
                        .ok_or(CollectError::PcrNotReturned { bank: *bank, index })?;
                    let value = digests
                        .value()
                        .get(pos)
                        .ok_or(CollectError::PcrNotReturned { bank: *bank, index })?;
                    out.insert(*bank, index, value.value().to_vec())?;
                }
            }
        }
        Ok(out)
    }

    pub(super) fn handle_exists(&mut self, handle: u32) -> Result<bool, CollectError> {
        let (data, _) = self
            .ctx
            .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, handle, 1))
            .map_err(tpm("listing persistent handles"))?;
        Ok(match data {
            CapabilityData::Handles(list) => list.iter().any(|h| u32::from(*h) == handle),
            _ => false,
        })
    }

    fn create_and_persist_ak(
        &mut self,
        persistent: PersistentTpmHandle,
    ) -> Result<ObjectHandle, CollectError> {
        let template = ak_template()?;
        let created = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(tpm("creating the AK"))?;
        let transient = ObjectHandle::from(created.key_handle);
        let persisted = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(
                    Provision::Owner,
                    transient,
                    Persistent::Persistent(persistent),
                )
            })
            .map_err(tpm("persisting the AK"));
        // The transient copy goes whether persisting worked or not: without a resource
        // manager it would hold one of the TPM's three object slots until reboot.
        let flushed = self
            .ctx
            .flush_context(transient)
            .map_err(tpm("flushing the transient AK"));
        let persisted = persisted?;
        flushed?;
        Ok(persisted)
    }

    fn read_ak_public(
        &mut self,
        handle: u32,
        object: ObjectHandle,
    ) -> Result<Vec<u8>, CollectError> {
        let (public, _, _) = self
            .ctx
            .execute_without_session(|ctx| ctx.read_public(KeyHandle::from(object)))
            .map_err(tpm("reading the AK public area"))?;
        let bytes = public.marshall().map_err(tpm("marshalling TPMT_PUBLIC"))?;
        let parsed = AkPublic::from_tpmt(&bytes).map_err(|e| CollectError::ForeignKey {
            handle,
            reason: e.to_string(),
        })?;
        parsed
            .check_restricted_signing()
            .map_err(|e| CollectError::ForeignKey {
                handle,
                reason: e.to_string(),
            })?;
        Ok(bytes)
    }

    fn close_ak(&mut self) {
        if let Some(mut ak) = self.ak.take() {
            // Persistent objects are closed (ESYS metadata only), never flushed.
            let _ = self.ctx.tr_close(&mut ak.object);
        }
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        self.close_ak();
    }
}

/// The AK template: restricted signing ECC P-256 key, ECDSA-SHA256, fixed to this TPM,
/// usable with an empty password and exempt from dictionary-attack lockout (swtpm and
/// VMs are killed without orderly shutdown, which would count against the lockout).
fn ak_template() -> Result<Public, CollectError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_restricted(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .build()
        .map_err(tpm("AK attributes"))?;
    let parameters = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_ecc_scheme(
            EccScheme::create(
                EccSchemeAlgorithm::EcDsa,
                Some(HashingAlgorithm::Sha256),
                None,
            )
            .map_err(tpm("AK scheme"))?,
        )
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(true)
        .build()
        .map_err(tpm("AK parameters"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tpm("AK template"))
}

fn slot_index(slot: PcrSlot) -> u8 {
    // A PcrSlot is a single bit of a 32-bit mask: its position is the PCR index (< 32).
    u8::try_from(u32::from(slot).trailing_zeros()).unwrap_or(u8::MAX)
}

fn selection_list(selection: &[(HashAlg, Vec<u8>)]) -> Result<PcrSelectionList, CollectError> {
    let mut builder = PcrSelectionListBuilder::new();
    for (bank, indices) in selection {
        let mut slots = Vec::new();
        for &index in indices {
            if index > MAX_PCR_INDEX {
                return Err(CollectError::BadPcrIndex { index });
            }
            let slot = PcrSlot::try_from(1u32 << index)
                .map_err(|_| CollectError::BadPcrIndex { index })?;
            slots.push(slot);
        }
        builder = builder.with_selection(HashingAlgorithm::from(*bank), &slots);
    }
    builder.build().map_err(tpm("PCR selection"))
}
