//! The services the own endpoint's API calls, handed to it by the composition root; the
//! endpoint sees these and nothing else of the gateway.

use std::sync::Arc;

use crate::active::ActiveView;
use crate::app::control::AppControl;
use crate::attestation::Attester;
use crate::manifest::ManifestStore;
use crate::metrics::Metrics;
use crate::snapshot::SnapshotService;

/// What the own endpoint's API uses, and nothing else: each handler takes the pieces it
/// needs from here.
#[derive(Debug)]
pub struct Services {
    /// The configuration of the moment a request arrives (app-control credentials and
    /// snapshot roots follow reloads).
    pub active: ActiveView,
    /// Rendered by `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// `GET /v1/manifest`.
    pub manifest: Arc<ManifestStore>,
    /// Builds the evidence of `GET /v1/attestation` and of a snapshot.
    pub attester: Arc<Attester>,
    /// The snapshot job and the last snapshot.
    pub snapshots: Arc<SnapshotService>,
    /// App control, built at start from `[app]`; `None` without `[app]`.
    pub app: Option<AppControl>,
    /// ACME for the own domain: pending TLS-ALPN-01 challenges and the renewal counters.
    pub acme: Arc<crate::acme::AcmeShared>,
    /// Turns true when verigated stops: connections finish, a snapshot job stops.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
