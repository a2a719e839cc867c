//! Verification against a [`Policy`] shared by replicas, instead of one VM's snapshot
//! (ARCHITECTURE.md, "Policy"). The policy plus the VM's enrolled [`Identity`] is a
//! snapshot ([`Policy::snapshot_for`]) and [`super::verify`] runs on it unchanged, so
//! every check means what it means with a snapshot; one check, `enrolment`, is added:
//! the identity seen now is the enrolled one, or (first contact) is recorded now, trust
//! on first use. Pure and offline like [`super::verify`].

use super::{
    names, self_bound, verify, verify_incremental, Expectations, ImaStart, TeeOptions, VerifiedTee,
};
use crate::check::{Check, Verdict};
use crate::evidence::Evidence;
use crate::policy::{Identity, Policy};
use crate::snapshot::Snapshot;

/// The outcome of [`verify_against_policy`].
#[derive(Debug)]
pub struct PolicyVerification {
    /// Every check of [`names::ALL`] against the VM's snapshot, then `enrolment`.
    pub checks: Vec<Check>,
    /// The identity the evidence proves, when its TEE report and quote verified and
    /// bind the evidence's own nonce, manifest and key.
    pub observed: Option<Identity>,
    /// The snapshot the checks compared with (the policy plus the reference identity),
    /// for the `application` checks the caller adds.
    pub snapshot: Option<Snapshot>,
    /// The observed identity when it differs from the enrolled one (or none is
    /// enrolled) and the evidence passes every check with it as the reference: what a
    /// first contact enrols, and what an operator may accept after a reboot.
    pub acceptable: Option<Identity>,
    /// Where the replay of the VM's IMA log stands after this evidence (see
    /// [`verify_incremental`]).
    pub ima_progress: Option<ImaStart>,
}

/// The identity verified evidence proves: the TPM key and counters of its verified
/// quote, the simulated TEE's key, the SEV-SNP chip id.
pub fn observed_identity(
    evidence: &Evidence,
    tee: &TeeOptions<'_>,
    allow_simulated_tee: bool,
) -> Option<Identity> {
    let (verified, tpm) = self_bound(evidence, tee, allow_simulated_tee).ok()?;
    let mut id = Identity {
        tpm,
        ..Identity::default()
    };
    match verified {
        Some(VerifiedTee::Simulated {
            public_key_sha256, ..
        }) => id.tee_key_sha256 = Some(public_key_sha256),
        Some(VerifiedTee::Snp(v)) => id.chip_id = Some(hex::encode(v.chip_id)),
        Some(VerifiedTee::AzureSnp(v)) => id.chip_id = Some(hex::encode(v.snp.chip_id)),
        Some(VerifiedTee::Tdx(_) | VerifiedTee::AzureTdx(_)) | None => {}
    }
    Some(id)
}

/// Verifies `evidence` against `policy` and the VM's `enrolled` identity (`None` at
/// first contact: the identity the evidence proves is then the reference, and the
/// `enrolment` check says it is trusted on first use). `expect.snapshot` is ignored.
pub fn verify_against_policy(
    evidence: &Evidence,
    expect: &Expectations<'_>,
    policy: &Policy,
    enrolled: Option<&Identity>,
) -> PolicyVerification {
    let tee = TeeOptions {
        snp_certs: expect.snp_certs.as_ref(),
        tdx_collateral: expect.tdx_collateral.as_deref(),
        allowed_tdx_tcb_statuses: &expect.allowed_tdx_tcb_statuses,
        at: expect.at,
    };
    let observed = observed_identity(evidence, &tee, expect.allow_simulated_tee);
    let reference = enrolled.or(observed.as_ref()).cloned().unwrap_or_default();
    let own = evidence.manifest.get(&evidence.domain);
    let snapshot = policy.snapshot_for(&reference, own);
    let (mut checks, ima_progress) = match &snapshot {
        Ok(s) => {
            let mut e = expect.clone();
            e.snapshot = Some(s);
            verify_incremental(evidence, &e)
        }
        Err(err) => {
            let mut checks = verify(evidence, expect);
            checks.push(Check::fail("policy", err.to_string()));
            (checks, None)
        }
    };
    checks.push(check_enrolment(enrolled, observed.as_ref()));
    let acceptable = match (enrolled, &observed) {
        (None, Some(now)) if Verdict::of(&checks) == Verdict::Pass => Some(now.clone()),
        // Would the evidence pass on its own identity? Then that identity is what
        // `fleet accept` may record; the first run's checks still fail.
        (Some(was), Some(now)) if was != now => {
            let alone = verify_against_policy(evidence, expect, policy, None);
            alone.acceptable
        }
        _ => None,
    };
    PolicyVerification {
        checks,
        observed,
        snapshot: snapshot.ok(),
        acceptable,
        ima_progress,
    }
}

fn check_enrolment(enrolled: Option<&Identity>, observed: Option<&Identity>) -> Check {
    match (enrolled, observed) {
        (_, None) => Check::fail(
            names::ENROLMENT,
            "the evidence did not verify (see tee, binding, tpm quote), so it proves no identity",
        ),
        (None, Some(now)) => Check::pass(
            names::ENROLMENT,
            format!(
                "not enrolled: {} trusted on first use (a fleet run records it if every check passes)",
                now.describe()
            ),
        ),
        (Some(was), Some(now)) => {
            let diffs = was.differences(now);
            if diffs.is_empty() {
                Check::pass(
                    names::ENROLMENT,
                    format!("identity as enrolled: {}", now.describe()),
                )
            } else {
                Check::fail(
                    names::ENROLMENT,
                    format!(
                        "{}: review it, then `verigate fleet accept` the VM",
                        diffs.join("; ")
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{ak_digest, report_data, Manifest, ManifestEntry, Nonce};
    use crate::check::failed_names as failed;
    use crate::evidence::{Base64, TeeEvidence};
    use crate::tee::simulated::SimulatedTee;
    use std::time::SystemTime;

    /// Evidence of a replica with its own simulated-TEE key and own endpoint
    /// certificate, serving `a.example.com` with the shared certificate.
    fn replica(tee: &SimulatedTee, own_cert: u8, nonce: Nonce) -> Evidence {
        let manifest = Manifest::new(vec![
            ManifestEntry {
                name: "vm.example.com".into(),
                cert_sha256: [own_cert; 32],
                spki_sha256: [own_cert ^ 0x55; 32],
            },
            ManifestEntry {
                name: "a.example.com".into(),
                cert_sha256: [0xa0; 32],
                spki_sha256: [0xf5; 32],
            },
        ])
        .unwrap();
        let rd = report_data(&nonce, &manifest.digest(), &ak_digest(None));
        Evidence {
            version: 1,
            nonce,
            batch: None,
            domain: "vm.example.com".into(),
            manifest,
            tee: TeeEvidence::Simulated {
                report: Base64(tee.report([0x5a; 48], rd)),
                public_key: Base64(tee.public_key_der()),
            },
            tpm: None,
            ima_log: None,
            ima_log_from: None,
        }
    }

    fn expect(nonce: Nonce, own_cert: u8) -> Expectations<'static> {
        let mut e = Expectations::new(nonce, SystemTime::now());
        e.allow_simulated_tee = true;
        e.endpoint_cert_sha256 = Some([own_cert; 32]);
        e
    }

    /// The policy of the image, from a snapshot of the replica with `tee`.
    fn policy_of(tee: &SimulatedTee) -> Policy {
        use crate::snapshot::TeePolicy;
        use crate::tee::simulated;
        let e = replica(tee, 0xd1, Nonce::random());
        let TeeEvidence::Simulated { report, public_key } = &e.tee else {
            unreachable!("a simulated replica")
        };
        let fields = simulated::verify(&report.0, &public_key.0).unwrap();
        let snapshot = Snapshot {
            version: crate::snapshot::SNAPSHOT_VERSION,
            created_at: "2026-12-04T00:00:00Z".into(),
            tee_policy: TeePolicy::from_simulated(
                &fields,
                simulated::public_key_sha256(&public_key.0),
            ),
            tpm_policy: None,
            ima: None,
            manifest: e.manifest.clone(),
            filehashes: vec![],
        };
        Policy::from_snapshot(&snapshot, "vm.example.com").unwrap()
    }

    #[test]
    fn replicas_pass_one_policy_and_are_enrolled_once() {
        let first = SimulatedTee::ephemeral();
        let policy = policy_of(&first);
        // Another replica: its own TEE key and own endpoint certificate.
        let second = SimulatedTee::ephemeral();
        let nonce = Nonce::random();
        let e = replica(&second, 0xd2, nonce);
        let v = verify_against_policy(&e, &expect(nonce, 0xd2), &policy, None);
        assert_eq!(failed(&v.checks), Vec::<&str>::new(), "{:?}", v.checks);
        let last = v.checks.last().unwrap();
        assert!(last.detail.contains("trusted on first use"), "{last:?}");
        let enrolled = v.acceptable.clone().unwrap();

        // Later: the same identity passes; another key (a new VM under the name) fails.
        let nonce = Nonce::random();
        let e = replica(&second, 0xd2, nonce);
        let v = verify_against_policy(&e, &expect(nonce, 0xd2), &policy, Some(&enrolled));
        assert_eq!(failed(&v.checks), Vec::<&str>::new(), "{:?}", v.checks);
        assert!(v.acceptable.is_none());
        let nonce = Nonce::random();
        let e = replica(&first, 0xd2, nonce);
        let v = verify_against_policy(&e, &expect(nonce, 0xd2), &policy, Some(&enrolled));
        assert_eq!(failed(&v.checks), ["tee measurement", "enrolment"]);
        // It would pass as itself: that identity may be accepted.
        assert_eq!(v.acceptable, v.observed);
        assert!(v.acceptable.is_some());
    }

    #[test]
    fn a_replica_off_policy_fails_and_is_not_enrolled() {
        let tee = SimulatedTee::ephemeral();
        let mut policy = policy_of(&tee);
        policy.tee_policy["measurement"] = "5b".repeat(48).into();
        let nonce = Nonce::random();
        let e = replica(&tee, 0xd2, nonce);
        let v = verify_against_policy(&e, &expect(nonce, 0xd2), &policy, None);
        assert_eq!(failed(&v.checks), ["tee measurement"]);
        assert!(v.acceptable.is_none());

        // A shared name with another key than the policy's fails `manifest` (another
        // certificate for the same key is a renewal, and passes).
        let policy = policy_of(&tee);
        let nonce = Nonce::random();
        let mut e = replica(&tee, 0xd2, nonce);
        let mut entries = e.manifest.entries().to_vec();
        entries[0].cert_sha256 = [0xbb; 32];
        entries[0].spki_sha256 = [0xbc; 32];
        e.manifest = Manifest::new(entries).unwrap();
        let v = verify_against_policy(&e, &expect(nonce, 0xd2), &policy, None);
        assert!(failed(&v.checks).contains(&"manifest"), "{:?}", v.checks);
        assert!(v.acceptable.is_none());
    }
}
