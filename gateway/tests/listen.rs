//! Several `listen` addresses: verigated accepts and routes on each (IPv4 loopback
//! addresses, and IPv6 loopback where this machine has it).

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
