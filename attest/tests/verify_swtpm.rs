//! `attest::verify::verify` on evidence made in-process the way verigated makes it: a
//! simulated TEE report over the report_data, a real quote from swtpm, and an IMA log
//! written here whose extends went into swtpm's PCR 10. Untouched evidence passes every
//! check; each tampering fails, and the failing check is the one that names it.
#![cfg(feature = "tpm-collect")]

use attest::binding::{ak_digest, report_data, tpm_qualifying, Manifest, ManifestEntry, Nonce};
use attest::check::failed_names as failed;
use attest::check::{Check, Verdict};
use attest::evidence::{Base64, Evidence, TeeEvidence, TpmEvidence, EVIDENCE_VERSION};
use attest::ima::{binary, HashAlg, ImaEntry};
use attest::snapshot::{FileIndex, ImaPolicy, Snapshot, SNAPSHOT_VERSION};
use attest::tee::simulated::SimulatedTee;
use attest::tpm::collect::{Tpm, DEFAULT_AK_HANDLE};
use attest::tpm::quote;
use attest::verify::{
    names, snapshot_policy, verify, verify_incremental, Expectations, TeeOptions,
};
use std::time::SystemTime;
use testkit::swtpm::Swtpm;

const DOMAIN: &str = "vm.example.com";

/// A VM as the verifier sees it: a TEE key, a TPM, an IMA log mirrored in PCR 10, and
/// the certificates it serves.
struct Vm {
    sw: Swtpm,
    tpm: Tpm,
    tee: SimulatedTee,
    measurement: [u8; 48],
    manifest: Manifest,
    log: Vec<ImaEntry>,
}

fn manifest(app_a: u8) -> Manifest {
    Manifest::new(vec![
        ManifestEntry {
            name: DOMAIN.into(),
            cert_sha256: [0xd0; 32],
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

impl Vm {
    fn start() -> Vm {
        let sw = Swtpm::start().expect("swtpm starts");
        let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens");
        tpm.attestation_key(DEFAULT_AK_HANDLE).expect("AK");
        let mut vm = Vm {
            sw,
            tpm,
            tee: SimulatedTee::ephemeral(),
            measurement: [0x4d; 48],
            manifest: manifest(0xa0),
            log: Vec::new(),
        };
        vm.measure(ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[0x5c; 32]).unwrap());
        vm.measure(ImaEntry::measure("/usr/bin/verigated", HashAlg::Sha256, b"gateway").unwrap());
        vm.measure(ImaEntry::violation("/var/log/app.log", HashAlg::Sha256).unwrap());
        vm.measure(ImaEntry::measure("/usr/lib/libc.so.6", HashAlg::Sha256, b"libc").unwrap());
        vm
    }

    /// Logs `e` and extends it into SHA-256 PCR 10, as the kernel does.
    fn measure(&mut self, e: ImaEntry) {
        self.tpm
            .extend_pcr(10, quote::HashAlg::Sha256, &e.extend_value(HashAlg::Sha256))
            .expect("extend PCR 10");
        self.log.push(e);
    }

    /// Replaces the TPM by a fresh one (another seed, so another AK) and measures the
    /// same log into it.
    fn swap_tpm(&mut self) {
        let sw = Swtpm::start().expect("second swtpm");
        let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens");
        tpm.attestation_key(DEFAULT_AK_HANDLE).expect("AK");
        // The old context closes while its swtpm still runs.
        self.tpm = tpm;
        self.sw = sw;
        for e in std::mem::take(&mut self.log) {
            self.measure(e);
        }
    }

    /// Evidence for `nonce`, as verigated builds it: the quote is taken, then the log
    /// read (so it may hold entries logged after the quote).
    fn evidence(&mut self, nonce: Nonce) -> Evidence {
        self.evidence_then(nonce, |_| {})
    }

    fn evidence_then(&mut self, nonce: Nonce, after_quote: impl FnOnce(&mut Vm)) -> Evidence {
        let ak = self.tpm.attestation_key(DEFAULT_AK_HANDLE).expect("AK");
        self.evidence_with_ak(nonce, ak, after_quote)
    }

    fn evidence_with_ak(
        &mut self,
        nonce: Nonce,
        ak: Vec<u8>,
        after_quote: impl FnOnce(&mut Vm),
    ) -> Evidence {
        let rd = report_data(&nonce, &self.manifest.digest(), &ak_digest(Some(&ak)));
        let q = self.tpm.quote(&tpm_qualifying(&rd), &[10]).expect("quote");
        after_quote(self);
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
            tpm: Some(TpmEvidence {
                ak_public: Base64(q.ak_public),
                quote: Base64(q.attest),
                signature: Base64(q.signature),
                pcrs: q.pcrs,
            }),
            ima_log: Some(Base64(binary::serialize(&self.log))),
            ima_log_from: None,
        }
    }

    /// A snapshot of the VM now, its policy taken from verified evidence.
    fn snapshot(&mut self) -> Snapshot {
        let e = self.evidence(Nonce::random());
        let (tee_policy, tpm_policy) = snapshot_policy(&e, &tee_options(), true)
            .expect("the VM's own evidence gives a policy");
        Snapshot {
            version: SNAPSHOT_VERSION,
            created_at: "2026-11-28T00:00:00Z".into(),
            tee_policy,
            tpm_policy,
            ima: Some(ImaPolicy {
                pcr: 10,
                hash_algorithm: HashAlg::Sha256,
            }),
            manifest: self.manifest.clone(),
            filehashes: self
                .log
                .iter()
                .skip(1)
                .filter(|e| !e.is_violation())
                .map(|e| (e.path().into_owned(), hex::encode(e.file_digest())))
                .collect(),
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

/// What a verifier that sent `nonce` over a connection presenting the VM's own
/// certificate expects, accepting the simulated TEE.
fn expect(nonce: Nonce, snapshot: Option<&Snapshot>) -> Expectations<'_> {
    let mut e = Expectations::new(nonce, SystemTime::now());
    e.snapshot = snapshot;
    e.endpoint_cert_sha256 = Some([0xd0; 32]);
    e.allow_simulated_tee = true;
    e
}

fn check_names(checks: &[Check]) -> Vec<&str> {
    checks.iter().map(|c| c.name.as_str()).collect()
}

fn detail<'c>(checks: &'c [Check], name: &str) -> &'c str {
    &checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
        .detail
}

/// Asserts that exactly `names` failed, and prints the list for whoever reads the log.
fn assert_failed(checks: &[Check], expected: &[&str]) {
    for c in checks {
        eprintln!("{:?} {}: {}", c.outcome, c.name, c.detail);
    }
    assert_eq!(failed(checks), expected);
    assert_eq!(check_names(checks), names::ALL);
}

#[test]
fn untouched_vm_passes_every_check() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let e = vm.evidence(nonce);
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[]);
    assert_eq!(Verdict::of(&checks), Verdict::Pass);
    // The boot aggregate and the violation are exempt: two files judged.
    assert!(
        detail(&checks, "ima entries").contains("all 2 measured files"),
        "{}",
        detail(&checks, "ima entries")
    );
    // The JSON round trip of the evidence changes nothing.
    let again = Evidence::from_json(&e.to_json()).unwrap();
    assert_failed(&verify(&again, &expect(nonce, Some(&snap))), &[]);
}

#[test]
fn an_old_nonce_fails_the_nonce_check() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let old = vm.evidence(Nonce::random());
    let checks = verify(&old, &expect(Nonce::random(), Some(&snap)));
    // report_data and the quote's extraData are recomputed from the nonce sent, so the
    // replayed report and quote fail too, and with them what the quote anchors.
    assert_failed(
        &checks,
        &[
            "nonce",
            "binding",
            "tpm quote",
            "tpm reboot",
            "ima replay",
            "ima entries",
        ],
    );
    assert!(detail(&checks, "nonce").contains("was sent"));
}

#[test]
fn altered_report_data_fails_the_binding() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    // A report signed by the right key over other report_data (e.g. for another
    // manifest): the signature is fine, the binding is not.
    e.tee = TeeEvidence::Simulated {
        report: Base64(vm.tee.report(vm.measurement, [7; 64])),
        public_key: Base64(vm.tee.public_key_der()),
    };
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["binding"]);
    assert!(detail(&checks, "binding").contains("report_data is 0707070707070707"));
}

#[test]
fn a_manifest_entry_changed_inside_the_vm_fails_the_manifest_check() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    vm.manifest = manifest(0xa1);
    let nonce = Nonce::random();
    let e = vm.evidence(nonce);
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["manifest"]);
    assert!(detail(&checks, "manifest").contains("key of `a.example.com` changed"));
    let mut allow = expect(nonce, Some(&snap));
    allow.allow_key_change = true;
    assert_failed(&verify(&e, &allow), &[]);
}

#[test]
fn another_simulated_key_fails_the_tee_policy() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    vm.tee = SimulatedTee::ephemeral();
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["tee measurement"]);
    assert!(detail(&checks, "tee measurement").contains("public_key_sha256"));
}

#[test]
fn a_report_signed_by_another_key_than_it_carries_fails_tee() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    if let TeeEvidence::Simulated { public_key, .. } = &mut e.tee {
        *public_key = Base64(SimulatedTee::ephemeral().public_key_der());
    }
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["binding", "tee", "tee measurement"]);
    assert!(detail(&checks, "tee").contains("simulated TEE"));
}

#[test]
fn a_measurement_other_than_the_snapshot_fails_the_tee_policy() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    vm.measurement = [0x4e; 48];
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["tee measurement"]);
    assert!(detail(&checks, "tee measurement").contains("measurement"));
}

#[test]
fn simulated_evidence_without_the_option_fails_tee() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut ex = expect(nonce, Some(&snap));
    ex.allow_simulated_tee = false;
    let checks = verify(&vm.evidence(nonce), &ex);
    assert_failed(&checks, &["tee"]);
    assert!(detail(&checks, "tee").contains("proves nothing about hardware"));
    // The CLI's snapshot refuses it likewise.
    let e = vm.evidence(nonce);
    let err = snapshot_policy(&e, &tee_options(), false)
        .expect_err("simulated refused")
        .to_string();
    assert!(err.contains("--allow-simulated-tee"), "{err}");
}

#[test]
fn a_reboot_fails_the_reboot_check() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    vm.sw.restart().expect("swtpm restarts");
    vm.tpm = Tpm::open(&vm.sw.tcti()).expect("TPM reopens");
    // The same log measured again after the reboot, so only the counters differ.
    let log = std::mem::take(&mut vm.log);
    for e in log {
        vm.measure(e);
    }
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["tpm reboot"]);
    assert!(detail(&checks, "tpm reboot").contains("resetCount is 2, expected 1"));
}

#[test]
fn a_reset_tpm_whose_pcr_covers_none_of_the_log_fails_the_replay() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    // A reboot after which nothing was measured again: PCR 10 is back at zeros while
    // the log still lists what ran before. The empty prefix "replays", but it anchors
    // nothing, so the replay must fail rather than leave every entry unjudged.
    vm.sw.restart().expect("swtpm restarts");
    vm.tpm = Tpm::open(&vm.sw.tcti()).expect("TPM reopens");
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["tpm reboot", "ima replay", "ima entries"]);
    assert!(
        detail(&checks, "ima replay").contains("reset value"),
        "{checks:?}"
    );
}

#[test]
fn another_attestation_key_fails_the_key_check() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    // Another TPM (an AK is derived from its TPM's seed, so another handle on the same
    // TPM would give the same key), with the same log measured into it.
    vm.swap_tpm();
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["tpm key"]);
    assert!(detail(&checks, "tpm key").contains("another TPM key"));
}

#[test]
fn a_quote_from_another_key_than_the_evidence_names_fails_the_quote() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    let other = Vm::start()
        .tpm
        .attestation_key(DEFAULT_AK_HANDLE)
        .expect("second AK");
    // The AK swapped in the evidence: the binding no longer holds, the quote's signature
    // is not under it, and it is not the snapshot's key.
    e.tpm.as_mut().unwrap().ak_public = Base64(other);
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(
        &checks,
        &[
            "binding",
            "tpm quote",
            "tpm reboot",
            "tpm key",
            "ima replay",
            "ima entries",
        ],
    );
}

#[test]
fn an_ima_entry_not_in_the_snapshot_fails_ima_entries() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    vm.measure(ImaEntry::measure("/tmp/evil", HashAlg::Sha256, b"payload").unwrap());
    let nonce = Nonce::random();
    let e = vm.evidence(nonce);
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["ima entries"]);
    assert!(
        detail(&checks, "ima entries").contains("1 of 3 measured files")
            && detail(&checks, "ima entries").contains("/tmp/evil"),
        "{}",
        detail(&checks, "ima entries")
    );

    // A whitelist that names it admits it; one with another digest does not.
    let digest = hex::encode(HashAlg::Sha256.digest(b"payload"));
    let ok = FileIndex::from_whitelist_json(
        serde_json::to_string(&[["/tmp/evil", digest.as_str()]])
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let mut ex = expect(nonce, Some(&snap));
    ex.whitelist = Some(&ok);
    assert_failed(&verify(&e, &ex), &[]);
    let wrong = FileIndex::from_whitelist_json(
        format!(r#"[["/tmp/evil", "{}"]]"#, "00".repeat(32)).as_bytes(),
    )
    .unwrap();
    ex.whitelist = Some(&wrong);
    assert_failed(&verify(&e, &ex), &["ima entries"]);
}

#[test]
fn a_file_logged_under_the_name_boot_aggregate_later_is_judged() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    vm.measure(ImaEntry::ima_ng("boot_aggregate", HashAlg::Sha256, &[0x66; 32]).unwrap());
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["ima entries"]);
    assert!(detail(&checks, "ima entries").contains("boot_aggregate"));
}

#[test]
fn an_edited_ima_log_fails_the_replay() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    // Hide the real libc: a well-formed entry with the snapshot's digest for another
    // file, in place of the one that was measured.
    let mut log = vm.log.clone();
    log[3] = ImaEntry::measure("/usr/lib/libc.so.6", HashAlg::Sha256, b"other").unwrap();
    e.ima_log = Some(Base64(binary::serialize(&log)));
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["ima replay", "ima entries"]);
    assert!(detail(&checks, "ima replay").contains("not the one the kernel measured"));

    // A byte flipped inside an entry's data breaks its template hash, which is named.
    let mut bytes = binary::serialize(&vm.log);
    let last = bytes.len() - 3;
    bytes[last] ^= 1;
    e.ima_log = Some(Base64(bytes));
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["ima replay", "ima entries"]);

    // A truncated log is an error, not a panic.
    let bytes = binary::serialize(&vm.log);
    e.ima_log = Some(Base64(bytes[..bytes.len() - 5].to_vec()));
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["ima replay", "ima entries"]);
}

#[test]
fn a_log_grown_after_the_quote_passes_on_its_quoted_prefix() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let e = vm.evidence_then(nonce, |vm| {
        vm.measure(ImaEntry::measure("/usr/bin/later", HashAlg::Sha256, b"later").unwrap());
    });
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[]);
    assert!(
        detail(&checks, "ima replay").contains("1 later entries"),
        "{}",
        detail(&checks, "ima replay")
    );
    // The next evidence covers it, and judges it.
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["ima entries"]);
}

#[test]
fn a_tls_terminating_proxy_fails_the_endpoint_certificate() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut ex = expect(nonce, Some(&snap));
    ex.endpoint_cert_sha256 = Some([0xee; 32]);
    let checks = verify(&vm.evidence(nonce), &ex);
    assert_failed(&checks, &["endpoint certificate"]);
    assert!(detail(&checks, "endpoint certificate").contains("terminates TLS"));
}

#[test]
fn without_a_snapshot_the_policy_checks_fail() {
    let mut vm = Vm::start();
    let nonce = Nonce::random();
    let checks = verify(&vm.evidence(nonce), &expect(nonce, None));
    assert_failed(
        &checks,
        &[
            "tee measurement",
            "tpm reboot",
            "tpm key",
            "ima entries",
            "manifest",
        ],
    );
    assert!(detail(&checks, "tee measurement").contains("no snapshot"));
}

#[test]
fn evidence_without_a_tpm_fails_when_the_snapshot_has_one() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    e.tpm = None;
    // Re-sign the report over what such evidence binds (no AK), so only the TPM is
    // missing.
    let rd = report_data(&nonce, &vm.manifest.digest(), &ak_digest(None));
    e.tee = TeeEvidence::Simulated {
        report: Base64(vm.tee.report(vm.measurement, rd)),
        public_key: Base64(vm.tee.public_key_der()),
    };
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(
        &checks,
        &[
            "tpm quote",
            "tpm reboot",
            "tpm key",
            "ima replay",
            "ima entries",
        ],
    );
    assert!(detail(&checks, "tpm quote").contains("no TPM quote"));
}

#[test]
fn tee_none_fails_binding_and_tee() {
    let mut vm = Vm::start();
    let snap = vm.snapshot();
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    e.tee = TeeEvidence::None;
    let checks = verify(&e, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &["binding", "tee", "tee measurement"]);
    // snapshot_policy gives `none` for it: nothing to pin, and verify fails it anyway.
    let (tee, tpm) = snapshot_policy(&e, &tee_options(), true).unwrap();
    assert_eq!(tee.kind(), "none");
    assert!(tpm.is_some());
}

#[test]
fn snapshot_policy_refuses_evidence_that_does_not_bind_itself() {
    let mut vm = Vm::start();
    let mut e = vm.evidence(Nonce::random());
    e.nonce = Nonce::random();
    let err = snapshot_policy(&e, &tee_options(), true)
        .expect_err("binding broken")
        .to_string();
    assert!(err.contains("report_data"), "{err}");
}

/// Incremental IMA: after a full replay the verifier keeps the running PCR value; the
/// next evidence carries only the newer entries (fewer bytes) and still verifies against
/// the same quote of the whole PCR; a new unknown file among them fails `ima entries`,
/// and a start that is not the verifier's own fails `ima replay`.
#[test]
fn incremental_ima_replays_only_the_new_entries_from_the_kept_value() {
    let mut vm = Vm::start();
    let mut snap = vm.snapshot();
    let nonce = Nonce::random();
    let full = vm.evidence(nonce);
    let (checks, progress) = verify_incremental(&full, &expect(nonce, Some(&snap)));
    assert_failed(&checks, &[]);
    let progress = progress.expect("a full replay gives a start");
    assert_eq!(progress.entries, 4);

    // One more file runs; the snapshot knows it.
    let tool = ImaEntry::measure("/usr/bin/tool", HashAlg::Sha256, b"tool").unwrap();
    snap.filehashes
        .push(("/usr/bin/tool".into(), hex::encode(tool.file_digest())));
    vm.measure(tool);
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    let whole = e.ima_log.as_ref().unwrap().0.len();
    e.skip_ima_entries(progress.entries);
    assert_eq!(e.ima_log_from, Some(4));
    let sent = e.ima_log.as_ref().unwrap().0.len();
    assert_eq!(
        sent,
        binary::serialize(&vm.log[4..]).len(),
        "only the new entry"
    );
    assert!(sent * 4 < whole, "{sent} of {whole} bytes");
    let mut ex = expect(nonce, Some(&snap));
    ex.ima_start = Some(progress.clone());
    let (checks, next) = verify_incremental(&e, &ex);
    assert_failed(&checks, &[]);
    assert!(detail(&checks, "ima replay").contains("incremental"));
    assert_eq!(next.as_ref().map(|n| n.entries), Some(5));

    // Without the kept value, or with another one, the tail cannot be anchored.
    let mut ex = expect(nonce, Some(&snap));
    assert_failed(
        &verify_incremental(&e, &ex).0,
        &["ima replay", "ima entries"],
    );
    let mut wrong = progress.clone();
    wrong.pcr = vec![(HashAlg::Sha256, vec![0x11; 32])];
    ex.ima_start = Some(wrong);
    assert_failed(
        &verify_incremental(&e, &ex).0,
        &["ima replay", "ima entries"],
    );

    // An unknown executable among the new entries fails `ima entries`, and gives no
    // new start (the next call asks for the same entries again).
    vm.measure(ImaEntry::measure("/usr/local/bin/miner", HashAlg::Sha256, b"miner").unwrap());
    let nonce = Nonce::random();
    let mut e = vm.evidence(nonce);
    let next = next.unwrap();
    e.skip_ima_entries(next.entries);
    let mut ex = expect(nonce, Some(&snap));
    ex.ima_start = Some(next);
    let (checks, after) = verify_incremental(&e, &ex);
    assert_failed(&checks, &["ima entries"]);
    assert!(after.is_none());

    // A log shorter than the entries asked to skip (a reboot) is sent whole.
    let mut e = vm.evidence(Nonce::random());
    e.skip_ima_entries(100);
    assert_eq!(e.ima_log_from, None);
}
