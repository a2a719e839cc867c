//! `max_connections`: once that many connections are open, the next one is closed at
//! once (no byte read or written) and counted; when they close, new ones are served.

mod common;

use common::*;

#[test]
fn max_connections_refuses_the_extra_connection() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(
        dir.path(),
        "max_connections = 2\nclient_hello_timeout = \"60s\"",
        &routes_for(&backends),
    );
    // Two clients hold their slots (connected, hello not sent yet).
    let held = [raw(gw.addr), raw(gw.addr)];
    // Both are accepted before the third arrives: wait until the gateway counts them.
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut third = loop {
        let mut sock = raw(gw.addr);
        let (answer, closed) = {
            sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0u8; 16];
            match std::io::Read::read(&mut sock, &mut buf) {
                Ok(0) => (Vec::new(), true),
                Ok(n) => (buf[..n].to_vec(), false),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (Vec::new(), false),
                Err(_) => (Vec::new(), true),
            }
        };
        if closed {
            assert!(answer.is_empty());
            break sock;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection was refused"
        );
        drop(sock);
    };
    gw.wait_for_log("outcome=refused_max_connections");
    let _ = read_until_closed(&mut third);
    drop(held);
    // Slots free again: served.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match gw.connect(Some("a.example.com")) {
            Ok(mut s) => {
                assert_eq!(s.greeting().unwrap(), "hello from a.example.com");
                break;
            }
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "never served again: {e}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let refused = gw
        .metric("verigated_connections_refused_total{reason=\"max_connections\"}")
        .unwrap();
    assert!(refused >= 1, "refused {refused}");
}
