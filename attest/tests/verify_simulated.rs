//! `attest::verify` on evidence built in-process with the simulated TEE, as verigated
//! builds it on a machine without TPM or IMA: untouched evidence passes every check,
//! and each tampering fails the check that names it (and only the checks that depend
//! on it). Real SEV-SNP and TDX evidence from `../shared/evidence/` goes through the
//! same entry point at the end: its report verifies, but it was not made for our call.

use attest::batch::Tree;
use attest::binding::{
    ak_digest, report_data, report_data_v2, CertDigests, Manifest, ManifestEntry, Nonce,
};
use attest::check::failed_names as failed;
use attest::check::{Check, Verdict};
use attest::evidence::{
    Base64, Evidence, TeeEvidence, TpmEvidence, EVIDENCE_VERSION, EVIDENCE_VERSION_BATCHED,
};
use attest::ima::HashAlg;
use attest::snapshot::{ImaPolicy, Snapshot, TeePolicy, TpmPolicy, SNAPSHOT_VERSION};
use attest::tee::simulated::SimulatedTee;
use attest::tee::snp::SnpCerts;
use attest::verify::{
    check_application, names, snapshot_policy, verify, Expectations, SnapshotPolicyError,
    TeeOptions,
};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const DOMAIN: &str = "vm.example.com";
const ENDPOINT_CERT: [u8; 32] = [0xd0; 32];

fn manifest(app_a: u8) -> Manifest {
    Manifest::new(vec![
        ManifestEntry {
            name: DOMAIN.into(),
            cert_sha256: ENDPOINT_CERT,
            spki_sha256: [0xd1; 32],
        },
        ManifestEntry {
            name: "a.example.com".into(),
            cert_sha256: [app_a; 32],
            // Another certificate for `a` is another key here; renewals are tested with
            // `renewed_manifest`.
            spki_sha256: [app_a ^ 0x0f; 32],
        },
        ManifestEntry {
            name: "*.apps.example.com".into(),
            cert_sha256: [0xc0; 32],
            spki_sha256: [0xc1; 32],
        },
    ])
    .unwrap()
}

/// A VM without TPM or IMA: a simulated TEE key, a measurement, its certificates.
struct Vm {
    tee: SimulatedTee,
    measurement: [u8; 48],
    manifest: Manifest,
}

impl Vm {
    fn new() -> Vm {
        Vm {
            tee: SimulatedTee::ephemeral(),
            measurement: [0x4d; 48],
            manifest: manifest(0xa0),
        }
    }

    fn evidence(&self, nonce: Nonce) -> Evidence {
        let rd = report_data(&nonce, &self.manifest.digest(), &ak_digest(None));
        Evidence {
            version: EVIDENCE_VERSION,
            nonce,
            batch: None,
            domain: DOMAIN.into(),
            manifest: self.manifest.clone(),
            tee: TeeEvidence::Simulated {
                report: Base64(self.tee.report(self.measurement, rd)),
                public_key: Base64(self.tee.public_key_der()),
            },
            tpm: None,
            ima_log: None,
            ima_log_from: None,
        }
    }

    /// The evidence of one batched round (version 2): one TEE report over the root of
    /// `nonces`, each caller's evidence carrying its own inclusion proof.
    fn round(&self, nonces: &[Nonce]) -> Vec<Evidence> {
        let tree = Tree::new(nonces).unwrap();
        let rd = report_data_v2(&tree.root(), &self.manifest.digest(), &ak_digest(None));
        let report = self.tee.report(self.measurement, rd);
        (0..tree.size())
            .zip(nonces)
            .map(|(i, nonce)| Evidence {
                version: EVIDENCE_VERSION_BATCHED,
                nonce: *nonce,
                batch: tree.proof(i),
                domain: DOMAIN.into(),
                manifest: self.manifest.clone(),
                tee: TeeEvidence::Simulated {
                    report: Base64(report.clone()),
                    public_key: Base64(self.tee.public_key_der()),
                },
                tpm: None,
                ima_log: None,
                ima_log_from: None,
            })
            .collect()
    }

    /// A snapshot taken now, its policy from the VM's own verified evidence.
    fn snapshot(&self) -> Snapshot {
        let (tee_policy, tpm_policy) =
            snapshot_policy(&self.evidence(Nonce::random()), &tee_options(), true)
                .expect("the VM's own evidence gives a policy");
        Snapshot {
            version: SNAPSHOT_VERSION,
            created_at: "2026-11-28T00:00:00Z".into(),
            tee_policy,
            tpm_policy,
            ima: None,
            manifest: self.manifest.clone(),
            filehashes: Vec::new(),
        }
    }
}

fn tee_options() -> TeeOptions<'static> {
    TeeOptions {
        snp_certs: None,
        tdx_collateral: None,
        allowed_tdx_tcb_statuses: &[],
        at: SystemTime::now(),
    }
}

fn expect(nonce: Nonce, snapshot: Option<&Snapshot>) -> Expectations<'_> {
    let mut e = Expectations::new(nonce, SystemTime::now());
    e.snapshot = snapshot;
    e.endpoint_cert_sha256 = Some(ENDPOINT_CERT);
    e.allow_simulated_tee = true;
    e
}

fn detail<'c>(checks: &'c [Check], name: &str) -> &'c str {
    &checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
        .detail
}

/// Exactly `expected` failed; every check is there, in order.
fn assert_failed(checks: &[Check], expected: &[&str]) {
    for c in checks {
        eprintln!("{:?} {}: {}", c.outcome, c.name, c.detail);
    }
    let got: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(got, names::ALL);
    assert_eq!(failed(checks), expected);
    let verdict = if expected.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    assert_eq!(Verdict::of(checks), verdict);
}

#[test]
fn untouched_evidence_passes_every_check() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    assert_eq!(snap.tee_policy.kind(), "simulated");
    assert!(snap.tpm_policy.is_none());
    let nonce = Nonce::random();
    let e = vm.evidence(nonce);
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[]);
    assert!(detail(&checks, names::TEE).contains("proves nothing about hardware"));
    assert!(detail(&checks, names::TPM_QUOTE).contains("no TPM"));
    // Through JSON and the snapshot file format, nothing changes.
    let e2 = Evidence::from_json(&e.to_json()).unwrap();
    let snap2 = Snapshot::from_json(&snap.to_json()).unwrap();
    assert_failed(&verify(&e2, &expect(nonce, Some(&snap2))), &[]);
}

#[test]
fn another_nonce_fails_the_nonce_check() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let old = Nonce::random();
    let sent = Nonce::random();
    // A whole answer to an earlier call, replayed.
    let checks = verify(&vm.evidence(old), &expect(sent, Some(&snap)));
    assert_failed(&checks, &[names::NONCE, names::BINDING]);
    assert!(detail(&checks, names::NONCE).contains(&sent.to_hex()[..16]));
    // The nonce field edited to the one sent: the report still binds the old one.
    let mut e = vm.evidence(old);
    e.nonce = sent;
    assert_failed(&verify(&e, &expect(sent, Some(&snap))), &[names::BINDING]);
    // Only the field edited, the report is fresh.
    let mut e = vm.evidence(sent);
    e.nonce = old;
    assert_failed(&verify(&e, &expect(sent, Some(&snap))), &[names::NONCE]);
}

#[test]
fn altered_report_data_fails_the_binding() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    // Signed by the right key, over other report_data.
    e.tee = TeeEvidence::Simulated {
        report: Base64(vm.tee.report(vm.measurement, [7; 64])),
        public_key: Base64(vm.tee.public_key_der()),
    };
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[names::BINDING]);
    assert!(
        detail(&checks, names::BINDING).contains("is 0707070707070707"),
        "{}",
        detail(&checks, names::BINDING)
    );
}

#[test]
fn a_manifest_entry_swapped_in_transit_fails_the_binding() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    // A man in the middle announces its own certificate for a.example.com.
    e.manifest = manifest(0xee);
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[names::BINDING, names::MANIFEST]);
}

#[test]
fn a_key_changed_inside_the_vm_fails_the_manifest_check() {
    let mut vm = Vm::new();
    let snap = vm.snapshot();
    vm.manifest = manifest(0xa1);
    let nonce = Nonce::random();
    let e = vm.evidence(nonce);
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[names::MANIFEST]);
    let d = detail(&checks, names::MANIFEST);
    assert!(
        d.contains("key of `a.example.com` changed")
            && d.contains("snapshot spki sha256 afaf")
            && d.contains("now aeae"),
        "{d}"
    );
    let mut allow = expect(nonce, Some(&snap));
    allow.allow_key_change = true;
    assert_failed(&verify(&e, &allow), &[]);
}

#[test]
fn a_renewal_that_keeps_the_key_passes_the_manifest_check_and_says_so() {
    let mut vm = Vm::new();
    let snap = vm.snapshot();
    let entries = vm
        .manifest
        .entries()
        .iter()
        .map(|e| ManifestEntry {
            cert_sha256: if e.name == "a.example.com" {
                [0xa1; 32]
            } else {
                e.cert_sha256
            },
            ..e.clone()
        })
        .collect();
    vm.manifest = Manifest::new(entries).unwrap();
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[]);
    let d = detail(&checks, names::MANIFEST);
    assert!(
        d.contains("certificate of `a.example.com` was renewed") && d.contains("same key"),
        "{d}"
    );
}

#[test]
fn a_route_added_since_the_snapshot_fails_even_with_key_changes_allowed() {
    let mut vm = Vm::new();
    let snap = vm.snapshot();
    let mut entries = vm.manifest.entries().to_vec();
    entries.push(ManifestEntry {
        name: "new.example.com".into(),
        cert_sha256: [1; 32],
        spki_sha256: [2; 32],
    });
    vm.manifest = Manifest::new(entries).unwrap();
    let nonce = Nonce::random();
    let mut ex = expect(nonce, Some(&snap));
    ex.allow_key_change = true;
    let checks = verify(&vm.evidence(nonce), &ex);
    assert_failed(&checks, &[names::MANIFEST]);
    assert!(detail(&checks, names::MANIFEST).contains("not in the snapshot: `new.example.com`"));
}

#[test]
fn another_simulated_key_fails_the_tee_measurement() {
    let mut vm = Vm::new();
    let snap = vm.snapshot();
    vm.tee = SimulatedTee::ephemeral();
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[names::TEE_MEASUREMENT]);
    assert!(detail(&checks, names::TEE_MEASUREMENT).contains("public_key_sha256: snapshot"));
}

#[test]
fn a_report_signed_by_another_key_than_it_carries_fails_tee() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    if let TeeEvidence::Simulated { public_key, .. } = &mut e.tee {
        *public_key = Base64(SimulatedTee::ephemeral().public_key_der());
    }
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(
        &checks,
        &[names::BINDING, names::TEE, names::TEE_MEASUREMENT],
    );
    assert!(detail(&checks, names::TEE).contains("signature does not verify"));
    assert!(detail(&checks, names::BINDING).contains("did not verify"));
}

#[test]
fn a_measurement_other_than_the_snapshot_fails_the_tee_measurement() {
    let mut vm = Vm::new();
    let snap = vm.snapshot();
    vm.measurement = [0x4e; 48];
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[names::TEE_MEASUREMENT]);
    assert!(detail(&checks, names::TEE_MEASUREMENT).contains("measurement: snapshot 4d4d"));
}

#[test]
fn simulated_evidence_without_the_option_fails_tee() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut ex = expect(nonce, Some(&snap));
    ex.allow_simulated_tee = false;
    let checks = verify(&vm.evidence(nonce), &ex);
    assert_failed(&checks, &[names::TEE]);
    assert!(detail(&checks, names::TEE).contains("proves nothing about hardware"));
    assert!(detail(&checks, names::TEE).contains("--allow-simulated-tee"));
    // A snapshot refuses it likewise.
    assert!(matches!(
        snapshot_policy(&vm.evidence(nonce), &tee_options(), false),
        Err(SnapshotPolicyError::SimulatedNotAllowed)
    ));
}

#[test]
fn garbage_tee_reports_fail_tee_without_panicking() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let good = vm.evidence(nonce);
    let TeeEvidence::Simulated { report, public_key } = &good.tee else {
        unreachable!()
    };
    let cases: Vec<(TeeEvidence, &str)> = vec![
        (
            TeeEvidence::Simulated {
                report: Base64(report.0[..100].to_vec()),
                public_key: public_key.clone(),
            },
            "100 bytes",
        ),
        (
            TeeEvidence::Simulated {
                report: report.clone(),
                public_key: Base64(vec![0x30, 0x00]),
            },
            "public key",
        ),
        (
            TeeEvidence::SevSnp {
                report: Base64(vec![0; 10]),
                cert_chain: None,
            },
            "SEV-SNP",
        ),
        (
            // Without collateral the quote itself is still checked first.
            TeeEvidence::Tdx {
                report: Base64(vec![0; 10]),
                collateral: None,
            },
            "TDX: quote header",
        ),
        (
            TeeEvidence::Tdx {
                report: Base64(vec![0; 10]),
                collateral: Some(Base64(b"{}".to_vec())),
            },
            "TDX",
        ),
    ];
    for (tee, want) in cases {
        let mut e = good.clone();
        e.tee = tee;
        let checks = verify(&e, &expect(nonce, Some(&snap)));
        assert_failed(
            &checks,
            &[names::BINDING, names::TEE, names::TEE_MEASUREMENT],
        );
        assert!(
            detail(&checks, names::TEE).contains(want),
            "{want}: {}",
            detail(&checks, names::TEE)
        );
    }
}

#[test]
fn no_tee_fails_binding_and_tee() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    e.tee = TeeEvidence::None;
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(
        &checks,
        &[names::BINDING, names::TEE, names::TEE_MEASUREMENT],
    );
    assert!(detail(&checks, names::TEE).contains("nothing vouches"));
    // Such a VM snapshots as `none`, which verification still refuses.
    let (tee, tpm) = snapshot_policy(&e, &tee_options(), false).unwrap();
    assert_eq!(tee, TeePolicy::None);
    assert!(tpm.is_none());
}

#[test]
fn without_a_snapshot_every_comparison_fails() {
    let vm = Vm::new();
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, None));
    assert_failed(
        &checks,
        &[
            names::TEE_MEASUREMENT,
            names::TPM_QUOTE,
            names::TPM_REBOOT,
            names::TPM_KEY,
            names::IMA_REPLAY,
            names::IMA_ENTRIES,
            names::MANIFEST,
        ],
    );
    assert!(detail(&checks, names::TEE_MEASUREMENT).contains("no snapshot"));
    assert!(detail(&checks, names::TPM_QUOTE).contains("no snapshot saying"));
}

#[test]
fn a_missing_tpm_fails_when_the_snapshot_has_one() {
    let vm = Vm::new();
    let mut snap = vm.snapshot();
    snap.tpm_policy = Some(TpmPolicy {
        reset_count: 1,
        restart_count: 0,
        ak_sha256: [9; 32],
    });
    snap.ima = Some(ImaPolicy {
        pcr: 10,
        hash_algorithm: HashAlg::Sha256,
    });
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(
        &checks,
        &[
            names::TPM_QUOTE,
            names::TPM_REBOOT,
            names::TPM_KEY,
            names::IMA_REPLAY,
            names::IMA_ENTRIES,
        ],
    );
    assert!(detail(&checks, names::TPM_QUOTE).contains("the snapshot has a TPM"));
    assert!(detail(&checks, names::IMA_REPLAY).contains("the snapshot has IMA"));
}

#[test]
fn a_tpm_that_does_not_verify_fails_the_tpm_and_ima_checks() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    e.tpm = Some(TpmEvidence {
        ak_public: Base64(vec![0, 1, 2]),
        quote: Base64(vec![3; 10]),
        signature: Base64(vec![]),
        pcrs: Default::default(),
    });
    e.ima_log = Some(Base64(vec![1, 2, 3]));
    // Re-sign over what this evidence binds, so the TPM parts are the only fault.
    let rd = report_data(&nonce, &vm.manifest.digest(), &ak_digest(Some(&[0, 1, 2])));
    e.tee = TeeEvidence::Simulated {
        report: Base64(vm.tee.report(vm.measurement, rd)),
        public_key: Base64(vm.tee.public_key_der()),
    };
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(
        &checks,
        &[
            names::TPM_QUOTE,
            names::TPM_REBOOT,
            names::TPM_KEY,
            names::IMA_REPLAY,
            names::IMA_ENTRIES,
        ],
    );
    assert!(detail(&checks, names::TPM_QUOTE).contains("truncated"));
    assert!(detail(&checks, names::TPM_KEY).contains("snapshot has none"));
    assert!(detail(&checks, names::IMA_REPLAY).contains("cannot be anchored"));
}

#[test]
fn a_tls_terminating_proxy_fails_the_endpoint_certificate() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut ex = expect(nonce, Some(&snap));
    ex.endpoint_cert_sha256 = Some([0xee; 32]);
    let checks = verify(&vm.evidence(nonce), &ex);
    assert_failed(&checks, &[names::ENDPOINT_CERTIFICATE]);
    let d = detail(&checks, names::ENDPOINT_CERTIFICATE);
    assert!(
        d.contains("terminates TLS") && d.contains("eeee") && d.contains("d0d0"),
        "{d}"
    );
    // Evidence read from a file: no connection, nothing shows there was no proxy.
    ex.endpoint_cert_sha256 = None;
    let checks = verify(&vm.evidence(nonce), &ex);
    assert_failed(&checks, &[names::ENDPOINT_CERTIFICATE]);
}

#[test]
fn expected_applications_must_be_in_the_manifest() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut ex = expect(nonce, Some(&snap));
    ex.applications = vec!["a.example.com".into(), "x.apps.example.com".into()];
    assert_failed(&verify(&vm.evidence(nonce), &ex), &[]);
    ex.applications.push("b.example.com".into());
    let checks = verify(&vm.evidence(nonce), &ex);
    assert_failed(&checks, &[names::MANIFEST]);
    assert!(detail(&checks, names::MANIFEST).contains("b.example.com"));
}

#[test]
fn application_checks() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let m = &vm.manifest;
    let presented = |cert: u8, key: u8| CertDigests {
        cert_sha256: [cert; 32],
        spki_sha256: [key; 32],
    };
    let pass = |name: &str, d: CertDigests| check_application(name, &d, m, Some(&snap), false);
    let c = pass("a.example.com", presented(0xa0, 0xaf));
    assert!(c.passed(), "{c:?}");
    assert_eq!(c.name, "application a.example.com");
    // A wildcard route's entry covers the names it routes.
    let c = pass("X.apps.example.com", presented(0xc0, 0xc1));
    assert!(
        c.passed() && c.detail.contains("*.apps.example.com"),
        "{c:?}"
    );
    // Another certificate for the name: served from outside the VM.
    let c = pass("a.example.com", presented(0xbb, 0xaf));
    assert!(!c.passed() && c.detail.contains("outside the VM"), "{c:?}");
    // A name the VM does not vouch for.
    let c = pass("apps.example.com", presented(0xc0, 0xc1));
    assert!(
        !c.passed() && c.detail.contains("no manifest entry"),
        "{c:?}"
    );

    // The key changed inside the VM since the snapshot.
    let rekeyed = manifest(0xa1);
    let now = presented(0xa1, 0xae);
    let c = check_application("a.example.com", &now, &rekeyed, Some(&snap), false);
    assert!(
        !c.passed() && c.detail.contains("--allow-key-change"),
        "{c:?}"
    );
    let c = check_application("a.example.com", &now, &rekeyed, Some(&snap), true);
    assert!(c.passed(), "{c:?}");
    // No snapshot: the handshake matches, the comparison cannot be made.
    let c = check_application("a.example.com", &now, &rekeyed, None, false);
    assert!(!c.passed() && c.detail.contains("no snapshot"), "{c:?}");
}

#[test]
fn snapshot_policy_refuses_evidence_that_does_not_bind_itself() {
    let vm = Vm::new();
    let mut e = vm.evidence(Nonce::random());
    e.nonce = Nonce::random();
    let err = snapshot_policy(&e, &tee_options(), true).unwrap_err();
    assert!(matches!(err, SnapshotPolicyError::Binding { .. }), "{err}");
    assert!(err.to_string().contains("report_data"), "{err}");
}

fn shared_evidence(sub: &str) -> Option<PathBuf> {
    testkit::evidence::dir(sub)
}

#[test]
fn real_snp_report_verifies_but_is_not_bound_to_our_call() {
    let Some(dir) = shared_evidence("snp") else {
        return;
    };
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    e.tee = TeeEvidence::SevSnp {
        report: Base64(std::fs::read(dir.join("milan-report.bin")).unwrap()),
        cert_chain: Some(Base64(
            std::fs::read(dir.join("milan-ask-ark.pem")).unwrap(),
        )),
    };
    let mut ex = expect(nonce, Some(&snap));
    // 2025-01-01, inside the certificates' validity; the VCEK as the user would fetch it.
    ex.at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    ex.snp_certs = Some(SnpCerts {
        vcek_or_vlek: Some(std::fs::read(dir.join("milan-vcek.der")).unwrap()),
        chain_pem: None,
    });
    let checks = verify(&e, &ex);
    assert_failed(&checks, &[names::BINDING, names::TEE_MEASUREMENT]);
    assert!(detail(&checks, names::TEE).contains("SEV-SNP"));
    assert!(detail(&checks, names::TEE_MEASUREMENT).contains("kind: snapshot \"simulated\""));
    // Without the VCEK there is nothing to check the signature with.
    ex.snp_certs = None;
    let checks = verify(&e, &ex);
    assert_failed(
        &checks,
        &[names::BINDING, names::TEE, names::TEE_MEASUREMENT],
    );
}

#[test]
fn real_tdx_quote_verifies_but_is_not_bound_to_our_call() {
    let Some(dir) = shared_evidence("tdx") else {
        return;
    };
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    e.tee = TeeEvidence::Tdx {
        report: Base64(std::fs::read(dir.join("tdx_quote")).unwrap()),
        collateral: Some(Base64(
            std::fs::read(dir.join("tdx_quote_collateral.json")).unwrap(),
        )),
    };
    let mut ex = expect(nonce, Some(&snap));
    // 2025-07-01, inside the collateral's window.
    ex.at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_751_328_000);
    let checks = verify(&e, &ex);
    assert_failed(&checks, &[names::BINDING, names::TEE_MEASUREMENT]);
    assert!(detail(&checks, names::TEE).contains("UpToDate"));
    // A year later the collateral has expired.
    ex.at += Duration::from_secs(365 * 24 * 3600);
    let checks = verify(&e, &ex);
    assert_failed(
        &checks,
        &[names::BINDING, names::TEE, names::TEE_MEASUREMENT],
    );
}

fn nonces(n: usize) -> Vec<Nonce> {
    (0..n).map(|_| Nonce::random()).collect()
}

#[test]
fn every_caller_of_a_batched_round_passes_with_its_own_proof() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    for size in [1, 2, 3, 7] {
        let sent = nonces(size);
        for (e, nonce) in vm.round(&sent).iter().zip(&sent) {
            let checks = verify(e, &expect(*nonce, Some(&snap)));
            assert_failed(&checks, &[]);
            assert!(detail(&checks, names::NONCE).contains(&format!("of a batch of {size}")));
            let e2 = Evidence::from_json(&e.to_json()).unwrap();
            assert_failed(&verify(&e2, &expect(*nonce, Some(&snap))), &[]);
        }
    }
    // The gateway's snapshot job takes its policy from batched evidence too.
    let round = vm.round(&nonces(3));
    assert!(snapshot_policy(&round[1], &tee_options(), true).is_ok());
}

#[test]
fn a_proof_for_another_callers_nonce_fails_the_nonce_check() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let sent = nonces(5);
    let round = vm.round(&sent);
    // Caller 0 is handed caller 3's answer: another nonce.
    let checks = verify(&round[3], &expect(sent[0], Some(&snap)));
    assert_failed(&checks, &[names::NONCE, names::BINDING]);
    // ... with the nonce field edited to caller 0's: the proof leads elsewhere.
    let mut e = round[3].clone();
    e.nonce = sent[0];
    let checks = verify(&e, &expect(sent[0], Some(&snap)));
    assert_failed(&checks, &[names::NONCE, names::BINDING]);
    assert!(detail(&checks, names::NONCE).contains("another nonce, index or path"));
    // ... or the index too: caller 3's path, placed at caller 0's index.
    e.batch.as_mut().unwrap().index = 0;
    let checks = verify(&e, &expect(sent[0], Some(&snap)));
    assert!(failed(&checks).contains(&names::NONCE));
    // A nonce outside the round, with a well-formed proof.
    let outsider = Nonce::random();
    let mut e = round[2].clone();
    e.nonce = outsider;
    assert_failed(
        &verify(&e, &expect(outsider, Some(&snap))),
        &[names::NONCE, names::BINDING],
    );
}

#[test]
fn a_path_of_the_wrong_length_or_an_index_out_of_range_fails_the_nonce_check() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let sent = nonces(5);
    let round = vm.round(&sent);
    let tamper = |f: &dyn Fn(&mut attest::batch::Batch)| {
        let mut e = round[1].clone();
        f(e.batch.as_mut().unwrap());
        verify(&e, &expect(sent[1], Some(&snap)))
    };
    for (what, checks) in [
        ("long path", tamper(&|b| b.path.push([0; 32]))),
        (
            "short path",
            tamper(&|b| {
                b.path.pop();
            }),
        ),
        ("index out of range", tamper(&|b| b.index = 5)),
        ("size zero", tamper(&|b| b.size = 0)),
        ("size of another round", tamper(&|b| b.size = 64)),
    ] {
        assert_failed(&checks, &[names::NONCE, names::BINDING]);
        assert!(
            detail(&checks, names::NONCE).contains("malformed"),
            "{what}: {}",
            detail(&checks, names::NONCE)
        );
    }
    // A path hash flipped: the right shape, another root.
    let checks = tamper(&|b| b.path[0][0] ^= 1);
    assert_failed(&checks, &[names::NONCE, names::BINDING]);
}

#[test]
fn the_own_endpoint_may_be_reached_through_a_routed_name_only() {
    let vm = Vm::new();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let e = vm.evidence(nonce);
    let with_host = |host: &str| {
        let mut ex = expect(nonce, Some(&snap));
        ex.url_host = Some(host.into());
        verify(&e, &ex)
    };
    // Its own name, a routed name (exact or under a wildcard), an address: the
    // certificate on the connection is what decides, and it is the domain's.
    for host in [DOMAIN, "A.example.com", "db.apps.example.com", "127.0.0.1"] {
        let checks = with_host(host);
        assert_failed(&checks, &[]);
    }
    let checks = with_host("db.apps.example.com");
    let d = detail(&checks, names::ENDPOINT_CERTIFICATE);
    assert!(
        d.contains("routed name `db.apps.example.com` (entry `*.apps.example.com`)"),
        "{d}"
    );
    // A name the VM neither is nor routes.
    let checks = with_host("elsewhere.example.org");
    assert_failed(&checks, &[names::ENDPOINT_CERTIFICATE]);
    assert!(detail(&checks, names::ENDPOINT_CERTIFICATE).contains("neither"));
    // An impostor on a routed name still presents another certificate and fails.
    let mut ex = expect(nonce, Some(&snap));
    ex.url_host = Some("a.example.com".into());
    ex.endpoint_cert_sha256 = Some([0xee; 32]);
    assert_failed(&verify(&e, &ex), &[names::ENDPOINT_CERTIFICATE]);
}
