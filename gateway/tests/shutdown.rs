//! SIGTERM: verigated stops accepting at once, lets open connections finish within
//! `drain_grace_period`, then exits 0; connections still open when the grace period
//! ends are closed.

mod common;

use std::io::Write;

use common::*;
use testkit::tls::read_line;

/// Waits until a new TCP connection to `addr` is refused (the listener is closed).
fn wait_until_refused(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{addr} still accepts connections after SIGTERM");
}

#[test]
fn sigterm_drains_open_connections_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let mut gw = Gateway::start(
        dir.path(),
        "drain_grace_period = \"60s\"",
        &routes_for(&backends),
    );
    let mut open = gw.connect(Some("a.example.com")).unwrap();
    assert_eq!(open.greeting().unwrap(), "hello from a.example.com");

    gw.signal(libc::SIGTERM);
    gw.wait_for_log("stopping");
    wait_until_refused(gw.addr);
    assert!(gw.connect(Some("b.example.com")).is_err());

    // The open connection still works, then ends; verigated exits cleanly after it.
    open.stream.write_all(b"after sigterm\n").unwrap();
    assert_eq!(read_line(&mut open.stream).unwrap(), "after sigterm");
    drop(open);
    let status = gw
        .wait_exit()
        .expect("verigated did not exit after draining");
    assert!(status.success(), "exit status {status}");
    assert!(
        gw.log().contains("drained: every connection finished"),
        "{}",
        gw.log()
    );
}

#[test]
fn grace_period_bounds_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let mut gw = Gateway::start(
        dir.path(),
        "drain_grace_period = \"1s\"",
        &routes_for(&backends),
    );
    let mut open = gw.connect(Some("c.example.com")).unwrap();
    assert_eq!(open.greeting().unwrap(), "hello from c.example.com");
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit().expect("verigated outlived its grace period");
    assert!(status.success(), "exit status {status}");
    assert!(gw.log().contains("grace period over"), "{}", gw.log());
    // The held connection is gone with the process.
    let _ = open.stream.write_all(b"x\n");
    assert!(read_line(&mut open.stream).is_err());
}

#[test]
fn a_second_sigterm_ends_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let mut gw = Gateway::start(
        dir.path(),
        "drain_grace_period = \"10m\"",
        &routes_for(&backends),
    );
    let mut open = gw.connect(Some("a.example.com")).unwrap();
    assert_eq!(open.greeting().unwrap(), "hello from a.example.com");
    gw.signal(libc::SIGTERM);
    gw.wait_for_log("stopping");
    gw.signal(libc::SIGTERM);
    let status = gw
        .wait_exit()
        .expect("a second SIGTERM did not end the drain");
    assert!(status.success(), "exit status {status}");
    assert!(
        gw.log().contains("closing the remaining connections"),
        "{}",
        gw.log()
    );
}
