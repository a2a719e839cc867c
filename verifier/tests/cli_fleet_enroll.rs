//! `verigate fleet enroll` and `verigate fleet forget` through the real binary, on one
//! simulated confidential VM (`testkit::vm`: verigated, swtpm, an IMA log) in a fleet
//! file with one policy made from its snapshot.
//!
//! `enroll` of a name the fleet file lacks, or of a VM that fails its policy (a new
//! executable in its IMA log), records nothing; `enroll` of a VM that passes records its
//! identity, which the next `verify --fleet` requires; after a reboot (another TPM reset
//! count) `verify --fleet` fails until `enroll` records the new identity; `forget`
//! removes the record, so the next contact enrols afresh (trust on first use), and
//! `forget` of a name not enrolled is an error. Needs verigated built beside verigate (`cargo build -p
//! gateway`), swtpm and tpm2-tools (`testkit::require`).

use attest::ima::{HashAlg, ImaEntry};
use serde_json::Value;
use std::path::Path;
use testkit::vm::{check, failed_checks, Binaries, Vm, VmOptions};

const APP: &str = "a.example.com";

/// `verigate --allow-insecure-tls --output json ARGS` in `dir`: (exit status, JSON).
fn verigate(dir: &Path, args: &[&str]) -> (i32, Value) {
    testkit::cli::verigate_json(env!("CARGO_BIN_EXE_verigate"), dir, args)
}

/// `fleet --fleet fleet.toml ARGS`.
fn fleet(dir: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["fleet", "--fleet", "fleet.toml"];
    all.extend_from_slice(args);
    verigate(dir, &all)
}

/// `fleet enroll NAME --allow-simulated-tee`.
fn enroll(dir: &Path, name: &str) -> (i32, Value) {
    fleet(dir, &["enroll", name, "--allow-simulated-tee"])
}

/// `verify --fleet fleet.toml`: (exit status, vm1's verdict, its failed checks, its
/// enrolment).
fn verify_fleet(dir: &Path) -> (i32, String, Vec<String>, String) {
    let (code, v) = verigate(
        dir,
        &["verify", "--fleet", "fleet.toml", "--allow-simulated-tee"],
    );
    let vm = &v["vms"][0];
    assert_eq!(vm["name"], "vm1", "{v:#}");
    (
        code,
        vm["verdict"].as_str().unwrap_or_default().to_string(),
        failed_checks(vm),
        vm["enrolment"].as_str().unwrap_or_default().to_string(),
    )
}

/// The state file's record of vm1 (`null` when none).
fn record(dir: &Path) -> Value {
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("fleet-state.json")).expect("state"))
            .expect("state JSON");
    state["vms"]["vm1"].clone()
}

#[test]
fn enroll_records_a_passing_identity_and_forget_removes_it() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &[]) else {
        return;
    };
    let mut vm = Vm::start(&bins, VmOptions::new(&[APP]));
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    vm.policy(&dir.join("golden.policy.json"));
    std::fs::write(
        dir.join("fleet.toml"),
        format!(
            "[[vm]]\nname = \"vm1\"\nurl = \"{}\"\npolicy = \"golden.policy.json\"\n\
             applications = [\"{APP}\"]\nconnect_to = [\"{}\"]\n",
            vm.url(),
            vm.addr
        ),
    )
    .unwrap();

    // A name the fleet file does not list: an error (exit 2), nothing written.
    let (code, v) = enroll(dir, "vm9");
    assert_eq!(code, 2, "{v:#}");
    assert!(v["error"].as_str().unwrap().contains("vm9"), "{v:#}");
    assert!(!dir.join("fleet-state.json").exists());

    // A VM that passes its policy: its identity recorded as enrolled by `fleet enroll`.
    let (code, v) = enroll(dir, "vm1");
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "enroll")["outcome"], "pass", "{v:#}");
    let first = record(dir);
    assert_eq!(first["how"], "fleet enroll", "{first:#}");
    assert!(first["identity"]["tpm"].is_object(), "{first:#}");
    // ...which the next verify requires, rather than enrolling it again.
    let (code, verdict, failed, enrolment) = verify_fleet(dir);
    assert_eq!(
        (code, verdict.as_str(), failed, enrolment.as_str()),
        (0, "pass", vec![], "enrolled")
    );

    // A reboot: another TPM reset count, so the enrolled identity no longer matches.
    vm.reboot();
    let (code, _, failed, enrolment) = verify_fleet(dir);
    assert_eq!(code, 1);
    assert!(failed.contains(&"enrolment".to_string()), "{failed:?}");
    assert_eq!(enrolment, "pending");
    // `enroll` verifies it afresh and records the identity it presents now.
    let (code, v) = enroll(dir, "vm1");
    assert_eq!(code, 0, "{v:#}");
    let second = record(dir);
    assert_ne!(second["identity"], first["identity"], "{second:#}");
    assert_eq!(second["pending"], Value::Null, "{second:#}");
    let (code, _, failed, enrolment) = verify_fleet(dir);
    assert_eq!((code, failed, enrolment.as_str()), (0, vec![], "enrolled"));

    // A VM that fails its policy (an executable the snapshot lacks): nothing recorded.
    vm.measure(ImaEntry::measure("/usr/local/bin/miner", HashAlg::Sha256, b"miner").unwrap());
    let (code, v) = enroll(dir, "vm1");
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(check(&v, "enroll")["outcome"], "fail", "{v:#}");
    assert!(
        failed_checks(&v).contains(&"ima entries".to_string()),
        "{v:#}"
    );
    assert_eq!(record(dir)["identity"], second["identity"]);

    // The executable gone after another reboot, `forget` removes the record...
    vm.entries.pop();
    vm.reboot();
    let (code, v) = fleet(dir, &["forget", "vm1"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "forget")["outcome"], "pass", "{v:#}");
    assert_eq!(record(dir), Value::Null);
    // ...forgetting it again is an error: it is not enrolled...
    let (code, v) = fleet(dir, &["forget", "vm1"]);
    assert_eq!(code, 2, "{v:#}");
    assert!(
        v["error"].as_str().unwrap().contains("not enrolled"),
        "{v:#}"
    );
    // ...and the next contact enrols it afresh (trust on first use).
    let (code, _, failed, enrolment) = verify_fleet(dir);
    assert_eq!(
        (code, failed, enrolment.as_str()),
        (0, vec![], "enrolled-now")
    );
    assert_eq!(record(dir)["how"], "first contact (trust on first use)");
}
