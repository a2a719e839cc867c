//! The HTTP client instant-acme talks to the CA through: a [`crate::outbound`]
//! connection per request, trusting `[gateway.acme] ca_bundle` when set, else Mozilla's
//! roots. Written here rather than taking instant-acme's hyper-rustls client, which
//! brings the platform verifier and, by default, aws-lc-rs as a second crypto provider.
//!
//! Each exchange is bounded in time ([`REQUEST_TIMEOUT`]) and its body in size
//! ([`MAX_BODY_BYTES`]), so a slow or hostile directory cannot stall the renewal task or
//! fill memory.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use http_body_util::Limited;
use hyper::body::Bytes;
use hyper::{Request, Uri};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use crate::outbound::{Client, Connection};

/// The most one request may take, connect to last header.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body accepted (a certificate chain is a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The client handed to instant-acme.
#[derive(Debug, Clone)]
pub struct AcmeHttp {
    client: Client,
}

impl AcmeHttp {
    /// A client trusting the certificates of `ca_bundle`, or Mozilla's roots without one.
    pub fn new(ca_bundle: Option<&Path>) -> Result<AcmeHttp, super::AcmeError> {
        let roots = match ca_bundle {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in crate::certificate::read_certificate_chain(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| super::AcmeError::CaBundle(e.to_string()))?;
                }
                roots
            }
            None => Client::web_pki_roots(),
        };
        let client =
            Client::trusting(roots).map_err(|e| super::AcmeError::CaBundle(e.to_string()))?;
        Ok(AcmeHttp { client })
    }
}

fn other(why: impl Into<String>) -> instant_acme::Error {
    instant_acme::Error::Other(why.into().into())
}

async fn send(
    client: Client,
    req: Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, instant_acme::Error> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err(other(format!(
            "{uri}: the ACME CA must be reached over https"
        )));
    }
    let host = uri.host().ok_or_else(|| other(format!("{uri}: no host")))?;
    let port = uri.port_u16().unwrap_or(443);
    // The driver ends once the response is read and the sender dropped.
    let Connection { mut sender, .. } = client
        .connect(true, host, port)
        .await
        .map_err(|e| other(format!("{uri}: {e}")))?;
    let (mut parts, body) = req.into_parts();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    parts.uri = uri.path_and_query().map_or_else(
        || Uri::from_static("/"),
        |p| p.as_str().parse().unwrap_or_else(|_| Uri::from_static("/")),
    );
    parts.headers.insert(
        hyper::header::HOST,
        authority
            .parse()
            .map_err(|_| other(format!("{uri}: bad authority")))?,
    );
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| other(format!("{uri}: {e}")))?;
    Ok(BytesResponse::from(
        response.map(|body| Limited::new(body, MAX_BODY_BYTES)),
    ))
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let uri = req.uri().to_string();
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, send(client, req)).await {
                Ok(result) => result,
                Err(_) => Err(other(format!(
                    "{uri}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn get(url: &str) -> Request<BodyWrapper<Bytes>> {
        Request::get(url).body(BodyWrapper::default()).unwrap()
    }

    #[tokio::test]
    async fn plain_http_is_refused_and_a_closed_port_is_an_error() {
        let client = AcmeHttp::new(None).unwrap();
        let e = client
            .request(get("http://127.0.0.1:1/dir"))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("https"), "{e}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = client
            .request(get(&format!("https://{addr}/dir")))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("connect"), "{e}");
    }

    /// A stand-in for a hostile ACME directory: TLS with a certificate for 127.0.0.1
    /// (written to `dir/ca.pem`, for `ca_bundle`), answering every request with the
    /// status line and headers of `head`, then `body_len` bytes.
    async fn hostile_directory(dir: &Path, head: &'static str, body_len: usize) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = [0u8; 4096];
                    let _ = tls.read(&mut request).await;
                    let _ = tls.write_all(head.as_bytes()).await;
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut left = body_len;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if tls.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        format!("https://{addr}/dir")
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_and_one_under_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let huge = MAX_BODY_BYTES + 1;
        let url = hostile_directory(
            dir.path(),
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n",
            huge,
        )
        .await;
        let client = AcmeHttp::new(Some(&dir.path().join("ca.pem"))).unwrap();
        let mut response = client.request(get(&url)).await.unwrap();
        let e = response.body.into_bytes().await.unwrap_err();
        assert!(e.to_string().contains("length limit exceeded"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let url = hostile_directory(
            dir.path(),
            "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n",
            1000,
        )
        .await;
        let client = AcmeHttp::new(Some(&dir.path().join("ca.pem"))).unwrap();
        let mut response = client.request(get(&url)).await.unwrap();
        assert_eq!(response.body.into_bytes().await.unwrap().len(), 1000);
    }

    #[tokio::test]
    async fn a_directory_that_is_not_trusted_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = hostile_directory(dir.path(), "HTTP/1.1 200 OK\r\n\r\n", 0).await;
        // Mozilla's roots, not the stand-in's certificate.
        let client = AcmeHttp::new(None).unwrap();
        let e = client.request(get(&url)).await.err().unwrap();
        assert!(e.to_string().contains("TLS"), "{e}");
    }

    #[test]
    fn an_unreadable_ca_bundle_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "no certificate").unwrap();
        let e = AcmeHttp::new(Some(&path)).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
    }
}
