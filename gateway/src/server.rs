//! The running gateway: the active configuration (routes + own TLS certificate) that
//! each new connection reads, the reload that swaps it whole, and the shutdown that
//! stops accepting and drains.
//!
//! [`Active`] is immutable and shared by `Arc`: a connection takes the current one when
//! it starts and keeps it to its end, so a reload (SIGHUP) affects only connections that
//! start after it, and an invalid file changes nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::config::{Config, ConfigError};
use crate::endpoint::certificate::{self, CertificateError};
use crate::endpoint::tls::{self, TlsError};
use crate::metrics::Metrics;
use crate::routes::RouteTable;

/// What new connections use: one consistent snapshot of configuration, routes and the
/// own certificate.
pub struct Active {
    pub config: Arc<Config>,
    pub routes: RouteTable,
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
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("own certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `[attestation]` cannot be set up (TEE, TPM, IMA log).
    #[error(transparent)]
    Attestation(#[from] crate::attestation::AttesterError),
    /// `[app]` names a manager that cannot be set up.
    #[error("[app]: {0}")]
    App(#[from] crate::app::AppError),
    /// A listen address cannot be bound (in use, not an address of this machine, no
    /// permission for a port below 1024).
    #[error("gateway.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
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

/// The gateway process: active state, counters, open connections, shutdown signal.
pub struct Server {
    config_path: PathBuf,
    active: RwLock<Arc<Active>>,
    pub metrics: Arc<Metrics>,
    /// The certificate manifest, kept current by [`crate::manifest::keep_current`].
    pub manifest: Arc<crate::manifest::ManifestStore>,
    /// Builds the evidence of `GET /v1/attestation`.
    pub attester: Arc<crate::attestation::Attester>,
    /// The snapshot job and the last snapshot (kept in the start configuration's data_dir).
    pub snapshots: Arc<crate::snapshot::SnapshotService>,
    /// App control, built at start from `[app]`; kept across reloads (a standalone
    /// manager owns the application's process), `None` without `[app]`.
    pub app: Option<crate::endpoint::app::AppControl>,
    shutdown: watch::Sender<bool>,
    open: AtomicUsize,
    closed: Notify,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config_path", &self.config_path)
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads `config_path` and makes it active.
    pub fn load(config_path: &Path) -> Result<Arc<Server>, LoadError> {
        let metrics = Arc::new(Metrics::default());
        let config = Config::load(config_path)?;
        let active = activate(config, &metrics)?;
        let manifest = Arc::new(crate::manifest::ManifestStore::new(&active));
        let attester = Arc::new(crate::attestation::Attester::from_config(
            &active.config.attestation,
            &active.config.gateway.data_dir,
            manifest.clone(),
        )?);
        let snapshots = Arc::new(crate::snapshot::SnapshotService::load(
            &active.config.gateway.data_dir,
        ));
        let app = crate::endpoint::app::AppControl::from_config(&active.config)?;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Server {
            config_path: config_path.to_path_buf(),
            active: RwLock::new(Arc::new(active)),
            metrics,
            manifest,
            attester,
            snapshots,
            app,
            shutdown,
            open: AtomicUsize::new(0),
            closed: Notify::new(),
        }))
    }

    /// The state a new connection uses.
    pub fn current(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the config file again and, if it is valid and its certificate loads, makes
    /// it active for new connections. On error nothing changes.
    pub fn reload(&self) -> Result<Arc<Active>, LoadError> {
        let result = Config::load(&self.config_path)
            .map_err(LoadError::from)
            .and_then(|config| activate(config, &self.metrics));
        match result {
            Ok(active) => {
                let active = Arc::new(active);
                let old = {
                    let mut slot = self.active.write().unwrap_or_else(|p| p.into_inner());
                    std::mem::replace(&mut *slot, active.clone())
                };
                if old.config.gateway.listen != active.config.gateway.listen {
                    tracing::warn!(
                        old = ?old.config.gateway.listen,
                        new = ?active.config.gateway.listen,
                        "gateway.listen changed: listeners change only on restart; keeping the old ones"
                    );
                }
                crate::endpoint::app::warn_if_changed(self.app.as_ref(), &active.config);
                self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
                // New routes or certificates: rebuild the manifest now, not at the next period.
                self.manifest.request_refresh();
                Ok(active)
            }
            Err(e) => {
                self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Binds every `gateway.listen` address of the active configuration.
    pub async fn bind(&self) -> Result<Vec<TcpListener>, LoadError> {
        let mut listeners = Vec::new();
        for addr in self.current().config.gateway.listen.iter().copied() {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| LoadError::Bind { addr, source })?;
            listeners.push(listener);
        }
        Ok(listeners)
    }

    /// Serves on `listeners` until [`Server::begin_shutdown`]; returns once every
    /// listener is closed (new connections are then refused by the kernel).
    pub async fn run(self: &Arc<Self>, listeners: Vec<TcpListener>) {
        let manifest = tokio::spawn(crate::manifest::keep_current(self.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for listener in listeners {
            tasks.spawn(crate::listener::accept_loop(self.clone(), listener));
        }
        while tasks.join_next().await.is_some() {}
        manifest.abort();
    }

    /// Stops the accept loops and asks own-endpoint connections to finish.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that turns true when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Waits until no connection is open, at most `grace`; returns how many were still
    /// open at the end.
    pub async fn drain(&self, grace: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.closed.notified();
                if self.open.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.open.load(Ordering::Acquire)
    }

    /// Takes a connection slot if fewer than `max` are open.
    pub fn try_open(self: &Arc<Self>, max: usize) -> Option<ConnectionSlot> {
        let mut current = self.open.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match self.open.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(ConnectionSlot(self.clone())),
                Err(now) => current = now,
            }
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One open connection, counted against `max_connections` until dropped.
pub struct ConnectionSlot(Arc<Server>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.closed.notify_waiters();
    }
}
