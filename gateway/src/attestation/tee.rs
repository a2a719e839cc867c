//! Which TEE signs report_data, chosen once at start from `attestation.tee`.
//!
//! `auto` takes Azure's HCL report when the TPM has NV index 0x01400001 (an Azure
//! confidential VM: no `/dev/sev-guest`, no configfs-tsm in the guest; the Attester
//! probes the TPM first, see [`crate::attestation`]), else configfs-tsm when the kernel
//! offers it (SEV-SNP and TDX guests, kernel 6.7+), else `/dev/sev-guest` when verigated
//! was built with the `snp` feature and the device exists, else no TEE, which it says as
//! a warning at start, in `/healthz` and in the evidence
//! ([`attest::evidence::NO_TEE_FOUND`]). It never falls back to the simulated TEE: that
//! one proves nothing and must be asked for (`tee = "simulated"`).
//!
//! On Azure the report comes from the paravisor's vTPM ([`TeeBackend::Azure`]): report_data
//! is written to NV index 0x01400002 as user-data and the HCL report read back from
//! 0x01400001; on TDX its TD report, MAC'ed for this CPU only, is turned into a TD quote
//! by Azure's instance metadata service ([`super::azure`]).
//!
//! The simulated TEE signs with the key `simulated-tee-key.pem` of the data dir (created
//! once) and reports as its measurement the SHA-384 of verigated's own executable
//! (`/proc/self/exe`, hashed once at start), so replacing the binary changes the
//! measurement as a new VM image would; `attestation.simulated_measurement` overrides
//! it (tests use that to simulate a changed launch measurement).

use std::io::Read;
use std::path::{Path, PathBuf};
#[cfg(feature = "tpm")]
use std::sync::Arc;

use attest::evidence::{Base64, TeeEvidence};
use attest::tee::azure::hcl::HardwareKind;
use attest::tee::simulated::{SimulatedError, SimulatedTee};
use attest::tee::tsm::{self, TsmError};

use crate::config::TeeKind;

/// Where a SEV-SNP guest's driver lives.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// Why no TEE backend could be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum TeeSetupError {
    /// The simulated TEE's key file cannot be read or created.
    #[error("attestation.tee = \"simulated\": {0}")]
    SimulatedKey(#[from] SimulatedError),
    /// The own executable cannot be hashed for the simulated measurement.
    #[error("attestation.tee = \"simulated\": cannot hash the own executable {path}: {source}")]
    OwnExecutable {
        /// The executable's path (`/proc/self/exe`).
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A hardware TEE was asked for and this machine does not offer it.
    #[error("attestation.tee = \"{kind}\": {why}")]
    Unavailable {
        /// The TEE asked for: `sev-snp` or `tdx`.
        kind: &'static str,
        /// What was looked for and not found, and what to check.
        why: String,
    },
}

/// Why a TEE report could not be made for one call.
#[derive(Debug, thiserror::Error)]
pub enum TeeError {
    /// configfs-tsm refused or failed.
    #[error("configfs-tsm: {0}")]
    Tsm(#[from] TsmError),
    /// configfs-tsm answered from another TEE than configured.
    #[error("configfs-tsm provider is `{got}`, expected one for {expected}")]
    ProviderMismatch {
        /// The TEE the configuration asked for.
        expected: &'static str,
        /// The provider configfs-tsm named.
        got: String,
    },
    /// configfs-tsm answered from a provider verigate does not know.
    #[error("configfs-tsm provider `{0}` is neither sev_guest nor tdx_guest")]
    UnknownProvider(String),
    /// The host's certificate table (auxblob) does not parse.
    #[error("SEV-SNP certificate table from the host: {0}")]
    CertTable(String),
    /// The paravisor's vTPM gave no HCL report for the user-data.
    #[cfg(feature = "tpm")]
    #[error("{0}")]
    AzureTpm(#[from] super::tpm::TpmError),
    /// The HCL report read back is not the hardware's the backend was chosen for, or the
    /// TD quote is not the quote of its TD report.
    #[error("{0}")]
    AzureReport(#[from] attest::tee::azure::AzureError),
    /// Azure's instance metadata service gave no TD quote.
    #[error("TD quote: {0}")]
    Imds(#[from] super::azure::ImdsError),
    /// `/dev/sev-guest` failed.
    #[cfg(feature = "snp")]
    #[error("{0}")]
    SevGuest(#[from] attest::tee::snp::collect::SnpCollectError),
}

/// The TEE backend in use.
pub enum TeeBackend {
    /// No TEE: evidence says `kind: none`.
    None,
    /// `tee = "auto"` found no TEE: evidence says `kind: none` with the cause.
    NotFound,
    /// The simulated TEE (see the module documentation).
    Simulated {
        /// Signs reports with the data dir's `simulated-tee-key.pem`.
        tee: SimulatedTee,
        /// The reported measurement: SHA-384 of the own executable, or
        /// `attestation.simulated_measurement`.
        measurement: [u8; 48],
    },
    /// configfs-tsm; `expect` is the kind the configuration asked for (`None`: auto).
    Tsm {
        /// The configfs-tsm report folder (`/sys/kernel/config/tsm/report` outside tests).
        root: PathBuf,
        /// The TEE the configuration asked for, or `None` for `auto`.
        expect: Option<&'static str>,
    },
    /// `/dev/sev-guest` through the `sev` crate.
    #[cfg(feature = "snp")]
    SevGuest,
    /// An Azure confidential VM: the HCL report of the paravisor's vTPM (see the module
    /// documentation), and for TDX the TD quote from IMDS.
    #[cfg(feature = "tpm")]
    Azure {
        /// The vTPM, shared with the quote (one mutex).
        tpm: Arc<super::tpm::TpmBackend>,
        /// The hardware the HCL report holds, found at start.
        hardware: HardwareKind,
        /// `attestation.azure_imds_url`.
        imds_url: String,
    },
}

/// The most a TD quote request to IMDS may take (one per attestation round: a TD quote
/// cannot be cached, it carries the round's report_data).
pub const TD_QUOTE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for TeeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl TeeBackend {
    /// Chooses the backend for `kind` (see the module documentation), with configfs-tsm
    /// at `tsm_root` (`attestation.tsm_report_root`: the kernel's folder, or a stand-in
    /// in tests).
    pub fn select_at(
        kind: TeeKind,
        data_dir: &Path,
        simulated_measurement: Option<[u8; 48]>,
        tsm_root: &Path,
    ) -> Result<TeeBackend, TeeSetupError> {
        let tsm_present = tsm_root.is_dir();
        let tsm = |expect| TeeBackend::Tsm {
            root: tsm_root.to_path_buf(),
            expect,
        };
        match kind {
            TeeKind::None => Ok(TeeBackend::None),
            TeeKind::Simulated => {
                let tee = SimulatedTee::load_or_create(data_dir)?;
                let measurement = match simulated_measurement {
                    Some(m) => m,
                    None => own_executable_sha384()?,
                };
                Ok(TeeBackend::Simulated { tee, measurement })
            }
            TeeKind::Auto if tsm_present => Ok(tsm(None)),
            TeeKind::Auto => Ok(sev_guest().unwrap_or(TeeBackend::NotFound)),
            TeeKind::SevSnp if tsm_present => Ok(tsm(Some("sev-snp"))),
            TeeKind::SevSnp => sev_guest().ok_or_else(|| TeeSetupError::Unavailable {
                kind: "sev-snp",
                why: format!(
                    "neither configfs-tsm ({}) nor {SEV_GUEST_DEVICE} (with the `snp` build \
                     feature{}) is available: is this an SEV-SNP guest?",
                    tsm_root.display(),
                    if cfg!(feature = "snp") {
                        ""
                    } else {
                        ", not enabled in this build"
                    }
                ),
            }),
            TeeKind::Tdx if tsm_present => Ok(tsm(Some("tdx"))),
            TeeKind::Tdx => Err(TeeSetupError::Unavailable {
                kind: "tdx",
                why: format!(
                    "configfs-tsm ({}) is not available: is this a TDX guest with kernel 6.7 or later?",
                    tsm_root.display()
                ),
            }),
            // Chosen by the Attester, which holds the TPM they need; here only when it
            // cannot (a build without the `tpm` feature).
            TeeKind::AzureSevSnp => Err(azure_without_tpm(HardwareKind::SevSnp)),
            TeeKind::AzureTdx => Err(azure_without_tpm(HardwareKind::Tdx)),
        }
    }

    /// The Azure backend for `hardware`, reading HCL reports through `tpm` (its AK must
    /// be the paravisor's at 0x81000003) and asking IMDS at `imds_url` for TD quotes.
    #[cfg(feature = "tpm")]
    pub fn azure(
        tpm: Arc<super::tpm::TpmBackend>,
        hardware: HardwareKind,
        imds_url: &str,
    ) -> TeeBackend {
        TeeBackend::Azure {
            tpm,
            hardware,
            imds_url: imds_url.to_string(),
        }
    }

    /// The evidence `kind` this backend produces (`tsm` when configfs-tsm decides).
    pub fn kind(&self) -> &'static str {
        match self {
            TeeBackend::None | TeeBackend::NotFound => "none",
            TeeBackend::Simulated { .. } => "simulated",
            TeeBackend::Tsm {
                expect: Some(kind), ..
            } => kind,
            TeeBackend::Tsm { expect: None, .. } => "configfs-tsm",
            #[cfg(feature = "snp")]
            TeeBackend::SevGuest => "sev-snp",
            #[cfg(feature = "tpm")]
            TeeBackend::Azure { hardware, .. } => azure_kind(*hardware),
        }
    }

    /// What the backend reads its reports from, for the log line that says what
    /// `tee = "auto"` chose.
    pub fn found_by(&self) -> String {
        match self {
            TeeBackend::None | TeeBackend::NotFound => "no TEE".into(),
            TeeBackend::Simulated { .. } => "the simulated TEE".into(),
            TeeBackend::Tsm { root, .. } => format!("configfs-tsm at {}", root.display()),
            #[cfg(feature = "snp")]
            TeeBackend::SevGuest => SEV_GUEST_DEVICE.into(),
            #[cfg(feature = "tpm")]
            TeeBackend::Azure { tpm, hardware, .. } => format!(
                "the {hardware} HCL report in NV index 0x01400001 of the TPM {} (an Azure confidential VM)",
                tpm.tcti()
            ),
        }
    }

    /// A warning for operators when the backend is not what a confidential VM should
    /// have: `tee = "auto"` found no TEE.
    pub fn warning(&self) -> Option<&'static str> {
        matches!(self, TeeBackend::NotFound).then_some(attest::evidence::NO_TEE_FOUND)
    }

    /// A report carrying `report_data`. Blocks (configfs and ioctl I/O): call it from a
    /// blocking task.
    pub fn report(&self, report_data: [u8; 64]) -> Result<TeeEvidence, TeeError> {
        match self {
            TeeBackend::None => Ok(TeeEvidence::None),
            TeeBackend::NotFound => Ok(TeeEvidence::NotFound {
                cause: attest::evidence::NO_TEE_FOUND.to_string(),
            }),
            TeeBackend::Simulated { tee, measurement } => Ok(TeeEvidence::Simulated {
                report: Base64(tee.report(*measurement, report_data)),
                public_key: Base64(tee.public_key_der()),
            }),
            TeeBackend::Tsm { root, expect } => {
                let r = tsm::request_at(root, &report_data, None)?;
                let kind = r
                    .tee_kind()
                    .ok_or_else(|| TeeError::UnknownProvider(r.provider.clone()))?;
                if let Some(expected) = expect {
                    if *expected != kind {
                        return Err(TeeError::ProviderMismatch {
                            expected,
                            got: r.provider,
                        });
                    }
                }
                if kind == "tdx" {
                    return Ok(TeeEvidence::Tdx {
                        report: Base64(r.outblob),
                        collateral: None,
                    });
                }
                let cert_chain = match r.auxblob {
                    Some(aux) => snp_chain_pem(&aux)?,
                    None => None,
                };
                Ok(TeeEvidence::SevSnp {
                    report: Base64(r.outblob),
                    cert_chain,
                })
            }
            #[cfg(feature = "snp")]
            TeeBackend::SevGuest => {
                let r = attest::tee::snp::collect::extended_report(&report_data, None)?;
                let chain = attest::tee::snp::cert_table::certs_from_table(&r.certificates);
                Ok(TeeEvidence::SevSnp {
                    report: Base64(r.report),
                    cert_chain: chain.chain_pem.map(Base64),
                })
            }
            #[cfg(feature = "tpm")]
            TeeBackend::Azure {
                tpm,
                hardware,
                imds_url,
            } => {
                let hcl_report = tpm.azure_hcl_report(&report_data)?;
                let parsed = attest::tee::azure::parse_expecting(&hcl_report, *hardware)?;
                match hardware {
                    HardwareKind::SevSnp => Ok(TeeEvidence::AzureSevSnp {
                        hcl_report: Base64(hcl_report),
                        cert_chain: None,
                    }),
                    HardwareKind::Tdx => {
                        let td_quote = super::azure::fetch_td_quote(
                            imds_url,
                            &parsed.hardware_report,
                            TD_QUOTE_DEADLINE,
                        )?;
                        // A quote for another TD report would fail every verify: say so here.
                        attest::tee::azure::check_td_quote_link(&parsed, &td_quote)?;
                        Ok(TeeEvidence::AzureTdx {
                            hcl_report: Base64(hcl_report),
                            td_quote: Base64(td_quote),
                            collateral: None,
                        })
                    }
                }
            }
        }
    }
}

/// The evidence kind of an Azure VM on `hardware`.
pub fn azure_kind(hardware: HardwareKind) -> &'static str {
    match hardware {
        HardwareKind::SevSnp => "azure-sev-snp",
        HardwareKind::Tdx => "azure-tdx",
    }
}

/// The hardware an Azure [`TeeKind`] names; `None` for the other kinds.
pub fn azure_hardware(kind: TeeKind) -> Option<HardwareKind> {
    match kind {
        TeeKind::AzureSevSnp => Some(HardwareKind::SevSnp),
        TeeKind::AzureTdx => Some(HardwareKind::Tdx),
        TeeKind::Auto | TeeKind::SevSnp | TeeKind::Tdx | TeeKind::Simulated | TeeKind::None => None,
    }
}

/// The host's certificate table as the PEM chain the evidence carries.
fn snp_chain_pem(auxblob: &[u8]) -> Result<Option<Base64>, TeeError> {
    use attest::tee::snp::cert_table;
    let entries =
        cert_table::parse_cert_table(auxblob).map_err(|e| TeeError::CertTable(e.to_string()))?;
    Ok(cert_table::certs_from_table(&entries).chain_pem.map(Base64))
}

#[cfg(feature = "snp")]
fn sev_guest() -> Option<TeeBackend> {
    Path::new(SEV_GUEST_DEVICE)
        .exists()
        .then_some(TeeBackend::SevGuest)
}

#[cfg(not(feature = "snp"))]
fn sev_guest() -> Option<TeeBackend> {
    None
}

/// Why an Azure kind cannot be had without a TPM.
pub fn azure_without_tpm(hardware: HardwareKind) -> TeeSetupError {
    TeeSetupError::Unavailable {
        kind: azure_kind(hardware),
        why: "the HCL report is read from the paravisor's vTPM, and this verigated was built \
              without the `tpm` feature"
            .into(),
    }
}

/// SHA-384 of `/proc/self/exe`, read in blocks.
pub fn own_executable_sha384() -> Result<[u8; 48], TeeSetupError> {
    let path = PathBuf::from("/proc/self/exe");
    let err = |source| TeeSetupError::OwnExecutable {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::File::open(&path).map_err(err)?;
    let mut hasher = sha384_context();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    let out = hasher.finish();
    let mut digest = [0u8; 48];
    if out.as_ref().len() != digest.len() {
        return Err(err(std::io::Error::other(
            "SHA-384 gave a digest of another length",
        )));
    }
    digest.copy_from_slice(out.as_ref());
    Ok(digest)
}

/// A streaming SHA-384 from ring (through rustls's cipher suite, ring being no direct
/// dependency): its assembly is fast even in unoptimized builds, where the pure-Rust
/// `sha2` takes half a minute over a 160 MB debug binary and would delay the start.
fn sha384_context() -> Box<dyn rustls::crypto::hash::Context> {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384 {
        rustls::SupportedCipherSuite::Tls13(suite) => suite.common.hash_provider.start(),
        // The suite above is a TLS 1.3 suite by definition.
        rustls::SupportedCipherSuite::Tls12(suite) => suite.common.hash_provider.start(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_without_tsm_is_none_never_simulated() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-tsm");
        let b = TeeBackend::select_at(TeeKind::Auto, dir.path(), None, &missing).unwrap();
        if cfg!(feature = "snp") && Path::new(SEV_GUEST_DEVICE).exists() {
            assert_eq!(b.kind(), "sev-snp");
        } else {
            assert_eq!(b.kind(), "none");
        }
        assert!(!dir.path().join("simulated-tee-key.pem").exists());
    }

    #[test]
    fn hardware_kinds_without_hardware_are_errors_that_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-tsm");
        let e = TeeBackend::select_at(TeeKind::Tdx, dir.path(), None, &missing).unwrap_err();
        assert!(e.to_string().contains("configfs-tsm"), "{e}");
        if !Path::new(SEV_GUEST_DEVICE).exists() {
            let e = TeeBackend::select_at(TeeKind::SevSnp, dir.path(), None, &missing).unwrap_err();
            assert!(e.to_string().contains(SEV_GUEST_DEVICE), "{e}");
        }
    }

    #[test]
    fn azure_kinds_are_chosen_by_the_attester_never_here() {
        // select_at has no TPM to read the HCL report from: the Attester chooses Azure
        // (see attestation::azure_hardware); reaching here means a build without `tpm`.
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-tsm");
        for (kind, name) in [
            (TeeKind::AzureSevSnp, "azure-sev-snp"),
            (TeeKind::AzureTdx, "azure-tdx"),
        ] {
            let e = TeeBackend::select_at(kind, dir.path(), None, &missing).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("attestation.tee = \"{name}\": the HCL report")),
                "{e}"
            );
            let hw = azure_hardware(kind).unwrap();
            assert_eq!(azure_kind(hw), name);
        }
        for kind in [TeeKind::Auto, TeeKind::SevSnp, TeeKind::Tdx, TeeKind::None] {
            assert_eq!(azure_hardware(kind), None);
        }
    }

    #[test]
    fn simulated_measurement_is_the_executable_unless_configured() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-tsm");
        let b = TeeBackend::select_at(TeeKind::Simulated, dir.path(), None, &missing).unwrap();
        let TeeBackend::Simulated { measurement, .. } = &b else {
            panic!("{b:?}");
        };
        // coreutils' sha384sum: an implementation independent of the one under test.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let out = std::process::Command::new("sha384sum")
            .arg(&exe)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let expected = text.split_whitespace().next().unwrap();
        assert_eq!(hex::encode(measurement), expected);
        let b =
            TeeBackend::select_at(TeeKind::Simulated, dir.path(), Some([7; 48]), &missing).unwrap();
        let TeeEvidence::Simulated { report, public_key } = b.report([9; 64]).unwrap() else {
            panic!("not simulated");
        };
        let r = attest::tee::simulated::verify(&report.0, &public_key.0).unwrap();
        assert_eq!(r.measurement, [7; 48]);
        assert_eq!(r.report_data, [9; 64]);
    }

    #[test]
    fn a_fake_tsm_tree_that_fails_is_an_error_not_a_panic() {
        // configfs creates the attributes when the entry directory is made; a plain
        // directory does not, so the request fails reading `generation`.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tsm");
        std::fs::create_dir(&root).unwrap();
        let b = TeeBackend::select_at(TeeKind::Auto, dir.path(), None, &root).unwrap();
        let e = b.report([0; 64]).unwrap_err();
        assert!(matches!(e, TeeError::Tsm(_)), "{e}");
        let e = snp_chain_pem(b"garbage").unwrap_err();
        assert!(matches!(e, TeeError::CertTable(_)), "{e}");
    }
}
