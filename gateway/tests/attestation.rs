//! `GET /v1/attestation` and the certificate manifest, end to end with real processes:
//! verigated with the simulated TEE, a real TPM (swtpm) whose PCR 10 holds the extends
//! of an IMA log the test writes, and TLS backends with distinct certificates. Each test
//! fetches evidence over TLS with a fresh nonce and checks it with attest's pure
//! functions, as a verifier would: report_data recomputed from nonce, manifest and AK;
//! the simulated report's signature and fields; the TPM quote with extraData =
//! tpm_qualifying(report_data); the IMA log replayed to the quoted PCR 10; the manifest
//! holding the SHA-256 of each backend's certificate and of verigated's own.
//!
//! Backends here are started by the test itself (not `testkit::tls::TlsBackend`) because
//! some tests restart one on the same port with another certificate.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attest::binding::{ak_digest, report_data_v2, tpm_qualifying, Nonce};
use attest::evidence::{Evidence, TeeEvidence};
use attest::ima::{self, HashAlg as ImaAlg, ImaEntry};
use attest::tpm::collect::Tpm;
use attest::tpm::quote::HashAlg as TpmAlg;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use testkit::held_tpm::HeldTpm;
use testkit::ports::{free_port, wait_for_listener};
use testkit::process::ChildGuard;
use testkit::swtpm::Swtpm;
use testkit::tls::{self, HelloDelivery};

const DOMAIN: &str = common::DOMAIN;
const PATIENCE: Duration = common::PATIENCE;
/// The launch measurement the simulated TEE is configured to report.
const MEASUREMENT: [u8; 48] = [0x5a; 48];

// ---- backends ----

/// A TLS backend with its own certificate on a chosen (or free) port of 127.0.0.1; it
/// completes handshakes, greets and closes. Stops (and frees the port) when dropped.
struct Backend {
    addr: SocketAddr,
    cert: CertificateDer<'static>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    fn start(name: &str) -> Backend {
        Backend::start_at(name, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Binds `addr` (retrying while a just-closed listener still holds it).
    fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let signed = tls::self_signed(name).expect("certificate");
        let config = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![signed.cert.clone()], signed.key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let deadline = Instant::now() + PATIENCE;
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot bind {addr}: {e}"),
            }
        };
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            use tokio::io::AsyncWriteExt;
                            if let Ok(mut s) = acceptor.accept(tcp).await {
                                let _ = s.write_all(b"hello\n").await;
                                let _ = s.shutdown().await;
                            }
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        Backend {
            addr,
            cert: signed.cert,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.cert).into()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- verigated ----

/// A verigated started with a whole config text (this file needs `[attestation]`
/// settings the shared harness does not write).
struct Verigated {
    child: ChildGuard,
    addr: SocketAddr,
    dir: PathBuf,
    log_path: PathBuf,
}

impl Verigated {
    /// Starts verigated in `dir` with `[attestation]` lines `attestation` and `routes`.
    fn start(dir: &Path, attestation: &str, routes: &str) -> Verigated {
        Self::try_start(dir, attestation, routes)
            .unwrap_or_else(|log| panic!("verigated did not start; its log:\n{log}"))
    }

    /// Like [`Verigated::start`]; on failure returns the log.
    fn try_start(dir: &Path, attestation: &str, routes: &str) -> Result<Verigated, String> {
        let mut last_log = String::new();
        for attempt in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config_path = dir.join("verigated.toml");
            std::fs::write(
                &config_path,
                format!(
                    "[gateway]\nlisten = [\"{addr}\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\
                     backend_connect_timeout = \"5s\"\n\n[attestation]\n{attestation}\n\n{routes}\n\
                     [api]\nadmin_token_sha256 = [\"{}\"]\n",
                    dir.display(),
                    common::sha256_hex(common::TOKEN)
                ),
            )
            .unwrap();
            let log_path = dir.join(format!("verigated-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_verigated"));
            cmd.arg("--config")
                .arg(&config_path)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let mut child = ChildGuard::spawn("verigated", &mut cmd).unwrap();
            if wait_for_listener(addr, PATIENCE) && child.is_running() {
                return Ok(Verigated {
                    child,
                    addr,
                    dir: dir.to_path_buf(),
                    log_path,
                });
            }
            // Exited on its own (a refused config): no point in retrying.
            let exited = !child.is_running();
            drop(child);
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if exited {
                break;
            }
        }
        Err(last_log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET path` over TLS (HTTP/1.1); returns (status code, body, own leaf certificate).
    fn get(&self, path: &str) -> (u16, Vec<u8>, CertificateDer<'static>) {
        get(self.addr, path)
    }

    fn evidence(&self, nonce: &Nonce) -> (Evidence, CertificateDer<'static>) {
        let (status, body, cert) = self.get(&format!("/v1/attestation?nonce={}", nonce.to_hex()));
        assert_eq!(
            status,
            200,
            "body: {}\nlog:\n{}",
            String::from_utf8_lossy(&body),
            self.log()
        );
        let evidence = Evidence::from_json(&body).expect("evidence parses");
        (evidence, cert)
    }

    fn manifest_json(&self) -> serde_json::Value {
        let (status, body, _) = self.get("/v1/manifest");
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }

    /// Polls `/v1/manifest` until `pred` holds (panics with the last answer if never).
    fn wait_manifest(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            last = self.manifest_json();
            if pred(&last) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "manifest never showed {what}; last: {last:#}\nlog:\n{}",
            self.log()
        );
    }

    fn signal(&self, sig: i32) {
        self.child.signal(sig);
    }

    fn data_dir(&self) -> &Path {
        &self.dir
    }
}

/// `GET path` on verigated's own endpoint over TLS with SNI = the domain, with the
/// test token (`/metrics` takes it; the attestation API ignores it).
fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>, CertificateDer<'static>) {
    let (status, _head, body, cert) = get_with_head(addr, path);
    (status, body, cert)
}

/// Like [`get`], with the response head (status line and headers) as well.
fn get_with_head(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>, CertificateDer<'static>) {
    let mut session = tls::connect(addr, Some(DOMAIN), &["http/1.1"], HelloDelivery::Whole)
        .expect("TLS to the own endpoint");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        common::TOKEN
    );
    session.stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = session.stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head, response[split + 4..].to_vec(), session.cert)
}

fn route(sni: &str, backend: SocketAddr) -> String {
    format!("[[route]]\nsni = \"{sni}\"\nbackend = \"{backend}\"\n\n")
}

fn entry(evidence: &Evidence, name: &str) -> Option<[u8; 32]> {
    evidence.manifest.get(name).map(|e| e.cert_sha256)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

// ---- the TPM and its IMA log ----

/// An IMA log of a few measurements, written to `path` and extended into `tpm`'s PCR 10
/// (SHA-256 bank) before verigated opens the TPM (swtpm serves one client at a time).
fn write_ima_log(tpm: &Swtpm, path: &Path, files: &[(&str, &[u8])]) -> Vec<ImaEntry> {
    let mut entries =
        vec![ImaEntry::ima_ng(ima::BOOT_AGGREGATE, ImaAlg::Sha256, &[0x11; 32]).unwrap()];
    for (name, content) in files {
        entries.push(ImaEntry::measure(name, ImaAlg::Sha256, content).unwrap());
    }
    std::fs::write(path, ima::binary::serialize(&entries)).unwrap();
    let mut t = Tpm::open(&tpm.tcti()).expect("open swtpm");
    for e in &entries {
        t.extend_pcr(10, TpmAlg::Sha256, &e.extend_value(ImaAlg::Sha256))
            .expect("extend PCR 10");
    }
    drop(t);
    entries
}

/// Everything of a full deployment: swtpm, an IMA log, three backends, verigated.
struct Setup {
    _dir: tempfile::TempDir,
    _tpm: Swtpm,
    /// The stand-in between verigated and swtpm, when the test holds quotes.
    held: Option<HeldTpm>,
    backends: Vec<(String, Backend)>,
    ima_entries: Vec<ImaEntry>,
    gw: Verigated,
}

fn full_setup(extra_attestation: &str, extra_routes: &str) -> Setup {
    setup(extra_attestation, extra_routes, false)
}

/// [`full_setup`], with verigated reaching swtpm through [`HeldTpm`] when `hold_quotes`.
fn setup(extra_attestation: &str, extra_routes: &str, hold_quotes: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start().expect("swtpm");
    let held = hold_quotes.then(|| HeldTpm::start(tpm.port()).expect("held-quote stand-in"));
    let tcti = held.as_ref().map_or_else(|| tpm.tcti(), HeldTpm::tcti);
    let ima_path = dir.path().join("ima.bin");
    let ima_entries = write_ima_log(
        &tpm,
        &ima_path,
        &[("/usr/bin/app", b"app v1"), ("/usr/lib/libc.so.6", b"libc")],
    );
    let backends: Vec<(String, Backend)> = ["a.example.com", "b.example.com", "c.example.com"]
        .into_iter()
        .map(|n| (n.to_string(), Backend::start(n)))
        .collect();
    let mut routes: String = backends.iter().map(|(n, b)| route(n, b.addr)).collect();
    routes.push_str(extra_routes);
    let gw = Verigated::start(
        dir.path(),
        &format!(
            "tee = \"simulated\"\nsimulated_measurement = \"{}\"\ntpm = \"{}\"\nima_log = \"{}\"\n{extra_attestation}",
            hex::encode(MEASUREMENT),
            tcti,
            ima_path.display()
        ),
        &routes,
    );
    Setup {
        _dir: dir,
        _tpm: tpm,
        held,
        backends,
        ima_entries,
        gw,
    }
}

/// The root the evidence's inclusion proof leads to from `nonce` (the proof must be
/// well-formed).
fn batch_root(evidence: &Evidence, nonce: &Nonce) -> [u8; 32] {
    let batch = evidence
        .batch
        .as_ref()
        .expect("version 2 evidence has a batch");
    batch
        .root_for(nonce)
        .expect("a well-formed inclusion proof")
}

/// Checks `evidence` for `nonce` as a verifier would; returns the verified report_data.
fn check_evidence(
    evidence: &Evidence,
    nonce: &Nonce,
    data_dir: &Path,
    own_cert: &CertificateDer<'_>,
) -> [u8; 64] {
    assert_eq!(evidence.version, 2);
    assert_eq!(&evidence.nonce, nonce);
    let root = batch_root(evidence, nonce);
    assert_eq!(evidence.domain, DOMAIN);
    assert_eq!(
        entry(evidence, DOMAIN),
        Some(sha256(own_cert)),
        "the manifest holds the certificate the own endpoint presented"
    );
    let tpm = evidence.tpm.as_ref().expect("a TPM quote");
    let rd = report_data_v2(
        &root,
        &evidence.manifest.digest(),
        &ak_digest(Some(&tpm.ak_public.0)),
    );

    let TeeEvidence::Simulated { report, public_key } = &evidence.tee else {
        panic!(
            "expected a simulated TEE report, got {:?}",
            evidence.tee.kind()
        );
    };
    let verified = attest::tee::simulated::verify(&report.0, &public_key.0)
        .expect("simulated report verifies");
    assert_eq!(
        verified.report_data, rd,
        "report_data binds nonce, manifest and AK"
    );
    assert_eq!(verified.measurement, MEASUREMENT);
    let key = attest::tee::simulated::SimulatedTee::load_or_create(data_dir).unwrap();
    assert_eq!(
        public_key.0,
        key.public_key_der(),
        "the evidence carries the data dir's simulated key"
    );

    let quote = attest::tpm::quote::verify(
        &tpm.ak_public.0,
        &tpm.quote.0,
        &tpm.signature.0,
        &tpm.pcrs,
        &tpm_qualifying(&rd),
    )
    .expect("TPM quote verifies with extraData = tpm_qualifying(report_data)");
    assert_eq!(quote.extra_data, tpm_qualifying(&rd).to_vec());

    let log = evidence.ima_log.as_ref().expect("an IMA log");
    let entries = ima::binary::parse(&log.0, ImaAlg::Sha1).expect("IMA log parses");
    ima::replay::check(&entries).expect("template hashes match");
    assert_eq!(
        Some(ima::replay::replay(&entries, ImaAlg::Sha256).as_slice()),
        tpm.pcrs.get(TpmAlg::Sha256, 10),
        "replaying the IMA log gives the quoted PCR 10"
    );
    rd
}

// ---- tests ----

#[test]
fn evidence_verifies_end_to_end() {
    let s = full_setup("", "");
    let nonce = Nonce::random();
    let (evidence, own_cert) = s.gw.evidence(&nonce);
    check_evidence(&evidence, &nonce, s.gw.data_dir(), &own_cert);
    assert_eq!(
        evidence.manifest.entries().len(),
        4,
        "{:?}",
        evidence.manifest
    );
    for (name, backend) in &s.backends {
        assert_eq!(entry(&evidence, name), Some(backend.sha256()), "{name}");
    }
    let shas: std::collections::BTreeSet<_> = evidence
        .manifest
        .entries()
        .iter()
        .map(|e| e.cert_sha256)
        .collect();
    assert_eq!(shas.len(), 4, "four distinct certificates");
    let ima = ima::binary::parse(&evidence.ima_log.as_ref().unwrap().0, ImaAlg::Sha1).unwrap();
    assert_eq!(ima, s.ima_entries, "the log is the file the test wrote");

    // A second call with another nonce is fresh: another report_data, another quote.
    let nonce2 = Nonce::random();
    let (evidence2, own_cert) = s.gw.evidence(&nonce2);
    let rd2 = check_evidence(&evidence2, &nonce2, s.gw.data_dir(), &own_cert);
    assert_ne!(
        evidence2.tpm.as_ref().unwrap().quote,
        evidence.tpm.as_ref().unwrap().quote
    );
    // Evidence answered for one nonce does not check under another.
    let tpm = evidence.tpm.as_ref().unwrap();
    assert!(attest::tpm::quote::verify(
        &tpm.ak_public.0,
        &tpm.quote.0,
        &tpm.signature.0,
        &tpm.pcrs,
        &tpm_qualifying(&rd2),
    )
    .is_err());

    let (_, metrics, _) = s.gw.get("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert_eq!(
        common::metric_value(&metrics, "verigated_attestation_calls_total"),
        Some(2)
    );
    assert_eq!(
        common::metric_value(&metrics, "verigated_attestation_failures_total"),
        Some(0)
    );
    assert_eq!(
        common::metric_value(&metrics, "verigated_manifest_entries"),
        Some(4)
    );
}

#[test]
fn concurrent_calls_each_get_their_own_evidence() {
    let s = full_setup("", "");
    let addr = s.gw.addr;
    let threads: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let nonce = Nonce::random();
                let (status, body, cert) =
                    get(addr, &format!("/v1/attestation?nonce={}", nonce.to_hex()));
                (nonce, status, body, cert)
            })
        })
        .collect();
    for t in threads {
        let (nonce, status, body, cert) = t.join().unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let evidence = Evidence::from_json(&body).unwrap();
        check_evidence(&evidence, &nonce, s.gw.data_dir(), &cert);
    }
}

#[test]
fn callers_beyond_batch_max_waiting_get_503_while_a_round_is_held() {
    const WAITING: usize = 2;
    const EXTRA: usize = 3;
    let s = setup(&format!("batch_max_waiting = {WAITING}\n"), "", true);
    let held = s.held.as_ref().expect("the stand-in");
    let addr = s.gw.addr;
    let call = move || {
        let nonce = Nonce::random();
        let (status, head, body, cert) =
            get_with_head(addr, &format!("/v1/attestation?nonce={}", nonce.to_hex()));
        (nonce, status, head, body, cert)
    };

    // One caller starts a round, whose quote the stand-in (a slow TPM) holds; it has left
    // the queue once its quote is on the way.
    held.close();
    let first = std::thread::spawn(call);
    assert!(held.wait_held(PATIENCE), "no quote reached the TPM");

    // While that round cannot end, WAITING callers queue for the next one and the rest are
    // turned away at once, so EXTRA answers come back before the gate opens.
    let (tx, rx) = std::sync::mpsc::channel();
    let callers: Vec<_> = (0..WAITING + EXTRA)
        .map(|_| {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(call()).unwrap())
        })
        .collect();
    drop(tx);
    let mut answers: Vec<_> = (0..EXTRA)
        .map(|_| {
            rx.recv_timeout(PATIENCE)
                .expect("the refused callers are answered")
        })
        .collect();
    held.open();
    answers.extend(rx.iter());
    answers.push(first.join().unwrap());
    for c in callers {
        c.join().unwrap();
    }

    let (ok, busy): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.1 == 200);
    assert_eq!(
        busy.len(),
        EXTRA,
        "refused: {:?}",
        busy.iter().map(|a| a.1).collect::<Vec<_>>()
    );
    assert_eq!(ok.len(), 1 + WAITING);
    for (_, status, head, body, _) in &busy {
        assert_eq!(*status, 503, "{}", String::from_utf8_lossy(body));
        let retry = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("retry-after")
                    .then(|| value.trim())
            })
            .unwrap_or_else(|| panic!("503 without Retry-After: {head}"));
        assert!(
            retry.parse::<u32>().is_ok_and(|s| s > 0),
            "Retry-After: {retry}"
        );
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(v["error"].is_string(), "{v}");
    }
    for (nonce, _, _, body, cert) in &ok {
        let evidence = Evidence::from_json(body).unwrap();
        check_evidence(&evidence, nonce, s.gw.data_dir(), cert);
    }
    // The queued callers shared the round after the held one.
    let second: Vec<_> = ok
        .iter()
        .map(|(_, _, _, body, _)| Evidence::from_json(body).unwrap().batch.unwrap().size)
        .collect();
    let waiting = u32::try_from(WAITING).unwrap();
    assert!(second.contains(&waiting), "batch sizes {second:?}");
}

#[test]
fn bad_nonces_are_400_json_that_says_why() {
    let s = full_setup("", "");
    for (query, detail) in [
        (
            "/v1/attestation?nonce=abc",
            "nonce must be 64 hex characters (32 bytes), got 3 characters".to_string(),
        ),
        (
            "/v1/attestation",
            "missing query parameter `nonce`: send ?nonce=<64 hex characters> (32 random bytes)"
                .to_string(),
        ),
        (
            &*format!("/v1/attestation?nonce={}", "g".repeat(64)),
            String::new(),
        ),
        (
            &*format!("/v1/attestation?nonce={0}&nonce={0}", "ab".repeat(32)),
            "query parameter `nonce` is given 2 times; send it once".to_string(),
        ),
    ] {
        let (status, body, _) = s.gw.get(query);
        assert_eq!(status, 400, "{query}");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
        assert_eq!(v["error"], "bad nonce", "{query}");
        if detail.is_empty() {
            assert!(
                v["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("nonce is not hex"),
                "{v}"
            );
        } else {
            assert_eq!(v["detail"], detail.as_str(), "{query}");
        }
    }
    let (_, metrics, _) = s.gw.get("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert_eq!(
        common::metric_value(&metrics, "verigated_attestation_failures_total"),
        Some(4)
    );
}

#[test]
fn a_backend_that_is_down_is_absent_then_reappears() {
    // A port nobody listens on (yet): d.example.com's backend is down at start.
    let down = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let s = full_setup("manifest_refresh = \"1s\"", &route("d.example.com", down));
    let nonce = Nonce::random();
    let (evidence, own_cert) = s.gw.evidence(&nonce);
    check_evidence(&evidence, &nonce, s.gw.data_dir(), &own_cert);
    assert_eq!(entry(&evidence, "d.example.com"), None);
    assert!(entry(&evidence, "a.example.com").is_some());
    let m = s.gw.manifest_json();
    assert_eq!(m["unreachable"][0]["name"], "d.example.com", "{m:#}");
    // Why, with the backend's address, is for the operator's log, not the public API.
    assert!(m["unreachable"][0].get("error").is_none(), "{m:#}");
    assert!(!m.to_string().contains(&down.to_string()), "{m:#}");
    let log = s.gw.log();
    assert!(log.contains("left out of the certificate manifest"));
    assert!(log.contains(&down.to_string()), "{log}");

    let backend = Backend::start_at("d.example.com", down);
    let want = hex::encode(backend.sha256());
    s.gw.wait_manifest("d.example.com back", |m| {
        m["manifest"].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["name"] == "d.example.com" && e["cert_sha256"] == want.as_str())
        })
    });
    let nonce = Nonce::random();
    let (evidence, own_cert) = s.gw.evidence(&nonce);
    check_evidence(&evidence, &nonce, s.gw.data_dir(), &own_cert);
    assert_eq!(entry(&evidence, "d.example.com"), Some(backend.sha256()));
    assert!(s.gw.manifest_json()["unreachable"]
        .as_array()
        .unwrap()
        .is_empty());

    // And it goes away again when the backend stops.
    drop(backend);
    s.gw.wait_manifest("d.example.com gone", |m| {
        m["unreachable"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["name"] == "d.example.com"))
    });
}

#[test]
fn a_swapped_certificate_shows_after_sighup() {
    // A long period: only the reload can make the change visible.
    let mut s = full_setup("manifest_refresh = \"1h\"", "");
    let (name, old) = s.backends.remove(1);
    let old_sha = old.sha256();
    let addr = old.addr;
    let nonce = Nonce::random();
    let (evidence, _) = s.gw.evidence(&nonce);
    assert_eq!(entry(&evidence, &name), Some(old_sha));

    drop(old);
    let new = Backend::start_at(&name, addr);
    assert_ne!(new.sha256(), old_sha);
    // Still the old certificate until a refresh: attestation answers from the store.
    let (evidence, _) = s.gw.evidence(&Nonce::random());
    assert_eq!(entry(&evidence, &name), Some(old_sha));

    s.gw.signal(libc::SIGHUP);
    let want = hex::encode(new.sha256());
    s.gw.wait_manifest("the new certificate", |m| {
        m["manifest"].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["name"] == name.as_str() && e["cert_sha256"] == want.as_str())
        })
    });
    let nonce = Nonce::random();
    let (evidence, own_cert) = s.gw.evidence(&nonce);
    check_evidence(&evidence, &nonce, s.gw.data_dir(), &own_cert);
    assert_eq!(entry(&evidence, &name), Some(new.sha256()));
    assert!(s.gw.log().contains("key changed"), "{}", s.gw.log());
}

#[test]
fn certificate_files_wildcards_and_the_catch_all() {
    let dir = tempfile::tempdir().unwrap();
    // A route whose certificate the manifest reads from a file: its backend is never
    // contacted (here it does not even exist).
    let file_cert = tls::self_signed("files.example.com").unwrap();
    let cert_path = dir.path().join("files.pem");
    std::fs::write(&cert_path, &file_cert.cert_pem).unwrap();
    let wildcard = Backend::start("*.w.example.com");
    let catch_all = Backend::start("fallback.example.com");
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let routes = format!(
        "[[route]]\nsni = \"files.example.com\"\nbackend = \"{nowhere}\"\ncertificate = \"{}\"\n\n{}{}",
        cert_path.display(),
        route("*.w.example.com", wildcard.addr),
        route("*", catch_all.addr),
    );
    let gw = Verigated::start(
        dir.path(),
        "tee = \"simulated\"\ntpm = \"none\"\nmanifest_refresh = \"1s\"",
        &routes,
    );
    let nonce = Nonce::random();
    let (evidence, own_cert) = gw.evidence(&nonce);
    assert_eq!(
        entry(&evidence, "files.example.com"),
        Some(sha256(&file_cert.cert))
    );
    assert_eq!(entry(&evidence, "*.w.example.com"), Some(wildcard.sha256()));
    assert_eq!(entry(&evidence, "*"), Some(catch_all.sha256()));
    assert_eq!(entry(&evidence, DOMAIN), Some(sha256(&own_cert)));
    assert_eq!(evidence.manifest.entries().len(), 4);

    // Without a TPM: no quote, no IMA log, a zero AK digest in report_data, and the
    // simulated measurement is the SHA-384 of verigated's executable.
    assert!(evidence.tpm.is_none());
    assert!(evidence.ima_log.is_none());
    let TeeEvidence::Simulated { report, public_key } = &evidence.tee else {
        panic!("simulated expected");
    };
    let r = attest::tee::simulated::verify(&report.0, &public_key.0).unwrap();
    assert_eq!(
        r.report_data,
        report_data_v2(
            &batch_root(&evidence, &nonce),
            &evidence.manifest.digest(),
            &[0; 32]
        )
    );
    // coreutils' sha384sum: independent of verigated's hashing.
    let out = Command::new("sha384sum")
        .arg(env!("CARGO_BIN_EXE_verigated"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        hex::encode(r.measurement),
        text.split_whitespace().next().unwrap()
    );

    // The certificate file disappears: the route leaves the manifest, named with why.
    std::fs::remove_file(&cert_path).unwrap();
    gw.wait_manifest("files.example.com unreachable", |m| {
        m["unreachable"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["name"] == "files.example.com"))
    });
    // The manifest names the route; the file and the error are in the log only.
    assert!(!gw.manifest_json().to_string().contains("files.pem"));
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("certificate file") && l.contains("files.pem")),
        "{log}"
    );
    let (evidence, _) = gw.evidence(&Nonce::random());
    assert_eq!(entry(&evidence, "files.example.com"), None);
    assert_eq!(evidence.manifest.entries().len(), 3);

    // Only GET is served on the attestation paths.
    let mut session =
        tls::connect(gw.addr, Some(DOMAIN), &["http/1.1"], HelloDelivery::Whole).unwrap();
    session
        .stream
        .write_all(
            format!("POST /v1/attestation HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut response = Vec::new();
    let _ = session.stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    assert!(
        response.contains("\"error\":\"method not allowed\""),
        "{response}"
    );
}

#[test]
fn no_tee_and_no_tpm_still_answer_with_the_manifest() {
    // The shared harness writes tee = "none" and tpm = "none".
    let dir = tempfile::tempdir().unwrap();
    let backends = common::three_backends();
    let gw = common::Gateway::start(dir.path(), "", &common::routes_for(&backends));
    let nonce = Nonce::random();
    let (status, body) = gw.get(&format!("/v1/attestation?nonce={}", nonce.to_hex()));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["tee"], serde_json::json!({"kind": "none"}));
    assert_eq!(v["tpm"], serde_json::Value::Null);
    assert_eq!(v["ima_log"], serde_json::Value::Null);
    let evidence = Evidence::from_json(body.as_bytes()).unwrap();
    assert_eq!(evidence.nonce, nonce);
    for b in &backends {
        assert_eq!(
            entry(&evidence, &b.name),
            Some(sha256(&b.cert)),
            "{}",
            b.name
        );
    }
    let (status, body) = gw.get("/v1/manifest");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["domain"], DOMAIN);
    assert_eq!(
        m["manifest_sha256"],
        hex::encode(evidence.manifest.digest())
    );
    let (status, body) = gw.get("/v1/attestation?nonce=");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    assert!(body.contains("\"error\":\"bad nonce\""), "{body}");
}

#[test]
fn a_tpm_without_its_ima_log_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start().expect("swtpm");
    let missing = dir.path().join("no-such-ima-log");
    let Err(log) = Verigated::try_start(
        dir.path(),
        &format!(
            "tee = \"none\"\ntpm = \"{}\"\nima_log = \"{}\"",
            tpm.tcti(),
            missing.display()
        ),
        "",
    ) else {
        panic!("verigated started without its IMA log");
    };
    assert!(log.contains("attestation.ima_log"), "{log}");
    assert!(log.contains(&missing.display().to_string()), "{log}");
}

#[test]
fn an_unreachable_tpm_refuses_to_start_and_a_lost_one_is_a_503() {
    let dir = tempfile::tempdir().unwrap();
    let ima_path = dir.path().join("ima.bin");
    std::fs::write(&ima_path, b"").unwrap();
    // Nobody listens on this port: the TPM cannot be opened at start.
    let port = free_port();
    let Err(log) = Verigated::try_start(
        dir.path(),
        &format!(
            "tee = \"none\"\ntpm = \"swtpm:host=127.0.0.1,port={port}\"\nima_log = \"{}\"",
            ima_path.display()
        ),
        "",
    ) else {
        panic!("verigated started without its TPM");
    };
    assert!(log.contains("attestation.tpm"), "{log}");

    // A TPM that goes away after start: the call fails with a JSON 503 that says the TPM
    // failed, without its TCTI (the log has it).
    let tpm = Swtpm::start().expect("swtpm");
    let gw = Verigated::start(
        dir.path(),
        &format!(
            "tee = \"none\"\ntpm = \"{}\"\nima_log = \"{}\"",
            tpm.tcti(),
            ima_path.display()
        ),
        "",
    );
    drop(tpm);
    let (status, body, _) = gw.get(&format!(
        "/v1/attestation?nonce={}",
        Nonce::random().to_hex()
    ));
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "attestation failed");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("TPM"), "{v}");
    assert!(
        !detail.contains("swtpm") && !detail.contains("127.0.0.1"),
        "{v}"
    );
    let log = gw.log();
    assert!(log.contains("attestation failed"), "{log}");
}

#[test]
fn a_restarted_tpm_is_reopened() {
    let mut s = full_setup("", "");
    let (before, _) = s.gw.evidence(&Nonce::random());
    // A power cycle of the TPM (a reboot as the TPM sees it): verigated's connection
    // breaks; the next call opens the TPM again and is answered.
    s._tpm.restart().expect("swtpm restarts");
    let nonce = Nonce::random();
    let (after, _) = s.gw.evidence(&nonce);
    let tpm = after.tpm.as_ref().unwrap();
    let rd = report_data_v2(
        &batch_root(&after, &nonce),
        &after.manifest.digest(),
        &ak_digest(Some(&tpm.ak_public.0)),
    );
    let q = attest::tpm::quote::verify(
        &tpm.ak_public.0,
        &tpm.quote.0,
        &tpm.signature.0,
        &tpm.pcrs,
        &tpm_qualifying(&rd),
    )
    .unwrap();
    let q0 = before.tpm.as_ref().unwrap();
    let q0 = attest::tpm::quote::QuoteInfo::parse(&q0.quote.0).unwrap();
    assert_eq!(
        q.reset_count,
        q0.clock_info.reset_count + 1,
        "the reboot shows"
    );
    assert_eq!(
        tpm.ak_public,
        before.tpm.as_ref().unwrap().ak_public,
        "same AK"
    );
}

/// A TLS backend that requires a PROXY v2 header before the handshake (as one behind
/// `send_proxy_protocol = true` does) and reports the authority (SNI) each header carried.
fn proxy_backend(
    name: &str,
) -> (
    SocketAddr,
    [u8; 32],
    std::sync::mpsc::Receiver<Option<String>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let signed = tls::self_signed(name).unwrap();
    let sha = sha256(&signed.cert);
    let config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![signed.cert.clone()], signed.key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    // Detached: it lives as long as the test process, which is short.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut tcp, _)) = listener.accept().await {
                // The v2 header: 16 fixed bytes, the last two the length of the rest.
                let mut head = [0u8; 16];
                if tcp.read_exact(&mut head).await.is_err() {
                    continue;
                }
                let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
                let mut rest = vec![0u8; len];
                if tcp.read_exact(&mut rest).await.is_err() {
                    continue;
                }
                let mut header = head.to_vec();
                header.extend_from_slice(&rest);
                match passthrough::proxy_protocol::parse(&header) {
                    Ok(Some((h, used))) if used == header.len() => {
                        let _ = seen_tx.send(h.authority);
                    }
                    // No valid header: refuse, as such a backend does.
                    _ => continue,
                }
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.write_all(b"hello\n").await;
                    let _ = s.shutdown().await;
                }
            }
        });
    });
    (addr, sha, seen_rx)
}

#[test]
fn a_backend_behind_proxy_protocol_gets_the_header_on_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, sha, seen) = proxy_backend("p.example.com");
    let (waddr, wsha, wseen) = proxy_backend("*.pw.example.com");
    let routes = format!(
        "[[route]]\nsni = \"p.example.com\"\nbackend = \"{addr}\"\nsend_proxy_protocol = true\n\n\
         [[route]]\nsni = \"*.pw.example.com\"\nbackend = \"{waddr}\"\nsend_proxy_protocol = true\n\n"
    );
    let gw = Verigated::start(dir.path(), "tee = \"none\"\ntpm = \"none\"", &routes);
    let (evidence, _) = gw.evidence(&Nonce::random());
    assert_eq!(entry(&evidence, "p.example.com"), Some(sha));
    assert_eq!(entry(&evidence, "*.pw.example.com"), Some(wsha));
    assert_eq!(
        seen.recv_timeout(PATIENCE).unwrap().as_deref(),
        Some("p.example.com")
    );
    // A wildcard route is probed with a name its pattern matches.
    assert_eq!(
        wseen.recv_timeout(PATIENCE).unwrap().as_deref(),
        Some("verigate-probe.pw.example.com")
    );
}

#[test]
fn check_config_names_bad_attestation_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nlisten = [\"127.0.0.1:1\"]\ndomain = \"{DOMAIN}\"\ndata_dir = \"{}\"\n\n\
             [attestation]\ntee = \"simulated\"\npcrs = [10, 99]\nak_handle = 5\n\
             manifest_refresh = \"soon\"\nsimulated_measurement = \"abcd\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verigated"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "4 problem(s)",
        "attestation.pcrs[1]: expected a PCR index of 0..=23, got 99",
        "attestation.ak_handle: expected a persistent handle 0x81000000..=0x81ffffff such as 0x81010100, got 0x5",
        "attestation.manifest_refresh: expected a duration such as \"5s\" or \"250ms\", got `soon`",
        "attestation.simulated_measurement: expected 96 hex digits (a SHA-384), got 4 characters",
    ] {
        assert!(err.contains(needle), "{needle} missing:\n{err}");
    }
}

#[test]
fn the_log_read_after_the_quote_may_run_ahead_and_a_prefix_replays_to_the_quote() {
    let s = full_setup("", "");
    // A measurement logged but not (yet) extended when the quote was taken: the kernel
    // appends to the log and extends PCR 10 one after the other, and verigated reads the
    // log after quoting, so the log it sends may hold entries the quote does not cover.
    let late = ImaEntry::measure("/usr/bin/late", ImaAlg::Sha256, b"late").unwrap();
    let mut entries = s.ima_entries.clone();
    entries.push(late);
    std::fs::write(
        s._dir.path().join("ima.bin"),
        ima::binary::serialize(&entries),
    )
    .unwrap();
    let nonce = Nonce::random();
    let (evidence, _) = s.gw.evidence(&nonce);
    let tpm = evidence.tpm.as_ref().unwrap();
    let quoted = tpm.pcrs.get(TpmAlg::Sha256, 10).unwrap();
    let log = ima::binary::parse(&evidence.ima_log.as_ref().unwrap().0, ImaAlg::Sha1).unwrap();
    assert_eq!(log, entries);
    assert_ne!(ima::replay::replay(&log, ImaAlg::Sha256), quoted);
    // The verifier replays entry by entry: the first prefix equal to the quote is the
    // covered part, here every entry but the late one.
    let covered = (0..=log.len())
        .find(|&n| ima::replay::replay(&log[..n], ImaAlg::Sha256) == quoted)
        .expect("a prefix replays to the quoted PCR 10");
    assert_eq!(covered, s.ima_entries.len());
}
