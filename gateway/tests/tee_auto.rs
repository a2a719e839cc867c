//! `tee = "auto"` on a machine with no TEE (this one: no configfs-tsm, no
//! /dev/sev-guest): verigated still serves, but says so as a warning at start, in
//! `/healthz`'s body, and in the evidence (`kind: none` with its cause), so `verify` and
//! `snapshot` can name it. With `tee = "none"` asked for, there is no warning.

mod common;

use common::*;

fn no_tee_here() -> bool {
    let absent = !std::path::Path::new("/sys/kernel/config/tsm/report").exists()
        && !std::path::Path::new("/dev/sev-guest").exists();
    if !absent {
        eprintln!("this machine has a TEE interface; tee = auto would find it");
    }
    absent
}

#[test]
fn auto_without_a_tee_warns_in_the_log_healthz_and_evidence() {
    if !no_tee_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with_tee(dir.path(), "", "", &[], "auto");
    gw.wait_for_log("verigated found no TEE: tee = auto");
    assert!(gw.log().contains("WARN"), "{}", gw.log());
    // The warning says where it looked: Azure's TPM index (no TPM here), configfs-tsm,
    // /dev/sev-guest.
    for looked in [
        "no TPM to look for an Azure HCL report in",
        "no configfs-tsm at /sys/kernel/config/tsm/report",
        "no /dev/sev-guest",
    ] {
        assert!(gw.log().contains(looked), "{looked}: {}", gw.log());
    }

    let (status, body) = gw.get("/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "ok\nwarning: verigated found no TEE: tee = auto\n");

    let nonce = "ab".repeat(32);
    let (status, body) = gw.get(&format!("/v1/attestation?nonce={nonce}"));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let evidence = attest::evidence::Evidence::from_json(body.as_bytes()).expect("evidence");
    assert_eq!(
        evidence.tee,
        attest::evidence::TeeEvidence::NotFound {
            cause: "verigated found no TEE: tee = auto".into()
        }
    );
}

#[test]
fn none_asked_for_gives_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), "", "");
    let (_, body) = gw.get("/healthz");
    assert_eq!(body, "ok\n");
    assert!(!gw.log().contains("found no TEE"));
}
