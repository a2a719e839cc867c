//! Hostile clients of a public port 443, each against a real verigated on loopback: an
//! HTTP/2 client that sends its preface and nothing more (closed), an HTTP/1 client that
//! never reads a large response (dropped), clients that fill the own endpoint's budget
//! (passthrough routes still served) or one source's share (another source still
//! served), a PROXY header from a peer that is no load balancer (refused), and a backend
//! that accepts and never answers (that client dropped). Each case asserts what happened
//! to the connection, never how long it took; waits end at [`PATIENCE`].

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};

use common::*;
use passthrough::proxy_protocol;
use testkit::ports::connect_from;
use testkit::tls::{self, HelloDelivery, Session};

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A TLS session to the own endpoint from `source`, offering `alpn`.
fn own_session(gw: &Gateway, source: IpAddr, alpn: &[&str]) -> anyhow::Result<Session> {
    let sock = connect_from(source, gw.addr)?;
    tls::connect_over(sock, &[], Some(DOMAIN), alpn, HelloDelivery::Whole)
}

/// Opens own-endpoint sessions from `source` until one is refused; returns the ones
/// held open. Panics if more than `max` succeed.
fn fill_from(gw: &Gateway, source: IpAddr, max: usize) -> Vec<Session> {
    let mut held = Vec::new();
    loop {
        match own_session(gw, source, &["http/1.1"]) {
            Ok(s) => held.push(s),
            Err(_) => return held,
        }
        assert!(
            held.len() <= max,
            "more than {max} connections from {source} were served"
        );
    }
}

#[test]
fn a_silent_http2_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        "",
        "[api]\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"\n",
    );
    let mut session = own_session(&gw, loopback(1), &["h2"]).unwrap();
    assert_eq!(session.alpn.as_deref(), Some(&b"h2"[..]));
    session.stream.write_all(h2::PREFACE_AND_SETTINGS).unwrap();
    session.stream.flush().unwrap();
    // The server allows few streams at once (api.http2_max_concurrent_streams).
    assert!(h2::server_settings(&mut session).contains(&(h2::MAX_CONCURRENT_STREAMS, 16)));
    // It never answers the server's SETTINGS, GOAWAY or PING.
    assert!(
        ended(&mut session),
        "a silent HTTP/2 connection was kept open"
    );
    gw.wait_for_log("outcome=own_endpoint_dropped");
    // The endpoint still serves.
    assert_eq!(gw.get("/healthz").0, "HTTP/1.1 200 OK");
}

#[test]
fn a_silent_http2_connection_is_dropped_when_the_drain_grace_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(
        dir.path(),
        "drain_grace_period = \"1s\"",
        "[api]\nheader_read_timeout = \"1h\"\nidle_timeout = \"1h\"\n",
    );
    let mut session = own_session(&gw, loopback(1), &["h2"]).unwrap();
    session.stream.write_all(h2::PREFACE_AND_SETTINGS).unwrap();
    session.stream.flush().unwrap();
    h2::server_settings(&mut session);
    gw.signal(libc::SIGTERM);
    // The GOAWAY of the graceful close goes unanswered; the grace ends it.
    assert!(ended(&mut session), "the connection outlived the drain");
    gw.wait_for_log("outcome=own_endpoint_dropped");
    assert!(
        gw.log().contains("after closing for shutdown"),
        "{}",
        gw.log()
    );
    let status = gw.wait_exit().expect("verigated did not exit");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_busy_connection_is_closed_at_its_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), "", "[api]\nmax_connection_lifetime = \"2s\"\n");
    let mut session = own_session(&gw, loopback(1), &["http/1.1"]).unwrap();
    // Never idle: one keep-alive request after another, each answered, until the
    // gateway ends the connection.
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut answered = 0;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "still open after {answered} requests"
        );
        let sent = session
            .stream
            .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n").as_bytes())
            .and_then(|()| session.stream.flush());
        let mut response = [0u8; 512];
        match (sent, session.stream.read(&mut response)) {
            (Ok(()), Ok(n)) if n > 0 => answered += 1,
            _ => break,
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(answered > 0);
    gw.wait_for_log("outcome=max_lifetime");
}

#[test]
fn an_http1_client_that_never_reads_a_large_response_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    // A stored snapshot of about 12 MB, served whole by GET /v1/snapshot.
    let mut json = String::from(
        "{\"version\":1,\"created_at\":\"2026-11-28T00:00:00Z\",\"tee_policy\":{\"kind\":\"none\"},\
         \"tpm_policy\":null,\"ima\":null,\"manifest\":[],\"filehashes\":[",
    );
    for i in 0..120_000 {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "[\"/usr/lib/file-{i:08}\",\"{}\"]",
            "ab".repeat(32)
        ));
    }
    json.push_str("]}");
    std::fs::write(dir.path().join("snapshot.json"), json).unwrap();
    let gw = Gateway::start(dir.path(), "", "[api]\nsend_timeout = \"2s\"\n");
    gw.wait_for_log("loaded the stored snapshot");

    let mut session = own_session(&gw, loopback(1), &["http/1.1"]).unwrap();
    session
        .stream
        .write_all(format!("GET /v1/snapshot HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n").as_bytes())
        .unwrap();
    session.stream.flush().unwrap();
    // Never read: the gateway's writes stall once the socket buffers are full.
    gw.wait_for_log("api.send_timeout");
    assert!(
        gw.connection_lines()
            .iter()
            .any(|l| l.contains("outcome=own_endpoint_error") && l.contains("api.send_timeout")),
        "{}",
        gw.log()
    );
    // What the client finally reads ends: the connection is gone.
    assert!(ended(&mut session), "the connection stayed open");
}

#[test]
fn passthrough_is_served_while_the_own_endpoint_budget_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(
        dir.path(),
        "max_connections = 10",
        &format!(
            "{}[api]\nmax_connections = 2\nmax_connections_per_source = 2\n",
            routes_for(&backends)
        ),
    );
    let held = fill_from(&gw, loopback(1), 2);
    assert_eq!(held.len(), 2);
    gw.wait_for_log("outcome=refused_api_max_connections");
    // A second source finds the budget full too: it is the endpoint's, not a source's.
    assert!(own_session(&gw, loopback(2), &["http/1.1"]).is_err());
    // Passthrough has its own budget.
    let mut routed = gw.connect(Some("a.example.com")).unwrap();
    assert_eq!(routed.greeting().unwrap(), "hello from a.example.com");
    drop(held);
    // Freed: the own endpoint serves again.
    let deadline = std::time::Instant::now() + PATIENCE;
    while own_session(&gw, loopback(1), &["http/1.1"]).is_err() {
        assert!(std::time::Instant::now() < deadline, "never served again");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn healthz_from_another_source_while_one_source_is_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!(
        "[api]\nadmin_token_sha256 = [\"{}\"]\nmax_connections_per_source = 3\n",
        sha256_hex(TOKEN)
    );
    let gw = Gateway::start(dir.path(), "", &api);
    let held = fill_from(&gw, loopback(1), 3);
    assert_eq!(held.len(), 3);
    gw.wait_for_log("outcome=refused_api_max_connections_per_source");
    let (status, body) = gw.get_from(loopback(2), "/healthz");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    let (_, metrics) = gw.get_from_as(loopback(2), "/metrics", Some(TOKEN));
    let refused = metric_value(
        &metrics,
        "verigated_connections_refused_total{reason=\"api_max_connections_per_source\"}",
    )
    .unwrap();
    assert!(refused >= 1, "refused {refused}");
    drop(held);
}

#[test]
fn passthrough_connections_per_source_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(
        dir.path(),
        "max_connections_per_source = 2\nclient_hello_timeout = \"60s\"",
        &routes_for(&backends),
    );
    // Two raw connections from 127.0.0.1 hold that source's share (no hello yet).
    let held = [
        connect_from(loopback(1), gw.addr).unwrap(),
        connect_from(loopback(1), gw.addr).unwrap(),
    ];
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let mut third = connect_from(loopback(1), gw.addr).unwrap();
        let (answer, closed) = read_until_closed_briefly(&mut third);
        if closed {
            assert!(answer.is_empty());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a third connection was kept"
        );
    }
    gw.wait_for_log("outcome=refused_max_connections_per_source");
    // Another source is routed.
    let sock = connect_from(loopback(2), gw.addr).unwrap();
    let mut routed =
        tls::connect_over(sock, &[], Some("b.example.com"), &[], HelloDelivery::Whole).unwrap();
    assert_eq!(routed.greeting().unwrap(), "hello from b.example.com");
    drop(held);
}

/// Like [`read_until_closed`], giving up after two seconds (the connection was kept).
fn read_until_closed_briefly(sock: &mut std::net::TcpStream) -> (Vec<u8>, bool) {
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 64];
    match sock.read(&mut buf) {
        Ok(0) => (Vec::new(), true),
        Ok(n) => (buf[..n].to_vec(), false),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            (Vec::new(), false)
        }
        Err(_) => (Vec::new(), true),
    }
}

#[test]
fn a_proxy_header_from_an_unlisted_peer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    // The load balancer is 127.0.0.2; the test's other connections come from 127.0.0.1.
    let gw = Gateway::start(
        dir.path(),
        "accept_proxy_protocol_from = [\"127.0.0.2/32\"]",
        &routes_for(&backends),
    );
    let claimed: SocketAddr = "203.0.113.9:4444".parse().unwrap();
    let header = proxy_protocol::encode_v2(claimed, gw.addr, None);
    let hello = tls::client_hello_bytes(Some("a.example.com"), &[]).unwrap();
    let mut sock = connect_from(loopback(1), gw.addr).unwrap();
    let _ = sock.write_all(&header);
    let _ = sock.write_all(&hello);
    let (answer, closed) = read_until_closed(&mut sock);
    assert!(
        closed && answer.is_empty(),
        "a PROXY header from 127.0.0.1 was accepted"
    );
    gw.wait_for_log("outcome=refused_untrusted_proxy_header");
    assert!(gw
        .log()
        .contains("PROXY header from a peer not in gateway.accept_proxy_protocol_from refused"));
    assert!(
        !gw.log().contains("203.0.113.9"),
        "the claimed address was believed"
    );

    // The same peer without a header is a direct client (documented choice).
    let sock = connect_from(loopback(1), gw.addr).unwrap();
    let mut direct =
        tls::connect_over(sock, &[], Some("a.example.com"), &[], HelloDelivery::Whole).unwrap();
    assert_eq!(direct.greeting().unwrap(), "hello from a.example.com");
    // The listed load balancer's header is believed.
    let sock = connect_from(loopback(2), gw.addr).unwrap();
    let mut behind = tls::connect_over(
        sock,
        &header,
        Some("b.example.com"),
        &[],
        HelloDelivery::Whole,
    )
    .unwrap();
    assert_eq!(behind.greeting().unwrap(), "hello from b.example.com");
    drop(behind);
    gw.wait_for_log("client=203.0.113.9:4444");
    // /metrics through the load balancer (a LOCAL header, as its health check sends).
    let (_, metrics) = gw.get_from_as(loopback(2), "/metrics", Some(TOKEN));
    assert_eq!(
        metric_value(
            &metrics,
            "verigated_connections_refused_total{reason=\"untrusted_proxy_header\"}"
        ),
        Some(1)
    );
}

#[test]
fn a_backend_that_never_answers_is_dropped_at_the_first_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts, reads whatever comes, never sends a byte.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_addr = mute.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in mute.incoming().flatten() {
            held.push(conn);
        }
    });
    let gw = Gateway::start(
        dir.path(),
        "backend_first_byte_timeout = \"1s\"\nidle_timeout = \"5m\"",
        &route("mute.example.com", mute_addr),
    );
    let hello = tls::client_hello_bytes(Some("mute.example.com"), &[]).unwrap();
    let mut sock = raw(gw.addr);
    sock.write_all(&hello).unwrap();
    let (answer, closed) = read_until_closed(&mut sock);
    assert!(
        closed && answer.is_empty(),
        "the client of a mute backend was kept"
    );
    gw.wait_for_log("outcome=backend_first_byte_timeout");
}
