//! Quotes from a real TPM (swtpm) through the collection code, verified by the pure-Rust
//! verifier: the good quote passes, and each kind of tampering or substitution fails
//! with the error that names it.
#![cfg(feature = "tpm-collect")]

use attest::tpm::collect::{CollectError, Tpm, DEFAULT_AK_HANDLE};
use attest::tpm::quote::{self, HashAlg, PcrValues, QuoteError};
use sha2::{Digest, Sha256};
use std::process::Command;
use testkit::swtpm::Swtpm;

fn nonce(tag: u8) -> Vec<u8> {
    Sha256::digest([tag]).to_vec()
}

/// A started swtpm and an open TPM with its AK created.
fn tpm() -> (Swtpm, Tpm) {
    let sw = Swtpm::start().expect("swtpm starts");
    let mut tpm = Tpm::open(&sw.tcti()).expect("TPM opens");
    tpm.attestation_key(DEFAULT_AK_HANDLE).expect("AK");
    (sw, tpm)
}

/// Extends PCR 10 (SHA-256) with two measurements and returns the value it should hold.
fn extend_two(tpm: &mut Tpm) -> Vec<u8> {
    let mut pcr = vec![0u8; 32];
    for m in [b"first".as_slice(), b"second".as_slice()] {
        let d = Sha256::digest(m);
        tpm.extend_pcr(10, HashAlg::Sha256, &d).expect("extend");
        let mut h = Sha256::new();
        h.update(&pcr);
        h.update(d);
        pcr = h.finalize().to_vec();
    }
    pcr
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[at] ^= 0x01;
    v
}

#[test]
fn good_quote_verifies_and_reports_the_counters() {
    let (_sw, mut tpm) = tpm();
    let expected_pcr = extend_two(&mut tpm);
    let n = nonce(1);
    let q = tpm.quote(&n, &[10]).expect("quote");
    assert_eq!(
        q.pcrs.get(HashAlg::Sha256, 10),
        Some(expected_pcr.as_slice())
    );
    let v = quote::verify(&q.ak_public, &q.attest, &q.signature, &q.pcrs, &n).expect("verifies");
    assert_eq!(v.reset_count, q.reset_count());
    assert_eq!(v.restart_count, q.restart_count());
    assert_eq!(v.extra_data, n);
    assert_eq!(v.signature_scheme, "ECDSA-SHA256");
    assert_eq!(quote::display_selection(&v.pcr_select), "sha256:10");
    v.check_counts(q.reset_count(), q.restart_count())
        .expect("same counters");
}

#[test]
fn wrong_nonce_is_a_qualifying_data_mismatch() {
    let (_sw, mut tpm) = tpm();
    let q = tpm.quote(&nonce(1), &[10]).expect("quote");
    let err = quote::verify(&q.ak_public, &q.attest, &q.signature, &q.pcrs, &nonce(2)).unwrap_err();
    assert_eq!(
        err,
        QuoteError::QualifyingDataMismatch {
            expected: nonce(2),
            got: nonce(1)
        }
    );
}

#[test]
fn any_flipped_byte_of_the_quote_fails() {
    let (_sw, mut tpm) = tpm();
    extend_two(&mut tpm);
    let n = nonce(3);
    let q = tpm.quote(&n, &[10]).expect("quote");
    let verify = |attest: &[u8]| quote::verify(&q.ak_public, attest, &q.signature, &q.pcrs, &n);
    assert!(matches!(
        verify(&flip(&q.attest, 0)),
        Err(QuoteError::BadMagic { .. })
    ));
    assert!(matches!(
        verify(&flip(&q.attest, 5)),
        Err(QuoteError::WrongType { .. })
    ));
    // Every other byte: the structure may still parse, but the signature no longer
    // covers it (or a length field now points past the end).
    for at in 6..q.attest.len() {
        let err = verify(&flip(&q.attest, at)).unwrap_err();
        assert!(
            matches!(
                err,
                QuoteError::BadSignature
                    | QuoteError::Truncated { .. }
                    | QuoteError::TrailingBytes { .. }
                    | QuoteError::Malformed { .. }
                    | QuoteError::UnsupportedAlgorithm { .. }
            ),
            "byte {at}: {err:?}"
        );
    }
    // The clock is a field whose flip leaves the structure intact: only the signature
    // catches it. Its offset: magic 4, type 2, then two TPM2B fields.
    let signer_len = usize::from(u16::from_be_bytes([q.attest[6], q.attest[7]]));
    let extra_at = 8 + signer_len;
    let clock_at = extra_at + 2 + n.len();
    assert_eq!(
        verify(&flip(&q.attest, clock_at + 7)),
        Err(QuoteError::BadSignature)
    );
}

#[test]
fn a_flipped_byte_of_the_signature_fails() {
    let (_sw, mut tpm) = tpm();
    let n = nonce(4);
    let q = tpm.quote(&n, &[10]).expect("quote");
    // sigAlg(2) hash(2) size(2) r... : flip inside r, and the last byte of s.
    for at in [6, 20, q.signature.len() - 1] {
        assert_eq!(
            quote::verify(
                &q.ak_public,
                &q.attest,
                &flip(&q.signature, at),
                &q.pcrs,
                &n
            ),
            Err(QuoteError::BadSignature),
            "byte {at}"
        );
    }
    // The scheme's hash changed to SHA-384: not this key's scheme.
    let mut other_hash = q.signature.clone();
    other_hash[3] = 0x0c;
    assert_eq!(
        quote::verify(&q.ak_public, &q.attest, &other_hash, &q.pcrs, &n),
        Err(QuoteError::BadSignature)
    );
    // The sigAlg changed to HMAC: refused before any check.
    let mut hmac = q.signature.clone();
    hmac[1] = 0x05;
    assert!(matches!(
        quote::verify(&q.ak_public, &q.attest, &hmac, &q.pcrs, &n),
        Err(QuoteError::UnsupportedAlgorithm { .. })
    ));
}

#[test]
fn another_tpms_ak_does_not_verify_the_quote() {
    let (_sw1, mut tpm1) = tpm();
    let (_sw2, mut tpm2) = tpm();
    let n = nonce(5);
    let q = tpm1.quote(&n, &[10]).expect("quote");
    let other_ak = tpm2.attestation_key(DEFAULT_AK_HANDLE).expect("AK 2");
    assert_ne!(other_ak, q.ak_public, "two TPMs, two keys");
    assert_eq!(
        quote::verify(&other_ak, &q.attest, &q.signature, &q.pcrs, &n),
        Err(QuoteError::BadSignature)
    );
}

#[test]
fn wrong_missing_or_extra_pcr_values_fail() {
    let (_sw, mut tpm) = tpm();
    let good = extend_two(&mut tpm);
    let n = nonce(6);
    let q = tpm.quote(&n, &[10]).expect("quote");
    let check = |pcrs: &PcrValues| quote::verify(&q.ak_public, &q.attest, &q.signature, pcrs, &n);

    let mut wrong = PcrValues::new();
    wrong.insert(HashAlg::Sha256, 10, flip(&good, 0)).unwrap();
    assert!(matches!(
        check(&wrong),
        Err(QuoteError::PcrDigestMismatch { .. })
    ));

    assert_eq!(
        check(&PcrValues::new()),
        Err(QuoteError::MissingPcr {
            bank: "sha256",
            index: 10
        })
    );

    let mut extra = q.pcrs.clone();
    extra.insert(HashAlg::Sha256, 11, vec![0; 32]).unwrap();
    assert_eq!(
        check(&extra),
        Err(QuoteError::UnquotedPcr {
            bank: "sha256",
            index: 11
        })
    );
}

#[test]
fn reboot_keeps_the_ak_and_raises_reset_count() {
    let (mut sw, mut tpm) = tpm();
    let n = nonce(7);
    let before = tpm.quote(&n, &[10]).expect("quote before");
    drop(tpm);
    sw.restart().expect("swtpm restarts");
    let mut tpm = Tpm::open(&sw.tcti()).expect("TPM reopens");
    let ak_after = tpm.attestation_key(DEFAULT_AK_HANDLE).expect("AK after");
    assert_eq!(
        ak_after, before.ak_public,
        "the persisted AK survives the reboot"
    );
    let after = tpm.quote(&n, &[10]).expect("quote after");
    assert_eq!(after.reset_count(), before.reset_count() + 1);
    // The new quote is genuine, but not from the boot the snapshot recorded.
    let v = quote::verify(
        &after.ak_public,
        &after.attest,
        &after.signature,
        &after.pcrs,
        &n,
    )
    .expect("signature still valid");
    assert_eq!(
        v.check_counts(before.reset_count(), before.restart_count()),
        Err(QuoteError::ResetCountMismatch {
            expected: before.reset_count(),
            got: before.reset_count() + 1
        })
    );
    // And the PCRs start over: PCR 10 is back to zeros.
    assert_eq!(
        after.pcrs.get(HashAlg::Sha256, 10),
        Some([0u8; 32].as_slice())
    );
}

#[test]
fn many_quotes_leak_no_transient_objects() {
    let (sw, mut tpm) = tpm();
    // swtpm has 3 transient object slots and no resource manager: a leak per quote
    // would fail by the fourth.
    for i in 0..10u8 {
        let n = nonce(100 + i);
        let q = tpm.quote(&n, &[10, 16]).expect("quote");
        quote::verify(&q.ak_public, &q.attest, &q.signature, &q.pcrs, &n).expect("verifies");
    }
    // Reopening reloads the persistent AK without creating anything.
    for _ in 0..5 {
        drop(tpm);
        tpm = Tpm::open(&sw.tcti()).expect("reopen");
        tpm.attestation_key(DEFAULT_AK_HANDLE).expect("AK");
    }
    // Creating an AK goes through a transient primary key: four creations in a row
    // would run out of the three slots if one were left behind.
    for i in 0..4u32 {
        tpm.attestation_key(0x8101_0110 + i).expect("new AK");
    }
    drop(tpm);
    // Ask the TPM itself, through tpm2-tools, what is still loaded.
    for cap in ["handles-transient", "handles-loaded-session"] {
        let out = Command::new("tpm2_getcap")
            .arg(cap)
            .env("TPM2TOOLS_TCTI", sw.tcti())
            .output()
            .expect("tpm2_getcap runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.trim().is_empty(), "{cap} still loaded: {text}");
    }
}

#[test]
fn several_banks_and_pcrs_in_one_quote() {
    let (_sw, mut tpm) = tpm();
    tpm.extend_pcr(10, HashAlg::Sha1, &[7u8; 20])
        .expect("sha1 extend");
    tpm.extend_pcr(16, HashAlg::Sha256, &[9u8; 32])
        .expect("sha256 extend");
    let n = nonce(8);
    let q = tpm
        .quote_banks(
            &n,
            &[(HashAlg::Sha256, vec![16, 10]), (HashAlg::Sha1, vec![10])],
        )
        .expect("quote");
    let v = quote::verify(&q.ak_public, &q.attest, &q.signature, &q.pcrs, &n).expect("verifies");
    // tss-esapi builds the selection list from a hash map, so the bank order of the
    // quote varies from run to run; the verification follows whatever order was quoted.
    let shown = quote::display_selection(&v.pcr_select);
    let mut banks: Vec<&str> = shown.split('+').collect();
    banks.sort_unstable();
    assert_eq!(banks, ["sha1:10", "sha256:10,16"], "{shown}");
    assert_eq!(q.pcrs.len(), 3);
    // The JSON form of the evidence (ARCHITECTURE.md, "Evidence") round-trips and still verifies.
    let json = serde_json::to_string(&q.pcrs).unwrap();
    assert!(json.starts_with("{\"sha1\":{\"10\":\""), "{json}");
    let back: PcrValues = serde_json::from_str(&json).unwrap();
    assert_eq!(back, q.pcrs);
}

#[test]
fn bad_collection_inputs_are_refused() {
    let (_sw, mut tpm) = tpm();
    assert!(matches!(
        tpm.extend_pcr(10, HashAlg::Sha256, &[0u8; 20]),
        Err(CollectError::DigestLength { got: 20, .. })
    ));
    assert!(matches!(
        tpm.extend_pcr(24, HashAlg::Sha256, &[0u8; 32]),
        Err(CollectError::BadPcrIndex { index: 24 })
    ));
    assert!(matches!(
        tpm.quote(&nonce(9), &[24]),
        Err(CollectError::BadPcrIndex { index: 24 })
    ));
    assert!(matches!(
        tpm.quote(&[0u8; 65], &[10]),
        Err(CollectError::QualifyingTooLong { got: 65 })
    ));
    assert!(matches!(
        tpm.attestation_key(0x8000_0001),
        Err(CollectError::NotPersistentHandle { .. })
    ));
    assert!(matches!(
        Tpm::open("nonsense:whatever"),
        Err(CollectError::Tcti { .. })
    ));
    assert!(matches!(
        Tpm::open("device:/dev/verigate-no-such-tpm"),
        Err(CollectError::Tcti { .. })
    ));
}

#[test]
fn a_foreign_key_at_the_ak_handle_is_left_alone() {
    let sw = Swtpm::start().expect("swtpm");
    let handle = 0x8101_0200u32;
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("primary.ctx");
    // A storage key (restricted decrypt), persisted where we will look for the AK.
    let run = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", sw.tcti())
            .output()
            .expect("tpm2-tools run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "tpm2_createprimary",
        "-C",
        "o",
        "-G",
        "ecc",
        "-c",
        ctx.to_str().unwrap(),
    ]);
    run(&[
        "tpm2_evictcontrol",
        "-C",
        "o",
        "-c",
        ctx.to_str().unwrap(),
        &format!("{handle:#x}"),
    ]);
    run(&["tpm2_flushcontext", "-t"]);
    let mut tpm = Tpm::open(&sw.tcti()).expect("open");
    let err = tpm.attestation_key(handle).unwrap_err();
    assert!(
        matches!(err, CollectError::ForeignKey { handle: h, .. } if h == handle),
        "{err}"
    );
    // Still there, untouched: asking again gives the same answer.
    assert!(matches!(
        tpm.attestation_key(handle),
        Err(CollectError::ForeignKey { .. })
    ));
}

#[test]
fn an_open_tpm_moves_to_another_thread() {
    // The gateway keeps one Tpm behind a mutex and quotes from blocking tasks.
    let (_sw, tpm) = tpm();
    let tpm = std::sync::Mutex::new(tpm);
    let n = nonce(10);
    let q = std::thread::scope(|s| {
        s.spawn(|| tpm.lock().unwrap().quote(&n, &[10]))
            .join()
            .unwrap()
    })
    .expect("quote on another thread");
    quote::verify(&q.ak_public, &q.attest, &q.signature, &q.pcrs, &n).expect("verifies");
}

#[test]
fn a_quote_over_no_pcrs_still_carries_the_counters() {
    let (_sw, mut tpm) = tpm();
    let n = nonce(11);
    let q = tpm.quote(&n, &[]).expect("quote");
    assert!(q.pcrs.is_empty());
    let v = quote::verify(&q.ak_public, &q.attest, &q.signature, &q.pcrs, &n).expect("verifies");
    assert_eq!(v.reset_count, q.reset_count());
    assert!(v.pcr_select.iter().all(|s| s.pcrs.is_empty()));
}
