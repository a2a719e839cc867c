//! Who may control the application: a caller with a bearer token whose SHA-256 is listed
//! in `[api] admin_token_sha256`, or a TLS client certificate issued by the configured
//! client CA. With neither configured every control request is refused (403) with a
//! message that says how to configure one: an open control API would let anyone who
//! reaches the VM replace the application's secrets.
//!
//! [`authorize`] is a pure decision over what the request carried ([`Credentials`]).
//! Token digests are compared in constant time against *every* configured digest, so the
//! time taken says nothing about how close a guess was or which entry matched. Client
//! certificates are verified by rustls during the handshake ([`client_verifier`]), which
//! still lets clients without a certificate connect (attestation clients have none); the
//! handler then passes the verified leaf, if any, to [`authorize`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderMap, AUTHORIZATION};
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};

use crate::config::ApiConfig;

/// What the 403 for an unconfigured API tells the operator.
pub const HOW_TO_CONFIGURE: &str = "no credential is configured, so app control, snapshots, \
/metrics and the skipped-file list are refused. \
Set `[api] admin_token_sha256 = [\"<sha256 of your token>\"]` in verigated.toml \
(e.g. `printf %s TOKEN | sha256sum`), or a client CA for TLS client certificates, \
and reload verigated";

/// The credentials app control accepts, as configured.
#[derive(Debug, Clone, Default)]
pub struct ApiAuthConfig {
    /// SHA-256 digests of accepted bearer tokens.
    pub token_digests: Vec<[u8; 32]>,
    /// PEM file of the CA(s) that issue accepted client certificates; when set, the TLS
    /// server is built with [`client_verifier`] over it.
    pub client_ca: Option<PathBuf>,
}

impl ApiAuthConfig {
    /// From `[api]`: `admin_token_sha256` holds hex digests (any case). config.rs already
    /// refuses entries that are not 64 hex digits; one that slips through here is an
    /// error too, never skipped, so a typo cannot silently leave a token unaccepted.
    pub fn from_api(api: &ApiConfig, client_ca: Option<PathBuf>) -> Result<Self, AuthError> {
        let mut token_digests = Vec::with_capacity(api.admin_token_sha256.len());
        for (index, text) in api.admin_token_sha256.iter().enumerate() {
            token_digests.push(parse_digest(text).ok_or(AuthError::BadConfiguredDigest {
                index,
                len: text.len(),
            })?);
        }
        Ok(ApiAuthConfig {
            token_digests,
            client_ca,
        })
    }

    /// True when some credential is configured.
    pub fn is_configured(&self) -> bool {
        !self.token_digests.is_empty() || self.client_ca.is_some()
    }
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// What a request carried.
#[derive(Debug, Clone, Default)]
pub struct Credentials<'a> {
    /// The value of each `Authorization` header, in order (normally zero or one).
    pub authorization: Vec<&'a [u8]>,
    /// The DER leaf certificate the client presented, **only** if rustls verified it
    /// against the client CA (`ServerConnection::peer_certificates` returns it only then).
    pub verified_client_certificate: Option<&'a [u8]>,
}

/// Who was let in; carries no secret, so it can be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A bearer token matching `admin_token_sha256[index]`.
    Token {
        /// Position of the matching digest in `admin_token_sha256`.
        index: usize,
    },
    /// A client certificate issued by the client CA, named by the SHA-256 of its DER.
    ClientCertificate {
        /// SHA-256 of the certificate's DER, in lowercase hex.
        sha256: String,
    },
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Token { index } => write!(f, "token admin_token_sha256[{index}]"),
            Principal::ClientCertificate { sha256 } => write!(f, "client certificate {sha256}"),
        }
    }
}

/// Why a control request was refused. The messages never repeat the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither a token digest nor a client CA is configured, so nobody may control the app.
    #[error("{HOW_TO_CONFIGURE}")]
    Unconfigured,
    /// The request carried neither an `Authorization` header nor a verified client
    /// certificate.
    #[error("no credential: send `Authorization: Bearer <token>` or a client certificate")]
    Missing,
    /// The `Authorization` header is not of the form `Bearer <token>`.
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    /// More than one `Authorization` header: refused rather than picking one.
    #[error("{count} Authorization headers: send one")]
    SeveralHeaders {
        /// How many `Authorization` headers the request carried.
        count: usize,
    },
    /// The token's SHA-256 matches no configured digest.
    #[error("the bearer token is not accepted")]
    WrongToken,
    /// A configured digest is not 64 hex digits, so it could never match.
    #[error("api.admin_token_sha256[{index}]: expected 64 hex digits, got {len} characters")]
    BadConfiguredDigest {
        /// Position of the bad entry in `admin_token_sha256`.
        index: usize,
        /// Its length in bytes (64 when the length is right but a character is not hex).
        len: usize,
    },
    /// The client CA file cannot be read, holds no usable certificate, or gives no verifier.
    #[error("client CA `{path}`: {reason}")]
    ClientCa {
        /// Path of the client CA file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl AuthError {
    /// The HTTP status to answer with: 403 when app control is not configured (no
    /// credential can help), 401 when the request's credential is missing or wrong (the
    /// right one would), 500 for a server-side configuration error.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::Unconfigured => 403,
            AuthError::Missing
            | AuthError::NotBearer
            | AuthError::SeveralHeaders { .. }
            | AuthError::WrongToken => 401,
            AuthError::BadConfiguredDigest { .. } | AuthError::ClientCa { .. } => 500,
        }
    }
}

/// Collects the request's credentials from its headers and the verified client chain
/// (`peer_certificates()` of the TLS connection, leaf first).
pub fn credentials_from<'a>(
    headers: &'a HeaderMap,
    verified_chain: Option<&'a [CertificateDer<'static>]>,
) -> Credentials<'a> {
    Credentials {
        authorization: headers
            .get_all(AUTHORIZATION)
            .iter()
            .map(hyper::http::HeaderValue::as_bytes)
            .collect(),
        verified_client_certificate: verified_chain
            .and_then(|chain| chain.first())
            .map(std::convert::AsRef::as_ref),
    }
}

/// Decides whether a control request may proceed.
///
/// A verified client certificate is enough when a client CA is configured. Otherwise the
/// request must carry exactly one `Authorization: Bearer <token>` header whose token's
/// SHA-256 is configured.
pub fn authorize(creds: &Credentials<'_>, config: &ApiAuthConfig) -> Result<Principal, AuthError> {
    if !config.is_configured() {
        return Err(AuthError::Unconfigured);
    }
    if config.client_ca.is_some() {
        if let Some(leaf) = creds.verified_client_certificate {
            return Ok(Principal::ClientCertificate {
                sha256: hex::encode(Sha256::digest(leaf)),
            });
        }
    }
    let value = match creds.authorization.as_slice() {
        [] => return Err(AuthError::Missing),
        [one] => *one,
        many => return Err(AuthError::SeveralHeaders { count: many.len() }),
    };
    let token = bearer_token(value).ok_or(AuthError::NotBearer)?;
    let digest: [u8; 32] = Sha256::digest(token).into();
    match find_digest(&digest, &config.token_digests) {
        Some(index) => Ok(Principal::Token { index }),
        None => Err(AuthError::WrongToken),
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 9110), or None.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let rest = value.get(6..)?;
    if !rest.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Index of `digest` in `configured`, comparing against every entry without an early
/// exit; each comparison folds the XOR of all 32 bytes.
fn find_digest(digest: &[u8; 32], configured: &[[u8; 32]]) -> Option<usize> {
    let mut found = None;
    for (index, candidate) in configured.iter().enumerate() {
        let diff = digest
            .iter()
            .zip(candidate.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        // black_box keeps the compiler from turning the fold into an early-exit memcmp.
        if std::hint::black_box(diff) == 0 {
            found = Some(index);
        }
    }
    found
}

/// A rustls client-certificate verifier for the own endpoint: a certificate, when the
/// client presents one, must chain to a CA in `ca_pem`; a client without one is let
/// through the handshake (`allow_unauthenticated`), because attestation clients have
/// none. App-control handlers then require a verified certificate or a token through
/// [`authorize`].
pub fn client_verifier(
    ca_pem: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, AuthError> {
    let ca_error = |reason: String| AuthError::ClientCa {
        path: ca_pem.display().to_string(),
        reason,
    };
    let pem = std::fs::read(ca_pem).map_err(|e| ca_error(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in rustls_pemfile::certs(&mut pem.as_slice()).enumerate() {
        let cert = cert.map_err(|e| ca_error(format!("PEM block {i}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("certificate {i}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no CERTIFICATE block".into()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| ca_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    #[test]
    fn bearer_forms() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer\tabc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Basic YWJj"), None);
        assert_eq!(bearer_token(b""), None);
    }

    #[test]
    fn digest_found_at_any_index() {
        let configured = [digest_of("a"), digest_of("b"), digest_of("c")];
        assert_eq!(find_digest(&digest_of("c"), &configured), Some(2));
        assert_eq!(find_digest(&digest_of("a"), &configured), Some(0));
        assert_eq!(find_digest(&digest_of("d"), &configured), None);
        assert_eq!(find_digest(&digest_of("a"), &[]), None);
    }

    #[test]
    fn configured_digest_that_is_not_hex_is_an_error() {
        let api = ApiConfig {
            admin_token_sha256: vec!["zz".repeat(32)],
        };
        assert_eq!(
            ApiAuthConfig::from_api(&api, None).unwrap_err(),
            AuthError::BadConfiguredDigest { index: 0, len: 64 }
        );
        let api = ApiConfig {
            admin_token_sha256: vec!["AB".repeat(32)],
        };
        let ok = ApiAuthConfig::from_api(&api, None).unwrap();
        assert_eq!(ok.token_digests, vec![[0xab; 32]]);
    }
}
