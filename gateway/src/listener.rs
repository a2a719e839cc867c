//! Accepting connections and deciding, from their first bytes, where each one goes.
//!
//! Per connection: take a slot under `max_connections` (or close at once); read the
//! PROXY header when the gateway sits behind a load balancer (and refuse connections
//! without one); peek the ClientHello ([`passthrough::peek`], bounded in bytes there and
//! here in time: `client_hello_timeout`, for the PROXY header and the hello together); then
//! route on its SNI: the own endpoint, a backend (optionally behind a fresh PROXY v2
//! header, then the peeked bytes, then both ways until both sides close), or a TLS
//! `unrecognized_name` alert. Each connection ends with one log line.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use passthrough::client_hello::ClientHello;
use passthrough::forward::{self, Opening, ProxyV2, RelayOptions, RelayOutcome, TrafficCounters};
use passthrough::peek::{read_preamble_into, PeekError, Preamble};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::active::{Active, ActiveView};
use crate::endpoint;
use crate::logging::ConnectionLog;
use crate::metrics::{Metrics, OWN_ROUTE_LABEL};
use crate::routes::{Destination, Route};
use crate::slots::{ConnectionSlot, ConnectionSlots};
use crate::tls::PrefixedStream;

/// The fatal `unrecognized_name` alert (RFC 6066 §3) as a plaintext TLS record: content
/// type 21 (alert), version TLS 1.2, length 2, level 2 (fatal), description 112.
pub const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// After the alert, how long the gateway keeps reading what the client still sends, so
/// that closing with unread bytes does not reset the connection before the client read
/// the alert.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// After an accept error (out of descriptors, typically), wait before accepting again
/// instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the accept loops use: the active configuration, the connection slots, the
/// counters, the own endpoint (for connections to `gateway.domain`) and the shutdown
/// signal. Each connection task receives only the parts it needs.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The active configuration, routes and own certificate, read per connection.
    pub active: ActiveView,
    /// The `max_connections` slots; a connection without one is closed at once.
    pub slots: Arc<ConnectionSlots>,
    /// The gateway's counters.
    pub metrics: Arc<Metrics>,
    /// What the own endpoint serves.
    pub own: Arc<endpoint::Services>,
    /// Turns true when verigated stops: the loops stop accepting.
    pub shutdown: watch::Receiver<bool>,
}

/// Accepts on `listener` until shutdown begins, one task per connection.
pub async fn accept_loop(ctx: Listening, listener: TcpListener) {
    let mut shutdown = ctx.shutdown.clone();
    let local = listener.local_addr().ok();
    tracing::info!(listen = ?local, "listening");
    loop {
        let accepted = tokio::select! {
            biased;
            () = crate::shutdown::stopping(&mut shutdown) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                ctx.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                let active = ctx.active.current();
                match ctx.slots.try_open(active.config.gateway.max_connections) {
                    Some(slot) => {
                        let connection = Connection {
                            metrics: ctx.metrics.clone(),
                            own: ctx.own.clone(),
                            active,
                            slot,
                        };
                        tokio::spawn(handle(connection, stream, peer));
                    }
                    None => {
                        ctx.metrics
                            .refused_max_connections
                            .fetch_add(1, Ordering::Relaxed);
                        let log = ConnectionLog::new(peer, stream.local_addr().ok());
                        // Closing at once is the refusal: no byte read, no byte written.
                        drop(stream);
                        log.finish(
                            "refused_max_connections",
                            Some(format!(
                                "{} connections open",
                                active.config.gateway.max_connections
                            )),
                            0,
                            0,
                        );
                    }
                }
            }
            Err(e) => {
                tracing::warn!(listen = ?local, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    tracing::info!(listen = ?local, "stopped listening");
}

/// What one connection starts with, before its destination is known.
struct Connection {
    metrics: Arc<Metrics>,
    /// Kept only by connections to the own endpoint; a passthrough connection lets go
    /// of it once routed.
    own: Arc<endpoint::Services>,
    /// The configuration of the moment of accept, kept to the connection's end.
    active: Arc<Active>,
    /// Freed when the connection ends.
    slot: ConnectionSlot,
}

/// Serves one accepted connection to its end.
async fn handle(connection: Connection, mut stream: TcpStream, peer: SocketAddr) {
    let Connection {
        metrics,
        own,
        active,
        slot: _slot,
    } = connection;
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let mut log = ConnectionLog::new(peer, local);
    let g = &active.config.gateway;

    let mut early_proxy = None;
    let peeked = tokio::time::timeout(
        g.client_hello_timeout,
        read_preamble_into(&mut stream, g.accept_proxy_protocol, &mut early_proxy),
    )
    .await;
    // When the hello fails after a good PROXY header, the log still names the client.
    if let Some(source) = early_proxy.as_ref().and_then(|p| p.source) {
        log.client = source;
    }
    let Preamble { proxy, hello, buf } = match peeked {
        Ok(Ok(preamble)) => preamble,
        Ok(Err(e)) => {
            let counter = match &e {
                PeekError::Proxy(_) => Some(&metrics.refused_proxy_header),
                PeekError::ClientHello(_) | PeekError::TooLarge { .. } => {
                    Some(&metrics.client_hello_errors)
                }
                PeekError::ClosedEarly { .. } | PeekError::Io(_) => None,
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            log.finish(e.outcome(), Some(e.to_string()), 0, 0);
            return;
        }
        Err(_) => {
            metrics
                .client_hello_timeouts
                .fetch_add(1, Ordering::Relaxed);
            log.finish(
                "client_hello_timeout",
                Some(format!(
                    "no whole ClientHello within {:?}",
                    g.client_hello_timeout
                )),
                0,
                0,
            );
            return;
        }
    };

    // Behind a load balancer, the client is the one its PROXY header names (a LOCAL
    // header, a health check, names none: then the peer is the client).
    let client = proxy.as_ref().and_then(|p| p.source).unwrap_or(peer);
    let dialed = proxy
        .as_ref()
        .and_then(|p| p.destination)
        .or(local)
        .unwrap_or(peer);
    log.client = client;
    log.sni = hello.sni.clone();

    match active.routes.lookup(hello.sni.as_deref(), &hello.alpn) {
        // Boxed: the TLS + HTTP state is large, and the task of every passthrough
        // connection would otherwise reserve room for it.
        Destination::Own => Box::pin(serve_own(own, &active, stream, buf, log)).await,
        Destination::Route(route) => {
            // A forwarded connection keeps its route, its slot and its counters, not the
            // services of the own endpoint.
            drop((own, metrics));
            passthrough(&active, &route, stream, client, dialed, &hello, buf, log).await;
        }
        Destination::Unrecognized => {
            metrics.unrecognized_name.fetch_add(1, Ordering::Relaxed);
            let written = refuse_unrecognized_name(stream).await;
            log.finish(
                "unrecognized_name",
                Some("no route for this SNI and no catch-all route".into()),
                buf.len() as u64,
                written,
            );
        }
    }
}

/// Sends the `unrecognized_name` alert and closes; returns the bytes written.
async fn refuse_unrecognized_name(mut stream: TcpStream) -> u64 {
    let written = match stream.write_all(&UNRECOGNIZED_NAME_ALERT).await {
        Ok(()) => UNRECOGNIZED_NAME_ALERT.len() as u64,
        Err(_) => 0,
    };
    let _ = stream.shutdown().await;
    // Read (and drop) what the client still sends until it closes, briefly.
    let _ = tokio::time::timeout(ALERT_LINGER, async {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    written
}

/// Terminates TLS locally and serves the API.
async fn serve_own(
    services: Arc<endpoint::Services>,
    active: &Active,
    stream: TcpStream,
    buf: Vec<u8>,
    mut log: ConnectionLog,
) {
    log.route = Some(OWN_ROUTE_LABEL.to_string());
    let metrics = services.metrics.own();
    let _open = metrics.open_guard();
    let counters = Arc::new(TrafficCounters::default());
    let stream = PrefixedStream::new(buf, stream, vec![counters.clone()]);
    let result = endpoint::serve(
        stream,
        active.acceptor.clone(),
        active.config.gateway.client_hello_timeout,
        active.config.gateway.idle_timeout,
        services,
    )
    .await;
    let read = counters.client_to_backend.load(Ordering::Relaxed);
    let written = counters.backend_to_client.load(Ordering::Relaxed);
    metrics
        .traffic
        .client_to_backend
        .fetch_add(read, Ordering::Relaxed);
    metrics
        .traffic
        .backend_to_client
        .fetch_add(written, Ordering::Relaxed);
    match result {
        Ok(()) => log.finish("closed", None, read, written),
        Err(e) => log.finish("own_endpoint_error", Some(e.to_string()), read, written),
    }
}

/// Connects the route's backend and relays both ways.
#[allow(clippy::too_many_arguments)]
async fn passthrough(
    active: &Active,
    route: &Route,
    stream: TcpStream,
    client: SocketAddr,
    dialed: SocketAddr,
    hello: &ClientHello,
    buf: Vec<u8>,
    mut log: ConnectionLog,
) {
    log.route = Some(route.name().to_string());
    let g = &active.config.gateway;
    let _open = route.metrics.open_guard();
    let backend = match forward::connect_backend(&route.backend, g.backend_connect_timeout).await {
        Ok(backend) => backend,
        Err(e) => {
            route
                .metrics
                .backend_connect_failures
                .fetch_add(1, Ordering::Relaxed);
            // Dropping the client socket closes it now: the client learns at once
            // instead of waiting on its handshake timeout.
            drop(stream);
            log.finish("backend_unreachable", Some(e.to_string()), 0, 0);
            return;
        }
    };
    log.backend = Some(route.backend.clone());
    let opening = Opening {
        proxy_v2: route.send_proxy_protocol.then(|| ProxyV2 {
            source: client,
            destination: dialed,
            authority: hello.sni.clone(),
        }),
        peeked: buf,
    };
    let opts = RelayOptions {
        idle_timeout: g.idle_timeout,
        use_splice: g.splice,
    };
    let transfer =
        forward::pass_through(stream, backend, opening, &opts, &route.metrics.traffic).await;
    let outcome = match &transfer.outcome {
        RelayOutcome::Closed => ("closed", None),
        RelayOutcome::IdleTimeout => ("idle_timeout", None),
        RelayOutcome::ClientError(e) => ("client_error", Some(e.to_string())),
        RelayOutcome::BackendError(e) => ("backend_error", Some(e.to_string())),
    };
    log.finish(
        outcome.0,
        outcome.1,
        transfer.client_to_backend,
        transfer.backend_to_client,
    );
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Each open connection holds one `handle` future for its whole life: its size is
    /// the gateway's own memory per idle connection (sockets and kernel buffers aside).
    #[tokio::test]
    async fn connection_task_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verigated.toml");
        std::fs::write(
            &path,
            format!(
                "[gateway]\nlisten=[\"127.0.0.1:1\"]\ndomain=\"vm.example.com\"\ndata_dir=\"{}\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        // Built from its parts, as the composition root does: the listener needs no more.
        let metrics = Arc::new(Metrics::default());
        let config = crate::config::Config::load(&path).unwrap();
        let active = crate::active::activate(config, &metrics).unwrap();
        let manifest = Arc::new(crate::manifest::ManifestStore::new(&active));
        let attester = crate::attestation::Attester::from_config(
            &active.config.attestation,
            dir.path(),
            manifest.clone(),
        )
        .unwrap();
        let active = crate::active::ActiveConfig::new(active);
        let (_stop, shutdown) = watch::channel(false);
        let own = Arc::new(endpoint::Services {
            active: active.view(),
            metrics: metrics.clone(),
            manifest,
            attester: Arc::new(attester),
            snapshots: Arc::new(crate::snapshot::SnapshotService::load(dir.path())),
            app: None,
            shutdown,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let connection = Connection {
            metrics,
            own,
            active: active.current(),
            slot: ConnectionSlots::new().try_open(10).unwrap(),
        };
        let future = handle(connection, stream, peer);
        let size = std::mem::size_of_val(&future);
        eprintln!("connection task: {size} bytes");
        assert!(size <= 4096, "the connection task grew to {size} bytes");
    }
}
