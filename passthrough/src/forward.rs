//! Passthrough: connect a route's backend, send it the connection's opening bytes (a
//! PROXY v2 header when the route asks for one, then what the peek read from the client),
//! then relay bytes between client and backend, untouched, until both sides are done.
//! [`pass_through`] is the one place that writes and counts those bytes.
//!
//! The relay keeps TCP half-close (a FIN from one side becomes a `shutdown(WR)` on the
//! other while the opposite direction goes on), ends on an idle timeout, and on an error
//! on either side closes both sockets at once, resetting the other side so that it does
//! not mistake the failure for a clean end. On Linux the bytes move with splice(2)
//! (the `splice` module); elsewhere, or when asked, with plain reads and writes through
//! a pooled buffer per direction (the `pump` module).

#![forbid(unsafe_code)]

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proxy_protocol;
use crate::pump::{Pump, PumpError};

/// Why a backend could not be reached. Each message names the backend address.
#[derive(thiserror::Error, Debug)]
pub enum ForwardError {
    /// The name in `host:port` did not resolve.
    #[error("backend {addr}: cannot resolve: {source}")]
    Resolve {
        /// The backend as configured, `host:port`.
        addr: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The name resolved to no address at all.
    #[error("backend {addr}: resolves to no address")]
    NoAddress {
        /// The backend as configured, `host:port`.
        addr: String,
    },
    /// Nothing answered within the connect timeout.
    #[error("backend {addr}: no connection within {after:?}")]
    Timeout {
        /// The backend as configured, `host:port`.
        addr: String,
        /// The connect timeout that ran out.
        after: Duration,
    },
    /// Every address of the backend refused the connection (nothing listens there).
    #[error("backend {addr}: connection refused")]
    Refused {
        /// The backend as configured, `host:port`.
        addr: String,
    },
    /// Any other socket error (unreachable network, no route, out of descriptors).
    #[error("backend {addr}: {source}")]
    Io {
        /// The backend as configured, `host:port`.
        addr: String,
        /// The socket error of the last address tried.
        source: io::Error,
    },
}

/// Connects to a backend given as `host:port`, trying each resolved address in turn,
/// with `timeout` for the whole attempt (resolution included).
pub async fn connect_backend(addr: &str, timeout: Duration) -> Result<TcpStream, ForwardError> {
    match tokio::time::timeout(timeout, connect_any(addr)).await {
        Ok(result) => result,
        Err(_) => Err(ForwardError::Timeout {
            addr: addr.to_string(),
            after: timeout,
        }),
    }
}

async fn connect_any(addr: &str) -> Result<TcpStream, ForwardError> {
    let addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| ForwardError::Resolve {
            addr: addr.to_string(),
            source,
        })?;
    let mut last_error = None;
    for candidate in addrs {
        match TcpStream::connect(candidate).await {
            Ok(stream) => {
                // TLS records are latency-bound; Nagle would only delay handshakes.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    let addr = addr.to_string();
    Err(match last_error {
        None => ForwardError::NoAddress { addr },
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => ForwardError::Refused { addr },
        Some(source) => ForwardError::Io { addr, source },
    })
}

/// Bytes moved for one route (or for the own endpoint), across all its connections;
/// shared by `Arc` with the metrics, and added to while bytes move (not only when a
/// connection ends).
#[derive(Debug, Default)]
pub struct TrafficCounters {
    /// Bytes written to the backend (the PROXY header and the peeked bytes included).
    pub client_to_backend: AtomicU64,
    /// Bytes written to the client.
    pub backend_to_client: AtomicU64,
}

/// How [`pass_through`] moves bytes once the opening is sent.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The relay ends when no byte moved either way for this long. `Duration::ZERO`
    /// turns the timeout off.
    pub idle_timeout: Duration,
    /// The relay ends when the backend sent no byte this long after the opening was
    /// written (a backend that accepts and never answers a ClientHello).
    /// `Duration::ZERO` turns the limit off.
    pub first_byte_timeout: Duration,
    /// Use splice(2) where the platform has it (Linux); otherwise the portable copy.
    pub use_splice: bool,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            idle_timeout: Duration::from_secs(300),
            first_byte_timeout: Duration::from_secs(10),
            use_splice: cfg!(target_os = "linux"),
        }
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayOutcome {
    /// Both sides closed their sending direction; every byte was delivered.
    Closed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// The backend sent nothing within the first-byte limit.
    BackendFirstByteTimeout,
    /// Reading from or writing to the client failed (reset, broken pipe).
    ClientError(io::Error),
    /// Reading from or writing to the backend failed.
    BackendError(io::Error),
}

impl fmt::Display for RelayOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayOutcome::Closed => f.write_str("closed"),
            RelayOutcome::IdleTimeout => f.write_str("idle timeout"),
            RelayOutcome::BackendFirstByteTimeout => {
                f.write_str("no byte from the backend in time")
            }
            RelayOutcome::ClientError(e) => write!(f, "client error: {e}"),
            RelayOutcome::BackendError(e) => write!(f, "backend error: {e}"),
        }
    }
}

/// What one connection moved, and how it ended.
#[derive(Debug)]
pub struct Transfer {
    /// Bytes of the client's stream written to the backend, the peeked bytes included
    /// (a PROXY header the gateway wrote is not the client's, so not counted here).
    pub client_to_backend: u64,
    /// Bytes written to the client.
    pub backend_to_client: u64,
    /// How the connection ended.
    pub outcome: RelayOutcome,
}

/// What a backend receives before any relayed byte.
#[derive(Debug)]
pub struct Opening {
    /// A PROXY v2 header to write first, when the route asks for one.
    pub proxy_v2: Option<ProxyV2>,
    /// The bytes the peek read from the client: the ClientHello and whatever followed.
    pub peeked: Vec<u8>,
}

/// The PROXY v2 header a backend receives: who the client is and what it asked for.
#[derive(Debug, Clone)]
pub struct ProxyV2 {
    /// The client (behind a load balancer, the one its PROXY header named).
    pub source: SocketAddr,
    /// The address the client dialed.
    pub destination: SocketAddr,
    /// The SNI, sent as the authority TLV.
    pub authority: Option<String>,
}

/// When a quiet relay ends: nothing moved either way for `idle` since `last`, or nothing
/// came from the backend within `first_byte` of `start` (right after the opening, a
/// ClientHello, which a TLS server answers at once). A zero limit is off.
struct Quiet {
    start: Instant,
    last: Instant,
    idle: Duration,
    first_byte: Duration,
}

impl Quiet {
    /// The earliest moment a limit can run out, with the outcome it gives then; `None`
    /// when no limit applies.
    fn next(&self, from_backend: u64) -> Option<(Instant, RelayOutcome)> {
        let first_byte = (!self.first_byte.is_zero() && from_backend == 0).then(|| {
            (
                self.start + self.first_byte,
                RelayOutcome::BackendFirstByteTimeout,
            )
        });
        let idle =
            (!self.idle.is_zero()).then(|| (self.last + self.idle, RelayOutcome::IdleTimeout));
        match (first_byte, idle) {
            (Some(f), Some(i)) => Some(if f.0 <= i.0 { f } else { i }),
            (f, i) => f.or(i),
        }
    }
}

/// Serves one passthrough connection once its backend is connected: writes the
/// [`Opening`] (PROXY v2 header, then the peeked bytes) to the backend, then moves bytes
/// both ways until both sides closed, keeping half-close. Ends on idle timeout or on an
/// error on either side; both sockets are closed when this returns. Every byte written
/// to the backend is added to `counters` once, here.
///
/// `opts` and `counters` may be borrowed or owned (an `Arc`): owned, the returned future
/// is all a relay task needs to hold.
pub fn pass_through<O, C>(
    client: TcpStream,
    backend: TcpStream,
    opening: Opening,
    opts: O,
    counters: C,
) -> impl Future<Output = Transfer>
where
    O: Borrow<RelayOptions>,
    C: Borrow<TrafficCounters>,
{
    // Encoded before the future exists: an async fn keeps its arguments for its whole
    // life, and the future lives as long as the connection, so it should hold one buffer
    // (freed once written), not the header's addresses and name as well.
    let (initial, client_bytes) = opening.encode();
    relay(client, backend, initial, client_bytes, opts, counters)
}

impl Opening {
    /// The bytes to write, in order, and how many of them are the client's.
    fn encode(self) -> (Vec<u8>, u64) {
        let Opening { proxy_v2, peeked } = self;
        let client_bytes = u64::try_from(peeked.len()).unwrap_or(u64::MAX);
        let initial = match proxy_v2 {
            Some(h) => {
                let mut header =
                    proxy_protocol::encode_v2(h.source, h.destination, h.authority.as_deref());
                header.extend_from_slice(&peeked);
                header
            }
            None => peeked,
        };
        (initial, client_bytes)
    }
}

/// Writes the opening in one write, counts it and frees it. Written before the relay
/// starts, rather than by it, so that the peeked bytes do not stay allocated for the
/// connection's whole life (idle connections should cost little).
async fn send_opening(
    backend: &mut TcpStream,
    initial: Vec<u8>,
    counters: &TrafficCounters,
) -> io::Result<()> {
    backend.write_all(&initial).await?;
    counters.client_to_backend.fetch_add(
        u64::try_from(initial.len()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    Ok(())
}

/// Moves bytes both ways until both sides closed, keeping half-close; see
/// [`pass_through`].
///
/// One future polls both directions ([`Pump`]) and one timer: an idle connection's
/// state is the two sockets, two small direction states and the timer, with no waiter
/// node, buffer or pipe per direction (bench/discussion.md, "memory per idle connection").
/// The timer is armed for the earliest limit and, when it fires, re-armed from the last
/// moment a byte moved, so a busy relay does not touch the timer wheel per chunk.
async fn relay(
    mut client: TcpStream,
    mut backend: TcpStream,
    initial: Vec<u8>,
    client_bytes: u64,
    opts: impl Borrow<RelayOptions>,
    counters: impl Borrow<TrafficCounters>,
) -> Transfer {
    let (opts, counters) = (opts.borrow(), counters.borrow());
    // In the same future as the relay, not one that calls it: a future keeps its own
    // copy of what it moves into one it awaits, here both sockets.
    if let Err(e) = send_opening(&mut backend, initial, counters).await {
        // As in the relay: the backend broke, so the client is reset, not closed.
        let _ = client.set_zero_linger();
        return Transfer {
            client_to_backend: 0,
            backend_to_client: 0,
            outcome: RelayOutcome::BackendError(e),
        };
    }
    let start = Instant::now();
    let mut quiet = Quiet {
        start,
        last: start,
        idle: opts.idle_timeout,
        first_byte: opts.first_byte_timeout,
    };
    let (mut c2b, mut b2c) = (Pump::new(opts.use_splice), Pump::new(opts.use_splice));
    let (mut up, mut down) = (0u64, 0u64);
    let first = quiet.next(0).map(|(when, _)| when);
    // With no limit the timer is never polled, so never registered.
    let timer = tokio::time::sleep_until(first.unwrap_or(start));
    tokio::pin!(timer);

    let outcome = std::future::poll_fn(|cx| {
        let before = up.saturating_add(down);
        let b2c_done = b2c.is_done();
        if let Poll::Ready(Err(e)) = c2b.poll_move(
            cx,
            &client,
            &mut backend,
            &mut up,
            &counters.client_to_backend,
            b2c_done,
        ) {
            return Poll::Ready(match e {
                PumpError::Read(e) => RelayOutcome::ClientError(e),
                PumpError::Write(e) => RelayOutcome::BackendError(e),
            });
        }
        let c2b_done = c2b.is_done();
        if let Poll::Ready(Err(e)) = b2c.poll_move(
            cx,
            &backend,
            &mut client,
            &mut down,
            &counters.backend_to_client,
            c2b_done,
        ) {
            return Poll::Ready(match e {
                PumpError::Read(e) => RelayOutcome::BackendError(e),
                PumpError::Write(e) => RelayOutcome::ClientError(e),
            });
        }
        if c2b.is_done() && b2c.is_done() {
            return Poll::Ready(RelayOutcome::Closed);
        }
        if up.saturating_add(down) != before {
            quiet.last = Instant::now();
        }
        // The timer may be due before the real limit (bytes moved since it was armed;
        // the limit only ever moves later): then it is re-armed, and polled again so
        // that it holds the waker.
        loop {
            let Some((when, outcome)) = quiet.next(down) else {
                return Poll::Pending;
            };
            if timer.deadline() < when && timer.is_elapsed() {
                timer.as_mut().reset(when);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if timer.deadline() >= when {
                return Poll::Ready(outcome);
            }
        }
    })
    .await;

    // The failing side is gone; a reset tells the other side that the stream broke
    // rather than ended (a FIN would look like a clean, possibly truncated, end).
    match &outcome {
        RelayOutcome::ClientError(_) => {
            let _ = backend.set_zero_linger();
        }
        // A backend that never answered broke the connection as much as one that failed.
        RelayOutcome::BackendError(_) | RelayOutcome::BackendFirstByteTimeout => {
            let _ = client.set_zero_linger();
        }
        RelayOutcome::Closed | RelayOutcome::IdleTimeout => {}
    }
    drop((c2b, b2c));
    Transfer {
        client_to_backend: up.saturating_add(client_bytes),
        backend_to_client: down,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Guards each test against a hang; never used to assert how fast something is.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    /// The four sockets of a relayed connection: the test's client, the gateway's
    /// accepted socket, the gateway's connection to the backend, the test's backend.
    struct Sockets {
        client_peer: TcpStream,
        client: TcpStream,
        backend: TcpStream,
        backend_peer: TcpStream,
    }

    async fn sockets() -> Sockets {
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client_peer = TcpStream::connect(front.local_addr().unwrap())
            .await
            .unwrap();
        let (client, _) = front.accept().await.unwrap();
        let back_addr = back.local_addr().unwrap().to_string();
        let backend = connect_backend(&back_addr, Duration::from_secs(10))
            .await
            .unwrap();
        let (backend_peer, _) = back.accept().await.unwrap();
        Sockets {
            client_peer,
            client,
            backend,
            backend_peer,
        }
    }

    /// An opening of just `peeked` bytes, no PROXY header.
    fn opening(peeked: &[u8]) -> Opening {
        Opening {
            proxy_v2: None,
            peeked: peeked.to_vec(),
        }
    }

    fn opts(use_splice: bool, idle_timeout: Duration) -> RelayOptions {
        RelayOptions {
            idle_timeout,
            first_byte_timeout: Duration::ZERO,
            use_splice,
        }
    }

    /// Deterministic bytes that no two offsets of a short period would repeat.
    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    /// Writes `data` then FIN, while reading everything the other way until EOF.
    async fn send_and_drain(stream: TcpStream, data: Vec<u8>) -> Vec<u8> {
        let (mut rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move {
            wr.write_all(&data).await.unwrap();
            wr.shutdown().await.unwrap();
            wr
        });
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        let _wr = writer.await.unwrap();
        got
    }

    async fn large_transfer(use_splice: bool) {
        let s = sockets().await;
        let initial = b"PROXY-ish header + client hello".to_vec();
        let up = pattern(6 * 1024 * 1024 + 17, 1);
        let down = pattern(5 * 1024 * 1024 + 3, 2);
        let counters = Arc::new(TrafficCounters::default());

        let relay_task = {
            let counters = counters.clone();
            let initial = initial.clone();
            tokio::spawn(async move {
                pass_through(
                    s.client,
                    s.backend,
                    opening(&initial),
                    opts(use_splice, Duration::from_secs(30)),
                    counters,
                )
                .await
            })
        };
        let client = tokio::spawn(send_and_drain(s.client_peer, up.clone()));
        let backend = tokio::spawn(send_and_drain(s.backend_peer, down.clone()));
        let (at_client, at_backend, transfer) = tokio::time::timeout(HANG_GUARD, async {
            (
                client.await.unwrap(),
                backend.await.unwrap(),
                relay_task.await.unwrap(),
            )
        })
        .await
        .expect("relay finished");

        let mut want_up = initial.clone();
        want_up.extend_from_slice(&up);
        assert_eq!(at_backend.len(), want_up.len());
        assert_eq!(Sha256::digest(&at_backend), Sha256::digest(&want_up));
        assert_eq!(at_client.len(), down.len());
        assert_eq!(Sha256::digest(&at_client), Sha256::digest(&down));
        assert!(
            matches!(transfer.outcome, RelayOutcome::Closed),
            "{}",
            transfer.outcome
        );
        assert_eq!(transfer.client_to_backend, want_up.len() as u64);
        assert_eq!(transfer.backend_to_client, down.len() as u64);
        assert_eq!(
            counters.client_to_backend.load(Ordering::Relaxed),
            want_up.len() as u64
        );
        assert_eq!(
            counters.backend_to_client.load(Ordering::Relaxed),
            down.len() as u64
        );
    }

    /// Many request/response exchanges, each waiting for the other side: every read
    /// the relay makes comes short (the socket drained), so each clears the socket's
    /// readiness without an EAGAIN read; a message larger than the copy buffer
    /// switches the direction to splice mid-connection. Every byte must still arrive,
    /// in order, and both ends must close cleanly (the last one by the close itself).
    async fn exchanges(use_splice: bool) {
        let s = sockets().await;
        let counters = Arc::new(TrafficCounters::default());
        let relay_task = {
            let counters = counters.clone();
            tokio::spawn(pass_through(
                s.client,
                s.backend,
                opening(b"hello"),
                opts(use_splice, Duration::from_secs(30)),
                counters,
            ))
        };
        let (mut client, mut backend) = (s.client_peer, s.backend_peer);
        let (mut up_total, mut down_total) = (5u64, 0u64);
        tokio::time::timeout(HANG_GUARD, async {
            let mut opening = [0u8; 5];
            backend.read_exact(&mut opening).await.unwrap();
            assert_eq!(&opening, b"hello");
            for round in 0..300u64 {
                let len = [1, 100, 1400, 5000, 70_000, 17, 16 * 1024][(round % 7) as usize];
                let up = pattern(len, round);
                client.write_all(&up).await.unwrap();
                let mut got = vec![0u8; len];
                backend.read_exact(&mut got).await.unwrap();
                assert!(got == up, "round {round}: the request changed on the way");
                let down = pattern(len + 3, round + 1000);
                backend.write_all(&down).await.unwrap();
                let mut got = vec![0u8; len + 3];
                client.read_exact(&mut got).await.unwrap();
                assert!(
                    got == down,
                    "round {round}: the response changed on the way"
                );
                up_total += len as u64;
                down_total += len as u64 + 3;
            }
            client.shutdown().await.unwrap();
            let mut rest = Vec::new();
            backend.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            backend.shutdown().await.unwrap();
            client.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        })
        .await
        .expect("the exchanges finished");
        let transfer = tokio::time::timeout(HANG_GUARD, relay_task)
            .await
            .expect("relay finished")
            .unwrap();
        assert!(
            matches!(transfer.outcome, RelayOutcome::Closed),
            "{}",
            transfer.outcome
        );
        assert_eq!(transfer.client_to_backend, up_total);
        assert_eq!(transfer.backend_to_client, down_total);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exchanges_arrive_intact_portable() {
        exchanges(false).await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exchanges_arrive_intact_splice() {
        exchanges(true).await;
    }

    #[tokio::test]
    async fn large_transfer_arrives_intact_portable() {
        large_transfer(false).await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn large_transfer_arrives_intact_splice() {
        large_transfer(true).await;
    }

    /// One side sends FIN first; the other direction must keep flowing until it ends too.
    async fn half_close(use_splice: bool, client_first: bool) {
        let s = sockets().await;
        let counters = TrafficCounters::default();
        let relay_opts = opts(use_splice, Duration::from_secs(30));
        let relay_fut = pass_through(s.client, s.backend, opening(b""), &relay_opts, &counters);
        let (mut first, mut second) = if client_first {
            (s.client_peer, s.backend_peer)
        } else {
            (s.backend_peer, s.client_peer)
        };
        let peers = async move {
            first.write_all(b"request").await.unwrap();
            first.shutdown().await.unwrap();
            // The second side sees the data, then the FIN...
            let mut got = Vec::new();
            second.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"request");
            // ...and can still answer over the direction that stays open.
            second.write_all(b"reply after the FIN").await.unwrap();
            second.shutdown().await.unwrap();
            let mut got = Vec::new();
            first.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"reply after the FIN");
        };
        let (transfer, ()) =
            tokio::time::timeout(HANG_GUARD, async { tokio::join!(relay_fut, peers) })
                .await
                .expect("relay finished");
        assert!(
            matches!(transfer.outcome, RelayOutcome::Closed),
            "{}",
            transfer.outcome
        );
        let (c2b, b2c) = if client_first { (7, 19) } else { (19, 7) };
        assert_eq!(
            (transfer.client_to_backend, transfer.backend_to_client),
            (c2b, b2c)
        );
    }

    #[tokio::test]
    async fn half_close_from_client_keeps_the_reply_flowing() {
        half_close(false, true).await;
        #[cfg(target_os = "linux")]
        half_close(true, true).await;
    }

    #[tokio::test]
    async fn half_close_from_backend_keeps_the_request_flowing() {
        half_close(false, false).await;
        #[cfg(target_os = "linux")]
        half_close(true, false).await;
    }

    #[tokio::test]
    async fn a_backend_that_never_answers_ends_the_relay_and_one_that_answers_does_not() {
        for use_splice in [false, cfg!(target_os = "linux")] {
            // Mute: the relay ends at the first-byte limit, long before the idle one,
            // and the client is reset (the backend broke the connection).
            let mut s = sockets().await;
            let counters = TrafficCounters::default();
            let mut relay_opts = opts(use_splice, Duration::from_secs(3600));
            relay_opts.first_byte_timeout = Duration::from_millis(200);
            let relay_fut = pass_through(
                s.client,
                s.backend,
                opening(b"hello"),
                &relay_opts,
                &counters,
            );
            let transfer = tokio::time::timeout(HANG_GUARD, relay_fut)
                .await
                .expect("relay finished");
            assert!(
                matches!(transfer.outcome, RelayOutcome::BackendFirstByteTimeout),
                "{}",
                transfer.outcome
            );
            let mut got = Vec::new();
            let _ = s.client_peer.read_to_end(&mut got).await;
            assert!(got.is_empty());

            // Answering: the limit no longer applies; the relay ends when both close.
            let mut s = sockets().await;
            let counters = TrafficCounters::default();
            let relay_fut = pass_through(
                s.client,
                s.backend,
                opening(b"hello"),
                &relay_opts,
                &counters,
            );
            let peers = async {
                s.backend_peer.write_all(b"server hello").await.unwrap();
                // Well past the first-byte limit, then both sides finish.
                tokio::time::sleep(Duration::from_millis(600)).await;
                s.backend_peer.shutdown().await.unwrap();
                s.client_peer.shutdown().await.unwrap();
                let mut got = Vec::new();
                s.client_peer.read_to_end(&mut got).await.unwrap();
                got
            };
            let (transfer, got) =
                tokio::time::timeout(HANG_GUARD, async { tokio::join!(relay_fut, peers) })
                    .await
                    .expect("relay finished");
            assert!(
                matches!(transfer.outcome, RelayOutcome::Closed),
                "{}",
                transfer.outcome
            );
            assert_eq!(got, b"server hello");
        }
    }

    #[tokio::test]
    async fn idle_timeout_ends_the_relay_and_closes_both_sides() {
        for use_splice in [false, cfg!(target_os = "linux")] {
            let mut s = sockets().await;
            let counters = TrafficCounters::default();
            let relay_opts = opts(use_splice, Duration::from_millis(200));
            let relay_fut = pass_through(
                s.client,
                s.backend,
                opening(b"hello"),
                &relay_opts,
                &counters,
            );
            let transfer = tokio::time::timeout(HANG_GUARD, relay_fut)
                .await
                .expect("relay finished");
            assert!(
                matches!(transfer.outcome, RelayOutcome::IdleTimeout),
                "{}",
                transfer.outcome
            );
            assert_eq!(transfer.client_to_backend, 5);
            // Both peers see the connection end (EOF after what was sent).
            let mut got = Vec::new();
            s.backend_peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello");
            let mut got = Vec::new();
            s.client_peer.read_to_end(&mut got).await.unwrap();
            assert!(got.is_empty());
        }
    }

    #[tokio::test]
    async fn zero_idle_timeout_means_none() {
        let s = sockets().await;
        let counters = TrafficCounters::default();
        let relay_opts = opts(false, Duration::ZERO);
        let relay_fut = pass_through(s.client, s.backend, opening(b""), &relay_opts, &counters);
        let (mut client_peer, mut backend_peer) = (s.client_peer, s.backend_peer);
        let peers = async move {
            // Quiet for longer than any sensible timeout granularity, then a clean end.
            tokio::time::sleep(Duration::from_millis(300)).await;
            client_peer.shutdown().await.unwrap();
            backend_peer.shutdown().await.unwrap();
            (client_peer, backend_peer)
        };
        let (transfer, _peers) =
            tokio::time::timeout(HANG_GUARD, async { tokio::join!(relay_fut, peers) })
                .await
                .expect("relay finished");
        assert!(
            matches!(transfer.outcome, RelayOutcome::Closed),
            "{}",
            transfer.outcome
        );
    }

    /// A reset on one side ends the relay with that side's error and resets the other.
    async fn reset_closes_the_other_side(use_splice: bool, backend_resets: bool) {
        let s = sockets().await;
        let counters = TrafficCounters::default();
        let relay_opts = opts(use_splice, Duration::from_secs(30));
        let relay_fut = pass_through(s.client, s.backend, opening(b""), &relay_opts, &counters);
        let (failing, mut other) = if backend_resets {
            (s.backend_peer, s.client_peer)
        } else {
            (s.client_peer, s.backend_peer)
        };
        let peers = async move {
            failing.set_zero_linger().unwrap();
            drop(failing);
            let mut buf = [0u8; 16];
            other.read(&mut buf).await
        };
        let (transfer, other_read) =
            tokio::time::timeout(HANG_GUARD, async { tokio::join!(relay_fut, peers) })
                .await
                .expect("relay finished and the other side saw it");
        if backend_resets {
            assert!(
                matches!(transfer.outcome, RelayOutcome::BackendError(_)),
                "{}",
                transfer.outcome
            );
        } else {
            assert!(
                matches!(transfer.outcome, RelayOutcome::ClientError(_)),
                "{}",
                transfer.outcome
            );
        }
        let err = other_read.expect_err("the other side is reset, not closed cleanly");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }

    #[tokio::test]
    async fn backend_reset_resets_the_client() {
        reset_closes_the_other_side(false, true).await;
        #[cfg(target_os = "linux")]
        reset_closes_the_other_side(true, true).await;
    }

    #[tokio::test]
    async fn client_reset_resets_the_backend() {
        reset_closes_the_other_side(false, false).await;
        #[cfg(target_os = "linux")]
        reset_closes_the_other_side(true, false).await;
    }

    #[tokio::test]
    async fn route_counters_add_up_across_connections() {
        let counters = TrafficCounters::default();
        for (i, use_splice) in [false, cfg!(target_os = "linux")].into_iter().enumerate() {
            let s = sockets().await;
            let up = pattern(1000 + i, 3);
            let down = pattern(70_000 + i, 4);
            let relay_opts = opts(use_splice, Duration::from_secs(30));
            let relay_fut = pass_through(
                s.client,
                s.backend,
                opening(b"init"),
                &relay_opts,
                &counters,
            );
            let client = send_and_drain(s.client_peer, up);
            let backend = send_and_drain(s.backend_peer, down);
            let (transfer, _, _) = tokio::time::timeout(HANG_GUARD, async {
                tokio::join!(relay_fut, client, backend)
            })
            .await
            .expect("relay finished");
            assert_eq!(transfer.client_to_backend, 4 + 1000 + i as u64);
            assert_eq!(transfer.backend_to_client, 70_000 + i as u64);
        }
        assert_eq!(
            counters.client_to_backend.load(Ordering::Relaxed),
            2 * 4 + 1000 + 1001
        );
        assert_eq!(
            counters.backend_to_client.load(Ordering::Relaxed),
            70_000 + 70_001
        );
    }

    #[tokio::test]
    async fn connect_refused_names_the_backend() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        };
        let err = connect_backend(&addr, Duration::from_secs(10))
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, ForwardError::Refused { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr), "{err}");
    }

    #[tokio::test]
    async fn connect_to_a_bad_address_is_a_resolve_error() {
        for addr in ["127.0.0.1", "127.0.0.1:99999", ":443"] {
            let err = connect_backend(addr, Duration::from_secs(10))
                .await
                .expect_err("not host:port");
            assert!(
                matches!(err, ForwardError::Resolve { .. }),
                "{addr}: {err:?}"
            );
            assert!(err.to_string().contains(addr), "{err}");
        }
    }

    #[tokio::test]
    async fn connect_timeout_names_the_backend() {
        // A listener whose accept queue is full drops further SYNs, so a connect to it
        // hangs like one to a dead host, without leaving loopback.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(s) = connect_backend(&addr, Duration::from_millis(200)).await {
                fillers.push(s);
            }
        }
        let err = connect_backend(&addr, Duration::from_millis(300))
            .await
            .expect_err("queue full");
        assert!(matches!(err, ForwardError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr), "{err}");
    }

    #[tokio::test]
    async fn connect_resolves_a_host_name() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let stream = connect_backend(&format!("localhost:{port}"), Duration::from_secs(10))
            .await
            .expect("localhost resolves to a loopback address");
        assert!(stream.peer_addr().unwrap().ip().is_loopback());
        assert!(stream.nodelay().unwrap());
    }

    /// The backend is gone before the first byte: the relay reports it as the backend's
    /// failure and the client learns at once.
    #[tokio::test]
    async fn backend_reset_before_the_initial_bytes() {
        for use_splice in [false, cfg!(target_os = "linux")] {
            let s = sockets().await;
            s.backend_peer.set_zero_linger().unwrap();
            drop(s.backend_peer);
            let counters = TrafficCounters::default();
            let relay_opts = opts(use_splice, Duration::from_secs(30));
            // Large enough that the reset is seen while writing or right after.
            let initial = pattern(4 * 1024 * 1024, 5);
            let mut client_peer = s.client_peer;
            let (transfer, client_read) = tokio::time::timeout(HANG_GUARD, async {
                tokio::join!(
                    pass_through(
                        s.client,
                        s.backend,
                        opening(&initial),
                        &relay_opts,
                        &counters
                    ),
                    async {
                        let mut buf = [0u8; 16];
                        client_peer.read(&mut buf).await
                    }
                )
            })
            .await
            .expect("relay finished");
            assert!(
                matches!(transfer.outcome, RelayOutcome::BackendError(_)),
                "{}",
                transfer.outcome
            );
            assert!(transfer.client_to_backend < initial.len() as u64);
            let err = client_read.expect_err("client is reset");
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        }
    }

    /// The backend gets the PROXY v2 header, then the peeked bytes, then the stream; the
    /// route's counters measure what the backend received (header included), the
    /// transfer what came from the client (header not included), each counted once.
    #[tokio::test]
    async fn opening_header_then_peeked_bytes_counted_once() {
        for use_splice in [false, cfg!(target_os = "linux")] {
            let s = sockets().await;
            let counters = TrafficCounters::default();
            let source: SocketAddr = "192.0.2.1:40000".parse().unwrap();
            let destination: SocketAddr = "192.0.2.2:443".parse().unwrap();
            let header = proxy_protocol::encode_v2(source, destination, Some("a.example.com"));
            let opening = Opening {
                proxy_v2: Some(ProxyV2 {
                    source,
                    destination,
                    authority: Some("a.example.com".into()),
                }),
                peeked: b"hello".to_vec(),
            };
            let relay_opts = opts(use_splice, Duration::from_secs(30));
            let relay_fut = pass_through(s.client, s.backend, opening, &relay_opts, &counters);
            let client = send_and_drain(s.client_peer, b" world".to_vec());
            let backend = send_and_drain(s.backend_peer, b"reply".to_vec());
            let (transfer, at_client, at_backend) = tokio::time::timeout(HANG_GUARD, async {
                tokio::join!(relay_fut, client, backend)
            })
            .await
            .expect("relay finished");
            let mut want = header.clone();
            want.extend_from_slice(b"hello world");
            assert_eq!(at_backend, want);
            assert_eq!(at_client, b"reply");
            assert_eq!(transfer.client_to_backend, 11);
            assert_eq!(transfer.backend_to_client, 5);
            assert_eq!(
                counters.client_to_backend.load(Ordering::Relaxed),
                header.len() as u64 + 11
            );
            assert_eq!(counters.backend_to_client.load(Ordering::Relaxed), 5);
        }
    }

    #[test]
    fn outcome_reads_well_in_a_log_line() {
        let e = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(
            RelayOutcome::BackendError(e).to_string(),
            "backend error: reset by peer"
        );
        assert_eq!(RelayOutcome::IdleTimeout.to_string(), "idle timeout");
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// An idle passthrough connection is mostly this future (the gateway's connection
    /// task embeds it): keep it a few hundred bytes, not the kilobytes that a future per
    /// direction, each with its own readiness waiter, used to take.
    #[tokio::test]
    async fn the_relay_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (backend, _) = listener.accept().await.unwrap();
        let (opts, counters) = (RelayOptions::default(), TrafficCounters::default());
        let relay = relay(client, backend, Vec::new(), 0, &opts, &counters);
        let size = std::mem::size_of_val(&relay);
        eprintln!("relay future: {size} bytes");
        assert!(size <= 768, "the relay future grew to {size} bytes");
    }
}
