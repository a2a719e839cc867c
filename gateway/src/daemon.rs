//! The composition root of verigated: loads the configuration, builds the services
//! (metrics, certificate manifest, attester, snapshots, app control), starts and
//! supervises the tasks (the data-plane threads with their accept loops, the manifest
//! refresher, the certificate renewals), reloads on SIGHUP and stops accepting and
//! drains on SIGTERM ([`run`]).
//!
//! [`Gateway`] is held by [`run`] alone: the tasks it starts receive only the parts they
//! use (the listener its [`Listening`], the own endpoint its [`Services`], the manifest
//! refresher its store and a view of the active configuration).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::active::{activate, Active, ActiveConfig, LoadError};
use crate::app::control::{self, AppControl};
use crate::attestation::{Attester, AttesterError};
use crate::config::Config;
use crate::data_plane::{self, DataPlane};
use crate::endpoint::Services;
use crate::listener::Listening;
use crate::manifest::{self, ManifestStore};
use crate::metrics::Metrics;
use crate::slots::ConnectionSlots;
use crate::snapshot::SnapshotService;

/// Why verigated cannot start.
#[derive(thiserror::Error, Debug)]
pub enum StartError {
    /// The configuration, the own certificate or its TLS setup.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `[attestation]` cannot be set up (TEE, TPM, IMA log).
    #[error(transparent)]
    Attestation(#[from] AttesterError),
    /// `[app]` names a manager that cannot be set up.
    #[error("[app]: {0}")]
    App(#[from] crate::app::AppError),
    /// A listen address cannot be bound (in use, not an address of this machine, no
    /// permission for a port below 1024).
    #[error("gateway.listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `gateway.listen`.
        addr: SocketAddr,
        /// Why the bind failed.
        source: std::io::Error,
    },
    /// `[storage]` is set but the data dir is not the container, mounted: verigated
    /// would write its certificate and state to the bare disk.
    #[error(
        "[storage] is set but gateway.data_dir {data_dir} is not the mounted encrypted \
         volume (/dev/mapper/{mapper}): run `verigated storage open` first \
         (verigate-storage.service does it at boot)"
    )]
    StorageNotMounted {
        /// The data dir.
        data_dir: PathBuf,
        /// The device-mapper name expected as its source.
        mapper: &'static str,
    },
    /// A data-plane thread or its runtime cannot be started.
    #[error(transparent)]
    DataPlane(#[from] data_plane::StartError),
    /// The signal handlers cannot be installed.
    #[error(transparent)]
    Signal(#[from] std::io::Error),
}

/// The gateway process: what it was started from, the services, and the handles that
/// reload, stop and drain it.
pub struct Gateway {
    config_path: PathBuf,
    active: Arc<ActiveConfig>,
    metrics: Arc<Metrics>,
    services: Arc<Services>,
    /// The passthrough budget (and connections still being peeked).
    slots: Arc<ConnectionSlots>,
    /// The own endpoint's budget.
    own_slots: Arc<ConnectionSlots>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config_path", &self.config_path)
            .field("open", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads `config_path`, makes it active and builds the services. A standalone app
    /// manager starts the application here, so this runs inside the tokio runtime.
    pub fn load(config_path: &Path) -> Result<Gateway, StartError> {
        let metrics = Arc::new(Metrics::default());
        let config = Config::load(config_path).map_err(LoadError::from)?;
        if config.storage.is_some()
            && !crate::storage::tmpfs::is_mounted_from(
                &config.gateway.data_dir,
                crate::storage::MAPPER_NAME,
            )
        {
            return Err(StartError::StorageNotMounted {
                data_dir: config.gateway.data_dir.clone(),
                mapper: crate::storage::MAPPER_NAME,
            });
        }
        let active = activate(config, &metrics)?;
        let manifest = Arc::new(ManifestStore::new(&active));
        let attester = Arc::new(Attester::from_config(
            &active.config.attestation,
            &active.config.gateway.data_dir,
            manifest.clone(),
        )?);
        let snapshots = Arc::new(SnapshotService::load(&active.config.gateway.data_dir));
        let app = AppControl::from_config(&active.config)?;
        let active = Arc::new(ActiveConfig::new(active));
        let acme = Arc::new(crate::acme::AcmeShared::new().map_err(|e| LoadError::Tls(e.into()))?);
        let (shutdown, _) = watch::channel(false);
        let services = Arc::new(Services {
            active: active.view(),
            metrics: metrics.clone(),
            manifest,
            attester,
            snapshots,
            app,
            acme,
            shutdown: shutdown.subscribe(),
        });
        Ok(Gateway {
            config_path: config_path.to_path_buf(),
            active,
            metrics,
            services,
            slots: ConnectionSlots::new(),
            own_slots: ConnectionSlots::new(),
            shutdown,
        })
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<Active> {
        self.active.current()
    }

    /// Binds every `gateway.listen` address of the active configuration, once per
    /// data-plane thread ([`data_plane::bind`]).
    pub async fn bind(&self) -> Result<data_plane::Sockets, StartError> {
        let active = self.current();
        let threads = data_plane::thread_count(active.config.gateway.threads);
        data_plane::bind(&active.config.gateway.listen, threads)
            .await
            .map_err(|(addr, source)| StartError::Bind { addr, source })
    }

    /// What the accept loops receive. Called on the control runtime, which serves the
    /// own endpoint's connections.
    pub fn listening(&self) -> Listening {
        Listening {
            active: self.active.view(),
            slots: self.slots.clone(),
            own_slots: self.own_slots.clone(),
            metrics: self.metrics.clone(),
            own: self.services.clone(),
            shutdown: self.shutdown.subscribe(),
            control: tokio::runtime::Handle::current(),
        }
    }

    /// Starts the manifest refresher, the certificate renewals and the data-plane
    /// threads, which accept on `sockets` until [`Gateway::begin_shutdown`]: new
    /// connections are then refused by the kernel.
    pub fn serve(&self, sockets: data_plane::Sockets) -> Result<Serving, StartError> {
        let refresher = tokio::spawn(manifest::keep_current(
            self.services.manifest.clone(),
            self.active.view(),
            self.shutdown.subscribe(),
        ));
        let renewals = tokio::spawn(crate::acme::keep_issued(
            self.services.acme.clone(),
            self.active.clone(),
            self.services.manifest.clone(),
            self.metrics.clone(),
            self.shutdown.subscribe(),
        ));
        let data_plane = data_plane::start(&self.listening(), sockets)?;
        Ok(Serving {
            data_plane,
            refresher,
            renewals,
        })
    }

    /// Reads the config file again and, if it is valid and its certificate loads, makes
    /// it active for new connections (and the manifest refresher rebuilds at once). On
    /// error nothing changes.
    pub fn reload(&self) -> Result<Arc<Active>, LoadError> {
        let result = Config::load(&self.config_path)
            .map_err(LoadError::from)
            .and_then(|config| activate(config, &self.metrics));
        match result {
            Ok(active) => {
                let active = Arc::new(active);
                let old = self.active.replace(active.clone());
                if old.config.gateway.listen != active.config.gateway.listen {
                    tracing::warn!(
                        old = ?old.config.gateway.listen,
                        new = ?active.config.gateway.listen,
                        "gateway.listen changed: listeners change only on restart; keeping the old ones"
                    );
                }
                control::warn_if_changed(self.services.app.as_ref(), &active.config);
                self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(active)
            }
            Err(e) => {
                self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Stops the accept loops and asks own-endpoint connections to finish.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until no connection is open, at most `grace`; returns how many were still
    /// open at the end. Own-endpoint connections drop themselves when `grace` runs out
    /// (`endpoint::serve`), so they get [`OWN_DROP_MARGIN`] more to do it and log why.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        let passthrough = self.slots.drain(grace).await;
        let own = self
            .own_slots
            .drain(
                deadline.saturating_duration_since(tokio::time::Instant::now()) + OWN_DROP_MARGIN,
            )
            .await;
        passthrough + own
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.slots.open() + self.own_slots.open()
    }
}

/// What [`Gateway::serve`] started. Dropping it ends the data-plane threads, and with
/// them every relay still open: hold it until the drain is over.
#[derive(Debug)]
pub struct Serving {
    data_plane: DataPlane,
    refresher: tokio::task::JoinHandle<()>,
    renewals: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Waits until every data-plane thread stopped accepting (once shutdown began), then
    /// stops the refresher and the renewals.
    pub async fn stopped_accepting(&mut self) {
        self.data_plane.stopped_accepting().await;
        self.refresher.abort();
        self.renewals.abort();
    }
}

/// How long past the drain's grace verigated waits for own-endpoint connections that
/// drop themselves at that grace, so each ends with its log line rather than with the
/// process.
const OWN_DROP_MARGIN: Duration = Duration::from_secs(1);

/// Runs verigated from `config_path` until SIGTERM or SIGINT: starts, reloads on SIGHUP
/// (an invalid file is refused and the old one stays), then stops accepting and drains
/// open connections for up to `gateway.drain_grace_period`; a second SIGTERM or SIGINT
/// ends the drain at once.
pub async fn run(config_path: &Path) -> Result<(), StartError> {
    // Handlers first: a SIGHUP that arrives once the port accepts must reload, not kill
    // (its default action).
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let gateway = Gateway::load(config_path)?;
    let sockets = gateway.bind().await?;
    {
        let active = gateway.current();
        tracing::info!(
            config = %config_path.display(),
            domain = %active.routes.domain(),
            routes = active.routes.routes().len(),
            "verigated started"
        );
    }

    let mut serving = gateway.serve(sockets)?;
    loop {
        tokio::select! {
            _ = hangup.recv() => match gateway.reload() {
                Ok(active) => tracing::info!(
                    config = %config_path.display(),
                    routes = active.routes.routes().len(),
                    "configuration reloaded; new connections use it"
                ),
                Err(e) => tracing::error!(
                    config = %config_path.display(),
                    "reload refused, the previous configuration stays: {e}"
                ),
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    let grace = gateway.current().config.gateway.drain_grace_period;
    tracing::info!(
        open = gateway.open_connections(),
        grace = ?grace,
        "stopping: no new connections, draining open ones"
    );
    gateway.begin_shutdown();
    serving.stopped_accepting().await;
    // A second SIGTERM/SIGINT cuts the drain short (an operator who means it).
    let left = tokio::select! {
        left = gateway.drain(grace) => left,
        _ = terminate.recv() => gateway.open_connections(),
        _ = interrupt.recv() => gateway.open_connections(),
    };
    if left > 0 {
        tracing::warn!(
            open = left,
            "grace period over: closing the remaining connections"
        );
    } else {
        tracing::info!("drained: every connection finished");
    }
    drop(serving);
    Ok(())
}
