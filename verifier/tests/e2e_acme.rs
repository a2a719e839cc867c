//! ACME for the own domain, seen from the verifier: a snapshot taken while verigated
//! still serves its self-signed bootstrap certificate keeps passing `verigate verify`,
//! with no `--allow-key-change` (nor its alias), after a real Pebble issued the own
//! certificate and renewed it, because every certificate carries the key generated in
//! the VM at its first start. The VM is `testkit::vm` (simulated TEE, real swtpm);
//! Pebble validates over TLS-ALPN-01 on verigated's listener (`testkit::pebble`).
//!
//! The first verify uses the VM harness's `--allow-insecure-tls` (attestation pins the
//! certificate); the second trusts Pebble's issuing root with `--ca-cert` instead, as an
//! operator trusts their CA, so the Web PKI chain and name checks run too. Only
//! `--allow-simulated-tee` stays: the TEE is simulated here.

use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use testkit::pebble::PebblePlan;
use testkit::tls::{self, HelloDelivery};
use testkit::vm::{failed_checks as failed, Binaries, Vm, VmOptions, DOMAIN};

/// Long enough for an order and a renewal on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);

fn own_certificate(vm: &Vm) -> CertificateDer<'static> {
    tls::connect(vm.addr, Some(DOMAIN), &["http/1.1"], HelloDelivery::Whole)
        .expect("own endpoint")
        .cert
}

/// Waits until the own endpoint serves another certificate than `old`; returns it.
fn wait_for_new_certificate(vm: &Vm, old: &CertificateDer<'static>) -> CertificateDer<'static> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = own_certificate(vm);
        if &now != old {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "no new certificate; log:\n{}",
            vm.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_snapshot_of_the_bootstrap_certificate_passes_across_issuance_and_renewal() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    if !testkit::require(
        testkit::pebble::available(),
        "pebble",
        testkit::pebble::INSTALL,
    ) {
        return;
    }
    let mut vm = Vm::prepare(&bins, VmOptions::new(&["app.example.com"]));
    let plan = PebblePlan::new(&vm.dir.path().join("pebble")).unwrap();
    // Each certificate is due ~15 s after its issuance (Pebble issues for an hour).
    vm.extra_config = format!(
        "[gateway.acme]\ndirectory = \"{}\"\ncontact = [\"mailto:ops@example.com\"]\n\
         terms_of_service_agreed = true\nca_bundle = \"{}\"\nrenew_before = \"3585s\"\n\
         check_interval = \"2s\"\nretry_backoff = \"1s\"\norder_timeout = \"60s\"\n\n",
        plan.directory(),
        plan.ca_bundle().display()
    );
    vm.start_gateway(None);
    // Pebble is not up yet: verigated serves its self-signed certificate.
    let bootstrap = own_certificate(&vm);
    let snap = vm.snapshot("before-acme.json");

    let pebble = plan
        .start(vm.addr.port(), Duration::from_secs(3600))
        .unwrap();
    let issued = wait_for_new_certificate(&vm, &bootstrap);
    let renewed = wait_for_new_certificate(&vm, &issued);
    let root = vm.dir.path().join("pebble-root.pem");
    std::fs::write(
        &root,
        attest::pem::der_to_pem(&pebble.issuing_root().expect("Pebble's root")),
    )
    .unwrap();
    drop(pebble);

    let (code, report) = vm.verify_json(
        &vm.url(),
        &[
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
        ],
    );
    assert_eq!(
        (code, failed(&report)),
        (0, Vec::<String>::new()),
        "{report:#}"
    );
    // The manifest check names the own domain's certificate as renewed with the same key.
    let text = report.to_string();
    assert!(
        text.contains(&format!("`{DOMAIN}` was renewed since the snapshot")),
        "{report:#}"
    );
    let spki = |c: &CertificateDer<'_>| {
        attest::binding::CertDigests::of(DOMAIN, c)
            .unwrap()
            .spki_sha256
    };
    assert_eq!(
        spki(&renewed),
        spki(&bootstrap),
        "the key stayed the one of the first start"
    );

    // The same verify with Pebble's root trusted and no --allow-insecure-tls: the URL
    // names the own domain (sent to the VM's address by a --connect-to rule), so the
    // renewed certificate's chain and name are checked as a browser would.
    let port = vm.addr.port();
    let out = vm.verigate_trusting(
        &format!("https://{DOMAIN}:{port}"),
        &["--ca-cert", root.to_str().unwrap()],
        &[],
        &[
            "--output",
            "json",
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &format!("{DOMAIN}:{port}:{}", vm.addr),
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        (out.status.code(), failed(&report)),
        (Some(0), Vec::<String>::new()),
        "{report:#}"
    );
}
