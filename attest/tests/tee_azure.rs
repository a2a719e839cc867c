//! Azure HCL reports against real evidence (`../shared/evidence/azure`, see its README):
//! the SEV-SNP HCL report verifies to the Milan ARK through its VCEK, its runtime JSON
//! hashes into report_data and names HCLAkPub, under which the recorded vTPM quote
//! verifies; the TDX HCL report parses and its runtime JSON hashes into REPORTDATA. A
//! flipped byte in each part (header, hardware report, runtime JSON, quote, signature,
//! VCEK) fails, and every prefix and bad size is an error, never a panic.

use attest::tee::azure::hcl::{self, HardwareKind, HclError, RuntimeHash};
use attest::tee::azure::{self, runtime, AzureError, AzureStep};
use attest::tee::snp::SnpCerts;
use attest::tee::tdx::{ChainLink, TdxError};
use attest::tpm::quote::{AkPublic, QuoteInfo, TpmSignature};
use std::time::{Duration, SystemTime};

struct Snp {
    report: Vec<u8>,
    vcek: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
    pcr0: Vec<u8>,
}

fn snp() -> Option<Snp> {
    let r = testkit::evidence::azure_snp()?;
    Some(Snp {
        report: r.report,
        vcek: r.vcek,
        message: r.message,
        signature: r.signature,
        pcr0: r.pcrs.first().expect("PCR 0").clone(),
    })
}

fn tdx_report() -> Option<Vec<u8>> {
    let d = testkit::evidence::dir("azure")?;
    Some(std::fs::read(d.join("tdx-hcl-report.bin")).expect("evidence readable"))
}

/// 2025-06-01T00:00:00Z: inside the Azure VCEK's validity (from 2025-01-28), the ASK's and the ARK's.
fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_736_000)
}

fn certs(vcek: &[u8]) -> SnpCerts {
    SnpCerts {
        vcek_or_vlek: Some(vcek.to_vec()),
        chain_pem: None,
    }
}

const CHALLENGE: &[u8] = b"challenge";

#[test]
fn snp_hcl_report_verifies_link_by_link() {
    let Some(e) = snp() else { return };
    let parsed = hcl::parse(&e.report).expect("HCL report parses");
    assert_eq!(parsed.kind, HardwareKind::SevSnp);
    assert_eq!(parsed.runtime_hash, RuntimeHash::Sha256);
    assert_eq!(parsed.hardware_report.len(), 1184);
    assert_eq!(parsed.runtime_data.len(), 1110);

    let v = azure::verify_snp(&e.report, &certs(&e.vcek), at()).expect("chain verifies");
    // The README: user-data is 64 zero bytes.
    assert_eq!(v.runtime.user_data, [0u8; 64]);
    // report_data = SHA-256(runtime JSON) || 32 zero bytes.
    let digest = RuntimeHash::Sha256.digest(&parsed.runtime_data);
    assert_eq!(&v.snp.report_data[..32], digest.as_slice());
    assert!(v
        .runtime
        .vm_configuration
        .as_ref()
        .is_some_and(serde_json::Value::is_object));

    // HCLAkPub signs the recorded quote, whose extraData is ASCII `challenge`.
    let ak = AkPublic::from_rsa(v.runtime.ak_pub.clone());
    let sig = TpmSignature::parse_for_key(&e.signature, &ak).expect("plain RSASSA signature");
    assert_eq!(sig.describe(), "RSASSA-SHA256");
    sig.verify(&ak, &e.message)
        .expect("quote signed by HCLAkPub");
    let info = QuoteInfo::parse(&e.message).expect("TPMS_ATTEST");
    info.check_qualifying(CHALLENGE).expect("extraData");
    assert_eq!(
        hex::encode(&e.pcr0),
        "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    );
    // The PEM printed to users is a real SPKI the TPM-quote code reads back.
    let pem = runtime::ak_pub_pem(&v.runtime.ak_pub);
    let back = AkPublic::from_pem(&pem).expect("PEM round-trips");
    assert!(back.is_rsa_key(&v.runtime.ak_pub));
}

#[test]
fn the_tpmt_signature_form_verifies_too() {
    let Some(e) = snp() else { return };
    let v = azure::verify_snp(&e.report, &certs(&e.vcek), at()).expect("chain verifies");
    let ak = AkPublic::from_rsa(v.runtime.ak_pub);
    // TPMT_SIGNATURE: sigAlg RSASSA (0x0014), hash SHA-256 (0x000b), TPM2B size, bytes.
    let mut tpmt = vec![0x00, 0x14, 0x00, 0x0b, 0x01, 0x00];
    tpmt.extend_from_slice(&e.signature);
    let sig = TpmSignature::parse_for_key(&tpmt, &ak).expect("TPMT_SIGNATURE");
    sig.verify(&ak, &e.message).expect("same signature");
}

#[test]
fn a_flipped_byte_in_each_part_fails_at_its_link() {
    let Some(e) = snp() else { return };
    // Header: the signature, then report_size.
    for (offset, step) in [(0usize, AzureStep::Hcl), (8, AzureStep::Hcl)] {
        let mut r = e.report.clone();
        r[offset] ^= 1;
        let err = azure::verify_snp(&r, &certs(&e.vcek), at()).expect_err("header flip fails");
        assert_eq!(err.step(), step, "offset {offset}: {err}");
    }
    // Hardware report: measurement (signed) and the signature itself.
    for offset in [32 + 0x90, 32 + 0x2A0 + 3] {
        let mut r = e.report.clone();
        r[offset] ^= 1;
        let err = azure::verify_snp(&r, &certs(&e.vcek), at()).expect_err("report flip fails");
        assert!(matches!(err, AzureError::Snp(_)), "offset {offset}: {err}");
    }
    // Runtime JSON: inside HCLAkPub's modulus, and inside user-data.
    let json_at = hcl::REQUEST_DATA_OFFSET + hcl::REQUEST_HEADER_LEN;
    for needle in [&b"\"n\":\"mHSR"[..], &b"\"user-data\":\"0000"[..]] {
        let pos = e.report[json_at..]
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("field in the runtime JSON")
            + json_at
            + needle.len()
            - 1;
        let mut r = e.report.clone();
        r[pos] ^= 1;
        let err = azure::verify_snp(&r, &certs(&e.vcek), at()).expect_err("JSON flip fails");
        assert!(matches!(err, AzureError::RuntimeHash { .. }), "{err}");
        assert_eq!(err.step(), AzureStep::RuntimeHash);
    }
    // The padding after the runtime JSON is signed by nothing, so it must stay zero.
    let mut r = e.report.clone();
    let last = r.len() - 1;
    r[last] = 1;
    let err = azure::verify_snp(&r, &certs(&e.vcek), at()).expect_err("padding flip fails");
    assert!(matches!(
        err,
        AzureError::Hcl(HclError::NonZeroPadding { .. })
    ));
    // VCEK: a byte inside its signature (the last bytes of the DER).
    let der = attest::pem::decode_certificates(&e.vcek).expect("VCEK PEM")[0].clone();
    let mut bad = der.clone();
    let n = bad.len();
    bad[n - 10] ^= 1;
    let err = azure::verify_snp(&e.report, &certs(&bad), at()).expect_err("VCEK flip fails");
    assert!(matches!(err, AzureError::Snp(_)), "{err}");
    // Quote message and signature: the signature no longer verifies under HCLAkPub.
    let v = azure::verify_snp(&e.report, &certs(&e.vcek), at()).expect("chain verifies");
    let ak = AkPublic::from_rsa(v.runtime.ak_pub);
    let sig = TpmSignature::parse_for_key(&e.signature, &ak).expect("signature");
    let mut msg = e.message.clone();
    msg[40] ^= 1;
    assert!(sig.verify(&ak, &msg).is_err(), "flipped message");
    let mut s = e.signature.clone();
    s[100] ^= 1;
    let sig = TpmSignature::parse_for_key(&s, &ak).expect("signature");
    assert!(sig.verify(&ak, &e.message).is_err(), "flipped signature");
}

#[test]
fn every_prefix_and_bad_size_is_an_error() {
    let Some(e) = snp() else { return };
    for len in 0..e.report.len() {
        // Shorter than header + hardware report + request header + runtime JSON: an
        // error; from there on, only the zero padding is missing, which is fine.
        let end = hcl::REQUEST_DATA_OFFSET + hcl::REQUEST_HEADER_LEN + 1110;
        let got = hcl::parse(&e.report[..len]);
        if len < end {
            assert!(got.is_err(), "prefix of {len} bytes parsed");
        } else {
            assert!(got.is_ok(), "prefix of {len} bytes refused: {got:?}");
        }
    }
    // variable_data_size larger than the input.
    let mut r = e.report.clone();
    r[hcl::REQUEST_DATA_OFFSET + 16..hcl::REQUEST_DATA_OFFSET + 20]
        .copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        hcl::parse(&r),
        Err(HclError::RequestDataSize { .. })
    ));
    // data_size and variable_data_size agree, but the header's report_size does not.
    let mut r = e.report.clone();
    r[8..12].copy_from_slice(&5000u32.to_le_bytes());
    assert!(matches!(hcl::parse(&r), Err(HclError::ReportSize { .. })));
    // Both sizes raised together past the input: truncated.
    let mut r = e.report.clone();
    let big = 60_000u32;
    r[hcl::REQUEST_DATA_OFFSET..hcl::REQUEST_DATA_OFFSET + 4]
        .copy_from_slice(&(big + 20).to_le_bytes());
    r[hcl::REQUEST_DATA_OFFSET + 16..hcl::REQUEST_DATA_OFFSET + 20]
        .copy_from_slice(&big.to_le_bytes());
    r[8..12].copy_from_slice(&(big + 20 + 1216).to_le_bytes());
    assert!(matches!(hcl::parse(&r), Err(HclError::Truncated(_))));
    // Unknown report and hash types.
    let mut r = e.report.clone();
    r[hcl::REQUEST_DATA_OFFSET + 8] = 3;
    assert_eq!(hcl::parse(&r), Err(HclError::ReportType(3)));
    let mut r = e.report.clone();
    r[hcl::REQUEST_DATA_OFFSET + 12] = 9;
    assert_eq!(hcl::parse(&r), Err(HclError::HashType(9)));
    // Too large.
    assert!(matches!(
        hcl::parse(&vec![0u8; hcl::MAX_HCL_REPORT_BYTES + 1]),
        Err(HclError::TooLarge { .. })
    ));
}

#[test]
fn bad_runtime_json_is_named() {
    assert!(matches!(
        runtime::parse(b"not json"),
        Err(runtime::RuntimeError::Json(_))
    ));
    assert_eq!(
        runtime::parse(br#"{"keys":[],"user-data":"00"}"#),
        Err(runtime::RuntimeError::NoAkPub)
    );
    assert!(matches!(
        runtime::parse(br#"{"keys":[{"kid":"HCLAkPub","kty":"EC"}],"user-data":"00"}"#),
        Err(runtime::RuntimeError::Jwk(_))
    ));
    assert!(matches!(
        runtime::parse(br#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"!!","e":"AQAB"}]}"#),
        Err(runtime::RuntimeError::Jwk(_))
    ));
    assert_eq!(
        runtime::parse(
            br#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"AQAB","e":"AQAB"}],"user-data":"00"}"#
        )
        .map(|_| ())
        .map_err(|e| matches!(e, runtime::RuntimeError::Jwk(_))),
        Err(true),
        "a 17-bit modulus is no RSA key"
    );
}

#[test]
fn the_wrong_hardware_is_refused() {
    let (Some(e), Some(tdx)) = (snp(), tdx_report()) else {
        return;
    };
    let err = azure::verify_snp(&tdx, &certs(&e.vcek), at()).expect_err("a TDX report");
    assert!(matches!(
        err,
        AzureError::WrongHardware {
            expected: HardwareKind::SevSnp,
            got: HardwareKind::Tdx
        }
    ));
    let err = azure::parse_expecting(&e.report, HardwareKind::Tdx).expect_err("an SNP report");
    assert_eq!(err.step(), AzureStep::Hcl);
}

#[test]
fn tdx_hcl_report_parses_and_hashes_its_runtime_data_into_reportdata() {
    let Some(r) = tdx_report() else { return };
    let parsed = hcl::parse(&r).expect("TDX HCL report parses");
    assert_eq!(parsed.kind, HardwareKind::Tdx);
    assert_eq!(parsed.hardware_report.len(), hcl::TD_REPORT_LEN);
    let report_data = parsed.report_data().expect("REPORTDATA");
    let runtime = azure::check_runtime(&parsed, &report_data).expect("runtime hash");
    assert_eq!(runtime.user_data, [0u8; 64]);
    let json: serde_json::Value = serde_json::from_slice(&parsed.runtime_data).expect("JSON");
    let kids: Vec<&str> = json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, ["HCLAkPub", "HCLEkPub"]);
    // A non-zero byte in the TD report's padding is refused: nothing MACs it.
    let mut bad = r.clone();
    bad[32 + 1024 + 5] = 1;
    assert!(matches!(
        hcl::parse(&bad),
        Err(HclError::NonZeroPadding { offset: 1061, .. })
    ));
}

#[test]
fn a_td_quote_for_another_report_is_refused() {
    let Some(r) = tdx_report() else { return };
    let Some(tdx_dir) = testkit::evidence::dir("tdx") else {
        return;
    };
    let quote = std::fs::read(tdx_dir.join("tdx_quote")).expect("quote");
    let collateral = std::fs::read(tdx_dir.join("tdx_quote_collateral.json")).expect("coll");
    let opts = attest::tee::tdx::TdxOptions::default();
    let err = azure::verify_tdx(&r, &quote, Some(&collateral), at(), &opts)
        .expect_err("the recorded quote is another TD's");
    assert!(matches!(err, AzureError::TdQuoteMismatch { .. }), "{err}");
    assert_eq!(err.step(), AzureStep::TdQuoteLink);
    // A quote whose REPORTDATA was edited to the TD report's passes the link, and
    // without collateral its own signature chain still refuses it, naming the quote
    // signature.
    let parsed = hcl::parse(&r).expect("parses");
    let mut linked = quote.clone();
    // REPORTDATA of a v4 TDX quote body: header 48 + 520.
    linked[48 + 520..48 + 584].copy_from_slice(&parsed.report_data().expect("REPORTDATA"));
    azure::check_td_quote_link(&parsed, &linked).expect("linked");
    let err = azure::verify_tdx(&r, &linked, None, at(), &opts).expect_err("forged quote");
    assert!(
        matches!(
            err,
            AzureError::Tdx(TdxError::Chain {
                link: ChainLink::QuoteSignature,
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("quote signature"), "{err}");
}
