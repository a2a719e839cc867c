//! The TPM side of an attestation: the attestation key (AK) opened at start, and a quote
//! whose qualifying data binds the call (`tpm_qualifying(report_data)`).
//!
//! `Tpm` is `Send` but not `Sync` and every call blocks, so it lives behind a mutex and
//! is only used from blocking tasks; concurrent attestations queue on the mutex. When a
//! quote fails (the TPM connection broke, e.g. swtpm or the resource manager restarted),
//! the TPM is opened again and the quote retried once, so a rebooted TPM is attested
//! (with its raised resetCount) instead of failing every call until verigated restarts.
//!
//! On Azure the same TPM is the paravisor's vTPM: the AK is the paravisor's HCL AK at
//! 0x81000003 (never created here), and the TEE report is read from its NV indices
//! ([`TpmBackend::azure_hcl_report`]), through the same mutex.

use std::sync::{Arc, Mutex};

use attest::binding::{ak_digest, tpm_qualifying, Freshness};
use attest::tee::azure::hcl::HardwareKind;
use attest::tpm::collect::{CollectError, Quote, Tpm, DEFAULT_AK_HANDLE};
use attest::tpm::nv::{HclCollectError, AZURE_AK_HANDLE};

/// Why the TPM gave no quote.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// Opening the TPM or loading the AK failed.
    #[error("TPM {tcti}: {source}")]
    Open {
        /// The TPM's TCTI, e.g. `device:/dev/tpmrm0`.
        tcti: String,
        /// What the TPM or its library answered.
        #[source]
        source: CollectError,
    },
    /// The quote failed, after one reopen.
    #[error("TPM quote: {0}")]
    Quote(#[source] CollectError),
    /// The HCL report for the user-data could not be had from the paravisor's vTPM.
    #[error("Azure HCL report: {0}")]
    Hcl(#[from] HclCollectError),
    /// The key at 0x81000003 is not the `HCLAkPub` the HCL report names: every quote
    /// would fail `tpm quote` at the verifier.
    #[error(
        "the key at {handle:#010x} ({key}) is not the HCLAkPub of the HCL report in NV index \
         0x01400001: quotes made with it would fail every verify; is another key persisted there?"
    )]
    NotHclAkPub {
        /// The AK handle.
        handle: u32,
        /// What the key there is.
        key: String,
    },
    /// The quote was signed by another AK than the one bound in report_data.
    #[error(
        "the TPM signed with an attestation key other than the one at {handle:#010x} it reported"
    )]
    AkChanged {
        /// The persistent handle of the AK bound in report_data.
        handle: u32,
    },
}

struct State {
    tpm: Option<Tpm>,
    /// TPMT_PUBLIC of the AK, as last loaded.
    ak_public: Vec<u8>,
}

/// An open TPM with its AK; see the module documentation.
pub struct TpmBackend {
    tcti: String,
    ak_handle: u32,
    pcrs: Vec<u8>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for TpmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmBackend")
            .field("tcti", &self.tcti)
            .field("ak_handle", &format_args!("{:#010x}", self.ak_handle))
            .field("pcrs", &self.pcrs)
            .finish()
    }
}

/// The TPM's part of one attestation.
#[derive(Debug, Clone)]
pub struct BoundQuote {
    /// The report_data the quote's qualifying data was derived from.
    pub report_data: [u8; 64],
    /// The quote, with the AK's TPMT_PUBLIC and the quoted PCR values.
    pub quote: Quote,
}

/// Why the AK at the Azure handle must already exist.
const AZURE_AK_OWNER: &str = "an Azure confidential VM's paravisor persists its HCL AK there, \
     the only key its HCL report vouches for";

fn open(tcti: &str, handle: u32) -> Result<(Tpm, Vec<u8>), TpmError> {
    let err = |source| TpmError::Open {
        tcti: tcti.to_string(),
        source,
    };
    let mut tpm = Tpm::open(tcti).map_err(err)?;
    let ak_public = if handle == AZURE_AK_HANDLE {
        tpm.existing_attestation_key(handle, AZURE_AK_OWNER)
    } else {
        tpm.attestation_key(handle)
    }
    .map_err(err)?;
    Ok((tpm, ak_public))
}

/// What `tee = "auto"` (and an Azure kind, to check it) learns from the TPM behind
/// `tcti`: `None` without NV index 0x01400001, else the hardware its HCL report names.
/// Opens the TPM for this question only. Blocks.
pub fn probe_azure(tcti: &str) -> Result<Option<HardwareKind>, TpmError> {
    let mut tpm = Tpm::open(tcti).map_err(|source| TpmError::Open {
        tcti: tcti.to_string(),
        source,
    })?;
    Ok(tpm.azure_hardware()?)
}

impl TpmBackend {
    /// Opens the TPM behind `tcti` and loads (or creates) the AK at `ak_handle` (default
    /// 0x81010100). Blocks.
    pub fn open(tcti: &str, ak_handle: Option<u32>, pcrs: &[u8]) -> Result<TpmBackend, TpmError> {
        let ak_handle = ak_handle.unwrap_or(DEFAULT_AK_HANDLE);
        let (tpm, ak_public) = open(tcti, ak_handle)?;
        Ok(TpmBackend {
            tcti: tcti.to_string(),
            ak_handle,
            pcrs: pcrs.to_vec(),
            state: Arc::new(Mutex::new(State {
                tpm: Some(tpm),
                ak_public,
            })),
        })
    }

    /// The TCTI this backend talks to.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// TPMT_PUBLIC of the AK as last loaded.
    pub fn ak_public(&self) -> Vec<u8> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ak_public
            .clone()
    }

    /// The HCL report carrying `report_data` as user-data (see
    /// [`Tpm::azure_hcl_report`]), on the TPM this backend holds (reopened if a quote
    /// found it broken). Blocks: call it from a blocking task.
    pub fn azure_hcl_report(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, TpmError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut tpm = self.held_or_reopened(&mut state)?;
        let result = tpm.azure_hcl_report(report_data);
        // After a TPM command failed the connection may be broken: the next call opens
        // the TPM again. Other failures (the report's content) keep it.
        if !matches!(result, Err(HclCollectError::Tpm(_))) {
            state.tpm = Some(tpm);
        }
        Ok(result?)
    }

    /// The TPM `state` holds, taken out of it, or the TPM opened again (with the AK
    /// reloaded) when a failed command dropped it.
    fn held_or_reopened(&self, state: &mut State) -> Result<Tpm, TpmError> {
        match state.tpm.take() {
            Some(tpm) => Ok(tpm),
            None => {
                let (tpm, ak_public) = open(&self.tcti, self.ak_handle)?;
                state.ak_public = ak_public;
                Ok(tpm)
            }
        }
    }

    /// Checks at start that the AK is the `HCLAkPub` of the HCL report the paravisor
    /// keeps now (read, not refreshed). Blocks.
    pub fn check_hcl_ak(&self) -> Result<(), TpmError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A TPM dropped after a failed command is opened again: the check is made,
        // never skipped.
        let mut tpm = self.held_or_reopened(&mut state)?;
        let ak_public = state.ak_public.clone();
        let read = tpm.nv_read(attest::tpm::nv::AZURE_HCL_REPORT_INDEX);
        if read.is_ok() {
            state.tpm = Some(tpm);
        }
        let bytes = read.map_err(|e| TpmError::Hcl(e.into()))?;
        let report = attest::tee::azure::hcl::parse(&bytes).map_err(|e| TpmError::Hcl(e.into()))?;
        let runtime = attest::tee::azure::runtime::parse(&report.runtime_data)
            .map_err(|e| TpmError::Hcl(e.into()))?;
        let not_it = |key: String| TpmError::NotHclAkPub {
            handle: self.ak_handle,
            key,
        };
        let ak = attest::tpm::quote::AkPublic::from_tpmt(&ak_public)
            .map_err(|e| not_it(e.to_string()))?;
        if ak.is_rsa_key(&runtime.ak_pub) {
            Ok(())
        } else {
            Err(not_it(ak.key.describe()))
        }
    }

    /// Computes report_data for `fresh` (a nonce or a batch root) and `manifest_digest`
    /// with the AK's digest, and quotes the configured PCRs with
    /// `tpm_qualifying(report_data)`. Blocks: call it from a blocking task.
    pub fn quote_bound(
        &self,
        fresh: &Freshness,
        manifest_digest: &[u8; 32],
    ) -> Result<BoundQuote, TpmError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut last = None;
        for attempt in 0..2 {
            if state.tpm.is_none() {
                let (tpm, ak_public) = open(&self.tcti, self.ak_handle)?;
                state.tpm = Some(tpm);
                state.ak_public = ak_public;
            }
            let ak = state.ak_public.clone();
            let report_data = fresh.report_data(manifest_digest, &ak_digest(Some(&ak)));
            let qualifying = tpm_qualifying(&report_data);
            let Some(tpm) = state.tpm.as_mut() else {
                continue;
            };
            match tpm.quote(&qualifying, &self.pcrs) {
                Ok(quote) if quote.ak_public != ak => {
                    return Err(TpmError::AkChanged {
                        handle: self.ak_handle,
                    })
                }
                Ok(quote) => return Ok(BoundQuote { report_data, quote }),
                Err(e) => {
                    if attempt == 0 {
                        tracing::warn!(tcti = %self.tcti, "TPM quote failed, opening the TPM again: {e}");
                    }
                    // Dropping the context closes the broken connection.
                    state.tpm = None;
                    last = Some(e);
                }
            }
        }
        Err(TpmError::Quote(last.unwrap_or(
            CollectError::NotPersistentHandle {
                handle: self.ak_handle,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::swtpm::Swtpm;

    /// Forgets the held TPM, as a failed command does.
    fn drop_tpm(backend: &TpmBackend) {
        backend.state.lock().unwrap().tpm = None;
    }

    #[test]
    fn the_hcl_ak_check_is_made_even_after_the_tpm_was_dropped() {
        if !testkit::require_programs(
            &["swtpm", "tpm2_createprimary"],
            testkit::require::install::SWTPM,
        ) {
            return;
        }
        let sw = Swtpm::start().expect("swtpm starts");
        testkit::paravisor::provision(&sw).expect("paravisor stand-in provisions the TPM");

        let hcl_ak = TpmBackend::open(&sw.tcti(), Some(AZURE_AK_HANDLE), &[]).expect("open");
        hcl_ak
            .check_hcl_ak()
            .expect("the paravisor's AK is HCLAkPub");
        drop_tpm(&hcl_ak);
        hcl_ak.check_hcl_ak().expect("reopened, still HCLAkPub");
        drop(hcl_ak);

        // Another key (verigate's own AK at the default handle) is not HCLAkPub, and
        // saying so does not depend on whether the TPM is held.
        let other = TpmBackend::open(&sw.tcti(), None, &[]).expect("open");
        let held = other.check_hcl_ak().unwrap_err();
        assert!(matches!(held, TpmError::NotHclAkPub { .. }), "{held}");
        drop_tpm(&other);
        let reopened = other.check_hcl_ak().unwrap_err();
        assert!(
            matches!(reopened, TpmError::NotHclAkPub { .. }),
            "{reopened}"
        );
    }
}
