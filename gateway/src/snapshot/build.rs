//! The pure parts of building a snapshot: the policy from one piece of verified evidence,
//! the (path, digest) pairs of the IMA log, the log's file-digest algorithm, and the merge
//! of the log's pairs with the scan's. No I/O here, so each rule has a unit test.

use std::collections::BTreeMap;
use std::time::SystemTime;

use attest::binding::{Manifest, Nonce};
use attest::evidence::Evidence;
use attest::ima::{self, binary, HashAlg, ImaEntry, ImaError};
use attest::snapshot::{TeePolicy, TpmPolicy};
use attest::verify::{SnapshotPolicyError, TeeOptions};

/// The PCR that IMA extends (the kernel's `CONFIG_IMA_MEASURE_PCR_IDX` default).
pub const IMA_PCR: u32 = 10;

/// The file-digest algorithm recorded when the VM has no IMA log (or a log with no file
/// entry): the kernel's default `ima_hash` on current distributions.
pub const DEFAULT_IMA_HASH: HashAlg = HashAlg::Sha256;

/// Why the policy part of a snapshot could not be derived from the evidence.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The evidence answers another nonce than the one this job chose.
    #[error("evidence nonce: expected {expected}, got {got}")]
    NonceMismatch {
        /// The nonce this job chose, in hex.
        expected: String,
        /// The nonce the evidence answers, in hex.
        got: String,
    },
    /// The TEE report or the TPM quote did not verify as the verifier would check it.
    #[error("the VM's own evidence does not verify: {0}")]
    NotVerified(#[from] SnapshotPolicyError),
    /// The IMA log in the evidence is not a binary measurement list.
    #[error("IMA log in the evidence: {0}")]
    ImaLog(#[from] ImaError),
}

/// What a snapshot pins besides the files, from one verified piece of evidence.
#[derive(Debug, Clone)]
pub struct Policy {
    /// What the TEE must keep reporting (its kind and launch measurement among others).
    pub tee_policy: TeePolicy,
    /// What the TPM must keep reporting (same boot, same AK); `None` without a TPM.
    pub tpm_policy: Option<TpmPolicy>,
    /// The certificates the VM served when the evidence was made.
    pub manifest: Manifest,
    /// The parsed IMA log (empty when the evidence carries none).
    pub ima_entries: Vec<ImaEntry>,
    /// Whether the evidence carried an IMA log at all.
    pub has_ima_log: bool,
}

/// Checks `evidence` as `verigate verify` would (TEE report chain and signature, the
/// report_data binding of nonce, manifest and AK, the TPM quote under that AK) and
/// returns the policy it proves. The simulated TEE is accepted here: whether to trust it
/// is the verifier's decision, and the snapshot records its kind and key.
pub fn policy_from_evidence(
    evidence: &Evidence,
    nonce: &Nonce,
    at: SystemTime,
) -> Result<Policy, PolicyError> {
    if evidence.nonce != *nonce {
        return Err(PolicyError::NonceMismatch {
            expected: nonce.to_hex(),
            got: evidence.nonce.to_hex(),
        });
    }
    let options = TeeOptions {
        // The report's own chain (SNP) or collateral (TDX) from the evidence; the gateway
        // has nothing of its own to add.
        snp_certs: None,
        tdx_collateral: None,
        allowed_tdx_tcb_statuses: &[],
        at,
    };
    let (tee_policy, tpm_policy) = attest::verify::snapshot_policy(evidence, &options, true)?;
    let ima_entries = match &evidence.ima_log {
        // `binary_runtime_measurements` holds SHA-1 template hashes, whatever the file
        // digests use; the verifier parses the evidence's log the same way.
        Some(log) => binary::parse(&log.0, HashAlg::Sha1)?,
        None => Vec::new(),
    };
    Ok(Policy {
        tee_policy,
        tpm_policy,
        manifest: evidence.manifest.clone(),
        ima_entries,
        has_ima_log: evidence.ima_log.is_some(),
    })
}

/// The entries of `entries` that name a measured file: all but the leading
/// boot_aggregate and violation entries (which carry no file digest). A later entry
/// named `boot_aggregate` is a file like any other, as the verifier judges it.
pub fn measured_entries(entries: &[ImaEntry]) -> impl Iterator<Item = &ImaEntry> {
    let skip = usize::from(ima::boot_aggregate(entries).is_some());
    entries.iter().skip(skip).filter(|e| !e.is_violation())
}

/// The IMA log's file-digest algorithm: the one most of its measured entries use (a
/// kernel logs with one `ima_hash`; a log that mixes is judged by its majority, larger
/// digest first on a tie), [`DEFAULT_IMA_HASH`] when it measured no file.
pub fn log_algorithm(entries: &[ImaEntry]) -> HashAlg {
    let mut counts: BTreeMap<HashAlg, usize> = BTreeMap::new();
    for e in measured_entries(entries) {
        *counts.entry(e.file_digest_alg()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(alg, n)| (*n, *alg))
        .map_or(DEFAULT_IMA_HASH, |(alg, _)| alg)
}

/// Every (path, lowercase hex digest) of the IMA log's measured entries, with the path
/// as the verifier reads it from the log.
pub fn log_files(entries: &[ImaEntry]) -> Vec<(String, String)> {
    measured_entries(entries)
        .map(|e| (e.path().into_owned(), hex::encode(e.file_digest())))
        .collect()
}

/// The snapshot's `filehashes`: the log's pairs and the scan's, sorted by path then
/// digest, each pair once. A path keeps two digests when the log and the disk disagree
/// (the log is what ran, the disk what would run next): both are real states of the VM.
pub fn merge_files(
    log: Vec<(String, String)>,
    scan: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut all = log;
    all.extend(scan);
    all.sort();
    all.dedup();
    all
}

/// Simulated evidence as the gateway produces it: the real simulated TEE signs a
/// report whose report_data binds `nonce` and the manifest (no TPM). For tests.
#[cfg(test)]
pub(crate) fn test_evidence(
    nonce: Nonce,
    ima_log: Option<Vec<u8>>,
) -> (Evidence, attest::tee::simulated::SimulatedTee) {
    use attest::binding::{ak_digest, report_data, ManifestEntry};
    use attest::evidence::{Base64, TeeEvidence, EVIDENCE_VERSION};
    use attest::tee::simulated::SimulatedTee;
    let tee = SimulatedTee::ephemeral();
    let manifest = Manifest::new(vec![ManifestEntry {
        name: "vm.example.com".into(),
        cert_sha256: [7; 32],
        spki_sha256: [6; 32],
    }])
    .expect("manifest");
    let rd = report_data(&nonce, &manifest.digest(), &ak_digest(None));
    let report = tee.report([3; 48], rd);
    let evidence = Evidence {
        version: EVIDENCE_VERSION,
        nonce,
        batch: None,
        domain: "vm.example.com".into(),
        manifest,
        tee: TeeEvidence::Simulated {
            report: Base64(report),
            public_key: Base64(tee.public_key_der()),
        },
        tpm: None,
        ima_log: ima_log.map(Base64),
        ima_log_from: None,
    };
    (evidence, tee)
}

#[cfg(test)]
mod tests {
    use super::*;
    use attest::binding::ManifestEntry;
    use attest::tee::simulated;

    fn digest(alg: HashAlg, byte: u8) -> Vec<u8> {
        vec![byte; alg.size()]
    }

    fn entry(path: &str, alg: HashAlg, byte: u8) -> ImaEntry {
        ImaEntry::ima_ng(path, alg, &digest(alg, byte)).expect("entry")
    }

    fn boot_aggregate() -> ImaEntry {
        entry("boot_aggregate", HashAlg::Sha256, 0)
    }

    #[test]
    fn log_files_skip_the_boot_aggregate_and_violations_only() {
        let entries = vec![
            boot_aggregate(),
            entry("/usr/bin/a", HashAlg::Sha256, 1),
            ImaEntry::violation("/usr/bin/v", HashAlg::Sha256).expect("violation"),
            // Not first: a file logged under that name, judged like any other.
            entry("boot_aggregate", HashAlg::Sha256, 2),
        ];
        assert_eq!(
            log_files(&entries),
            vec![
                ("/usr/bin/a".to_string(), "01".repeat(32)),
                ("boot_aggregate".to_string(), "02".repeat(32)),
            ]
        );
    }

    #[test]
    fn algorithm_is_the_majority_of_measured_entries() {
        assert_eq!(log_algorithm(&[]), DEFAULT_IMA_HASH);
        assert_eq!(log_algorithm(&[boot_aggregate()]), DEFAULT_IMA_HASH);
        let sha1 = vec![
            entry("boot_aggregate", HashAlg::Sha256, 0),
            entry("/a", HashAlg::Sha1, 1),
            entry("/b", HashAlg::Sha1, 2),
            entry("/c", HashAlg::Sha512, 3),
        ];
        assert_eq!(log_algorithm(&sha1), HashAlg::Sha1);
        let tie = vec![
            entry("/a", HashAlg::Sha1, 1),
            entry("/c", HashAlg::Sha384, 3),
        ];
        assert_eq!(log_algorithm(&tie), HashAlg::Sha384);
    }

    #[test]
    fn merge_sorts_dedups_and_keeps_disagreeing_digests() {
        let log = vec![
            ("/usr/bin/b".to_string(), "bb".to_string()),
            ("/usr/bin/a".to_string(), "a1".to_string()),
        ];
        let scan = vec![
            ("/usr/bin/a".to_string(), "a2".to_string()),
            ("/usr/bin/b".to_string(), "bb".to_string()),
            ("/usr/bin/c".to_string(), "cc".to_string()),
        ];
        assert_eq!(
            merge_files(log, scan),
            vec![
                ("/usr/bin/a".to_string(), "a1".to_string()),
                ("/usr/bin/a".to_string(), "a2".to_string()),
                ("/usr/bin/b".to_string(), "bb".to_string()),
                ("/usr/bin/c".to_string(), "cc".to_string()),
            ]
        );
    }

    use super::test_evidence as simulated_evidence;

    #[test]
    fn policy_from_verified_simulated_evidence() {
        let nonce = Nonce::random();
        let log = binary::serialize(&[boot_aggregate(), entry("/x", HashAlg::Sha384, 9)]);
        let (evidence, tee) = simulated_evidence(nonce, Some(log));
        let p = policy_from_evidence(&evidence, &nonce, SystemTime::now()).expect("policy");
        match p.tee_policy {
            TeePolicy::Simulated {
                measurement,
                public_key_sha256,
                ..
            } => {
                assert_eq!(measurement, vec![3; 48]);
                assert_eq!(
                    public_key_sha256,
                    simulated::public_key_sha256(&tee.public_key_der())
                );
            }
            other => panic!("expected a simulated policy, got {other:?}"),
        }
        assert!(p.tpm_policy.is_none());
        assert!(p.has_ima_log);
        assert_eq!(log_algorithm(&p.ima_entries), HashAlg::Sha384);
        assert_eq!(p.manifest, evidence.manifest);
    }

    #[test]
    fn evidence_for_another_nonce_is_refused() {
        let (evidence, _) = simulated_evidence(Nonce::random(), None);
        let mine = Nonce::random();
        let e = policy_from_evidence(&evidence, &mine, SystemTime::now()).unwrap_err();
        assert!(
            matches!(&e, PolicyError::NonceMismatch { expected, .. } if *expected == mine.to_hex()),
            "{e}"
        );
    }

    #[test]
    fn evidence_whose_binding_fails_is_refused() {
        let nonce = Nonce::random();
        let (mut evidence, _) = simulated_evidence(nonce, None);
        // A manifest other than the one the report binds: report_data no longer matches.
        evidence.manifest = Manifest::new(vec![ManifestEntry {
            name: "vm.example.com".into(),
            cert_sha256: [8; 32],
            spki_sha256: [6; 32],
        }])
        .expect("manifest");
        let e = policy_from_evidence(&evidence, &nonce, SystemTime::now()).unwrap_err();
        assert!(
            matches!(
                &e,
                PolicyError::NotVerified(SnapshotPolicyError::Binding { .. })
            ),
            "{e}"
        );
        assert!(e.to_string().contains("report_data"), "{e}");
    }

    #[test]
    fn a_truncated_ima_log_is_an_error_naming_the_entry() {
        let nonce = Nonce::random();
        let mut log = binary::serialize(&[boot_aggregate(), entry("/x", HashAlg::Sha256, 9)]);
        log.truncate(log.len() - 3);
        let (evidence, _) = simulated_evidence(nonce, Some(log));
        let e = policy_from_evidence(&evidence, &nonce, SystemTime::now()).unwrap_err();
        assert!(matches!(e, PolicyError::ImaLog(_)), "{e}");
        assert!(e.to_string().contains("entry 1"), "{e}");
    }
}
