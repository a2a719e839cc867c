//! The active configuration: one immutable snapshot of configuration, routes and the own
//! TLS certificate, and the handle that swaps it whole on reload.
//!
//! [`Active`] is shared by `Arc`: a connection takes the current one when it starts and
//! keeps it to its end, so a reload (SIGHUP) affects only connections that start after
//! it, and an invalid file changes nothing. The handle is a `watch` channel, so that a
//! task that follows the configuration (the manifest refresher) learns of a reload by
//! subscribing instead of being poked.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use crate::certificate::{self, CertificateError};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::routes::RouteTable;
use crate::tls::{self, TlsError};

/// What new connections use: one consistent snapshot of configuration, routes and the
/// own certificate.
pub struct Active {
    /// The configuration this state was built from.
    pub config: Arc<Config>,
    /// The SNI routes of `config`, which the listener looks each ClientHello up in.
    pub routes: RouteTable,
    /// Terminates TLS for the own endpoint with the own certificate.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The own endpoint's leaf certificate (the manifest binds its hash).
    pub own_certificate: CertificateDer<'static>,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("config", &self.config.path)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// Why a configuration cannot become active (at start or on reload).
#[derive(thiserror::Error, Debug)]
pub enum LoadError {
    /// The configuration file cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The own certificate cannot be loaded, or generated when absent.
    #[error("own certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// The own certificate and key do not make a TLS server configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Builds the active state of `config`: routes, and the own certificate (generated when
/// absent) with its TLS configuration.
pub fn activate(config: Config, metrics: &Metrics) -> Result<Active, LoadError> {
    let g = &config.gateway;
    let own = certificate::load_or_generate(&g.ssl_certificate, &g.ssl_private_key, &g.domain)?;
    if own.generated {
        tracing::info!(
            certificate = %g.ssl_certificate.display(),
            key = %g.ssl_private_key.display(),
            domain = %g.domain,
            "generated a self-signed certificate for the own endpoint"
        );
    }
    let server_config =
        tls::server_config_with_client_ca(&own, config.control.client_ca.as_deref())?;
    let own_certificate =
        own.chain
            .first()
            .cloned()
            .ok_or_else(|| CertificateError::NoCertificate {
                path: g.ssl_certificate.clone(),
            })?;
    let routes = RouteTable::new(&g.domain, &config.routes, metrics);
    Ok(Active {
        config: Arc::new(config),
        routes,
        acceptor: tokio_rustls::TlsAcceptor::from(server_config),
        own_certificate,
    })
}

/// The one place that swaps the active configuration; held by the composition root.
#[derive(Debug)]
pub struct ActiveConfig {
    current: watch::Sender<Arc<Active>>,
}

impl ActiveConfig {
    /// Makes `active` the first active configuration.
    pub fn new(active: Active) -> ActiveConfig {
        let (current, _) = watch::channel(Arc::new(active));
        ActiveConfig { current }
    }

    /// The state a new connection uses.
    pub fn current(&self) -> Arc<Active> {
        self.current.borrow().clone()
    }

    /// Makes `active` current for everything that starts from now on; returns the
    /// previous one.
    pub fn replace(&self, active: Arc<Active>) -> Arc<Active> {
        self.current.send_replace(active)
    }

    /// Builds the current configuration again, its own certificate read anew from its
    /// files (an ACME renewal wrote them), and makes it current: new handshakes get the
    /// new certificate, open connections keep the state they started with, and the
    /// manifest refresher rebuilds at once. On error nothing changes.
    pub fn reload_certificate(&self, metrics: &Metrics) -> Result<Arc<Active>, LoadError> {
        let config = Config::clone(&self.current().config);
        let active = Arc::new(activate(config, metrics)?);
        self.replace(active.clone());
        Ok(active)
    }

    /// A read-only view that follows every replacement.
    pub fn view(&self) -> ActiveView {
        ActiveView {
            current: self.current.subscribe(),
        }
    }
}

/// A read-only handle on the active configuration, for the parts that read the current
/// one at the moment they act (accept, an API request, a manifest rebuild).
#[derive(Debug, Clone)]
pub struct ActiveView {
    current: watch::Receiver<Arc<Active>>,
}

impl ActiveView {
    /// The state a new connection (or request) uses.
    pub fn current(&self) -> Arc<Active> {
        self.current.borrow().clone()
    }

    /// Waits until the configuration is replaced (a reload) after the last call; returns
    /// `false` once nothing can replace it any more (the gateway is stopping).
    pub async fn changed(&mut self) -> bool {
        self.current.changed().await.is_ok()
    }

    /// Marks the current configuration as seen, so that [`ActiveView::changed`] waits for
    /// the next replacement.
    pub fn mark_seen(&mut self) -> Arc<Active> {
        self.current.borrow_and_update().clone()
    }
}
