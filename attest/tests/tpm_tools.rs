//! Quotes made by tpm2-tools (not by our collection code) against swtpm, with every key
//! type and scheme the verifier supports: ECC P-256 and P-384 with ECDSA, RSA 2048 with
//! RSASSA and RSAPSS. The files are the ones a user would hand to `verigate quote
//! verify`: `TPM2B_PUBLIC` and PEM keys, `TPMS_ATTEST`, `TPMT_SIGNATURE`, and the PCR
//! file in both of `tpm2_quote`'s formats.

use attest::tpm::quote::{self, AkPublic, PcrValues, QuoteError, QuoteInfo};
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::swtpm::Swtpm;

struct Tools<'a> {
    sw: &'a Swtpm,
    dir: &'a Path,
}

impl Tools<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs a tpm2-tools command, then flushes transient objects: swtpm has no resource
    /// manager and only 3 object slots.
    fn run(&self, args: &[&str]) {
        for cmd in [args, &["tpm2_flushcontext", "-t"]] {
            let out = Command::new(cmd[0])
                .args(&cmd[1..])
                .current_dir(self.dir)
                .env("TPM2TOOLS_TCTI", self.sw.tcti())
                .output()
                .expect("tpm2-tools runs");
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("tpm2-tools wrote the file")
    }
}

/// Creates an EK and an AK with tpm2-tools, extends PCR 10, and quotes PCRs 10 and 16
/// of SHA-256 with nonce `00aa55`, writing the PCR file in both formats.
fn quote_with(sw: &Swtpm, dir: &Path, ek_alg: &str, ak_alg: &str, hash: &str, scheme: &str) {
    let t = Tools { sw, dir };
    t.run(&[
        "tpm2_createek",
        "-c",
        "ek.ctx",
        "-G",
        ek_alg,
        "-u",
        "ek.pub",
    ]);
    t.run(&[
        "tpm2_createak",
        "-C",
        "ek.ctx",
        "-c",
        "ak.ctx",
        "-G",
        ak_alg,
        "-g",
        hash,
        "-s",
        scheme,
        "-u",
        "ak.pub",
        "-n",
        "ak.name",
    ]);
    t.run(&[
        "tpm2_readpublic",
        "-c",
        "ak.ctx",
        "-f",
        "pem",
        "-o",
        "ak.pem",
    ]);
    let digest = "11".repeat(32);
    t.run(&["tpm2_pcrextend", &format!("10:sha256={digest}")]);
    for (out, format) in [("pcrs.serialized", "serialized"), ("pcrs.values", "values")] {
        t.run(&[
            "tpm2_quote",
            "-c",
            "ak.ctx",
            "-l",
            "sha256:10,16",
            "-q",
            "00aa55",
            "-g",
            hash,
            "--scheme",
            scheme,
            "-m",
            "quote.msg",
            "-s",
            "quote.sig",
            "-o",
            out,
            "-F",
            format,
        ]);
    }
}

fn check_combo(ek_alg: &str, ak_alg: &str, hash: &str, scheme: &str, expect: &str) {
    let sw = Swtpm::start().expect("swtpm");
    let dir = tempfile::tempdir().unwrap();
    quote_with(&sw, dir.path(), ek_alg, ak_alg, hash, scheme);
    let t = Tools {
        sw: &sw,
        dir: dir.path(),
    };
    let attest = t.read("quote.msg");
    let sig = t.read("quote.sig");
    let nonce = [0x00, 0xaa, 0x55];
    let info = QuoteInfo::parse(&attest).expect("TPMS_ATTEST parses");
    assert_eq!(quote::display_selection(&info.pcr_select), "sha256:10,16");

    let ak_pub = t.read("ak.pub");
    let ak = AkPublic::from_any(&ak_pub).expect("TPM2B_PUBLIC parses");
    assert_eq!(ak.tpmt_bytes(), Some(&ak_pub[2..]), "TPMT inside the TPM2B");
    // The TPM's own name for the key (tpm2_createak -n) equals ours.
    assert_eq!(ak.name().as_deref(), Some(t.read("ak.name").as_slice()));
    let pem = AkPublic::from_any(&t.read("ak.pem")).expect("PEM parses");
    assert_eq!(pem.key.describe(), ak.key.describe());

    for pcr_file in ["pcrs.serialized", "pcrs.values"] {
        let pcrs = PcrValues::from_file_bytes(&t.read(pcr_file), &info.pcr_select)
            .unwrap_or_else(|e| panic!("{pcr_file}: {e}"));
        assert_eq!(pcrs.len(), 2);
        for key in [&ak, &pem] {
            let v = quote::verify_with_key(key, &attest, &sig, &pcrs, &nonce)
                .unwrap_or_else(|e| panic!("{expect} with {pcr_file}: {e}"));
            assert_eq!(v.signature_scheme, expect);
        }
    }
    let pcrs = PcrValues::from_file_bytes(&t.read("pcrs.values"), &info.pcr_select).unwrap();
    // The exact TPMT_PUBLIC goes through `verify`, which also checks the attributes.
    quote::verify(ak.tpmt_bytes().unwrap(), &attest, &sig, &pcrs, &nonce).expect("verify");

    // Tampered copies fail.
    let mut bad_attest = attest.clone();
    let last = bad_attest.len() - 1;
    bad_attest[last] ^= 0x80;
    assert_eq!(
        quote::verify_with_key(&ak, &bad_attest, &sig, &pcrs, &nonce),
        Err(QuoteError::BadSignature)
    );
    let mut bad_sig = sig.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x80;
    assert_eq!(
        quote::verify_with_key(&ak, &attest, &bad_sig, &pcrs, &nonce),
        Err(QuoteError::BadSignature)
    );
    assert!(matches!(
        quote::verify_with_key(&ak, &attest, &sig, &pcrs, &[0x00, 0xaa, 0x56]),
        Err(QuoteError::QualifyingDataMismatch { .. })
    ));
}

#[test]
fn ecc_p256_ecdsa_sha256() {
    check_combo("ecc", "ecc", "sha256", "ecdsa", "ECDSA-SHA256");
}

#[test]
fn ecc_p256_ecdsa_sha384_hashes_pcrs_with_sha384() {
    check_combo("ecc", "ecc", "sha384", "ecdsa", "ECDSA-SHA384");
}

#[test]
fn ecc_p384_ecdsa_sha384() {
    check_combo("ecc", "ecc384", "sha384", "ecdsa", "ECDSA-SHA384");
}

#[test]
fn rsa_2048_rsassa_sha256() {
    check_combo("rsa", "rsa", "sha256", "rsassa", "RSASSA-SHA256");
}

#[test]
fn rsa_2048_rsapss_sha256() {
    check_combo("rsa", "rsa", "sha256", "rsapss", "RSAPSS-SHA256");
}

#[test]
fn a_key_that_is_not_restricted_is_refused() {
    let sw = Swtpm::start().expect("swtpm");
    let dir = tempfile::tempdir().unwrap();
    let t = Tools {
        sw: &sw,
        dir: dir.path(),
    };
    // An ordinary (unrestricted) signing key could sign a forged TPMS_ATTEST with
    // TPM2_Sign, so its quotes prove nothing.
    t.run(&[
        "tpm2_createprimary",
        "-C",
        "o",
        "-G",
        "ecc",
        "-c",
        "primary.ctx",
    ]);
    t.run(&[
        "tpm2_create",
        "-C",
        "primary.ctx",
        "-G",
        "ecc",
        "-u",
        "key.pub",
        "-r",
        "key.priv",
        "-a",
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
    ]);
    let ak = AkPublic::from_any(&t.read("key.pub")).expect("parses");
    assert!(matches!(
        ak.check_restricted_signing(),
        Err(QuoteError::AkNotRestrictedSigning { .. })
    ));
    let err = quote::verify(ak.tpmt_bytes().unwrap(), &[], &[], &PcrValues::new(), &[]);
    assert!(matches!(
        err,
        Err(QuoteError::AkNotRestrictedSigning { .. })
    ));
}
