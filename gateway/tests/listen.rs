//! Several `listen` addresses: verigated accepts and routes on each (IPv4 loopback
//! addresses, and IPv6 loopback where this machine has it); several data-plane threads
//! on one port.

mod common;

use std::net::{SocketAddr, TcpListener};

use common::*;
use testkit::tls::{self, HelloDelivery};

#[test]
fn every_listen_address_routes() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    // The harness's own address comes first; two more are added by hand.
    let second: SocketAddr = TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let v6: Option<SocketAddr> = TcpListener::bind("[::1]:0")
        .ok()
        .and_then(|l| l.local_addr().ok());
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    // Rewrite the file with the extra addresses and restart on it.
    let mut listen = vec![gw.addr.to_string(), second.to_string()];
    if let Some(v6) = v6 {
        listen.push(v6.to_string());
    } else {
        eprintln!("no IPv6 loopback here: testing IPv4 addresses only");
    }
    let text = std::fs::read_to_string(&gw.config_path).unwrap().replace(
        &format!("listen = [\"{}\"]", gw.addr),
        &format!(
            "listen = [{}]",
            listen
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    drop(gw);
    let path = dir.path().join("multi.toml");
    std::fs::write(&path, text).unwrap();
    let log = std::fs::File::create(dir.path().join("multi.log")).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_verigated"));
    cmd.arg("--config")
        .arg(&path)
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let _child = testkit::process::ChildGuard::spawn("verigated", &mut cmd).unwrap();
    for addr in &listen {
        let addr: SocketAddr = addr.parse().unwrap();
        assert!(
            testkit::ports::wait_for_listener(addr, PATIENCE),
            "nothing listens on {addr}: {}",
            std::fs::read_to_string(dir.path().join("multi.log")).unwrap_or_default()
        );
        for backend in &backends {
            let mut s = tls::connect(addr, Some(&backend.name), &[], HelloDelivery::Whole)
                .unwrap_or_else(|e| panic!("{addr} {}: {e:#}", backend.name));
            assert!(s.cert == backend.cert);
            assert_eq!(
                s.greeting().unwrap(),
                format!("hello from {}", backend.name)
            );
        }
    }
}

/// `gateway.threads = 4`: four data-plane threads, each with its own socket on the
/// port. Every connection is routed whichever thread the kernel hands it to, the own
/// endpoint (served on the control runtime) answers, and SIGTERM still drains and ends
/// the process cleanly.
#[test]
fn several_data_plane_threads_share_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let mut gw = Gateway::start(dir.path(), "threads = 4", &routes_for(&backends));
    gw.wait_for_log_count("listening listen=", 4);
    for i in 0..24 {
        let backend = &backends[i % backends.len()];
        let mut session = gw.connect(Some(&backend.name)).unwrap();
        assert!(session.cert == backend.cert, "connection {i}");
        assert_eq!(
            session.greeting().unwrap(),
            format!("hello from {}", backend.name)
        );
    }
    let (status, body) = gw.get("/healthz");
    assert!(status.contains("200"), "{status} {body}");
    assert_eq!(
        gw.metric("verigated_connections_total{route=\"a.example.com\"}"),
        Some(8)
    );
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit().expect("verigated exited");
    assert!(status.success(), "{status:?}: {}", gw.log());
    assert_eq!(gw.log().matches("stopped listening").count(), 4);
}
