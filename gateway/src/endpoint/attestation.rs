//! The attestation API on verigated's own endpoint: `GET /v1/attestation?nonce=<64 hex>`
//! answers the Evidence JSON of ARCHITECTURE.md, `GET /v1/manifest` the current certificate
//! manifest with the routes left out of it (for operators). Errors are JSON objects
//! `{"error": ..., "detail": ...}`: 400 for a missing or malformed nonce, 503 when the
//! TPM, the TEE or the IMA log fails (the VM may answer again later).

use std::sync::atomic::Ordering;

use attest::binding::Nonce;
use hyper::{Response, StatusCode};

use super::response::{json, json_error, Body};
use crate::attestation::Attester;
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
    match attester.attest(nonce).await {
        Ok(mut evidence) => {
            // After the quote: the quote covers the whole PCR whatever the log carries.
            evidence.skip_ima_entries(ima_from);
            json(StatusCode::OK, evidence.to_json())
        }
        Err(e) => {
            attester.metrics.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(nonce = %nonce.to_hex(), "attestation failed: {e}");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "attestation failed",
                &e.to_string(),
            )
        }
    }
}

/// `GET /v1/manifest`.
pub fn manifest(store: &ManifestStore) -> Response<Body> {
    let state = store.current();
    let body = serde_json::to_vec_pretty(&state.to_json()).unwrap_or_default();
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
