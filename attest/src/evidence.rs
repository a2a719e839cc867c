//! The Evidence JSON that `GET /v1/attestation?nonce=...` returns (ARCHITECTURE.md,
//! "Evidence"): the TEE
//! report, the TPM quote, the IMA log and the certificate manifest of one call.
//!
//! Parsing is strict: an unknown `version`, `kind` or field is an error that names it,
//! so a verifier never silently ignores something it does not understand.

use crate::batch::{Batch, ProofError};
use crate::binding::{Freshness, Manifest, Nonce};
use crate::tpm::quote::PcrValues;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Evidence whose report_data binds the caller's nonce itself (ARCHITECTURE.md,
/// "Binding"); still read, no longer written by verigated.
pub const EVIDENCE_VERSION: u32 = 1;

/// Evidence whose report_data binds the root of a round's nonces, with the caller's
/// inclusion proof in `batch` (ARCHITECTURE.md, "Binding", "Version 2"); what verigated
/// writes.
pub const EVIDENCE_VERSION_BATCHED: u32 = 2;
/// The ALPN protocol id that asks for verigated's own endpoint on any name it routes: a
/// ClientHello whose SNI is a routed name and whose ALPN list is exactly this one id goes
/// to the own endpoint (which still presents the certificate of `gateway.domain`), so one
/// DNS name serves the application and its attestation (ARCHITECTURE.md, "Routing a
/// connection"). `verigate` offers it, alone, on its `--url` connection.
pub const OWN_ENDPOINT_ALPN: &[u8] = b"verigate/1";

/// The most evidence JSON a verifier parses (the IMA log dominates its size).
pub const MAX_EVIDENCE_BYTES: usize = 128 * 1024 * 1024;

/// Bytes carried as standard base64 with padding.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64(pub Vec<u8>);

impl std::fmt::Debug for Base64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64({} bytes)", self.0.len())
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Base64, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(Base64)
            .map_err(|e| serde::de::Error::custom(format!("not standard base64 with padding: {e}")))
    }
}

/// What the TEE said, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields, from = "TeeEvidenceWire")]
pub enum TeeEvidence {
    /// An AMD SEV-SNP attestation report (1184 bytes) and, optionally, the certificates
    /// the host supplied (VCEK/VLEK, ASK, ARK as PEM). Their root is never trusted: the
    /// verifier pins AMD's ARKs.
    #[serde(rename = "sev-snp")]
    SevSnp {
        /// The 1184-byte attestation report as the firmware returned it.
        report: Base64,
        /// The host-supplied certificate chain, PEM; absent when the host supplied none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cert_chain: Option<Base64>,
    },
    /// An Intel TDX quote (v4 or v5) and, optionally, the PCS collateral JSON for it.
    #[serde(rename = "tdx")]
    Tdx {
        /// The TDX quote as the quoting enclave produced it.
        report: Base64,
        /// The PCS collateral (TCB info, QE identity, CRLs) as JSON, if the VM fetched it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collateral: Option<Base64>,
    },
    /// An Azure confidential VM on SEV-SNP (ARCHITECTURE.md, "Azure confidential VMs"):
    /// the HCL report the paravisor's vTPM kept in NV index 0x01400001 after verigated
    /// wrote its report_data as user-data, and, optionally, the VCEK (and chain) as PEM.
    /// The TPM quote in [`Evidence::tpm`] must be signed by the report's `HCLAkPub`.
    #[serde(rename = "azure-sev-snp")]
    AzureSevSnp {
        /// The HCL report as read from NV index 0x01400001.
        hcl_report: Base64,
        /// The VCEK and its chain, PEM, if verigated obtained them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cert_chain: Option<Base64>,
    },
    /// An Azure confidential VM on TDX: the HCL report (its TD report is MAC'ed, not
    /// signed), the TD quote the host's quote service made for that TD report, and,
    /// optionally, the quote's PCS collateral JSON.
    #[serde(rename = "azure-tdx")]
    AzureTdx {
        /// The HCL report as read from NV index 0x01400001.
        hcl_report: Base64,
        /// The TD quote for the HCL report's TD report (Azure IMDS `/acc/tdquote`).
        td_quote: Base64,
        /// The PCS collateral as JSON, if verigated obtained it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        collateral: Option<Base64>,
    },
    /// verigate's simulated TEE: a report signed by a P-384 key kept in the data dir,
    /// with that key's public half (SPKI DER). Proves nothing about hardware.
    #[serde(rename = "simulated")]
    Simulated {
        /// The simulated report, signed with `public_key`'s private half.
        report: Base64,
        /// The P-384 public key as SubjectPublicKeyInfo DER.
        public_key: Base64,
    },
    /// No TEE: nothing vouches for report_data.
    #[serde(rename = "none")]
    None,
    /// No TEE, and why: verigated looked for one (`tee = "auto"`) and found none. The
    /// same `kind` as [`TeeEvidence::None`], with a `cause` a verifier shows, so a user
    /// learns that the VM was not configured without a TEE but did not find one.
    #[serde(rename = "none")]
    NotFound {
        /// Why there is no TEE, e.g. [`NO_TEE_FOUND`].
        cause: String,
    },
}

/// The cause verigated gives when `tee = "auto"` finds no TEE: in its log, in
/// `/healthz` and in the evidence, so `verify` and `snapshot` name it.
pub const NO_TEE_FOUND: &str = "verigated found no TEE: tee = auto";

/// The wire form of [`TeeEvidence`] for parsing: serde lets a unit variant of an
/// internally tagged enum take any fields, so `none` is an empty struct variant here,
/// which `deny_unknown_fields` covers (`{"kind": "none", "report": ...}` is refused).
#[derive(Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
enum TeeEvidenceWire {
    #[serde(rename = "sev-snp")]
    SevSnp {
        report: Base64,
        #[serde(default)]
        cert_chain: Option<Base64>,
    },
    #[serde(rename = "tdx")]
    Tdx {
        report: Base64,
        #[serde(default)]
        collateral: Option<Base64>,
    },
    #[serde(rename = "azure-sev-snp")]
    AzureSevSnp {
        hcl_report: Base64,
        #[serde(default)]
        cert_chain: Option<Base64>,
    },
    #[serde(rename = "azure-tdx")]
    AzureTdx {
        hcl_report: Base64,
        td_quote: Base64,
        #[serde(default)]
        collateral: Option<Base64>,
    },
    #[serde(rename = "simulated")]
    Simulated { report: Base64, public_key: Base64 },
    #[serde(rename = "none")]
    None {
        #[serde(default)]
        cause: Option<String>,
    },
}

impl From<TeeEvidenceWire> for TeeEvidence {
    fn from(w: TeeEvidenceWire) -> TeeEvidence {
        match w {
            TeeEvidenceWire::SevSnp { report, cert_chain } => {
                TeeEvidence::SevSnp { report, cert_chain }
            }
            TeeEvidenceWire::Tdx { report, collateral } => TeeEvidence::Tdx { report, collateral },
            TeeEvidenceWire::AzureSevSnp {
                hcl_report,
                cert_chain,
            } => TeeEvidence::AzureSevSnp {
                hcl_report,
                cert_chain,
            },
            TeeEvidenceWire::AzureTdx {
                hcl_report,
                td_quote,
                collateral,
            } => TeeEvidence::AzureTdx {
                hcl_report,
                td_quote,
                collateral,
            },
            TeeEvidenceWire::Simulated { report, public_key } => {
                TeeEvidence::Simulated { report, public_key }
            }
            TeeEvidenceWire::None { cause: None } => TeeEvidence::None,
            TeeEvidenceWire::None { cause: Some(cause) } => TeeEvidence::NotFound { cause },
        }
    }
}

impl TeeEvidence {
    /// The `kind` string (ARCHITECTURE.md, "Evidence").
    pub fn kind(&self) -> &'static str {
        match self {
            TeeEvidence::SevSnp { .. } => "sev-snp",
            TeeEvidence::Tdx { .. } => "tdx",
            TeeEvidence::AzureSevSnp { .. } => "azure-sev-snp",
            TeeEvidence::AzureTdx { .. } => "azure-tdx",
            TeeEvidence::Simulated { .. } => "simulated",
            TeeEvidence::None | TeeEvidence::NotFound { .. } => "none",
        }
    }

    /// Whether the TPM quote must be signed by a key the TEE report vouches for (Azure's
    /// `HCLAkPub`), rather than one bound only through report_data.
    pub fn vouches_for_tpm_key(&self) -> bool {
        matches!(
            self,
            TeeEvidence::AzureSevSnp { .. } | TeeEvidence::AzureTdx { .. }
        )
    }
}

/// A TPM quote with the key that signed it and the PCR values it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmEvidence {
    /// TPMT_PUBLIC of the attestation key.
    pub ak_public: Base64,
    /// TPMS_ATTEST.
    pub quote: Base64,
    /// TPMT_SIGNATURE.
    pub signature: Base64,
    /// The values of the PCRs the quote covers, by bank; the verifier recomputes their digest and
    /// compares it with the quote's.
    pub pcrs: PcrValues,
}

/// The answer to one attestation call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The evidence format, [`EVIDENCE_VERSION`] or [`EVIDENCE_VERSION_BATCHED`]; any other
    /// value is refused.
    pub version: u32,
    /// The nonce the VM says it answered; `verify` compares it with the one it sent and
    /// recomputes the binding from its own.
    pub nonce: Nonce,
    /// Version 2 only: the caller's place in the round whose root report_data binds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
    /// verigated's own name: the manifest entry of the certificate on its endpoint.
    pub domain: String,
    /// Every name the VM serves with the SHA-256 of its leaf certificate; its digest is in
    /// report_data.
    pub manifest: Manifest,
    /// The TEE report whose report_data binds nonce, manifest and attestation key.
    pub tee: TeeEvidence,
    /// The TPM quote over the IMA PCR, if the VM has a TPM.
    pub tpm: Option<TpmEvidence>,
    /// The binary IMA measurement list (`binary_runtime_measurements`).
    pub ima_log: Option<Base64>,
    /// Incremental IMA (ARCHITECTURE.md, "Evidence"): how many entries of the log are
    /// left out before `ima_log`, because the verifier said it has replayed them
    /// already (`ima_from=N`). Absent: `ima_log` is the whole log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_log_from: Option<u64>,
}

/// Why evidence bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The input is larger than [`MAX_EVIDENCE_BYTES`].
    #[error("evidence is {len} bytes; the most accepted is {max}")]
    TooLarge {
        /// Size of the input in bytes.
        len: usize,
        /// The most accepted, [`MAX_EVIDENCE_BYTES`].
        max: usize,
    },
    /// The bytes are not JSON, or the JSON has a missing, unknown or ill-typed field.
    #[error("evidence is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    /// The `version` field is neither [`EVIDENCE_VERSION`] nor [`EVIDENCE_VERSION_BATCHED`].
    #[error(
        "evidence version {0} is not supported (this verigate reads versions {EVIDENCE_VERSION} and {EVIDENCE_VERSION_BATCHED})"
    )]
    UnsupportedVersion(u32),
    /// Version 2 evidence without `batch`, or version 1 evidence with one.
    #[error("evidence version {version} {}", if *.version == EVIDENCE_VERSION_BATCHED { "needs a `batch` field" } else { "must not carry a `batch` field (batches are version 2)" })]
    BatchMismatch {
        /// The evidence's version.
        version: u32,
    },
    /// The `domain` field names no entry of the manifest.
    #[error("evidence domain `{0}` is not in its own manifest")]
    DomainNotInManifest(String),
}

impl Evidence {
    /// Parses and checks evidence from untrusted bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Evidence, EvidenceError> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(EvidenceError::TooLarge {
                len: bytes.len(),
                max: MAX_EVIDENCE_BYTES,
            });
        }
        let evidence: Evidence = serde_json::from_slice(bytes)?;
        match (evidence.version, &evidence.batch) {
            (EVIDENCE_VERSION, None) | (EVIDENCE_VERSION_BATCHED, Some(_)) => {}
            (EVIDENCE_VERSION | EVIDENCE_VERSION_BATCHED, _) => {
                return Err(EvidenceError::BatchMismatch {
                    version: evidence.version,
                })
            }
            (v, _) => return Err(EvidenceError::UnsupportedVersion(v)),
        }
        if evidence.manifest.get(&evidence.domain).is_none() {
            return Err(EvidenceError::DomainNotInManifest(evidence.domain.clone()));
        }
        Ok(evidence)
    }

    /// What report_data must bind if this evidence answers `nonce`: the nonce itself
    /// (version 1), or the root its inclusion proof leads to from `nonce` (version 2).
    /// A proof that leads nowhere (index out of range, path of the wrong length) is an
    /// error; version 2 evidence without `batch` is refused by [`Evidence::from_json`] and
    /// here reads as a batch of one.
    pub fn freshness(&self, nonce: &Nonce) -> Result<Freshness, ProofError> {
        match (&self.batch, self.version) {
            (_, EVIDENCE_VERSION) => Ok(Freshness::Nonce(*nonce)),
            (Some(batch), _) => batch.root_for(nonce).map(Freshness::BatchRoot),
            (None, _) => Batch::single().root_for(nonce).map(Freshness::BatchRoot),
        }
    }

    /// Leaves out the first `from` entries of the IMA log (incremental IMA: the verifier
    /// has replayed them), setting `ima_log_from`. The quote is untouched: it covers the
    /// whole PCR, and the verifier replays the rest from the value it kept. A log with
    /// fewer than `from` entries (the VM rebooted) or that does not parse is left whole,
    /// so the verifier replays it from the start; `from = 0` changes nothing.
    pub fn skip_ima_entries(&mut self, from: u64) {
        let Some(log) = &self.ima_log else {
            return;
        };
        if from == 0 {
            return;
        }
        if let Some(offset) = crate::ima::binary::entry_offset(&log.0, from) {
            let rest = log.0.get(offset..).unwrap_or_default().to_vec();
            self.ima_log = Some(Base64(rest));
            self.ima_log_from = Some(from);
        }
    }

    /// The evidence as pretty-printed JSON, the body of `GET /v1/attestation`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("evidence serializes: every field is plain data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tee_may_say_why() {
        let found: TeeEvidence = serde_json::from_str(
            r#"{"kind": "none", "cause": "verigated found no TEE: tee = auto"}"#,
        )
        .expect("none with a cause");
        assert_eq!(
            found,
            TeeEvidence::NotFound {
                cause: NO_TEE_FOUND.into()
            }
        );
        assert_eq!(found.kind(), "none");
        let json = serde_json::to_string(&found).expect("serializes");
        assert_eq!(
            json,
            r#"{"kind":"none","cause":"verigated found no TEE: tee = auto"}"#
        );
        let plain: TeeEvidence = serde_json::from_str(r#"{"kind": "none"}"#).expect("none");
        assert_eq!(plain, TeeEvidence::None);
        assert_eq!(
            serde_json::to_string(&plain).expect("serializes"),
            r#"{"kind":"none"}"#
        );
        assert!(
            serde_json::from_str::<TeeEvidence>(r#"{"kind": "none", "report": "AA=="}"#).is_err()
        );
        // The cause reaches the checks a user reads.
        let err = crate::verify::verify_tee(
            &found,
            &crate::verify::TeeOptions {
                snp_certs: None,
                tdx_collateral: None,
                allowed_tdx_tcb_statuses: &[],
                at: std::time::SystemTime::now(),
            },
        )
        .expect_err("no TEE");
        assert!(err.to_string().contains(NO_TEE_FOUND), "{err}");
    }
    use crate::binding::ManifestEntry;

    fn sample() -> Evidence {
        Evidence {
            version: 1,
            nonce: Nonce([1; 32]),
            batch: None,
            domain: "vm.example.com".into(),
            manifest: Manifest::new(vec![ManifestEntry {
                name: "vm.example.com".into(),
                cert_sha256: [2; 32],
                spki_sha256: [3; 32],
            }])
            .unwrap(),
            tee: TeeEvidence::Simulated {
                report: Base64(vec![1, 2, 3]),
                public_key: Base64(vec![4]),
            },
            tpm: None,
            ima_log: None,
            ima_log_from: None,
        }
    }

    #[test]
    fn round_trips_in_the_design_shape() {
        let e = sample();
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["tee"]["kind"], "simulated");
        assert_eq!(v["tee"]["report"], "AQID");
        assert_eq!(v["tpm"], serde_json::Value::Null);
        assert_eq!(v["nonce"], "01".repeat(32));
        assert_eq!(Evidence::from_json(&e.to_json()).unwrap(), e);
    }

    fn mutate(f: impl FnOnce(&mut serde_json::Value)) -> Result<Evidence, EvidenceError> {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        f(&mut v);
        Evidence::from_json(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn every_kind_and_the_tpm_part_round_trip_in_the_design_shape() {
        let mut pcrs = PcrValues::new();
        pcrs.insert(crate::tpm::quote::HashAlg::Sha256, 10, vec![0xaa; 32])
            .unwrap();
        for tee in [
            TeeEvidence::SevSnp {
                report: Base64(vec![1; 5]),
                cert_chain: Some(Base64(b"-----BEGIN CERTIFICATE-----".to_vec())),
            },
            TeeEvidence::SevSnp {
                report: Base64(vec![1; 5]),
                cert_chain: None,
            },
            TeeEvidence::Tdx {
                report: Base64(vec![2; 5]),
                collateral: Some(Base64(b"{}".to_vec())),
            },
            TeeEvidence::None,
        ] {
            let mut e = sample();
            e.tee = tee;
            e.tpm = Some(TpmEvidence {
                ak_public: Base64(vec![3]),
                quote: Base64(vec![4]),
                signature: Base64(vec![5]),
                pcrs: pcrs.clone(),
            });
            e.ima_log = Some(Base64(vec![6; 7]));
            let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
            assert_eq!(v["tee"]["kind"], e.tee.kind());
            assert_eq!(v["tpm"]["pcrs"]["sha256"]["10"], "aa".repeat(32));
            assert_eq!(v["ima_log"], "BgYGBgYGBg==");
            assert_eq!(Evidence::from_json(&e.to_json()).unwrap(), e);
        }
    }

    #[test]
    fn base64_must_be_standard_with_padding() {
        for bad in ["AQI", "AQI=x", "-_8=", "AQ I="] {
            let e = mutate(|v| v["tee"]["report"] = bad.into()).unwrap_err();
            assert!(e.to_string().contains("base64"), "{bad}: {e}");
        }
        let ok = mutate(|v| v["tee"]["report"] = "AQI=".into()).unwrap();
        assert!(matches!(ok.tee, TeeEvidence::Simulated { ref report, .. } if report.0 == [1, 2]));
    }

    #[test]
    fn fields_of_one_kind_are_refused_in_another() {
        // A TDX collateral in SNP evidence, a public key without the simulated kind.
        let e = mutate(|v| {
            v["tee"] =
                serde_json::json!({"kind": "sev-snp", "report": "AQI=", "collateral": "AQI="});
        })
        .unwrap_err();
        assert!(e.to_string().contains("collateral"), "{e}");
        let e = mutate(|v| v["tee"] = serde_json::json!({"kind": "none", "public_key": "AQI="}))
            .unwrap_err();
        assert!(e.to_string().contains("public_key"), "{e}");
        let e = mutate(|v| v["tee"] = serde_json::json!({"report": "AQI="})).unwrap_err();
        assert!(e.to_string().contains("kind"), "{e}");
        let e = mutate(|v| {
            v["tpm"] = serde_json::json!({"ak_public": "AQI=", "quote": "AQI=",
                "signature": "AQI=", "pcrs": {"md5": {"10": "00"}}});
        })
        .unwrap_err();
        assert!(e.to_string().contains("md5"), "{e}");
        let e = mutate(|v| v["manifest"][0]["name"] = "bad name".into()).unwrap_err();
        assert!(e.to_string().contains("bad name"), "{e}");
    }

    #[test]
    fn strict_about_what_it_does_not_know() {
        assert!(matches!(
            mutate(|v| v["version"] = 3.into()),
            Err(EvidenceError::UnsupportedVersion(3))
        ));
        assert!(matches!(
            mutate(|v| v["version"] = 2.into()),
            Err(EvidenceError::BatchMismatch { version: 2 })
        ));
        let batch = serde_json::json!({"index": 0, "size": 1, "path": []});
        assert!(matches!(
            mutate(|v| v["batch"] = batch.clone()),
            Err(EvidenceError::BatchMismatch { version: 1 })
        ));
        let v2 = mutate(|v| {
            v["version"] = 2.into();
            v["batch"] = batch.clone();
        })
        .unwrap();
        assert_eq!(v2.batch, Some(Batch::single()));
        assert_eq!(Evidence::from_json(&v2.to_json()).unwrap(), v2);
        let e = mutate(|v| v["tee"]["kind"] = "sgx".into()).unwrap_err();
        assert!(e.to_string().contains("sgx"), "{e}");
        let e = mutate(|v| v["extra"] = 1.into()).unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
        let e = mutate(|v| v["tee"]["report"] = "not base64!".into()).unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
        let e = mutate(|v| v["nonce"] = "abcd".into()).unwrap_err();
        assert!(e.to_string().contains("64 hex"), "{e}");
        assert!(matches!(
            mutate(|v| v["domain"] = "other.example.com".into()),
            Err(EvidenceError::DomainNotInManifest(_))
        ));
        assert!(Evidence::from_json(b"").is_err());
        assert!(Evidence::from_json(b"[]").is_err());
    }
}
