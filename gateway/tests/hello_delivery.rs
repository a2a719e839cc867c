//! A ClientHello reaches verigated however the client's stack cuts it: in one segment,
//! in three TCP segments 100 ms apart, one byte at a time, and as two TLS records (a real
//! rustls hello re-framed). Each must be routed to the right backend, whose certificate
//! the client then sees.

mod common;

use std::time::Duration;

use common::*;
use testkit::tls::{self, HelloDelivery};

fn routed_with(delivery: impl Fn() -> HelloDelivery) {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    for backend in &backends {
        let mut session = tls::connect(gw.addr, Some(&backend.name), &["h2"], delivery())
            .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", backend.name, gw.log()));
        assert!(
            session.cert == backend.cert,
            "{} went elsewhere",
            backend.name
        );
        assert_eq!(
            session.greeting().unwrap(),
            format!("hello from {}", backend.name)
        );
    }
}

#[test]
fn one_segment() {
    routed_with(|| HelloDelivery::Whole);
}

#[test]
fn three_segments_100ms_apart() {
    routed_with(|| HelloDelivery::Segments {
        n: 3,
        pause: Duration::from_millis(100),
    });
}

#[test]
fn one_byte_at_a_time() {
    routed_with(|| HelloDelivery::ByteByByte);
}

#[test]
fn two_tls_records() {
    routed_with(|| HelloDelivery::TwoRecords);
}

#[test]
fn own_endpoint_gets_split_hellos_too() {
    // The bytes peeked across records are replayed into rustls as they came.
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), "", "");
    for delivery in [HelloDelivery::TwoRecords, HelloDelivery::ByteByByte] {
        let session = tls::connect(gw.addr, Some(DOMAIN), &["http/1.1"], delivery).unwrap();
        assert_eq!(session.alpn.as_deref(), Some(&b"http/1.1"[..]));
    }
}
