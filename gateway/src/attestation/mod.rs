//! The Attester: answers `attest(nonce)` with the Evidence of ARCHITECTURE.md, built from
//! `[attestation]` at start.
//!
//! Callers join rounds ([`batch`]): concurrent callers share one round, which binds the
//! Merkle root of their nonces (evidence version 2). One round: take the current
//! certificate manifest (never waiting on backends: see [`crate::manifest`]); compute
//! `report_data_v2(root, manifest digest, AK digest)`; have the TPM quote the configured
//! PCRs with `tpm_qualifying(report_data)`; read the IMA log *after* the quote (from the
//! one shared copy, [`ima`]); have the TEE sign report_data. Each caller's evidence is the
//! round's ([`shared`]) with its own nonce and inclusion proof.
//!
//! The IMA log is read after the quote because the log only grows: read afterwards, it
//! holds every measurement whose extend the quoted PCR 10 includes, and possibly a few
//! more made in between. A verifier therefore replays the log entry by entry and accepts
//! the first prefix whose replay equals the quoted PCR value; entries after that prefix
//! are not covered by the quote.
//!
//! `tpm = "auto"` means `device:/dev/tpmrm0` when that device exists, else no TPM. With a
//! TPM, the IMA log must exist at start (an error otherwise: a quote over PCR 10 without
//! its log proves nothing the verifier can check). Without a TPM, `tpm` and `ima_log`
//! are null in the evidence (nothing would vouch for the log) and the AK digest bound
//! in report_data is 32 zero bytes. TEE, TPM and AK are chosen at start; changing them
//! takes a restart (a reload changes the routes, hence the manifest, only).

pub mod azure;
pub mod batch;
pub mod collateral;
pub mod ima;
pub mod shared;
pub mod tee;
#[cfg(feature = "tpm")]
pub mod tpm;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use attest::batch::{Batch, Hash};
use attest::binding::{ak_digest, Freshness, Nonce};
#[cfg(feature = "tpm")]
use attest::evidence::Base64;
use attest::evidence::{Evidence, TpmEvidence};
use hyper::body::Bytes;

use crate::config::{AttestationConfig, TeeKind};
use crate::manifest::ManifestStore;
use attest::tee::azure::hcl::HardwareKind;
use batch::{Batcher, JoinError, Round};
use ima::ImaLogCache;
use shared::RoundEvidence;
use tee::{TeeBackend, TeeError, TeeSetupError};

/// The TPM device `tpm = "auto"` uses when it exists.
pub const AUTO_TPM_DEVICE: &str = "/dev/tpmrm0";

/// Why the Attester cannot be built at start.
#[derive(Debug, thiserror::Error)]
pub enum AttesterError {
    /// The configured TEE cannot be set up (see [`TeeSetupError`]).
    #[error(transparent)]
    Tee(#[from] TeeSetupError),
    /// The TPM cannot be opened or its AK loaded.
    #[cfg(feature = "tpm")]
    #[error("attestation.tpm: {0}")]
    Tpm(#[from] tpm::TpmError),
    /// A TPM is configured but this build has no TPM support.
    #[error("attestation.tpm = \"{tcti}\": this verigated was built without the `tpm` feature; set tpm = \"none\"")]
    NoTpmSupport {
        /// The configured `attestation.tpm` value.
        tcti: String,
    },
    /// The IMA log a TPM quote needs does not exist or cannot be read.
    #[error("attestation.ima_log: {path} cannot be read ({source}); with a TPM the IMA log is required (is IMA enabled in the kernel, is securityfs mounted?)")]
    ImaLogMissing {
        /// The configured `attestation.ima_log` path.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
}

/// Why one attestation failed (the API answers 503 with this message).
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The TPM gave no quote.
    #[cfg(feature = "tpm")]
    #[error("{0}")]
    Tpm(#[from] tpm::TpmError),
    /// The TEE gave no report.
    #[error("TEE report: {0}")]
    Tee(#[from] TeeError),
    /// The IMA log cannot be read.
    #[error("IMA log {path}: {source}")]
    ImaLog {
        /// The configured `attestation.ima_log` path.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled (a defect; the message says which).
    #[error("internal: the {what} task did not finish: {why}")]
    Task {
        /// Which task: "TPM quote", "IMA log read" or "TEE report".
        what: &'static str,
        /// The join error: whether it panicked or was cancelled.
        why: String,
    },
    /// The round this call joined failed, or could not be joined (503; `Busy` asks the
    /// caller to retry).
    #[error(transparent)]
    Join(#[from] JoinError<AttestError>),
}

impl AttestError {
    /// Whether the call was refused because too many wait (503 with `Retry-After`).
    pub fn is_busy(&self) -> bool {
        matches!(self, AttestError::Join(JoinError::Busy { .. }))
    }
}

/// Counters of the attestation API, rendered after the gateway's own in `/metrics`.
#[derive(Debug, Default)]
pub struct AttestationMetrics {
    /// Attestation calls answered with evidence or an error (bad nonces included).
    pub calls: AtomicU64,
    /// Calls that failed: bad nonce, TPM, TEE or IMA log errors.
    pub failures: AtomicU64,
}

/// The hardware part of one round: what a round uses, and nothing else.
pub struct HardwareRound {
    tee: Arc<TeeBackend>,
    #[cfg(feature = "tpm")]
    tpm: Option<Arc<tpm::TpmBackend>>,
    ima_log: Option<Arc<ImaLogCache>>,
    manifest: Arc<ManifestStore>,
    collateral: Arc<collateral::Collateral>,
}

impl std::fmt::Debug for HardwareRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("HardwareRound");
        d.field("tee", &self.tee);
        #[cfg(feature = "tpm")]
        d.field("tpm", &self.tpm);
        d.field("ima_log", &self.ima_log).finish_non_exhaustive()
    }
}

/// Builds Evidence for a nonce; see the module documentation.
#[derive(Debug)]
pub struct Attester {
    batcher: Arc<Batcher<HardwareRound>>,
    /// Calls and failures, for `/metrics`.
    pub metrics: AttestationMetrics,
}

/// The TCTI `attestation.tpm` designates: `None` for no TPM.
pub fn resolve_tpm(setting: &str) -> Option<String> {
    match setting.trim() {
        "none" => None,
        "auto" => Path::new(AUTO_TPM_DEVICE)
            .exists()
            .then(|| format!("device:{AUTO_TPM_DEVICE}")),
        tcti => Some(tcti.to_string()),
    }
}

impl Attester {
    /// Builds the Attester of `config` (TEE key and measurement, TPM and AK, IMA log
    /// check), reading certificates from `manifest`. Blocks (TPM, files): call it at
    /// start.
    pub fn from_config(
        config: &AttestationConfig,
        data_dir: &Path,
        manifest: Arc<ManifestStore>,
    ) -> Result<Attester, AttesterError> {
        let tcti = resolve_tpm(&config.tpm);
        let ima_log = match &tcti {
            Some(_) => {
                check_ima_log(&config.ima_log)?;
                Some(config.ima_log.clone())
            }
            None => None,
        };
        #[cfg(feature = "tpm")]
        let azure = azure_hardware(config, tcti.as_deref())?;
        #[cfg(not(feature = "tpm"))]
        let azure: Option<attest::tee::azure::hcl::HardwareKind> = None;
        #[cfg(feature = "tpm")]
        let tpm = match &tcti {
            Some(tcti) => {
                let handle = match azure {
                    Some(_) => Some(attest::tee::azure::HCL_AK_HANDLE),
                    None => config.ak_handle,
                };
                Some(Arc::new(tpm::TpmBackend::open(tcti, handle, &config.pcrs)?))
            }
            None => None,
        };
        #[cfg(not(feature = "tpm"))]
        if let Some(tcti) = tcti {
            return Err(AttesterError::NoTpmSupport { tcti });
        }
        let tee = match azure {
            #[cfg(feature = "tpm")]
            Some(hardware) => match &tpm {
                Some(tpm) => {
                    tpm.check_hcl_ak()?;
                    TeeBackend::azure(tpm.clone(), hardware, &config.collateral.azure_imds_url)
                }
                // azure_hardware found it through this TPM.
                None => return Err(AttesterError::Tee(tee::azure_without_tpm(hardware))),
            },
            _ => TeeBackend::select_at(
                config.tee,
                data_dir,
                config.simulated_measurement,
                &config.collateral.tsm_report_root,
            )?,
        };
        if let Some(warning) = tee.warning() {
            let azure_index = if tcti.is_some() {
                "no Azure HCL report in TPM NV index 0x01400001"
            } else {
                "no TPM to look for an Azure HCL report in (attestation.tpm)"
            };
            tracing::warn!(
                "{warning} ({azure_index}, no configfs-tsm at {}, no {}): \
                 attestations carry no TEE report and every verify fails; set attestation.tee to the TEE this VM has",
                config.collateral.tsm_report_root.display(),
                tee::SEV_GUEST_DEVICE
            );
        } else if config.tee == TeeKind::Auto {
            tracing::info!(tee = tee.kind(), "tee = auto: {}", tee.found_by());
        }
        tracing::info!(
            tee = tee.kind(),
            tpm = tcti.as_deref().unwrap_or("none"),
            ima_log = ?ima_log,
            "attestation ready"
        );
        // On Azure the VCEK comes from the instance metadata service, which serves this
        // VM's chip; elsewhere from AMD KDS.
        let collateral = match azure {
            Some(HardwareKind::SevSnp) => collateral::Collateral::with_vcek_source(
                &config.collateral,
                data_dir,
                collateral::VcekSource::AzureImds(config.collateral.azure_imds_url.clone()),
            ),
            _ => collateral::Collateral::new(&config.collateral, data_dir),
        };
        let round = HardwareRound {
            tee: Arc::new(tee),
            #[cfg(feature = "tpm")]
            tpm,
            ima_log: ima_log.map(|p| Arc::new(ImaLogCache::new(p))),
            manifest,
            collateral: Arc::new(collateral),
        };
        Ok(Attester {
            batcher: Batcher::new(round, config.batch),
            metrics: AttestationMetrics::default(),
        })
    }

    /// The manifest store the evidence takes its manifest from.
    pub fn manifest(&self) -> &Arc<ManifestStore> {
        &self.batcher.round().manifest
    }

    /// The TEE backend's kind (`none`, `simulated`, `sev-snp`, `tdx`, `configfs-tsm`).
    pub fn tee_kind(&self) -> &'static str {
        self.batcher.round().tee.kind()
    }

    /// The warning `/healthz` shows about the TEE, if any (see [`TeeBackend::warning`]).
    pub fn tee_warning(&self) -> Option<&'static str> {
        self.batcher.round().tee.warning()
    }

    /// Whether evidence carries a TPM quote.
    pub fn has_tpm(&self) -> bool {
        #[cfg(feature = "tpm")]
        return self.batcher.round().tpm.is_some();
        #[cfg(not(feature = "tpm"))]
        return false;
    }

    /// The Evidence for `nonce`, the IMA log copied into it (for in-process users such as
    /// the snapshot job; the API answers with [`Attester::attest_body`]). Joins the next
    /// round (see [`batch`]). Waits for the manifest's first build (see
    /// [`ManifestStore::ready`]).
    pub async fn attest(&self, nonce: Nonce) -> Result<Evidence, AttestError> {
        let (round, batch) = self.join(nonce).await?;
        Ok(round.evidence(nonce, batch))
    }

    /// The Evidence JSON for `nonce`, in chunks that share the round's IMA log instead of
    /// copying it (see [`shared`]).
    pub async fn attest_body(&self, nonce: Nonce) -> Result<Vec<Bytes>, AttestError> {
        let (round, batch) = self.join(nonce).await?;
        Ok(round.body(nonce, batch))
    }

    async fn join(&self, nonce: Nonce) -> Result<(Arc<RoundEvidence>, Batch), AttestError> {
        let share = self.batcher.join(nonce).await?;
        Ok((share.round, share.batch))
    }
}

impl Round for HardwareRound {
    type Output = RoundEvidence;
    type Error = AttestError;

    async fn run(&self, root: Hash) -> Result<RoundEvidence, AttestError> {
        self.run_round(Freshness::BatchRoot(root)).await
    }
}

impl HardwareRound {
    /// One round binding `fresh` (see the module documentation for the order of steps).
    /// Rounds run one at a time (the batcher's driver); the TPM is behind its mutex anyway.
    async fn run_round(&self, fresh: Freshness) -> Result<RoundEvidence, AttestError> {
        let state = self.manifest.ready().await;
        let manifest_digest = state.manifest.digest();

        #[cfg(feature = "tpm")]
        let (report_data, tpm_evidence) = match &self.tpm {
            Some(tpm) => {
                let tpm = tpm.clone();
                let bound = blocking("TPM quote", move || {
                    tpm.quote_bound(&fresh, &manifest_digest)
                })
                .await??;
                let q = bound.quote;
                (
                    bound.report_data,
                    Some(TpmEvidence {
                        ak_public: Base64(q.ak_public),
                        quote: Base64(q.attest),
                        signature: Base64(q.signature),
                        pcrs: q.pcrs,
                    }),
                )
            }
            None => (fresh.report_data(&manifest_digest, &ak_digest(None)), None),
        };
        #[cfg(not(feature = "tpm"))]
        let (report_data, tpm_evidence): ([u8; 64], Option<TpmEvidence>) =
            (fresh.report_data(&manifest_digest, &ak_digest(None)), None);

        // After the quote: see the module documentation.
        let ima_log = match &self.ima_log {
            Some(cache) => {
                let cache = cache.clone();
                let log = blocking("IMA log read", move || {
                    cache.current().map_err(|source| AttestError::ImaLog {
                        path: cache.path().to_path_buf(),
                        source,
                    })
                })
                .await??;
                Some(log)
            }
            None => None,
        };

        let tee = self.tee.clone();
        let tee_evidence = blocking("TEE report", move || tee.report(report_data)).await??;
        // Bounded (collateral::FETCH_DEADLINE), and only when nothing is cached.
        let tee_evidence = self.collateral.complete(tee_evidence).await;

        Ok(RoundEvidence {
            domain: state.domain.clone(),
            manifest: state.manifest.clone(),
            tee: tee_evidence,
            tpm: tpm_evidence,
            ima_log,
        })
    }
}

impl Attester {
    /// The Prometheus text of [`AttestationMetrics`] and the manifest's size.
    pub fn render_metrics(&self) -> String {
        let state = self.manifest().current();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        family(
            "verigated_attestation_calls_total",
            "counter",
            "Calls of GET /v1/attestation.",
            self.metrics.calls.load(Ordering::Relaxed),
        );
        family(
            "verigated_attestation_failures_total",
            "counter",
            "Calls of GET /v1/attestation answered with an error (bad nonce, TPM, TEE, IMA log).",
            self.metrics.failures.load(Ordering::Relaxed),
        );
        family(
            "verigated_attestation_rounds_total",
            "counter",
            "TEE reports and TPM quotes made for attestation calls (concurrent calls share one).",
            self.batcher.counts.rounds.load(Ordering::Relaxed),
        );
        family(
            "verigated_attestation_refused_total",
            "counter",
            "Attestation calls refused with 503 because attestation.batch_max_waiting calls waited.",
            self.batcher.counts.refused.load(Ordering::Relaxed),
        );
        family(
            "verigated_manifest_entries",
            "gauge",
            "Names in the current certificate manifest (the own domain included).",
            state.manifest.entries().len() as u64,
        );
        family(
            "verigated_manifest_unreachable",
            "gauge",
            "Routes left out of the current certificate manifest (backend unreachable).",
            state.unreachable.len() as u64,
        );
        out.push_str(&self.batcher.round().collateral.render_metrics());
        out
    }
}

/// Whether this is an Azure confidential VM, and on which hardware: asked of the TPM when
/// `tee` is `auto` (before any other TEE: an Azure guest has none of the others) or an
/// Azure kind, which must then match what the TPM holds.
#[cfg(feature = "tpm")]
fn azure_hardware(
    config: &AttestationConfig,
    tcti: Option<&str>,
) -> Result<Option<HardwareKind>, AttesterError> {
    let wanted = tee::azure_hardware(config.tee);
    if config.tee != TeeKind::Auto && wanted.is_none() {
        return Ok(None);
    }
    let found = match tcti {
        Some(tcti) => tpm::probe_azure(tcti)?,
        None => None,
    };
    let chosen = match (wanted, found) {
        (None, None) => return Ok(None),
        (None, Some(hw)) => hw,
        (Some(wanted), Some(hw)) if hw == wanted => hw,
        (Some(wanted), Some(hw)) => {
            let kind = tee::azure_kind(wanted);
            return Err(AttesterError::Tee(TeeSetupError::Unavailable {
                kind,
                why: format!(
                    "the HCL report in TPM NV index 0x01400001 holds a {hw} report: set tee = \"{}\" (or \"auto\")",
                    tee::azure_kind(hw)
                ),
            }));
        }
        (Some(wanted), None) => {
            return Err(AttesterError::Tee(TeeSetupError::Unavailable {
                kind: tee::azure_kind(wanted),
                why: match tcti {
                    Some(tcti) => format!(
                    "the TPM {tcti} has no NV index 0x01400001: is this an Azure confidential VM?"
                ),
                    None => {
                        "no TPM (attestation.tpm): the HCL report is read from the paravisor's vTPM"
                            .into()
                    }
                },
            }))
        }
    };
    if let Some(h) = config
        .ak_handle
        .filter(|&h| h != attest::tee::azure::HCL_AK_HANDLE)
    {
        return Err(AttesterError::Tee(TeeSetupError::Unavailable {
            kind: tee::azure_kind(chosen),
            why: format!(
                "attestation.ak_handle = {h:#010x}, but on Azure quotes come from the paravisor's HCL AK at 0x81000003: remove ak_handle"
            ),
        }));
    }
    Ok(Some(chosen))
}

/// The IMA log must be a readable file (opening a directory would succeed, reading it
/// would fail at every call).
fn check_ima_log(path: &Path) -> Result<(), AttesterError> {
    let missing = |source| AttesterError::ImaLogMissing {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(missing)?;
    if file.metadata().map_err(missing)?.is_dir() {
        return Err(missing(std::io::Error::other("a directory, not a file")));
    }
    Ok(())
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AttestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AttestError::Task {
            what,
            why: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm_settings() {
        assert_eq!(resolve_tpm("none"), None);
        assert_eq!(
            resolve_tpm("swtpm:host=127.0.0.1,port=1"),
            Some("swtpm:host=127.0.0.1,port=1".to_string())
        );
        let auto = resolve_tpm("auto");
        if Path::new(AUTO_TPM_DEVICE).exists() {
            assert_eq!(auto.as_deref(), Some("device:/dev/tpmrm0"));
        } else {
            assert_eq!(auto, None);
        }
    }

    #[test]
    fn ima_log_must_be_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_ima_log(dir.path()).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let missing = dir.path().join("nope");
        let e = check_ima_log(&missing).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let file = dir.path().join("log");
        std::fs::write(&file, b"").unwrap();
        assert!(check_ima_log(&file).is_ok());
    }
}
