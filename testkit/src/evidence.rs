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

/// The recorded Azure SEV-SNP evidence, `azure/snp-vtpm-evidence.json`: an HCL report,
/// its VCEK, and a vTPM quote made with HCLAkPub over `challenge`.
#[derive(Debug, Clone)]
pub struct AzureSnp {
    /// The HCL report (header, hardware report, runtime JSON).
    pub report: Vec<u8>,
    /// The VCEK, PEM.
    pub vcek: Vec<u8>,
    /// The quote's TPMS_ATTEST message.
    pub message: Vec<u8>,
    /// The quote's TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The quoted SHA-256 PCRs, from PCR 0 on.
    pub pcrs: Vec<Vec<u8>>,
}

/// [`AzureSnp`] read from the evidence folder; `None` as [`dir`] says.
pub fn azure_snp() -> Option<AzureSnp> {
    let path = dir("azure")?.join("snp-vtpm-evidence.json");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("evidence readable"))
            .expect("evidence is JSON");
    Some(AzureSnp {
        report: json_bytes(&j["report"]),
        vcek: j["vcek"].as_str().expect("vcek PEM").as_bytes().to_vec(),
        message: json_bytes(&j["quote"]["message"]),
        signature: json_bytes(&j["quote"]["signature"]),
        pcrs: j["quote"]["pcrs"]
            .as_array()
            .expect("pcrs")
            .iter()
            .map(json_bytes)
            .collect(),
    })
}

/// A JSON list of byte values (how the recordings store binary parts) as bytes.
pub fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    v.as_array()
        .expect("a list of byte values")
        .iter()
        .map(|b| u8::try_from(b.as_u64().expect("a number")).expect("a byte"))
        .collect()
}
