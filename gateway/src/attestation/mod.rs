//! The Attester: answers `attest(nonce)` with the Evidence of ARCHITECTURE.md, built from
//! `[attestation]` at start.
//!
//! One call: take the current certificate manifest (never waiting on backends: see
//! [`crate::manifest`]); compute `report_data(nonce, manifest digest, AK digest)`; have
//! the TPM quote the configured PCRs with `tpm_qualifying(report_data)`; read the IMA log
//! *after* the quote; have the TEE sign report_data; assemble the Evidence.
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

pub mod tee;
#[cfg(feature = "tpm")]
pub mod tpm;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use attest::binding::{ak_digest, report_data, Nonce};
use attest::evidence::{Base64, Evidence, TpmEvidence, EVIDENCE_VERSION};

use crate::config::AttestationConfig;
use crate::manifest::ManifestStore;
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
}

/// Counters of the attestation API, rendered after the gateway's own in `/metrics`.
#[derive(Debug, Default)]
pub struct AttestationMetrics {
    /// Attestation calls answered with evidence or an error (bad nonces included).
    pub calls: AtomicU64,
    /// Calls that failed: bad nonce, TPM, TEE or IMA log errors.
    pub failures: AtomicU64,
}

/// Builds Evidence for a nonce; see the module documentation.
pub struct Attester {
    tee: Arc<TeeBackend>,
    #[cfg(feature = "tpm")]
    tpm: Option<Arc<tpm::TpmBackend>>,
    ima_log: Option<PathBuf>,
    manifest: Arc<ManifestStore>,
    /// Calls and failures, for `/metrics`.
    pub metrics: AttestationMetrics,
}

impl std::fmt::Debug for Attester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Attester");
        d.field("tee", &self.tee);
        #[cfg(feature = "tpm")]
        d.field("tpm", &self.tpm);
        d.field("ima_log", &self.ima_log).finish_non_exhaustive()
    }
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
        let tee = TeeBackend::select(config.tee, data_dir, config.simulated_measurement)?;
        let tcti = resolve_tpm(&config.tpm);
        let ima_log = match &tcti {
            Some(_) => {
                check_ima_log(&config.ima_log)?;
                Some(config.ima_log.clone())
            }
            None => None,
        };
        #[cfg(feature = "tpm")]
        let tpm = match &tcti {
            Some(tcti) => Some(Arc::new(tpm::TpmBackend::open(
                tcti,
                config.ak_handle,
                &config.pcrs,
            )?)),
            None => None,
        };
        #[cfg(not(feature = "tpm"))]
        if let Some(tcti) = tcti {
            return Err(AttesterError::NoTpmSupport { tcti });
        }
        tracing::info!(
            tee = tee.kind(),
            tpm = tcti.as_deref().unwrap_or("none"),
            ima_log = ?ima_log,
            "attestation ready"
        );
        Ok(Attester {
            tee: Arc::new(tee),
            #[cfg(feature = "tpm")]
            tpm,
            ima_log,
            manifest,
            metrics: AttestationMetrics::default(),
        })
    }

    /// The manifest store the evidence takes its manifest from.
    pub fn manifest(&self) -> &Arc<ManifestStore> {
        &self.manifest
    }

    /// The TEE backend's kind (`none`, `simulated`, `sev-snp`, `tdx`, `configfs-tsm`).
    pub fn tee_kind(&self) -> &'static str {
        self.tee.kind()
    }

    /// Whether evidence carries a TPM quote.
    pub fn has_tpm(&self) -> bool {
        #[cfg(feature = "tpm")]
        return self.tpm.is_some();
        #[cfg(not(feature = "tpm"))]
        return false;
    }

    /// The Evidence for `nonce` (see the module documentation for the order of steps).
    /// Concurrent calls are fine: the TPM is serialized behind its mutex. Waits for the
    /// manifest's first build (see [`ManifestStore::ready`]).
    pub async fn attest(&self, nonce: Nonce) -> Result<Evidence, AttestError> {
        let state = self.manifest.ready().await;
        let manifest_digest = state.manifest.digest();

        #[cfg(feature = "tpm")]
        let (report_data, tpm_evidence) = match &self.tpm {
            Some(tpm) => {
                let tpm = tpm.clone();
                let bound = blocking("TPM quote", move || {
                    tpm.quote_bound(&nonce, &manifest_digest)
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
            None => (
                report_data(&nonce, &manifest_digest, &ak_digest(None)),
                None,
            ),
        };
        #[cfg(not(feature = "tpm"))]
        let (report_data, tpm_evidence): ([u8; 64], Option<TpmEvidence>) = (
            report_data(&nonce, &manifest_digest, &ak_digest(None)),
            None,
        );

        // After the quote: see the module documentation.
        let ima_log = match &self.ima_log {
            Some(path) => {
                let path = path.clone();
                let bytes = blocking("IMA log read", move || {
                    std::fs::read(&path).map_err(|source| AttestError::ImaLog { path, source })
                })
                .await??;
                Some(Base64(bytes))
            }
            None => None,
        };

        let tee = self.tee.clone();
        let tee_evidence = blocking("TEE report", move || tee.report(report_data)).await??;

        Ok(Evidence {
            version: EVIDENCE_VERSION,
            nonce,
            domain: state.domain.clone(),
            manifest: state.manifest.clone(),
            tee: tee_evidence,
            tpm: tpm_evidence,
            ima_log,
            ima_log_from: None,
        })
    }

    /// The Prometheus text of [`AttestationMetrics`] and the manifest's size.
    pub fn render_metrics(&self) -> String {
        let state = self.manifest.current();
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
        out
    }
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
