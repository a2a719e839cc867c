//! `verigate report verify` on Azure HCL reports, end to end with the real binary and
//! the real files of `../shared/evidence/azure` (see its README for what each proves):
//! every link passes on the recorded SEV-SNP evidence, a flipped byte in each part
//! (header, hardware report, runtime JSON, quote message, signature, VCEK) fails at its
//! link, and the TDX HCL report needs its TD quote, whose REPORTDATA must match and
//! whose signature chain is checked with or without collateral.

use std::path::PathBuf;
use testkit::cli::Run;

fn verigate(args: &[&str]) -> Run {
    testkit::cli::run(env!("CARGO_BIN_EXE_verigate"), args)
}

/// The recorded SEV-SNP evidence split into the files a user has: HCL report, VCEK
/// (DER), quote message and plain signature.
struct Files {
    _dir: tempfile::TempDir,
    root: PathBuf,
    azure: PathBuf,
    tdx: PathBuf,
}

impl Files {
    fn path(&self, name: &str) -> String {
        self.root.join(name).to_str().expect("utf-8").to_string()
    }

    /// A copy of `name` with byte `pos` XOR-ed, written as `flipped-<pos>-<name>`.
    fn flipped(&self, name: &str, pos: usize) -> String {
        let mut b = std::fs::read(self.root.join(name)).expect("file");
        b[pos] ^= 1;
        let out = self.root.join(format!("flipped-{pos}-{name}"));
        std::fs::write(&out, b).expect("write");
        out.to_str().expect("utf-8").to_string()
    }
}

fn files() -> Option<Files> {
    let evidence = testkit::evidence::dir("")?;
    let azure = evidence.join("azure");
    let rec = testkit::evidence::azure_snp()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let write = |n: &str, b: &[u8]| std::fs::write(root.join(n), b).expect("write");
    write("hcl.bin", &rec.report);
    let vcek = attest::pem::decode_certificates(&rec.vcek).expect("VCEK PEM");
    write("vcek.der", &vcek[0]);
    write("quote.msg", &rec.message);
    write("quote.sig", &rec.signature);
    Some(Files {
        _dir: dir,
        root,
        azure,
        tdx: evidence.join("tdx"),
    })
}

const AT: &str = "2025-06-01T00:00:00Z";
const CHALLENGE_HEX: &str = "6368616c6c656e6765";

fn zero_user_data() -> String {
    "00".repeat(64)
}

fn snp_args<'a>(
    f: &'a Files,
    hcl: &'a str,
    vcek: &'a str,
    msg: &'a str,
    sig: &'a str,
    ud: &'a str,
) -> Vec<String> {
    let _ = f;
    [
        "report",
        "verify",
        hcl,
        "--vcek",
        vcek,
        "--quote",
        msg,
        "--signature",
        sig,
        "--nonce",
        CHALLENGE_HEX,
        "--user-data",
        ud,
        "--at",
        AT,
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

fn run(args: &[String]) -> Run {
    verigate(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn assert_has(r: &Run, needles: &[&str], what: &str) {
    for n in needles {
        assert!(
            r.stdout.contains(n),
            "{what}: `{n}` missing from stdout:\n{}\nstderr:\n{}",
            r.stdout,
            r.stderr
        );
    }
}

#[test]
fn every_link_of_the_recorded_snp_evidence_passes() {
    let Some(f) = files() else { return };
    let ud = zero_user_data();
    let r = run(&snp_args(
        &f,
        &f.path("hcl.bin"),
        &f.path("vcek.der"),
        &f.path("quote.msg"),
        &f.path("quote.sig"),
        &ud,
    ));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_has(
        &r,
        &[
            "kind: azure-sev-snp",
            "[PASS] hcl report format",
            "[PASS] snp report signature",
            "[PASS] snp chip id",
            "[PASS] hcl runtime data hash",
            "[PASS] hcl runtime data",
            "[PASS] hcl user-data",
            "[PASS] tpm quote signature: RSASSA-SHA256 signature under HCLAkPub",
            "[PASS] tpm quote extraData",
            "hcl_ak_pub: -----BEGIN PUBLIC KEY-----",
            &format!("user_data: {ud}"),
            "verdict: PASS",
        ],
        "recorded evidence",
    );
}

#[test]
fn a_flipped_byte_in_each_part_fails_at_its_link() {
    let Some(f) = files() else { return };
    let ud = zero_user_data();
    let hcl = f.path("hcl.bin");
    let vcek = f.path("vcek.der");
    let msg = f.path("quote.msg");
    let sig = f.path("quote.sig");
    let json_start = 1216 + 20;
    let report = std::fs::read(f.root.join("hcl.bin")).expect("hcl");
    let in_json = report[json_start..]
        .windows(9)
        .position(|w| w == b"\"n\":\"mHSR")
        .expect("HCLAkPub modulus")
        + json_start
        + 7;
    let vcek_len = std::fs::metadata(f.root.join("vcek.der"))
        .expect("vcek")
        .len();
    let vcek_sig_byte = usize::try_from(vcek_len).expect("small") - 10;
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "header report_size",
            snp_args(&f, &f.flipped("hcl.bin", 8), &vcek, &msg, &sig, &ud),
            "[FAIL] hcl report format",
        ),
        (
            "hardware report measurement",
            snp_args(&f, &f.flipped("hcl.bin", 32 + 0x90), &vcek, &msg, &sig, &ud),
            "[FAIL] snp report signature",
        ),
        (
            "runtime JSON",
            snp_args(&f, &f.flipped("hcl.bin", in_json), &vcek, &msg, &sig, &ud),
            "[FAIL] hcl runtime data hash",
        ),
        (
            "quote message",
            snp_args(&f, &hcl, &vcek, &f.flipped("quote.msg", 40), &sig, &ud),
            "[FAIL] tpm quote signature",
        ),
        (
            "signature",
            snp_args(&f, &hcl, &vcek, &msg, &f.flipped("quote.sig", 100), &ud),
            "[FAIL] tpm quote signature",
        ),
        (
            "VCEK signature",
            snp_args(
                &f,
                &hcl,
                &f.flipped("vcek.der", vcek_sig_byte),
                &msg,
                &sig,
                &ud,
            ),
            "[FAIL] snp",
        ),
        (
            "another user-data",
            snp_args(&f, &hcl, &vcek, &msg, &sig, &"11".repeat(64)),
            "[FAIL] hcl user-data",
        ),
    ];
    for (what, args, needle) in cases {
        let r = run(&args);
        assert_eq!(
            r.code, 1,
            "{what}: exit {}\n{}\n{}",
            r.code, r.stdout, r.stderr
        );
        assert_has(&r, &[needle, "verdict: FAIL"], what);
    }
    // Another nonce: the signature holds, the extraData does not.
    let mut args = snp_args(&f, &hcl, &vcek, &msg, &sig, &ud);
    let at = args.iter().position(|a| a == CHALLENGE_HEX).expect("nonce");
    args[at] = "00".into();
    let r = run(&args);
    assert_eq!(r.code, 1);
    assert_has(
        &r,
        &["[PASS] tpm quote signature", "[FAIL] tpm quote extraData"],
        "nonce",
    );
}

#[test]
fn truncated_and_misused_hcl_reports_are_named() {
    let Some(f) = files() else { return };
    let report = std::fs::read(f.root.join("hcl.bin")).expect("hcl");
    std::fs::write(f.root.join("short.bin"), &report[..100]).expect("write");
    let r = verigate(&[
        "report",
        "verify",
        &f.path("short.bin"),
        "--vcek",
        &f.path("vcek.der"),
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_has(
        &r,
        &["[FAIL] hcl report format", "hardware report"],
        "truncated",
    );
    // HCL-only flags on a bare SNP report are a usage error.
    let bare = f.azure.join("../snp/milan-report.bin");
    let r = verigate(&[
        "report",
        "verify",
        bare.to_str().expect("utf-8"),
        "--vcek",
        &f.path("vcek.der"),
        "--user-data",
        "00",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("apply to Azure HCL reports"),
        "{}",
        r.stderr
    );
    // Not hex.
    let r = verigate(&[
        "report",
        "verify",
        &f.path("hcl.bin"),
        "--vcek",
        &f.path("vcek.der"),
        "--user-data",
        "zz",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--user-data"), "{}", r.stderr);
}

fn tdx_hcl(f: &Files) -> String {
    f.azure
        .join("tdx-hcl-report.bin")
        .to_str()
        .expect("utf-8")
        .to_string()
}

#[test]
fn a_tdx_hcl_report_needs_its_td_quote_and_collateral() {
    let Some(f) = files() else { return };
    let hcl = tdx_hcl(&f);
    let r = verigate(&["report", "verify", &hcl]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--td-quote"), "{}", r.stderr);

    // The recorded quote is another TD's: its REPORTDATA differs.
    let quote = f.tdx.join("tdx_quote");
    let r = verigate(&[
        "report",
        "verify",
        &hcl,
        "--td-quote",
        quote.to_str().expect("utf-8"),
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_has(
        &r,
        &["kind: azure-tdx", "[FAIL] hcl td quote link"],
        "other TD's quote",
    );

    // A copy with the TD report's REPORTDATA passes the link. Without collateral the
    // quote's own signature chain is still checked: the PCK chain, the QE report and
    // the attestation key hold, the quote signature does not cover the changed bytes;
    // exit 1. (No recorded TD quote belongs to the recorded HCL report, so the chain
    // passing in full, then the TCB check failing for want of collateral, is shown on
    // the plain quote in `cli_report`.)
    let hcl_bytes = std::fs::read(&hcl).expect("hcl");
    let mut linked = std::fs::read(&quote).expect("quote");
    linked[48 + 520..48 + 584].copy_from_slice(&hcl_bytes[32 + 128..32 + 192]);
    std::fs::write(f.root.join("linked_quote"), &linked).expect("write");
    let r = verigate(&[
        "report",
        "verify",
        &hcl,
        "--td-quote",
        &f.path("linked_quote"),
        "--at",
        "2025-07-01T00:00:00Z",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_has(
        &r,
        &[
            "[PASS] hcl td quote link",
            "[PASS] tdx pck certificate chain",
            "[PASS] tdx qe report signature",
            "[PASS] tdx attestation key",
            "[FAIL] tdx quote signature",
        ],
        "no collateral",
    );
    assert!(
        !r.stdout.contains("[PASS] tdx quote signature"),
        "{}",
        r.stdout
    );
    // With collateral, the changed REPORTDATA breaks the quote's signature.
    let collateral = f.tdx.join("tdx_quote_collateral.json");
    let r = verigate(&[
        "report",
        "verify",
        &hcl,
        "--td-quote",
        &f.path("linked_quote"),
        "--collateral",
        collateral.to_str().expect("utf-8"),
        "--at",
        "2025-07-01T00:00:00Z",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_has(
        &r,
        &["[PASS] hcl td quote link", "[FAIL] tdx quote signature"],
        "patched quote",
    );
    // An SNP flag on a TDX HCL report is a usage error.
    let r = verigate(&["report", "verify", &hcl, "--vcek", &f.path("vcek.der")]);
    assert_eq!(r.code, 2);
}

#[test]
fn quote_verify_takes_the_plain_signature_of_the_azure_vtpm() {
    let Some(f) = files() else { return };
    let p = |n: &str| f.azure.join(n).to_str().expect("utf-8").to_string();
    let r = verigate(&[
        "quote",
        "verify",
        "--ak",
        &p("vtpm-akpub.pem"),
        "--quote",
        &p("vtpm-quote.msg"),
        "--signature",
        &p("vtpm-quote.sig"),
        "--nonce",
        CHALLENGE_HEX,
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("RSASSA-SHA256"), "{}", r.stdout);
}
