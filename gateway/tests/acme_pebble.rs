//! ACME for the own domain against a real Pebble (started by the test, validating for
//! real over TLS-ALPN-01 on verigated's own listener, its DNS answering 127.0.0.1):
//! issuance (the own endpoint then serves a chain that verifies to Pebble's root), a
//! renewal forced by a short `renew_before` that keeps the key, leaves an open
//! connection working and refreshes the attested manifest, and a directory that is
//! down (the certificate in use stays, the failure is on /metrics); with `rotate_key`, a
//! renewal under a new key, written so that no mismatched pair is ever on disk; and a CA
//! that requires External Account Binding.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest as _;
use testkit::pebble::{Pebble, PebblePlan};
use testkit::tls::{self, HelloDelivery, Session};

/// What Pebble issues: an hour, so that `renew_before = "3585s"` makes each certificate
/// due about 15 s after its issuance.
const VALIDITY: Duration = Duration::from_secs(3600);

/// Patience for an order (the first attempt may meet a Pebble not started yet, then
/// waits its backoff).
const ORDER_PATIENCE: Duration = Duration::from_secs(90);

const OK: &str = "verigated_acme_orders_total{result=\"ok\"}";
const FAILED: &str = "verigated_acme_orders_total{result=\"failed\"}";

fn acme_section(plan: &PebblePlan, renew_before: &str, extra: &str) -> String {
    format!(
        "\n[gateway.acme]\ndirectory = \"{}\"\ncontact = [\"mailto:ops@example.com\"]\n\
         terms_of_service_agreed = true\nca_bundle = \"{}\"\nrenew_before = \"{renew_before}\"\n\
         check_interval = \"2s\"\nretry_backoff = \"1s\"\norder_timeout = \"60s\"\n{extra}",
        plan.directory(),
        plan.ca_bundle().display()
    )
}

/// verigated with `[gateway.acme]` pointing at a Pebble that validates on its port.
fn start(dir: &std::path::Path, renew_before: &str, extra: &str) -> Option<(Gateway, Pebble)> {
    start_with(dir, renew_before, extra, |plan| plan)
}

/// [`start`], with the Pebble plan adjusted by `adjust` first.
fn start_with(
    dir: &std::path::Path,
    renew_before: &str,
    extra: &str,
    adjust: impl FnOnce(PebblePlan) -> PebblePlan,
) -> Option<(Gateway, Pebble)> {
    if !testkit::require(
        testkit::pebble::available(),
        "pebble",
        testkit::pebble::INSTALL,
    ) {
        return None;
    }
    let plan = adjust(PebblePlan::new(&dir.join("pebble")).unwrap());
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The kept-alive session of the renewal test waits about 15 s between two requests:
    // longer than the default header_read_timeout, which would close it for idling.
    let api = format!(
        "[api]\nadmin_token_sha256 = [\"{}\"]\nheader_read_timeout = \"120s\"\n",
        sha256_hex(TOKEN)
    );
    let gw = Gateway::start(&data, &acme_section(&plan, renew_before, extra), &api);
    let pebble = plan.start(gw.addr.port(), VALIDITY).unwrap();
    Some((gw, pebble))
}

fn wait_for_metric(gw: &Gateway, series: &str, at_least: u64, pebble: &Pebble) {
    let deadline = Instant::now() + ORDER_PATIENCE;
    while gw.metric(series).unwrap_or(0) < at_least {
        assert!(
            Instant::now() < deadline,
            "{series} did not reach {at_least}; verigated:\n{}\npebble:\n{}",
            gw.log(),
            pebble.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The chain the own endpoint serves now.
fn served_chain(gw: &Gateway) -> Vec<CertificateDer<'static>> {
    let session = tls::connect(gw.addr, Some(DOMAIN), &["http/1.1"], HelloDelivery::Whole)
        .expect("own endpoint");
    session
        .stream
        .conn
        .peer_certificates()
        .expect("a chain")
        .to_vec()
}

/// Verifies `chain` for DOMAIN up to `root` with webpki, as a Web PKI client would.
fn verify_chain(chain: &[CertificateDer<'static>], root: CertificateDer<'static>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        testkit::tls::provider(),
    )
    .build()
    .unwrap();
    let (leaf, intermediates) = chain.split_first().expect("a leaf");
    verifier
        .verify_server_cert(
            leaf,
            intermediates,
            &ServerName::try_from(DOMAIN).unwrap(),
            &[],
            UnixTime::now(),
        )
        .expect("the served chain verifies to Pebble's root for the domain");
}

fn spki_sha256(leaf: &[u8]) -> [u8; 32] {
    attest::binding::CertDigests::of(DOMAIN, leaf)
        .unwrap()
        .spki_sha256
}

/// An HTTP/1.1 keep-alive request on an open session; returns the status line.
fn healthz(session: &mut Session) -> String {
    session
        .stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // `ok` and a newline is the whole body of /healthz.
    while !got.ends_with(b"\r\n\r\nok\n") {
        let n = match session.stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!(
                "the session stays open: {e}; read so far: {:?}",
                String::from_utf8_lossy(&got)
            ),
        };
        assert!(
            n > 0,
            "the session was closed: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn issues_then_renews_with_the_same_key_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let Some((gw, pebble)) = start(dir.path(), "3585s", "") else {
        return;
    };
    let bootstrap = gw.connect(Some(DOMAIN)).unwrap().cert;
    wait_for_metric(&gw, OK, 1, &pebble);
    let root = pebble.issuing_root().unwrap();
    let first = served_chain(&gw);
    verify_chain(&first, root.clone());
    assert_ne!(first[0], bootstrap, "still the self-signed certificate");
    // The key generated at the first start signs the issued certificate.
    assert_eq!(spki_sha256(&first[0]), spki_sha256(&bootstrap));
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(gw.dir.join("data/key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    // Pebble validated for real: it reached the responder on verigated's listener.
    assert!(gw.log().contains("outcome=acme_challenge "), "{}", gw.log());

    // A connection opened on the first certificate, kept across the renewal.
    let mut open =
        tls::connect(gw.addr, Some(DOMAIN), &["http/1.1"], HelloDelivery::Whole).unwrap();
    assert!(healthz(&mut open).starts_with("HTTP/1.1 200"));

    wait_for_metric(&gw, OK, 2, &pebble);
    let second = served_chain(&gw);
    verify_chain(&second, root);
    assert_ne!(second[0], first[0], "renewed, so another certificate");
    assert_eq!(spki_sha256(&second[0]), spki_sha256(&first[0]), "same key");
    assert!(
        healthz(&mut open).starts_with("HTTP/1.1 200"),
        "the open connection was dropped"
    );
    assert_eq!(open.cert, first[0]);

    // The attested manifest names the served certificate at once (its refresher follows
    // the swap; no manifest_refresh period is waited for).
    let served = served_chain(&gw);
    let expected = hex::encode(sha2::Sha256::digest(&served[0]));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, manifest) = gw.get("/v1/manifest");
        if manifest.contains(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "manifest {manifest} lacks {expected}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        gw.metric("verigated_acme_challenges_answered_total")
            .unwrap()
            >= 2
    );
    assert!(
        gw.metric("verigated_acme_certificate_expiry_timestamp_seconds")
            .unwrap()
            > 0
    );
}

#[test]
fn a_directory_that_is_down_leaves_the_certificate_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let Some((gw, mut pebble)) = start(dir.path(), "3585s", "") else {
        return;
    };
    wait_for_metric(&gw, OK, 1, &pebble);
    let issued = served_chain(&gw);
    let failed_before = gw.metric(FAILED).unwrap_or(0);
    pebble.stop();
    wait_for_metric(&gw, FAILED, failed_before + 1, &pebble);
    assert_eq!(served_chain(&gw), issued, "the certificate in use changed");
    assert!(gw.metric("verigated_acme_consecutive_failures").unwrap() >= 1);
    assert!(
        gw.metric("verigated_acme_last_failure_timestamp_seconds")
            .unwrap()
            > 0
    );
    assert!(gw
        .log()
        .contains("ACME order failed, the certificate in use stays"));
    // No order pending: a validation nobody asked for gets no certificate.
    assert!(tls::connect(gw.addr, Some(DOMAIN), &["acme-tls/1"], HelloDelivery::Whole).is_err());
    // And the own endpoint still answers.
    let (status, _) = gw.get("/healthz");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
}

#[test]
fn rotate_key_renews_under_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let Some((gw, pebble)) = start(dir.path(), "3585s", "rotate_key = true\n") else {
        return;
    };
    let bootstrap = gw.connect(Some(DOMAIN)).unwrap().cert;
    wait_for_metric(&gw, OK, 1, &pebble);
    let first = served_chain(&gw);
    // The first issuance keeps the key made at the first start.
    assert_eq!(spki_sha256(&first[0]), spki_sha256(&bootstrap));
    wait_for_metric(&gw, OK, 2, &pebble);
    let second = served_chain(&gw);
    verify_chain(&second, pebble.issuing_root().unwrap());
    assert_ne!(spki_sha256(&second[0]), spki_sha256(&first[0]), "a new key");
    let key = gw.dir.join("data/key.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(!gw.dir.join("data/key.pem.next").exists());
    assert!(gw.log().contains("renewed with a new key"), "{}", gw.log());
}

#[test]
fn a_ca_that_requires_external_account_binding_issues_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // Pebble's documented example key (base64url).
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let key_file = dir.path().join("eab.key");
    std::fs::write(&key_file, format!("{hmac}\n")).unwrap();
    let extra = format!(
        "eab_kid = \"kid-1\"\neab_hmac_key = \"{}\"\n",
        key_file.display()
    );
    let Some((gw, pebble)) = start_with(dir.path(), "30d", &extra, |plan| {
        plan.require_eab("kid-1", hmac)
    }) else {
        return;
    };
    wait_for_metric(&gw, OK, 1, &pebble);
    verify_chain(&served_chain(&gw), pebble.issuing_root().unwrap());
    assert!(!gw.log().contains(hmac), "the HMAC key was logged");
}
