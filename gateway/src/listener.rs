//! Accepting connections and deciding, from their first bytes, where each one goes.
//!
//! Per connection: take a slot of the passthrough budget (`gateway.max_connections`, and
//! `gateway.max_connections_per_source` for the peer, or for the client its PROXY header
//! names), or close at once; read the PROXY header when the peer is a load balancer listed
//! in `gateway.accept_proxy_protocol_from` (and refuse it without one; refuse a header
//! from any other peer); peek the ClientHello ([`passthrough::peek`], bounded in bytes
//! there and here in time: `client_hello_timeout`, for the PROXY header and the hello
//! together); then route on its SNI: the own endpoint (which moves the connection to the
//! own endpoint's budget, `api.max_connections` and `api.max_connections_per_source`), a
//! backend (optionally behind a fresh PROXY v2 header, then the peeked bytes, then both
//! ways until both sides close), or a TLS `unrecognized_name` alert. Each connection
//! ends with one log line.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::metrics::{Metrics, OpenGuard, OWN_ROUTE_LABEL};
use crate::routes::{Destination, Route};
use crate::slots::{ConnectionSlot, ConnectionSlots, Refusal};
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
    /// The passthrough budget (`gateway.max_connections`); a connection without a slot
    /// is closed at once.
    pub slots: Arc<ConnectionSlots>,
    /// The own endpoint's budget (`api.max_connections`).
    pub own_slots: Arc<ConnectionSlots>,
    /// The gateway's counters.
    pub metrics: Arc<Metrics>,
    /// What the own endpoint serves.
    pub own: Arc<endpoint::Services>,
    /// Turns true when verigated stops: the loops stop accepting.
    pub shutdown: watch::Receiver<bool>,
    /// The control plane's runtime, where connections to the own endpoint are served:
    /// the accept loops run on the data-plane threads ([`crate::data_plane`]), which
    /// only relay.
    pub control: tokio::runtime::Handle,
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
                let g = &active.config.gateway;
                // A load balancer's share is counted once its PROXY header names the
                // client; anyone else is the client.
                let slot = if g.limits.trusts_proxy_from(peer.ip()) {
                    ctx.slots.try_open(g.max_connections).ok_or(Refusal::Full)
                } else {
                    ctx.slots.try_open_from(
                        peer.ip(),
                        g.max_connections,
                        g.limits.max_connections_per_source,
                    )
                };
                match slot {
                    Ok(slot) => {
                        let connection = Connection {
                            listen: local,
                            metrics: ctx.metrics.clone(),
                            own: ctx.own.clone(),
                            own_slots: ctx.own_slots.clone(),
                            control: ctx.control.clone(),
                            active,
                            slot,
                        };
                        tokio::spawn(handle(connection, stream, peer));
                    }
                    Err(refusal) => {
                        let log = ConnectionLog::new(peer, stream.local_addr().ok());
                        // Closing at once is the refusal: no byte read, no byte written.
                        drop(stream);
                        refuse(&ctx.metrics, refusal, Budget::Passthrough, &active, log, 0);
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
    /// The listener's address: the connection's own address too, unless the listener
    /// is bound to the unspecified address.
    listen: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    /// Kept only by connections to the own endpoint; a passthrough connection lets go
    /// of it once routed.
    own: Arc<endpoint::Services>,
    /// The own endpoint's budget, which a connection routed there moves to.
    own_slots: Arc<ConnectionSlots>,
    /// Where a connection routed to the own endpoint is served.
    control: tokio::runtime::Handle,
    /// The configuration of the moment of accept, kept to the connection's end.
    active: Arc<Active>,
    /// In the passthrough budget; freed when the connection ends or moves to the own
    /// endpoint's budget.
    slot: ConnectionSlot,
}

/// Which budget refused a connection.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Passthrough,
    Own,
}

/// Counts and logs a connection refused for want of a slot; the caller closes it.
fn refuse(
    metrics: &Metrics,
    refusal: Refusal,
    budget: Budget,
    active: &Active,
    log: ConnectionLog,
    read: u64,
) {
    let g = &active.config.gateway;
    let e = &active.config.endpoint;
    let (counter, outcome, detail): (&AtomicU64, _, _) = match (budget, refusal) {
        (Budget::Passthrough, Refusal::Full) => (
            &metrics.refused_max_connections,
            "refused_max_connections",
            format!("{} connections open (gateway.max_connections)", g.max_connections),
        ),
        (Budget::Passthrough, Refusal::SourceFull) => (
            &metrics.refused_per_source,
            "refused_max_connections_per_source",
            format!(
                "{} connections open from this source (gateway.max_connections_per_source)",
                g.limits.max_connections_per_source
            ),
        ),
        (Budget::Own, Refusal::Full) => (
            &metrics.refused_api_max_connections,
            "refused_api_max_connections",
            format!("{} own-endpoint connections open (api.max_connections)", e.max_connections),
        ),
        (Budget::Own, Refusal::SourceFull) => (
            &metrics.refused_api_per_source,
            "refused_api_max_connections_per_source",
            format!(
                "{} own-endpoint connections open from this source (api.max_connections_per_source)",
                e.max_connections_per_source
            ),
        ),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    log.finish(outcome, Some(detail), read, 0);
}

/// Serves one accepted connection to its end.
async fn handle(connection: Connection, mut stream: TcpStream, peer: SocketAddr) {
    let Connection {
        listen,
        metrics,
        own,
        own_slots,
        control,
        active,
        mut slot,
    } = connection;
    let _ = stream.set_nodelay(true);
    // A listener on one address saves a getsockname(2) per connection.
    let local = match listen {
        Some(addr) if !addr.ip().is_unspecified() => Some(addr),
        _ => stream.local_addr().ok(),
    };
    let mut log = ConnectionLog::new(peer, local);
    let g = &active.config.gateway;

    let mut early_proxy = None;
    let expect_proxy = g.limits.trusts_proxy_from(peer.ip());
    // Boxed, and freed once the hello is read: the reassembler and the timer would
    // otherwise stay reserved in the task of every connection for its whole life
    // (bench/discussion.md, "memory per idle connection").
    let peeked = Box::pin(tokio::time::timeout(
        g.client_hello_timeout,
        read_preamble_into(&mut stream, expect_proxy, &mut early_proxy),
    ))
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
                PeekError::UntrustedProxy => Some(&metrics.refused_untrusted_proxy_header),
                PeekError::ClientHello(_) | PeekError::TooLarge { .. } => {
                    Some(&metrics.client_hello_errors)
                }
                PeekError::ClosedEarly { .. } | PeekError::Io(_) => None,
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            if matches!(e, PeekError::UntrustedProxy) {
                // Someone tried to claim another client address: worth a warning of its
                // own, besides the connection line.
                tracing::warn!(peer = %peer, "PROXY header from a peer not in gateway.accept_proxy_protocol_from refused");
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
    if expect_proxy {
        if let Err(refusal) = slot.attribute(client.ip(), g.limits.max_connections_per_source) {
            refuse(
                &metrics,
                refusal,
                Budget::Passthrough,
                &active,
                log,
                buf.len() as u64,
            );
            return;
        }
    }

    match active.routes.lookup(hello.sni.as_deref(), &hello.alpn) {
        Destination::Own => {
            let e = &active.config.endpoint;
            let own_slot = match own_slots.try_open_from(
                client.ip(),
                e.max_connections,
                e.max_connections_per_source,
            ) {
                Ok(own_slot) => own_slot,
                Err(refusal) => {
                    drop(stream);
                    refuse(
                        &metrics,
                        refusal,
                        Budget::Own,
                        &active,
                        log,
                        buf.len() as u64,
                    );
                    return;
                }
            };
            // Counted in the own endpoint's budget from here on, so that clients of the
            // API cannot take the passthrough routes' connections, nor the reverse.
            drop((slot, own_slots, metrics));
            // The API's services (TPM, TEE, app control) run on the control runtime: the
            // connection moves there, so no request holds up this thread's relays.
            let stream = match stream.into_std() {
                Ok(stream) => stream,
                Err(e) => {
                    log.finish(
                        "own_endpoint_error",
                        Some(format!("cannot hand the connection over: {e}")),
                        buf.len() as u64,
                        0,
                    );
                    return;
                }
            };
            control.spawn(serve_own_moved(
                own, own_slot, active, stream, hello.alpn, buf, log,
            ));
        }
        Destination::Route(route) => {
            // A forwarded connection keeps its route, its slot and its counters, not the
            // services of the own endpoint.
            drop((own, own_slots, metrics));
            passthrough(
                &active, &route, slot, stream, client, dialed, &hello, buf, log,
            )
            .await;
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

/// The rest of an own-endpoint connection, on the control runtime: the TLS-ALPN-01
/// answer when the CA validating `gateway.domain` asks for it (RFC 8737: the handshake
/// is the answer), the API otherwise.
async fn serve_own_moved(
    own: Arc<endpoint::Services>,
    own_slot: ConnectionSlot,
    active: Arc<Active>,
    stream: std::net::TcpStream,
    alpn: Vec<Vec<u8>>,
    buf: Vec<u8>,
    log: ConnectionLog,
) {
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(e) => {
            log.finish(
                "own_endpoint_error",
                Some(format!("cannot take the connection over: {e}")),
                buf.len() as u64,
                0,
            );
            return;
        }
    };
    if crate::acme::challenge::asks_for_challenge(&alpn)
        && log
            .sni
            .as_deref()
            .is_some_and(|sni| sni.eq_ignore_ascii_case(active.routes.domain()))
    {
        let acme = own.acme.clone();
        drop(own);
        answer_challenge(acme, own_slot, &active, stream, buf, log).await;
        return;
    }
    // Boxed: the TLS + HTTP state is large.
    Box::pin(serve_own(own, own_slot, &active, stream, buf, log)).await;
}

/// Terminates TLS locally and serves the API, holding `_slot` of the own endpoint's
/// budget to the end.
async fn serve_own(
    services: Arc<endpoint::Services>,
    _slot: ConnectionSlot,
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
        active.config.endpoint,
        active.config.gateway.drain_grace_period,
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
        Ok(endpoint::Ended::ByClient) => log.finish("closed", None, read, written),
        Ok(endpoint::Ended::Closed(why)) => log.finish(why.outcome(), None, read, written),
        Err(e @ endpoint::EndpointError::Dropped { .. }) => {
            log.finish("own_endpoint_dropped", Some(e.to_string()), read, written);
        }
        Err(e) => log.finish("own_endpoint_error", Some(e.to_string()), read, written),
    }
}

/// Answers a TLS-ALPN-01 validation of the own domain with the pending challenge's
/// certificate and closes, holding `_slot` of the own endpoint's budget meanwhile.
async fn answer_challenge(
    acme: Arc<crate::acme::AcmeShared>,
    _slot: ConnectionSlot,
    active: &Active,
    stream: TcpStream,
    buf: Vec<u8>,
    mut log: ConnectionLog,
) {
    log.route = Some(OWN_ROUTE_LABEL.to_string());
    acme.metrics
        .challenges_answered
        .fetch_add(1, Ordering::Relaxed);
    let counters = Arc::new(TrafficCounters::default());
    let stream = PrefixedStream::new(buf, stream, vec![counters.clone()]);
    let result = crate::acme::challenge::answer(
        acme.challenge_config.clone(),
        stream,
        active.config.gateway.client_hello_timeout,
    )
    .await;
    let read = counters.client_to_backend.load(Ordering::Relaxed);
    let written = counters.backend_to_client.load(Ordering::Relaxed);
    match result {
        Ok(()) => log.finish("acme_challenge", None, read, written),
        Err(e) => log.finish("acme_challenge_failed", Some(e.to_string()), read, written),
    }
}

/// Connects the route's backend, then hands the connection to a relay task of its own.
#[allow(clippy::too_many_arguments)]
async fn passthrough(
    active: &Active,
    route: &Route,
    slot: ConnectionSlot,
    stream: TcpStream,
    client: SocketAddr,
    dialed: SocketAddr,
    hello: &ClientHello,
    buf: Vec<u8>,
    mut log: ConnectionLog,
) {
    log.route = Some(route.name().to_string());
    let g = &active.config.gateway;
    let open = route.metrics.open_guard();
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
    let relay = Relay {
        opts: RelayOptions {
            idle_timeout: g.idle_timeout,
            first_byte_timeout: g.limits.backend_first_byte_timeout,
            use_splice: g.splice,
        },
        traffic: route.metrics.traffic.clone(),
        open,
        slot,
        log,
    };
    // A task of its own rather than the rest of this one: a connection lives for the
    // relay, and this task's state (the peek, the routing, the connect, and the copies
    // an async fn keeps of what it moved into the futures it awaits) would stay
    // reserved the whole time. The relay task holds only what the relay uses
    // (bench/discussion.md, "memory per idle connection").
    tokio::spawn(relay.run(stream, backend, opening));
}

/// What a relayed connection keeps to its end: its route's traffic counters and gauge,
/// its slot and its log line.
struct Relay {
    opts: RelayOptions,
    traffic: Arc<TrafficCounters>,
    open: OpenGuard,
    slot: ConnectionSlot,
    log: ConnectionLog,
}

impl Relay {
    /// Relays both ways until the connection ends, then writes its log line.
    ///
    /// Not an async fn: the relay future is made here, outside the returned one, so
    /// that the sockets and the opening are held once (by the relay) rather than also
    /// as this future's arguments. The task then holds the log line, the guards and the
    /// boxed relay.
    fn run(
        self,
        stream: TcpStream,
        backend: TcpStream,
        opening: Opening,
    ) -> impl Future<Output = ()> {
        let Relay {
            opts,
            traffic,
            open,
            slot,
            log,
        } = self;
        let first_byte_timeout = opts.first_byte_timeout;
        // Boxed: awaiting a future that an async block holds would copy it into the
        // block's own state, and hold it twice.
        let relay = Box::pin(forward::pass_through(
            stream, backend, opening, opts, traffic,
        ));
        async move {
            let transfer = relay.await;
            let outcome = match &transfer.outcome {
                RelayOutcome::Closed => ("closed", None),
                RelayOutcome::IdleTimeout => ("idle_timeout", None),
                RelayOutcome::BackendFirstByteTimeout => (
                    "backend_first_byte_timeout",
                    Some(format!(
                        "the backend sent nothing within {first_byte_timeout:?} (gateway.backend_first_byte_timeout)"
                    )),
                ),
                RelayOutcome::ClientError(e) => ("client_error", Some(e.to_string())),
                RelayOutcome::BackendError(e) => ("backend_error", Some(e.to_string())),
            };
            log.finish(
                outcome.0,
                outcome.1,
                transfer.client_to_backend,
                transfer.backend_to_client,
            );
            drop((open, slot));
        }
    }
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
            acme: Arc::new(crate::acme::AcmeShared::new().unwrap()),
            shutdown,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let connection = Connection {
            listen: None,
            metrics,
            own,
            own_slots: ConnectionSlots::new(),
            control: tokio::runtime::Handle::current(),
            active: active.current(),
            slot: ConnectionSlots::new().try_open(10).unwrap(),
        };
        let future = handle(connection, stream, peer);
        let size = std::mem::size_of_val(&future);
        eprintln!("connection task: {size} bytes");
        assert!(size <= 4096, "the connection task grew to {size} bytes");
    }

    /// An open passthrough connection is its relay task: its size is the gateway's own
    /// memory per idle relayed connection (sockets, tokio's registration of them and
    /// kernel buffers aside). It was the whole connection task, 3160 bytes, before the
    /// relay became a task of its own with one future for both directions.
    #[tokio::test]
    async fn the_relay_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let backend = TcpStream::connect(addr).await.unwrap();
        let metrics = Arc::new(crate::metrics::RouteMetrics::default());
        let relay = Relay {
            opts: RelayOptions::default(),
            open: metrics.open_guard(),
            traffic: metrics.traffic.clone(),
            slot: ConnectionSlots::new().try_open(10).unwrap(),
            log: ConnectionLog::new(addr, Some(addr)),
        };
        let opening = Opening {
            proxy_v2: None,
            peeked: Vec::new(),
        };
        let task = relay.run(client, backend, opening);
        // The relay future itself, boxed by `run`: the same type, made the same way.
        let listener2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr2 = listener2.local_addr().unwrap();
        let relay = forward::pass_through(
            TcpStream::connect(addr2).await.unwrap(),
            TcpStream::connect(addr2).await.unwrap(),
            Opening {
                proxy_v2: None,
                peeked: Vec::new(),
            },
            RelayOptions::default(),
            Arc::new(TrafficCounters::default()),
        );
        let (task, relay) = (std::mem::size_of_val(&task), std::mem::size_of_val(&relay));
        eprintln!("relay task: {task} bytes, and the boxed relay {relay} bytes");
        assert!(
            task + relay <= 1280,
            "the relay task grew to {task} + {relay} bytes"
        );
    }
}
