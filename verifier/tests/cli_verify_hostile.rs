//! `verigate verify` and `verigate snapshot` against a server that is not a well-behaved
//! verigated: it answers with errors, with bytes that are not evidence or not a
//! snapshot, or closes the connection. A real verigated never sends these answers, so
//! a small TLS server stands in for a broken or hostile one (the only mock here).
//! Shows: no panic; an error answer or a dropped connection means the checks could not
//! run (exit 2, the reason printed); bytes that are not evidence are a failed check
//! (exit 1), since the VM, not the user, is at fault; no snapshot file is written.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use testkit::serve::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the stand-in answers to `(method, path)`: a status and a body, or `None` to
/// close the connection without an answer (see [`CLOSE`] to close after answering).
type Answer = Arc<dyn Fn(&str, &str) -> Option<(u16, Vec<u8>)> + Send + Sync>;

/// Status codes above this are sent as `code - CLOSE` and the connection is closed
/// after the answer, as a server without keep-alive does.
const CLOSE: u16 = 1000;

/// A TLS server on 127.0.0.1 speaking just enough HTTP/1.1 (keep-alive, no request
/// bodies) to answer the CLI. Stops on drop.
struct StandIn {
    server: Server,
}

impl StandIn {
    fn start(answer: Answer) -> StandIn {
        let own = testkit::tls::self_signed("vm.example.com").expect("certificate");
        let mut config = rustls::ServerConfig::builder_with_provider(testkit::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![own.cert], own.key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let server = Server::start("stand-in", move |tcp| {
            let (acceptor, answer) = (acceptor.clone(), answer.clone());
            async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls, answer).await;
                }
            }
        })
        .expect("stand-in server");
        StandIn { server }
    }

    fn url(&self) -> String {
        format!("https://{}", self.server.addr())
    }
}

async fn serve(mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, answer: Answer) {
    let mut buf = Vec::new();
    loop {
        // One request head (the CLI sends no bodies).
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let mut first = head.lines().next().unwrap_or_default().split(' ');
        let (method, path) = (
            first.next().unwrap_or_default(),
            first.next().unwrap_or_default(),
        );
        let Some((status, body)) = answer(method, path) else {
            return;
        };
        let (status, close) = if status > CLOSE {
            (status - CLOSE, true)
        } else {
            (status, false)
        };
        let mut res = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        res.extend_from_slice(&body);
        if tls.write_all(&res).await.is_err() || close {
            let _ = tls.shutdown().await;
            return;
        }
    }
}

fn verigate(url: &str, args: &[&str], cwd: &Path) -> Output {
    testkit::cli::logged(
        Command::new(env!("CARGO_BIN_EXE_verigate"))
            .args(["--url", url, "--allow-insecure-tls"])
            .args(args)
            .current_dir(cwd),
    )
}

/// A snapshot file the verify command accepts as input.
fn snapshot_file(dir: &Path) -> String {
    let s = attest::snapshot::Snapshot {
        version: attest::snapshot::SNAPSHOT_VERSION,
        created_at: "2026-11-28T00:00:00Z".into(),
        tee_policy: attest::snapshot::TeePolicy::None,
        tpm_policy: None,
        ima: None,
        manifest: attest::binding::Manifest::default(),
        filehashes: vec![],
    };
    let p = dir.join("snap.json");
    std::fs::write(&p, s.to_json()).unwrap();
    p.to_string_lossy().into_owned()
}

fn only(status: u16, body: &'static [u8]) -> Answer {
    Arc::new(move |_, _| Some((status, body.to_vec())))
}

#[test]
fn verify_reports_each_bad_answer_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_file(dir.path());
    let verify = |answer: Answer| {
        let server = StandIn::start(answer);
        verigate(&server.url(), &["verify", "--snapshot", &snap], dir.path())
    };

    // An API error: the checks could not run, and the server's reason is shown.
    let out = verify(only(
        400,
        br#"{"error":"bad nonce","detail":"nonce must be 64 hex characters"}"#,
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad nonce: nonce must be 64 hex"));

    // A connection closed before any answer.
    let out = verify(Arc::new(|_, _| None));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/v1/attestation"));

    // Bytes that are not evidence, and evidence of an unknown version: failed checks.
    for body in [
        b"not json".as_slice(),
        b"{}".as_slice(),
        br#"{"version": 9}"#.as_slice(),
        &[0xff; 64],
    ] {
        let body = body.to_vec();
        let out = verify(Arc::new(move |_, _| Some((200, body.clone()))));
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("[FAIL] evidence: "),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn snapshot_writes_nothing_from_a_bad_server() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.json");
    let out_arg = out_file.to_string_lossy().into_owned();
    let snapshot = |answer: Answer| {
        let server = StandIn::start(answer);
        verigate(
            &server.url(),
            &["snapshot", "--allow-simulated-tee", "--out", &out_arg],
            dir.path(),
        )
    };

    // The job cannot start.
    let out = snapshot(only(
        403,
        br#"{"error":"forbidden","detail":"no snapshots here"}"#,
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden: no snapshots here"));

    // The job fails while polled; progress that is not progress is only not shown.
    let out = snapshot(Arc::new(|method, _| match method {
        "POST" => Some((202, br#"{"state":"running"}"#.to_vec())),
        _ => Some((
            500,
            br#"{"error":"snapshot failed","detail":"root /x is missing"}"#.to_vec(),
        )),
    }));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("root /x is missing"));

    // A "snapshot" that is not one, then evidence that is not evidence.
    let polls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let out = snapshot(Arc::new(move |method, path| match (method, path) {
        ("POST", _) => Some((202, b"{}".to_vec())),
        ("GET", "/v1/snapshot") => {
            // Progress that does not parse first, then the "result".
            if polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                Some((202, b"[1, 2".to_vec()))
            } else {
                Some((200, br#"{"version": 1}"#.to_vec()))
            }
        }
        _ => Some((200, b"{}".to_vec())),
    }));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] snapshot: "));

    let out = snapshot(Arc::new(|method, path| match (method, path) {
        ("POST", _) => Some((202, b"{}".to_vec())),
        ("GET", "/v1/snapshot") => Some((200, {
            let s = attest::snapshot::Snapshot {
                version: attest::snapshot::SNAPSHOT_VERSION,
                created_at: "2026-11-28T00:00:00Z".into(),
                tee_policy: attest::snapshot::TeePolicy::None,
                tpm_policy: None,
                ima: None,
                manifest: attest::binding::Manifest::default(),
                filehashes: vec![],
            };
            s.to_json()
        })),
        _ => Some((200, b"not evidence".to_vec())),
    }));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] evidence: "));

    assert!(!out_file.exists(), "nothing was written");
}

#[test]
fn snapshot_polls_on_through_a_server_that_closes_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.json");
    let polls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let gets = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let evidence_gets = gets.clone();
    // Every answer closes its connection: the CLI must open a new one for each request
    // (polls, then the evidence) rather than stop.
    let server = StandIn::start(Arc::new(move |method, path| match (method, path) {
        ("POST", _) => Some((CLOSE + 202, b"{}".to_vec())),
        ("GET", "/v1/snapshot") => {
            if polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 2 {
                Some((
                    CLOSE + 202,
                    br#"{"phase":"hashing","files_done":1}"#.to_vec(),
                ))
            } else {
                Some((CLOSE + 200, snapshot_json()))
            }
        }
        _ => {
            evidence_gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some((CLOSE + 200, b"not evidence".to_vec()))
        }
    }));
    let out = verigate(
        &server.url(),
        &[
            "snapshot",
            "--allow-simulated-tee",
            "--out",
            out_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    // It got as far as judging the evidence (which is not evidence, so exit 1).
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL] evidence: "));
    assert_eq!(gets.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(!out_file.exists());
}

fn snapshot_json() -> Vec<u8> {
    attest::snapshot::Snapshot {
        version: attest::snapshot::SNAPSHOT_VERSION,
        created_at: "2026-11-28T00:00:00Z".into(),
        tee_policy: attest::snapshot::TeePolicy::None,
        tpm_policy: None,
        ima: None,
        manifest: attest::binding::Manifest::default(),
        filehashes: vec![],
    }
    .to_json()
}

/// ANSI sequences a hostile VM might hide in its answers: clear the screen, go home,
/// print a forged verdict, and a raw carriage return to overwrite a line.
const ANSI: &str = "\\u001b[2J\\u001b[H[PASS] all checks PASSED\\r\\u009b31m";

fn assert_no_raw_control(out: &Output) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{9b}') && !text.contains('\r'),
            "raw control characters reached {name}: {text:?}"
        );
    }
}

#[test]
fn ansi_from_a_hostile_vm_never_reaches_the_terminal_and_202_forever_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.json");
    let progress = format!(r#"{{"state":"running","phase":"{ANSI}","files_seen":1}}"#);
    // POST starts "a job"; GET answers 202 forever, with the sequences in its progress.
    let server = StandIn::start(Arc::new(move |_, _| {
        Some((202, progress.clone().into_bytes()))
    }));
    let out = verigate(
        &server.url(),
        &[
            "snapshot",
            "--timeout",
            "2s",
            "--out",
            out_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gave up after --timeout 2s"), "{stderr}");
    assert!(
        stderr.contains("\\x1b[2J"),
        "the sequence is shown escaped: {stderr}"
    );
    assert_no_raw_control(&out);
    assert!(!out_file.exists());

    // An error answer carrying the sequences: printed escaped.
    let error = format!(r#"{{"error":"bad nonce","detail":"{ANSI}"}}"#);
    let server = StandIn::start(Arc::new(move |_, _| {
        Some((400, error.clone().into_bytes()))
    }));
    let snap = snapshot_file(dir.path());
    let out = verigate(&server.url(), &["verify", "--snapshot", &snap], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad nonce"));
    assert_no_raw_control(&out);

    // Evidence whose field name carries them: the failed check's detail quotes it,
    // escaped.
    let evidence = format!(r#"{{"version":1,"{ANSI}":1}}"#);
    let server = StandIn::start(Arc::new(move |_, _| {
        Some((200, evidence.clone().into_bytes()))
    }));
    let out = verigate(&server.url(), &["verify", "--snapshot", &snap], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[FAIL]"));
    assert_no_raw_control(&out);
}
