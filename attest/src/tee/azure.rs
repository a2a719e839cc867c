//! Azure confidential VMs (ARCHITECTURE.md, "Azure confidential VMs"): the paravisor's
//! vTPM keeps an HCL report ([`hcl`]) whose hardware report vouches, through its
//! report_data, for the runtime-data JSON ([`runtime`]); that JSON names the vTPM's
//! attestation key (`HCLAkPub`) and carries the 64 bytes the guest wrote as `user-data`,
//! which verigated fills with its `report_data`.
//!
//! This module checks the chain up to the runtime data: the hardware report (SEV-SNP
//! through [`crate::tee::snp`]; TDX through the TD quote for the MAC'ed TD report, whose
//! REPORTDATA must be the TD report's, then [`crate::tee::tdx`]), then the runtime-data
//! hash. What the runtime data vouches for (the user-data as report_data, HCLAkPub as
//! the key of the TPM quote) is checked by [`crate::verify`], which holds the binding
//! and the quote.

pub mod hcl;
pub mod runtime;

/// Where Azure's paravisor persists the vTPM attestation key (`HCLAkPub`), the only key
/// whose quotes the HCL report vouches for.
pub const HCL_AK_HANDLE: u32 = 0x8100_0003;

use crate::tee::snp::{self, SnpCerts, SnpError, SnpVerified};
use crate::tee::tdx::{self, TdxError, TdxOptions, TdxVerified};
use hcl::{HardwareKind, HclError, HclReport};
use runtime::{RuntimeData, RuntimeError};
use std::time::SystemTime;

/// The stages of Azure verification, in order; each error belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AzureStep {
    /// The HCL report's layout and the hardware kind.
    Hcl,
    /// The hardware report (SEV-SNP report, or TD quote) to its vendor root.
    Hardware,
    /// The TD quote is the quote of the HCL report's TD report (TDX only).
    TdQuoteLink,
    /// The hardware report's report_data starts with the hash of the runtime JSON.
    RuntimeHash,
    /// The runtime JSON holds HCLAkPub and a 64-byte user-data.
    RuntimeData,
}

/// Why an Azure HCL report did not verify.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// The HCL report's bytes are malformed.
    #[error("{0}")]
    Hcl(#[from] HclError),
    /// The HCL report holds the other hardware's report.
    #[error("the HCL report holds a {got} report, but the evidence kind expects {expected}")]
    WrongHardware {
        /// What the evidence kind expects.
        expected: HardwareKind,
        /// What the report's report_type says.
        got: HardwareKind,
    },
    /// The SEV-SNP report did not verify.
    #[error("SEV-SNP report in the HCL report: {0}")]
    Snp(#[from] SnpError),
    /// The TD quote did not verify.
    #[error("TD quote: {0}")]
    Tdx(#[from] TdxError),
    /// No TDX collateral in the evidence and none given.
    #[error("TD quote: no collateral (TCB info, QE identity, CRLs) in the evidence and none given (--collateral), so its TCB cannot be checked (its signature chain to Intel's root holds)")]
    NoTdxCollateral,
    /// The TD quote's REPORTDATA is not the HCL report's TD report's.
    #[error("the TD quote's REPORTDATA {quote} is not the TD report's {report}: the quote is for another report")]
    TdQuoteMismatch {
        /// The TD report's REPORTDATA, hex.
        report: String,
        /// The quote's REPORTDATA, hex.
        quote: String,
    },
    /// The hardware report's report_data does not start with the runtime JSON's hash.
    #[error("hardware report_data starts with {got}, but the {hash} of the runtime JSON is {expected}: the runtime data was changed")]
    RuntimeHash {
        /// The hash algorithm.
        hash: &'static str,
        /// The digest of the runtime JSON, hex.
        expected: String,
        /// The start of report_data, hex.
        got: String,
    },
    /// The runtime JSON is unusable.
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    /// `user-data` is not 64 bytes, so it cannot be a report_data.
    #[error("runtime data user-data is {0} bytes, not 64")]
    UserDataLength(usize),
}

impl AzureError {
    /// The stage this error belongs to.
    pub fn step(&self) -> AzureStep {
        match self {
            AzureError::Hcl(_) | AzureError::WrongHardware { .. } => AzureStep::Hcl,
            AzureError::Snp(_) | AzureError::Tdx(_) | AzureError::NoTdxCollateral => {
                AzureStep::Hardware
            }
            AzureError::TdQuoteMismatch { .. } => AzureStep::TdQuoteLink,
            AzureError::RuntimeHash { .. } => AzureStep::RuntimeHash,
            AzureError::Runtime(_) | AzureError::UserDataLength(_) => AzureStep::RuntimeData,
        }
    }
}

/// The runtime data of a verified HCL report: what the hardware vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VouchedRuntime {
    /// The vTPM attestation key that must have signed the TPM quote.
    pub ak_pub: rsa::RsaPublicKey,
    /// The user-data: verigated's report_data (ARCHITECTURE.md, "Binding").
    pub user_data: [u8; 64],
    /// The paravisor's `vm-configuration`, if present.
    pub vm_configuration: Option<serde_json::Value>,
}

/// An Azure SEV-SNP HCL report whose chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSnpVerified {
    /// The verified SEV-SNP report.
    pub snp: SnpVerified,
    /// What it vouches for.
    pub runtime: VouchedRuntime,
}

/// An Azure TDX HCL report whose TD quote verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureTdxVerified {
    /// The verified TD quote.
    pub tdx: TdxVerified,
    /// What it vouches for.
    pub runtime: VouchedRuntime,
}

/// Parses `bytes` and requires the given hardware.
pub fn parse_expecting(bytes: &[u8], expected: HardwareKind) -> Result<HclReport, AzureError> {
    let report = hcl::parse(bytes)?;
    if report.kind != expected {
        return Err(AzureError::WrongHardware {
            expected,
            got: report.kind,
        });
    }
    Ok(report)
}

/// Checks that `report_data` (of the verified hardware report) starts with the hash of
/// the runtime JSON, then parses the JSON.
pub fn check_runtime(
    report: &HclReport,
    report_data: &[u8; 64],
) -> Result<VouchedRuntime, AzureError> {
    let digest = report.runtime_hash.digest(&report.runtime_data);
    let got = report_data.get(..digest.len()).unwrap_or(report_data);
    if got != digest.as_slice() {
        return Err(AzureError::RuntimeHash {
            hash: report.runtime_hash.name(),
            expected: hex::encode(&digest),
            got: hex::encode(got),
        });
    }
    let RuntimeData {
        ak_pub,
        user_data,
        vm_configuration,
    } = runtime::parse(&report.runtime_data)?;
    let user_data: [u8; 64] = user_data
        .as_slice()
        .try_into()
        .map_err(|_| AzureError::UserDataLength(user_data.len()))?;
    Ok(VouchedRuntime {
        ak_pub,
        user_data,
        vm_configuration,
    })
}

/// Verifies an Azure SEV-SNP HCL report: AMD root → VCEK → SNP report → runtime-data
/// hash → runtime data.
pub fn verify_snp(
    hcl_report: &[u8],
    certs: &SnpCerts,
    at: SystemTime,
) -> Result<AzureSnpVerified, AzureError> {
    let report = parse_expecting(hcl_report, HardwareKind::SevSnp)?;
    let snp = snp::verify(&report.hardware_report, certs, at)?;
    let runtime = check_runtime(&report, &snp.report_data)?;
    Ok(AzureSnpVerified { snp, runtime })
}

/// Checks that the TD quote was made for the HCL report's TD report: their REPORTDATA
/// must be equal (the TD report is MAC'ed for this CPU only; the quote is its signed
/// form).
pub fn check_td_quote_link(report: &HclReport, td_quote: &[u8]) -> Result<(), AzureError> {
    let quote = tdx::parse_quote(td_quote)?;
    let td_report_data = report.report_data().unwrap_or([0; 64]);
    if quote.td.report_data != td_report_data {
        return Err(AzureError::TdQuoteMismatch {
            report: hex::encode(td_report_data),
            quote: hex::encode(quote.td.report_data),
        });
    }
    Ok(())
}

/// Verifies an Azure TDX HCL report with the TD quote obtained for its TD report and
/// the quote's collateral: the quote's REPORTDATA is the TD report's, the quote
/// verifies to Intel's root, then the runtime-data hash and runtime data.
pub fn verify_tdx(
    hcl_report: &[u8],
    td_quote: &[u8],
    collateral: Option<&[u8]>,
    at: SystemTime,
    options: &TdxOptions,
) -> Result<AzureTdxVerified, AzureError> {
    let report = parse_expecting(hcl_report, HardwareKind::Tdx)?;
    check_td_quote_link(&report, td_quote)?;
    let Some(collateral) = collateral else {
        // The quote's own signature chain is still checked, so a forged quote is named as
        // such rather than as missing collateral.
        return Err(
            match tdx::verify_without_collateral(td_quote, at, options) {
                TdxError::NoCollateral => AzureError::NoTdxCollateral,
                e => AzureError::Tdx(e),
            },
        );
    };
    let tdx = tdx::verify_with_options(td_quote, collateral, at, options)?;
    let runtime = check_runtime(&report, &tdx.report_data)?;
    Ok(AzureTdxVerified { tdx, runtime })
}
