//! `verigate snapshot` and `verigate verify` when the checks cannot run: missing or bad
//! arguments, an unreadable snapshot, an unreachable URL. Each exits 2 with a message
//! that names what is wrong, as text or as JSON with `--output json`, and none writes a
//! snapshot file.

use attest::binding::{Manifest, ManifestEntry};
use attest::snapshot::{Snapshot, TeePolicy, SNAPSHOT_VERSION};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn verigate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args(args)
        .output()
        .expect("run verigate")
}

fn status(out: &Output) -> i32 {
    out.status.code().expect("exit status")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit status 2 and that stderr names `needle`.
fn assert_cannot_run(out: &Output, needle: &str) {
    assert_eq!(status(out), 2, "stderr: {}", stderr(out));
    assert!(
        stderr(out).contains(needle),
        "stderr should name `{needle}`: {}",
        stderr(out)
    );
}

/// A valid snapshot file, so that the command gets past reading it.
fn snapshot_file(dir: &Path) -> PathBuf {
    let s = Snapshot {
        version: SNAPSHOT_VERSION,
        created_at: "2026-11-28T00:00:00Z".into(),
        tee_policy: TeePolicy::None,
        tpm_policy: None,
        ima: None,
        manifest: Manifest::new(vec![ManifestEntry {
            name: "vm.example.com".into(),
            cert_sha256: [1; 32],
            spki_sha256: [2; 32],
        }])
        .unwrap(),
        filehashes: vec![],
    };
    let path = dir.join("snapshot.json");
    std::fs::write(&path, s.to_json()).unwrap();
    path
}

/// A loopback URL where nothing listens (the port was free a moment ago).
fn dead_url() -> String {
    format!("https://127.0.0.1:{}", testkit::ports::free_port())
}

#[test]
fn verify_needs_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_file(dir.path());
    let out = verigate(&["verify", "--snapshot", snap.to_str().unwrap()]);
    assert_cannot_run(&out, "--url");
}

#[test]
fn verify_refuses_urls_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_file(dir.path());
    for (url, why) in [
        ("http://vm.example.com", "only https"),
        ("vm.example.com", "only https"),
        (
            "https://vm.example.com/v1/attestation",
            "a path is not allowed",
        ),
        ("https://vm.example.com:http", "bad host or port"),
    ] {
        let out = verigate(&["--url", url, "verify", "--snapshot", snap.to_str().unwrap()]);
        assert_cannot_run(&out, why);
    }
}

#[test]
fn verify_needs_a_readable_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let url = dead_url();
    // No --snapshot at all: clap's usage error, also exit 2.
    let out = verigate(&["--url", &url, "verify"]);
    assert_cannot_run(&out, "--snapshot");

    let missing = dir.path().join("missing.json");
    let out = verigate(&[
        "--url",
        &url,
        "verify",
        "--snapshot",
        missing.to_str().unwrap(),
    ]);
    assert_cannot_run(&out, "missing.json");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, b"{\"version\": 1, \"tee_policy\": 5}").unwrap();
    let out = verigate(&[
        "--url",
        &url,
        "verify",
        "--snapshot",
        garbage.to_str().unwrap(),
    ]);
    assert_cannot_run(&out, "garbage.json");

    let future = dir.path().join("future.json");
    let mut v: Value = serde_json::from_slice(
        &std::fs::read(snapshot_file(dir.path())).expect("snapshot written"),
    )
    .unwrap();
    v["version"] = 2.into();
    std::fs::write(&future, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = verigate(&[
        "--url",
        &url,
        "verify",
        "--snapshot",
        future.to_str().unwrap(),
    ]);
    assert_cannot_run(&out, "version 2");
}

#[test]
fn verify_refuses_bad_options_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_file(dir.path());
    let snap = snap.to_str().unwrap();
    // The URL is dead: a message about the option shows it was refused first.
    let url = dead_url();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--application", "a.example.com:notaport"],
            "--application",
        ),
        (&["--application", "*.example.com"], "not a pattern"),
        (&["--application", "a b"], "--application"),
        (&["--connect-to", "nowhere"], "--connect-to"),
        (&["--connect-to", "a.example.com:443:host"], "--connect-to"),
        (&["--at", "yesterday"], "--at"),
        (
            &["--whitelist", "/nonexistent/whitelist.json"],
            "whitelist.json",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["--url", url.as_str(), "verify", "--snapshot", snap];
        args.extend_from_slice(extra);
        assert_cannot_run(&verigate(&args), needle);
    }
    let bad_whitelist = dir.path().join("wl.json");
    std::fs::write(&bad_whitelist, b"[[\"/bin/sh\", \"not hex\"]]").unwrap();
    let out = verigate(&[
        "--url",
        &url,
        "verify",
        "--snapshot",
        snap,
        "--whitelist",
        bad_whitelist.to_str().unwrap(),
    ]);
    assert_cannot_run(&out, "wl.json");
}

#[test]
fn an_unreachable_url_exits_2_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let snap = snapshot_file(dir.path());
    let url = dead_url();
    let out = verigate(&[
        "--url",
        &url,
        "verify",
        "--snapshot",
        snap.to_str().unwrap(),
    ]);
    assert_cannot_run(&out, "connecting to");
    assert!(out.stdout.is_empty(), "no checks are printed");

    let out = verigate(&[
        "--url",
        &url,
        "--output",
        "json",
        "verify",
        "--snapshot",
        snap.to_str().unwrap(),
    ]);
    assert_eq!(status(&out), 2);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["verdict"], "error");
    assert!(
        v["error"].as_str().unwrap().contains("connecting to"),
        "{v}"
    );
}

#[test]
fn snapshot_needs_a_reachable_url_and_writes_nothing_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.json");
    let out = verigate(&["snapshot", "--out", out_file.to_str().unwrap()]);
    assert_cannot_run(&out, "--url");

    let out = verigate(&[
        "--url",
        &dead_url(),
        "--allow-insecure-tls",
        "snapshot",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_cannot_run(&out, "connecting to");
    let out = verigate(&[
        "--url",
        &dead_url(),
        "snapshot",
        "--vcek",
        "/nonexistent/vcek.der",
    ]);
    assert_cannot_run(&out, "vcek.der");
    assert!(!out_file.exists());
}

#[test]
fn help_describes_the_online_commands() {
    let out = verigate(&["verify", "--help"]);
    assert_eq!(status(&out), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--snapshot",
        "--application",
        "--connect-to",
        "--whitelist",
        "--allow-simulated-tee",
        "--allow-key-change",
        "--allow-tcb-status",
        "--vcek",
        "--at",
        "--url",
        "--allow-insecure-tls",
    ] {
        assert!(help.contains(flag), "verify --help lacks {flag}:\n{help}");
    }
    let out = verigate(&["snapshot", "--help"]);
    assert_eq!(status(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--out"));
}
