//! The one way verigated opens an HTTP connection to a service outside the VM (the ACME
//! CA, AMD's KDS, Intel's PCS or a PCCS, Azure's instance metadata service): TCP, then
//! rustls (ring) for `https://`, then hyper's HTTP/1.1 client. A fresh connection per
//! request: each of these services is asked a few times a day at most, and a kept
//! connection would only add state. Callers bound the exchange in time and the body in
//! size; this module only connects.

use std::sync::Arc;

use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The TLS settings of outbound connections.
#[derive(Debug, Clone)]
pub struct Client {
    tls: Arc<rustls::ClientConfig>,
}

/// An open HTTP/1.1 connection: the sender, and the task that drives the connection
/// (abort it once the response is read, or it ends with the sender).
pub struct Connection<B> {
    /// Sends the request.
    pub sender: SendRequest<B>,
    /// Drives the connection.
    pub driver: JoinHandle<()>,
}

impl Client {
    /// A client that trusts `roots` (a private CA's bundle, say).
    pub fn trusting(roots: rustls::RootCertStore) -> Result<Client, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client { tls: Arc::new(tls) })
    }

    /// Mozilla's roots, the Web PKI the public services are certified in.
    pub fn web_pki_roots() -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots
    }

    /// Connects `host:port` (a name or an address; an IPv6 address with or without its
    /// brackets), over TLS when `https`, and makes the HTTP/1.1 handshake. The error says
    /// which step failed.
    pub async fn connect<B>(
        &self,
        https: bool,
        host: &str,
        port: u16,
    ) -> Result<Connection<B>, String>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let host = host.trim_matches(['[', ']']);
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if !https {
            return handshake(tcp).await;
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        handshake(tls).await
    }
}

async fn handshake<S, B>(io: S) -> Result<Connection<B>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        // Its error, if any, reaches the caller through the sender.
        let _ = conn.await;
    });
    Ok(Connection { sender, driver })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use hyper::body::Bytes;

    #[tokio::test]
    async fn each_failing_step_is_named() {
        let client = Client::trusting(Client::web_pki_roots()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = client
            .connect::<Empty<Bytes>>(false, "127.0.0.1", port)
            .await
            .err()
            .unwrap();
        assert!(e.starts_with("connect:"), "{e}");

        // Something that accepts and closes at once: the TLS handshake fails.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let e = client
            .connect::<Empty<Bytes>>(true, "127.0.0.1", port)
            .await
            .err()
            .unwrap();
        assert!(e.starts_with("TLS:"), "{e}");
    }
}
