//! App-control authorization: the decisions of `authorize` for every kind of request
//! (nothing configured, no header, wrong token, right token, a digest one bit off), and
//! client certificates verified by a real rustls handshake with the verifier that
//! `client_verifier` builds (a client without a certificate still connects; one from
//! another CA does not).

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use gateway::app::auth::{client_verifier, credentials_from, HOW_TO_CONFIGURE};
use gateway::app::{authorize, ApiAuthConfig, AuthError, Credentials, Principal};
use gateway::config::ApiConfig;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sha2::{Digest, Sha256};

const TOKEN: &str = "correct horse battery staple";

fn config_with(tokens: &[&str]) -> ApiAuthConfig {
    let api = ApiConfig {
        admin_token_sha256: tokens
            .iter()
            .map(|t| hex::encode(Sha256::digest(t.as_bytes())))
            .collect(),
    };
    ApiAuthConfig::from_api(&api, None).expect("valid digests")
}

fn with_header(value: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.append(
        AUTHORIZATION,
        HeaderValue::from_bytes(value).expect("header value"),
    );
    headers
}

fn decide(headers: &HeaderMap, config: &ApiAuthConfig) -> Result<Principal, AuthError> {
    authorize(&credentials_from(headers, None), config)
}

#[test]
fn nothing_configured_is_403_and_says_how_to_configure() {
    let config = ApiAuthConfig::default();
    for headers in [
        HeaderMap::new(),
        with_header(format!("Bearer {TOKEN}").as_bytes()),
    ] {
        let err = decide(&headers, &config).unwrap_err();
        assert_eq!(err, AuthError::Unconfigured);
        assert_eq!(err.http_status(), 403);
        let text = err.to_string();
        assert!(
            text.contains("admin_token_sha256 = [\"<sha256 of your token>\"]"),
            "{text}"
        );
        assert!(text.contains("printf %s TOKEN | sha256sum"), "{text}");
        assert_eq!(text, HOW_TO_CONFIGURE);
    }
}

#[test]
fn missing_header_is_401() {
    let err = decide(&HeaderMap::new(), &config_with(&[TOKEN])).unwrap_err();
    assert_eq!(err, AuthError::Missing);
    assert_eq!(err.http_status(), 401);
}

#[test]
fn wrong_token_is_401_and_not_repeated() {
    let err = decide(
        &with_header(b"Bearer not-the-token"),
        &config_with(&[TOKEN]),
    )
    .unwrap_err();
    assert_eq!(err, AuthError::WrongToken);
    assert_eq!(err.http_status(), 401);
    assert!(!err.to_string().contains("not-the-token"));
}

#[test]
fn right_token_is_accepted_and_names_its_entry() {
    let config = config_with(&["other token", TOKEN]);
    let principal = decide(&with_header(format!("Bearer {TOKEN}").as_bytes()), &config).unwrap();
    assert_eq!(principal, Principal::Token { index: 1 });
    assert!(!principal.to_string().contains(TOKEN));
    // The scheme is case-insensitive.
    let principal = decide(&with_header(format!("bearer {TOKEN}").as_bytes()), &config).unwrap();
    assert_eq!(principal, Principal::Token { index: 1 });
}

#[test]
fn uppercase_configured_digest_matches() {
    let api = ApiConfig {
        admin_token_sha256: vec![hex::encode_upper(Sha256::digest(TOKEN.as_bytes()))],
    };
    let config = ApiAuthConfig::from_api(&api, None).unwrap();
    let principal = decide(&with_header(format!("Bearer {TOKEN}").as_bytes()), &config).unwrap();
    assert_eq!(principal, Principal::Token { index: 0 });
}

#[test]
fn digest_one_bit_off_is_refused() {
    let mut digest: [u8; 32] = Sha256::digest(TOKEN.as_bytes()).into();
    for bit in [0usize, 7, 128, 255] {
        let mut flipped = digest;
        if let Some(byte) = flipped.get_mut(bit / 8) {
            *byte ^= 1 << (bit % 8);
        }
        let config = ApiAuthConfig {
            token_digests: vec![flipped],
            client_ca: None,
        };
        let err = decide(&with_header(format!("Bearer {TOKEN}").as_bytes()), &config).unwrap_err();
        assert_eq!(err, AuthError::WrongToken, "bit {bit}");
    }
    // And the unflipped digest is accepted by the same path.
    digest = Sha256::digest(TOKEN.as_bytes()).into();
    let config = ApiAuthConfig {
        token_digests: vec![digest],
        client_ca: None,
    };
    assert!(decide(&with_header(format!("Bearer {TOKEN}").as_bytes()), &config).is_ok());
}

#[test]
fn malformed_headers_are_401() {
    let config = config_with(&[TOKEN]);
    for value in [
        &b"Basic dXNlcjpwYXNz"[..],
        b"Bearer",
        b"Bearer ",
        b"BearerX",
        b"",
        b"\xff\xfe",
    ] {
        let err = decide(&with_header(value), &config).unwrap_err();
        assert_eq!(err, AuthError::NotBearer, "{value:?}");
        assert_eq!(err.http_status(), 401);
    }
    // The token itself may hold any bytes; it is hashed, never parsed.
    let err = decide(&with_header(b"Bearer \xff\x80"), &config).unwrap_err();
    assert_eq!(err, AuthError::WrongToken);
}

#[test]
fn two_authorization_headers_are_refused() {
    let mut headers = with_header(format!("Bearer {TOKEN}").as_bytes());
    headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer other"));
    let err = decide(&headers, &config_with(&[TOKEN])).unwrap_err();
    assert_eq!(err, AuthError::SeveralHeaders { count: 2 });
}

#[test]
fn certificate_without_client_ca_counts_for_nothing() {
    // Only tokens are configured: a certificate (which rustls could not have verified
    // against any CA) must not let the request in.
    let creds = Credentials {
        authorization: Vec::new(),
        verified_client_certificate: Some(b"not even DER"),
    };
    assert_eq!(
        authorize(&creds, &config_with(&[TOKEN])).unwrap_err(),
        AuthError::Missing
    );
}

// ---- client certificates over a real handshake ----

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn leaf(ca: &Ca, name: &str, client: bool) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![if client {
        rcgen::ExtendedKeyUsagePurpose::ClientAuth
    } else {
        rcgen::ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Runs one handshake over a socket pair; returns the server's view: the verified
/// client chain, or the handshake error.
fn handshake(
    ca_file: &std::path::Path,
    server_ca: &Ca,
    client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
    let verifier = client_verifier(ca_file, provider()).expect("client verifier");
    let (server_cert, server_key) = leaf(server_ca, "vm.example.com", false);
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server_cert], server_key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.cert.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let client_config = match client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };

    let (mut server_sock, mut client_sock) = UnixStream::pair().unwrap();
    let client = std::thread::spawn(move || {
        let mut conn = rustls::ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("vm.example.com").unwrap(),
        )
        .unwrap();
        // The client's side may end early or late depending on the TLS version; the
        // server's verdict is what the test reads.
        while conn.is_handshaking() {
            if conn.complete_io(&mut client_sock).is_err() {
                break;
            }
        }
        let _ = conn.complete_io(&mut client_sock);
    });
    let mut conn = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    let result = loop {
        if !conn.is_handshaking() {
            break Ok(conn
                .peer_certificates()
                .map(<[rustls::pki_types::CertificateDer<'_>]>::to_vec));
        }
        if let Err(e) = conn.complete_io(&mut server_sock) {
            break Err(e.to_string());
        }
    };
    drop(server_sock);
    client.join().unwrap();
    result
}

#[test]
fn client_certificates_through_a_real_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let client_ca = ca("verigate test client CA");
    let other_ca = ca("some other CA");
    let server_ca = ca("server CA");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, client_ca.cert.pem()).unwrap();
    let config = ApiAuthConfig {
        token_digests: Vec::new(),
        client_ca: Some(ca_file.clone()),
    };

    // No certificate: the handshake succeeds (attestation clients), authorize refuses.
    let chain = handshake(&ca_file, &server_ca, None).expect("handshake without a certificate");
    assert!(chain.is_none());
    let headers = HeaderMap::new();
    let err = authorize(&credentials_from(&headers, chain.as_deref()), &config).unwrap_err();
    assert_eq!(err, AuthError::Missing);

    // A certificate from the client CA: verified, and it is the principal.
    let (cert, key) = leaf(&client_ca, "operator", true);
    let expected = hex::encode(Sha256::digest(cert.as_ref()));
    let chain = handshake(&ca_file, &server_ca, Some((cert, key)))
        .expect("handshake with a good certificate")
        .expect("a verified chain");
    let principal = authorize(&credentials_from(&headers, Some(&chain)), &config).unwrap();
    assert_eq!(principal, Principal::ClientCertificate { sha256: expected });

    // A certificate from another CA: the handshake itself fails.
    let (cert, key) = leaf(&other_ca, "intruder", true);
    let err = handshake(&ca_file, &server_ca, Some((cert, key))).unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn client_ca_file_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = client_verifier(&missing, provider()).err().unwrap();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a PEM file\n").unwrap();
    let err = client_verifier(&empty, provider()).err().unwrap();
    assert!(err.to_string().contains("no CERTIFICATE block"), "{err}");
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = client_verifier(&broken, provider()).err().unwrap();
    assert!(err.to_string().contains("broken.pem"), "{err}");
}
