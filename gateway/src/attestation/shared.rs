//! The output of one attestation round, shared by every caller of it: the manifest it
//! bound, the TEE report, the TPM quote and the IMA log (held once, see [`super::ima`]).
//! Each caller's evidence is this plus its own nonce and inclusion proof.
//!
//! The response body is built without copying the log: the evidence JSON is written with a
//! placeholder where the log's base64 goes and cut there, and the body is that JSON's
//! two halves around the shared base64 bytes.

use std::sync::Arc;

use attest::batch::Batch;
use attest::binding::{Manifest, Nonce};
use attest::evidence::{Base64, Evidence, TeeEvidence, TpmEvidence, EVIDENCE_VERSION_BATCHED};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper::body::Bytes;

use super::ima::ImaLog;

/// What one round produced; see the module documentation.
#[derive(Debug, Clone)]
pub struct RoundEvidence {
    /// verigated's own name.
    pub domain: String,
    /// The manifest whose digest the round bound.
    pub manifest: Manifest,
    /// The TEE report over the round's report_data.
    pub tee: TeeEvidence,
    /// The TPM quote over `tpm_qualifying(report_data)`, if there is a TPM.
    pub tpm: Option<TpmEvidence>,
    /// The IMA log read after the quote, if there is a TPM.
    pub ima_log: Option<Arc<ImaLog>>,
}

/// Stands in for the IMA log in the JSON until it is cut there: 33 bytes, so that its base64
/// (44 characters) has no padding, and text no evidence field would carry.
const PLACEHOLDER: &[u8; 33] = b"verigate ima log placeholder xyz!";

impl RoundEvidence {
    /// The evidence of the caller with `nonce` at `batch`, the IMA log copied into it (for
    /// in-process users such as the snapshot job).
    pub fn evidence(&self, nonce: Nonce, batch: Batch) -> Evidence {
        let mut e = self.without_log(nonce, batch);
        e.ima_log = self.ima_log.as_ref().map(|l| Base64(l.bytes.to_vec()));
        e
    }

    fn without_log(&self, nonce: Nonce, batch: Batch) -> Evidence {
        Evidence {
            version: EVIDENCE_VERSION_BATCHED,
            nonce,
            batch: Some(batch),
            domain: self.domain.clone(),
            manifest: self.manifest.clone(),
            tee: self.tee.clone(),
            tpm: self.tpm.clone(),
            ima_log: None,
            ima_log_from: None,
        }
    }

    /// The evidence JSON of the caller with `nonce` at `batch`, in chunks that share the
    /// IMA log's base64 instead of copying it.
    pub fn body(&self, nonce: Nonce, batch: Batch) -> Vec<Bytes> {
        let mut e = self.without_log(nonce, batch);
        let Some(log) = &self.ima_log else {
            return vec![Bytes::from(e.to_json())];
        };
        e.ima_log = Some(Base64(PLACEHOLDER.to_vec()));
        let json = e.to_json();
        // A JSON string cannot hold an unescaped `"`, so this needle, key and quotes
        // included, is found only where the field itself is written.
        let needle = format!("\"ima_log\": \"{}\"", STANDARD.encode(PLACEHOLDER));
        let Some(at) = json
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
        else {
            // The field is written elsewise (a changed serializer): copy the log, still right.
            return vec![Bytes::from(
                self.evidence(nonce, e.batch.unwrap_or_else(Batch::single))
                    .to_json(),
            )];
        };
        let json = Bytes::from(json);
        let value_start = at + "\"ima_log\": \"".len();
        let value_end = at + needle.len() - 1;
        vec![
            json.slice(..value_start),
            log.base64.clone(),
            json.slice(value_end..),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest::binding::ManifestEntry;

    fn round(log: Option<&[u8]>) -> RoundEvidence {
        RoundEvidence {
            domain: "vm.example.com".into(),
            manifest: Manifest::new(vec![ManifestEntry {
                name: "vm.example.com".into(),
                cert_sha256: [2; 32],
                spki_sha256: [3; 32],
            }])
            .unwrap(),
            tee: TeeEvidence::None,
            tpm: None,
            ima_log: log.map(|l| {
                Arc::new(ImaLog {
                    bytes: Bytes::copy_from_slice(l),
                    base64: Bytes::from(STANDARD.encode(l)),
                })
            }),
        }
    }

    #[test]
    fn the_body_is_the_evidence_with_the_shared_log() {
        for log in [
            None,
            Some(&b""[..]),
            Some(&b"\x00\x01 a log \"quoted\""[..]),
        ] {
            let r = round(log);
            let nonce = Nonce([7; 32]);
            let body: Vec<u8> = r.body(nonce, Batch::single()).concat();
            let parsed = Evidence::from_json(&body).unwrap();
            assert_eq!(parsed, r.evidence(nonce, Batch::single()));
            assert_eq!(parsed.ima_log.map(|l| l.0), log.map(<[u8]>::to_vec));
        }
        let r = round(Some(b"log"));
        let chunks = r.body(Nonce([7; 32]), Batch::single());
        assert_eq!(chunks.len(), 3);
        let shared = &r.ima_log.as_ref().unwrap().base64;
        assert_eq!(chunks[1].as_ptr(), shared.as_ptr(), "the log is not copied");
    }
}
