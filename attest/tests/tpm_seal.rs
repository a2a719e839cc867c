//! Sealing to a real TPM (swtpm): a sealed secret comes back on the same TPM, not after a
//! bound PCR is extended (named error), still does when the extended PCR is not bound,
//! never on another TPM, and a damaged blob is a named error. No transient object or
//! session is left behind.
#![cfg(feature = "tpm-collect")]

use attest::tpm::collect::Tpm;
use attest::tpm::quote::HashAlg;
use attest::tpm::seal::{seal, unseal, SealError, SealTpm, SealedBlob};
use testkit::swtpm::Swtpm;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Extends SHA-256 PCR `index` through the collection code. swtpm serves one connection
/// at a time, so the caller holds no other context meanwhile.
fn extend(sw: &Swtpm, index: u8) {
    let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens");
    tpm.extend_pcr(index, HashAlg::Sha256, &[0x5a; 32])
        .expect("extend");
}

#[test]
fn round_trip_bound_and_unbound() {
    let sw = Swtpm::start().expect("swtpm");
    let mut tpm = SealTpm::open(&sw.tcti()).expect("open");
    for pcrs in [&[][..], &[7][..], &[0, 7, 16][..]] {
        let blob = seal(&mut tpm, SECRET, pcrs).expect("seal");
        let bytes = blob.to_bytes();
        let parsed = SealedBlob::from_bytes(&bytes).expect("blob parses");
        assert_eq!(parsed, blob);
        let out = unseal(&mut tpm, &parsed).expect("unseal");
        assert_eq!(out.expose(), SECRET, "pcrs {pcrs:?}");
        assert!(!format!("{out:?}").contains("0123"));
    }
}

#[test]
fn extending_a_bound_pcr_stops_unseal_unbound_survives() {
    let sw = Swtpm::start().expect("swtpm");
    let (bound, unbound, other) = {
        let mut tpm = SealTpm::open(&sw.tcti()).expect("open");
        (
            seal(&mut tpm, SECRET, &[16]).expect("seal bound to 16"),
            seal(&mut tpm, SECRET, &[]).expect("seal unbound"),
            seal(&mut tpm, SECRET, &[23]).expect("seal bound to 23"),
        )
    };
    extend(&sw, 16);
    let mut tpm = SealTpm::open(&sw.tcti()).expect("open");
    match unseal(&mut tpm, &bound) {
        Err(SealError::PolicyFailed { pcrs }) => assert_eq!(pcrs, vec![16]),
        other => panic!("expected PolicyFailed, got {other:?}"),
    }
    let msg = unseal(&mut tpm, &bound)
        .expect_err("still fails")
        .to_string();
    assert!(msg.contains("PCR") && msg.contains("16"), "{msg}");
    assert_eq!(
        unseal(&mut tpm, &unbound).expect("unbound").expose(),
        SECRET
    );
    assert_eq!(
        unseal(&mut tpm, &other).expect("PCR 23 untouched").expose(),
        SECRET
    );
    assert_eq!(tpm.transient_count().expect("handles"), 0);
}

#[test]
fn blob_from_another_tpm_is_refused() {
    let a = Swtpm::start().expect("swtpm a");
    let b = Swtpm::start().expect("swtpm b");
    let blob = seal(&mut SealTpm::open(&a.tcti()).expect("a"), SECRET, &[]).expect("seal");
    let mut tpm_b = SealTpm::open(&b.tcti()).expect("b");
    match unseal(&mut tpm_b, &blob) {
        Err(SealError::WrongTpm) => {}
        other => panic!("expected WrongTpm, got {other:?}"),
    }
    assert_eq!(tpm_b.transient_count().expect("handles"), 0);
}

#[test]
fn corrupt_blobs_are_named_errors() {
    let sw = Swtpm::start().expect("swtpm");
    let mut tpm = SealTpm::open(&sw.tcti()).expect("open");
    let blob = seal(&mut tpm, SECRET, &[7]).expect("seal");
    // Each byte of the private area flipped in turn: the TPM's integrity check (or its
    // size checks) refuse it; never a panic, never the secret.
    for i in (0..blob.private.len()).step_by(7) {
        let mut bad = blob.clone();
        bad.private[i] ^= 0x01;
        match unseal(&mut tpm, &bad) {
            Err(SealError::WrongTpm | SealError::BadBlob { .. }) => {}
            other => panic!("private byte {i} flipped: {other:?}"),
        }
    }
    // The public area altered (another policy digest): the object name changes, so the
    // private area's integrity no longer matches.
    let mut bad = blob.clone();
    let last = bad.public.len() - 1;
    bad.public[last] ^= 0x80;
    assert!(
        unseal(&mut tpm, &bad).is_err(),
        "altered public area must not unseal"
    );
    // Bytes on disk truncated or garbage.
    let bytes = blob.to_bytes();
    for n in [0, 5, 9, 12, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            matches!(
                SealedBlob::from_bytes(&bytes[..n]),
                Err(SealError::BadBlob { .. })
            ),
            "prefix {n}"
        );
    }
    assert!(matches!(
        SealedBlob::from_bytes(b"not a blob at all"),
        Err(SealError::BadBlob { .. })
    ));
    assert_eq!(tpm.transient_count().expect("handles"), 0);
}

#[test]
fn bad_arguments_are_refused_before_the_tpm() {
    let sw = Swtpm::start().expect("swtpm");
    let mut tpm = SealTpm::open(&sw.tcti()).expect("open");
    assert!(matches!(
        seal(&mut tpm, &[], &[]),
        Err(SealError::SecretLength { got: 0 })
    ));
    assert!(matches!(
        seal(&mut tpm, &[1; 129], &[]),
        Err(SealError::SecretLength { got: 129 })
    ));
    assert!(matches!(
        seal(&mut tpm, SECRET, &[24]),
        Err(SealError::BadPcrIndex { index: 24 })
    ));
}

#[test]
fn ten_round_trips_leak_no_handle() {
    let sw = Swtpm::start().expect("swtpm");
    let mut tpm = SealTpm::open(&sw.tcti()).expect("open");
    for i in 0..10u8 {
        let secret = [i; 64];
        let pcrs: &[u8] = if i % 2 == 0 { &[7] } else { &[] };
        let blob = seal(&mut tpm, &secret, pcrs).expect("seal");
        assert_eq!(unseal(&mut tpm, &blob).expect("unseal").expose(), secret);
    }
    assert_eq!(tpm.transient_count().expect("handles"), 0);
}

#[test]
fn unreachable_tpm_is_a_tcti_error() {
    // A port nothing listens on: bind then drop to find one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    match SealTpm::open(&format!("swtpm:host=127.0.0.1,port={port}")) {
        Err(SealError::Tcti { tcti, .. }) => assert!(tcti.contains(&port.to_string())),
        Ok(_) => panic!("opened a TPM on a closed port"),
        Err(e) => panic!("expected Tcti, got {e:?}"),
    }
}
