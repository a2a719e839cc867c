//! Real TLS peers for tests: backends with their own self-signed certificate (rcgen) that
//! answer with their name, and a rustls client that keeps the leaf certificate it was
//! shown, so a test can tell which backend answered through a gateway.
//!
//! The client is blocking (std sockets) and lets the test write the ClientHello bytes
//! itself (in several segments, one byte at a time, re-framed as several records), since
//! that is what the gateway's peek has to survive. Backends run on their own thread with
//! their own tokio runtime, so they serve both `#[test]` and `#[tokio::test]` functions,
//! and stop when dropped.
//!
//! Backend protocol, after the TLS handshake: if the client's first bytes are an HTTP
//! request (`GET `), it answers `200` with the body `hello from NAME\n` and closes (curl
//! works against it). Otherwise it writes `hello from NAME\n`, echoes every byte it reads
//! until the client ends its side, then closes its own side (so half-close is visible).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The crypto provider every peer here uses (ring, as verigated does).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A fresh self-signed certificate and its key for `name`.
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The certificate's private key, PKCS#8 DER.
    pub key: PrivateKeyDer<'static>,
    /// The certificate, PEM, for a file a program reads.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// Generates a self-signed leaf for `name` (ECDSA P-256, SAN = name).
pub fn self_signed(name: &str) -> anyhow::Result<SelfSigned> {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_string()])
        .with_context(|| format!("generating a certificate for {name}"))?;
    Ok(SelfSigned {
        cert: certified.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der())),
        cert_pem: certified.cert.pem(),
        key_pem: certified.key_pair.serialize_pem(),
    })
}

/// A TLS backend on a free port of 127.0.0.1 with its own certificate; stops on drop.
pub struct TlsBackend {
    /// The name its certificate carries and its greeting names.
    pub name: String,
    /// The loopback address it listens on, to route a name to.
    pub addr: SocketAddr,
    /// Its self-signed certificate, for a client to trust or to compare with what it got.
    pub cert: CertificateDer<'static>,
    /// The certificate's private key, PKCS#8 PEM (so a renewal can keep it).
    pub key_pem: String,
    _server: crate::serve::Server,
}

/// A new self-signed leaf for `name` under an existing key (PKCS#8 PEM), as a renewal
/// with `certbot --reuse-key` makes: another certificate (a fresh serial), the same key.
pub fn self_signed_with_key(name: &str, key_pem: &str) -> anyhow::Result<SelfSigned> {
    let key_pair = rcgen::KeyPair::from_pem(key_pem).context("reading the key to reuse")?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    let mut serial = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params
        .self_signed(&key_pair)
        .with_context(|| format!("signing a certificate for {name}"))?;
    Ok(SelfSigned {
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der())),
        cert_pem: cert.pem(),
        key_pem: key_pair.serialize_pem(),
    })
}

/// A private certificate authority, as a company runs for its internal names: a root
/// for clients to trust (`--ca-cert`) and leaves it issues. `SelfSigned` holds a leaf
/// here even though a CA signed it: the fields are the same.
pub struct PrivateCa {
    /// The root certificate, PEM.
    pub cert_pem: String,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl PrivateCa {
    /// A new root (ECDSA P-256, CA without a path length limit).
    pub fn new() -> anyhow::Result<PrivateCa> {
        let key = rcgen::KeyPair::generate().context("generating the CA key")?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "verigate test root");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).context("signing the CA")?;
        Ok(PrivateCa {
            cert_pem: cert.pem(),
            cert,
            key,
        })
    }

    /// A server leaf for `names` (SANs) with a fresh key, signed by this root.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<SelfSigned> {
        let key = rcgen::KeyPair::generate().context("generating a leaf key")?;
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>(),
        )?;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .with_context(|| format!("issuing a certificate for {names:?}"))?;
        Ok(SelfSigned {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl TlsBackend {
    /// Starts a backend whose certificate names `name` and that greets with it.
    pub fn start(name: &str) -> anyhow::Result<TlsBackend> {
        TlsBackend::serve(self_signed(name)?, name)
    }

    /// Starts a backend for `name` with a new certificate for `key_pem`'s key: a renewal
    /// that keeps the key.
    pub fn start_with_key(name: &str, key_pem: &str) -> anyhow::Result<TlsBackend> {
        TlsBackend::serve(self_signed_with_key(name, key_pem)?, name)
    }

    /// Starts a backend for `name` serving `identity` (replicas of one application
    /// share one certificate and key).
    pub fn start_with(name: &str, identity: &SelfSigned) -> anyhow::Result<TlsBackend> {
        let leaf = SelfSigned {
            cert: identity.cert.clone(),
            key: identity.key.clone_key(),
            cert_pem: identity.cert_pem.clone(),
            key_pem: identity.key_pem.clone(),
        };
        TlsBackend::serve(leaf, name)
    }

    fn serve(leaf: SelfSigned, name: &str) -> anyhow::Result<TlsBackend> {
        let SelfSigned {
            cert, key, key_pem, ..
        } = leaf;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let greeting = format!("hello from {name}\n");
        let server = crate::serve::Server::start(&format!("backend {name}"), move |tcp| {
            let acceptor = acceptor.clone();
            let greeting = greeting.clone();
            async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = serve_one(tls, &greeting).await;
                }
            }
        })?;
        Ok(TlsBackend {
            name: name.to_string(),
            addr: server.addr(),
            cert,
            key_pem,
            _server: server,
        })
    }
}

async fn serve_one(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    greeting: &str,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let n = tls.read(&mut buf).await?;
    let first = buf.get(..n).unwrap_or_default();
    if first.starts_with(b"GET ") || first.starts_with(b"HEAD ") {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{greeting}",
            greeting.len()
        );
        tls.write_all(response.as_bytes()).await?;
        return tls.shutdown().await;
    }
    tls.write_all(greeting.as_bytes()).await?;
    tls.write_all(first).await?;
    if n > 0 {
        loop {
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            tls.write_all(buf.get(..n).unwrap_or_default()).await?;
        }
    }
    tls.shutdown().await
}

/// Accepts any server certificate (the tests identify backends by it) while still
/// checking the handshake signatures with the provider's algorithms.
#[derive(Debug)]
pub struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls client configuration that accepts any certificate and offers `alpn`.
pub fn client_config(alpn: &[&str]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// How the client puts its first flight (the ClientHello record) on the wire.
pub enum HelloDelivery {
    /// One write.
    Whole,
    /// `n` writes of about equal size, `pause` apart (Nagle off, so separate segments).
    Segments {
        /// How many writes.
        n: usize,
        /// Time between two writes.
        pause: Duration,
    },
    /// One byte per write.
    ByteByByte,
    /// The hello's handshake message cut into two TLS records, written in one go.
    TwoRecords,
}

/// A TLS session through the gateway, with what the server presented.
pub struct Session {
    /// The client end of the TLS session, over the TCP connection to the gateway.
    pub stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    /// The leaf certificate the server presented.
    pub cert: CertificateDer<'static>,
    /// The ALPN protocol the server chose, if any.
    pub alpn: Option<Vec<u8>>,
}

impl Session {
    /// Sends `ping\n` and reads the backend's greeting line and the echo: the greeting
    /// names the backend (`hello from NAME`).
    pub fn greeting(&mut self) -> anyhow::Result<String> {
        self.stream.write_all(b"ping\n")?;
        self.stream.flush()?;
        let greeting = read_line(&mut self.stream)?;
        let echo = read_line(&mut self.stream)?;
        if echo != "ping" {
            bail!("expected the echo `ping`, got `{echo}`");
        }
        Ok(greeting)
    }
}

/// Reads one `\n`-terminated line (without the newline), byte by byte.
pub fn read_line(r: &mut impl Read) -> anyhow::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte)? {
            0 => bail!(
                "connection ended before a full line (got `{}`)",
                String::from_utf8_lossy(&line)
            ),
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
        if line.len() > 64 * 1024 {
            bail!("line longer than 64 KiB");
        }
    }
    Ok(String::from_utf8(line)?)
}

/// Connects to `addr` and completes a TLS handshake with `sni` (no SNI when `None`),
/// offering `alpn`, writing the ClientHello as `delivery` says. Fails when the gateway
/// closes or the handshake fails.
pub fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: &[&str],
    delivery: HelloDelivery,
) -> anyhow::Result<Session> {
    connect_prefixed(addr, &[], sni, alpn, delivery)
}

/// Like [`connect`], writing `prefix` (a PROXY header, say) before the ClientHello.
pub fn connect_prefixed(
    addr: SocketAddr,
    prefix: &[u8],
    sni: Option<&str>,
    alpn: &[&str],
    delivery: HelloDelivery,
) -> anyhow::Result<Session> {
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("connecting {addr}"))?;
    connect_over(sock, prefix, sni, alpn, delivery)
}

/// Like [`connect_prefixed`], over `sock`, already connected (from a chosen source
/// address, say).
pub fn connect_over(
    mut sock: TcpStream,
    prefix: &[u8],
    sni: Option<&str>,
    alpn: &[&str],
    delivery: HelloDelivery,
) -> anyhow::Result<Session> {
    let addr = sock.peer_addr()?;
    let mut config = (*client_config(alpn)?).clone();
    let name = match sni {
        Some(name) => {
            ServerName::try_from(name.to_string()).map_err(|e| anyhow!("SNI {name}: {e}"))?
        }
        None => {
            config.enable_sni = false;
            ServerName::IpAddress(addr.ip().into())
        }
    };
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    sock.set_write_timeout(Some(Duration::from_secs(30)))?;

    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello)?;
    }
    if !prefix.is_empty() {
        sock.write_all(prefix)?;
    }
    write_hello(&mut sock, &hello, delivery)?;

    let mut stream = rustls::StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .context("TLS handshake through the gateway")?;
    }
    let cert = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or_else(|| anyhow!("the server presented no certificate"))?;
    let alpn = stream.conn.alpn_protocol().map(<[u8]>::to_vec);
    Ok(Session { stream, cert, alpn })
}

/// Writes the first flight as `delivery` says.
pub fn write_hello(sock: &mut TcpStream, hello: &[u8], delivery: HelloDelivery) -> io::Result<()> {
    match delivery {
        HelloDelivery::Whole => sock.write_all(hello),
        HelloDelivery::Segments { n, pause } => {
            let size = hello.len().div_ceil(n.max(1)).max(1);
            for (i, chunk) in hello.chunks(size).enumerate() {
                if i > 0 {
                    std::thread::sleep(pause);
                }
                sock.write_all(chunk)?;
                sock.flush()?;
            }
            Ok(())
        }
        HelloDelivery::ByteByByte => {
            for b in hello {
                sock.write_all(std::slice::from_ref(b))?;
            }
            Ok(())
        }
        HelloDelivery::TwoRecords => sock.write_all(&split_into_two_records(hello)?),
    }
}

/// Re-frames a first flight holding one handshake record into two records that split
/// the handshake message in the middle (RFC 8446 §5.1 allows it; rustls, OpenSSL and
/// nginx accept it).
pub fn split_into_two_records(flight: &[u8]) -> io::Result<Vec<u8>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let header = flight
        .get(..5)
        .ok_or_else(|| bad("flight shorter than a record header"))?;
    if header[0] != 22 {
        return Err(bad("first record is not a handshake record"));
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let payload = flight
        .get(5..5 + len)
        .ok_or_else(|| bad("record longer than the flight"))?;
    let rest = flight.get(5 + len..).unwrap_or_default();
    let (first, second) = payload.split_at(len / 2);
    let mut out = Vec::with_capacity(flight.len() + 5);
    for part in [first, second] {
        let part_len = u16::try_from(part.len()).map_err(|_| bad("record fragment over 64 KiB"))?;
        out.extend_from_slice(&header[..3]);
        out.extend_from_slice(&part_len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// The ClientHello record a rustls client would send for `sni` (for tests that write
/// hellos by hand: oversized, stalled, behind a PROXY header).
pub fn client_hello_bytes(sni: Option<&str>, alpn: &[&str]) -> anyhow::Result<Vec<u8>> {
    let mut config = (*client_config(alpn)?).clone();
    let name = match sni {
        Some(name) => ServerName::try_from(name.to_string())?,
        None => {
            config.enable_sni = false;
            ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
        }
    };
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello)?;
    }
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_answers_with_its_name_and_certificate() {
        let backend = TlsBackend::start("one.test").unwrap();
        for delivery in [
            HelloDelivery::Whole,
            HelloDelivery::TwoRecords,
            HelloDelivery::ByteByByte,
        ] {
            let mut session = connect(backend.addr, Some("one.test"), &[], delivery).unwrap();
            assert_eq!(session.cert, backend.cert);
            assert_eq!(session.greeting().unwrap(), "hello from one.test");
        }
    }

    #[test]
    fn two_records_keep_the_bytes() {
        let hello = client_hello_bytes(Some("x.test"), &["h2"]).unwrap();
        let split = split_into_two_records(&hello).unwrap();
        assert_eq!(split.len(), hello.len() + 5);
        assert!(split_into_two_records(&[22, 3, 1]).is_err());
        assert!(split_into_two_records(&[23, 3, 3, 0, 1, 0]).is_err());
    }
}
