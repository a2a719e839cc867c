//! The Web PKI check of verigated's own certificate when a CA issued it: `verify`
//! without `--allow-insecure-tls`, the private root given with `--ca-cert`, against a
//! real verigated (simulated TEE, swtpm) whose own certificate that root issued.
//!
//! Shows: `--url` with the VM's own name passes on the ordinary name check; `--url` with
//! a routed name (one DNS name for the application and its attestation, ALPN
//! `verigate/1`) passes because the leaf is valid for the attested domain, and the
//! `endpoint name` check says so; without the root the handshake is refused (exit 2); a
//! leaf the root issued for another name fails `endpoint name` (exit 1) whichever name
//! `--url` gives; `snapshot` and `app --no-verify` refuse to send their token over a
//! routed name (exit 2), and `snapshot` goes ahead on the own name.

use std::path::{Path, PathBuf};
use testkit::tls::{PrivateCa, SelfSigned};
use testkit::vm::{failed_checks as failed, Binaries, Vm, VmOptions, DOMAIN};

const APP: &str = "a.example.com";

/// Writes `leaf` where verigated reads its own certificate (the default
/// `ssl_certificate`, `data/cert.pem` under the data dir).
fn install_own_certificate(vm: &Vm, leaf: &SelfSigned) {
    let dir = vm.data.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &leaf.key_pem).unwrap();
}

/// `verify --output json` against the snapshot, with `--url https://NAME:PORT` sent to
/// the VM by a `--connect-to` rule naming it, trusting `trust`; (exit status, report).
fn verify_as(vm: &Vm, name: &str, snap: &Path, trust: &[&str]) -> (i32, serde_json::Value, String) {
    let port = vm.addr.port();
    let rule = format!("{name}:{port}:{}", vm.addr);
    let out = vm.verigate_trusting(
        &format!("https://{name}:{port}"),
        trust,
        &[],
        &[
            "--output",
            "json",
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &rule,
        ],
    );
    let report = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        out.status.code().expect("exit status"),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn detail(report: &serde_json::Value, check: &str) -> Option<String> {
    report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == check)
        .map(|c| c["detail"].to_string())
}

/// The root as a file for `--ca-cert`.
fn root_file(vm: &Vm, ca: &PrivateCa) -> PathBuf {
    let path = vm.dir.path().join("root.pem");
    std::fs::write(&path, &ca.cert_pem).unwrap();
    path
}

#[test]
fn a_ca_issued_own_certificate_verifies_by_its_domain_and_through_a_routed_name() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let ca = PrivateCa::new().unwrap();
    let mut vm = Vm::prepare(&bins, VmOptions::new(&[APP]));
    install_own_certificate(&vm, &ca.issue(&[DOMAIN]).unwrap());
    vm.start_gateway(None);
    let snap = vm.snapshot("snap.json");
    let root = root_file(&vm, &ca);
    let trust = ["--ca-cert", root.to_str().unwrap()];

    // The own name: the ordinary check, no deferred one.
    let (code, report, err) = verify_as(&vm, DOMAIN, &snap, &trust);
    assert_eq!(
        (code, failed(&report)),
        (0, Vec::<String>::new()),
        "{report:#}\n{err}"
    );
    assert_eq!(detail(&report, "endpoint name"), None, "{report:#}");

    // The routed name: the leaf names the attested domain, not `a.example.com`.
    let (code, report, err) = verify_as(&vm, APP, &snap, &trust);
    assert_eq!(
        (code, failed(&report)),
        (0, Vec::<String>::new()),
        "{report:#}\n{err}"
    );
    let d = detail(&report, "endpoint name").expect("an endpoint name check");
    assert!(d.contains(DOMAIN) && d.contains(APP), "{d}");

    // The same through the environment variable.
    let out = vm.verigate_trusting(
        &format!("https://{APP}:{}", vm.addr.port()),
        &[],
        &[("VERIGATE_CA_CERT", root.to_str().unwrap())],
        &[
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &format!("{APP}:{}:{}", vm.addr.port(), vm.addr),
        ],
    );
    assert_eq!(out.status.code(), Some(0));

    // Mozilla's roots alone do not know the private root: the checks cannot run.
    let (code, report, _) = verify_as(&vm, APP, &snap, &[]);
    assert_eq!(code, 2, "{report:#}");
    // Said once, though three errors in the chain carry the text.
    assert_eq!(
        report["error"].to_string().matches("UnknownIssuer").count(),
        1,
        "{report:#}"
    );

    // snapshot sends its token before it can check the domain: refused on a routed name.
    let port = vm.addr.port();
    let out = vm.verigate_trusting(
        &format!("https://{APP}:{port}"),
        &trust,
        &[("VERIGATE_TOKEN", &vm.token)],
        &[
            "snapshot",
            "--allow-simulated-tee",
            "--connect-to",
            &format!("{APP}:{port}:{}", vm.addr),
            "--out",
            "never.json",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("its token would go out before any evidence"),
        "{err}"
    );
    assert!(!vm.dir.path().join("never.json").exists());
    // So does `app --no-verify`, which sends with no checks at all.
    let out = vm.verigate_trusting(
        &format!("https://{APP}:{port}"),
        &trust,
        &[("VERIGATE_TOKEN", &vm.token)],
        &[
            "app",
            "status",
            "--no-verify",
            "--connect-to",
            &format!("{APP}:{port}:{}", vm.addr),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the unverified request would go out"), "{err}");
    assert!(!vm.log().contains("app control request"), "{}", vm.log());
    // ... and goes ahead on the own name, which the Web PKI vouches for.
    let out = vm.verigate_trusting(
        &format!("https://{DOMAIN}:{port}"),
        &trust,
        &[("VERIGATE_TOKEN", &vm.token)],
        &[
            "snapshot",
            "--allow-simulated-tee",
            "--connect-to",
            &format!("{DOMAIN}:{port}:{}", vm.addr),
            "--out",
            "pki.json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", vm.log());
}

#[test]
fn a_ca_issued_leaf_for_another_name_fails_whatever_url_names() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let ca = PrivateCa::new().unwrap();
    let mut vm = Vm::prepare(&bins, VmOptions::new(&[APP]));
    install_own_certificate(&vm, &ca.issue(&["other.example.net"]).unwrap());
    vm.start_gateway(None);
    let snap = vm.snapshot("snap.json");
    let root = root_file(&vm, &ca);
    let trust = ["--ca-cert", root.to_str().unwrap()];
    for name in [DOMAIN, APP] {
        let (code, report, err) = verify_as(&vm, name, &snap, &trust);
        assert_eq!(
            (code, failed(&report)),
            (1, vec!["endpoint name".to_string()]),
            "{report:#}\n{err}"
        );
        let d = detail(&report, "endpoint name").unwrap();
        assert!(d.contains("not valid") && d.contains(DOMAIN), "{d}");
    }
}

/// `verify --fleet` with no `--allow-insecure-tls`, two VMs each with an own certificate
/// from a private root of its own (for its domain and the loopback address its URL
/// names), and each VM naming its root as `ca_cert` in the fleet file. Each passes
/// against its own root; with the roots swapped, each fails at the handshake and the
/// run exits 1; a `ca_cert` that holds no certificate is a usage error (exit 2) naming
/// the VM, before any traffic.
#[test]
fn each_fleet_vm_is_checked_against_its_own_ca_cert() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let mut vms = Vec::new();
    let mut roots = Vec::new();
    for _ in 0..2 {
        let ca = PrivateCa::new().unwrap();
        let mut vm = Vm::prepare(&bins, VmOptions::new(&[APP]));
        let ip = vm.addr.ip().to_string();
        install_own_certificate(&vm, &ca.issue(&[DOMAIN, &ip]).unwrap());
        vm.start_gateway(None);
        roots.push(root_file(&vm, &ca));
        vms.push(vm);
    }
    let snaps: Vec<PathBuf> = vms.iter().map(|vm| vm.snapshot("snap.json")).collect();
    let dir = tempfile::tempdir().unwrap();
    let fleet = |ca_certs: [&Path; 2]| {
        let text: String = vms
            .iter()
            .enumerate()
            .map(|(i, vm)| {
                format!(
                    "[[vm]]\nname = \"vm{i}\"\nurl = \"{}\"\nsnapshot = \"{}\"\nca_cert = \"{}\"\n\n",
                    vm.url(),
                    snaps[i].display(),
                    ca_certs[i].display()
                )
            })
            .collect();
        std::fs::write(dir.path().join("fleet.toml"), text).unwrap();
        let out = testkit::cli::logged(
            std::process::Command::new(env!("CARGO_BIN_EXE_verigate"))
                .args(["--output", "json", "verify", "--fleet", "fleet.toml"])
                .arg("--allow-simulated-tee")
                .current_dir(dir.path())
                .env_remove("VERIGATE_CA_CERT"),
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (
            out.status.code().expect("exit status"),
            report,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, report, err) = fleet([&roots[0], &roots[1]]);
    assert_eq!(code, 0, "{report:#}\n{err}");
    for vm in report["vms"].as_array().unwrap() {
        assert_eq!(vm["verdict"], "pass", "{vm:#}");
    }

    let (code, report, err) = fleet([&roots[1], &roots[0]]);
    assert_eq!(code, 1, "{report:#}\n{err}");
    for vm in report["vms"].as_array().unwrap() {
        assert_eq!(vm["verdict"], "fail", "{vm:#}");
        let error = vm["error"].as_str().unwrap_or_default();
        assert!(error.contains("connecting to"), "{vm:#}");
    }

    let not_pem = dir.path().join("not-a-root.pem");
    std::fs::write(&not_pem, "no certificate here").unwrap();
    let (code, report, err) = fleet([&not_pem, &roots[1]]);
    assert_eq!(code, 2, "{report:#}\n{err}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("vm `vm0`: ca_cert"), "{report:#}");
}
