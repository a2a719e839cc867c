//! The own endpoint through a routed name: a ClientHello whose SNI a route takes and
//! whose ALPN list is exactly `verigate/1` is answered by verigated itself (its own
//! certificate, its API), through a real verigated with real TLS backends; every other
//! list (`h2`, `h2` and `verigate/1`, none) reaches the route's backend untouched; a
//! name no route takes is still refused.

mod common;

use std::io::{Read, Write};

use common::*;
use testkit::tls::{self, HelloDelivery, Session};

fn connect(gw: &Gateway, sni: &str, alpn: &[&str]) -> anyhow::Result<Session> {
    tls::connect(gw.addr, Some(sni), alpn, HelloDelivery::Whole)
}

/// `GET /healthz` on a session, HTTP/1.1; returns the whole answer.
fn healthz(session: &mut Session, host: &str) -> String {
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    session.stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = session.stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn verigate_alpn_alone_reaches_the_own_endpoint_on_a_routed_name() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    let own = gw.connect(None).expect("own endpoint").cert;

    for backend in &backends {
        let mut session = connect(&gw, &backend.name, &["verigate/1"]).unwrap();
        assert!(
            session.cert == own,
            "{}: verigate/1 did not reach the own endpoint",
            backend.name
        );
        assert_eq!(session.alpn.as_deref(), Some(&b"verigate/1"[..]));
        let answer = healthz(&mut session, &backend.name);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with("ok") || answer.contains("\r\n\r\nok"),
            "{answer}"
        );
    }
    gw.wait_for_log("sni=a.example.com route=self");
}

#[test]
fn every_other_alpn_list_reaches_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    let a = &backends[0];
    for alpn in [
        &[][..],
        &["h2"][..],
        &["h2", "verigate/1"][..],
        &["verigate/1", "http/1.1"][..],
        &["verigate/2"][..],
        // The TLS-ALPN-01 id is answered by verigated for gateway.domain only: on a
        // routed name it is the backend's (its own ACME client validating).
        &["acme-tls/1"][..],
    ] {
        let mut session = connect(&gw, &a.name, alpn).unwrap();
        assert!(session.cert == a.cert, "{alpn:?} did not reach the backend");
        assert_eq!(
            session.greeting().unwrap(),
            format!("hello from {}", a.name),
            "{alpn:?}"
        );
    }
}

#[test]
fn verigate_alpn_on_a_name_without_route_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    assert!(connect(&gw, "nobody.example.org", &["verigate/1"]).is_err());
    gw.wait_for_log("sni=nobody.example.org route=- backend=-");
}
