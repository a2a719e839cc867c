//! TLS termination for verigated's own name: the rustls server configuration (ring
//! provider, ALPN `h2`, `http/1.1`, and `verigate/1`, which the verifier offers alone to
//! reach the own endpoint through a routed name and which carries HTTP/1.1) and [`PrefixedStream`], which hands rustls the
//! bytes the listener already read while peeking at the ClientHello before reading on
//! from the socket, so the handshake sees the client's stream from its first byte.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::certificate::OwnCertificate;
use passthrough::forward::TrafficCounters;

/// Why the own endpoint's TLS configuration cannot be built.
#[derive(thiserror::Error, Debug)]
pub enum TlsError {
    /// The key does not match the certificate, or rustls cannot use it.
    #[error("the own certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
    /// `[api] client_ca` cannot be read or holds no usable CA certificate.
    #[error("api.client_ca: {0}")]
    ClientCa(#[from] crate::app::AuthError),
}

/// The rustls server configuration of the own endpoint.
pub fn server_config(own: &OwnCertificate) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with_client_ca(own, None)
}

/// [`server_config`], and with `client_ca` set, a handshake that asks for a client
/// certificate and verifies one if sent (app control accepts it as a credential); a
/// client without one still connects, as attestation clients have none.
pub fn server_config_with_client_ca(
    own: &OwnCertificate,
    client_ca: Option<&std::path::Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            builder.with_client_cert_verifier(crate::app::auth::client_verifier(ca, provider)?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(own.chain.clone(), own.key.clone_key())?;
    config.alpn_protocols = vec![
        b"h2".to_vec(),
        b"http/1.1".to_vec(),
        attest::evidence::OWN_ENDPOINT_ALPN.to_vec(),
    ];
    Ok(Arc::new(config))
}

/// A stream that yields `prefix` first, then reads from `inner`; writes go to `inner`.
/// Bytes each way are added to `counters` as they move.
pub struct PrefixedStream<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
    counters: Vec<Arc<TrafficCounters>>,
}

impl<S> PrefixedStream<S> {
    /// `prefix` is what was already read from `inner`; `counters` receive the byte counts
    /// (client_to_backend = read from the client, backend_to_client = written to it).
    pub fn new(prefix: Vec<u8>, inner: S, counters: Vec<Arc<TrafficCounters>>) -> Self {
        PrefixedStream {
            prefix,
            pos: 0,
            inner,
            counters,
        }
    }

    fn count_read(&self, n: usize) {
        for c in &self.counters {
            c.client_to_backend.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    fn count_written(&self, n: usize) {
        for c in &self.counters {
            c.backend_to_client.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefixedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.prefix.get(this.pos..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.pos += n;
            if this.pos >= this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            this.count_read(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.count_read(buf.filled().len().saturating_sub(before));
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrefixedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.count_written(n);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_then_inner_and_counts() {
        let (a, mut b) = tokio::io::duplex(64);
        let counters = Arc::new(TrafficCounters::default());
        let mut s = PrefixedStream::new(b"hello ".to_vec(), a, vec![counters.clone()]);
        b.write_all(b"world").await.unwrap();
        drop(b.shutdown().await);
        let mut small = [0u8; 4];
        s.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hell");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut buf = [0u8; 16];
            while rest.len() < 7 {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert_eq!(rest, b"o world");
        s.write_all(b"xyz").await.unwrap();
        assert_eq!(counters.client_to_backend.load(Ordering::Relaxed), 11);
        assert_eq!(counters.backend_to_client.load(Ordering::Relaxed), 3);
    }
}
