//! The own endpoint's time bounds that only a slow server part or a half-dead client
//! reaches, each against a real verigated on loopback: a request not answered within
//! `api.request_timeout` (an attestation whose TPM quote is held back) gets a JSON 503
//! naming the setting, and an HTTP/2 client that stops answering the server's keep-alive
//! PINGs (`api.http2_keepalive_interval`, `api.http2_keepalive_timeout`) is dropped.
//! Each case asserts what happened, never how long it took; waits end at [`PATIENCE`].

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;
use testkit::ports::{free_port_pair, wait_for_listener};
use testkit::process::ChildGuard;
use testkit::swtpm::Swtpm;
use testkit::tls::{self, HelloDelivery};

/// How long the slow TPM holds each quote: far beyond the `request_timeout` under test.
const QUOTE_HOLD_MS: &str = "120000";

/// A TPM whose quotes take [`QUOTE_HOLD_MS`]: the bench's slow TPM (a relay of the real
/// TPM protocol in front of a real swtpm, holding back only TPM2_Quote's response).
struct SlowTpm {
    _relay: ChildGuard,
    _tpm: Swtpm,
    port: u16,
}

impl SlowTpm {
    /// `None` (after `testkit::require` said why) without swtpm or python3.
    fn start() -> Option<SlowTpm> {
        if !testkit::require_programs(
            &["swtpm", "python3"],
            "apt-get install swtpm swtpm-tools python3",
        ) {
            return None;
        }
        let tpm = Swtpm::start().expect("swtpm");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/attestation/slow_tpm.py");
        // The relay's ports were free a moment ago; another process may take them first.
        for _ in 0..3 {
            let port = free_port_pair();
            let mut relay = ChildGuard::spawn(
                "slow_tpm.py",
                Command::new("python3")
                    .arg(&script)
                    .arg(port.to_string())
                    .arg(tpm.port().to_string())
                    .arg(QUOTE_HOLD_MS),
            )
            .expect("python3 runs");
            let both = [port, port + 1]
                .iter()
                .all(|p| wait_for_listener(SocketAddr::from(([127, 0, 0, 1], *p)), PATIENCE));
            if both && relay.is_running() {
                return Some(SlowTpm {
                    _relay: relay,
                    _tpm: tpm,
                    port,
                });
            }
        }
        panic!("slow_tpm.py did not listen");
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

#[test]
fn a_request_not_answered_within_request_timeout_gets_a_503() {
    let Some(tpm) = SlowTpm::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ima_log = dir.path().join("ima.bin");
    std::fs::write(&ima_log, b"").unwrap();
    let gw = Gateway::start_with_attestation(
        dir.path(),
        "",
        "[api]\nrequest_timeout = \"1s\"\n",
        &[],
        &format!(
            "tee = \"none\"\ntpm = \"{}\"\nima_log = \"{}\"",
            tpm.tcti(),
            ima_log.display()
        ),
    );
    let (status, body) = gw.get(&format!("/v1/attestation?nonce={}", "ab".repeat(32)));
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "request timed out", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("api.request_timeout"),
        "{v}"
    );
    // Only that request was bounded: the endpoint still answers.
    assert_eq!(gw.get("/healthz").0, "HTTP/1.1 200 OK");
}

#[test]
fn an_http2_client_that_stops_answering_pings_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // Idle and first-request limits far away: only the keep-alive PINGs can end this.
    let gw = Gateway::start(
        dir.path(),
        "",
        "[api]\nheader_read_timeout = \"10m\"\nidle_timeout = \"10m\"\n\
         http2_keepalive_interval = \"1s\"\nhttp2_keepalive_timeout = \"1s\"\n",
    );
    let sock = testkit::ports::connect_from([127, 0, 0, 1].into(), gw.addr).unwrap();
    let mut session =
        tls::connect_over(sock, &[], Some(DOMAIN), &["h2"], HelloDelivery::Whole).unwrap();
    assert_eq!(session.alpn.as_deref(), Some(&b"h2"[..]));
    session
        .stream
        .sock
        .set_read_timeout(Some(PATIENCE))
        .unwrap();
    session.stream.write_all(h2::PREFACE_AND_SETTINGS).unwrap();
    session.stream.flush().unwrap();

    // A live client: it acknowledges the server's SETTINGS and its first PING.
    let mut pings = 0;
    while pings < 2 {
        let (kind, flags, payload) =
            h2::read_frame(&mut session).expect("the server pings a client that answers");
        match (kind, flags & h2::ACK) {
            (h2::SETTINGS, 0) => h2::write_frame(&mut session, h2::SETTINGS, h2::ACK, &[]),
            (h2::PING, 0) => {
                pings += 1;
                if pings == 1 {
                    h2::write_frame(&mut session, h2::PING, h2::ACK, &payload);
                }
            }
            _ => {}
        }
    }
    // The second PING is never answered: the server drops the connection.
    assert!(
        ended(&mut session),
        "a client that stopped answering PINGs was kept open"
    );
    // Dropped for the unanswered PING, not for any other limit.
    gw.wait_for_log("keep-alive timed out");
    // The endpoint still serves.
    assert_eq!(gw.get("/healthz").0, "HTTP/1.1 200 OK");
}
