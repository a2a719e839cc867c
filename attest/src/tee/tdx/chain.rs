//! The signature chain a TDX quote carries in itself, checked without any collateral:
//!
//! 1. the PCK certificate chain (certification data type 5, a PEM chain) up to Intel's
//!    pinned SGX Root CA, each certificate valid at the verification time;
//! 2. the QE report (384 bytes), signed by the PCK key (ECDSA P-256, SHA-256);
//! 3. the attestation key, vouched for by the QE: the QE report's report_data[0..32] is
//!    SHA-256(attestation key || QE auth data);
//! 4. the quote: header || TD report body, signed by the attestation key.
//!
//! What only the collateral can say (PCK revocation through the CRLs, whether the QE is
//! Intel's current one, the platform's TCB status) is left to `dcap-qvl` with the
//! collateral; without it the quote is authentic Intel hardware output but its TCB is
//! unknown, and the caller fails the TCB check naming the missing collateral.

use dcap_qvl::quote::{AuthData, Quote};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};
use std::time::SystemTime;
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::BasicConstraints;
use x509_cert::Certificate;

use super::{TdxError, INTEL_SGX_ROOT_CA_DER};

/// ecdsa-with-SHA256, the only signature algorithm of Intel's PCK chains.
const OID_ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
/// Intel's SGX extensions (FMSPC, TCB, PCE ID...), present in every PCK certificate.
const OID_SGX_EXTENSIONS: &str = "1.2.840.113741.1.13.1";
/// Attestation key type 2: ECDSA-256 with the P-256 curve, the only one Intel's QE uses.
const ATTESTATION_KEY_ECDSA_P256: u16 = 2;

/// One link of the quote's signature chain, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainLink {
    /// PCK certificate → PCK CA → Intel SGX Root CA (pinned).
    PckChain,
    /// The QE report's signature under the PCK certificate's key.
    QeReport,
    /// The QE report's report_data binding the attestation key and QE auth data.
    AttestationKey,
    /// The quote's signature (header and TD report) under the attestation key.
    QuoteSignature,
}

impl ChainLink {
    /// Every link, in the order [`verify`] checks them.
    pub const ALL: [ChainLink; 4] = [
        ChainLink::PckChain,
        ChainLink::QeReport,
        ChainLink::AttestationKey,
        ChainLink::QuoteSignature,
    ];

    /// What a passed link proves, for reports.
    pub fn proves(self) -> &'static str {
        match self {
            ChainLink::PckChain => {
                "PCK certificate chain to the pinned Intel SGX Root CA, valid at the verification time"
            }
            ChainLink::QeReport => "QE report signed by the PCK key",
            ChainLink::AttestationKey => {
                "QE report_data[0..32] = SHA-256(attestation key || QE auth data)"
            }
            ChainLink::QuoteSignature => "header and TD report signed by the attestation key",
        }
    }
}

impl std::fmt::Display for ChainLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChainLink::PckChain => "PCK certificate chain",
            ChainLink::QeReport => "QE report signature",
            ChainLink::AttestationKey => "attestation key (QE report_data)",
            ChainLink::QuoteSignature => "quote signature",
        })
    }
}

fn broken(link: ChainLink, reason: impl Into<String>) -> TdxError {
    TdxError::Chain {
        link,
        reason: reason.into(),
    }
}

/// Checks the quote's signature chain (module doc) at time `at`. The quote must already
/// have passed [`super::parse_quote`]; this re-decodes it, so a quote the decoder refuses
/// is a [`TdxError::Parse`].
pub fn verify(quote: &[u8], at: SystemTime) -> Result<(), TdxError> {
    let parsed = Quote::parse(quote).map_err(|e| TdxError::Parse(format!("{e:#}")))?;
    if parsed.header.attestation_key_type != ATTESTATION_KEY_ECDSA_P256 {
        return Err(broken(
            ChainLink::QuoteSignature,
            format!(
                "attestation key type {} is not ECDSA P-256 (2)",
                parsed.header.attestation_key_type
            ),
        ));
    }
    let auth = match &parsed.auth_data {
        AuthData::V4(a) => a,
        AuthData::V3(_) => return Err(TdxError::Parse("auth data is not version 4".into())),
    };
    let qe = &auth.qe_report_data;
    let pck_chain = parsed
        .raw_cert_chain()
        .map_err(|e| broken(ChainLink::PckChain, format!("{e:#}")))?;
    let pck_key = verify_pck_chain(pck_chain, at)?;

    let qe_signature = Signature::from_slice(&qe.qe_report_signature).map_err(|e| {
        broken(
            ChainLink::QeReport,
            format!("signature is not a P-256 (r, s): {e}"),
        )
    })?;
    pck_key.verify(&qe.qe_report, &qe_signature).map_err(|_| {
        broken(
            ChainLink::QeReport,
            "the QE report's signature does not verify under the PCK certificate's key",
        )
    })?;

    // The QE report body is an SGX report: report_data is its last 64 bytes (offset 320).
    let report_data = qe.qe_report.get(320..352).ok_or_else(|| {
        broken(
            ChainLink::AttestationKey,
            "QE report shorter than 352 bytes",
        )
    })?;
    let mut hash = Sha256::new();
    hash.update(auth.ecdsa_attestation_key);
    hash.update(&qe.qe_auth_data.data);
    let expected: [u8; 32] = hash.finalize().into();
    if report_data != expected {
        return Err(broken(
            ChainLink::AttestationKey,
            format!(
                "QE report_data[0..32] is {}, but SHA-256(attestation key || QE auth data) is {}: the attestation key or the QE auth data was changed",
                hex::encode(report_data),
                hex::encode(expected)
            ),
        ));
    }

    let mut sec1 = [0x04u8; 65];
    sec1[1..].copy_from_slice(&auth.ecdsa_attestation_key);
    let attestation_key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| {
        broken(
            ChainLink::QuoteSignature,
            "the attestation key is not a P-256 point",
        )
    })?;
    let quote_signature = Signature::from_slice(&auth.ecdsa_signature).map_err(|e| {
        broken(
            ChainLink::QuoteSignature,
            format!("signature is not a P-256 (r, s): {e}"),
        )
    })?;
    let signed = quote
        .get(..parsed.signed_length())
        .ok_or_else(|| TdxError::Parse("quote shorter than its signed part".into()))?;
    attestation_key
        .verify(signed, &quote_signature)
        .map_err(|_| {
            broken(
                ChainLink::QuoteSignature,
                "the signature over the header and TD report does not verify under the attestation key",
            )
        })
}

/// Verifies the PCK chain (leaf first, Intel's root last) and returns the leaf's key.
fn verify_pck_chain(raw: &[u8], at: SystemTime) -> Result<VerifyingKey, TdxError> {
    let fail = |reason: String| broken(ChainLink::PckChain, reason);
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let certs = crate::pem::parse_certificates(raw.get(..end).unwrap_or_default())
        .map_err(|e| fail(e.to_string()))?;
    let root = Certificate::from_der(INTEL_SGX_ROOT_CA_DER)
        .map_err(|e| fail(format!("pinned root: {e}")))?;
    let Some(last) = certs.last() else {
        return Err(fail("no certificate".into()));
    };
    if last.to_der().ok().as_deref() != Some(INTEL_SGX_ROOT_CA_DER) {
        return Err(fail(
            "the last certificate is not Intel's SGX Root CA".into(),
        ));
    }
    if certs.len() < 2 {
        return Err(fail("no PCK certificate before the root".into()));
    }
    for (i, cert) in certs.iter().enumerate() {
        // The root signs itself; every other certificate is signed by the next one.
        let issuer = certs.get(i + 1).unwrap_or(&root);
        let role = role(i, certs.len());
        check_validity(cert, at).map_err(|r| fail(format!("{role}: {r}")))?;
        if cert.tbs_certificate.issuer != issuer.tbs_certificate.subject {
            return Err(fail(format!(
                "{role}: its issuer is not the next certificate's subject"
            )));
        }
        if i > 0 && !is_ca(cert) {
            return Err(fail(format!("{role}: not a CA certificate")));
        }
        check_signature(cert, issuer).map_err(|r| fail(format!("{role}: {r}")))?;
    }
    let leaf = &certs[0];
    if is_ca(leaf) {
        return Err(fail("the PCK certificate is a CA certificate".into()));
    }
    let has_sgx_extensions = leaf
        .tbs_certificate
        .extensions
        .as_ref()
        .is_some_and(|exts| {
            exts.iter()
                .any(|e| e.extn_id.to_string() == OID_SGX_EXTENSIONS)
        });
    if !has_sgx_extensions {
        return Err(fail(
            "the PCK certificate has no SGX extensions (1.2.840.113741.1.13.1)".into(),
        ));
    }
    public_key(leaf).map_err(|r| fail(format!("PCK certificate: {r}")))
}

fn role(i: usize, len: usize) -> String {
    match i {
        0 => "PCK certificate".into(),
        _ if i + 1 == len => "root certificate".into(),
        _ => format!("certificate {i} (CA)"),
    }
}

fn check_validity(cert: &Certificate, at: SystemTime) -> Result<(), String> {
    let v = &cert.tbs_certificate.validity;
    let (nb, na) = (v.not_before.to_system_time(), v.not_after.to_system_time());
    if at < nb {
        return Err(format!(
            "not valid before {} (verification time {})",
            crate::tee::snp::rfc3339(nb),
            crate::tee::snp::rfc3339(at)
        ));
    }
    if at > na {
        return Err(format!(
            "expired at {} (verification time {})",
            crate::tee::snp::rfc3339(na),
            crate::tee::snp::rfc3339(at)
        ));
    }
    Ok(())
}

fn is_ca(cert: &Certificate) -> bool {
    matches!(
        cert.tbs_certificate.get::<BasicConstraints>(),
        Ok(Some((_, BasicConstraints { ca: true, .. })))
    )
}

fn public_key(cert: &Certificate) -> Result<VerifyingKey, String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .map_err(|_| "its public key is not a P-256 point".to_string())
}

/// Checks that `issuer`'s key signed `cert` (ECDSA P-256 with SHA-256).
fn check_signature(cert: &Certificate, issuer: &Certificate) -> Result<(), String> {
    let alg = cert.signature_algorithm.oid.to_string();
    if alg != OID_ECDSA_WITH_SHA256 || cert.tbs_certificate.signature.oid.to_string() != alg {
        return Err(format!(
            "signature algorithm {alg} is not ecdsa-with-SHA256"
        ));
    }
    let key = public_key(issuer).map_err(|r| format!("its issuer: {r}"))?;
    let signature = cert
        .signature
        .as_bytes()
        .and_then(|der| Signature::from_der(der).ok())
        .ok_or("its signature is not a DER ECDSA signature")?;
    let tbs = cert
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("cannot encode: {e}"))?;
    key.verify(&tbs, &signature)
        .map_err(|_| "its signature does not verify under its issuer's key".to_string())
}
