//! The Web PKI check of verigated's own endpoint when `--url` names a hosted application.
//!
//! `verigate --url https://app.example.com verify ...` reaches the own endpoint through
//! the routed name `app.example.com` (ALPN `verigate/1`), and the own endpoint presents
//! the certificate of `gateway.domain`, not of `app.example.com`. A CA-issued own
//! certificate would fail the ordinary name check, so on that one connection the name
//! check is deferred: the chain must still lead to a trusted root, and once the evidence
//! names the attested `domain`, the leaf must be valid for it ([`check_deferred_name`]).
//! Until then the connection carries only the nonce: nothing secret goes out before the
//! checks pass ([`require_checked_name`]: `snapshot`, which sends its token first, and
//! `app --no-verify` refuse a deferred name).

use crate::client::{Connection, PkiName};
use anyhow::Context as _;
use attest::check::Check;
use attest::tls::SignatureOnlyVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The name of the check [`check_deferred_name`] adds.
pub const ENDPOINT_NAME: &str = "endpoint name";

/// Mozilla's roots (compiled in), plus the certificates of `ca_cert` (PEM, one or more):
/// a private CA that issued verigated's own or an application's certificate.
pub fn roots(ca_cert: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(path) = ca_cert else {
        return Ok(roots);
    };
    let pem =
        std::fs::read(path).with_context(|| format!("reading --ca-cert `{}`", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--ca-cert `{}`: not PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "--ca-cert `{}`: no CERTIFICATE block in the file",
            path.display()
        );
    }
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).with_context(|| {
            format!(
                "--ca-cert `{}`: certificate {} is not a usable root",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(roots)
}

/// The Web PKI check of the own endpoint's handshake: the chain must lead to `roots`;
/// a leaf not valid for the dialed name is let through only with `deferred` set, for
/// [`check_deferred_name`] to decide once the attested `domain` is known.
#[derive(Debug)]
pub struct OwnEndpointVerifier {
    provider: Arc<CryptoProvider>,
    signatures: SignatureOnlyVerifier,
    roots: Arc<RootCertStore>,
    deferred: Arc<AtomicBool>,
}

impl OwnEndpointVerifier {
    /// A verifier against `roots` that sets `deferred` when it lets a name mismatch through.
    pub fn new(
        provider: Arc<CryptoProvider>,
        roots: Arc<RootCertStore>,
        deferred: Arc<AtomicBool>,
    ) -> OwnEndpointVerifier {
        OwnEndpointVerifier {
            signatures: SignatureOnlyVerifier::new(Arc::clone(&provider)),
            provider,
            roots,
            deferred,
        }
    }
}

impl ServerCertVerifier for OwnEndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // What rustls's own WebPkiServerVerifier does (without CRLs, as configured
        // elsewhere in the CLI), with the name check split off.
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match verify_server_name(&cert, server_name) {
            Ok(()) => {}
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => self.deferred.store(true, Ordering::SeqCst),
            Err(e) => return Err(e),
        }
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signature is checked as everywhere else in verigate.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}

/// Refuses to `send` (what the command would send, for the message) on a connection
/// whose name check waits for evidence: only a name the Web PKI vouched for, or a VM
/// verified first, may receive a credential.
pub fn require_checked_name(conn: &Connection, send: &str) -> anyhow::Result<()> {
    if conn.pki() != PkiName::Deferred {
        return Ok(());
    }
    let host = &conn.endpoint().host;
    anyhow::bail!(
        "the certificate at `{host}` is not valid for that name, and {send} would go out \
         before any evidence shows the certificate is the VM's: give --url with the name the \
         certificate is issued for (the VM's own domain)"
    )
}

/// For a connection whose name check was deferred: whether its leaf is valid for the
/// attested `domain` (its chain was checked in the handshake). `None` when the name was
/// checked in the handshake or not at all (`--allow-insecure-tls`).
pub fn check_deferred_name(conn: &Connection, domain: &str) -> Option<Check> {
    (conn.pki() == PkiName::Deferred)
        .then(|| leaf_valid_for(conn.leaf(), &conn.endpoint().host, domain))
}

fn leaf_valid_for(leaf: &CertificateDer<'_>, dialed: &str, domain: &str) -> Check {
    let valid = ServerName::try_from(domain.to_string())
        .map_err(|_| format!("the attested domain `{domain}` is not a TLS server name"))
        .and_then(|name| {
            let cert = ParsedCertificate::try_from(leaf).map_err(|e| e.to_string())?;
            verify_server_name(&cert, &name).map_err(|e| e.to_string())
        });
    match valid {
        Ok(()) => Check::pass(
            ENDPOINT_NAME,
            format!(
                "the certificate chains to a trusted root and is valid for the attested domain \
                 `{domain}` (reached through `{dialed}`)"
            ),
        ),
        Err(why) => Check::fail(
            ENDPOINT_NAME,
            format!(
                "the certificate chains to a trusted root but is not valid for `{dialed}` nor for \
                 the attested domain `{domain}`: {why}"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_for(name: &str) -> CertificateDer<'static> {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        c.cert.der().clone()
    }

    #[test]
    fn the_leaf_must_name_the_attested_domain() {
        let leaf = leaf_for("vm.example.com");
        assert!(leaf_valid_for(&leaf, "app.example.com", "vm.example.com").passed());
        let wrong = leaf_valid_for(&leaf, "app.example.com", "other.example.net");
        assert!(!wrong.passed());
        assert!(wrong.detail.contains("other.example.net"), "{wrong:?}");
        assert!(!leaf_valid_for(&leaf, "app.example.com", "not a name").passed());
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert!(!leaf_valid_for(&garbage, "app.example.com", "vm.example.com").passed());
    }

    #[test]
    fn ca_cert_files_are_read_or_named() {
        let dir = tempfile::tempdir().unwrap();
        let base = roots(None).unwrap().len();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        assert_eq!(roots(Some(&good)).unwrap().len(), base + 1);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here").unwrap();
        let e = format!("{:#}", roots(Some(&empty)).unwrap_err());
        assert!(e.contains("empty.pem") && e.contains("CERTIFICATE"), "{e}");
        let missing = dir.path().join("missing.pem");
        assert!(format!("{:#}", roots(Some(&missing)).unwrap_err()).contains("missing.pem"));
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(roots(Some(&junk)).is_err());
    }
}
