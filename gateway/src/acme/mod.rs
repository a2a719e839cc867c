//! ACME for the own domain (`[gateway.acme]`): verigated has a CA issue and renew the own
//! endpoint's certificate for `gateway.domain`, with the key that never leaves the VM.
//!
//! - **The key** is `gateway.ssl_private_key`, generated inside the VM at the first start
//!   (mode 0600, written atomically, `crate::certificate`) together with a self-signed
//!   certificate that serves until the first issuance. Every order's CSR is signed with
//!   that same key, so the public key a snapshot pins stays the same across renewals.
//! - **The challenge** is TLS-ALPN-01 on verigated's own listener ([`challenge`]): the
//!   listener hands a hello for `gateway.domain` with ALPN `acme-tls/1` alone to the
//!   responder, and every other hello goes where it went before.
//! - **The swap**: the chain is written over `gateway.ssl_certificate` (atomically), then
//!   the active configuration is rebuilt with it (`ActiveConfig::reload_certificate`).
//!   New handshakes get the new certificate; open connections keep theirs. The own entry
//!   of the attested manifest is replaced at the same moment
//!   (`ManifestStore::set_own`), and the manifest refresher, which follows the active
//!   configuration, rebuilds the whole manifest right after.
//! - **Failures** are logged and counted ([`AcmeMetrics`], on `/metrics`); the
//!   certificate in use stays, and the order is retried after `retry_backoff`, doubling
//!   per failure up to `check_interval`.
//!
//! [`keep_issued`] is the task; it follows the active configuration, so a reload that
//! adds, changes or removes `[gateway.acme]` takes effect at its next look.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Digest as _;
use tokio::sync::watch;

use crate::active::{ActiveConfig, LoadError};
use crate::manifest::ManifestStore;
use crate::metrics::Metrics;

pub mod challenge;
pub mod http;
pub mod lifetime;
pub mod order;

use challenge::{ChallengeError, Challenges};
use lifetime::{Due, Lifetime};

/// Why an order failed (the certificate in use stays).
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA, or the way to it, answered with an error.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// `ca_bundle` cannot be used.
    #[error("gateway.acme.ca_bundle: {0}")]
    CaBundle(String),
    /// `ca_bundle` cannot be read.
    #[error("gateway.acme.ca_bundle: {0}")]
    CaBundleFile(#[from] crate::certificate::CertificateError),
    /// The account file cannot be read or written as JSON.
    #[error("{0}: {1}")]
    AccountFile(PathBuf, String),
    /// The own key cannot be read or used for the CSR.
    #[error("{0}: {1}")]
    Key(PathBuf, String),
    /// The CSR cannot be made.
    #[error("making the CSR: {0}")]
    Csr(rcgen::Error),
    /// The challenge certificate cannot be made.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// The CA offers no TLS-ALPN-01 challenge (the only one verigated can answer).
    #[error("the CA offers no tls-alpn-01 challenge for the domain")]
    NoTlsAlpn01,
    /// An authorization of the order is neither pending nor valid.
    #[error("authorization is {0}")]
    Authorization(String),
    /// The order did not become ready (its challenge failed).
    #[error("order is {0}")]
    Order(String),
    /// The issued leaf has another public key than the own key.
    #[error("the CA issued a certificate for another key: refused")]
    OtherKey,
    /// The issued chain is not PEM with a certificate.
    #[error("the issued chain: {0}")]
    Chain(String),
    /// The External Account Binding key cannot be read.
    #[error("gateway.acme.eab_hmac_key: {0}")]
    Eab(String),
    /// The new pair of a key rotation cannot be written.
    #[error("writing the new certificate and key: {0}")]
    Replace(crate::certificate::CertificateError),
    /// A file cannot be written.
    #[error("{0}: cannot write: {1}")]
    Save(PathBuf, String),
    /// The order took longer than `order_timeout`.
    #[error("the order took longer than gateway.acme.order_timeout ({0:?})")]
    Timeout(Duration),
    /// The written certificate cannot be made active.
    #[error("activating the issued certificate: {0}")]
    Activate(#[from] LoadError),
}

/// The renewal task's counters, rendered on `/metrics` once `[gateway.acme]` is set.
#[derive(Debug, Default)]
pub struct AcmeMetrics {
    enabled: AtomicBool,
    /// Orders that ended with a certificate in use.
    pub orders_ok: AtomicU64,
    /// Orders that failed.
    pub orders_failed: AtomicU64,
    /// Failures since the last success.
    pub consecutive_failures: AtomicU64,
    /// Unix time of the last issuance (0: none yet).
    pub last_success: AtomicU64,
    /// Unix time of the last failure (0: none yet).
    pub last_failure: AtomicU64,
    /// Unix time the own certificate in use expires.
    pub certificate_expiry: AtomicU64,
    /// TLS-ALPN-01 handshakes answered (successful or not).
    pub challenges_answered: AtomicU64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl AcmeMetrics {
    /// Prometheus text of these counters; empty while `[gateway.acme]` was never set.
    pub fn render(&self) -> String {
        if !self.enabled.load(Ordering::Relaxed) {
            return String::new();
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, value) in rows {
                out.push_str(&format!("{name}{labels} {value}\n"));
            }
        };
        family(
            "verigated_acme_orders_total",
            "counter",
            "ACME orders for the own certificate, by result.",
            &[
                ("{result=\"ok\"}", load(&self.orders_ok)),
                ("{result=\"failed\"}", load(&self.orders_failed)),
            ],
        );
        family(
            "verigated_acme_consecutive_failures",
            "gauge",
            "ACME orders failed since the last success (the certificate in use stays).",
            &[("", load(&self.consecutive_failures))],
        );
        family(
            "verigated_acme_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last issued certificate (0: none yet).",
            &[("", load(&self.last_success))],
        );
        family(
            "verigated_acme_last_failure_timestamp_seconds",
            "gauge",
            "Unix time of the last failed order (0: none yet).",
            &[("", load(&self.last_failure))],
        );
        family(
            "verigated_acme_certificate_expiry_timestamp_seconds",
            "gauge",
            "Unix time the own certificate in use expires.",
            &[("", load(&self.certificate_expiry))],
        );
        family(
            "verigated_acme_challenges_answered_total",
            "counter",
            "TLS-ALPN-01 handshakes answered on the own listener.",
            &[("", load(&self.challenges_answered))],
        );
        out
    }
}

/// What the listener and `/metrics` share with the renewal task.
#[derive(Debug)]
pub struct AcmeShared {
    /// The challenges pending now.
    pub challenges: Arc<Challenges>,
    /// The rustls configuration that answers them.
    pub challenge_config: Arc<rustls::ServerConfig>,
    /// The task's counters.
    pub metrics: AcmeMetrics,
}

impl AcmeShared {
    /// No challenge pending, counters at zero.
    pub fn new() -> Result<AcmeShared, rustls::Error> {
        let challenges = Arc::new(Challenges::default());
        Ok(AcmeShared {
            challenge_config: challenge::server_config(challenges.clone())?,
            challenges,
            metrics: AcmeMetrics::default(),
        })
    }
}

/// Checks what the CA sent before it replaces the certificate in use: PEM certificates
/// whose leaf carries `key` (the key the CSR was signed with), since the pin of every
/// snapshot depends on that key.
pub fn check_chain(chain_pem: &str, key: &rcgen::KeyPair) -> Result<(), AcmeError> {
    let chain = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AcmeError::Chain(e.to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| AcmeError::Chain("no certificate".into()))?;
    let issued = attest::binding::CertDigests::of("leaf", leaf)
        .map_err(|e| AcmeError::Chain(e.to_string()))?
        .spki_sha256;
    let ours: [u8; 32] = sha2::Sha256::digest(key.public_key_der()).into();
    if issued != ours {
        return Err(AcmeError::OtherKey);
    }
    Ok(())
}

/// One order, with the chain written and made active.
async fn renew(
    shared: &AcmeShared,
    active: &ActiveConfig,
    manifest: &ManifestStore,
    metrics: &Metrics,
) -> Result<(), AcmeError> {
    let current = active.current();
    let g = &current.config.gateway;
    let Some(settings) = &g.acme else {
        return Ok(());
    };
    // With rotate_key, a renewal of a CA-issued certificate gets a new key; the first
    // issuance keeps the key made at the first start (it is new anyway).
    let rotate =
        settings.rotate_key && Lifetime::of(&current.own_certificate).is_ok_and(|l| !l.self_issued);
    let key = if rotate {
        rcgen::KeyPair::generate().map_err(AcmeError::Csr)?
    } else {
        order::read_key(&g.ssl_private_key)?
    };
    let inputs = order::OrderInputs {
        domain: &g.domain,
        key: &key,
        data_dir: &g.data_dir,
        challenges: &shared.challenges,
    };
    let chain = tokio::time::timeout(settings.order_timeout, order::issue(settings, &inputs))
        .await
        .map_err(|_| AcmeError::Timeout(settings.order_timeout))??;
    check_chain(&chain, &key)?;
    if rotate {
        crate::certificate::replace_pair(
            &g.ssl_certificate,
            &g.ssl_private_key,
            chain.as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .map_err(AcmeError::Replace)?;
        tracing::warn!(
            "ACME: renewed with a new key (gateway.acme.rotate_key): snapshots pin the old \
             key, so `verigate verify` needs --allow-key-change once, then a new snapshot"
        );
    } else {
        order::save(&g.ssl_certificate, chain.as_bytes(), 0o644)?;
    }
    let swapped = active.reload_certificate(metrics)?;
    manifest.set_own(&swapped.own_certificate);
    Ok(())
}

/// The wait before the next order after `failures` failed ones in a row:
/// `retry_backoff`, doubled per failure after the first, at most `check_interval`.
pub fn retry_wait(settings: &crate::config::acme::AcmeSettings, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    settings
        .retry_backoff
        .saturating_mul(1u32 << doublings)
        .min(settings.check_interval)
}

/// Keeps the own certificate issued by `[gateway.acme] directory` until `shutdown`; see
/// the module documentation.
pub async fn keep_issued(
    shared: Arc<AcmeShared>,
    active: Arc<ActiveConfig>,
    manifest: Arc<ManifestStore>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut view = active.view();
    let mut failures: u32 = 0;
    let mut just_issued = false;
    let m = &shared.metrics;
    loop {
        let current = view.mark_seen();
        let wait = match current.config.gateway.acme.as_ref() {
            None => None,
            Some(settings) => {
                m.enabled.store(true, Ordering::Relaxed);
                let now = SystemTime::now();
                let due = match Lifetime::of(&current.own_certificate) {
                    Ok(l) => {
                        m.certificate_expiry
                            .store(unix(l.not_after), Ordering::Relaxed);
                        l.due(settings.renew_before, now)
                    }
                    Err(_) => Due::Now("the certificate in use cannot be parsed"),
                };
                match due {
                    Due::At(at) => {
                        just_issued = false;
                        Some(
                            at.duration_since(now)
                                .unwrap_or_default()
                                .min(settings.check_interval),
                        )
                    }
                    Due::Now(_) if just_issued => {
                        // A certificate shorter-lived than renew_before: one order per
                        // check_interval, not one after the other.
                        tracing::warn!(
                            renew_before = ?settings.renew_before,
                            "the new certificate is due at once: gateway.acme.renew_before is longer than the CA's validity"
                        );
                        just_issued = false;
                        Some(settings.check_interval)
                    }
                    Due::Now(why) => {
                        tracing::info!(domain = %current.config.gateway.domain, directory = %settings.directory, reason = why, "ACME: ordering the own certificate");
                        drop(current);
                        match renew(&shared, &active, &manifest, &metrics).await {
                            Ok(()) => {
                                failures = 0;
                                just_issued = true;
                                m.orders_ok.fetch_add(1, Ordering::Relaxed);
                                m.consecutive_failures.store(0, Ordering::Relaxed);
                                m.last_success
                                    .store(unix(SystemTime::now()), Ordering::Relaxed);
                                tracing::info!("ACME: issued certificate in use for new connections; manifest refreshing");
                                // Look again at once, at the new certificate.
                                continue;
                            }
                            Err(e) => {
                                failures = failures.saturating_add(1);
                                m.orders_failed.fetch_add(1, Ordering::Relaxed);
                                m.consecutive_failures
                                    .store(u64::from(failures), Ordering::Relaxed);
                                m.last_failure
                                    .store(unix(SystemTime::now()), Ordering::Relaxed);
                                let wait = active
                                    .current()
                                    .config
                                    .gateway
                                    .acme
                                    .as_ref()
                                    .map_or(Duration::ZERO, |s| retry_wait(s, failures));
                                tracing::error!(failures, retry_in = ?wait, "ACME order failed, the certificate in use stays: {e}");
                                Some(wait)
                            }
                        }
                    }
                }
            }
        };
        let sleep = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = crate::shutdown::stopping(&mut shutdown) => return,
            changed = view.changed() => if !changed { return },
            () = sleep => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_with(key_pem: &str) -> String {
        let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
        rcgen::CertificateParams::new(vec!["vm.example.com".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
    }

    #[test]
    fn a_chain_for_the_own_key_is_taken_and_anything_else_refused() {
        let (_, key_pem) = crate::certificate::generate("vm.example.com", "h").unwrap();
        let own = rcgen::KeyPair::from_pem(&key_pem).unwrap();
        check_chain(&leaf_with(&key_pem), &own).unwrap();
        let (other, _) = crate::certificate::generate("vm.example.com", "h").unwrap();
        assert!(matches!(
            check_chain(&other, &own),
            Err(AcmeError::OtherKey)
        ));
        for garbage in [
            "",
            "no PEM here",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(check_chain(garbage, &own), Err(AcmeError::Chain(_))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn retries_back_off_by_doubling_up_to_check_interval() {
        let settings = crate::config::acme::AcmeSettings {
            directory: "https://acme.example/dir".into(),
            contact: Vec::new(),
            ca_bundle: None,
            renew_before: Duration::from_secs(86_400),
            check_interval: Duration::from_secs(3600),
            retry_backoff: Duration::from_secs(300),
            order_timeout: Duration::from_secs(300),
            rotate_key: false,
            eab: None,
        };
        let waits: Vec<u64> = (1..=6)
            .map(|n| retry_wait(&settings, n).as_secs())
            .collect();
        assert_eq!(waits, [300, 600, 1200, 2400, 3600, 3600]);
        assert_eq!(retry_wait(&settings, u32::MAX).as_secs(), 3600);
    }

    #[test]
    fn metrics_appear_once_acme_is_set() {
        let m = AcmeMetrics::default();
        assert_eq!(m.render(), "");
        m.enabled.store(true, Ordering::Relaxed);
        m.orders_failed.fetch_add(2, Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains("verigated_acme_orders_total{result=\"failed\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE verigated_acme_certificate_expiry_timestamp_seconds gauge"));
    }
}
