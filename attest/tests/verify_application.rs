//! `check_application`: the certificate a name presented must be the VM's attested one
//! for that name (exact entry, else the wildcard that covers it), else the name is
//! served from outside the VM; and its key must be the snapshot's unless key changes are
//! allowed. A renewal that keeps the key passes and says so.

use attest::binding::{CertDigests, Manifest, ManifestEntry};
use attest::check::Check;
use attest::snapshot::{Snapshot, TeePolicy, SNAPSHOT_VERSION};
use attest::verify::check_application;

/// Entries as (name, certificate byte, key byte): each digest is its byte repeated.
fn manifest(entries: &[(&str, u8, u8)]) -> Manifest {
    Manifest::new(
        entries
            .iter()
            .map(|(n, c, k)| ManifestEntry::new(*n, digests(*c, *k)))
            .collect(),
    )
    .unwrap()
}

fn digests(cert: u8, key: u8) -> CertDigests {
    CertDigests {
        cert_sha256: [cert; 32],
        spki_sha256: [key; 32],
    }
}

fn snapshot(m: Manifest) -> Snapshot {
    Snapshot {
        version: SNAPSHOT_VERSION,
        created_at: "2026-11-28T00:00:00Z".into(),
        tee_policy: TeePolicy::None,
        tpm_policy: None,
        ima: None,
        manifest: m,
        filehashes: vec![],
    }
}

fn vm() -> Manifest {
    manifest(&[
        ("vm.example.com", 0xd0, 0xd1),
        ("a.example.com", 0xa0, 0xa5),
        ("*.apps.example.com", 0xc0, 0xc5),
    ])
}

fn check_in(
    m: &Manifest,
    name: &str,
    presented: CertDigests,
    snap: Option<&Snapshot>,
    allow: bool,
) -> Check {
    let c = check_application(name, &presented, m, snap, allow);
    eprintln!("{:?} {}: {}", c.outcome, c.name, c.detail);
    assert_eq!(c.name, format!("application {name}"));
    c
}

fn check(name: &str, cert: u8, key: u8, snap: Option<&Snapshot>, allow: bool) -> Check {
    check_in(&vm(), name, digests(cert, key), snap, allow)
}

#[test]
fn the_attested_certificate_passes() {
    let s = snapshot(vm());
    assert!(check("a.example.com", 0xa0, 0xa5, Some(&s), false).passed());
    // Names are matched without regard to case, as DNS does.
    assert!(check("A.Example.COM", 0xa0, 0xa5, Some(&s), false).passed());
}

#[test]
fn a_wildcard_entry_covers_its_names() {
    let s = snapshot(vm());
    let c = check("db.apps.example.com", 0xc0, 0xc5, Some(&s), false);
    assert!(c.passed());
    assert!(c.detail.contains("*.apps.example.com"), "{}", c.detail);
    // The wildcard does not cover its own parent.
    assert!(!check("apps.example.com", 0xc0, 0xc5, Some(&s), false).passed());
}

#[test]
fn an_impostor_certificate_is_served_from_outside() {
    let s = snapshot(vm());
    let c = check("a.example.com", 0xee, 0xef, Some(&s), false);
    assert!(!c.passed());
    assert!(c.detail.contains("outside the VM"), "{}", c.detail);
    // An impostor holding the attested key cannot present the attested certificate's
    // digest with another certificate: the certificate itself must be the attested one.
    let c = check("a.example.com", 0xee, 0xa5, Some(&s), false);
    assert!(
        !c.passed() && c.detail.contains("outside the VM"),
        "{}",
        c.detail
    );
    // Allowing key changes never admits a certificate the VM does not attest.
    assert!(!check("a.example.com", 0xee, 0xef, Some(&s), true).passed());
}

#[test]
fn an_entry_whose_key_is_not_its_certificates_fails() {
    let s = snapshot(vm());
    let c = check("a.example.com", 0xa0, 0x00, Some(&s), true);
    assert!(!c.passed());
    assert!(c.detail.contains("contradicts itself"), "{}", c.detail);
}

#[test]
fn a_name_without_entry_fails() {
    let s = snapshot(vm());
    let c = check("b.example.com", 0xa0, 0xa5, Some(&s), false);
    assert!(!c.passed());
    assert!(c.detail.contains("b.example.com"), "{}", c.detail);
}

#[test]
fn a_renewal_that_keeps_the_key_passes_and_says_so() {
    let s = snapshot(vm());
    let renewed = manifest(&[
        ("vm.example.com", 0xd0, 0xd1),
        ("a.example.com", 0xa1, 0xa5),
        ("*.apps.example.com", 0xc0, 0xc5),
    ]);
    let c = check_in(
        &renewed,
        "a.example.com",
        digests(0xa1, 0xa5),
        Some(&s),
        false,
    );
    assert!(c.passed(), "{}", c.detail);
    assert!(c.detail.contains("renewed"), "{}", c.detail);
    assert!(c.detail.contains("a0a0a0a0"), "{}", c.detail);
}

#[test]
fn a_key_changed_since_the_snapshot_fails_unless_allowed() {
    let s = snapshot(vm());
    let rekeyed = manifest(&[
        ("vm.example.com", 0xd0, 0xd1),
        ("a.example.com", 0xa1, 0xa6),
        ("*.apps.example.com", 0xc0, 0xc5),
    ]);
    let c = check_in(
        &rekeyed,
        "a.example.com",
        digests(0xa1, 0xa6),
        Some(&s),
        false,
    );
    assert!(!c.passed());
    assert!(
        c.detail.contains("a5a5a5a5") && c.detail.contains("--allow-key-change"),
        "{}",
        c.detail
    );
    let c = check_in(
        &rekeyed,
        "a.example.com",
        digests(0xa1, 0xa6),
        Some(&s),
        true,
    );
    assert!(c.passed(), "{}", c.detail);
    assert!(c.detail.contains("--allow-key-change"));
}

#[test]
fn a_name_added_since_the_snapshot_fails_unless_allowed() {
    let s = snapshot(manifest(&[("vm.example.com", 0xd0, 0xd1)]));
    assert!(!check("a.example.com", 0xa0, 0xa5, Some(&s), false).passed());
    assert!(check("a.example.com", 0xa0, 0xa5, Some(&s), true).passed());
}

#[test]
fn without_a_snapshot_it_fails() {
    assert!(!check("a.example.com", 0xa0, 0xa5, None, false).passed());
}
