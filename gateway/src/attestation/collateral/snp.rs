//! The VCEK of an SEV-SNP report and its ASK/ARK chain, for a host that supplies no
//! certificate table: from AMD KDS by product, chip id and reported TCB, or on Azure from
//! the instance metadata service's certification endpoint. Either way the result is the
//! PEM chain VCEK, ASK, ARK that the evidence's `cert_chain` carries.

use attest::pem::der_to_pem;
use attest::tee::snp::kds::{product_candidates, VcekId};
use attest::tee::snp::SnpReport;

use super::cache::Cached;
use super::http;
use super::{unix_now, FetchError, REQUEST_DEADLINE};

/// Azure's certification endpoint: JSON with `vcekCert` and `certificateChain` (PEM).
pub const AZURE_CERTIFICATION_PATH: &str = "/metadata/THIM/amd/certification";

/// Where a VCEK comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcekSource {
    /// AMD KDS (or a mirror of its paths) at this base URL.
    Kds(String),
    /// Azure's instance metadata service at this base URL (the Azure backends choose it).
    AzureImds(String),
}

impl VcekSource {
    /// The base URL, for logs and the cache entry.
    pub fn base(&self) -> &str {
        match self {
            VcekSource::Kds(b) | VcekSource::AzureImds(b) => b,
        }
    }
}

/// The cache key of a report's VCEK: its chip and its reported TCB.
pub fn cache_key(report: &SnpReport) -> String {
    format!(
        "snp-{}-{}",
        hex::encode(report.chip_id),
        hex::encode(report.reported_tcb)
    )
}

/// Fetches the VCEK chain of `report` from `source`.
pub async fn fetch_chain(source: &VcekSource, report: &SnpReport) -> Result<Cached, FetchError> {
    let data = match source {
        VcekSource::Kds(base) => from_kds(base, report).await?,
        VcekSource::AzureImds(base) => from_azure(base).await?,
    };
    Ok(Cached {
        fetched_at: unix_now(),
        next_update: None,
        source: source.base().to_string(),
        data,
    })
}

async fn from_kds(base: &str, report: &SnpReport) -> Result<String, FetchError> {
    let mut last = None;
    // A v2 report does not name its product: ask each candidate; KDS knows the chip
    // under its own product only.
    for product in product_candidates(report) {
        let id = VcekId::of(report, product)?;
        let vcek =
            match http::get(&format!("{base}{}", id.vcek_path()), &[], REQUEST_DEADLINE).await {
                Ok(r) => r,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
        let chain = http::get(&format!("{base}{}", id.chain_path()), &[], REQUEST_DEADLINE).await?;
        let chain = String::from_utf8(chain.body.to_vec())
            .map_err(|_| FetchError::Malformed("KDS cert_chain is not PEM text".into()))?;
        return Ok(format!("{}{chain}", der_to_pem(&vcek.body)));
    }
    Err(last.map_or_else(
        || FetchError::Malformed("no product to ask KDS for".into()),
        FetchError::Http,
    ))
}

async fn from_azure(base: &str) -> Result<String, FetchError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Certification {
        vcek_cert: String,
        certificate_chain: String,
    }
    let url = format!("{base}{AZURE_CERTIFICATION_PATH}");
    let r = http::get(&url, &[("Metadata", "true")], REQUEST_DEADLINE).await?;
    let c: Certification = serde_json::from_slice(&r.body)
        .map_err(|e| FetchError::Malformed(format!("{url}: {e}")))?;
    let mut pem = c.vcek_cert.trim_end().to_string();
    pem.push('\n');
    pem.push_str(&c.certificate_chain);
    Ok(pem)
}
