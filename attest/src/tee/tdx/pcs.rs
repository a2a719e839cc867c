//! Intel PCS v4 (or a PCCS) collateral for a TDX quote, as data: which resources a quote
//! needs (named by the FMSPC and the PCK CA of its PCK certificate), the API paths and
//! response headers that carry them, and how the responses become the collateral JSON the
//! evidence carries (dcap-qvl's `QuoteCollateralV3`, ARCHITECTURE.md, "Evidence").
//!
//! Pure: the gateway fetches, this names and assembles. Nothing assembled here is
//! trusted: the verifier checks every signature, chain, CRL and date against Intel's
//! pinned root ([`super::verify`]), as it does for collateral given on the command line.
//! The signed JSON bodies are kept byte for byte (a re-serialized `tcbInfo` would no
//! longer match its signature).

use dcap_qvl::quote::Quote;
use serde_json::value::RawValue;

use super::TdxError;

/// The PCK CRL issuer chain header of `pckcrl` responses (URL-encoded PEM).
pub const HEADER_PCK_CRL_ISSUER_CHAIN: &str = "SGX-PCK-CRL-Issuer-Chain";
/// The TCB info issuer chain header of TDX `tcb` responses; older services send
/// [`HEADER_SGX_TCB_INFO_ISSUER_CHAIN`] instead.
pub const HEADER_TCB_INFO_ISSUER_CHAIN: &str = "TCB-Info-Issuer-Chain";
/// The older name of [`HEADER_TCB_INFO_ISSUER_CHAIN`].
pub const HEADER_SGX_TCB_INFO_ISSUER_CHAIN: &str = "SGX-TCB-Info-Issuer-Chain";
/// The QE identity issuer chain header of `qe/identity` responses.
pub const HEADER_QE_IDENTITY_ISSUER_CHAIN: &str = "SGX-Enclave-Identity-Issuer-Chain";

/// Intel's own PCS. With it the root CA CRL comes from [`INTEL_ROOT_CA_CRL_URL`] (the
/// root's CRL distribution point); a PCCS serves it at [`ROOT_CA_CRL_PATH`]. See
/// [`root_ca_crl_url`].
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// The CRL distribution point of Intel's SGX Root CA (DER).
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// A PCCS's root CA CRL (a hex string of the DER).
pub const ROOT_CA_CRL_PATH: &str = "/sgx/certification/v4/rootcacrl";
/// The TDX QE identity.
pub const QE_IDENTITY_PATH: &str = "/tdx/certification/v4/qe/identity?update=standard";

/// Where the root CA CRL comes from for the PCS or PCCS at `pcs_base`: `configured` if
/// given; for Intel's PCS, which has no `rootcacrl` resource, the CRL distribution point
/// of Intel's SGX Root CA ([`INTEL_ROOT_CA_CRL_URL`], DER); for a PCCS, its
/// [`ROOT_CA_CRL_PATH`] (hex text). [`root_ca_crl_der`] reads either answer.
pub fn root_ca_crl_url(pcs_base: &str, configured: Option<&str>) -> String {
    match configured {
        Some(url) => url.to_string(),
        None if pcs_base == INTEL_PCS_URL => INTEL_ROOT_CA_CRL_URL.to_string(),
        None => format!("{pcs_base}{ROOT_CA_CRL_PATH}"),
    }
}

/// Which Intel CA issued a PCK certificate, hence which PCK CRL applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PckCa {
    /// "Intel SGX PCK Processor CA".
    Processor,
    /// "Intel SGX PCK Platform CA".
    Platform,
}

impl PckCa {
    /// The `ca` parameter of the `pckcrl` request.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Processor => "processor",
            PckCa::Platform => "platform",
        }
    }
}

/// What names a quote's collateral: the platform's FMSPC and its PCK CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PckIdentity {
    /// Family-Model-Stepping-Platform-CustomSKU, from the PCK certificate's SGX extension.
    pub fmspc: [u8; 6],
    /// The CA that issued the PCK certificate.
    pub ca: PckCa,
}

impl PckIdentity {
    /// The FMSPC as the PCS spells it (uppercase hex), also the cache key.
    pub fn fmspc_hex(&self) -> String {
        hex::encode_upper(self.fmspc)
    }

    /// `pckcrl` for this CA, DER-encoded.
    pub fn pck_crl_path(&self) -> String {
        format!(
            "/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            self.ca.as_str()
        )
    }

    /// The TDX TCB info for this FMSPC.
    pub fn tcb_info_path(&self) -> String {
        format!("/tdx/certification/v4/tcb?fmspc={}", self.fmspc_hex())
    }
}

/// Reads the FMSPC and PCK CA from the PCK certificate a quote carries. Unverified: it
/// only chooses what to fetch; the verifier checks the chain.
pub fn pck_identity(quote: &[u8]) -> Result<PckIdentity, TdxError> {
    let parsed = Quote::parse(quote).map_err(|e| TdxError::Parse(format!("{e:#}")))?;
    let fmspc = dcap_qvl::intel::quote_fmspc(&parsed)
        .map_err(|e| TdxError::Parse(format!("PCK certificate FMSPC: {e:#}")))?;
    let ca = dcap_qvl::intel::quote_ca(&parsed)
        .map_err(|e| TdxError::Parse(format!("PCK certificate CA: {e:#}")))?;
    let ca = match ca {
        dcap_qvl::config::PckCa::Processor => PckCa::Processor,
        dcap_qvl::config::PckCa::Platform => PckCa::Platform,
    };
    Ok(PckIdentity { fmspc, ca })
}

/// Why PCS responses could not be assembled into collateral.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PcsError {
    /// An issuer-chain header is not valid percent-encoded UTF-8; names the header.
    #[error("header {0} is not a percent-encoded PEM chain")]
    IssuerChainHeader(&'static str),
    /// A JSON body lacks its signed object or its signature; names the resource.
    #[error("{resource}: {why}")]
    Body {
        /// `tcb info` or `qe identity`.
        resource: &'static str,
        /// What is missing or malformed.
        why: String,
    },
    /// A PCCS's root CA CRL is neither a hex string nor DER.
    #[error("root CA CRL is neither hex nor DER")]
    RootCaCrl,
    /// Collateral JSON (already assembled) does not name a usable `nextUpdate`; holds why.
    #[error("collateral nextUpdate: {0}")]
    NextUpdate(String),
}

/// Decodes an issuer-chain header (percent-encoded PEM).
pub fn decode_issuer_chain(header: &'static str, value: &[u8]) -> Result<String, PcsError> {
    let text = std::str::from_utf8(value).map_err(|_| PcsError::IssuerChainHeader(header))?;
    urlencoding::decode(text)
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| PcsError::IssuerChainHeader(header))
}

/// A PCCS answers the root CA CRL as a hex string; Intel's distribution point as DER.
pub fn root_ca_crl_der(body: &[u8]) -> Result<Vec<u8>, PcsError> {
    // DER of a CRL starts with a SEQUENCE tag; hex text never does.
    if body.first() == Some(&0x30) {
        return Ok(body.to_vec());
    }
    let text = std::str::from_utf8(body).map_err(|_| PcsError::RootCaCrl)?;
    hex::decode(text.trim()).map_err(|_| PcsError::RootCaCrl)
}

/// The fetched resources, as the PCS returned them (issuer chains already decoded).
#[derive(Debug, Clone)]
pub struct PcsResponses {
    /// The PCK CRL, DER (`encoding=der`).
    pub pck_crl: Vec<u8>,
    /// [`HEADER_PCK_CRL_ISSUER_CHAIN`], decoded.
    pub pck_crl_issuer_chain: String,
    /// The root CA CRL, DER (see [`root_ca_crl_der`]).
    pub root_ca_crl: Vec<u8>,
    /// The `tcb` body: `{"tcbInfo": {...}, "signature": "<hex>"}`.
    pub tcb_info: Vec<u8>,
    /// [`HEADER_TCB_INFO_ISSUER_CHAIN`], decoded.
    pub tcb_info_issuer_chain: String,
    /// The `qe/identity` body: `{"enclaveIdentity": {...}, "signature": "<hex>"}`.
    pub qe_identity: Vec<u8>,
    /// [`HEADER_QE_IDENTITY_ISSUER_CHAIN`], decoded.
    pub qe_identity_issuer_chain: String,
}

/// The signed object (kept byte for byte) and the signature of a PCS JSON body.
fn signed_body(
    resource: &'static str,
    body: &[u8],
    object: &str,
) -> Result<(String, String), PcsError> {
    let fail = |why: String| PcsError::Body { resource, why };
    let map: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| fail(format!("not JSON: {e}")))?;
    let signed = map
        .get(object)
        .ok_or_else(|| fail(format!("no `{object}`")))?
        .get()
        .to_string();
    let signature: String = map
        .get("signature")
        .ok_or_else(|| fail("no `signature`".into()))
        .and_then(|v| {
            serde_json::from_str(v.get()).map_err(|_| fail("`signature` is not a string".into()))
        })?;
    if hex::decode(&signature).is_err() {
        return Err(fail("`signature` is not hex".into()));
    }
    Ok((signed, signature))
}

/// Assembles the collateral JSON (`QuoteCollateralV3`) from the PCS responses.
pub fn assemble(r: &PcsResponses) -> Result<Vec<u8>, PcsError> {
    let (tcb_info, tcb_info_signature) = signed_body("tcb info", &r.tcb_info, "tcbInfo")?;
    let (qe_identity, qe_identity_signature) =
        signed_body("qe identity", &r.qe_identity, "enclaveIdentity")?;
    let json = serde_json::json!({
        "pck_crl_issuer_chain": r.pck_crl_issuer_chain,
        "root_ca_crl": hex::encode(&r.root_ca_crl),
        "pck_crl": hex::encode(&r.pck_crl),
        "tcb_info_issuer_chain": r.tcb_info_issuer_chain,
        "tcb_info": tcb_info,
        "tcb_info_signature": tcb_info_signature,
        "qe_identity_issuer_chain": r.qe_identity_issuer_chain,
        "qe_identity": qe_identity,
        "qe_identity_signature": qe_identity_signature,
    });
    Ok(serde_json::to_vec(&json).unwrap_or_default())
}

/// The earliest `nextUpdate` of the collateral's TCB info, QE identity and CRLs, in Unix
/// seconds: the time by which a holder should have fetched newer collateral.
pub fn next_update(collateral_json: &[u8]) -> Result<i64, PcsError> {
    use x509_cert::der::Decode as _;
    let c = super::parse_collateral(collateral_json)
        .map_err(|e| PcsError::NextUpdate(e.to_string()))?;
    let mut times = Vec::new();
    for (what, text) in [("tcb_info", &c.tcb_info), ("qe_identity", &c.qe_identity)] {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PcsError::NextUpdate(format!("{what}: {e}")))?;
        let s = v
            .get("nextUpdate")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| PcsError::NextUpdate(format!("{what} has no nextUpdate")))?;
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| PcsError::NextUpdate(format!("{what} nextUpdate `{s}`: {e}")))?;
        times.push(t.unix_timestamp());
    }
    for (what, der) in [("pck_crl", &c.pck_crl), ("root_ca_crl", &c.root_ca_crl)] {
        let crl = x509_cert::crl::CertificateList::from_der(der)
            .map_err(|e| PcsError::NextUpdate(format!("{what}: {e}")))?;
        if let Some(t) = crl.tbs_cert_list.next_update {
            let secs = t.to_unix_duration().as_secs();
            times.push(i64::try_from(secs).unwrap_or(i64::MAX));
        }
    }
    times
        .into_iter()
        .min()
        .ok_or_else(|| PcsError::NextUpdate("none found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_pcs_v4_shapes() {
        let id = PckIdentity {
            fmspc: [0xb0, 0xc0, 0x6f, 0, 0, 0],
            ca: PckCa::Platform,
        };
        assert_eq!(
            id.pck_crl_path(),
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
        );
        assert_eq!(
            id.tcb_info_path(),
            "/tdx/certification/v4/tcb?fmspc=B0C06F000000"
        );
    }

    #[test]
    fn the_root_ca_crl_comes_from_the_distribution_point_with_intels_pcs() {
        assert_eq!(
            root_ca_crl_url(INTEL_PCS_URL, None),
            "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
        );
        assert_eq!(
            root_ca_crl_url("https://pccs.local:8081", None),
            "https://pccs.local:8081/sgx/certification/v4/rootcacrl"
        );
        assert_eq!(
            root_ca_crl_url(INTEL_PCS_URL, Some("http://127.0.0.1:9/IntelSGXRootCA.der")),
            "http://127.0.0.1:9/IntelSGXRootCA.der"
        );
    }

    #[test]
    fn bodies_keep_their_signed_bytes() {
        let body = br#"{"tcbInfo":{"b":1, "a":2},"signature":"00ff"}"#;
        let (signed, sig) = signed_body("tcb info", body, "tcbInfo").unwrap();
        assert_eq!(signed, r#"{"b":1, "a":2}"#);
        assert_eq!(sig, "00ff");
        for bad in [
            &br#"{"signature":"00"}"#[..],
            br#"{"tcbInfo":{},"signature":7}"#,
            br#"{"tcbInfo":{},"signature":"zz"}"#,
            br#"{"tcbInfo":{}}"#,
            b"not json",
        ] {
            let e = signed_body("tcb info", bad, "tcbInfo").unwrap_err();
            assert!(e.to_string().starts_with("tcb info:"), "{e}");
        }
    }

    #[test]
    fn issuer_chains_and_root_crls_decode() {
        assert_eq!(
            decode_issuer_chain("h", b"-----BEGIN%20CERTIFICATE-----%0A").unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
        assert!(decode_issuer_chain("h", b"%ff%fe").is_err());
        assert!(decode_issuer_chain("h", &[0xff]).is_err());
        assert_eq!(root_ca_crl_der(b"3003").unwrap(), vec![0x30, 0x03]);
        assert_eq!(root_ca_crl_der(&[0x30, 1, 0]).unwrap(), vec![0x30, 1, 0]);
        assert_eq!(root_ca_crl_der(b"xyz"), Err(PcsError::RootCaCrl));
    }

    /// The recorded collateral split into PCS-shaped bodies, as a PCS would serve them,
    /// assembles back into collateral that verifies the recorded quote.
    #[test]
    fn recorded_collateral_round_trips_through_pcs_shapes() {
        let Some(dir) = testkit::evidence::dir("tdx") else {
            return;
        };
        let quote = std::fs::read(dir.join("tdx_quote")).unwrap();
        let json = std::fs::read(dir.join("tdx_quote_collateral.json")).unwrap();
        let id = pck_identity(&quote).unwrap();
        assert_eq!(id.fmspc_hex(), "B0C06F000000");
        assert_eq!(id.ca, PckCa::Platform);
        let c: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let field = |k: &str| c[k].as_str().unwrap().to_string();
        let responses = PcsResponses {
            pck_crl: hex::decode(field("pck_crl")).unwrap(),
            pck_crl_issuer_chain: field("pck_crl_issuer_chain"),
            root_ca_crl: root_ca_crl_der(field("root_ca_crl").as_bytes()).unwrap(),
            tcb_info: format!(
                r#"{{"tcbInfo":{},"signature":"{}"}}"#,
                field("tcb_info"),
                field("tcb_info_signature")
            )
            .into_bytes(),
            tcb_info_issuer_chain: field("tcb_info_issuer_chain"),
            qe_identity: format!(
                r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
                field("qe_identity"),
                field("qe_identity_signature")
            )
            .into_bytes(),
            qe_identity_issuer_chain: field("qe_identity_issuer_chain"),
        };
        let assembled = assemble(&responses).unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_751_328_000); // 2025-07-01
        let v = super::super::verify(&quote, &assembled, at, &[]).unwrap();
        assert_eq!(v.tcb_status, "UpToDate");
        // The earliest nextUpdate of the four parts lies inside the README's window.
        let next = next_update(&assembled).unwrap();
        assert!((1_750_329_147..=1_752_920_163).contains(&next), "{next}");
        assert!(next_update(b"{}").is_err());
    }
}
