//! Where the real attestation evidence is: `shared/evidence` beside the repository (its
//! README says where each file comes from), or the folder `VERIGATE_EVIDENCE` names (a
//! checkout elsewhere, e.g. a git worktree). One lookup for every crate's tests.

use std::path::PathBuf;

/// The environment variable that points at the evidence folder.
pub const EVIDENCE_ENV: &str = "VERIGATE_EVIDENCE";

/// The evidence folder, or its subfolder `sub` (`""` for the folder itself), when it
/// exists; `None` after [`crate::require`] named it (it panics under CI).
pub fn dir(sub: &str) -> Option<PathBuf> {
    let root = match std::env::var_os(EVIDENCE_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/evidence"),
    };
    let dir = if sub.is_empty() { root } else { root.join(sub) };
    crate::require_path(&dir, crate::require::install::EVIDENCE).then_some(dir)
}

/// The recorded Azure SEV-SNP evidence, `azure/snp-vtpm-evidence.json`, split into its
/// parts (the file holds byte strings as JSON lists of numbers).
#[derive(Debug, Clone)]
pub struct AzureSnp {
    /// The HCL report as read from NV index 0x01400001 (2600 bytes).
    pub hcl_report: Vec<u8>,
    /// The chip's VCEK, PEM.
    pub vcek_pem: Vec<u8>,
    /// The vTPM quote's TPMS_ATTEST.
    pub quote_message: Vec<u8>,
    /// The quote's plain RSASSA signature.
    pub quote_signature: Vec<u8>,
    /// The 24 SHA-256 PCR values the quote covers, in order.
    pub pcrs: Vec<Vec<u8>>,
}

/// [`AzureSnp`], when the evidence folder exists (see [`dir`]).
pub fn azure_snp() -> Option<AzureSnp> {
    let d = dir("azure")?;
    let j: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.join("snp-vtpm-evidence.json")).expect("snp-vtpm-evidence.json readable"),
    )
    .expect("snp-vtpm-evidence.json is JSON");
    let bytes = |v: &serde_json::Value| -> Vec<u8> {
        v.as_array()
            .expect("a list of byte values")
            .iter()
            .map(|b| u8::try_from(b.as_u64().expect("a number")).expect("a byte"))
            .collect()
    };
    Some(AzureSnp {
        hcl_report: bytes(&j["report"]),
        vcek_pem: j["vcek"].as_str().expect("vcek PEM").as_bytes().to_vec(),
        quote_message: bytes(&j["quote"]["message"]),
        quote_signature: bytes(&j["quote"]["signature"]),
        pcrs: j["quote"]["pcrs"]
            .as_array()
            .expect("pcrs")
            .iter()
            .map(bytes)
            .collect(),
    })
}
