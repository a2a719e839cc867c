//! Many `verigate verify` runs at once against one verigated (simulated TEE, swtpm, an
//! IMA log, three backends: `testkit::vm`): their calls share attestation rounds (one
//! TEE report and one TPM quote binding the Merkle root of their nonces), and each run
//! recomputes that root from its own nonce and inclusion proof, so every one passes.

use testkit::vm::{failed_checks as failed, Binaries, Vm, VmOptions};

const APPS: [&str; 3] = ["a.example.com", "b.example.com", "c.example.com"];

/// How many runs start together.
const RUNS: usize = 8;

#[test]
fn concurrent_verify_runs_against_one_verigated_all_pass() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let mut options = VmOptions::new(&APPS);
    options.executable_tool = true;
    let vm = Vm::start(&bins, options);
    let snap = vm.snapshot("snap.json");
    let snap = snap.to_str().unwrap();
    let calls_before = vm.attestation_calls();
    let url = vm.url();
    let reports: Vec<(i32, serde_json::Value)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..RUNS)
            .map(|_| {
                s.spawn(|| {
                    vm.verify_json(
                        &url,
                        &["verify", "--snapshot", snap, "--allow-simulated-tee"],
                    )
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (code, report) in &reports {
        assert_eq!(failed(report), Vec::<String>::new(), "{report:#}");
        assert_eq!((*code, report["verdict"].as_str()), (0, Some("pass")));
    }
    assert_eq!(
        vm.attestation_calls() - calls_before,
        u64::try_from(RUNS).unwrap(),
        "one attestation call per run"
    );
}
