//! Clients and backends that misbehave: bytes that are not TLS, a ClientHello larger
//! than the 16 KiB bound, a client that stalls mid-hello (closed at
//! `client_hello_timeout` while other clients are served), and a dead backend (that
//! client closed promptly, the others fine, the metric counts it). Each case ends with
//! the connection closed, one log line naming the outcome, and its counter.

mod common;

use std::io::Write;

use common::*;
use testkit::tls::{self, TlsBackend};

#[test]
fn non_tls_bytes_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    let mut sock = raw(gw.addr);
    sock.write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
        .unwrap();
    let (answer, closed) = read_until_closed(&mut sock);
    assert!(closed, "a plain HTTP request was left open");
    assert!(
        answer.is_empty(),
        "the gateway answered a non-TLS client: {answer:?}"
    );
    gw.wait_for_log("outcome=not_tls");
    assert_eq!(gw.metric("verigated_client_hello_errors_total"), Some(1));
}

#[test]
fn oversized_hello_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    // A ClientHello that announces 64 KiB and comes in full 16 KiB records: it can never
    // end within the 16 KiB bound.
    let mut bytes = Vec::new();
    let mut payload = vec![1u8, 0x01, 0x00, 0x00];
    payload.resize(16 * 1024, 0x41);
    for _ in 0..2 {
        bytes.extend_from_slice(&[22, 3, 1, 0x40, 0x00]);
        bytes.extend_from_slice(&payload);
        payload = vec![0x41; 16 * 1024];
    }
    let mut sock = raw(gw.addr);
    // The gateway may close before it read everything: a failed write is fine.
    let _ = sock.write_all(&bytes);
    let (answer, closed) = read_until_closed(&mut sock);
    assert!(
        closed && answer.is_empty(),
        "an oversized hello was not closed"
    );
    let log = {
        gw.wait_for_log("client_hello");
        gw.log()
    };
    assert!(
        log.contains("outcome=client_hello_too_large") || log.contains("outcome=bad_client_hello"),
        "{log}"
    );
    assert_eq!(gw.metric("verigated_client_hello_errors_total"), Some(1));
    // The gateway still serves.
    let mut ok = gw.connect(Some("a.example.com")).unwrap();
    assert_eq!(ok.greeting().unwrap(), "hello from a.example.com");
}

#[test]
fn stalled_hello_is_closed_at_the_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(
        dir.path(),
        "client_hello_timeout = \"2s\"",
        &routes_for(&backends),
    );
    let hello = tls::client_hello_bytes(Some("a.example.com"), &[]).unwrap();
    let mut stalled = raw(gw.addr);
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    // While it stalls, others get through.
    for backend in &backends {
        let mut s = gw.connect(Some(&backend.name)).unwrap();
        assert_eq!(
            s.greeting().unwrap(),
            format!("hello from {}", backend.name)
        );
    }
    let (answer, closed) = read_until_closed(&mut stalled);
    assert!(closed, "the stalled client was never closed");
    assert!(answer.is_empty());
    gw.wait_for_log("outcome=client_hello_timeout");
    assert_eq!(gw.metric("verigated_client_hello_timeouts_total"), Some(1));
}

#[test]
fn dead_backend_closes_that_client_only() {
    let dir = tempfile::tempdir().unwrap();
    let alive = TlsBackend::start("alive.example.com").unwrap();
    // A port nobody listens on: bound, then released.
    let dead_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let routes = route("alive.example.com", alive.addr) + &route("dead.example.com", dead_addr);
    let gw = Gateway::start(dir.path(), "", &routes);

    let hello = tls::client_hello_bytes(Some("dead.example.com"), &[]).unwrap();
    let mut sock = raw(gw.addr);
    sock.write_all(&hello).unwrap();
    let (answer, closed) = read_until_closed(&mut sock);
    assert!(
        closed && answer.is_empty(),
        "the client of a dead backend was left open"
    );
    assert!(gw.connect(Some("dead.example.com")).is_err());

    let mut ok = gw.connect(Some("alive.example.com")).unwrap();
    assert!(ok.cert == alive.cert);
    assert_eq!(ok.greeting().unwrap(), "hello from alive.example.com");
    gw.wait_for_log("route=dead.example.com");
    gw.wait_for_log("outcome=backend_unreachable");
    assert_eq!(
        gw.metric("verigated_backend_connect_failures_total{route=\"dead.example.com\"}"),
        Some(2)
    );
    assert_eq!(
        gw.metric("verigated_backend_connect_failures_total{route=\"alive.example.com\"}"),
        Some(0)
    );
}
