//! PROXY protocol on both sides of verigated. In: from a peer listed in
//! `accept_proxy_protocol_from`, the client address of the load balancer's v2 (or v1)
//! header is the one logged, and a connection without a header is refused; from an
//! unlisted peer a header is refused. Out: a route with `send_proxy_protocol`
//! gets a v2 header with the client's address and the SNI as Authority TLV, then the
//! untouched ClientHello.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

use common::*;
use passthrough::proxy_protocol;
use testkit::tls::{self, HelloDelivery};

#[test]
fn proxy_v2_in_logs_the_real_client_and_refuses_headerless() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(
        dir.path(),
        "accept_proxy_protocol_from = [\"127.0.0.1/32\"]",
        &routes_for(&backends),
    );
    let real: SocketAddr = "203.0.113.7:4711".parse().unwrap();
    let header = proxy_protocol::encode_v2(real, gw.addr, None);
    let mut session = tls::connect_prefixed(
        gw.addr,
        &header,
        Some("b.example.com"),
        &[],
        HelloDelivery::Whole,
    )
    .unwrap();
    assert!(session.cert == backends[1].cert);
    assert_eq!(session.greeting().unwrap(), "hello from b.example.com");
    drop(session);
    gw.wait_for_log("client=203.0.113.7:4711");

    // v1 too, from another address.
    let v1 = format!(
        "PROXY TCP4 198.51.100.9 127.0.0.1 5555 {}\r\n",
        gw.addr.port()
    );
    let mut session = tls::connect_prefixed(
        gw.addr,
        v1.as_bytes(),
        Some("a.example.com"),
        &[],
        HelloDelivery::Whole,
    )
    .unwrap();
    assert_eq!(session.greeting().unwrap(), "hello from a.example.com");
    drop(session);
    gw.wait_for_log("client=198.51.100.9:5555");

    // Without a header: refused, not routed.
    assert!(gw.connect(Some("a.example.com")).is_err());
    gw.wait_for_log("outcome=refused_proxy_header");
    let refused = gw
        .log()
        .lines()
        .filter(|l| l.contains("outcome=refused_proxy_header"))
        .count();
    assert_eq!(refused, 1);
}

#[test]
fn proxy_v2_out_carries_client_and_sni() {
    let dir = tempfile::tempdir().unwrap();
    // A plain TCP backend that records what arrives first.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let routes = format!(
        "[[route]]\nsni = \"pp.example.com\"\nbackend = \"{}\"\nsend_proxy_protocol = true\n",
        backend.local_addr().unwrap()
    );
    let gw = Gateway::start(dir.path(), "", &routes);
    let hello = tls::client_hello_bytes(Some("pp.example.com"), &[]).unwrap();
    let mut client = raw(gw.addr);
    let client_addr = client.local_addr().unwrap();
    client.write_all(&hello).unwrap();

    // verigated also connects on its own (the certificate manifest's handshake, with a
    // header naming verigated itself): skip connections that are not our client's.
    let mut buf = [0u8; 4096];
    let (mut conn, mut got, header, len) = loop {
        let (mut conn, _) = backend.accept().unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        let (header, len) = loop {
            if let Some(parsed) = proxy_protocol::parse(&got).unwrap() {
                break parsed;
            }
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "backend connection closed before a PROXY header");
            got.extend_from_slice(&buf[..n]);
        };
        if header.source == Some(client_addr) {
            break (conn, got, header, len);
        }
    };
    assert_eq!(header.destination, Some(gw.addr));
    assert_eq!(header.authority.as_deref(), Some("pp.example.com"));
    while got.len() < len + hello.len() {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        &got[len..],
        &hello[..],
        "the ClientHello was not passed on untouched"
    );
}

#[test]
fn proxy_local_health_check_and_broken_headers() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(
        dir.path(),
        "accept_proxy_protocol_from = [\"127.0.0.1/32\"]",
        &routes_for(&backends),
    );
    // v2 LOCAL (what HAProxy's check-send-proxy sends): no address in it, so the peer
    // stands as the client; the connection is still routed.
    let mut local = proxy_protocol::V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let mut session = tls::connect_prefixed(
        gw.addr,
        &local,
        Some("c.example.com"),
        &[],
        HelloDelivery::Whole,
    )
    .unwrap();
    let peer = session.stream.sock.local_addr().unwrap();
    assert_eq!(session.greeting().unwrap(), "hello from c.example.com");
    drop(session);
    gw.wait_for_log(&format!("client={peer}"));

    // Broken headers: each refused, none routed, each counted.
    let v1_garbage = b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n".to_vec();
    let mut bad_version = proxy_protocol::V2_SIGNATURE.to_vec();
    bad_version.extend_from_slice(&[0x31, 0x11, 0x00, 0x0c]);
    bad_version.extend_from_slice(&[0u8; 12]);
    let v1_too_long = format!("PROXY TCP4 {}\r\n", "1".repeat(200)).into_bytes();
    for header in [v1_garbage, bad_version, v1_too_long] {
        let hello = tls::client_hello_bytes(Some("a.example.com"), &[]).unwrap();
        let mut sock = raw(gw.addr);
        let _ = sock.write_all(&header);
        let _ = sock.write_all(&hello);
        let (answer, closed) = read_until_closed(&mut sock);
        assert!(
            closed && answer.is_empty(),
            "a broken PROXY header was routed"
        );
    }
    gw.wait_for_log_count("outcome=refused_proxy_header", 3);
    assert_eq!(
        gw.metric("verigated_connections_refused_total{reason=\"proxy_header\"}"),
        Some(3)
    );
}

#[test]
fn a_stalled_hello_behind_proxy_is_logged_with_the_real_client() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        dir.path(),
        "accept_proxy_protocol_from = [\"127.0.0.1/32\"]\nclient_hello_timeout = \"1s\"",
        "",
    );
    let real: SocketAddr = "192.0.2.44:6000".parse().unwrap();
    let mut sock = raw(gw.addr);
    sock.write_all(&proxy_protocol::encode_v2(real, gw.addr, None))
        .unwrap();
    sock.write_all(&[22, 3, 1]).unwrap();
    let (_, closed) = read_until_closed(&mut sock);
    assert!(closed);
    gw.wait_for_log("client=192.0.2.44:6000");
    assert!(gw.connection_lines().iter().any(
        |l| l.contains("client=192.0.2.44:6000") && l.contains("outcome=client_hello_timeout")
    ));
}
