//! verigated's own TLS endpoint: rustls termination and the HTTP API behind it.
//!
//! The listener hands over a connection whose ClientHello it already read (SNI =
//! `gateway.domain`, or no SNI); [`serve`] replays those bytes into rustls, then serves
//! HTTP/1.1 or HTTP/2 (as ALPN chose) with hyper until the client leaves or the gateway
//! drains.

pub mod api;
pub mod app;
pub mod attestation;
pub mod credential;
pub mod response;
mod services;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::tls::PrefixedStream;
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
    /// hyper failed while serving the connection; the text is hyper's.
    #[error("HTTP: {0}")]
    Http(String),
}

/// Serves one client of the own endpoint: TLS with `acceptor`, then the API. Returns
/// when the client leaves; on `shutdown`, or once the connection is `max_lifetime` old
/// (zero: no limit), finishes the requests in flight and closes.
pub async fn serve(
    stream: PrefixedStream<TcpStream>,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    max_lifetime: Duration,
    services: Arc<Services>,
) -> Result<(), EndpointError> {
    let mut shutdown = services.shutdown.clone();
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
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        if let Some(chain) = &client_chain {
            req.extensions_mut().insert(chain.clone());
        }
        api::handle(req, services.clone())
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that opens a request and never finishes its headers must not hold a
    // connection slot forever.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let lifetime = async {
        if max_lifetime.is_zero() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(max_lifetime).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = crate::shutdown::stopping(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        // API calls are short; a connection kept open past the idle timeout (a client
        // idling on keep-alive) is closed once its requests in flight are answered.
        () = lifetime => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    result.map_err(|e| EndpointError::Http(e.to_string()))
}
