//! TDX collateral from Intel PCS v4 or a PCCS: the PCK CRL of the quote's PCK CA, the
//! TCB info of its FMSPC, the TDX QE identity and the root CA CRL, each with the issuer
//! chain from its response header, assembled by `attest::tee::tdx::pcs`.
//!
//! With Intel's PCS the root CA CRL comes from the root's CRL distribution point; a PCCS
//! serves it itself (`attestation.root_ca_crl_url`, ARCHITECTURE.md, "Collateral").

use attest::tee::tdx::pcs::{self, PckIdentity, PcsResponses};

use super::cache::Cached;
use super::http::{self, Response};
use super::{unix_now, FetchError, REQUEST_DEADLINE};

fn header(response: &Response, names: &[&'static str], url: &str) -> Result<String, FetchError> {
    for name in names {
        if let Some(v) = response.headers.get(*name) {
            return Ok(pcs::decode_issuer_chain(name, v.as_bytes())?);
        }
    }
    Err(FetchError::MissingHeader {
        url: url.to_string(),
        header: names.first().copied().unwrap_or_default(),
    })
}

async fn fetch(url: &str) -> Result<Response, FetchError> {
    Ok(http::get(url, &[], REQUEST_DEADLINE).await?)
}

/// Fetches and assembles the collateral for `id` from the PCS or PCCS at `base`, and the
/// root CA CRL from `root_ca_crl_url` (`pcs::root_ca_crl_url`: the root's CRL
/// distribution point with Intel's PCS, the PCCS's own resource otherwise).
pub async fn fetch_collateral(
    base: &str,
    root_ca_crl_url: &str,
    id: PckIdentity,
) -> Result<Cached, FetchError> {
    let url = format!("{base}{}", id.pck_crl_path());
    let pck = fetch(&url).await?;
    let pck_crl_issuer_chain = header(&pck, &[pcs::HEADER_PCK_CRL_ISSUER_CHAIN], &url)?;

    let url = format!("{base}{}", id.tcb_info_path());
    let tcb = fetch(&url).await?;
    let tcb_info_issuer_chain = header(
        &tcb,
        &[
            pcs::HEADER_TCB_INFO_ISSUER_CHAIN,
            pcs::HEADER_SGX_TCB_INFO_ISSUER_CHAIN,
        ],
        &url,
    )?;

    let url = format!("{base}{}", pcs::QE_IDENTITY_PATH);
    let qe = fetch(&url).await?;
    let qe_identity_issuer_chain = header(&qe, &[pcs::HEADER_QE_IDENTITY_ISSUER_CHAIN], &url)?;

    let root = fetch(root_ca_crl_url).await?;

    let json = pcs::assemble(&PcsResponses {
        pck_crl: pck.body.to_vec(),
        pck_crl_issuer_chain,
        root_ca_crl: pcs::root_ca_crl_der(&root.body)?,
        tcb_info: tcb.body.to_vec(),
        tcb_info_issuer_chain,
        qe_identity: qe.body.to_vec(),
        qe_identity_issuer_chain,
    })?;
    // Parsing it for its nextUpdate also refuses a response that is not collateral, so
    // garbage never replaces a good cached copy.
    let next_update = pcs::next_update(&json)?;
    Ok(Cached {
        fetched_at: unix_now(),
        next_update: Some(next_update),
        source: base.to_string(),
        data: String::from_utf8(json).unwrap_or_default(),
    })
}
