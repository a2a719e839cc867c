//! The certificate manifest: for verigated's own domain and for every route, the SHA-256
//! of the DER leaf certificate that the name presents (ARCHITECTURE.md, "The certificate
//! manifest"). An attestation binds its digest into report_data, so a verifier learns
//! from one TEE report which certificates are served from inside the VM.
//!
//! A route's certificate comes from its `certificate` file when set, else from a TLS
//! handshake to its backend (connect and handshake bounded by
//! `gateway.backend_connect_timeout`). The handshake accepts any chain (the manifest
//! records what the backend presents, trusted or not) but checks that the backend signed
//! the handshake with the key of that certificate, so the hash belongs to a server that
//! holds the key. The SNI sent is the route's name; for a wildcard route `*.suffix` it is
//! `verigate-probe.suffix`, for the catch-all route `*` it is `verigate-probe.invalid`
//! (a name no other route matches, which is what reaches a catch-all); both entries are
//! keyed by the pattern (`*.suffix`, `*`), since the backend presents one certificate for
//! every name the pattern matches. A route whose backend cannot be reached (or whose
//! file cannot be read) is absent from the manifest, logged, and listed as unreachable in
//! `GET /v1/manifest`; it reappears at the next refresh that reaches it.
//!
//! [`ManifestStore`] keeps the current manifest behind an `RwLock<Arc<_>>`, rebuilt by one
//! task ([`keep_current`]) at start, after each reload (SIGHUP) and every
//! `attestation.manifest_refresh`; the probes of one rebuild run concurrently. An
//! attestation only clones the `Arc`: it never waits on backend handshakes.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attest::binding::{Manifest, ManifestEntry};
use attest::tls::SignatureOnlyVerifier;
use passthrough::proxy_protocol;
use passthrough::sni::SniPattern;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::active::{Active, ActiveView};
use crate::certificate::{read_certificate_chain, CertificateError};
use crate::routes::Route;

/// The SNI label put in front of a wildcard route's suffix for its probe handshake.
pub const PROBE_LABEL: &str = "verigate-probe";

/// The SNI of the catch-all route's probe handshake (`.invalid` never resolves, RFC 2606).
pub const CATCH_ALL_PROBE_SNI: &str = "verigate-probe.invalid";

/// Why a route has no entry in the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The route's `certificate` file cannot be read or holds no certificate.
    #[error("certificate file: {0}")]
    CertificateFile(#[from] CertificateError),
    /// The backend refused or dropped the TCP connection.
    #[error("cannot connect to backend {backend}: {source}")]
    Connect {
        /// The route's backend, `host:port`.
        backend: String,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The TLS handshake with the backend failed.
    #[error("TLS handshake with backend {backend} (SNI {sni}) failed: {source}")]
    Handshake {
        /// The route's backend, `host:port`.
        backend: String,
        /// The server name sent in the ClientHello.
        sni: String,
        /// Why the handshake failed.
        source: std::io::Error,
    },
    /// Connect and handshake did not finish in time.
    #[error("backend {backend} did not complete a TLS handshake within {timeout:?}")]
    Timeout {
        /// The route's backend, `host:port`.
        backend: String,
        /// The time allowed for connect and handshake together.
        timeout: Duration,
    },
    /// The handshake finished but the backend presented no certificate.
    #[error("backend {backend} presented no certificate")]
    NoCertificate {
        /// The route's backend, `host:port`.
        backend: String,
    },
    /// The SNI to send is not a valid DNS name for rustls.
    #[error("cannot send SNI `{sni}`: not a DNS name")]
    BadSni {
        /// The server name that could not be sent.
        sni: String,
    },
    /// The route's name cannot be a manifest entry.
    #[error("name cannot be a manifest entry: {0}")]
    Name(#[from] attest::binding::BindingError),
}

/// A route left out of the manifest, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    /// The route's pattern.
    pub name: String,
    /// What went wrong, as a sentence.
    pub error: String,
}

/// One build of the manifest.
#[derive(Debug, Clone)]
pub struct ManifestState {
    /// verigated's own domain (its entry is always present).
    pub domain: String,
    /// The entries that were reached.
    pub manifest: Manifest,
    /// Routes left out of `manifest`, in route order.
    pub unreachable: Vec<Unreachable>,
    /// When this build finished.
    pub refreshed_at: SystemTime,
    /// 0 before the first full build (own entry only), then 1, 2, ... per build.
    pub generation: u64,
}

impl ManifestState {
    /// The JSON of `GET /v1/manifest`, which anyone may read: names and certificate
    /// digests only. A route left out is listed by name alone (`{"name"}`); its backend's
    /// address and the error are in the log, never here.
    pub fn to_public_json(&self) -> serde_json::Value {
        let unreachable: Vec<serde_json::Value> = self
            .unreachable
            .iter()
            .map(|u| serde_json::json!({ "name": u.name }))
            .collect();
        serde_json::json!({
            "domain": self.domain,
            "manifest": self.manifest,
            "manifest_sha256": hex::encode(self.manifest.digest()),
            "unreachable": unreachable,
            "refreshed_at": self
                .refreshed_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "generation": self.generation,
        })
    }
}

/// Holds the current manifest; see the module documentation.
#[derive(Debug)]
pub struct ManifestStore {
    current: RwLock<Arc<ManifestState>>,
    /// The generation of the last build; attestations wait for generation 1.
    built: watch::Sender<u64>,
}

impl ManifestStore {
    /// A store holding only the own entry of `active` (generation 0) until the first
    /// build.
    pub fn new(active: &Active) -> ManifestStore {
        let domain = active.routes.domain().to_string();
        let manifest = ManifestEntry::from_cert(&domain, &active.own_certificate)
            .and_then(|e| Manifest::new(vec![e]))
            .unwrap_or_default();
        let (built, _) = watch::channel(0);
        ManifestStore {
            current: RwLock::new(Arc::new(ManifestState {
                domain,
                manifest,
                unreachable: Vec::new(),
                refreshed_at: SystemTime::now(),
                generation: 0,
            })),
            built,
        }
    }

    /// The manifest as last built (may be generation 0).
    pub fn current(&self) -> Arc<ManifestState> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current manifest once the first build finished (at once afterwards). The
    /// first build is made by [`keep_current`], which the running gateway starts: a
    /// caller outside a running gateway must call [`ManifestStore::refresh`] first.
    pub async fn ready(&self) -> Arc<ManifestState> {
        let mut rx = self.built.subscribe();
        let _ = rx.wait_for(|g| *g >= 1).await;
        self.current()
    }

    /// Makes `leaf` the own domain's entry of the current manifest at once, the other
    /// entries unchanged: when the own certificate is swapped (an ACME renewal),
    /// attestations bind the new certificate from the same moment new handshakes present
    /// it, instead of after the rebuild that follows, which waits on the routes' probes.
    pub fn set_own(&self, leaf: &CertificateDer<'_>) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Ok(own) = ManifestEntry::from_cert(&current.domain, leaf) else {
            return;
        };
        let mut entries: Vec<ManifestEntry> = current
            .manifest
            .entries()
            .iter()
            .filter(|e| e.name != own.name)
            .cloned()
            .collect();
        entries.push(own);
        if let Ok(manifest) = Manifest::new(entries) {
            let mut next = ManifestState::clone(&current);
            next.manifest = manifest;
            *current = Arc::new(next);
        }
    }

    /// Builds the manifest of `active` now and makes it current; logs entries that
    /// disappear or come back.
    pub async fn refresh(&self, active: &Active, timeout: Duration) -> Arc<ManifestState> {
        let previous = self.current();
        let mut state = build(active, timeout).await;
        state.generation = previous.generation + 1;
        log_changes(&previous, &state);
        let state = Arc::new(state);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state.clone();
        self.built.send_replace(state.generation);
        state
    }
}

fn log_changes(previous: &ManifestState, next: &ManifestState) {
    let was_missing: BTreeSet<&str> = previous
        .unreachable
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    for u in &next.unreachable {
        // Logged when it goes missing (or at the first build), not at every refresh.
        if previous.generation == 0 || !was_missing.contains(u.name.as_str()) {
            tracing::warn!(route = %u.name, "left out of the certificate manifest: {}", u.error);
        }
    }
    for e in next.manifest.entries() {
        let before = previous.manifest.get(&e.name);
        if previous.generation > 0 && before.is_none() && was_missing.contains(e.name.as_str()) {
            tracing::info!(route = %e.name, "back in the certificate manifest");
        }
        if let Some(before) = before {
            if before.spki_sha256 != e.spki_sha256 {
                // A snapshot pins the key: verify fails until --allow-key-change or a new
                // snapshot, so this is worth a warning.
                tracing::warn!(
                    route = %e.name,
                    old = %hex::encode(before.spki_sha256),
                    new = %hex::encode(e.spki_sha256),
                    "key changed (renew with the same key to keep snapshots valid)"
                );
            } else if before.cert_sha256 != e.cert_sha256 {
                tracing::info!(
                    route = %e.name,
                    old = %hex::encode(before.cert_sha256),
                    new = %hex::encode(e.cert_sha256),
                    "certificate renewed with the same key"
                );
            }
        }
    }
}

/// Builds the manifest of `active`: the own certificate, then every route's, probed
/// concurrently, each probe bounded by `timeout`.
pub async fn build(active: &Active, timeout: Duration) -> ManifestState {
    let domain = active.routes.domain().to_string();
    let mut entries = Vec::new();
    let mut unreachable = Vec::new();
    match ManifestEntry::from_cert(&domain, &active.own_certificate) {
        Ok(e) => entries.push(e),
        // The domain was validated as a DNS name; this cannot happen with a valid config.
        Err(e) => tracing::error!(domain = %domain, "own domain cannot be a manifest entry: {e}"),
    }
    let mut probes = tokio::task::JoinSet::new();
    for (index, route) in active.routes.routes().iter().enumerate() {
        let route = route.clone();
        probes.spawn(async move {
            let result = route_entry(&route, timeout).await;
            (index, route.name().to_string(), result)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = probes.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => tracing::error!("a manifest probe task failed: {e}"),
        }
    }
    results.sort_by_key(|(index, _, _)| *index);
    for (_, name, result) in results {
        match result {
            Ok(entry) => entries.push(entry),
            Err(e) => unreachable.push(Unreachable {
                name,
                error: e.to_string(),
            }),
        }
    }
    let manifest = match Manifest::new(entries) {
        Ok(m) => m,
        Err(e) => {
            // Route names are unique (config validation) and differ from the domain.
            tracing::error!("manifest refused: {e}");
            Manifest::default()
        }
    };
    ManifestState {
        domain,
        manifest,
        unreachable,
        refreshed_at: SystemTime::now(),
        generation: 0,
    }
}

/// The manifest entry of one route: from its certificate file, else from a handshake.
pub async fn route_entry(route: &Route, timeout: Duration) -> Result<ManifestEntry, ProbeError> {
    let leaf = match &route.certificate {
        Some(path) => {
            let path = path.clone();
            let chain = tokio::task::spawn_blocking(move || read_certificate_chain(&path))
                .await
                .map_err(|e| ProbeError::Connect {
                    backend: route.backend.clone(),
                    source: std::io::Error::other(e.to_string()),
                })??;
            // read_certificate_chain refuses a file without a certificate.
            chain
                .into_iter()
                .next()
                .ok_or_else(|| ProbeError::NoCertificate {
                    backend: route.backend.clone(),
                })?
        }
        None => {
            probe_certificate(
                &route.backend,
                &probe_sni(&route.sni),
                route.send_proxy_protocol,
                timeout,
            )
            .await?
        }
    };
    Ok(ManifestEntry::from_cert(route.name(), &leaf)?)
}

/// The SNI a probe sends for a route (see the module documentation).
pub fn probe_sni(sni: &SniPattern) -> String {
    match sni {
        SniPattern::Exact(name) => name.clone(),
        SniPattern::Wildcard(pattern) => {
            let suffix = pattern.strip_prefix("*.").unwrap_or(pattern);
            format!("{PROBE_LABEL}.{suffix}")
        }
        SniPattern::CatchAll => CATCH_ALL_PROBE_SNI.to_string(),
    }
}

/// Connects to `backend` (`host:port`), sends a PROXY v2 header first if the route
/// expects one (with verigated's own addresses: the probe is verigated's connection),
/// completes a TLS handshake with `sni`, and returns the leaf certificate presented.
pub async fn probe_certificate(
    backend: &str,
    sni: &str,
    send_proxy_protocol: bool,
    timeout: Duration,
) -> Result<CertificateDer<'static>, ProbeError> {
    let server_name = ServerName::try_from(sni.to_string()).map_err(|_| ProbeError::BadSni {
        sni: sni.to_string(),
    })?;
    let handshake = async {
        let mut tcp = TcpStream::connect(backend)
            .await
            .map_err(|source| ProbeError::Connect {
                backend: backend.to_string(),
                source,
            })?;
        if send_proxy_protocol {
            let connect_err = |source| ProbeError::Connect {
                backend: backend.to_string(),
                source,
            };
            let header = proxy_protocol::encode_v2(
                tcp.local_addr().map_err(connect_err)?,
                tcp.peer_addr().map_err(connect_err)?,
                Some(sni),
            );
            tcp.write_all(&header).await.map_err(connect_err)?;
        }
        let connector = tokio_rustls::TlsConnector::from(probe_client_config());
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|source| ProbeError::Handshake {
                backend: backend.to_string(),
                sni: sni.to_string(),
                source,
            })?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.clone().into_owned())
            .ok_or_else(|| ProbeError::NoCertificate {
                backend: backend.to_string(),
            })?;
        // A polite close; the backend's answer does not matter.
        let _ = tls.shutdown().await;
        Ok(leaf)
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ProbeError::Timeout {
            backend: backend.to_string(),
            timeout,
        })?
}

/// The probe's TLS client: any chain, but handshake signatures checked (ring provider).
fn probe_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                // ring supports every default version; an error here is a build defect.
                .expect("the ring provider supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SignatureOnlyVerifier::new(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Keeps `store` current until `shutdown`: builds it at once, then again each time the
/// active configuration is replaced (a reload: new routes or certificates are in the
/// manifest at once, not at the next period) and every `attestation.manifest_refresh` of
/// the active configuration (re-read each time, so a reload changes the period).
pub async fn keep_current(
    store: Arc<ManifestStore>,
    mut active: ActiveView,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reloads = true;
    loop {
        let current = active.mark_seen();
        let timeout = current.config.gateway.backend_connect_timeout;
        let period = current.config.attestation.manifest_refresh;
        let state = store.refresh(&current, timeout).await;
        drop(current);
        tracing::debug!(
            generation = state.generation,
            entries = state.manifest.entries().len(),
            unreachable = state.unreachable.len(),
            "certificate manifest refreshed"
        );
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            // Once the configuration can no longer change, only the period remains.
            changed = active.changed(), if reloads => reloads = changed,
            () = crate::shutdown::stopping(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names() {
        assert_eq!(
            probe_sni(&SniPattern::Exact("a.example.com".into())),
            "a.example.com"
        );
        assert_eq!(
            probe_sni(&SniPattern::Wildcard("*.apps.example.com".into())),
            "verigate-probe.apps.example.com"
        );
        assert_eq!(probe_sni(&SniPattern::CatchAll), CATCH_ALL_PROBE_SNI);
        for p in ["*.apps.example.com", "*"] {
            let sni = probe_sni(&SniPattern::parse(p).unwrap());
            assert!(ServerName::try_from(sni.clone()).is_ok(), "{sni}");
        }
    }

    #[test]
    fn set_own_replaces_the_own_entry_alone() {
        let der = |name: &str| {
            let (pem, _) = crate::certificate::generate(name, "h").unwrap();
            let leaf = rustls_pemfile::certs(&mut pem.as_bytes())
                .next()
                .unwrap()
                .unwrap();
            leaf
        };
        let (old, route, new) = (
            der("vm.example.com"),
            der("app.example.com"),
            der("vm.example.com"),
        );
        let manifest = Manifest::new(vec![
            ManifestEntry::from_cert("vm.example.com", &old).unwrap(),
            ManifestEntry::from_cert("app.example.com", &route).unwrap(),
        ])
        .unwrap();
        let store = ManifestStore {
            current: RwLock::new(Arc::new(ManifestState {
                domain: "vm.example.com".into(),
                manifest,
                unreachable: Vec::new(),
                refreshed_at: SystemTime::now(),
                generation: 3,
            })),
            built: watch::channel(3).0,
        };
        store.set_own(&new);
        let now = store.current();
        assert_eq!(
            now.manifest.get("vm.example.com"),
            Some(&ManifestEntry::from_cert("vm.example.com", &new).unwrap())
        );
        assert_eq!(
            now.manifest.get("app.example.com"),
            Some(&ManifestEntry::from_cert("app.example.com", &route).unwrap())
        );
        assert_eq!((now.manifest.entries().len(), now.generation), (2, 3));
        // Not a certificate: nothing changes.
        store.set_own(&CertificateDer::from(b"garbage".to_vec()));
        assert_eq!(store.current().manifest, now.manifest);
    }

    #[tokio::test]
    async fn unreachable_backend_is_named() {
        // A port that was free a moment ago: connection refused.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = probe_certificate(
            &addr.to_string(),
            "a.example.com",
            false,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ProbeError::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }

    #[tokio::test]
    async fn silent_backend_times_out_and_non_tls_fails_handshake() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let e = probe_certificate(&addr, "a.example.com", false, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeError::Timeout { .. }), "{e}");

        // A plain-text server that answers the hello with garbage.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = plain.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = plain.accept().await {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let e = probe_certificate(&addr, "a.example.com", false, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(e, ProbeError::Handshake { .. }), "{e}");
        drop(silent);
    }
}
