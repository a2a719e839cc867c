//! The verifier's network code: TLS connections that keep the certificate the server
//! presented, and HTTP/1.1 requests over them.
//!
//! Trust does not come from the Web PKI here: the certificate that verigated presents is
//! checked against the manifest bound into the TEE report. So `--allow-insecure-tls` only
//! skips the PKI chain (verigated's certificate is usually self-signed); the TLS
//! handshake signature is always verified, so whoever answers does hold the key of the
//! certificate it presented, and that certificate is what attestation then pins.
//! Without it, chains are checked against [`Trust::Roots`]; on the own endpoint's
//! `verigate/1` connection the name check may wait for the evidence ([`crate::pki`]).

use attest::tls::SignatureOnlyVerifier;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use sha2::{Digest, Sha256};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The most the CLI reads of one response: evidence carries the whole IMA log and a
/// snapshot every file hash, so this is generous, but a hostile server cannot make the
/// CLI allocate without bound.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection or request failed. All of these mean "the check could not run".
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--url `{url}`: {why} (expected https://HOST[:PORT])")]
    BadUrl { url: String, why: &'static str },
    #[error("`{0}`: expected HOST:PORT")]
    BadAddress(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {addr}: no answer within {secs} s")]
    ConnectTimeout { addr: String, secs: u64 },
    #[error("TLS handshake with {name} at {addr}: {source}")]
    Handshake {
        name: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("{name} at {addr} presented no certificate")]
    NoCertificate { name: String, addr: String },
    #[error("`{0}` is not a valid TLS server name")]
    BadServerName(String),
    #[error("HTTP to {addr}: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("HTTP response from {addr} is larger than {limit} bytes")]
    ResponseTooLarge { addr: String, limit: usize },
    #[error("client certificate `{path}`: {reason}")]
    ClientIdentity { path: String, reason: String },
    #[error(
        "{name} at {addr}: its certificate is not valid for `{name}`, and the server did not \
         answer as verigated's own endpoint (ALPN verigate/1), whose name the attestation checks"
    )]
    NotValidForName { name: String, addr: String },
}

/// How the own endpoint's certificate was checked against the Web PKI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkiName {
    /// `--allow-insecure-tls`: not at all (attestation pins the certificate).
    Skipped,
    /// A trusted chain, valid for the name dialed.
    Dialed,
    /// A trusted chain, not valid for the name dialed, which is a routed name reached
    /// through ALPN `verigate/1`: the leaf must be valid for the attested `domain`,
    /// which only the evidence names ([`crate::pki::check_deferred_name`]).
    Deferred,
}

/// A client certificate chain and its key, presented to verigated when it asks (app
/// control accepts certificates issued by its `[api] client_ca`).
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key.
    pub fn load(
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<ClientIdentity, ClientError> {
        let err = |path: &std::path::Path, reason: String| ClientError::ClientIdentity {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(cert).map_err(|e| err(cert, e.to_string()))?;
        let chain = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(err(cert, "no CERTIFICATE block".into()));
        }
        let pem = std::fs::read(key).map_err(|e| err(key, e.to_string()))?;
        let key_der = rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| err(key, e.to_string()))?
            .ok_or_else(|| err(key, "no PRIVATE KEY block".into()))?;
        Ok(ClientIdentity {
            chain,
            key: key_der,
        })
    }
}

/// Where verigated's own endpoint is, from `--url https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The name sent as SNI (and checked against the certificate when PKI is on).
    pub host: String,
    pub port: u16,
}

impl FromStr for Endpoint {
    type Err = ClientError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |why| ClientError::BadUrl {
            url: url.to_string(),
            why,
        };
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("only https:// URLs"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if rest.len() > authority.len() + 1 {
            return Err(bad("a path is not allowed; give the root URL"));
        }
        let (host, port) = split_host_port(authority, 443).map_err(|_| bad("bad host or port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Endpoint { host, port })
    }
}

/// Splits `host[:port]` (with `[v6]` brackets allowed), using `default_port` when absent.
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), ClientError> {
    let bad = || ClientError::BadAddress(s.to_string());
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_string(), port.parse().map_err(|_| bad())?)),
        None => Ok((s.to_string(), default_port)),
    }
}

/// What a server's certificate chain is checked against.
#[derive(Clone, Debug)]
pub enum Trust {
    /// `--allow-insecure-tls`: no chain check, only the handshake signature.
    SignatureOnly,
    /// The Web PKI: Mozilla's roots and any `--ca-cert` roots.
    Roots(Arc<rustls::RootCertStore>),
}

/// TLS settings shared by every connection the CLI opens.
#[derive(Clone)]
pub struct TlsOptions {
    /// How certificates are checked.
    pub trust: Trust,
    /// Send every TCP connection here instead of resolving the name (like curl's
    /// `--connect-to`), for when DNS does not point at the VM.
    pub connect_to: Option<String>,
}

impl TlsOptions {
    /// The config of one handshake. `name_deferred`, on the own endpoint's connection,
    /// lets a chain that is trusted but not valid for the dialed name through and marks
    /// it (see [`crate::pki`]).
    fn client_config(
        &self,
        alpn: &[&[u8]],
        identity: Option<&ClientIdentity>,
        name_deferred: Option<Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match (&self.trust, name_deferred) {
            (Trust::SignatureOnly, _) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SignatureOnlyVerifier::new(provider))),
            (Trust::Roots(roots), None) => builder.with_root_certificates(Arc::clone(roots)),
            (Trust::Roots(roots), Some(flag)) => {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(
                        crate::pki::OwnEndpointVerifier::new(provider, Arc::clone(roots), flag),
                    ))
            }
        };
        let mut config = match identity {
            Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The TCP address for a connection to `host:port`.
    fn dial_address(&self, host: &str, port: u16) -> String {
        match &self.connect_to {
            Some(addr) => addr.clone(),
            None if host.contains(':') => format!("[{host}]:{port}"),
            None => format!("{host}:{port}"),
        }
    }
}

async fn tls_connect(
    name: &str,
    port: u16,
    opts: &TlsOptions,
    alpn: &[&[u8]],
    identity: Option<&ClientIdentity>,
    name_deferred: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, String), ClientError> {
    let addr = opts.dial_address(name, port);
    let config = opts
        .client_config(alpn, identity, name_deferred)
        .map_err(|e| ClientError::ClientIdentity {
            path: "--client-cert/--client-key".into(),
            reason: e.to_string(),
        })?;
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(ClientError::Connect { addr, source }),
        Err(_) => {
            return Err(ClientError::ConnectTimeout {
                addr,
                secs: CONNECT_TIMEOUT.as_secs(),
            })
        }
    };
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| ClientError::BadServerName(name.to_string()))?;
    let connector = TlsConnector::from(config);
    let handshake = connector.connect(server_name, tcp);
    let tls = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(source)) => {
            return Err(ClientError::Handshake {
                name: name.to_string(),
                addr,
                source,
            })
        }
        Err(_) => {
            return Err(ClientError::ConnectTimeout {
                addr,
                secs: CONNECT_TIMEOUT.as_secs(),
            })
        }
    };
    Ok((tls, addr))
}

fn leaf_of(
    tls: &tokio_rustls::client::TlsStream<TcpStream>,
    name: &str,
    addr: &str,
) -> Result<CertificateDer<'static>, ClientError> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| ClientError::NoCertificate {
            name: name.to_string(),
            addr: addr.to_string(),
        })
}

/// SHA-256 of a DER certificate, the form the manifest stores.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// A TLS handshake with `name` as SNI, returning the leaf certificate the server
/// presented (DER). Used for each `--application`.
pub async fn presented_leaf(
    name: &str,
    port: u16,
    opts: &TlsOptions,
) -> Result<CertificateDer<'static>, ClientError> {
    let (tls, addr) = tls_connect(name, port, opts, &[], None, None).await?;
    leaf_of(&tls, name, &addr)
}

/// Whether a handshake failed because the server knows none of the offered ALPN ids.
fn refused_alpn(e: &ClientError) -> bool {
    let ClientError::Handshake { source, .. } = e else {
        return false;
    };
    matches!(
        source
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::NoApplicationProtocol
        ))
    )
}

/// An HTTP answer, already read whole (bounded by [`MAX_RESPONSE_BYTES`]).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One TLS connection to verigated's own endpoint, kept open so that what the CLI sends
/// after verification goes to the very certificate that was just attested.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    leaf: CertificateDer<'static>,
    pki: PkiName,
    endpoint: Endpoint,
    addr: String,
}

impl Connection {
    pub async fn open(endpoint: &Endpoint, opts: &TlsOptions) -> Result<Connection, ClientError> {
        Connection::open_as(endpoint, opts, None).await
    }

    /// [`Connection::open`], presenting `identity` when verigated asks for a client
    /// certificate.
    pub async fn open_as(
        endpoint: &Endpoint,
        opts: &TlsOptions,
        identity: Option<&ClientIdentity>,
    ) -> Result<Connection, ClientError> {
        // `verigate/1` alone asks for the own endpoint even when `--url` names a hosted
        // application (ARCHITECTURE.md, "Routing a connection"); it carries HTTP/1.1. A
        // server that does not know it (an older verigated, a TLS-terminating proxy)
        // refuses the handshake with `no_application_protocol`: then `http/1.1` is
        // offered, as before, and attestation decides as always.
        const OWN: &[&[u8]] = &[attest::evidence::OWN_ENDPOINT_ALPN];
        const HTTP1: &[&[u8]] = &[b"http/1.1"];
        // Only the `verigate/1` handshake may defer the name check: its certificate is
        // the own endpoint's, which the checks compare with the attested `domain`.
        let deferred = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tls, addr) = match tls_connect(
            &endpoint.host,
            endpoint.port,
            opts,
            OWN,
            identity,
            Some(Arc::clone(&deferred)),
        )
        .await
        {
            Err(e) if refused_alpn(&e) => {
                tls_connect(&endpoint.host, endpoint.port, opts, HTTP1, identity, None).await?
            }
            r => r?,
        };
        let pki = match opts.trust {
            Trust::SignatureOnly => PkiName::Skipped,
            Trust::Roots(_) if !deferred.load(std::sync::atomic::Ordering::SeqCst) => {
                PkiName::Dialed
            }
            // Deferred, so it must have been the own endpoint that answered: a server
            // that negotiated no ALPN is not, and nothing more is sent to it.
            Trust::Roots(_) if tls.get_ref().1.alpn_protocol() == Some(OWN[0]) => PkiName::Deferred,
            Trust::Roots(_) => {
                return Err(ClientError::NotValidForName {
                    name: endpoint.host.clone(),
                    addr,
                })
            }
        };
        let leaf = leaf_of(&tls, &endpoint.host, &addr)?;
        let io = hyper_util::rt::TokioIo::new(tls);
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|source| ClientError::Http {
                addr: addr.clone(),
                source,
            })?;
        // The connection task ends when the sender is dropped or the server closes.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            sender,
            leaf,
            pki,
            endpoint: endpoint.clone(),
            addr,
        })
    }

    /// How this connection's certificate was checked against the Web PKI.
    pub fn pki(&self) -> PkiName {
        self.pki
    }

    /// The leaf certificate verigated presented on this connection (DER).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.leaf
    }

    /// Where this connection went (`--url`).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one request and reads the whole answer. `bearer` adds an
    /// `Authorization: Bearer` header; `body` is sent as `application/octet-stream` unless
    /// it parses as JSON.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Result<Response, ClientError> {
        let http_err = |source| ClientError::Http {
            addr: self.addr.clone(),
            source,
        };
        self.sender.ready().await.map_err(http_err)?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.endpoint.host.as_str());
        if let Some(token) = bearer {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(b) => {
                let ct = if serde_json::from_slice::<serde_json::Value>(&b).is_ok() {
                    "application/json"
                } else {
                    "application/octet-stream"
                };
                req = req.header(hyper::header::CONTENT_TYPE, ct);
                Bytes::from(b)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .expect("method, path and headers come from this module and are valid");
        let res = self.sender.send_request(req).await.map_err(http_err)?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(source) => ClientError::Http {
                    addr: self.addr.clone(),
                    source: *source,
                },
                Err(_) => ClientError::ResponseTooLarge {
                    addr: self.addr.clone(),
                    limit: MAX_RESPONSE_BYTES,
                },
            })?
            .to_bytes();
        Ok(Response { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parses_host_and_port() {
        let e: Endpoint = "https://vm.example.com:8443".parse().unwrap();
        assert_eq!(
            e,
            Endpoint {
                host: "vm.example.com".into(),
                port: 8443
            }
        );
        let e: Endpoint = "https://vm.example.com/".parse().unwrap();
        assert_eq!(e.port, 443);
        let e: Endpoint = "https://[::1]:9443".parse().unwrap();
        assert_eq!(
            e,
            Endpoint {
                host: "::1".into(),
                port: 9443
            }
        );
    }

    #[test]
    fn endpoint_refuses_what_it_cannot_use() {
        for bad in [
            "http://vm.example.com",
            "vm.example.com",
            "https://",
            "https://vm:notaport",
            "https://vm.example.com/v1/attestation",
            "https://[::1",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn connect_to_overrides_the_dialed_address() {
        let opts = TlsOptions {
            trust: Trust::SignatureOnly,
            connect_to: Some("127.0.0.1:9".into()),
        };
        assert_eq!(opts.dial_address("a.example.com", 443), "127.0.0.1:9");
        let opts = TlsOptions {
            trust: Trust::SignatureOnly,
            connect_to: None,
        };
        assert_eq!(opts.dial_address("a.example.com", 443), "a.example.com:443");
        assert_eq!(opts.dial_address("::1", 443), "[::1]:443");
    }
}
