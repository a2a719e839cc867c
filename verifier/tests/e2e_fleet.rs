//! A fleet end to end, with real processes: three simulated confidential VMs (each its
//! own verigated on its own 127.0.0.x address, its own swtpm, IMA log and data dir),
//! replicas of one image serving two application names with one shared certificate
//! each, behind a real HAProxy (`haproxy-examples/replicas.cfg`, unchanged, round robin).
//!
//! One policy, made from one VM's snapshot, verifies all three; the first run enrols
//! each VM's identity (trust on first use) and later runs require it. A reboot of one VM
//! (its swtpm restarted) fails that VM alone until `fleet accept`; an executable added
//! to one VM's IMA log fails that VM alone (exit 1); an unreachable VM fails without
//! hiding the others; `verify --url` through the balancer passes whichever replica
//! answers. Needs verigated built beside verigate (`cargo build -p gateway`), swtpm,
//! tpm2-tools and haproxy (`testkit::require`).

use attest::ima::{HashAlg, ImaEntry};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use testkit::vm::{Binaries, SharedCertificate, Vm, VmOptions, DOMAIN};

const APPS: [&str; 2] = ["a.example.com", "b.example.com"];

/// `verigate --allow-insecure-tls --output json ARGS` in `dir`: (exit status, JSON).
fn verigate(dir: &Path, args: &[&str]) -> (i32, Value) {
    testkit::cli::verigate_json(env!("CARGO_BIN_EXE_verigate"), dir, args)
}

/// A VM's line of the report: name, verdict, failed checks, enrolment.
type VmLine = (String, String, Vec<String>, String);

/// `verify --fleet FILE --allow-simulated-tee`: (exit status, one [`VmLine`] per VM).
fn verify_fleet(dir: &Path, file: &str) -> (i32, Vec<VmLine>) {
    let (code, v) = verigate(
        dir,
        &[
            "verify",
            "--fleet",
            file,
            "--allow-simulated-tee",
            "--parallel",
            "2",
        ],
    );
    let vms = v["vms"]
        .as_array()
        .unwrap_or_else(|| panic!("no vms in {v:#}"))
        .iter()
        .map(|vm| {
            let failed = vm["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["outcome"] != "pass")
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect();
            (
                vm["name"].as_str().unwrap().to_string(),
                vm["verdict"].as_str().unwrap().to_string(),
                failed,
                vm["enrolment"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (code, vms)
}

fn fleet_toml(vms: &[(&str, String)], lb: &str) -> String {
    vms.iter()
        .map(|(name, url)| {
            format!(
                "[[vm]]\nname = \"{name}\"\nurl = \"{url}\"\npolicy = \"golden.policy.json\"\n\
                 applications = [\"a.example.com\", \"b.example.com\"]\nconnect_to = [\"{lb}\"]\n\n"
            )
        })
        .collect()
}

#[test]
fn one_policy_verifies_three_replicas_behind_haproxy_and_each_change_fails_its_vm_alone() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &[]) else {
        return;
    };
    if !testkit::require(
        testkit::haproxy::available(),
        "haproxy",
        testkit::require::install::HAPROXY,
    ) {
        return;
    }
    let certificates = Arc::new(
        APPS.map(SharedCertificate::new)
            .into_iter()
            .collect::<Vec<_>>(),
    );
    let mut vms: Vec<Vm> = (0..3u8)
        .map(|i| {
            let mut o = VmOptions::new(&APPS);
            o.host = Ipv4Addr::new(127, 0, 0, 11 + i);
            o.certificates = Some(Arc::clone(&certificates));
            Vm::start(&bins, o)
        })
        .collect();
    let config = testkit::haproxy::examples_dir().join("replicas.cfg");
    let env: Vec<(&str, String)> = ["VERIGATE_VM1", "VERIGATE_VM2", "VERIGATE_VM3"]
        .into_iter()
        .zip(&vms)
        .map(|(k, vm)| (k, vm.addr.to_string()))
        .collect();
    let lb = testkit::haproxy::Haproxy::start_env(&config, &env).expect("haproxy");
    let front = lb.front().to_string();

    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("golden.policy.json");
    vms[0].policy(&policy);
    let policy_text = std::fs::read_to_string(&policy).unwrap();
    assert!(!policy_text.contains(DOMAIN) && !policy_text.contains("reset_count"));

    let names: Vec<(&str, String)> = ["vm1", "vm2", "vm3"]
        .into_iter()
        .zip(&vms)
        .map(|(n, vm)| (n, vm.url()))
        .collect();
    std::fs::write(dir.path().join("fleet.toml"), fleet_toml(&names, &front)).unwrap();

    // First contact: all three pass and are enrolled, trust on first use.
    let (code, results) = verify_fleet(dir.path(), "fleet.toml");
    assert_eq!(code, 0, "{results:?}");
    for (name, verdict, failed, enrolment) in &results {
        assert_eq!(
            (verdict.as_str(), failed.len(), enrolment.as_str()),
            ("pass", 0, "enrolled-now"),
            "{name}"
        );
    }
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("fleet-state.json")).unwrap())
            .unwrap();
    let aks: BTreeSet<String> = ["vm1", "vm2", "vm3"]
        .iter()
        .map(|n| state["vms"][n]["identity"]["tpm"]["ak_sha256"].to_string())
        .collect();
    assert_eq!(aks.len(), 3, "each VM its own TPM key: {state:#}");

    // Later runs require the enrolled identity.
    let (code, results) = verify_fleet(dir.path(), "fleet.toml");
    assert_eq!(code, 0, "{results:?}");
    assert!(results.iter().all(|r| r.3 == "enrolled"), "{results:?}");

    // Through the balancer, each replica answering passes the one policy (two
    // connections a run, three replicas in turn: the runs reach different ones).
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        let (code, v) = verigate(
            dir.path(),
            &[
                "--url",
                &format!("https://{front}"),
                "verify",
                "--policy",
                "golden.policy.json",
                "--allow-simulated-tee",
                "--application",
                "a.example.com",
                "--connect-to",
                &front,
            ],
        );
        assert_eq!(code, 0, "{v:#}");
        let key = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "tpm key")
            .map(|c| c["detail"].to_string())
            .unwrap();
        seen.insert(key);
    }
    assert!(
        seen.len() >= 2,
        "round robin reached one replica only: {seen:?}"
    );

    // A reboot of vm3: it alone fails (the TPM counters), until the operator accepts.
    vms[2].reboot();
    let (code, results) = verify_fleet(dir.path(), "fleet.toml");
    assert_eq!(code, 1, "{results:?}");
    assert_eq!(
        results
            .iter()
            .map(|r| (r.0.as_str(), r.2.clone(), r.3.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("vm1", vec![], "enrolled"),
            ("vm2", vec![], "enrolled"),
            (
                "vm3",
                vec!["tpm reboot".to_string(), "enrolment".to_string()],
                "pending"
            ),
        ]
    );
    let (code, _) = verigate(
        dir.path(),
        &["fleet", "--fleet", "fleet.toml", "accept", "vm3"],
    );
    assert_eq!(code, 0);
    let (code, results) = verify_fleet(dir.path(), "fleet.toml");
    assert_eq!(code, 0, "accepted: {results:?}");

    // An executable added to vm2's IMA log (and extended, as the kernel does): vm2
    // alone fails, on `ima entries`.
    let miner = ImaEntry::measure("/usr/local/bin/miner", HashAlg::Sha256, b"miner").unwrap();
    vms[1].measure(miner);
    let (code, results) = verify_fleet(dir.path(), "fleet.toml");
    assert_eq!(code, 1, "{results:?}");
    let failed: Vec<(&str, Vec<String>)> = results
        .iter()
        .map(|r| (r.0.as_str(), r.2.clone()))
        .collect();
    assert_eq!(
        failed,
        vec![
            ("vm1", vec![]),
            ("vm2", vec!["ima entries".to_string()]),
            ("vm3", vec![]),
        ]
    );

    // An unreachable VM fails; the others are still verified and reported.
    let mut with_dead = names.clone();
    with_dead.push((
        "dead",
        format!("https://127.0.0.14:{}", testkit::ports::free_port()),
    ));
    std::fs::write(
        dir.path().join("with-dead.toml"),
        format!(
            "state = \"fleet-state.json\"\n{}",
            fleet_toml(&with_dead, &front)
        ),
    )
    .unwrap();
    let (code, results) = verify_fleet(dir.path(), "with-dead.toml");
    assert_eq!(code, 1);
    let verdicts: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str()))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("vm1", "pass"),
            ("vm2", "fail"),
            ("vm3", "pass"),
            ("dead", "fail")
        ]
    );
    drop(lb);
}
