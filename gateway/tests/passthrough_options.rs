//! The passthrough settings of `[gateway]` reach the relay: `idle_timeout` closes a
//! connection on which nothing moves (and is logged as such), and `splice = false`
//! (the portable copy) forwards as intact as splice(2) does, half-close included.

mod common;

use std::io::{Read, Write};

use common::*;
use testkit::tls::read_line;

#[test]
fn idle_timeout_closes_a_quiet_connection() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "idle_timeout = \"1s\"", &routes_for(&backends));
    let mut s = gw.connect(Some("a.example.com")).unwrap();
    assert_eq!(s.greeting().unwrap(), "hello from a.example.com");
    // Say nothing: the gateway closes both sides once the timeout passes.
    assert!(
        read_line(&mut s.stream).is_err(),
        "a quiet connection stayed open"
    );
    gw.wait_for_log("outcome=idle_timeout");
}

#[test]
fn portable_copy_keeps_bytes_and_half_close() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "splice = false", &routes_for(&backends));
    for backend in &backends {
        let mut s = gw.connect(Some(&backend.name)).unwrap();
        assert!(s.cert == backend.cert);
        assert_eq!(
            s.greeting().unwrap(),
            format!("hello from {}", backend.name)
        );
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        s.stream.write_all(&payload).unwrap();
        s.stream.conn.send_close_notify();
        s.stream.flush().unwrap();
        s.stream.sock.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        let _ = s.stream.read_to_end(&mut echoed);
        assert!(echoed == payload, "{}: echo differs", backend.name);
    }
}
