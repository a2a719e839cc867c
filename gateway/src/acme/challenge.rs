//! The TLS-ALPN-01 responder (RFC 8737): while an order for `gateway.domain` waits on
//! its challenge, a ClientHello for that name whose ALPN list is exactly `acme-tls/1` is
//! answered with a self-signed certificate for the name that carries the critical
//! `acmeIdentifier` extension (the SHA-256 of the key authorization). The handshake is
//! the whole answer: the CA closes right after it, and so does verigated.
//!
//! The listener hands such a hello here instead of to the own endpoint
//! ([`asks_for_challenge`]); every other hello is untouched. With no challenge pending
//! the handshake fails (no certificate for the name), as it should for a validation
//! nobody asked for.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The ALPN protocol of the challenge (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Whether a ClientHello's ALPN list asks for the challenge: `acme-tls/1` alone, as the
/// CA sends it (RFC 8737 §3); a hello that offers it among others is a normal client.
pub fn asks_for_challenge(alpn: &[Vec<u8>]) -> bool {
    matches!(alpn, [only] if only == ACME_TLS_ALPN)
}

/// Why a challenge certificate cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    /// rcgen refused the parameters.
    #[error("making the TLS-ALPN-01 certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls cannot sign with the generated key.
    #[error("loading the TLS-ALPN-01 key: {0}")]
    Key(#[from] rustls::Error),
}

/// The challenge certificates pending now, by lowercase name.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// Answers challenges for `name` with a certificate carrying `digest` (the SHA-256 of
    /// the key authorization) until [`Challenges::clear`].
    pub fn set(&self, name: &str, digest: [u8; 32]) -> Result<(), ChallengeError> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(&digest));
        let cert = params.self_signed(&key)?;
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)?;
        let certified = Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer));
        self.pending
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_ascii_lowercase(), certified);
        Ok(())
    }

    /// Stops answering challenges for `name`.
    pub fn clear(&self, name: &str) {
        self.pending
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&name.to_ascii_lowercase());
    }

    fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.pending
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&name.to_ascii_lowercase())
            .cloned()
    }
}

/// Picks the pending challenge certificate by SNI.
#[derive(Debug)]
struct Resolver(Arc<Challenges>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get(hello.server_name()?)
    }
}

/// The rustls configuration that answers challenges: ALPN `acme-tls/1` only, the
/// certificate of the SNI's pending challenge.
pub fn server_config(
    challenges: Arc<Challenges>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(challenges)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Completes the challenge handshake on `stream` (which starts with the peeked hello)
/// within `timeout`, then closes it.
pub async fn answer<S>(
    config: Arc<rustls::ServerConfig>,
    stream: S,
    timeout: Duration,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let mut tls = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))??;
    // RFC 8737 §3: no data follows the handshake.
    let _ = tokio::time::timeout(timeout, tls.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_acme_alpn_asks_for_the_challenge() {
        assert!(asks_for_challenge(&[b"acme-tls/1".to_vec()]));
        assert!(!asks_for_challenge(&[]));
        assert!(!asks_for_challenge(&[
            b"h2".to_vec(),
            b"acme-tls/1".to_vec()
        ]));
        assert!(!asks_for_challenge(&[b"acme-tls/2".to_vec()]));
    }

    #[test]
    fn set_then_clear_by_name_in_any_case() {
        let c = Challenges::default();
        assert!(c.get("vm.example.com").is_none());
        c.set("VM.example.com", [7; 32]).unwrap();
        let certified = c.get("vm.EXAMPLE.com").unwrap();
        // The digest sits in the certificate as an OCTET STRING (04 20 ...).
        let der = certified.cert[0].as_ref();
        let mut needle = vec![0x04, 0x20];
        needle.extend_from_slice(&[7; 32]);
        assert!(der.windows(needle.len()).any(|w| w == needle.as_slice()));
        c.clear("vm.example.com");
        assert!(c.get("vm.example.com").is_none());
    }
}
