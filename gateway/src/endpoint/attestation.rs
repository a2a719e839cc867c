//! The attestation API on verigated's own endpoint: `GET /v1/attestation?nonce=<64 hex>`
//! answers the Evidence JSON of ARCHITECTURE.md, `GET /v1/manifest` the current certificate
//! manifest with the routes left out of it (for operators). Errors are JSON objects
//! `{"error": ..., "detail": ...}`: 400 for a missing or malformed nonce, 503 when the
//! TPM, the TEE or the IMA log fails (the VM may answer again later).
//!
//! Anyone on the internet may call these, so they publish only what a verifier needs:
//! a 503 says which part failed ([`public_detail`]), never the TPM's TCTI, a path or an
//! address, and the manifest gives names and certificate digests, never a backend's
//! address or error. The whole story goes to the log.

use std::sync::atomic::Ordering;

use attest::binding::Nonce;
use hyper::{Response, StatusCode};

use super::response::{busy, json, json_chunks, json_error, Body};
use crate::attestation::batch::JoinError;
use crate::attestation::{AttestError, Attester};
use crate::manifest::ManifestStore;

/// Why a query carries no usable nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceQueryError {
    /// The query has no `nonce` parameter.
    #[error("missing query parameter `nonce`: send ?nonce=<64 hex characters> (32 random bytes)")]
    Missing,
    /// `nonce` appears more than once; refused rather than picking one.
    #[error("query parameter `nonce` is given {count} times; send it once")]
    Repeated {
        /// How many times it appears.
        count: usize,
    },
    /// The value is not a nonce (not 64 hex characters).
    #[error("{0}")]
    Bad(#[from] attest::binding::BindingError),
}

/// The nonce of a query string (`nonce=<64 hex>`, other parameters ignored).
pub fn nonce_from_query(query: Option<&str>) -> Result<Nonce, NonceQueryError> {
    let values: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("nonce="))
        .collect();
    match values.as_slice() {
        [] => Err(NonceQueryError::Missing),
        [one] => Ok(one.parse()?),
        many => Err(NonceQueryError::Repeated { count: many.len() }),
    }
}

/// What a caller refused for too many waiting is told to wait: rounds take milliseconds
/// to tens of milliseconds, so the queue has drained long before.
const RETRY_AFTER_SECONDS: u32 = 1;

/// The optional `ima_from=N` of a query (incremental IMA, ARCHITECTURE.md "Evidence"):
/// the number of IMA entries the verifier has replayed already; 0 when absent.
pub fn ima_from_query(query: Option<&str>) -> Result<u64, String> {
    let values: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("ima_from="))
        .collect();
    match values.as_slice() {
        [] => Ok(0),
        [one] => one.parse::<u64>().map_err(|_| {
            format!(
                "ima_from must be a count of IMA entries, got `{}`",
                one.chars().take(40).collect::<String>()
            )
        }),
        many => Err(format!(
            "query parameter `ima_from` is given {} times; send it once",
            many.len()
        )),
    }
}

/// `GET /v1/attestation?nonce=...[&ima_from=N]`.
pub async fn attestation(query: Option<&str>, attester: &Attester) -> Response<Body> {
    attester.metrics.calls.fetch_add(1, Ordering::Relaxed);
    let nonce = match nonce_from_query(query) {
        Ok(n) => n,
        Err(e) => {
            attester.metrics.failures.fetch_add(1, Ordering::Relaxed);
            return json_error(StatusCode::BAD_REQUEST, "bad nonce", &e.to_string());
        }
    };
    let ima_from = match ima_from_query(query) {
        Ok(n) => n,
        Err(e) => {
            attester.metrics.failures.fetch_add(1, Ordering::Relaxed);
            return json_error(StatusCode::BAD_REQUEST, "bad ima_from", &e);
        }
    };
    if ima_from > 0 {
        // Incremental IMA: this caller's log is cut after its own copy of the evidence
        // (the quote covers the whole PCR whatever the log carries); the shared body
        // below serves every caller that wants the whole log.
        return match attester.attest(nonce).await {
            Ok(mut evidence) => {
                evidence.skip_ima_entries(ima_from);
                json(StatusCode::OK, evidence.to_json())
            }
            Err(e) => failed(attester, nonce, &e),
        };
    }
    match attester.attest_body(nonce).await {
        Ok(chunks) => json_chunks(StatusCode::OK, chunks),
        Err(e) => failed(attester, nonce, &e),
    }
}

/// The answer to a failed attestation: 503 with `Retry-After` when too many callers
/// wait, else 503 naming the part that failed (the log has the detail).
fn failed(attester: &Attester, nonce: Nonce, e: &AttestError) -> Response<Body> {
    attester.metrics.failures.fetch_add(1, Ordering::Relaxed);
    if e.is_busy() {
        return busy("attestation busy", &e.to_string(), RETRY_AFTER_SECONDS);
    }
    tracing::error!(nonce = %nonce.to_hex(), "attestation failed: {e}");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "attestation failed",
        public_detail(e),
    )
}

/// What a caller is told about a failed attestation: which part failed, in words that
/// hold no TCTI, path, address or error text of the machine (the log has those).
pub fn public_detail(e: &AttestError) -> &'static str {
    match e {
        #[cfg(feature = "tpm")]
        AttestError::Tpm(_) => "the TPM gave no quote; the reason is in verigated's log",
        AttestError::Tee(_) => "the TEE gave no report; the reason is in verigated's log",
        AttestError::ImaLog { .. } => {
            "the IMA log cannot be read; the reason is in verigated's log"
        }
        AttestError::Task { .. } => {
            "an internal task of the attestation failed; the reason is in verigated's log"
        }
        AttestError::Join(JoinError::Busy { .. }) => {
            "too many attestation requests are waiting; retry shortly"
        }
        AttestError::Join(JoinError::Round(e)) => public_detail(e),
        AttestError::Join(JoinError::Lost) => {
            "an internal task of the attestation failed; the reason is in verigated's log"
        }
    }
}

/// `GET /v1/manifest`: the public form of the current manifest (see
/// [`crate::manifest::ManifestState::to_public_json`]).
pub fn manifest(store: &ManifestStore) -> Response<Body> {
    let state = store.current();
    let body = serde_json::to_vec_pretty(&state.to_public_json()).unwrap_or_default();
    json(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ima_from_queries() {
        let hex = "ab".repeat(32);
        assert_eq!(ima_from_query(Some(&format!("nonce={hex}"))), Ok(0));
        assert_eq!(
            ima_from_query(Some(&format!("nonce={hex}&ima_from=12"))),
            Ok(12)
        );
        for bad in [
            "ima_from=-1",
            "ima_from=x",
            "ima_from=",
            "ima_from=1&ima_from=2",
        ] {
            assert!(ima_from_query(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn nonce_queries() {
        let hex = "ab".repeat(32);
        assert_eq!(
            nonce_from_query(Some(&format!("nonce={hex}"))).unwrap(),
            Nonce([0xab; 32])
        );
        assert_eq!(
            nonce_from_query(Some(&format!("x=1&nonce={hex}&y"))).unwrap(),
            Nonce([0xab; 32])
        );
        assert_eq!(nonce_from_query(None), Err(NonceQueryError::Missing));
        assert_eq!(nonce_from_query(Some("")), Err(NonceQueryError::Missing));
        assert_eq!(
            nonce_from_query(Some("nonces=1")),
            Err(NonceQueryError::Missing)
        );
        assert_eq!(
            nonce_from_query(Some(&format!("nonce={hex}&nonce={hex}"))),
            Err(NonceQueryError::Repeated { count: 2 })
        );
        assert_eq!(
            nonce_from_query(Some("nonce=abc")).unwrap_err().to_string(),
            "nonce must be 64 hex characters (32 bytes), got 3 characters"
        );
        let e = nonce_from_query(Some(&format!("nonce={}", "zz".repeat(32)))).unwrap_err();
        assert!(e.to_string().starts_with("nonce is not hex"), "{e}");
        // Multi-byte characters are counted as characters, and never sliced.
        let e = nonce_from_query(Some(&format!("nonce={}", "é".repeat(32)))).unwrap_err();
        assert!(matches!(e, NonceQueryError::Bad(_)), "{e}");
    }
}
