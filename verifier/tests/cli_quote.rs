//! `verigate quote verify` on the files tpm2-tools writes against a real TPM (swtpm):
//! the genuine set passes with exit 0, each tampered or mismatched input fails with
//! exit 1 and names the failing check, unreadable input exits 2.

use std::path::PathBuf;
use std::process::{Command, Output};
use testkit::swtpm::Swtpm;

const NONCE: &str = "5eed00112233445566778899aabbccddeeff00112233445566778899aabbccdd";

/// A swtpm with an EK, an AK and one quote of SHA-256 PCRs 10 and 16 made by tpm2-tools.
struct Fixture {
    sw: Swtpm,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let fx = Fixture {
            sw: Swtpm::start().expect("swtpm"),
            dir: tempfile::tempdir().unwrap(),
        };
        fx.tpm2(&["tpm2_createek", "-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub"]);
        fx.tpm2(&[
            "tpm2_createak",
            "-C",
            "ek.ctx",
            "-c",
            "ak.ctx",
            "-G",
            "ecc",
            "-g",
            "sha256",
            "-s",
            "ecdsa",
            "-u",
            "ak.pub",
        ]);
        fx.tpm2(&[
            "tpm2_readpublic",
            "-c",
            "ak.ctx",
            "-f",
            "pem",
            "-o",
            "ak.pem",
        ]);
        fx.tpm2(&["tpm2_pcrextend", &format!("10:sha256={}", "ab".repeat(32))]);
        fx.quote("quote.msg", "quote.sig", "pcrs.out", &[]);
        fx
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a tpm2-tools command and flushes transient objects afterwards (swtpm has no
    /// resource manager).
    fn tpm2(&self, args: &[&str]) {
        for cmd in [args, &["tpm2_flushcontext", "-t"]] {
            let out = Command::new(cmd[0])
                .args(&cmd[1..])
                .current_dir(self.dir.path())
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

    fn quote(&self, msg: &str, sig: &str, pcrs: &str, extra: &[&str]) {
        let mut args = vec![
            "tpm2_quote",
            "-c",
            "ak.ctx",
            "-l",
            "sha256:10,16",
            "-q",
            NONCE,
            "-m",
            msg,
            "-s",
            sig,
            "-o",
            pcrs,
        ];
        args.extend_from_slice(extra);
        self.tpm2(&args);
    }

    /// Writes a copy of `name` with byte `at` (negative: from the end) flipped.
    fn tampered(&self, name: &str, at: isize) -> String {
        let mut bytes = std::fs::read(self.path(name)).unwrap();
        let i = if at < 0 {
            bytes.len() - at.unsigned_abs()
        } else {
            at.unsigned_abs()
        };
        bytes[i] ^= 0x01;
        let out = format!("tampered-{}-{name}", at.unsigned_abs());
        std::fs::write(self.path(&out), bytes).unwrap();
        out
    }

    fn verify(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_verigate"))
            .args(["quote", "verify"])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("verigate runs")
    }

    fn verify_default(&self, replace: &[(&str, &str)], extra: &[&str]) -> Output {
        let mut args: Vec<&str> = vec![
            "--ak",
            "ak.pub",
            "--quote",
            "quote.msg",
            "--signature",
            "quote.sig",
            "--pcrs",
            "pcrs.out",
            "--nonce",
            NONCE,
        ];
        for (flag, value) in replace {
            let i = args.iter().position(|a| a == flag).expect("known flag");
            args[i + 1] = value;
        }
        args.extend_from_slice(extra);
        self.verify(&args)
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `reset count` fact printed by a run (the TPM's counter, not something we chose:
/// a fresh swtpm starts at 1).
fn reset_count_of(o: &Output) -> u32 {
    let text = stdout(o);
    text.lines()
        .find_map(|l| l.strip_prefix("reset count: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reset count in:\n{text}"))
}

fn assert_fails_check(o: &Output, check: &str, words: &str) {
    let text = stdout(o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("[FAIL] {check}:")))
        .unwrap_or_else(|| panic!("no failed `{check}` check in:\n{text}"));
    assert!(line.contains(words), "{line}");
    assert!(text.contains("verdict: FAIL"));
}

#[test]
fn genuine_tpm2_tools_files_pass() {
    let fx = Fixture::new();
    let reset = reset_count_of(&fx.verify_default(&[], &[])).to_string();
    let o = fx.verify_default(&[], &["--reset-count", &reset, "--restart-count", "0"]);
    let text = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for line in [
        "[PASS] attestation key: ECC P-256, restricted signing key",
        "[PASS] quote structure",
        "[PASS] signature: ECDSA-SHA256",
        "[PASS] qualifying data",
        "[PASS] pcr values: 2 PCR value(s)",
        "[PASS] reset count",
        "[PASS] restart count",
        "pcr selection: sha256:10,16",
        &format!("extra data: {NONCE}"),
        &format!("reset count: {reset}"),
        "verdict: PASS",
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
}

#[test]
fn pem_key_and_values_format_pass() {
    let fx = Fixture::new();
    fx.quote("q2.msg", "q2.sig", "pcrs2.values", &["-F", "values"]);
    let o = fx.verify_default(
        &[
            ("--ak", "ak.pem"),
            ("--quote", "q2.msg"),
            ("--signature", "q2.sig"),
            ("--pcrs", "pcrs2.values"),
        ],
        &[],
    );
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("from PEM: TPM attributes unknown"), "{text}");
}

#[test]
fn json_output_and_json_pcrs() {
    let fx = Fixture::new();
    // The JSON PCR form of the evidence (ARCHITECTURE.md, "Evidence"), taken from the
    // verifier's own JSON facts.
    let o = fx.verify_default(&[], &["--output", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["facts"]["pcr selection"], "sha256:10,16");
    let pcrs = v["facts"]["pcr values"].to_string();
    assert!(pcrs.starts_with("{\"sha256\":{\"10\":"), "{pcrs}");
    std::fs::write(fx.path("pcrs.json"), &pcrs).unwrap();
    let o = fx.verify_default(&[("--pcrs", "pcrs.json")], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn tampered_quote_fails_the_signature() {
    let fx = Fixture::new();
    let bad = fx.tampered("quote.msg", -1);
    let o = fx.verify_default(&[("--quote", &bad)], &[]);
    assert_fails_check(&o, "signature", "does not verify");
    let bad = fx.tampered("quote.msg", 0);
    let o = fx.verify_default(&[("--quote", &bad)], &[]);
    assert_fails_check(&o, "quote structure", "TPM_GENERATED_VALUE");
}

#[test]
fn tampered_signature_fails() {
    let fx = Fixture::new();
    let bad = fx.tampered("quote.sig", -1);
    let o = fx.verify_default(&[("--signature", &bad)], &[]);
    assert_fails_check(&o, "signature", "does not verify");
}

#[test]
fn tampered_pcr_file_fails() {
    let fx = Fixture::new();
    // Offset 0x8e: first byte of the first digest in the serialized file
    // (TPML_PCR_SELECTION 132 bytes, list count 4, TPML_DIGEST.count 4, size 2).
    let bad = fx.tampered("pcrs.out", 0x8e);
    let o = fx.verify_default(&[("--pcrs", &bad)], &[]);
    assert_fails_check(&o, "pcr values", "pcrDigest");
    std::fs::write(fx.path("short.pcrs"), [0u8; 10]).unwrap();
    let o = fx.verify_default(&[("--pcrs", "short.pcrs")], &[]);
    assert_fails_check(&o, "pcr values", "neither");
}

#[test]
fn wrong_nonce_fails() {
    let fx = Fixture::new();
    let o = fx.verify_default(&[("--nonce", "00")], &[]);
    assert_fails_check(&o, "qualifying data", "expected qualifying data 00");
}

#[test]
fn another_ak_fails() {
    let fx = Fixture::new();
    let other = Fixture::new();
    let other_ak = other.path("ak.pub");
    let o = fx.verify_default(&[("--ak", other_ak.to_str().unwrap())], &[]);
    assert_fails_check(&o, "signature", "does not verify");
}

#[test]
fn reboot_fails_the_reset_count() {
    let mut fx = Fixture::new();
    let before = reset_count_of(&fx.verify_default(&[], &[]));
    fx.sw.restart().expect("restart");
    // A transient AK saved by tpm2_createak does not survive a TPM reset, so the files
    // are made again with a new AK: what this test checks is the counter.
    fx.tpm2(&["tpm2_createek", "-c", "ek.ctx", "-G", "ecc", "-u", "ek.pub"]);
    fx.tpm2(&[
        "tpm2_createak",
        "-C",
        "ek.ctx",
        "-c",
        "ak.ctx",
        "-G",
        "ecc",
        "-g",
        "sha256",
        "-s",
        "ecdsa",
        "-u",
        "ak.pub",
    ]);
    fx.quote("quote.msg", "quote.sig", "pcrs.out", &[]);
    let o = fx.verify_default(&[], &["--reset-count", &before.to_string()]);
    let message = format!("resetCount is {}, expected {before}", before + 1);
    assert_fails_check(&o, "reset count", &message);
    let o = fx.verify_default(&[], &["--reset-count", &(before + 1).to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn unreadable_input_or_bad_arguments_exit_2() {
    let fx = Fixture::new();
    let o = fx.verify_default(&[("--quote", "missing.msg")], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.msg"));
    let o = fx.verify_default(&[("--nonce", "not-hex")], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--nonce"));
}

#[test]
fn garbage_key_fails_not_crashes() {
    let fx = Fixture::new();
    std::fs::write(fx.path("garbage.pub"), b"\x00\x23\x00").unwrap();
    let o = fx.verify_default(&[("--ak", "garbage.pub")], &[]);
    assert_fails_check(&o, "attestation key", "truncated");
}

#[test]
fn garbage_signature_and_unquoted_pcrs_fail() {
    let fx = Fixture::new();
    std::fs::write(fx.path("garbage.sig"), [0x00, 0x18, 0x00]).unwrap();
    let o = fx.verify_default(&[("--signature", "garbage.sig")], &[]);
    assert_fails_check(&o, "signature", "truncated");
    // A JSON PCR file claiming a PCR that the quote does not cover.
    let json = format!(
        r#"{{"sha256": {{"10": "{0}", "16": "{0}", "17": "{0}"}}}}"#,
        "00".repeat(32)
    );
    std::fs::write(fx.path("extra.json"), json).unwrap();
    let o = fx.verify_default(&[("--pcrs", "extra.json")], &[]);
    assert_fails_check(&o, "pcr values", "PCR 17, which the quote does not select");
}
