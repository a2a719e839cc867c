//! verigated's own endpoint: TLS terminated with its own certificate, `GET /healthz` and
//! `GET /metrics` over HTTP/1.1 and HTTP/2 (chosen by ALPN), with a rustls client and
//! with curl; the self-signed certificate generated on first start (CN = hostname,
//! SAN = domain, not a CA, at most one year, key mode 0600) and reused on the next.
//! `/metrics` names every route and its traffic, so it takes the app-control
//! credential; what anyone may read (`/v1/manifest`, `/healthz`) says no more than it
//! must.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use x509_cert::der::Decode;

#[test]
fn healthz_and_metrics_over_http1() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    let mut s = gw.connect(Some("a.example.com")).unwrap();
    s.greeting().unwrap();
    drop(s);

    let (status, body) = gw.get("/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "ok\n");
    let (status, body) = gw.get_as("/metrics", Some(TOKEN));
    assert_eq!(status, "HTTP/1.1 200 OK");
    for family in [
        "# TYPE verigated_connections_open gauge",
        "# TYPE verigated_connections_total counter",
        "# TYPE verigated_bytes_total counter",
        "# TYPE verigated_client_hello_errors_total counter",
        "# TYPE verigated_client_hello_timeouts_total counter",
        "# TYPE verigated_backend_connect_failures_total counter",
        "# TYPE verigated_connections_refused_total counter",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
    assert_eq!(
        metric_value(
            &body,
            "verigated_connections_total{route=\"a.example.com\"}"
        ),
        Some(1)
    );
    let sent = metric_value(
        &body,
        "verigated_bytes_total{route=\"a.example.com\",direction=\"backend_to_client\"}",
    )
    .unwrap();
    assert!(sent > 0, "no bytes counted toward the client");
    // This very request is open on the own endpoint.
    assert_eq!(
        metric_value(&body, "verigated_connections_open{route=\"self\"}"),
        Some(1)
    );
    let (status, _) = gw.get("/nope");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn healthz_and_metrics_over_http2() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), "", "");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config = (*testkit::tls::client_config(&["h2"]).unwrap()).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from(DOMAIN).unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        for (path, expect) in [
            ("/healthz", "ok\n"),
            ("/metrics", "verigated_connections_total"),
        ] {
            let req = hyper::Request::get(format!("https://{DOMAIN}{path}"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(String::from_utf8_lossy(&body).contains(expect), "{path}");
        }
    });

    // curl, when present, negotiates h2 too.
    let port = gw.addr.port();
    match Command::new("curl")
        .args(["--silent", "--insecure", "--http2", "--max-time", "20"])
        .arg("--resolve")
        .arg(format!("{DOMAIN}:{port}:127.0.0.1"))
        .args(["--write-out", "\n%{http_version}"])
        .arg(format!("https://{DOMAIN}:{port}/healthz"))
        .output()
    {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n\n2"),
        Err(e) => {
            testkit::require(
                false,
                &format!("curl, for the HTTP/2 part ({e})"),
                testkit::require::install::CURL,
            );
        }
    }
}

#[test]
fn metrics_take_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    let gw = Gateway::start(dir.path(), "", &routes_for(&backends));
    for token in [None, Some("not-the-token")] {
        let (status, body) = gw.get_as("/metrics", token);
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{body}");
        assert!(!body.contains("a.example.com"), "{body}");
        assert!(!body.contains("verigated_"), "{body}");
    }
    let (status, body) = gw.get_as("/metrics", Some(TOKEN));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("verigated_connections_total"), "{body}");
    // /healthz stays open: load balancers probe it without a credential.
    assert_eq!(gw.get("/healthz").0, "HTTP/1.1 200 OK");
}

#[test]
fn without_a_configured_credential_metrics_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // An `[api]` section of its own, with no credential: nobody may read /metrics.
    let gw = Gateway::start(dir.path(), "", "[api]\nadmin_token_sha256 = []\n");
    let (status, body) = gw.get_as("/metrics", Some(TOKEN));
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "{body}");
    assert!(body.contains("admin_token_sha256"), "{body}");
}

#[test]
fn the_manifest_names_no_backend_address_or_error() {
    let dir = tempfile::tempdir().unwrap();
    let backends = three_backends();
    // A route whose backend is down: left out of the manifest.
    let down = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::ports::free_port()));
    let routes = routes_for(&backends) + &route("down.example.com", down);
    let gw = Gateway::start(dir.path(), "", &routes);
    gw.wait_for_log("left out of the certificate manifest");
    let (status, body) = gw.get("/v1/manifest");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let m: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        m["unreachable"],
        serde_json::json!([{"name": "down.example.com"}]),
        "{m:#}"
    );
    for entry in m["manifest"].as_array().unwrap() {
        let mut keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["cert_sha256", "name", "spki_sha256"], "{m:#}");
    }
    // No address of any backend, no error text: those are in the log.
    for b in &backends {
        assert!(!body.contains(&b.addr.to_string()), "{body}");
    }
    assert!(!body.contains(&down.to_string()), "{body}");
    assert!(!body.contains(&down.port().to_string()), "{body}");
    assert!(!body.to_ascii_lowercase().contains("refused"), "{body}");
    assert!(
        gw.log().contains(&down.to_string()),
        "the log lacks the address"
    );
}

#[test]
fn generated_certificate_is_sane_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("data/cert.pem");
    let key_path = dir.path().join("data/key.pem");
    let first_pem;
    {
        let gw = Gateway::start(dir.path(), "", "");
        first_pem = std::fs::read(&cert_path).unwrap();
        let presented = gw.connect(Some(DOMAIN)).unwrap().cert;
        let on_disk = rustls_pemfile::certs(&mut first_pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        assert!(presented == on_disk);
        gw.wait_for_log("generated a self-signed certificate");
    }
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");

    let der = rustls_pemfile::certs(&mut first_pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let cert = x509_cert::Certificate::from_der(&der).unwrap();
    let tbs = &cert.tbs_certificate;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(tbs.subject.to_string(), format!("CN={hostname}"));
    let validity = tbs
        .validity
        .not_after
        .to_unix_duration()
        .checked_sub(tbs.validity.not_before.to_unix_duration())
        .unwrap();
    assert!(
        validity.as_secs() <= 365 * 24 * 3600,
        "valid for {validity:?}"
    );
    let ext = |oid: &str| {
        tbs.extensions
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.extn_id.to_string() == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    let san = x509_cert::ext::pkix::SubjectAltName::from_der(&ext("2.5.29.17").unwrap()).unwrap();
    let names: Vec<String> = san
        .0
        .iter()
        .filter_map(|n| match n {
            x509_cert::ext::pkix::name::GeneralName::DnsName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(names, vec![DOMAIN.to_string()]);
    let basic =
        x509_cert::ext::pkix::BasicConstraints::from_der(&ext("2.5.29.19").unwrap()).unwrap();
    assert!(!basic.ca, "the generated certificate is a CA");

    // Second start: the same certificate, not a new one.
    let gw = Gateway::start(dir.path(), "", "");
    assert_eq!(std::fs::read(&cert_path).unwrap(), first_pem);
    let presented = gw.connect(None).unwrap().cert;
    assert!(presented == der, "restart presented another certificate");
    assert!(!gw.log().contains("generated a self-signed certificate"));
}

#[test]
fn a_request_that_never_ends_its_headers_is_closed() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), "client_hello_timeout = \"1s\"", "");
    let mut s = testkit::tls::connect(
        gw.addr,
        Some(DOMAIN),
        &["http/1.1"],
        testkit::tls::HelloDelivery::Whole,
    )
    .unwrap();
    s.stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: vm.example.com\r\n")
        .unwrap();
    s.stream.flush().unwrap();
    // hyper answers 408 or just closes; either way the connection ends.
    let mut rest = Vec::new();
    let _ = s.stream.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("200 OK"), "{text}");
    gw.wait_for_log("route=self");
}
