//! A real HAProxy in front of a real verigated, each config of `haproxy-examples/` run
//! unchanged: SNI routing must survive the TLS passthrough, and with `send-proxy-v2`
//! verigated must log the client's own address, not HAProxy's.
//!
//! Peers: HAProxy 2.6 (Debian), the `verigated` binary, and TLS backends with distinct
//! self-signed certificates; the client keeps the certificate it was shown, which says
//! which backend answered. Skips with a message when `haproxy` is not installed.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use passthrough::proxy_protocol::{self, ProxyHeader};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use testkit::haproxy::{self, Haproxy};
use testkit::ports::{free_port, wait_for_listener};
use testkit::process::ChildGuard;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

/// Each test gives up after this long rather than hang; no timing is asserted.
const PATIENCE: Duration = Duration::from_secs(30);

/// A TLS backend answering `hello from <name>` to every connection, with its own
/// self-signed certificate for `name`. With `expects_proxy`, each connection must open
/// with a PROXY header (the route has `send_proxy_protocol = true`), kept in `headers`.
struct Backend {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    expects_proxy: bool,
    headers: Arc<Mutex<Vec<ProxyHeader>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_backend(name: &str) -> Backend {
    start_backend_with(name, false).await
}

async fn start_backend_with(name: &str, expects_proxy: bool) -> Backend {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let greeting = format!("hello from {name}\n");
    let headers = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let headers = headers.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let greeting = greeting.clone();
                let headers = headers.clone();
                tokio::spawn(async move {
                    if expects_proxy {
                        let Some(header) = read_proxy_header(&mut tcp).await else {
                            return;
                        };
                        headers.lock().unwrap().push(header);
                    }
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(greeting.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        })
    };
    Backend {
        addr,
        cert,
        expects_proxy,
        headers,
        task,
    }
}

/// Peeks until a whole PROXY header is there, then consumes exactly its bytes, so the
/// TLS handshake that follows starts on the ClientHello.
async fn read_proxy_header(tcp: &mut tokio::net::TcpStream) -> Option<ProxyHeader> {
    let mut buf = vec![0u8; proxy_protocol::V2_MAX_LEN];
    loop {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        match proxy_protocol::parse(&buf[..n]) {
            Ok(Some((header, len))) => {
                tcp.read_exact(&mut buf[..len]).await.ok()?;
                return Some(header);
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => return None,
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate and keeps it: the test identifies the backend by the
/// certificate, and checks the handshake signatures properly.
#[derive(Debug)]
struct KeepCertificate {
    seen: Mutex<Option<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for KeepCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(end_entity.clone().into_owned());
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a client saw: its own address, the certificate presented, the first line.
struct Seen {
    local: SocketAddr,
    sni: String,
    cert: CertificateDer<'static>,
    line: String,
}

/// Connects from 127.0.0.2 (HAProxy itself connects from 127.0.0.1, so the two are told
/// apart in verigated's log) and does a TLS handshake with `sni`.
async fn connect_as_client(to: SocketAddr, sni: &str) -> Result<Seen, String> {
    let verifier = Arc::new(KeepCertificate {
        seen: Mutex::new(None),
        provider: provider(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(to).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake for {sni}: {e}"))?;
    let mut line = String::new();
    // The backend closes after its greeting; a missing close_notify is not our concern.
    let _ = tls.read_to_string(&mut line).await;
    let cert = verifier
        .seen
        .lock()
        .unwrap()
        .clone()
        .ok_or("no certificate was presented")?;
    Ok(Seen {
        local,
        sni: sni.to_string(),
        cert,
        line,
    })
}

/// A running verigated with its log captured to a file.
struct Verigated {
    _child: ChildGuard,
    addr: SocketAddr,
    log_path: std::path::PathBuf,
}

impl Verigated {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

fn start_verigated(dir: &Path, backends: &[(&str, &Backend)], accept_proxy: bool) -> Verigated {
    let mut last_log = String::new();
    for attempt in 0..5 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut toml = format!(
            "[gateway]\n\
             listen = [\"{addr}\"]\n\
             domain = \"vm.example.com\"\n\
             data_dir = \"{}\"\n\
             {proxy_from}\n\
             client_hello_timeout = \"5s\"\n\n\
             [attestation]\n\
             tee = \"none\"\n\
             tpm = \"none\"\n\n",
            dir.display(),
            // HAProxy connects from loopback.
            proxy_from = if accept_proxy {
                "accept_proxy_protocol_from = [\"127.0.0.0/8\"]"
            } else {
                ""
            },
        );
        for (name, backend) in backends {
            toml.push_str(&format!(
                "[[route]]\nsni = \"{name}\"\nbackend = \"{}\"\nsend_proxy_protocol = {}\n\n",
                backend.addr, backend.expects_proxy
            ));
        }
        let config = dir.join("verigated.toml");
        std::fs::write(&config, toml).unwrap();
        let log_path = dir.join(format!("verigated-{attempt}.log"));
        let log = File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_verigated"));
        cmd.arg("--config")
            .arg(&config)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = ChildGuard::spawn("verigated", &mut cmd).unwrap();
        if wait_for_listener(addr, Duration::from_secs(20)) && child.is_running() {
            return Verigated {
                _child: child,
                addr,
                log_path,
            };
        }
        drop(child);
        last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    }
    panic!("verigated did not start listening; its log:\n{last_log}");
}

/// One connection line of verigated's JSON log (target `verigated::connection`).
#[derive(Debug)]
struct ConnectionLine {
    client: String,
    sni: String,
}

fn connection_lines(log: &str) -> Vec<ConnectionLine> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["target"] == "verigated::connection")
        .map(|v| ConnectionLine {
            client: v["client"].as_str().unwrap_or_default().to_string(),
            sni: v["sni"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Waits until verigated logged `count` connections that carried one of our names (its
/// log is written as connections end; HAProxy's health checks and the start-up probe
/// add lines without a name, which are left out).
async fn routed_lines(gateway: &Verigated, count: usize) -> Vec<ConnectionLine> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let lines: Vec<ConnectionLine> = connection_lines(&gateway.log())
            .into_iter()
            .filter(|l| l.sni.ends_with(".example.com"))
            .collect();
        if lines.len() >= count || tokio::time::Instant::now() >= deadline {
            assert!(
                lines.len() >= count,
                "verigated logged {} routed connections, expected {count}; its log:\n{}",
                lines.len(),
                gateway.log()
            );
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything a test keeps alive while it connects and reads the logs: backends for
/// `a.example.com` and `b.example.com`, verigated routing to them, HAProxy in front.
struct Scene {
    gateway: Verigated,
    lb: Haproxy,
    a: Backend,
    b: Backend,
    _dir: tempfile::TempDir,
}

impl Scene {
    /// `None` when HAProxy is not installed ([`testkit::require`]: a failure under CI). `proxy_to_a`: the route of
    /// `a.example.com` sends a PROXY v2 header to its backend.
    async fn start(config_file: &str, accept_proxy: bool, proxy_to_a: bool) -> Option<Scene> {
        if !testkit::require(
            haproxy::available(),
            "haproxy",
            testkit::require::install::HAPROXY,
        ) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let a = start_backend_with("a.example.com", proxy_to_a).await;
        let b = start_backend("b.example.com").await;
        assert_ne!(a.cert, b.cert);
        let gateway = start_verigated(
            dir.path(),
            &[("a.example.com", &a), ("b.example.com", &b)],
            accept_proxy,
        );
        let config = haproxy::examples_dir().join(config_file);
        let lb = Haproxy::start(&config, gateway.addr)
            .unwrap_or_else(|e| panic!("starting haproxy with {}: {e}", config.display()));
        Some(Scene {
            gateway,
            lb,
            a,
            b,
            _dir: dir,
        })
    }

    fn logs(&self) -> String {
        format!(
            "haproxy log:\n{}\nverigated log:\n{}",
            self.lb.log(),
            self.gateway.log()
        )
    }

    /// Connects for each name twice (so each is asked for after the other one too) and
    /// checks that the certificate and greeting come from that name's backend.
    async fn route_each_name(&self) -> Vec<Seen> {
        let mut seen = Vec::new();
        for (name, backend) in [("a.example.com", &self.a), ("b.example.com", &self.b)].repeat(2) {
            let client = tokio::time::timeout(PATIENCE, connect_as_client(self.lb.front(), name))
                .await
                .unwrap_or_else(|_| panic!("no answer for {name}\n{}", self.logs()))
                .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
            assert!(
                client.cert == backend.cert,
                "{name} was answered with another backend's certificate"
            );
            assert_eq!(client.line, format!("hello from {name}\n"));
            seen.push(client);
        }
        seen
    }
}

#[tokio::test]
async fn passthrough_cfg_keeps_sni_routing() {
    let Some(scene) = Scene::start("passthrough.cfg", false, false).await else {
        return;
    };
    let seen = scene.route_each_name().await;
    // Without a PROXY header verigated can only know HAProxy (127.0.0.1) as the client.
    let lines = routed_lines(&scene.gateway, seen.len()).await;
    for line in &lines {
        assert!(
            line.client.starts_with("127.0.0.1:"),
            "expected HAProxy's address as the client: {line:?}"
        );
    }
    assert!(
        scene.lb.log().contains("tls_in verigated/vm1"),
        "{}",
        scene.lb.log()
    );
}

#[tokio::test]
async fn passthrough_proxy_v2_cfg_shows_the_real_client() {
    let Some(scene) = Scene::start("passthrough-proxy-v2.cfg", true, false).await else {
        return;
    };
    let seen = scene.route_each_name().await;
    let lines = routed_lines(&scene.gateway, seen.len()).await;
    for client in &seen {
        let addr = client.local.to_string();
        assert!(
            lines
                .iter()
                .any(|l| l.client == addr && l.sni == client.sni),
            "no connection line with client {addr} and sni {}: {lines:?}",
            client.sni
        );
    }
    assert!(
        scene.lb.log().contains("tls_in verigated/vm1"),
        "{}",
        scene.lb.log()
    );
}

/// The whole chain of PROXY headers: HAProxy tells verigated who the client is, and
/// verigated tells a backend that asks for it, with the SNI as the authority TLV.
#[tokio::test]
async fn client_address_reaches_a_backend_that_asks_for_it() {
    let Some(scene) = Scene::start("passthrough-proxy-v2.cfg", true, true).await else {
        return;
    };
    let seen = scene.route_each_name().await;
    let all_headers = scene.a.headers.lock().unwrap().clone();
    let to_a: Vec<&Seen> = seen.iter().filter(|s| s.sni == "a.example.com").collect();
    // verigated also connects to the backend itself, to read the certificate for its
    // manifest; that probe's header names verigated's own address, not a client's.
    let client_ips: Vec<_> = seen.iter().map(|s| s.local.ip()).collect();
    let (headers, probes): (Vec<ProxyHeader>, Vec<ProxyHeader>) = all_headers
        .into_iter()
        .partition(|h| h.source.is_some_and(|src| client_ips.contains(&src.ip())));
    assert!(
        probes
            .iter()
            .all(|h| h.authority.as_deref() == Some("a.example.com")),
        "{probes:?}"
    );
    assert_eq!(headers.len(), to_a.len(), "{headers:?}");
    for client in to_a {
        assert!(
            headers.iter().any(|h| h.source == Some(client.local)
                && h.authority.as_deref() == Some("a.example.com")),
            "no PROXY header from {} with authority a.example.com: {headers:?}",
            client.local
        );
    }
    // b.example.com's route sends no header, and its backend would have refused one.
    assert!(scene.b.headers.lock().unwrap().is_empty());
}

/// A PROXY header where verigated does not expect one is not TLS: the connection is
/// refused, not routed with the header's bytes taken for a ClientHello.
#[tokio::test]
async fn proxy_v2_to_a_gateway_that_does_not_accept_it_is_refused() {
    let Some(scene) = Scene::start("passthrough-proxy-v2.cfg", false, false).await else {
        return;
    };
    let result = tokio::time::timeout(
        PATIENCE,
        connect_as_client(scene.lb.front(), "a.example.com"),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer\n{}", scene.logs()));
    assert!(result.is_err(), "routed anyway\n{}", scene.logs());
    assert!(scene.a.headers.lock().unwrap().is_empty());
}

/// verigated behind a balancer that does not send the header it expects refuses the
/// connection: a client could otherwise claim any address with a header of its own.
#[tokio::test]
async fn missing_proxy_header_is_refused_when_one_is_expected() {
    let Some(scene) = Scene::start("passthrough.cfg", true, false).await else {
        return;
    };
    let result = tokio::time::timeout(
        PATIENCE,
        connect_as_client(scene.lb.front(), "a.example.com"),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer\n{}", scene.logs()));
    assert!(result.is_err(), "routed anyway\n{}", scene.logs());
}

/// Many clients at once through HAProxy with PROXY v2: each still reaches its own
/// backend and is logged under its own address.
#[tokio::test]
async fn concurrent_clients_each_reach_their_backend() {
    let Some(scene) = Scene::start("passthrough-proxy-v2.cfg", true, false).await else {
        return;
    };
    let scene = Arc::new(scene);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let scene = scene.clone();
        tasks.push(tokio::spawn(async move {
            let name = if i % 2 == 0 {
                "a.example.com"
            } else {
                "b.example.com"
            };
            let seen = connect_as_client(scene.lb.front(), name).await;
            (name, seen)
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        let (name, result) = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("client finished")
            .expect("client task");
        let client = result.unwrap_or_else(|e| panic!("{e}\n{}", scene.logs()));
        let backend = if name == "a.example.com" {
            &scene.a
        } else {
            &scene.b
        };
        assert!(client.cert == backend.cert, "{name}: wrong backend");
        assert_eq!(client.line, format!("hello from {name}\n"));
        seen.push(client);
    }
    let lines = routed_lines(&scene.gateway, seen.len()).await;
    for client in &seen {
        let addr = client.local.to_string();
        assert!(
            lines
                .iter()
                .any(|l| l.client == addr && l.sni == client.sni),
            "no connection line for {addr}: {lines:?}"
        );
    }
}
