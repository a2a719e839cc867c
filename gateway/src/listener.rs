//! Accepting connections and deciding, from their first bytes, where each one goes.
//!
//! Per connection: take a slot under `max_connections` (or close at once); read the
//! PROXY header when the gateway sits behind a load balancer (and refuse connections
//! without one); peek the ClientHello, bounded in bytes ([`MAX_CLIENT_HELLO_BYTES`]) and
//! in time (`client_hello_timeout`, for the PROXY header and the hello together); then
//! route on its SNI: the own endpoint, a backend (optionally behind a fresh PROXY v2
//! header, then the peeked bytes, then both ways until both sides close), or a TLS
//! `unrecognized_name` alert. Each connection ends with one log line.

#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::active::{Active, ActiveView};
use crate::client_hello::{self, ClientHello, ClientHelloError, MAX_CLIENT_HELLO_BYTES};
use crate::endpoint::{self, tls::PrefixedStream};
use crate::forward::{self, RelayOptions, TrafficCounters};
use crate::logging::ConnectionLog;
use crate::metrics::{Metrics, OWN_ROUTE_LABEL};
use crate::proxy_protocol::{self, ProxyError, ProxyHeader, V2_MAX_LEN};
use crate::routes::{Destination, Route};
use crate::slots::{ConnectionSlot, ConnectionSlots};

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

/// Why a connection ended before it could be routed.
#[derive(thiserror::Error, Debug)]
pub enum PeekError {
    #[error("client closed after {received} bytes, before a whole ClientHello")]
    ClosedEarly { received: usize },
    #[error("reading from the client: {0}")]
    Io(#[from] io::Error),
    #[error("PROXY header required (accept_proxy_protocol = true): {0}")]
    Proxy(ProxyError),
    #[error("{0}")]
    ClientHello(ClientHelloError),
    #[error("no whole ClientHello within the first {limit} bytes")]
    TooLarge { limit: usize },
}

impl PeekError {
    /// The short outcome word of the connection log line.
    fn outcome(&self) -> &'static str {
        match self {
            PeekError::ClosedEarly { .. } => "closed_before_client_hello",
            PeekError::Io(_) => "client_error",
            PeekError::Proxy(_) => "refused_proxy_header",
            PeekError::ClientHello(ClientHelloError::NotTls { .. }) => "not_tls",
            PeekError::ClientHello(_) => "bad_client_hello",
            PeekError::TooLarge { .. } => "client_hello_too_large",
        }
    }
}

/// What the listener learned before routing.
#[derive(Debug)]
pub struct Preamble {
    /// The load balancer's PROXY header, when one was expected.
    pub proxy: Option<ProxyHeader>,
    pub hello: ClientHello,
    /// Every byte read after the PROXY header: the hello and anything after it.
    pub buf: Vec<u8>,
}

/// What the accept loops use: the active configuration, the connection slots, the
/// counters, the own endpoint (for connections to `gateway.domain`) and the shutdown
/// signal. Each connection task receives only the parts it needs.
#[derive(Debug, Clone)]
pub struct Listening {
    pub active: ActiveView,
    pub slots: Arc<ConnectionSlots>,
    pub metrics: Arc<Metrics>,
    pub own: Arc<endpoint::Services>,
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

    match active.routes.lookup(hello.sni.as_deref()) {
        // Boxed: the TLS + HTTP state is large, and the task of every passthrough
        // connection would otherwise reserve room for it.
        Destination::Own => Box::pin(serve_own(own, &active, stream, buf, log)).await,
        Destination::Route(route) => {
            // A forwarded connection keeps its route, its slot and its counters, not the
            // services of the own endpoint.
            drop((own, metrics));
            passthrough(&active, &route, stream, client, dialed, &hello, buf, log).await
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

/// Reads the optional PROXY header, then bytes until they hold a whole ClientHello.
pub async fn read_preamble(
    stream: &mut TcpStream,
    expect_proxy: bool,
) -> Result<Preamble, PeekError> {
    read_preamble_into(stream, expect_proxy, &mut None).await
}

/// [`read_preamble`], leaving the PROXY header in `early_proxy` as soon as it is read,
/// so that a caller that gives up on the hello (timeout) still knows the client.
async fn read_preamble_into(
    stream: &mut TcpStream,
    expect_proxy: bool,
    early_proxy: &mut Option<ProxyHeader>,
) -> Result<Preamble, PeekError> {
    let mut buf = Vec::with_capacity(2048);
    let mut proxy = None;
    if expect_proxy {
        loop {
            match proxy_protocol::parse(&buf) {
                Ok(Some((header, len))) => {
                    buf = buf.get(len..).map(<[u8]>::to_vec).unwrap_or_default();
                    *early_proxy = Some(header.clone());
                    proxy = Some(header);
                    break;
                }
                Ok(None) => read_some(stream, &mut buf, V2_MAX_LEN).await?,
                Err(e) => return Err(PeekError::Proxy(e)),
            }
        }
    }
    // The parser reads the whole buffer on each call. A client that sends its hello a
    // byte at a time would make that quadratic, so it is called only when its answer can
    // change: when a byte of a record header arrives (so non-TLS bytes are refused at
    // once) or when a record completes, not for each byte inside a record.
    let mut next_record = 0;
    let mut last_progress = None;
    loop {
        next_record = complete_records_end(&buf, next_record);
        let progress = (
            next_record,
            buf.len().saturating_sub(next_record).min(RECORD_HEADER_LEN),
        );
        if last_progress != Some(progress) {
            last_progress = Some(progress);
            match client_hello::parse(&buf) {
                Ok(Some(hello)) => return Ok(Preamble { proxy, hello, buf }),
                Ok(None) => {}
                Err(e) => return Err(PeekError::ClientHello(e)),
            }
        }
        read_some(stream, &mut buf, MAX_CLIENT_HELLO_BYTES).await?;
    }
}

/// TLS record header: type, version, length.
const RECORD_HEADER_LEN: usize = 5;

/// Walks whole TLS records from `from` (the start of a record) and returns where the
/// first incomplete one starts (`buf.len()` when every record is complete). Only looks
/// at the length fields; the parser judges the rest.
fn complete_records_end(buf: &[u8], mut from: usize) -> usize {
    while let Some(header) = buf.get(from..from.saturating_add(RECORD_HEADER_LEN)) {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let end = from + RECORD_HEADER_LEN + len;
        if end > buf.len() {
            break;
        }
        from = end;
    }
    from
}

/// Appends what the socket has (at least one byte) to `buf`, never growing it past
/// `limit`.
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<(), PeekError> {
    let room = limit.saturating_sub(buf.len());
    if room == 0 {
        return Err(PeekError::TooLarge { limit });
    }
    // Read straight into the buffer's tail: a stack array here would live in the
    // connection task's state for the connection's whole life.
    let start = buf.len();
    buf.resize(start + room.min(READ_CHUNK), 0);
    let read = match buf.get_mut(start..) {
        Some(tail) => stream.read(tail).await,
        None => Ok(0),
    };
    let n = match read {
        Ok(n) => n,
        Err(e) => {
            buf.truncate(start);
            return Err(e.into());
        }
    };
    buf.truncate(start + n);
    if n == 0 {
        return Err(PeekError::ClosedEarly { received: start });
    }
    Ok(())
}

/// Most bytes one read of the peek asks for.
const READ_CHUNK: usize = 4096;

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
    let mut initial = Vec::with_capacity(buf.len() + 64);
    if route.send_proxy_protocol {
        initial.extend_from_slice(&proxy_protocol::encode_v2(
            client,
            dialed,
            hello.sni.as_deref(),
        ));
    }
    initial.extend_from_slice(&buf);
    // Written here rather than by the relay so that neither copy of the hello stays
    // allocated for the connection's whole life (idle connections should cost little).
    let mut backend = backend;
    if let Err(e) = backend.write_all(&initial).await {
        log.finish("backend_error", Some(e.to_string()), 0, 0);
        return;
    }
    route
        .metrics
        .traffic
        .client_to_backend
        .fetch_add(initial.len() as u64, Ordering::Relaxed);
    let client_bytes = buf.len() as u64;
    drop((buf, initial));
    let opts = RelayOptions {
        idle_timeout: g.idle_timeout,
        use_splice: g.splice,
    };
    let transfer = forward::relay(stream, backend, &[], &opts, &route.metrics.traffic).await;
    let outcome = match &transfer.outcome {
        forward::RelayOutcome::Closed => ("closed", None),
        forward::RelayOutcome::IdleTimeout => ("idle_timeout", None),
        forward::RelayOutcome::ClientError(e) => ("client_error", Some(e.to_string())),
        forward::RelayOutcome::BackendError(e) => ("backend_error", Some(e.to_string())),
    };
    log.finish(
        outcome.0,
        outcome.1,
        transfer.client_to_backend.saturating_add(client_bytes),
        transfer.backend_to_client,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair of loopback sockets: (what the gateway reads, what the client writes).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    fn hello() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/hellos/rustls_h2_http11.bin");
        std::fs::read(path).unwrap()
    }

    #[tokio::test]
    async fn proxy_header_split_then_hello_with_trailing_bytes() {
        let (mut server, mut client) = pair().await;
        let header = proxy_protocol::encode_v2(
            "192.0.2.1:1000".parse().unwrap(),
            "192.0.2.2:443".parse().unwrap(),
            None,
        );
        let hello = hello();
        let writer = tokio::spawn(async move {
            client.set_nodelay(true).unwrap();
            client.write_all(&header[..5]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut rest = header[5..].to_vec();
            rest.extend_from_slice(&hello);
            rest.extend_from_slice(b"early");
            client.write_all(&rest).await.unwrap();
            client
        });
        let preamble = read_preamble(&mut server, true).await.unwrap();
        let _client = writer.await.unwrap();
        assert_eq!(
            preamble.proxy.unwrap().source,
            Some("192.0.2.1:1000".parse().unwrap())
        );
        assert_eq!(preamble.hello.sni.as_deref(), Some("rustls.example.com"));
        // The bytes after the hello are kept: they go to the backend too.
        assert!(preamble.buf.ends_with(b"early"));
        assert_eq!(preamble.hello.consumed + 5, preamble.buf.len());
    }

    #[test]
    fn record_walk() {
        assert_eq!(complete_records_end(&[], 0), 0);
        assert_eq!(complete_records_end(&[22, 3, 1], 0), 0);
        assert_eq!(complete_records_end(&[22, 3, 1, 0, 2, 9], 0), 0);
        assert_eq!(complete_records_end(&[22, 3, 1, 0, 1, 9], 0), 6);
        assert_eq!(
            complete_records_end(&[22, 3, 1, 0, 1, 9, 22, 3, 1, 0, 0, 22], 0),
            11
        );
        assert_eq!(complete_records_end(&[22, 3, 1, 0, 1, 9, 22], 6), 6);
    }

    #[tokio::test]
    async fn byte_by_byte_hello() {
        let (mut server, mut client) = pair().await;
        let hello = hello();
        let writer = tokio::spawn(async move {
            client.set_nodelay(true).unwrap();
            for b in &hello {
                client.write_all(std::slice::from_ref(b)).await.unwrap();
            }
            client
        });
        let preamble = read_preamble(&mut server, false).await.unwrap();
        let _client = writer.await.unwrap();
        assert_eq!(preamble.hello.sni.as_deref(), Some("rustls.example.com"));
    }

    #[tokio::test]
    async fn early_close_and_garbage_are_told_apart() {
        let (mut server, mut client) = pair().await;
        client.write_all(&hello()[..10]).await.unwrap();
        drop(client);
        let e = read_preamble(&mut server, false).await.unwrap_err();
        assert!(matches!(e, PeekError::ClosedEarly { received: 10 }), "{e}");
        assert_eq!(e.outcome(), "closed_before_client_hello");

        let (mut server, mut client) = pair().await;
        client.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
        let e = read_preamble(&mut server, false).await.unwrap_err();
        assert_eq!(e.outcome(), "not_tls");

        let (mut server, mut client) = pair().await;
        client.write_all(&hello()).await.unwrap();
        let e = read_preamble(&mut server, true).await.unwrap_err();
        assert!(
            matches!(e, PeekError::Proxy(ProxyError::NotProxyProtocol)),
            "{e}"
        );
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
