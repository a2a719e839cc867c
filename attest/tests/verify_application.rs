//! `check_application`: the certificate a name presented must be the VM's attested one
//! for that name (exact entry, else the wildcard that covers it), else the name is
//! served from outside the VM; and it must equal the snapshot's unless certificate
//! changes are allowed.

use attest::binding::{Manifest, ManifestEntry};
use attest::check::Check;
use attest::snapshot::{Snapshot, TeePolicy, SNAPSHOT_VERSION};
use attest::verify::check_application;

fn manifest(entries: &[(&str, u8)]) -> Manifest {
    Manifest::new(
        entries
            .iter()
            .map(|(n, b)| ManifestEntry {
                name: (*n).into(),
                cert_sha256: [*b; 32],
            })
            .collect(),
    )
    .unwrap()
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
        ("vm.example.com", 0xd0),
        ("a.example.com", 0xa0),
        ("*.apps.example.com", 0xc0),
    ])
}

fn check(name: &str, presented: u8, snap: Option<&Snapshot>, allow: bool) -> Check {
    let c = check_application(name, &[presented; 32], &vm(), snap, allow);
    eprintln!("{:?} {}: {}", c.outcome, c.name, c.detail);
    assert_eq!(c.name, format!("application {name}"));
    c
}

#[test]
fn the_attested_certificate_passes() {
    let s = snapshot(vm());
    assert!(check("a.example.com", 0xa0, Some(&s), false).passed());
    // Names are matched without regard to case, as DNS does.
    assert!(check("A.Example.COM", 0xa0, Some(&s), false).passed());
}

#[test]
fn a_wildcard_entry_covers_its_names() {
    let s = snapshot(vm());
    let c = check("db.apps.example.com", 0xc0, Some(&s), false);
    assert!(c.passed());
    assert!(c.detail.contains("*.apps.example.com"), "{}", c.detail);
    // The wildcard does not cover its own parent.
    assert!(!check("apps.example.com", 0xc0, Some(&s), false).passed());
}

#[test]
fn an_impostor_certificate_is_served_from_outside() {
    let s = snapshot(vm());
    let c = check("a.example.com", 0xee, Some(&s), false);
    assert!(!c.passed());
    assert!(c.detail.contains("outside the VM"), "{}", c.detail);
    // Allowing certificate changes never admits a certificate the VM does not attest.
    assert!(!check("a.example.com", 0xee, Some(&s), true).passed());
}

#[test]
fn a_name_without_entry_fails() {
    let s = snapshot(vm());
    let c = check("b.example.com", 0xa0, Some(&s), false);
    assert!(!c.passed());
    assert!(c.detail.contains("b.example.com"), "{}", c.detail);
}

#[test]
fn a_certificate_changed_since_the_snapshot_fails_unless_allowed() {
    let s = snapshot(manifest(&[
        ("vm.example.com", 0xd0),
        ("a.example.com", 0xa1),
        ("*.apps.example.com", 0xc0),
    ]));
    let c = check("a.example.com", 0xa0, Some(&s), false);
    assert!(!c.passed());
    assert!(c.detail.contains("a1a1a1a1"), "{}", c.detail);
    let c = check("a.example.com", 0xa0, Some(&s), true);
    assert!(c.passed(), "{}", c.detail);
    assert!(c.detail.contains("--allow-certificate-change"));
}

#[test]
fn a_name_added_since_the_snapshot_fails_unless_allowed() {
    let s = snapshot(manifest(&[("vm.example.com", 0xd0)]));
    assert!(!check("a.example.com", 0xa0, Some(&s), false).passed());
    assert!(check("a.example.com", 0xa0, Some(&s), true).passed());
}

#[test]
fn without_a_snapshot_it_fails() {
    assert!(!check("a.example.com", 0xa0, None, false).passed());
}
