//! `verigate report verify` end to end: the real binary on the real evidence of
//! `../shared/evidence` (SEV-SNP and TDX), tampered copies, and bad arguments.
//!
//! The text cases are one table ([`CASES`]): each row is a run (its arguments), the exit
//! status it must end with and the text it must print; a failing row names itself, and
//! every row runs even when an earlier one fails. The JSON output is checked field by
//! field in its own tests.

use std::path::{Path, PathBuf};
use testkit::cli::Run;

fn evidence() -> Option<PathBuf> {
    testkit::evidence::dir("")
}

fn verigate(args: &[&str]) -> Run {
    testkit::cli::run(env!("CARGO_BIN_EXE_verigate"), args)
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A copy of `src` with one byte XOR-ed, in `dir`.
fn tampered(dir: &Path, src: &Path, pos: usize) {
    let mut bytes = std::fs::read(src).expect("evidence");
    bytes[pos] ^= 0x01;
    let dst = dir.join(src.file_name().expect("name"));
    std::fs::write(&dst, bytes).expect("write copy");
}

const SNP_AT: &str = "2025-01-01T00:00:00Z";
const TDX_AT: &str = "2025-07-01T00:00:00Z";

/// Text a run must print: exactly, or in any letter case (a library's wording).
#[derive(Clone, Copy)]
enum Needle {
    Exact(&'static str),
    AnyCase(&'static str),
}

impl Needle {
    fn found_in(self, text: &str) -> bool {
        match self {
            Needle::Exact(n) => text.contains(n),
            Needle::AnyCase(n) => text.to_lowercase().contains(&n.to_lowercase()),
        }
    }
}

use Needle::{AnyCase, Exact};

/// One run of `verigate` and what it must do. `args` are split at spaces; `$E/` starts
/// a path in the evidence folder, `$T/` one in the test's folder of tampered copies
/// ([`tamper`]).
struct Case {
    name: &'static str,
    args: &'static str,
    exit: i32,
    stdout: &'static [Needle],
    stderr: &'static [Needle],
}

const CASES: &[Case] = &[
    Case {
        name: "snp report passes with its vcek",
        args: "report verify $E/snp/milan-report.bin --vcek $E/snp/milan-vcek.der --chain $E/snp/milan-ask-ark.pem --at 2025-01-01T00:00:00Z",
        exit: 0,
        stdout: &[
            Exact("product: Milan"),
            Exact("measurement: 7a1e5c266c0108db"),
            Exact("[PASS] snp report signature"),
            Exact("[PASS] snp chip id"),
            Exact("[PASS] snp guest policy"),
            Exact("verdict: PASS"),
        ],
        stderr: &[],
    },
    Case {
        name: "tampered snp report fails its signature check",
        // A byte of the measurement (0x90..0xC0), see `tamper`.
        args: "report verify $T/milan-report.bin --vcek $E/snp/milan-vcek.der --at 2025-01-01T00:00:00Z",
        exit: 1,
        stdout: &[
            Exact("[PASS] snp certificate chain"),
            Exact("[FAIL] snp report signature"),
            Exact("verdict: FAIL"),
        ],
        stderr: &[],
    },
    Case {
        name: "snp with a turin vcek fails the product check",
        args: "report verify $E/snp/milan-report.bin --vcek $E/snp/turin-vcek.der --at 2025-01-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact("[FAIL] snp product")],
        stderr: &[],
    },
    Case {
        name: "snp at a time after the chain expired fails the chain check",
        args: "report verify $E/snp/milan-report.bin --vcek $E/snp/milan-vcek.der --at 2031-01-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact("[FAIL] snp certificate chain"), Exact("expired")],
        stderr: &[],
    },
    Case {
        // The report's SIGNING_KEY field says VCEK; the user said VLEK.
        name: "a vcek given as vlek fails the endorsement key check",
        args: "report verify $E/snp/milan-report.bin --vlek $E/snp/milan-vcek.der --at 2025-01-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact("[FAIL] snp endorsement key"), Exact("--vlek")],
        stderr: &[],
    },
    Case {
        name: "tampered vcek fails",
        args: "report verify $E/snp/milan-report.bin --vcek $T/milan-vcek.der --at 2025-01-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact("[FAIL]")],
        stderr: &[],
    },
    Case {
        name: "unsupported snp version fails the format check",
        args: "report verify $T/v4.bin --vcek $E/snp/milan-vcek.der --at 2025-01-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact(
            "[FAIL] snp report format: unsupported SEV-SNP report version 4",
        )],
        stderr: &[],
    },
    Case {
        name: "outdated tdx quote fails with no matching tcb level",
        args: "report verify $E/tdx/tdx_quote_outdated --collateral $E/tdx/tdx_quote_outdated_collateral.json --at 2026-03-01T00:00:00Z",
        exit: 1,
        stdout: &[AnyCase("no matching tcb level")],
        stderr: &[],
    },
    Case {
        // A byte of MRTD, see `tamper`.
        name: "tampered tdx quote fails its signature check",
        args: "report verify $T/tdx_quote --collateral $E/tdx/tdx_quote_collateral.json --at 2025-07-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact("[FAIL] tdx quote signature")],
        stderr: &[],
    },
    Case {
        name: "tdx quote with expired collateral fails",
        args: "report verify $E/tdx/tdx_quote --collateral $E/tdx/tdx_quote_collateral.json --at 2025-08-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact("expired")],
        stderr: &[],
    },
    Case {
        name: "bad argument: a time that is not RFC 3339",
        args: "report verify $E/snp/milan-report.bin --vcek $E/snp/milan-vcek.der --at yesterday",
        exit: 2,
        stdout: &[],
        stderr: &[Exact("RFC 3339")],
    },
    Case {
        name: "bad argument: an snp report without --vcek",
        args: "report verify $E/snp/milan-report.bin",
        exit: 2,
        stdout: &[],
        stderr: &[Exact("--vcek")],
    },
    Case {
        name: "bad argument: --vcek and --vlek together",
        args: "report verify $E/snp/milan-report.bin --vcek $E/snp/milan-vcek.der --vlek $E/snp/milan-vcek.der",
        exit: 2,
        stdout: &[],
        stderr: &[Exact("cannot be used with")],
    },
    Case {
        name: "tdx quote without collateral: its chain passes, its tcb check fails naming the collateral",
        args: "report verify $E/tdx/tdx_quote --at 2025-07-01T00:00:00Z",
        exit: 1,
        stdout: &[
            Exact("[PASS] tdx quote format"),
            Exact("[PASS] tdx pck certificate chain"),
            Exact("[PASS] tdx qe report signature"),
            Exact("[PASS] tdx attestation key"),
            Exact("[PASS] tdx quote signature"),
            Exact("[FAIL] tdx tcb status: no collateral: the TCB info, QE identity and CRLs"),
            Exact("pass --collateral"),
        ],
        stderr: &[],
    },
    Case {
        name: "tdx quote without collateral at the current time: the same verdict",
        args: "report verify $E/tdx/tdx_quote",
        exit: 1,
        stdout: &[Exact("[PASS] tdx quote signature"), Exact("[FAIL] tdx tcb status")],
        stderr: &[],
    },
    Case {
        // A byte of MRTD, see `tamper`.
        name: "tampered tdx quote without collateral fails its quote signature",
        args: "report verify $T/tdx_quote --at 2025-07-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact("[PASS] tdx attestation key"), Exact("[FAIL] tdx quote signature")],
        stderr: &[],
    },
    Case {
        name: "tdx quote without collateral before its pck certificate was issued",
        args: "report verify $E/tdx/tdx_quote --at 2025-01-01T00:00:00Z",
        exit: 1,
        stdout: &[Exact("[FAIL] tdx pck certificate chain: PCK certificate chain: PCK certificate: not valid before 2025-02-06")],
        stderr: &[],
    },
    Case {
        name: "bad argument: an unknown tcb status",
        args: "report verify $E/tdx/tdx_quote --collateral $E/tdx/tdx_quote_collateral.json --allow-tcb-status Fine",
        exit: 2,
        stdout: &[],
        stderr: &[Exact("unknown TCB status name")],
    },
    Case {
        name: "bad argument: --vcek with a tdx quote",
        args: "report verify $E/tdx/tdx_quote --collateral $E/tdx/tdx_quote_collateral.json --vcek $E/snp/milan-vcek.der",
        exit: 2,
        stdout: &[],
        stderr: &[Exact("SEV-SNP")],
    },
    Case {
        name: "bad argument: a file that is neither report nor quote",
        args: "report verify $E/tdx/tdx_quote_collateral.json --collateral $E/tdx/tdx_quote_collateral.json",
        exit: 2,
        stdout: &[],
        stderr: &[Exact("neither")],
    },
    Case {
        name: "bad argument: a report that cannot be read",
        args: "report verify /nonexistent/report.bin --vcek $E/snp/milan-vcek.der",
        exit: 2,
        stdout: &[],
        stderr: &[Exact("reading report")],
    },
];

/// The tampered copies the table names under `$T/`.
fn tamper(evidence: &Path, dir: &Path) {
    // A byte of the measurement (0x90..0xC0).
    tampered(dir, &evidence.join("snp/milan-report.bin"), 0xA0);
    tampered(dir, &evidence.join("snp/milan-vcek.der"), 600);
    // A byte of MRTD (TD report at 48, MRTD at +136).
    tampered(dir, &evidence.join("tdx/tdx_quote"), 48 + 140);
    let mut v4 = std::fs::read(evidence.join("snp/milan-report.bin")).expect("report");
    v4[0] = 4;
    std::fs::write(dir.join("v4.bin"), v4).expect("write");
}

/// What is wrong with one run of `case`, if anything.
fn problems(case: &Case, r: &Run) -> Vec<String> {
    let mut found = Vec::new();
    if r.code != case.exit {
        found.push(format!("exit {} (expected {})", r.code, case.exit));
    }
    for (stream, text, needles) in [
        ("stdout", &r.stdout, case.stdout),
        ("stderr", &r.stderr, case.stderr),
    ] {
        for n in needles.iter().filter(|n| !n.found_in(text)) {
            let (Exact(s) | AnyCase(s)) = *n;
            found.push(format!("{stream} lacks `{s}`"));
        }
    }
    found
}

#[test]
fn report_verify_cases() {
    let Some(e) = evidence() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    tamper(&e, dir.path());
    let (e_dir, t_dir) = (p(&e).to_string(), p(dir.path()).to_string());
    let mut failures = Vec::new();
    for case in CASES {
        let args: Vec<String> = case
            .args
            .split(' ')
            .map(|a| {
                a.replacen("$E/", &format!("{e_dir}/"), 1)
                    .replacen("$T/", &format!("{t_dir}/"), 1)
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = verigate(&args);
        let found = problems(case, &r);
        if !found.is_empty() {
            failures.push(format!(
                "case `{}`: {}\n  $ verigate {}\n  stdout: {}\n  stderr: {}",
                case.name,
                found.join("; "),
                args.join(" "),
                r.stdout,
                r.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
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
