//! The checks a VM's snapshot must pass before the CLI writes it: the snapshot's
//! policies must be what the VM's *verified* evidence proves (fetched with a fresh nonce
//! on the same connection, same certificate), not merely what the gateway claims. Pure
//! and offline like [`super::verify`]: the CLI fetches, this decides.

use super::{names, short, snapshot_policy, TeeOptions};
use crate::binding::{Manifest, Nonce};
use crate::check::Check;
use crate::evidence::Evidence;
use crate::snapshot::Snapshot;

/// The checks a snapshot must pass before it is written: fresh evidence, reached
/// without a TLS-terminating proxy, whose verified policy and manifest equal the
/// snapshot's.
pub fn check_snapshot_against_evidence(
    snapshot: &Snapshot,
    evidence: &Evidence,
    nonce: &Nonce,
    endpoint_sha: [u8; 32],
    url_host: Option<&str>,
    tee: &TeeOptions<'_>,
    allow_simulated_tee: bool,
) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(if &evidence.nonce == nonce {
        Check::pass(names::NONCE, "the evidence answers this call's nonce")
    } else {
        Check::fail(
            names::NONCE,
            format!(
                "sent {}, the evidence answers {}",
                short(&nonce.0),
                short(&evidence.nonce.0)
            ),
        )
    });
    checks.push(super::check_endpoint(
        evidence,
        Some(&endpoint_sha),
        url_host,
    ));
    checks.push(match snapshot_policy(evidence, tee, allow_simulated_tee) {
        Ok((tee_policy, tpm_policy)) => {
            let mut diffs = snapshot.tee_policy.differences(&tee_policy);
            if snapshot.tpm_policy != tpm_policy {
                diffs.push(format!(
                    "tpm_policy: the snapshot says {}, the evidence proves {}",
                    serde_json::to_string(&snapshot.tpm_policy).unwrap_or_default(),
                    serde_json::to_string(&tpm_policy).unwrap_or_default()
                ));
            }
            if diffs.is_empty() {
                let cause = match &evidence.tee {
                    crate::evidence::TeeEvidence::NotFound { cause } => format!(" ({cause})"),
                    _ => String::new(),
                };
                Check::pass(
                    names::SNAPSHOT_POLICY,
                    format!(
                        "{} TEE policy{cause}{} as the verified evidence proves",
                        tee_policy.kind(),
                        if tpm_policy.is_some() {
                            " and TPM policy"
                        } else {
                            ", no TPM,"
                        }
                    ),
                )
            } else {
                Check::fail(names::SNAPSHOT_POLICY, diffs.join("; "))
            }
        }
        Err(e) => Check::fail(names::SNAPSHOT_POLICY, e.to_string()),
    });
    checks.push(match (&snapshot.ima, &evidence.ima_log) {
        (Some(ima), Some(_)) => Check::pass(
            names::SNAPSHOT_IMA,
            format!(
                "IMA log quoted in PCR {}, {} file digests",
                ima.pcr, ima.hash_algorithm
            ),
        ),
        (None, None) => Check::pass(names::SNAPSHOT_IMA, "no IMA log, as in the evidence"),
        // A snapshot that every verification of this same VM would fail is refused now,
        // not discovered at the first verify.
        (Some(ima), None) => Check::fail(
            names::SNAPSHOT_IMA,
            format!(
                "the snapshot pins an IMA log (PCR {}), but the VM's evidence carries none, \
                 so every verify would fail ima replay: check [attestation] ima_log",
                ima.pcr
            ),
        ),
        (None, Some(_)) => Check::fail(
            names::SNAPSHOT_IMA,
            "the VM's evidence carries an IMA log, but the snapshot does not pin IMA",
        ),
    });
    checks.push(if snapshot.manifest == evidence.manifest {
        Check::pass(
            names::SNAPSHOT_MANIFEST,
            format!(
                "{} certificates, as the evidence binds",
                snapshot.manifest.entries().len()
            ),
        )
    } else {
        let names = |m: &Manifest| {
            m.entries()
                .iter()
                .map(|e| format!("{}={}", e.name, short(&e.cert_sha256)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Check::fail(
            names::SNAPSHOT_MANIFEST,
            format!(
                "the snapshot lists [{}], the evidence binds [{}]: a certificate changed \
                 during the snapshot; run it again",
                names(&snapshot.manifest),
                names(&evidence.manifest)
            ),
        )
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::failed_names as failed;
    use std::time::SystemTime;

    /// Evidence of a VM with the simulated TEE and no TPM, bound as verigated binds it,
    /// and the snapshot that matches it.
    fn vm_evidence(nonce: Nonce) -> (Evidence, Snapshot) {
        use crate::binding::{ak_digest, report_data, Manifest, ManifestEntry};
        use crate::evidence::{Base64, TeeEvidence};
        use crate::snapshot::TeePolicy;
        use crate::tee::simulated::{self, SimulatedTee};
        let tee = SimulatedTee::ephemeral();
        let manifest = Manifest::new(vec![
            ManifestEntry {
                name: "vm.example.com".into(),
                cert_sha256: [0xd0; 32],
                spki_sha256: [0xd1; 32],
            },
            ManifestEntry {
                name: "app.example.com".into(),
                cert_sha256: [0xa0; 32],
                spki_sha256: [0xa1; 32],
            },
        ])
        .unwrap();
        let rd = report_data(&nonce, &manifest.digest(), &ak_digest(None));
        let report = tee.report([0x5a; 48], rd);
        let evidence = Evidence {
            version: 1,
            nonce,
            batch: None,
            domain: "vm.example.com".into(),
            manifest: manifest.clone(),
            tee: TeeEvidence::Simulated {
                report: Base64(report.clone()),
                public_key: Base64(tee.public_key_der()),
            },
            tpm: None,
            ima_log: None,
            ima_log_from: None,
        };
        let fields = simulated::verify(&report, &tee.public_key_der()).unwrap();
        let snapshot = Snapshot {
            version: crate::snapshot::SNAPSHOT_VERSION,
            created_at: "2026-11-28T00:00:00Z".into(),
            tee_policy: TeePolicy::from_simulated(
                &fields,
                simulated::public_key_sha256(&tee.public_key_der()),
            ),
            tpm_policy: None,
            ima: None,
            manifest,
            filehashes: vec![],
        };
        (evidence, snapshot)
    }

    fn run_checks(s: &Snapshot, e: &Evidence, nonce: &Nonce, cert: [u8; 32]) -> Vec<Check> {
        let tee = TeeOptions {
            snp_certs: None,
            tdx_collateral: None,
            allowed_tdx_tcb_statuses: &[],
            at: SystemTime::now(),
        };
        check_snapshot_against_evidence(s, e, nonce, cert, None, &tee, true)
    }

    #[test]
    fn a_snapshot_that_matches_verified_evidence_passes() {
        let nonce = Nonce::random();
        let (e, s) = vm_evidence(nonce);
        let checks = run_checks(&s, &e, &nonce, [0xd0; 32]);
        assert_eq!(failed(&checks), Vec::<&str>::new(), "{checks:?}");
        let order: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(order, names::SNAPSHOT_ALL);
        // Without the option, the simulated TEE is refused.
        let tee = TeeOptions {
            snp_certs: None,
            tdx_collateral: None,
            allowed_tdx_tcb_statuses: &[],
            at: SystemTime::now(),
        };
        let checks = check_snapshot_against_evidence(&s, &e, &nonce, [0xd0; 32], None, &tee, false);
        assert_eq!(failed(&checks), ["snapshot policy"]);
    }

    #[test]
    fn a_snapshot_that_disagrees_with_the_evidence_is_refused() {
        let nonce = Nonce::random();
        let (e, s) = vm_evidence(nonce);

        // The gateway claims another measurement than its TEE reports.
        let mut claimed = s.clone();
        if let crate::snapshot::TeePolicy::Simulated { measurement, .. } = &mut claimed.tee_policy {
            measurement[0] ^= 1;
        }
        let checks = run_checks(&claimed, &e, &nonce, [0xd0; 32]);
        assert_eq!(failed(&checks), ["snapshot policy"]);
        assert!(
            checks[2].detail.contains("measurement"),
            "{}",
            checks[2].detail
        );

        // ... or a TPM policy the evidence does not prove.
        let mut claimed = s.clone();
        claimed.tpm_policy = Some(crate::snapshot::TpmPolicy {
            reset_count: 1,
            restart_count: 0,
            ak_sha256: [1; 32],
        });
        assert_eq!(
            failed(&run_checks(&claimed, &e, &nonce, [0xd0; 32])),
            ["snapshot policy"]
        );

        // ... or an IMA log the evidence does not carry.
        let mut claimed = s.clone();
        claimed.ima = Some(crate::snapshot::ImaPolicy {
            pcr: 10,
            hash_algorithm: crate::ima::HashAlg::Sha256,
        });
        assert_eq!(
            failed(&run_checks(&claimed, &e, &nonce, [0xd0; 32])),
            ["snapshot ima"]
        );
        let mut with_log = e.clone();
        with_log.ima_log = Some(crate::evidence::Base64(vec![]));
        assert_eq!(
            failed(&run_checks(&s, &with_log, &nonce, [0xd0; 32])),
            ["snapshot ima"]
        );

        // ... or another manifest.
        let mut claimed = s.clone();
        claimed.manifest = crate::binding::Manifest::default();
        assert_eq!(
            failed(&run_checks(&claimed, &e, &nonce, [0xd0; 32])),
            ["snapshot manifest"]
        );

        // Stale evidence, a proxy in between, evidence that does not bind itself.
        assert_eq!(
            failed(&run_checks(&s, &e, &Nonce::random(), [0xd0; 32])),
            ["nonce"]
        );
        assert_eq!(
            failed(&run_checks(&s, &e, &nonce, [0xee; 32])),
            ["endpoint certificate"]
        );
        let mut unbound = e.clone();
        unbound.nonce = Nonce::random();
        let unbound_nonce = unbound.nonce;
        assert_eq!(
            failed(&run_checks(&s, &unbound, &unbound_nonce, [0xd0; 32])),
            ["snapshot policy"]
        );
    }

    #[test]
    fn the_url_host_must_be_the_domain_or_a_routed_name() {
        let nonce = Nonce::random();
        let (e, s) = vm_evidence(nonce);
        let tee = TeeOptions {
            snp_certs: None,
            tdx_collateral: None,
            allowed_tdx_tcb_statuses: &[],
            at: SystemTime::now(),
        };
        let with_host = |host: &str| {
            check_snapshot_against_evidence(&s, &e, &nonce, [0xd0; 32], Some(host), &tee, true)
        };
        // The own name, a routed name (ALPN `verigate/1`), an address (no SNI is sent).
        for host in [
            "vm.example.com",
            "VM.example.com",
            "app.example.com",
            "127.0.0.1",
        ] {
            assert_eq!(failed(&with_host(host)), Vec::<&str>::new(), "{host}");
        }
        // A name the VM neither is nor routes: its report vouches for no such name.
        let checks = with_host("elsewhere.example.org");
        assert_eq!(failed(&checks), ["endpoint certificate"]);
        assert!(
            checks[1].detail.contains("elsewhere.example.org"),
            "{checks:?}"
        );
    }
}
