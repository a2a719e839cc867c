//! `verigate ima replay` end to end, as a user runs it: on the real IMA log in
//! `../shared/evidence/ima/`, on binary copies of it, and on tampered or broken copies,
//! checking what it prints and its exit status (0 pass, 1 a check failed, 2 could not
//! run).

use attest::ima::{ascii, binary, HashAlg};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Replay of the evidence log, from `attest/tests/vectors/ima_replay.py`.
const REPLAY_SHA1: &str = "82231c67a69da98dc5b3aa10f6343d33109225fc";
const REPLAY_SHA256: &str = "c4a065637fc6a7c55f2811dd06cb45dd037133be2b3dc5c3e6fbe6bf061db724";

fn evidence_path() -> Option<PathBuf> {
    let path = testkit::evidence::dir("ima")?.join("keylime-ascii_runtime_measurements");
    testkit::require_path(&path, testkit::require::install::EVIDENCE).then_some(path)
}

fn verigate(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args(["ima", "replay"])
        .arg(file)
        .args(args)
        .output()
        .expect("run verigate")
}

fn status(out: &Output) -> i32 {
    out.status.code().expect("exit status")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", stdout(out));
    })
}

#[test]
fn evidence_log_replays_and_checks() {
    let Some(log) = evidence_path() else { return };
    let out = verigate(&["--check"], &log);
    assert_eq!(status(&out), 0, "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("format: ascii"), "{text}");
    assert!(text.contains("entries: 826"), "{text}");
    assert!(text.contains(r#"templates: {"ima-ng":826}"#), "{text}");
    assert!(
        text.contains(&format!("pcr 10 (sha1): {REPLAY_SHA1}")),
        "{text}"
    );
    assert!(text.contains("[PASS] template hashes"), "{text}");
    assert!(text.contains("verdict: PASS"), "{text}");
}

#[test]
fn evidence_log_json_and_other_bank() {
    let Some(log) = evidence_path() else { return };
    let out = verigate(
        &[
            "--ascii",
            "--bank",
            "sha256",
            "--expect",
            REPLAY_SHA256,
            "--output",
            "json",
        ],
        &log,
    );
    assert_eq!(status(&out), 0, "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["facts"]["entries"], 826);
    assert_eq!(v["facts"]["templates"]["ima-ng"], 826);
    assert_eq!(v["facts"]["pcr 10 (sha256)"], REPLAY_SHA256);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["parse", "pcr 10 (sha256)"]);
}

#[test]
fn tampered_copy_fails_the_check() {
    let Some(log) = evidence_path() else { return };
    let text = std::fs::read_to_string(&log).unwrap();
    let tampered = text.replacen(
        "sha1:c90333979f56f38bbd41b81806015b0de502f3cc /bin/sh",
        "sha1:0000000000000000000000000000000000000001 /bin/sh",
        1,
    );
    assert_ne!(tampered, text);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ascii_runtime_measurements");
    std::fs::write(&copy, tampered).unwrap();

    let out = verigate(&["--check", "--output", "json"], &copy);
    assert_eq!(status(&out), 1, "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["verdict"], "fail");
    let failed: Vec<&Value> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["name"], "entry 2 template hash");
    assert!(
        failed[0]["detail"].as_str().unwrap().contains("/bin/sh"),
        "{v}"
    );

    // Without --check, the SHA-1 bank (logged hashes) cannot see the change...
    let out = verigate(&["--expect", REPLAY_SHA1], &copy);
    assert_eq!(status(&out), 0, "{}", stdout(&out));
    // ...but the SHA-256 bank hashes the data, so the quoted value no longer matches.
    let out = verigate(&["--bank", "sha256", "--expect", REPLAY_SHA256], &copy);
    assert_eq!(status(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).contains("[FAIL] pcr 10 (sha256): replay gives"));
}

#[test]
fn binary_lists_are_detected_and_replay_the_same() {
    let Some(log) = evidence_path() else { return };
    let entries = ascii::parse(&std::fs::read_to_string(&log).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let classic = dir.path().join("binary_runtime_measurements");
    std::fs::write(&classic, binary::serialize(&entries)).unwrap();
    let out = verigate(&["--check", "--expect", REPLAY_SHA1], &classic);
    assert_eq!(status(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("format: binary"));
    assert!(stdout(&out).contains("template hash algorithm: sha1"));

    // The kernel's _sha256 list: SHA-256 template hashes, told by the file name.
    let e256: Vec<_> = entries
        .into_iter()
        .map(|e| e.with_template_hash_alg(HashAlg::Sha256))
        .collect();
    let sha256_list = dir.path().join("binary_runtime_measurements_sha256");
    std::fs::write(&sha256_list, binary::serialize(&e256)).unwrap();
    let out = verigate(
        &["--check", "--bank", "sha256", "--expect", REPLAY_SHA256],
        &sha256_list,
    );
    assert_eq!(status(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("template hash algorithm: sha256"));

    // The same bytes under another name need the flag; without it parsing fails (2).
    let renamed = dir.path().join("measurements.bin");
    std::fs::copy(&sha256_list, &renamed).unwrap();
    let out = verigate(&[], &renamed);
    assert_eq!(status(&out), 2);
    let out = verigate(&["--template-hash-alg", "sha256", "--check"], &renamed);
    assert_eq!(status(&out), 0, "{}", stdout(&out));
}

#[test]
fn broken_inputs_exit_2_with_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let entries = vec![
        attest::ima::ImaEntry::measure("/a", HashAlg::Sha256, b"a").unwrap(),
        attest::ima::ImaEntry::measure("/b", HashAlg::Sha256, b"b").unwrap(),
    ];
    let bytes = binary::serialize(&entries);

    let truncated = dir.path().join("truncated");
    std::fs::write(&truncated, &bytes[..bytes.len() - 5]).unwrap();
    let out = verigate(&[], &truncated);
    assert_eq!(status(&out), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entry 1 at byte offset"), "{err}");

    let bad_line = dir.path().join("ascii");
    let mut text = ascii::serialize(&entries);
    text.push_str("10 nothex ima-ng sha1:00 /c\n");
    std::fs::write(&bad_line, text).unwrap();
    let out = verigate(&["--output", "json"], &bad_line);
    assert_eq!(status(&out), 2);
    let v = json(&out);
    assert_eq!(v["verdict"], "error");
    assert!(v["error"].as_str().unwrap().contains("line 3"), "{v}");

    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"\x7fELF\x02\x01\x01").unwrap();
    let out = verigate(&[], &garbage);
    assert_eq!(status(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--binary or --ascii"));

    let out = verigate(&[], &dir.path().join("missing"));
    assert_eq!(status(&out), 2);

    let good = dir.path().join("good");
    std::fs::write(&good, &bytes).unwrap();
    // Bad arguments: an unknown bank, an --expect of the wrong size or not hex.
    assert_eq!(status(&verigate(&["--bank", "md5"], &good)), 2);
    assert_eq!(status(&verigate(&["--expect", "00ff"], &good)), 2);
    assert_eq!(status(&verigate(&["--expect", "zz"], &good)), 2);
    assert_eq!(status(&verigate(&["--ascii", "--binary"], &good)), 2);
    // Forcing the wrong format is a parse error, not a silent misread.
    assert_eq!(status(&verigate(&["--ascii"], &good)), 2);
    assert_eq!(status(&verigate(&[], &good)), 0);
}

#[test]
fn empty_list_replays_to_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let out = verigate(&["--expect", &"00".repeat(20)], &empty);
    assert_eq!(status(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("entries: 0"));
    assert!(stdout(&out).contains("no entry extends it"));
}
