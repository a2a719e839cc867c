//! verigated's own TLS endpoint: rustls termination and the HTTP API behind it.
//!
//! The listener hands over a connection whose ClientHello it already read (SNI =
//! `gateway.domain`, or no SNI); [`serve`] replays those bytes into rustls, then serves
//! HTTP/1.1 or HTTP/2 (as ALPN chose) with hyper until the client leaves or the gateway
//! drains.

pub mod api;
pub mod app;
pub mod attestation;
pub mod bounds;
pub mod credential;
pub mod response;
mod services;
pub mod snapshot;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::config::connections::EndpointBounds;
use crate::tls::PrefixedStream;
use bounds::{Closing, Guarded, InFlight, SendBound};
pub use services::Services;

/// How a connection to the own endpoint ended badly.
#[derive(thiserror::Error, Debug)]
pub enum EndpointError {
    /// The TLS handshake with the client failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    /// The client did not finish the TLS handshake in the time given.
    #[error("TLS handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
    /// hyper failed while serving the connection; the text is hyper's (a client that
    /// stopped reading shows here as the `api.send_timeout` error).
    #[error("HTTP: {0}")]
    Http(String),
    /// Asked to close, the connection did not finish within its grace and was dropped.
    #[error("dropped: still open {grace:?} after closing for {}", why.outcome())]
    Dropped {
        /// Why it was asked to close.
        why: Closing,
        /// The grace that ran out.
        grace: Duration,
    },
}

/// How a connection to the own endpoint ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed it.
    ByClient,
    /// verigated closed it, for this reason, once its requests were answered.
    Closed(Closing),
}

/// Serves one client of the own endpoint: TLS with `acceptor`, then the API, within
/// `bounds` (see [`bounds`]). Returns when the client leaves, or when verigated closed
/// it: no request in flight for the idle limit, older than the lifetime, or `shutdown`
/// (whose requests in flight get `drain_grace`). A connection asked to close that does
/// not finish within its grace is dropped.
pub async fn serve(
    stream: PrefixedStream<TcpStream>,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    bounds: EndpointBounds,
    drain_grace: Duration,
    services: Arc<Services>,
) -> Result<Ended, EndpointError> {
    let mut shutdown = services.shutdown.clone();
    let stream = SendBound::new(stream, bounds.send_timeout);
    let tls = tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
        .await
        .map_err(|_| EndpointError::HandshakeTimeout(handshake_timeout))?
        .map_err(EndpointError::Handshake)?;
    // The client certificate rustls verified against `[api] client_ca`, for app control.
    let client_chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|chain| app::ClientChain(Arc::new(chain.to_vec())));
    let in_flight = InFlight::new();
    let service = {
        let in_flight = in_flight.clone();
        let request_timeout = bounds.request_timeout;
        hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            let guard = in_flight.start();
            if let Some(chain) = &client_chain {
                req.extensions_mut().insert(chain.clone());
            }
            let answer = tokio::time::timeout(request_timeout, api::handle(req, services.clone()));
            async move {
                let response = match answer.await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => response::json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "request timed out",
                        "not answered within api.request_timeout",
                    ),
                };
                Ok::<_, Infallible>(response.map(|body| Guarded::new(body, guard)))
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that opens a request and never finishes its headers must not hold a
    // connection slot forever; in HTTP/1 this also bounds the wait between requests.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout);
    // Pings find dead peers; few streams keep one client's share of work small.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(bounds.http2_keepalive_interval)
        .keep_alive_timeout(bounds.http2_keepalive_timeout)
        .max_concurrent_streams(bounds.http2_max_concurrent_streams);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let why = tokio::select! {
        r = conn.as_mut() => {
            return r.map(|()| Ended::ByClient).map_err(http_error)
        }
        () = crate::shutdown::stopping(&mut shutdown) => Closing::Shutdown,
        () = tokio::time::sleep(bounds.max_connection_lifetime) => Closing::Lifetime,
        // Before its first request a connection gets the header-read limit (an HTTP/2
        // client that sends its preface and nothing more); after, the idle limit.
        () = in_flight.quiet_for(bounds.header_read_timeout, bounds.idle_timeout) => Closing::Idle,
    };
    conn.as_mut().graceful_shutdown();
    let grace = bounds::close_grace(why, &in_flight, bounds.request_timeout, drain_grace);
    match tokio::time::timeout(grace, conn).await {
        Ok(r) => r.map(|()| Ended::Closed(why)).map_err(http_error),
        Err(_) => Err(EndpointError::Dropped { why, grace }),
    }
}

/// hyper's error with its causes: the cause says what happened ("the client took no
/// response bytes for 30s"), hyper's own text only where ("error writing a body").
fn http_error(e: Box<dyn std::error::Error + Send + Sync>) -> EndpointError {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    EndpointError::Http(text)
}
