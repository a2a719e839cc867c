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

/// Hellos captured from real clients (curl, OpenSSL with a mixed-case name, Chromium
/// with a post-quantum key share, ~1.9 KB) reach their route byte for byte, whether they
/// arrive whole or cut in three segments.
#[test]
fn captured_real_hellos_are_forwarded_untouched() {
    use std::io::Write;
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../passthrough/tests/data/hellos");
    let captures = [
        ("curl.bin", "curl.example.net"),
        ("openssl_mixed_case.bin", "openssl.example.com"),
        ("chromium_pq.bin", "pq.chromium.test"),
        ("rustls_h2_http11.bin", "rustls.example.com"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let routes: String = captures
        .iter()
        .map(|(_, sni)| route(sni, backend_addr))
        .collect();
    let gw = Gateway::start(dir.path(), "", &routes);
    for (file, sni) in captures {
        let hello = std::fs::read(data.join(file)).unwrap();
        for split in [false, true] {
            let mut client = raw(gw.addr);
            if split {
                let third = hello.len() / 3;
                for chunk in [
                    &hello[..third],
                    &hello[third..2 * third],
                    &hello[2 * third..],
                ] {
                    client.write_all(chunk).unwrap();
                    std::thread::sleep(Duration::from_millis(100));
                }
            } else {
                client.write_all(&hello).unwrap();
            }
            // verigated also connects on its own (the certificate manifest's handshake,
            // with its own hello): wait for the connection that carries ours.
            let deadline = std::time::Instant::now() + PATIENCE;
            loop {
                assert!(std::time::Instant::now() < deadline, "{file} never arrived");
                let (mut conn, _) = backend.accept().unwrap();
                conn.set_read_timeout(Some(PATIENCE)).unwrap();
                if carries(&mut conn, &hello) {
                    break;
                }
            }
        }
        gw.wait_for_log(&format!("sni={sni} route={sni}"));
    }
}

/// Reads from `conn` while its bytes agree with `expected`: true once all of `expected`
/// arrived unchanged, false as soon as a byte differs or the peer closes.
fn carries(conn: &mut std::net::TcpStream, expected: &[u8]) -> bool {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < expected.len() {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        got.extend_from_slice(&buf[..n]);
        let upto = got.len().min(expected.len());
        if got[..upto] != expected[..upto] {
            return false;
        }
    }
    got.len() == expected.len()
}
