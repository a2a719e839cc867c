//! SNI routing through a real verigated: three TLS backends with distinct certificates
//! behind one listener, each name reaching its own backend (checked by the certificate
//! the client sees) with a rustls client, curl and `openssl s_client`; exact beats
//! wildcard; no SNI goes to the own endpoint; an unknown SNI gets the `unrecognized_name`
//! alert, or the catch-all route when there is one; half-close passes through.

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::*;
use testkit::tls::{self, HelloDelivery, TlsBackend};

#[test]
fn each_name_reaches_its_own_backend_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    assert_ne!(backends[0].cert, backends[1].cert);
    assert_ne!(backends[1].cert, backends[2].cert);
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    // Twice round, in two orders, so no answer depends on the one before.
    for backend in backends.iter().chain(backends.iter().rev()) {
        let mut session = gw.connect(Some(&backend.name)).unwrap();
        assert!(
            session.cert == backend.cert,
            "{} was answered with another certificate",
            backend.name
        );
        assert_eq!(
            session.greeting().unwrap(),
            format!("hello from {}", backend.name)
        );
    }
    // Uppercase SNI routes the same (names compare case-insensitively).
    let session = gw.connect(Some("B.EXAMPLE.COM")).unwrap();
    assert!(session.cert == backends[1].cert);
    gw.wait_for_log("sni=a.example.com route=a.example.com");
    assert_eq!(
        gw.metric("verigated_connections_total{route=\"a.example.com\"}"),
        Some(2)
    );
}

/// The PEM blocks of `openssl s_client -showcerts` output, as DER.
fn first_pem_certificate(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let pem = &text[start..];
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    certs.first().map(|c| c.to_vec())
}

#[test]
fn each_name_reaches_its_own_backend_with_curl_and_openssl() {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
            || Command::new(tool)
                .arg("version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
    };
    if !testkit::require(
        have("curl") && have("openssl"),
        "curl and openssl",
        "apt-get install curl openssl",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    let port = gw.addr.port();
    for backend in &backends {
        let name = &backend.name;
        let out = Command::new("curl")
            .args(["--silent", "--show-error", "--insecure", "--max-time", "20"])
            .arg("--resolve")
            .arg(format!("{name}:{port}:127.0.0.1"))
            .arg(format!("https://{name}:{port}/"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("hello from {name}\n")
        );

        let out = Command::new("openssl")
            .args(["s_client", "-showcerts", "-connect"])
            .arg(gw.addr.to_string())
            .arg("-servername")
            .arg(name)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let der = first_pem_certificate(&text)
            .unwrap_or_else(|| panic!("openssl s_client {name} showed no certificate:\n{text}"));
        assert!(
            der == backend.cert.to_vec(),
            "openssl saw another certificate for {name}"
        );
    }
}

#[test]
fn exact_beats_wildcard_and_longest_wildcard_wins() {
    let dir = tempfile::tempdir().unwrap();
    let wide = TlsBackend::start("wide.example.com").unwrap();
    let narrow = TlsBackend::start("narrow.internal.example.com").unwrap();
    let exact = TlsBackend::start("x.internal.example.com").unwrap();
    let routes = route("*.example.com", wide.addr)
        + &route("*.internal.example.com", narrow.addr)
        + &route("x.internal.example.com", exact.addr);
    let gw = Gateway::start(dir.path(), "", &routes);
    for (sni, expected) in [
        ("app.example.com", &wide),
        ("deep.app.example.com", &wide),
        ("y.internal.example.com", &narrow),
        ("x.internal.example.com", &exact),
        ("X.Internal.Example.com", &exact),
    ] {
        let mut session = gw.connect(Some(sni)).unwrap();
        assert!(session.cert == expected.cert, "{sni} went elsewhere");
        assert_eq!(
            session.greeting().unwrap(),
            format!("hello from {}", expected.name)
        );
    }
}

#[test]
fn no_sni_goes_to_the_own_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    let own = std::fs::read(dir.path().join("data/cert.pem")).unwrap();
    let own = rustls_pemfile::certs(&mut own.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let no_sni = gw.connect(None).unwrap();
    assert!(
        no_sni.cert == own,
        "no SNI was not answered by the own endpoint"
    );
    let by_name = gw.connect(Some(DOMAIN)).unwrap();
    assert!(by_name.cert == own);
    // A connection's line is written when it ends.
    drop((no_sni, by_name));
    gw.wait_for_log("sni=- route=self");
}

/// Sends a real ClientHello for `sni` and returns what the gateway answered before
/// closing.
fn answer_to_hello(gw: &Gateway, sni: &str) -> (Vec<u8>, bool) {
    let hello = tls::client_hello_bytes(Some(sni), &[]).unwrap();
    let mut sock = raw(gw.addr);
    sock.write_all(&hello).unwrap();
    read_until_closed(&mut sock)
}

#[test]
fn unknown_sni_gets_unrecognized_name_alert() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    let (answer, closed) = answer_to_hello(&gw, "nobody.example.org");
    // Alert record: type 21, TLS 1.2, length 2, fatal (2), unrecognized_name (112).
    assert_eq!(answer, [21, 3, 3, 0, 2, 2, 112]);
    assert!(closed, "the gateway did not close after the alert");
    // A real client reports the alert as such.
    let err = gw.connect(Some("nobody.example.org")).err().unwrap();
    assert!(
        format!("{err:#}")
            .to_lowercase()
            .contains("unrecognisedname")
            || format!("{err:#}").to_lowercase().contains("unrecognized"),
        "{err:#}"
    );
    gw.wait_for_log("outcome=unrecognized_name");
    assert_eq!(gw.metric("verigated_unrecognized_name_total"), Some(2));
}

#[test]
fn catch_all_route_takes_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let named = TlsBackend::start("a.example.com").unwrap();
    let fallback = TlsBackend::start("fallback.example.com").unwrap();
    let routes = route("*", fallback.addr) + &route("a.example.com", named.addr);
    let gw = Gateway::start(dir.path(), "", &routes);
    let mut other = gw.connect(Some("nobody.example.org")).unwrap();
    assert!(other.cert == fallback.cert);
    assert_eq!(other.greeting().unwrap(), "hello from fallback.example.com");
    let mut a = gw.connect(Some("a.example.com")).unwrap();
    assert!(a.cert == named.cert);
    assert_eq!(a.greeting().unwrap(), "hello from a.example.com");
    drop((other, a));
    gw.wait_for_log("sni=nobody.example.org route=*");
}

#[test]
fn half_close_passes_through() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    let mut session =
        tls::connect(gw.addr, Some("c.example.com"), &[], HelloDelivery::Whole).unwrap();
    assert_eq!(session.greeting().unwrap(), "hello from c.example.com");
    let payload = vec![b'x'; 200_000];
    session.stream.write_all(&payload).unwrap();
    // End our side only: TLS close_notify, then a TCP FIN. The backend still answers.
    session.stream.conn.send_close_notify();
    session.stream.flush().unwrap();
    session
        .stream
        .sock
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    let mut echoed = Vec::new();
    let _ = session.stream.read_to_end(&mut echoed);
    assert_eq!(
        echoed.len(),
        payload.len(),
        "the echo after our FIN was cut"
    );
    assert!(echoed == payload);
    gw.wait_for_log("route=c.example.com backend=");
    gw.wait_for_log("outcome=closed");
}
