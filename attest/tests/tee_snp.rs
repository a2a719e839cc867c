//! SEV-SNP verification against real evidence (`../shared/evidence/snp`, see its README):
//! a Milan report with its VCEK, and a Turin VCEK chain. Every tampering must fail.

use attest::tee::snp::{
    self, check_certificate_signature, check_guest_policy, parse_report, verify_endorsement_key,
    EndorsementKind, Product, SnpCerts, SnpError, REPORT_LEN, SIGNED_LEN,
};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

fn evidence_dir() -> Option<PathBuf> {
    testkit::evidence::dir("snp")
}

struct Evidence {
    report: Vec<u8>,
    milan_vcek: Vec<u8>,
    milan_chain: Vec<u8>,
    turin_vcek: Vec<u8>,
    turin_chain: Vec<u8>,
}

fn evidence() -> Option<Evidence> {
    let d = evidence_dir()?;
    let read = |n: &str| std::fs::read(d.join(n)).expect("evidence file readable");
    Some(Evidence {
        report: read("milan-report.bin"),
        milan_vcek: read("milan-vcek.der"),
        milan_chain: read("milan-ask-ark.pem"),
        turin_vcek: read("turin-vcek.der"),
        turin_chain: read("turin-ask-ark.pem"),
    })
}

/// 2025-01-01T00:00:00Z: inside the validity of both VCEKs (Milan 2023-04-03..2030-04-03,
/// Turin 2024-11-06..2031-11-06) and of the ASKs/ARKs.
fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

fn vcek_only(e: &Evidence) -> SnpCerts {
    SnpCerts {
        vcek_or_vlek: Some(e.milan_vcek.clone()),
        chain_pem: None,
    }
}

#[test]
fn milan_report_verifies_under_its_vcek_and_the_pinned_milan_ark() {
    let Some(e) = evidence() else { return };
    let v = snp::verify(&e.report, &vcek_only(&e), at()).expect("valid Milan report");
    assert_eq!(v.version, 2);
    assert_eq!(v.product, Product::Milan);
    assert_eq!(v.signed_by, EndorsementKind::Vcek);
    assert_eq!(v.policy, 0x30000);
    assert!(v.guest_policy().smt_allowed());
    assert!(!v.guest_policy().debug_allowed());
    assert!(!v.guest_policy().migrate_ma());
    assert_eq!(v.vmpl, 0);
    // Values read independently from the report bytes (offsets 0x50, 0x90, 0x180).
    assert_eq!(
        hex::encode(v.measurement),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(hex::encode(&v.report_data[..8]), "d447b55d197491bf");
    assert_eq!(
        (
            v.reported_tcb.bootloader,
            v.reported_tcb.tee,
            v.reported_tcb.snp,
            v.reported_tcb.microcode
        ),
        (3, 0, 8, 0x73)
    );
    assert_eq!(v.reported_tcb.fmc, None);
    assert_eq!(hex::encode(&v.chip_id[..4]), "d49554ec");
}

#[test]
fn milan_report_verifies_with_the_chain_that_comes_with_it() {
    let Some(e) = evidence() else { return };
    let with_chain = SnpCerts {
        vcek_or_vlek: Some(e.milan_vcek.clone()),
        chain_pem: Some(e.milan_chain.clone()),
    };
    assert_eq!(
        snp::verify(&e.report, &with_chain, at()).map(|v| v.product),
        Ok(Product::Milan)
    );

    // The VCEK may come inside the chain itself (as from an extended report).
    let mut bundle = attest::pem::der_to_pem(&e.milan_vcek).into_bytes();
    bundle.extend_from_slice(&e.milan_chain);
    let in_chain = SnpCerts {
        vcek_or_vlek: None,
        chain_pem: Some(bundle),
    };
    assert_eq!(
        snp::verify(&e.report, &in_chain, at()).map(|v| v.product),
        Ok(Product::Milan)
    );
}

#[test]
fn no_vcek_at_all_is_refused() {
    let Some(e) = evidence() else { return };
    let only_chain = SnpCerts {
        vcek_or_vlek: None,
        chain_pem: Some(e.milan_chain.clone()),
    };
    assert_eq!(
        snp::verify(&e.report, &only_chain, at()),
        Err(SnpError::MissingEndorsementKey(EndorsementKind::Vcek))
    );
}

#[test]
fn pinned_ark_and_ask_equal_the_evidence_copies() {
    let Some(e) = evidence() else { return };
    for (product, chain) in [
        (Product::Milan, &e.milan_chain),
        (Product::Turin, &e.turin_chain),
    ] {
        let evidence_ders = snp::pem_certificates(chain).expect("evidence chain parses");
        let ask = snp::pem_certificates(product.pinned_ask_pem()).expect("pinned ASK");
        let ark = snp::pem_certificates(product.pinned_ark_pem()).expect("pinned ARK");
        assert_eq!(
            evidence_ders,
            vec![ask[0].clone(), ark[0].clone()],
            "{product}"
        );
    }
}

#[test]
fn turin_and_milan_vcek_chains_are_valid_and_name_their_product() {
    let Some(e) = evidence() else { return };
    let kind = EndorsementKind::Vcek;
    assert_eq!(
        verify_endorsement_key(&e.turin_vcek, kind, None, at()),
        Ok(Product::Turin)
    );
    assert_eq!(
        verify_endorsement_key(&e.turin_vcek, kind, Some(&e.turin_chain), at()),
        Ok(Product::Turin)
    );
    assert_eq!(
        verify_endorsement_key(&e.milan_vcek, kind, None, at()),
        Ok(Product::Milan)
    );
    // A VCEK is not a VLEK.
    assert!(matches!(
        verify_endorsement_key(&e.turin_vcek, EndorsementKind::Vlek, None, at()),
        Err(SnpError::WrongEndorsementKey { .. })
    ));
}

#[test]
fn turin_vcek_with_milan_report_is_a_product_mismatch() {
    let Some(e) = evidence() else { return };
    let certs = SnpCerts {
        vcek_or_vlek: Some(e.turin_vcek.clone()),
        chain_pem: Some(e.turin_chain.clone()),
    };
    assert_eq!(
        snp::verify(&e.report, &certs, at()),
        Err(SnpError::ProductMismatch {
            report: Product::Milan,
            chain: Product::Turin,
            key: EndorsementKind::Vcek
        })
    );
}

#[test]
fn time_outside_the_vcek_validity_fails() {
    let Some(e) = evidence() else { return };
    let before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_672_531_200); // 2023-01-01
    let after = SystemTime::UNIX_EPOCH + Duration::from_secs(1_924_992_000); // 2031-01-01
    assert!(matches!(
        snp::verify(&e.report, &vcek_only(&e), before),
        Err(SnpError::CertificateNotYetValid { ref which, .. }) if which == "VCEK"
    ));
    assert!(matches!(
        snp::verify(&e.report, &vcek_only(&e), after),
        Err(SnpError::CertificateExpired { ref which, .. }) if which == "VCEK"
    ));
    // The ARK's own validity counts too (Milan ARK from 2020-10-22).
    let too_early = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800); // 2020-01-01
    assert!(matches!(
        verify_endorsement_key(&e.milan_vcek, EndorsementKind::Vcek, None, too_early),
        Err(SnpError::CertificateNotYetValid { .. })
    ));
}

/// Positions to flip in a buffer: every `step`-th byte plus the last one.
fn sample(len: usize, step: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..len).step_by(step).collect();
    v.push(len - 1);
    v
}

#[test]
fn flipping_signed_bytes_of_the_report_fails() {
    let Some(e) = evidence() else { return };
    let certs = vcek_only(&e);
    // A fifth of the signed area (every 5th byte; the whole area takes minutes in a
    // debug build): each flip changes what the VCEK signed.
    let positions = sample(SIGNED_LEN, 5);
    for &pos in &positions {
        let mut r = e.report.clone();
        r[pos] ^= 0x01;
        assert!(
            snp::verify(&r, &certs, at()).is_err(),
            "flip at {pos:#x} accepted"
        );
    }
    eprintln!("flipped {} of {SIGNED_LEN} signed bytes", positions.len());
}

#[test]
fn flipping_any_byte_of_the_signature_or_its_padding_fails() {
    let Some(e) = evidence() else { return };
    let certs = vcek_only(&e);
    for pos in SIGNED_LEN..REPORT_LEN {
        let mut r = e.report.clone();
        r[pos] ^= 0x80;
        let err = snp::verify(&r, &certs, at()).expect_err("tampered signature accepted");
        if pos >= SIGNED_LEN + 144 {
            assert_eq!(err, SnpError::UnsignedBytesNotZero { offset: pos });
        } else if (SIGNED_LEN + 48..SIGNED_LEN + 72).contains(&pos) {
            assert_eq!(err, SnpError::SignatureScalarTooLong { component: "r" });
        }
    }
}

#[test]
fn flipping_bytes_of_the_vcek_fails() {
    let Some(e) = evidence() else { return };
    let positions = sample(e.milan_vcek.len(), 3);
    for &pos in &positions {
        let mut vcek = e.milan_vcek.clone();
        vcek[pos] ^= 0x01;
        let certs = SnpCerts {
            vcek_or_vlek: Some(vcek),
            chain_pem: None,
        };
        assert!(
            snp::verify(&e.report, &certs, at()).is_err(),
            "VCEK flip at {pos} accepted"
        );
    }
    eprintln!(
        "flipped {} of {} VCEK bytes",
        positions.len(),
        e.milan_vcek.len()
    );
}

#[test]
fn flipping_bytes_of_the_ask_or_ark_breaks_their_signatures() {
    let Some(e) = evidence() else { return };
    for chain in [&e.milan_chain, &e.turin_chain] {
        let ders = snp::pem_certificates(chain).expect("chain parses");
        let (ask, ark) = (&ders[0], &ders[1]);
        check_certificate_signature(ark, ask).expect("ARK signs ASK");
        check_certificate_signature(ark, ark).expect("ARK self-signed");
        for &pos in &sample(ask.len(), 7) {
            let mut t = ask.clone();
            t[pos] ^= 0x01;
            assert!(
                check_certificate_signature(ark, &t).is_err(),
                "ASK flip at {pos}"
            );
        }
        for &pos in &sample(ark.len(), 7) {
            let mut t = ark.clone();
            t[pos] ^= 0x01;
            // Either the tampered ARK no longer verifies itself, or (key bytes changed)
            // it no longer verifies the ASK.
            let broken = check_certificate_signature(&t, &t).is_err()
                || check_certificate_signature(&t, ask).is_err();
            assert!(broken, "ARK flip at {pos}");
        }
    }
}

#[test]
fn a_self_signed_root_in_the_offered_chain_is_never_trusted() {
    let Some(e) = evidence() else { return };
    // Offer the Turin ARK as the issuer of the Milan VCEK: it is self-issued and not
    // the Milan ARK, so the Milan chain still decides (and still passes).
    let ders = snp::pem_certificates(&e.turin_chain).expect("chain parses");
    let pem = attest::pem::der_to_pem(&ders[1]);
    let got = verify_endorsement_key(
        &e.milan_vcek,
        EndorsementKind::Vcek,
        Some(pem.as_bytes()),
        at(),
    );
    assert_eq!(got, Ok(Product::Milan));
}

#[test]
fn debug_policy_is_refused_by_the_policy_check() {
    let Some(e) = evidence() else { return };
    let mut parsed = parse_report(&e.report).expect("parses");
    assert_eq!(check_guest_policy(&parsed), Ok(()));
    parsed.policy = snp::GuestPolicy(parsed.policy.0 | (1 << 19));
    assert_eq!(
        check_guest_policy(&parsed),
        Err(SnpError::DebugAllowed {
            policy: 0x30000 | (1 << 19)
        })
    );
}

#[test]
fn bad_lengths_and_versions_are_named_errors() {
    let Some(e) = evidence() else { return };
    for len in [0, 4, SIGNED_LEN, REPORT_LEN - 1] {
        assert_eq!(
            parse_report(&e.report[..len]),
            Err(SnpError::ReportLength {
                expected: REPORT_LEN,
                got: len
            })
        );
    }
    let mut long = e.report.clone();
    long.push(0);
    assert_eq!(
        parse_report(&long),
        Err(SnpError::ReportLength {
            expected: REPORT_LEN,
            got: REPORT_LEN + 1
        })
    );
    for version in [0u32, 1, 4, 6, u32::MAX] {
        let mut r = e.report.clone();
        r[..4].copy_from_slice(&version.to_le_bytes());
        assert_eq!(parse_report(&r), Err(SnpError::UnsupportedVersion(version)));
    }
    let mut r = e.report.clone();
    r[0x34] = 2;
    assert_eq!(
        parse_report(&r),
        Err(SnpError::UnsupportedSignatureAlgorithm(2))
    );
    let mut r = e.report.clone();
    r[0x48] = 7 << 2;
    assert_eq!(
        parse_report(&r).and_then(|p| p.endorsement_kind()),
        Err(SnpError::UnsupportedSigningKey(7))
    );
}

#[test]
fn versions_3_and_5_parse_their_extra_fields() {
    let Some(e) = evidence() else { return };
    let mut r = e.report.clone();
    r[..4].copy_from_slice(&3u32.to_le_bytes());
    r[0x188..0x18B].copy_from_slice(&[0x19, 0x01, 0x01]);
    let p = parse_report(&r).expect("v3 parses");
    assert_eq!(p.cpuid_product(), Ok(Some(Product::Milan)));
    assert_eq!(p.launch_mit_vector, None);
    r[..4].copy_from_slice(&5u32.to_le_bytes());
    r[0x1F8..0x200].copy_from_slice(&7u64.to_le_bytes());
    let p = parse_report(&r).expect("v5 parses");
    assert_eq!(p.launch_mit_vector, Some(7));
    assert_eq!(p.current_mit_vector, Some(0));
    // A re-labelled report no longer matches its signature.
    assert!(snp::verify(&r, &vcek_only(&e), at()).is_err());
    r[0x188..0x18B].copy_from_slice(&[0x17, 0x31, 0]);
    assert_eq!(
        parse_report(&r).and_then(|p| p.cpuid_product()),
        Err(SnpError::UnknownCpu {
            family: 0x17,
            model: 0x31
        })
    );
}

#[test]
fn every_prefix_of_the_report_is_an_error_not_a_panic() {
    let Some(e) = evidence() else { return };
    for len in 0..REPORT_LEN {
        assert!(parse_report(&e.report[..len]).is_err());
    }
}

#[test]
fn garbage_certificates_are_named_errors() {
    let Some(e) = evidence() else { return };
    let certs = SnpCerts {
        vcek_or_vlek: Some(b"not a certificate".to_vec()),
        chain_pem: None,
    };
    assert!(matches!(
        snp::verify(&e.report, &certs, at()),
        Err(SnpError::CertificateParse { ref which, .. }) if which == "VCEK"
    ));
    let certs = SnpCerts {
        vcek_or_vlek: Some(e.milan_vcek.clone()),
        chain_pem: Some(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec()),
    };
    assert!(matches!(
        snp::verify(&e.report, &certs, at()),
        Err(SnpError::CertificateParse { .. })
    ));
    // The ASK in place of the VCEK: wrong kind of certificate.
    let ask = snp::pem_certificates(&e.milan_chain).expect("chain")[0].clone();
    let certs = SnpCerts {
        vcek_or_vlek: Some(ask),
        chain_pem: None,
    };
    assert!(matches!(
        snp::verify(&e.report, &certs, at()),
        Err(SnpError::WrongEndorsementKey { .. })
    ));
}

#[test]
fn empty_or_blank_chains_do_not_panic() {
    let Some(e) = evidence() else { return };
    for chain in [
        &b""[..],
        b"\n",
        b"\r\n",
        b"-----END CERTIFICATE-----",
        b"-----BEGIN CERTIFICATE-----\n",
    ] {
        let certs = SnpCerts {
            vcek_or_vlek: Some(e.milan_vcek.clone()),
            chain_pem: Some(chain.to_vec()),
        };
        // A blank chain offers nothing (the pinned ASK still serves); a broken one is an error.
        let got = snp::verify(&e.report, &certs, at());
        if chain.iter().all(u8::is_ascii_whitespace) {
            assert_eq!(got.map(|v| v.product), Ok(Product::Milan));
        } else {
            assert!(
                matches!(got, Err(SnpError::CertificateParse { .. })),
                "{got:?}"
            );
        }
    }
}

/// Every byte of the report, flipped one at a time (slow in a debug build: run with
/// `cargo test -p attest --release --test tee_snp -- --ignored`).
#[test]
#[ignore = "exhaustive; minutes in a debug build"]
fn flipping_every_byte_of_the_report_fails() {
    let Some(e) = evidence() else { return };
    let certs = vcek_only(&e);
    for pos in 0..REPORT_LEN {
        let mut r = e.report.clone();
        r[pos] ^= 0x01;
        assert!(
            snp::verify(&r, &certs, at()).is_err(),
            "flip at {pos:#x} accepted"
        );
    }
}

#[test]
fn truncated_der_inside_pem_is_an_error_not_a_hang() {
    let Some(e) = evidence() else { return };
    // `MA==` (the one byte 0x30) makes der 0.7.10's `Certificate::from_pem` loop forever
    // (checked outside this project); our PEM decoding must answer with an error.
    for der in [&[0x30u8][..], &[0x30, 0x82, 0x10, 0x00, 1, 2, 3]] {
        let pem = attest::pem::der_to_pem(der);
        let certs = SnpCerts {
            vcek_or_vlek: Some(e.milan_vcek.clone()),
            chain_pem: Some(pem.into_bytes()),
        };
        assert!(matches!(
            snp::verify(&e.report, &certs, at()),
            Err(SnpError::CertificateParse { .. })
        ));
    }
    // The VCEK itself as a truncated PEM.
    let pem = attest::pem::der_to_pem(&e.milan_vcek[..e.milan_vcek.len() / 2]);
    let certs = SnpCerts {
        vcek_or_vlek: Some(pem.into_bytes()),
        chain_pem: None,
    };
    assert!(matches!(
        snp::verify(&e.report, &certs, at()),
        Err(SnpError::CertificateParse { .. })
    ));
}
