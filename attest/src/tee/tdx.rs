//! Intel TDX quotes (v4 and v5): offline verification against Intel's pinned SGX root
//! CA, with an explicit verification time.
//!
//! Two stages. Without collateral, [`chain`] checks the signature chain the quote carries
//! in itself: PCK certificate chain to the pinned root, QE report signed by the PCK key,
//! the attestation key bound by the QE report, the quote signed by the attestation key.
//! The TCB status then cannot be judged, so verification without collateral always ends
//! in [`TdxError::NoCollateral`]. With the PCS collateral (TCB info, QE identity, CRLs and
//! their chains, as dcap-qvl's `QuoteCollateralV3` JSON), dcap-qvl checks the whole chain
//! again with the CRLs, the collateral signatures and dates, the QE identity, and matches
//! the platform TCB. This module adds the verigate policy on top: a TCB status other than
//! `UpToDate` is refused unless the caller allowed it by name, a debug TD is refused
//! unless allowed, and bytes after the quote's declared end are refused.

pub mod chain;
pub mod pcs;

pub use chain::ChainLink;

use dcap_qvl::quote::{Quote, Report, TDReport10};
use dcap_qvl::QuoteCollateralV3;
use std::time::SystemTime;
use x509_cert::der::Encode as _;

/// Intel's SGX Root CA (DER), the one trust anchor of TDX quotes, pinned here (the same
/// certificate dcap-qvl ships; the tests check it against the evidence chains).
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("tdx/intel_sgx_root_ca.der");

/// TEE type of a TDX quote header.
const TEE_TYPE_TDX: u32 = 0x81;

/// TCB status names a caller may allow besides `UpToDate` (Intel's names, as in the
/// collateral). `Revoked` is never acceptable and is not in the list.
pub const TCB_STATUS_NAMES: [&str; 8] = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
];

/// Why a TDX quote was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TdxError {
    /// The quote is too short for a header, or dcap-qvl's decoder or the auth data
    /// layout check refused it; holds the reason.
    #[error("cannot parse TDX quote: {0}")]
    Parse(String),
    /// The header's TEE type is not 0x81 (e.g. an SGX quote); holds it.
    #[error("quote header: TEE type {0:#x} is not TDX (0x81)")]
    NotTdx(u32),
    /// The header's version is neither 4 nor 5; holds it.
    #[error("quote version {0} is not supported (TDX quotes are version 4 or 5)")]
    UnsupportedVersion(u16),
    /// The quote is shorter than its header and auth data length declare.
    #[error("quote is {got} bytes but its header and auth data declare {expected}")]
    LengthMismatch {
        /// Length the signed part and the auth data declare, in bytes.
        expected: usize,
        /// Length of the bytes given.
        got: usize,
    },
    /// The auth data's certification data type is not 6 (QE report certification
    /// data); holds it.
    #[error(
        "certification data type {0} (a TDX quote carries type 6, QE report certification data)"
    )]
    CertificationDataType(usize),
    /// A length field of the auth data (unsigned) differs from the sum of its parts, so
    /// bytes would hide inside it.
    #[error("{field} declares {declared} bytes but its parts add up to {actual}")]
    AuthDataLength {
        /// Which length field: `"auth data"` or `"QE report certification data"`.
        field: &'static str,
        /// The length the field declares, in bytes.
        declared: usize,
        /// The length its parts add up to, in bytes.
        actual: usize,
    },
    /// A byte after the quote's declared end is not zero; no signature covers it.
    #[error("byte at offset {offset}, after the quote's declared end, is not zero padding")]
    TrailingBytesNotZero {
        /// Offset of the first non-zero byte in the quote.
        offset: usize,
    },
    /// The collateral is not `QuoteCollateralV3` JSON; holds the parser's message.
    #[error("cannot parse collateral JSON: {0}")]
    Collateral(String),
    /// A PEM certificate chain of the quote or of the collateral fails
    /// [`check_pem_chain`].
    #[error("{chain}: {reason}")]
    CertChain {
        /// Which chain, e.g. `"quote PCK certificate chain"`.
        chain: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The collateral's TCB info has no `fmspc` of 6 hex bytes; holds the reason.
    #[error("collateral tcb_info has no usable fmspc: {0}")]
    CollateralFmspc(String),
    /// A link of the quote's own signature chain (PCK chain, QE report, attestation
    /// key, quote signature) is broken; see [`chain`].
    #[error("{link}: {reason}")]
    Chain {
        /// The link that failed.
        link: ChainLink,
        /// What is wrong with it.
        reason: String,
    },
    /// The quote's chain is intact but no collateral was given, so the platform's TCB
    /// (and the PCK certificate's revocation) cannot be judged.
    #[error("no collateral: the TCB info, QE identity and CRLs (Intel PCS) for this quote's FMSPC are needed to check the platform's TCB status and the PCK certificate's revocation; pass --collateral")]
    NoCollateral,
    /// The verification time is before the Unix epoch.
    #[error("verification time is before 1970")]
    TimeBeforeEpoch,
    /// dcap-qvl refused the quote (chain, CRL, collateral signature or date, QE
    /// report, quote signature or TCB match); holds its message.
    #[error("TDX quote verification failed: {0}")]
    Verification(String),
    /// The platform's TCB status is neither `UpToDate` nor allowed by name.
    #[error("TCB status {status} is not accepted (accepted: {allowed})")]
    TcbStatusNotAllowed {
        /// The status dcap-qvl found, e.g. `OutOfDate`.
        status: String,
        /// The accepted names, comma-separated.
        allowed: String,
    },
    /// A caller allowed a TCB status name that is not in [`TCB_STATUS_NAMES`]; holds it.
    #[error("unknown TCB status name `{0}` (known: UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, TDRelaunchAdvised, TDRelaunchAdvisedConfigurationNeeded)")]
    UnknownTcbStatusName(String),
    /// The TD runs in debug mode and the caller did not allow it.
    #[error("TD attributes {td_attributes} have the DEBUG bit set: the host can read the TD")]
    DebugTd {
        /// The TD attributes, hex.
        td_attributes: String,
    },
}

/// The stages of [`verify_with_options`], in order; each error belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TdxStep {
    /// The caller's options (TCB status names).
    Options,
    /// Quote layout, version, TEE type, PCK chain encoding.
    Format,
    /// TD attributes (debug refused).
    TdAttributes,
    /// One link of the quote's own signature chain ([`chain`]), checked without
    /// collateral.
    Chain(ChainLink),
    /// Collateral JSON and its certificate chains.
    Collateral,
    /// dcap-qvl: PCK chain to Intel's root, CRLs, collateral signatures and dates, QE
    /// report, quote signature, TCB level match.
    Signature,
    /// The TCB status is UpToDate or allowed by name.
    TcbStatus,
}

impl TdxError {
    /// The stage of [`verify_with_options`] that produced this error.
    pub fn step(&self) -> TdxStep {
        use TdxError::*;
        match self {
            UnknownTcbStatusName(_) => TdxStep::Options,
            Parse(_)
            | NotTdx(_)
            | UnsupportedVersion(_)
            | LengthMismatch { .. }
            | AuthDataLength { .. }
            | CertificationDataType(_)
            | TrailingBytesNotZero { .. } => TdxStep::Format,
            CertChain { chain, .. } if chain.starts_with("quote") => TdxStep::Format,
            DebugTd { .. } => TdxStep::TdAttributes,
            Chain { link, .. } => TdxStep::Chain(*link),
            Collateral(_) | CertChain { .. } | CollateralFmspc(_) => TdxStep::Collateral,
            // The time is first needed for the PCK certificates' validity.
            TimeBeforeEpoch => TdxStep::Chain(ChainLink::PckChain),
            Verification(_) => TdxStep::Signature,
            TcbStatusNotAllowed { .. } | NoCollateral => TdxStep::TcbStatus,
        }
    }
}

/// The measured fields of a TD report, as carried by a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReportFields {
    /// Security version numbers of the TDX module and its components (TEE_TCB_SVN).
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module (MRSEAM).
    pub mr_seam: [u8; 48],
    /// Measurement of the TDX module's signer (MRSIGNERSEAM); zero for Intel's.
    pub mr_signer_seam: [u8; 48],
    /// TD attributes; bit 0 is DEBUG (see [`TdReportFields::debug`]).
    pub td_attributes: [u8; 8],
    /// Extended features (XSAVE) the TD may use (XFAM).
    pub xfam: [u8; 8],
    /// Measurement of the TD's initial contents (MRTD), the launch measurement.
    pub mrtd: [u8; 48],
    /// Software-defined configuration ID, set by the host at launch (MRCONFIGID).
    pub mr_config_id: [u8; 48],
    /// Software-defined ID of the TD's owner, set by the host at launch (MROWNER).
    pub mr_owner: [u8; 48],
    /// Software-defined owner configuration, set by the host at launch
    /// (MROWNERCONFIG).
    pub mr_owner_config: [u8; 48],
    /// Runtime measurement registers RTMR0 to RTMR3, extended by the TD itself.
    pub rtmrs: [[u8; 48]; 4],
    /// Data the TD supplied with the request; verigate puts the binding here
    /// (ARCHITECTURE.md, 'Binding').
    pub report_data: [u8; 64],
    /// TDX 1.5 reports only.
    pub mr_service_td: Option<[u8; 48]>,
}

impl TdReportFields {
    fn from_report(report: &Report) -> Option<TdReportFields> {
        let td: &TDReport10 = report.as_td10()?;
        Some(TdReportFields {
            tee_tcb_svn: td.tee_tcb_svn,
            mr_seam: td.mr_seam,
            mr_signer_seam: td.mr_signer_seam,
            td_attributes: td.td_attributes,
            xfam: td.xfam,
            mrtd: td.mr_td,
            mr_config_id: td.mr_config_id,
            mr_owner: td.mr_owner,
            mr_owner_config: td.mr_owner_config,
            rtmrs: [td.rt_mr0, td.rt_mr1, td.rt_mr2, td.rt_mr3],
            report_data: td.report_data,
            mr_service_td: report.as_td15().map(|r| r.mr_service_td),
        })
    }

    /// TUD.DEBUG (bit 0 of the attributes): the TD runs in debug mode.
    pub fn debug(&self) -> bool {
        self.td_attributes[0] & 1 == 1
    }
}

/// A parsed, unverified TDX quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxQuote {
    /// Quote format version: 4 or 5.
    pub version: u16,
    /// Vendor of the quoting enclave that signed the quote (Intel's, for Intel's QE).
    pub qe_vendor_id: [u8; 16],
    /// The TD report the quote carries.
    pub td: TdReportFields,
}

/// Parses a TDX quote (v4 or v5) through dcap-qvl's decoder and checks that only zero
/// padding follows its declared end. It checks no signature.
pub fn parse_quote(quote: &[u8]) -> Result<TdxQuote, TdxError> {
    // dcap-qvl reads the version and TEE type first; checking them here gives errors
    // that name the field rather than a decoder message.
    let version = quote
        .get(0..2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| TdxError::Parse(format!("{} bytes, shorter than a header", quote.len())))?;
    let tee_type = quote
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| TdxError::Parse(format!("{} bytes, shorter than a header", quote.len())))?;
    if tee_type != TEE_TYPE_TDX {
        return Err(TdxError::NotTdx(tee_type));
    }
    if version != 4 && version != 5 {
        return Err(TdxError::UnsupportedVersion(version));
    }
    let parsed = Quote::parse(quote).map_err(|e| TdxError::Parse(format!("{e:#}")))?;
    let td = TdReportFields::from_report(&parsed.report)
        .ok_or_else(|| TdxError::Parse("quote body is not a TD report".into()))?;
    // The signed part is followed by a u32 length and that many bytes of auth data.
    let signed = parsed.signed_length();
    let auth_len = quote
        .get(signed..signed.saturating_add(4))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| TdxError::Parse("auth data length missing".into()))?;
    let expected = usize::try_from(auth_len)
        .ok()
        .and_then(|l| signed.checked_add(4)?.checked_add(l))
        .ok_or_else(|| TdxError::Parse("auth data length overflows".into()))?;
    check_auth_data_layout(
        quote,
        signed,
        expected.saturating_sub(signed.saturating_add(4)),
    )?;
    // Quote buffers from the quoting service may carry zero padding after the auth data
    // (Intel's sample quote has 70 bytes); anything else there is not covered by any
    // signature and is refused.
    let tail = quote.get(expected..).ok_or(TdxError::LengthMismatch {
        expected,
        got: quote.len(),
    })?;
    if let Some(pos) = tail.iter().position(|&b| b != 0) {
        return Err(TdxError::TrailingBytesNotZero {
            offset: expected + pos,
        });
    }
    // The PCK chain is certification data type 5 in every quote Intel's QE produces.
    let pck_chain = parsed
        .raw_cert_chain()
        .map_err(|e| TdxError::Parse(format!("{e:#}")))?;
    check_pem_chain("quote PCK certificate chain", pck_chain)?;
    Ok(TdxQuote {
        version,
        qe_vendor_id: parsed.header.qe_vendor_id,
        td,
    })
}

fn u16_at(b: &[u8], off: usize) -> Option<usize> {
    let bytes = b.get(off..off.checked_add(2)?)?;
    Some(usize::from(u16::from_le_bytes([bytes[0], bytes[1]])))
}

fn u32_at(b: &[u8], off: usize) -> Option<usize> {
    let bytes: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

/// The length fields of the auth data are not signed and dcap-qvl ignores bytes left
/// over inside them, so each declared length must be exactly what its parts add up to:
/// signature (64) + attestation key (64) + certification data header (6) + body; and,
/// for the QE report body (type 6, the only one TDX uses), report (384) + signature (64) + auth data (2 + n) +
/// inner certification data (6 + m).
fn check_auth_data_layout(quote: &[u8], signed: usize, auth_len: usize) -> Result<(), TdxError> {
    let missing = || TdxError::Parse("auth data shorter than its fields".into());
    let mismatch = |field: &'static str, declared: usize, actual: usize| TdxError::AuthDataLength {
        field,
        declared,
        actual,
    };
    let auth = signed.checked_add(4).ok_or_else(missing)?;
    let cert_type = u16_at(quote, auth + 128).ok_or_else(missing)?;
    let cert_size = u32_at(quote, auth + 130).ok_or_else(missing)?;
    let outer = 134usize.checked_add(cert_size).ok_or_else(missing)?;
    if outer != auth_len {
        return Err(mismatch("auth data", auth_len, outer));
    }
    // TDX quotes (v4, v5) carry type 6, QE report certification data; dcap-qvl decodes
    // it as such whatever the field says, so another value is refused here.
    if cert_type != 6 {
        return Err(TdxError::CertificationDataType(cert_type));
    }
    {
        let body = auth + 134;
        let qe_auth = u16_at(quote, body + 448).ok_or_else(missing)?;
        let inner_size = u32_at(quote, body + 452 + qe_auth).ok_or_else(missing)?;
        let inner = (456 + qe_auth)
            .checked_add(inner_size)
            .ok_or_else(missing)?;
        if inner != cert_size {
            return Err(mismatch("QE report certification data", cert_size, inner));
        }
    }
    Ok(())
}

/// What the verifier accepts beyond an `UpToDate`, non-debug TD.
#[derive(Debug, Clone, Default)]
pub struct TdxOptions {
    /// TCB status names accepted besides `UpToDate` (see [`TCB_STATUS_NAMES`]).
    pub allowed_tcb_statuses: Vec<String>,
    /// Accept a TD with the DEBUG attribute (never in production).
    pub allow_debug: bool,
}

/// A quote that passed [`verify`]. The caller compares `report_data` with the binding
/// and the measurement registers with its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxVerified {
    /// Quote format version: 4 or 5.
    pub quote_version: u16,
    /// Intel's TCB status for the platform and QE, e.g. `UpToDate`.
    pub tcb_status: String,
    /// Intel security advisory IDs that apply to the platform's TCB level
    /// (e.g. `INTEL-SA-00837`).
    pub advisory_ids: Vec<String>,
    /// Measurement of the TD's initial contents, the launch measurement.
    pub mrtd: [u8; 48],
    /// Runtime measurement registers RTMR0 to RTMR3.
    pub rtmrs: [[u8; 48]; 4],
    /// Configuration ID set by the host at launch.
    pub mr_config_id: [u8; 48],
    /// Owner ID set by the host at launch.
    pub mr_owner: [u8; 48],
    /// Owner configuration set by the host at launch.
    pub mr_owner_config: [u8; 48],
    /// Measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// TD attributes; DEBUG is clear unless the caller allowed it.
    pub td_attributes: [u8; 8],
    /// Extended features (XSAVE) the TD may use.
    pub xfam: [u8; 8],
    /// Data the TD supplied, compared with the recomputed binding.
    pub report_data: [u8; 64],
    /// Family-Model-Stepping-Platform-CustomSKU of the platform (from the TCB info that
    /// matched the PCK certificate).
    pub fmspc: [u8; 6],
    /// Security version numbers of the TDX module and its components.
    pub tee_tcb_svn: [u8; 16],
}

/// Refuses a TCB status that is neither `UpToDate` nor allowed by name. Names in
/// `allowed` must be known ones, so a typo cannot silently allow nothing.
pub fn check_tcb_status(status: &str, allowed: &[String]) -> Result<(), TdxError> {
    for name in allowed {
        if !TCB_STATUS_NAMES.contains(&name.as_str()) {
            return Err(TdxError::UnknownTcbStatusName(name.clone()));
        }
    }
    if status == "UpToDate" || allowed.iter().any(|a| a == status) {
        return Ok(());
    }
    let mut names = vec!["UpToDate".to_string()];
    names.extend(allowed.iter().filter(|a| *a != "UpToDate").cloned());
    Err(TdxError::TcbStatusNotAllowed {
        status: status.to_string(),
        allowed: names.join(", "),
    })
}

/// Refuses a debug TD unless `allow_debug`. Pure, so it is testable without re-signing.
pub fn check_td_attributes(td: &TdReportFields, allow_debug: bool) -> Result<(), TdxError> {
    if td.debug() && !allow_debug {
        return Err(TdxError::DebugTd {
            td_attributes: hex::encode(td.td_attributes),
        });
    }
    Ok(())
}

/// Checks a PEM chain that travels with a quote or its collateral: every certificate
/// parses, the bytes are exactly the canonical PEM of those certificates (then NUL
/// padding), it ends with Intel's pinned root and holds no other self-issued certificate. The PEM text is
/// not signed, so without this a changed line break or a damaged copy of the (unused)
/// root would be accepted as the same evidence.
pub fn check_pem_chain(chain: &'static str, raw: &[u8]) -> Result<(), TdxError> {
    let fail = |reason: String| TdxError::CertChain { chain, reason };
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let text = raw.get(..end).unwrap_or_default();
    let certs = crate::pem::parse_certificates(text).map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate".into()));
    }
    let mut canonical = String::new();
    for (i, cert) in certs.iter().enumerate() {
        let der = cert
            .to_der()
            .map_err(|e| fail(format!("certificate {i}: {e}")))?;
        let tbs = &cert.tbs_certificate;
        if tbs.subject == tbs.issuer && der != INTEL_SGX_ROOT_CA_DER {
            return Err(fail(format!(
                "certificate {i} is a root other than Intel's SGX Root CA"
            )));
        }
        canonical.push_str(&crate::pem::der_to_pem(&der));
    }
    // Intel's chains end with the root; a damaged copy there would otherwise go unseen,
    // since verification uses the pinned one.
    let last_is_root = certs
        .last()
        .and_then(|c| c.to_der().ok())
        .is_some_and(|d| d == INTEL_SGX_ROOT_CA_DER);
    if !last_is_root {
        return Err(fail("last certificate is not Intel's SGX Root CA".into()));
    }
    if canonical.as_bytes() != text {
        return Err(fail(
            "PEM text differs from the canonical encoding of its certificates".into(),
        ));
    }
    Ok(())
}

fn check_collateral_chains(c: &QuoteCollateralV3) -> Result<(), TdxError> {
    check_pem_chain(
        "collateral pck_crl_issuer_chain",
        c.pck_crl_issuer_chain.as_bytes(),
    )?;
    check_pem_chain(
        "collateral tcb_info_issuer_chain",
        c.tcb_info_issuer_chain.as_bytes(),
    )?;
    check_pem_chain(
        "collateral qe_identity_issuer_chain",
        c.qe_identity_issuer_chain.as_bytes(),
    )?;
    if let Some(pck) = &c.pck_certificate_chain {
        check_pem_chain("collateral pck_certificate_chain", pck.as_bytes())?;
    }
    Ok(())
}

/// Parses the collateral JSON (`QuoteCollateralV3`: PEM chains, hex CRLs and signatures).
pub fn parse_collateral(json: &[u8]) -> Result<QuoteCollateralV3, TdxError> {
    serde_json::from_slice(json).map_err(|e| TdxError::Collateral(e.to_string()))
}

fn collateral_fmspc(c: &QuoteCollateralV3) -> Result<[u8; 6], TdxError> {
    let v: serde_json::Value =
        serde_json::from_str(&c.tcb_info).map_err(|e| TdxError::CollateralFmspc(e.to_string()))?;
    let hex_str = v
        .get("fmspc")
        .and_then(|f| f.as_str())
        .ok_or_else(|| TdxError::CollateralFmspc("field missing".into()))?;
    hex::decode(hex_str)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| TdxError::CollateralFmspc(format!("`{hex_str}` is not 6 hex bytes")))
}

/// Verifies a TDX quote at time `at` with the given collateral, accepting `UpToDate` and
/// the TCB statuses named in `allowed_tcb_statuses`; a debug TD is refused.
pub fn verify(
    quote: &[u8],
    collateral_json: &[u8],
    at: SystemTime,
    allowed_tcb_statuses: &[String],
) -> Result<TdxVerified, TdxError> {
    verify_with_options(
        quote,
        collateral_json,
        at,
        &TdxOptions {
            allowed_tcb_statuses: allowed_tcb_statuses.to_vec(),
            allow_debug: false,
        },
    )
}

/// The checks that need no collateral, in [`TdxStep`] order: the options, the quote's
/// format, its TD attributes and its own signature chain ([`chain`]) at time `at`.
pub fn verify_quote_chain(
    quote: &[u8],
    at: SystemTime,
    options: &TdxOptions,
) -> Result<TdxQuote, TdxError> {
    // Refuse bad option names before any work, so a typo is reported as such.
    check_tcb_status("UpToDate", &options.allowed_tcb_statuses)?;
    let parsed = parse_quote(quote)?;
    check_td_attributes(&parsed.td, options.allow_debug)?;
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| TdxError::TimeBeforeEpoch)?;
    chain::verify(quote, at)?;
    Ok(parsed)
}

/// Verification without collateral: [`verify_quote_chain`], then
/// [`TdxError::NoCollateral`], since the TCB status cannot be judged. It never succeeds.
pub fn verify_without_collateral(quote: &[u8], at: SystemTime, options: &TdxOptions) -> TdxError {
    match verify_quote_chain(quote, at, options) {
        Ok(_) => TdxError::NoCollateral,
        Err(e) => e,
    }
}

/// [`verify`] with every option.
pub fn verify_with_options(
    quote: &[u8],
    collateral_json: &[u8],
    at: SystemTime,
    options: &TdxOptions,
) -> Result<TdxVerified, TdxError> {
    let parsed = verify_quote_chain(quote, at, options)?;
    let collateral = parse_collateral(collateral_json)?;
    check_collateral_chains(&collateral)?;
    let now = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| TdxError::TimeBeforeEpoch)?
        .as_secs();
    let report = dcap_qvl::verify::QuoteVerifier::new(INTEL_SGX_ROOT_CA_DER.to_vec())
        .allow_debug(options.allow_debug)
        .verify(quote, &collateral, now)
        .map_err(|e| TdxError::Verification(format!("{e:#}")))?;
    check_tcb_status(&report.status, &options.allowed_tcb_statuses)?;
    // The verified report is the one dcap-qvl decoded from the same bytes; take the
    // fields from it rather than from our unverified parse.
    let td = TdReportFields::from_report(&report.report)
        .ok_or_else(|| TdxError::Parse("verified body is not a TD report".into()))?;
    Ok(TdxVerified {
        quote_version: parsed.version,
        tcb_status: report.status,
        advisory_ids: report.advisory_ids,
        mrtd: td.mrtd,
        rtmrs: td.rtmrs,
        mr_config_id: td.mr_config_id,
        mr_owner: td.mr_owner,
        mr_owner_config: td.mr_owner_config,
        mr_seam: td.mr_seam,
        td_attributes: td.td_attributes,
        xfam: td.xfam,
        report_data: td.report_data,
        fmspc: collateral_fmspc(&collateral)?,
        tee_tcb_svn: td.tee_tcb_svn,
    })
}
