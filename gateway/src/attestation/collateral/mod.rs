//! What a verifier needs besides the TEE report, obtained and cached by verigated so that
//! it travels in the Evidence and `verigate verify` needs no network (ARCHITECTURE.md,
//! "Collateral"): the VCEK chain of an SEV-SNP report whose host supplied none, and the
//! Intel PCS collateral of a TDX quote.
//!
//! Each piece is cached in memory and on disk ([`cache`]) under what identifies it. An
//! attestation takes the cached copy at once; a copy that is due ([`cache::Cached::due`])
//! is fetched again in the background, at most once per [`RETRY_AFTER`] per key. Only
//! when nothing is cached does an attestation wait for the fetch, bounded by
//! [`FETCH_DEADLINE`] and not again within [`RETRY_AFTER`] of a failed one; if it fails
//! the evidence carries no collateral (the verifier then fails closed and says so). A failed refresh keeps the cached copy, and says so in
//! the log and in `/metrics`.
//!
//! Nothing fetched is trusted here: the verifier checks it against the pinned AMD and
//! Intel roots exactly as it checks files given on its command line.

pub mod cache;
pub mod http;
pub mod snp;
pub mod tdx;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use attest::evidence::{Base64, TeeEvidence};

use crate::config::collateral::CollateralConfig;
use cache::{Cached, DiskCache};
pub use snp::VcekSource;

/// The most an attestation waits for a fetch when nothing is cached.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(10);
/// The most one request to a collateral service may take.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The least time between two fetches of one key (so an outage is not hammered).
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why a fetch gave no collateral.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A request failed or timed out.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// A response lacks the issuer-chain header the protocol puts there.
    #[error("{url}: no {header} header")]
    MissingHeader {
        /// The URL asked.
        url: String,
        /// The header expected.
        header: &'static str,
    },
    /// The PCS responses do not assemble into collateral.
    #[error(transparent)]
    Pcs(#[from] attest::tee::tdx::pcs::PcsError),
    /// KDS cannot be asked for this report's key.
    #[error(transparent)]
    Kds(#[from] attest::tee::snp::kds::KdsError),
    /// The quote names no FMSPC to ask for.
    #[error("the quote's PCK certificate: {0}")]
    Quote(#[from] attest::tee::tdx::TdxError),
    /// The report does not parse, so nothing can be asked for it.
    #[error("the report: {0}")]
    Report(#[from] attest::tee::snp::SnpError),
    /// A response is not what the protocol says; holds what is wrong.
    #[error("{0}")]
    Malformed(String),
    /// The whole fetch took longer than its deadline.
    #[error("no collateral within {0} s")]
    Deadline(u64),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CollateralMetrics {
    /// Fetches that stored new collateral.
    pub fetches: AtomicU64,
    /// Fetches that failed (the cached copy, if any, was kept).
    pub fetch_failures: AtomicU64,
    /// Evidence served with a cached copy that was due for a refresh.
    pub stale_served: AtomicU64,
    /// Evidence served without collateral because none was cached or fetched.
    pub missing: AtomicU64,
}

/// Obtains, caches and attaches collateral; see the module documentation.
#[derive(Debug)]
pub struct Collateral {
    pccs_url: String,
    root_ca_crl_url: String,
    vcek_source: VcekSource,
    refresh: Duration,
    disk: DiskCache,
    memory: Mutex<HashMap<String, Cached>>,
    last_attempt: Mutex<HashMap<String, Instant>>,
    /// Held while an attestation fetches what nothing cached holds, so concurrent first
    /// calls wait for that one fetch (bounded by [`FETCH_DEADLINE`]) instead of each
    /// starting their own.
    first_fetch: tokio::sync::Mutex<()>,
    /// Counters for `/metrics`.
    pub metrics: CollateralMetrics,
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `fetch` bounded by [`FETCH_DEADLINE`].
async fn bounded(
    fetch: impl Future<Output = Result<Cached, FetchError>>,
) -> Result<Cached, FetchError> {
    tokio::time::timeout(FETCH_DEADLINE, fetch)
        .await
        .unwrap_or(Err(FetchError::Deadline(FETCH_DEADLINE.as_secs())))
}

impl Collateral {
    /// The service for `config`, caching under `data_dir`, taking VCEKs from AMD KDS.
    pub fn new(config: &CollateralConfig, data_dir: &Path) -> Collateral {
        Collateral::with_vcek_source(
            config,
            data_dir,
            VcekSource::Kds(config.amd_kds_url.clone()),
        )
    }

    /// [`Collateral::new`] with another VCEK source: the Attester of an Azure SEV-SNP VM
    /// takes Azure's instance metadata service, which serves the VCEK of the chip it runs
    /// on.
    pub fn with_vcek_source(
        config: &CollateralConfig,
        data_dir: &Path,
        vcek_source: VcekSource,
    ) -> Collateral {
        Collateral {
            pccs_url: config.pccs_url.clone(),
            root_ca_crl_url: config.root_ca_crl_url.clone(),
            vcek_source,
            refresh: config.refresh,
            disk: DiskCache::new(data_dir),
            memory: Mutex::new(HashMap::new()),
            last_attempt: Mutex::new(HashMap::new()),
            first_fetch: tokio::sync::Mutex::new(()),
            metrics: CollateralMetrics::default(),
        }
    }

    /// `tee` with the collateral it lacks: TDX collateral for a quote without (the TD
    /// quote of an Azure TDX VM included), the VCEK chain for an SEV-SNP report without
    /// certificates (the one in an Azure HCL report included). Evidence that already carries
    /// them (the host's certificate table) is returned as it is.
    pub async fn complete(self: &Arc<Self>, tee: TeeEvidence) -> TeeEvidence {
        match tee {
            TeeEvidence::Tdx {
                report,
                collateral: None,
            } => {
                let collateral = self
                    .tdx(&report.0)
                    .await
                    .map(|c| Base64(c.data.into_bytes()));
                TeeEvidence::Tdx { report, collateral }
            }
            TeeEvidence::SevSnp {
                report,
                cert_chain: None,
            } => {
                let cert_chain = self
                    .snp(&report.0)
                    .await
                    .map(|c| Base64(c.data.into_bytes()));
                TeeEvidence::SevSnp { report, cert_chain }
            }
            TeeEvidence::AzureSevSnp {
                hcl_report,
                cert_chain: None,
            } => {
                let cert_chain = match attest::tee::azure::hcl::parse(&hcl_report.0) {
                    Ok(r) => self
                        .snp(&r.hardware_report)
                        .await
                        .map(|c| Base64(c.data.into_bytes())),
                    Err(e) => {
                        self.metrics.missing.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "SEV-SNP VCEK: the HCL report does not parse");
                        None
                    }
                };
                TeeEvidence::AzureSevSnp {
                    hcl_report,
                    cert_chain,
                }
            }
            TeeEvidence::AzureTdx {
                hcl_report,
                td_quote,
                collateral: None,
            } => {
                let collateral = self
                    .tdx(&td_quote.0)
                    .await
                    .map(|c| Base64(c.data.into_bytes()));
                TeeEvidence::AzureTdx {
                    hcl_report,
                    td_quote,
                    collateral,
                }
            }
            other => other,
        }
    }

    async fn tdx(self: &Arc<Self>, quote: &[u8]) -> Option<Cached> {
        let id = match attest::tee::tdx::pcs::pck_identity(quote) {
            Ok(id) => id,
            Err(e) => {
                self.metrics.missing.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "TDX collateral: cannot tell which to fetch");
                return None;
            }
        };
        let base = self.pccs_url.clone();
        let root_ca_crl_url = self.root_ca_crl_url.clone();
        let key = format!("tdx-{}", id.fmspc_hex());
        self.lookup(key, move || {
            let base = base.clone();
            let root_ca_crl_url = root_ca_crl_url.clone();
            async move { tdx::fetch_collateral(&base, &root_ca_crl_url, id).await }
        })
        .await
    }

    async fn snp(self: &Arc<Self>, report: &[u8]) -> Option<Cached> {
        let parsed = match attest::tee::snp::parse_report(report) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.missing.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "SEV-SNP VCEK: the report does not parse");
                return None;
            }
        };
        let source = self.vcek_source.clone();
        let key = snp::cache_key(&parsed);
        self.lookup(key, move || {
            let source = source.clone();
            let parsed = parsed.clone();
            async move { snp::fetch_chain(&source, &parsed).await }
        })
        .await
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        if let Some(c) = self.memory.lock().ok()?.get(key) {
            return Some(c.clone());
        }
        match self.disk.load(key) {
            Ok(Some(c)) => {
                if let Ok(mut m) = self.memory.lock() {
                    m.insert(key.to_string(), c.clone());
                }
                Some(c)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "collateral cache: ignoring an unreadable entry");
                None
            }
        }
    }

    /// Whether a fetch of `key` may start now (none in the last [`RETRY_AFTER`]); if so,
    /// records it as started.
    fn may_fetch(&self, key: &str) -> bool {
        let Ok(mut attempts) = self.last_attempt.lock() else {
            return false;
        };
        if attempts.get(key).is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            return false;
        }
        attempts.insert(key.to_string(), Instant::now());
        true
    }

    fn keep(&self, key: &str, entry: &Cached) {
        if let Err(e) = self.disk.store(key, entry) {
            tracing::warn!(error = %e, "collateral cache: cannot store; kept in memory only");
        }
        if let Ok(mut m) = self.memory.lock() {
            m.insert(key.to_string(), entry.clone());
        }
        self.metrics.fetches.fetch_add(1, Ordering::Relaxed);
    }

    async fn lookup<F, Fut>(self: &Arc<Self>, key: String, fetch: F) -> Option<Cached>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Cached, FetchError>> + Send + 'static,
    {
        match self.cached(&key) {
            Some(c) if !c.due(unix_now(), self.refresh) => Some(c),
            Some(c) => {
                self.metrics.stale_served.fetch_add(1, Ordering::Relaxed);
                if self.may_fetch(&key) {
                    let this = self.clone();
                    tokio::spawn(async move { this.refresh(key, fetch).await });
                }
                Some(c)
            }
            None => {
                let _only_one = self.first_fetch.lock().await;
                if let Some(c) = self.cached(&key) {
                    return Some(c);
                }
                if !self.may_fetch(&key) {
                    // Failed less than RETRY_AFTER ago: do not make this call wait again.
                    self.metrics.missing.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                match bounded(fetch()).await {
                    Ok(c) => {
                        tracing::info!(key = %key, source = %c.source, "collateral fetched");
                        self.keep(&key, &c);
                        Some(c)
                    }
                    Err(e) => {
                        self.metrics.fetch_failures.fetch_add(1, Ordering::Relaxed);
                        self.metrics.missing.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(key = %key, error = %e,
                            "collateral fetch failed and nothing is cached: the evidence goes without it");
                        None
                    }
                }
            }
        }
    }

    async fn refresh<F, Fut>(self: Arc<Self>, key: String, fetch: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Cached, FetchError>>,
    {
        match bounded(fetch()).await {
            Ok(c) => {
                tracing::info!(key = %key, source = %c.source, "collateral refreshed");
                self.keep(&key, &c);
            }
            Err(e) => {
                self.metrics.fetch_failures.fetch_add(1, Ordering::Relaxed);
                let fetched_at = self.cached(&key).map(|c| c.fetched_at);
                tracing::warn!(key = %key, error = %e, cached_fetched_at = ?fetched_at,
                    "collateral refresh failed: keeping the cached copy");
            }
        }
    }

    /// The Prometheus text of [`CollateralMetrics`].
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        for (name, help, counter) in [
            (
                "verigated_collateral_fetches_total",
                "Collateral fetches that stored a new copy (VCEK chains, TDX collateral).",
                &self.metrics.fetches,
            ),
            (
                "verigated_collateral_fetch_failures_total",
                "Collateral fetches that failed; a cached copy, if any, was kept.",
                &self.metrics.fetch_failures,
            ),
            (
                "verigated_collateral_stale_served_total",
                "Evidence served with a cached copy that was due for a refresh.",
                &self.metrics.stale_served,
            ),
            (
                "verigated_collateral_missing_total",
                "Evidence served without the collateral it needs (none cached or fetched).",
                &self.metrics.missing,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
        out
    }
}
