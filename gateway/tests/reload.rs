//! SIGHUP: new connections see the new routes, open ones are untouched, a loop of
//! clients running through the reload sees zero failures; an invalid file is refused
//! with a log line and the old routes stay.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use testkit::tls::read_line;

#[test]
fn reload_while_traffic_flows() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, c] = three_backends();
    let gw = Gateway::start(
        dir.path(),
        "",
        &(route("a.example.com", a.addr) + &route("b.example.com", b.addr)),
    );
    // Refused before the reload: no route for c yet.
    assert!(gw.connect(Some("c.example.com")).is_err());

    // An open connection to b's old backend, across the reload.
    let mut open = gw.connect(Some("b.example.com")).unwrap();
    assert_eq!(open.greeting().unwrap(), "hello from b.example.com");

    // Clients in a loop during the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let addr = gw.addr;
    let a_cert = a.cert.clone();
    let looper = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let result = testkit::tls::connect(
                    addr,
                    Some("a.example.com"),
                    &[],
                    testkit::tls::HelloDelivery::Whole,
                )
                .and_then(|mut s| {
                    anyhow::ensure!(s.cert == a_cert, "a.example.com answered by another");
                    s.greeting()
                });
                match result {
                    Ok(g) if g == "hello from a.example.com" => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(g) => {
                        errors.push(g);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        errors.push(format!("{e:#}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        })
    };
    while ok.load(Ordering::Relaxed) < 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // b moves to c's backend; c appears.
    gw.rewrite_routes(
        &(route("a.example.com", a.addr)
            + &route("b.example.com", c.addr)
            + &route("c.example.com", c.addr)),
    );
    gw.signal(libc::SIGHUP);
    gw.wait_for_log("configuration reloaded");
    let before = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < before + 5 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let errors = looper.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failures during reload: {errors:?}"
    );

    // New connections use the new routes.
    let mut moved = gw.connect(Some("b.example.com")).unwrap();
    assert!(
        moved.cert == c.cert,
        "b.example.com still goes to its old backend"
    );
    assert_eq!(moved.greeting().unwrap(), "hello from c.example.com");
    let mut added = gw.connect(Some("c.example.com")).unwrap();
    assert_eq!(added.greeting().unwrap(), "hello from c.example.com");

    // The connection opened before the reload still talks to b's old backend.
    open.stream.write_all(b"still here\n").unwrap();
    assert_eq!(read_line(&mut open.stream).unwrap(), "still here");
    assert!(open.cert == b.cert);
    assert_eq!(gw.metric("verigated_reloads_total{result=\"ok\"}"), Some(1));
}

#[test]
fn invalid_reload_is_refused_and_old_routes_stay() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b, _c] = three_backends();
    let gw = Gateway::start(dir.path(), "", &route("a.example.com", a.addr));
    gw.rewrite_routes(&(route("a.example.com", b.addr) + &route("b.example.com", "8443")));
    gw.signal(libc::SIGHUP);
    gw.wait_for_log("reload refused");
    gw.wait_for_log("route[1].backend: expected host:port, got `8443`");
    // Still the old table: a goes to a's backend, b has no route.
    let mut s = gw.connect(Some("a.example.com")).unwrap();
    assert!(s.cert == a.cert);
    assert_eq!(s.greeting().unwrap(), "hello from a.example.com");
    assert!(gw.connect(Some("b.example.com")).is_err());
    // Not TOML at all: refused too.
    gw.rewrite("[gateway\n");
    gw.signal(libc::SIGHUP);
    gw.wait_for_log_count("reload refused", 2);
    assert_eq!(
        gw.metric("verigated_reloads_total{result=\"refused\"}"),
        Some(2)
    );
    assert_eq!(gw.metric("verigated_reloads_total{result=\"ok\"}"), Some(0));
}

#[test]
fn reload_picks_up_a_new_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), "", "");
    let before = gw.connect(Some(DOMAIN)).unwrap().cert;
    // An operator installs a certificate of their own, then reloads.
    let replacement = testkit::tls::self_signed(DOMAIN).unwrap();
    std::fs::write(dir.path().join("data/key.pem"), &replacement.key_pem).unwrap();
    std::fs::write(dir.path().join("data/cert.pem"), &replacement.cert_pem).unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_for_log("configuration reloaded");
    let after = gw.connect(Some(DOMAIN)).unwrap().cert;
    assert!(after != before, "the old certificate is still served");
    assert!(after == replacement.cert);

    // A key that does not parse: refused, the replacement stays.
    std::fs::write(dir.path().join("data/key.pem"), "not a key").unwrap();
    gw.signal(libc::SIGHUP);
    gw.wait_for_log("reload refused");
    assert!(gw.connect(None).unwrap().cert == replacement.cert);
}
