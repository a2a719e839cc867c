//! Passthrough: connect a route's backend, then relay bytes between client and backend,
//! untouched, until both sides are done.
//!
//! The relay keeps TCP half-close (a FIN from one side becomes a `shutdown(WR)` on the
//! other while the opposite direction goes on), ends on an idle timeout, and on an error
//! on either side closes both sockets at once, resetting the other side so that it does
//! not mistake the failure for a clean end. On Linux the bytes move with splice(2)
//! ([`crate::splice`]); elsewhere, or when asked, with plain reads and writes through
//! one reused buffer per direction.

#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Buffer of one direction on the portable path.
const PORTABLE_BUFFER: usize = 32 * 1024;

/// Why a backend could not be reached. Each message names the backend address.
#[derive(thiserror::Error, Debug)]
pub enum ForwardError {
    /// The name in `host:port` did not resolve.
    #[error("backend {addr}: cannot resolve: {source}")]
    Resolve { addr: String, source: io::Error },
    /// The name resolved to no address at all.
    #[error("backend {addr}: resolves to no address")]
    NoAddress { addr: String },
    /// Nothing answered within the connect timeout.
    #[error("backend {addr}: no connection within {after:?}")]
    Timeout { addr: String, after: Duration },
    /// Every address of the backend refused the connection (nothing listens there).
    #[error("backend {addr}: connection refused")]
    Refused { addr: String },
    /// Any other socket error (unreachable network, no route, out of descriptors).
    #[error("backend {addr}: {source}")]
    Io { addr: String, source: io::Error },
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

/// Bytes moved for one route, across all its connections; shared by `Arc` with the
/// metrics, and added to while bytes move (not only when a connection ends).
#[derive(Debug, Default)]
pub struct TrafficCounters {
    /// Bytes written to the backend (the `initial` bytes of [`relay`] included).
    pub client_to_backend: AtomicU64,
    /// Bytes written to the client.
    pub backend_to_client: AtomicU64,
}

/// How [`relay`] moves bytes.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The relay ends when no byte moved either way for this long. `Duration::ZERO`
    /// turns the timeout off.
    pub idle_timeout: Duration,
    /// Use splice(2) where the platform has it (Linux); otherwise the portable copy.
    pub use_splice: bool,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            idle_timeout: Duration::from_secs(300),
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
            RelayOutcome::ClientError(e) => write!(f, "client error: {e}"),
            RelayOutcome::BackendError(e) => write!(f, "backend error: {e}"),
        }
    }
}

/// What one relay moved, and how it ended.
#[derive(Debug)]
pub struct Transfer {
    /// Bytes written to the backend, `initial` included.
    pub client_to_backend: u64,
    /// Bytes written to the client.
    pub backend_to_client: u64,
    pub outcome: RelayOutcome,
}

/// A failure of one direction: which operation, so the relay can tell whose fault it is.
#[derive(Debug)]
pub enum PumpError {
    /// Reading the source socket failed.
    Read(io::Error),
    /// Writing the destination socket failed.
    Write(io::Error),
}

/// Which socket failed.
enum Failure {
    Client(io::Error),
    Backend(io::Error),
}

/// The last moment a byte moved, shared by both directions of one relay.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Completes once nothing moved for `idle`; never when `idle` is zero.
    async fn idle_for(&self, idle: Duration) {
        if idle.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Byte counts of one relay plus the route's shared counters, updated together.
struct Tally<'a> {
    activity: &'a Activity,
    relay: AtomicU64,
    route: &'a AtomicU64,
}

impl Tally<'_> {
    fn add(&self, n: u64) {
        self.relay.fetch_add(n, Ordering::Relaxed);
        self.route.fetch_add(n, Ordering::Relaxed);
        self.activity.touch();
    }
}

/// Writes `initial` (optional PROXY header + the peeked ClientHello bytes) to the
/// backend, then moves bytes both ways until both sides closed, keeping half-close.
/// Ends on idle timeout or on an error on either side; both sockets are closed when
/// this returns.
pub async fn relay(
    mut client: TcpStream,
    mut backend: TcpStream,
    initial: &[u8],
    opts: &RelayOptions,
    counters: &TrafficCounters,
) -> Transfer {
    let activity = Activity::new();
    let c2b = Tally {
        activity: &activity,
        relay: AtomicU64::new(0),
        route: &counters.client_to_backend,
    };
    let b2c = Tally {
        activity: &activity,
        relay: AtomicU64::new(0),
        route: &counters.backend_to_client,
    };

    let outcome = {
        let (client_rd, client_wr) = client.split();
        let (backend_rd, backend_wr) = backend.split();
        let to_backend = async {
            let mut backend_wr = backend_wr;
            if !initial.is_empty() {
                backend_wr
                    .write_all(initial)
                    .await
                    .map_err(Failure::Backend)?;
                c2b.add(initial.len() as u64);
            }
            one_way(client_rd, backend_wr, opts.use_splice, &c2b)
                .await
                .map_err(|e| match e {
                    PumpError::Read(e) => Failure::Client(e),
                    PumpError::Write(e) => Failure::Backend(e),
                })
        };
        let to_client = async {
            one_way(backend_rd, client_wr, opts.use_splice, &b2c)
                .await
                .map_err(|e| match e {
                    PumpError::Read(e) => Failure::Backend(e),
                    PumpError::Write(e) => Failure::Client(e),
                })
        };
        tokio::pin!(to_backend, to_client);
        let (mut c2b_done, mut b2c_done) = (false, false);
        loop {
            let finished = tokio::select! {
                r = &mut to_backend, if !c2b_done => { c2b_done = true; r }
                r = &mut to_client, if !b2c_done => { b2c_done = true; r }
                () = activity.idle_for(opts.idle_timeout) => break RelayOutcome::IdleTimeout,
            };
            match finished {
                Err(Failure::Client(e)) => break RelayOutcome::ClientError(e),
                Err(Failure::Backend(e)) => break RelayOutcome::BackendError(e),
                Ok(()) if c2b_done && b2c_done => break RelayOutcome::Closed,
                Ok(()) => {}
            }
        }
    };

    // The failing side is gone; a reset tells the other side that the stream broke
    // rather than ended (a FIN would look like a clean, possibly truncated, end).
    match &outcome {
        RelayOutcome::ClientError(_) => {
            let _ = backend.set_zero_linger();
        }
        RelayOutcome::BackendError(_) => {
            let _ = client.set_zero_linger();
        }
        RelayOutcome::Closed | RelayOutcome::IdleTimeout => {}
    }
    Transfer {
        client_to_backend: c2b.relay.load(Ordering::Relaxed),
        backend_to_client: b2c.relay.load(Ordering::Relaxed),
        outcome,
    }
}

/// Moves one direction until its source ends, then passes the FIN on.
async fn one_way(
    mut src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    use_splice: bool,
    tally: &Tally<'_>,
) -> Result<(), PumpError> {
    pump(&mut src, &mut dst, use_splice, tally).await?;
    match dst.shutdown().await {
        // The peer already reset or closed fully: nothing left to tell it.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        Err(e) => Err(PumpError::Write(e)),
        Ok(()) => Ok(()),
    }
}

#[cfg(target_os = "linux")]
async fn pump(
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    use_splice: bool,
    tally: &Tally<'_>,
) -> Result<(), PumpError> {
    if use_splice {
        // Out of descriptors for a pipe: this connection still works, by copying.
        if let Ok(pipe) = crate::splice::SplicePipe::new() {
            let (src_stream, dst_stream): (&TcpStream, &TcpStream) = (src.as_ref(), dst.as_ref());
            return crate::splice::splice_one_way(src_stream, dst_stream, &pipe, |n| tally.add(n))
                .await;
        }
    }
    copy_portable(src, dst, tally).await
}

#[cfg(not(target_os = "linux"))]
async fn pump(
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    _use_splice: bool,
    tally: &Tally<'_>,
) -> Result<(), PumpError> {
    copy_portable(src, dst, tally).await
}

/// Reads into one buffer reused for the life of the direction and writes it out.
async fn copy_portable(
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    tally: &Tally<'_>,
) -> Result<(), PumpError> {
    let mut buf = vec![0u8; PORTABLE_BUFFER];
    loop {
        let n = src.read(&mut buf).await.map_err(PumpError::Read)?;
        if n == 0 {
            return Ok(());
        }
        let chunk = buf.get(..n).unwrap_or_default();
        dst.write_all(chunk).await.map_err(PumpError::Write)?;
        tally.add(n as u64);
    }
}
