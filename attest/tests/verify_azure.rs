//! `attest::verify` on Azure evidence (kind `azure-sev-snp`) built from the real
//! recorded files (`../shared/evidence/azure`): the HCL report, its VCEK, and the vTPM
//! quote made with HCLAkPub. A recorded report cannot bind a fresh call, so `binding`
//! (its user-data is zeros) and `tpm quote` (its extraData is `challenge`) fail, and
//! must fail for that reason; `tee` passes. A quote from a key other than HCLAkPub
//! fails `tpm quote`.

use attest::binding::{Manifest, ManifestEntry, Nonce};
use attest::evidence::{Base64, Evidence, TeeEvidence, TpmEvidence};
use attest::tee::azure::{self};
use attest::tee::snp::SnpCerts;
use attest::tpm::quote::PcrValues;
use attest::verify::{self, names, Expectations};
use rsa::traits::PublicKeyParts as _;
use std::time::{Duration, SystemTime};
use testkit::evidence::AzureSnp as Recorded;

fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_736_000)
}

/// A TPMT_PUBLIC for an RSA-2048 restricted signing key (RSASSA-SHA256) with modulus
/// `n`: the shape of Azure's AK at 0x81000003 as `TPM2_ReadPublic` returns it.
fn rsa_tpmt(n: &[u8]) -> Vec<u8> {
    let mut t = vec![0x00, 0x01, 0x00, 0x0b];
    t.extend_from_slice(&0x0005_0072u32.to_be_bytes());
    t.extend_from_slice(&[0x00, 0x00, 0x00, 0x10, 0x00, 0x14, 0x00, 0x0b, 0x08, 0x00]);
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(&u16::try_from(n.len()).expect("short").to_be_bytes());
    t.extend_from_slice(n);
    t
}

/// The modulus of HCLAkPub, the quote key the recorded HCL report vouches for.
fn hcl_ak_modulus(r: &Recorded) -> Vec<u8> {
    azure::verify_snp(
        &r.report,
        &SnpCerts {
            vcek_or_vlek: Some(r.vcek.clone()),
            chain_pem: None,
        },
        at(),
    )
    .expect("verifies")
    .runtime
    .ak_pub
    .n()
    .to_bytes_be()
}

/// The recorded evidence with the TPM quote said to be made by the RSA key of modulus
/// `ak_modulus`, and `nonce`.
fn evidence(r: &Recorded, ak_modulus: &[u8], nonce: Nonce) -> Evidence {
    let mut pcrs = PcrValues::new();
    for (i, v) in r.pcrs.iter().enumerate() {
        pcrs.insert(
            attest::hash::HashAlg::Sha256,
            u8::try_from(i).expect("index"),
            v.clone(),
        )
        .expect("pcr");
    }
    Evidence {
        version: 1,
        nonce,
        batch: None,
        domain: "vm.example.com".into(),
        manifest: Manifest::new(vec![ManifestEntry {
            name: "vm.example.com".into(),
            cert_sha256: [7; 32],
            spki_sha256: [8; 32],
        }])
        .expect("manifest"),
        tee: TeeEvidence::AzureSevSnp {
            hcl_report: Base64(r.report.clone()),
            cert_chain: Some(Base64(r.vcek.clone())),
        },
        tpm: Some(TpmEvidence {
            ak_public: Base64(rsa_tpmt(ak_modulus)),
            quote: Base64(r.message.clone()),
            signature: Base64(r.signature.clone()),
            pcrs,
        }),
        ima_log: None,
        ima_log_from: None,
    }
}

fn check<'a>(checks: &'a [attest::check::Check], name: &str) -> &'a attest::check::Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .expect("check present")
}

#[test]
fn recorded_azure_evidence_passes_tee_and_fails_only_what_a_recording_cannot_bind() {
    let Some(r) = testkit::evidence::azure_snp() else {
        return;
    };
    let nonce = Nonce([5; 32]);
    let e = evidence(&r, &hcl_ak_modulus(&r), nonce);
    // The evidence JSON round-trips with its kind.
    let json = e.to_json();
    assert!(String::from_utf8_lossy(&json).contains("\"kind\": \"azure-sev-snp\""));
    let back = Evidence::from_json(&json).expect("parses back");
    assert_eq!(back, e);

    let checks = verify::verify(&back, &Expectations::new(nonce, at()));
    assert!(check(&checks, names::NONCE).passed());
    let tee = check(&checks, names::TEE);
    assert!(tee.passed(), "{}", tee.detail);
    assert!(tee.detail.contains("Azure HCL report"), "{}", tee.detail);
    // The recorded user-data is 64 zero bytes: not this call's report_data.
    let binding = check(&checks, names::BINDING);
    assert!(!binding.passed());
    assert!(
        binding.detail.contains("azure-sev-snp report_data is 0000"),
        "{}",
        binding.detail
    );
    // The quote is HCLAkPub's, but its extraData is `challenge`.
    let quote = check(&checks, names::TPM_QUOTE);
    assert!(!quote.passed());
    assert!(
        quote.detail.contains("extraData") || quote.detail.contains("qualifying"),
        "{}",
        quote.detail
    );
}

#[test]
fn a_quote_key_other_than_hclakpub_fails_tpm_quote() {
    let Some(r) = testkit::evidence::azure_snp() else {
        return;
    };
    // A key whose TPMT_PUBLIC parses but is not HCLAkPub: the modulus with a flipped
    // byte in its middle (odd, so still a valid RSA modulus for parsing).
    let mut n = hcl_ak_modulus(&r);
    n[100] ^= 0x10;
    let nonce = Nonce([5; 32]);
    let checks = verify::verify(&evidence(&r, &n, nonce), &Expectations::new(nonce, at()));
    let quote = check(&checks, names::TPM_QUOTE);
    assert!(!quote.passed());
    // The signature fails first (the key differs); a bad signature is a failure either way.
    assert!(
        quote.detail.contains("signature") || quote.detail.contains("HCLAkPub"),
        "{}",
        quote.detail
    );
}
