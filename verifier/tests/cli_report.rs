//! `verigate report verify` end to end: the real binary on the real evidence of
//! `../shared/evidence` (SEV-SNP and TDX), tampered copies, and bad arguments.

use std::path::{Path, PathBuf};
use std::process::Command;

fn evidence() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/evidence");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn verigate(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args(args)
        .output()
        .expect("verigate runs");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A copy of `src` with one byte XOR-ed, in `dir`.
fn tampered(dir: &Path, src: &Path, pos: usize) -> PathBuf {
    let mut bytes = std::fs::read(src).expect("evidence");
    bytes[pos] ^= 0x01;
    let dst = dir.join(src.file_name().expect("name"));
    std::fs::write(&dst, bytes).expect("write copy");
    dst
}

const SNP_AT: &str = "2025-01-01T00:00:00Z";
const TDX_AT: &str = "2025-07-01T00:00:00Z";

#[test]
fn snp_report_passes_with_its_vcek() {
    let Some(e) = evidence() else { return };
    let r = verigate(&[
        "report",
        "verify",
        p(&e.join("snp/milan-report.bin")),
        "--vcek",
        p(&e.join("snp/milan-vcek.der")),
        "--chain",
        p(&e.join("snp/milan-ask-ark.pem")),
        "--at",
        SNP_AT,
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("product: Milan"), "{}", r.stdout);
    assert!(
        r.stdout.contains("measurement: 7a1e5c266c0108db"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[PASS] snp report signature"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("[PASS] snp chip id"), "{}", r.stdout);
    assert!(r.stdout.contains("[PASS] snp guest policy"), "{}", r.stdout);
    assert!(r.stdout.contains("verdict: PASS"), "{}", r.stdout);
}

#[test]
fn snp_json_output_carries_facts_and_checks() {
    let Some(e) = evidence() else { return };
    let r = verigate(&[
        "--output",
        "json",
        "report",
        "verify",
        p(&e.join("snp/milan-report.bin")),
        "--vcek",
        p(&e.join("snp/milan-vcek.der")),
        "--at",
        SNP_AT,
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON output");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["facts"]["policy"], 0x30000);
    assert_eq!(v["facts"]["product"], "Milan");
    assert_eq!(v["checks"].as_array().map(Vec::len), Some(8));
}

#[test]
fn tampered_snp_report_fails_its_signature_check() {
    let Some(e) = evidence() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // A byte of the measurement (0x90..0xC0).
    let report = tampered(dir.path(), &e.join("snp/milan-report.bin"), 0xA0);
    let r = verigate(&[
        "report",
        "verify",
        p(&report),
        "--vcek",
        p(&e.join("snp/milan-vcek.der")),
        "--at",
        SNP_AT,
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("[PASS] snp certificate chain"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("[FAIL] snp report signature"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("verdict: FAIL"), "{}", r.stdout);
}

#[test]
fn snp_with_a_turin_vcek_or_an_expired_time_fails() {
    let Some(e) = evidence() else { return };
    let r = verigate(&[
        "report",
        "verify",
        p(&e.join("snp/milan-report.bin")),
        "--vcek",
        p(&e.join("snp/turin-vcek.der")),
        "--at",
        SNP_AT,
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("[FAIL] snp product"), "{}", r.stdout);
    let r = verigate(&[
        "report",
        "verify",
        p(&e.join("snp/milan-report.bin")),
        "--vcek",
        p(&e.join("snp/milan-vcek.der")),
        "--at",
        "2031-01-01T00:00:00Z",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("[FAIL] snp certificate chain"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("expired"), "{}", r.stdout);
}

#[test]
fn a_vcek_given_as_vlek_fails_the_endorsement_key_check() {
    let Some(e) = evidence() else { return };
    // The report's SIGNING_KEY field says VCEK; the user said VLEK.
    let r = verigate(&[
        "report",
        "verify",
        p(&e.join("snp/milan-report.bin")),
        "--vlek",
        p(&e.join("snp/milan-vcek.der")),
        "--at",
        SNP_AT,
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("[FAIL] snp endorsement key"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("--vlek"), "{}", r.stdout);
}

#[test]
fn tampered_vcek_fails() {
    let Some(e) = evidence() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let vcek = tampered(dir.path(), &e.join("snp/milan-vcek.der"), 600);
    let r = verigate(&[
        "report",
        "verify",
        p(&e.join("snp/milan-report.bin")),
        "--vcek",
        p(&vcek),
        "--at",
        SNP_AT,
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("[FAIL]"), "{}", r.stdout);
}

#[test]
fn tdx_quote_passes_up_to_date_inside_its_window() {
    let Some(e) = evidence() else { return };
    let r = verigate(&[
        "--output",
        "json",
        "report",
        "verify",
        p(&e.join("tdx/tdx_quote")),
        "--collateral",
        p(&e.join("tdx/tdx_quote_collateral.json")),
        "--at",
        TDX_AT,
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON output");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["facts"]["tcb_status"], "UpToDate");
    assert_eq!(v["facts"]["kind"], "tdx");
    assert_eq!(v["facts"]["mrtd"].as_str().map(str::len), Some(96));
    assert_eq!(v["facts"]["fmspc"].as_str().map(str::len), Some(12));
}

#[test]
fn outdated_tdx_quote_fails_with_no_matching_tcb_level() {
    let Some(e) = evidence() else { return };
    let r = verigate(&[
        "report",
        "verify",
        p(&e.join("tdx/tdx_quote_outdated")),
        "--collateral",
        p(&e.join("tdx/tdx_quote_outdated_collateral.json")),
        "--at",
        "2026-03-01T00:00:00Z",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.to_lowercase().contains("no matching tcb level"),
        "{}",
        r.stdout
    );
}

#[test]
fn tampered_tdx_quote_or_expired_collateral_fails() {
    let Some(e) = evidence() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // A byte of MRTD (TD report at 48, MRTD at +136).
    let quote = tampered(dir.path(), &e.join("tdx/tdx_quote"), 48 + 140);
    let coll = e.join("tdx/tdx_quote_collateral.json");
    let r = verigate(&[
        "report",
        "verify",
        p(&quote),
        "--collateral",
        p(&coll),
        "--at",
        TDX_AT,
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("[FAIL] tdx quote signature"),
        "{}",
        r.stdout
    );
    let r = verigate(&[
        "report",
        "verify",
        p(&e.join("tdx/tdx_quote")),
        "--collateral",
        p(&coll),
        "--at",
        "2025-08-01T00:00:00Z",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("expired"), "{}", r.stdout);
}

#[test]
fn bad_arguments_exit_2() {
    let Some(e) = evidence() else { return };
    let report = e.join("snp/milan-report.bin");
    let quote = e.join("tdx/tdx_quote");
    let coll = e.join("tdx/tdx_quote_collateral.json");
    let vcek = e.join("snp/milan-vcek.der");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "report",
                "verify",
                p(&report),
                "--vcek",
                p(&vcek),
                "--at",
                "yesterday",
            ],
            "RFC 3339",
        ),
        (vec!["report", "verify", p(&report)], "--vcek"),
        (
            vec![
                "report",
                "verify",
                p(&report),
                "--vcek",
                p(&vcek),
                "--vlek",
                p(&vcek),
            ],
            "cannot be used with",
        ),
        (vec!["report", "verify", p(&quote)], "--collateral"),
        (
            vec![
                "report",
                "verify",
                p(&quote),
                "--collateral",
                p(&coll),
                "--allow-tcb-status",
                "Fine",
            ],
            "unknown TCB status name",
        ),
        (
            vec![
                "report",
                "verify",
                p(&quote),
                "--collateral",
                p(&coll),
                "--vcek",
                p(&vcek),
            ],
            "SEV-SNP",
        ),
        (
            vec!["report", "verify", p(&coll), "--collateral", p(&coll)],
            "neither",
        ),
        (
            vec![
                "report",
                "verify",
                "/nonexistent/report.bin",
                "--vcek",
                p(&vcek),
            ],
            "reading report",
        ),
    ];
    for (args, needle) in cases {
        let r = verigate(&args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn unsupported_snp_version_fails_the_format_check() {
    let Some(e) = evidence() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(e.join("snp/milan-report.bin")).expect("report");
    bytes[0] = 4;
    let report = dir.path().join("v4.bin");
    std::fs::write(&report, bytes).expect("write");
    let r = verigate(&[
        "report",
        "verify",
        p(&report),
        "--vcek",
        p(&e.join("snp/milan-vcek.der")),
        "--at",
        SNP_AT,
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("[FAIL] snp report format: unsupported SEV-SNP report version 4"),
        "{}",
        r.stdout
    );
}
