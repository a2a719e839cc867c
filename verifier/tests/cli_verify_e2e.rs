//! `verigate snapshot` then `verigate verify` against a real verigated: simulated TEE, a
//! real swtpm whose PCR 10 holds the extends of an IMA log written here, three TLS
//! backends routed by SNI, and the CLI binary as a user runs it.
//!
//! The VM is `testkit::vm`. verigated is the binary `cargo build -p gateway` puts beside
//! `verigate`; the workspace build of `scripts/test.sh` makes it. When it is absent
//! (e.g. `cargo test -p verifier` alone on a fresh tree), or swtpm or tpm2-tools are,
//! these tests say so and return, or fail under CI (`testkit::require`).
//!
//! Shows: an untouched VM passes every check with three `--application`s, in one call
//! and one TEE report; an impostor for one name (its handshake lands, via a per-name
//! `--connect-to`, on a server outside the VM) fails that application only; simulated
//! evidence without `--allow-simulated-tee` fails `tee`; a snapshot whose measurement
//! was edited fails `tee measurement`; a renewal inside the VM that keeps its key passes
//! without a flag, and one with a new key fails until `--allow-key-change`; one DNS name
//! (`--url https://a.example.com`, ALPN `verigate/1`) serves the application and its
//! attestation, directly and through HAProxy.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use testkit::serve::Server;
use testkit::tls::TlsBackend;
use testkit::vm::{failed_checks as failed, Binaries, Vm, VmOptions, DOMAIN};

const APPS: [&str; 3] = ["a.example.com", "b.example.com", "c.example.com"];

/// The VM every test here starts: three backends, the tree's tool executable.
fn start_vm(bins: &Binaries) -> Vm {
    let mut options = VmOptions::new(&APPS);
    options.executable_tool = true;
    Vm::start(bins, options)
}

/// `verify --output json --snapshot SNAPSHOT` with `args`; (exit status, report).
fn verify(vm: &Vm, snapshot: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["verify", "--snapshot", snapshot.to_str().unwrap()];
    all.extend_from_slice(args);
    vm.verify_json(&vm.url(), &all)
}

fn application_args(addr: SocketAddr) -> Vec<String> {
    let mut args = vec!["--connect-to".to_string(), addr.to_string()];
    for a in APPS {
        args.push("--application".into());
        args.push(a.into());
    }
    args
}

#[test]
fn snapshot_then_verify_passes_and_an_impostor_fails_only_its_name() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    let parsed = attest::snapshot::Snapshot::from_json(&std::fs::read(&snap).unwrap())
        .expect("the written file is a snapshot");
    assert_eq!(parsed.tee_policy.kind(), "simulated");
    assert!(parsed.tpm_policy.is_some(), "swtpm gives a TPM policy");
    for a in APPS {
        assert!(parsed.manifest.get(a).is_some(), "{a} in the manifest");
    }

    // Untouched: every check passes, three applications included.
    let mut args = application_args(vm.addr);
    args.push("--allow-simulated-tee".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let calls_before = vm.attestation_calls();
    let (code, report) = verify(&vm, &snap, &argv);
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!((code, report["verdict"].as_str()), (0, Some("pass")));
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for a in APPS {
        assert!(names.contains(&format!("application {a}").as_str()));
    }
    // One attestation for the three names.
    assert_eq!(vm.attestation_calls() - calls_before, 1);

    // An impostor for b.example.com: a server outside the VM with its own certificate,
    // reached because DNS (here --connect-to for that name) points there.
    let impostor = TlsBackend::start("b.example.com").expect("impostor");
    let rule = format!("b.example.com:443:{}", impostor.addr);
    let mut args = application_args(vm.addr);
    args.extend(["--connect-to".into(), rule, "--allow-simulated-tee".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = verify(&vm, &snap, &argv);
    assert_eq!(failed(&report), ["application b.example.com"], "{report:#}");
    assert_eq!(code, 1);
    let detail = testkit::vm::check(&report, "application b.example.com")["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("outside the VM"), "{detail}");

    // Simulated evidence is refused unless allowed.
    let args = application_args(vm.addr);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = verify(&vm, &snap, &argv);
    assert_eq!((code, failed(&report)), (1, vec!["tee".to_string()]));

    // A snapshot of another measurement.
    let mut v: Value = serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
    v["tee_policy"]["measurement"] = "5b".repeat(48).into();
    let other = vm.dir.path().join("other.json");
    std::fs::write(&other, serde_json::to_vec(&v).unwrap()).unwrap();
    let (code, report) = verify(&vm, &other, &["--allow-simulated-tee"]);
    assert_eq!(
        (code, failed(&report)),
        (1, vec!["tee measurement".to_string()])
    );

    // Without the credential verigated starts no job: the CLI says why (exit 2).
    let out = vm.verigate(&["snapshot", "--allow-simulated-tee", "--out", "refused.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!vm.dir.path().join("refused.json").exists());

    // A second snapshot without --out goes to the default name, in the current folder.
    let out = vm.verigate_at(
        &vm.url(),
        &[("VERIGATE_TOKEN", &vm.token)],
        &["snapshot", "--allow-simulated-tee"],
    );
    assert_eq!(out.status.code(), Some(0));
    let written: Vec<String> = std::fs::read_dir(vm.dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("verigate-snapshot-vm.example.com-") && n.ends_with(".json"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");

    // Text output: one line per check and the verdict.
    let out = vm.verigate(&[
        "verify",
        "--snapshot",
        snap.to_str().unwrap(),
        "--allow-simulated-tee",
        "--connect-to",
        &vm.addr.to_string(),
        "--application",
        "a.example.com",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[PASS] application a.example.com: "),
        "{text}"
    );
    assert!(text.contains("[PASS] tpm reboot: "), "{text}");
    assert!(text.trim_end().ends_with("verdict: PASS"), "{text}");
}

/// A TLS-terminating proxy: it presents its own certificate for verigated's name,
/// decrypts, and relays over a new TLS connection to verigated, as a load balancer that
/// terminates TLS (or an attacker in the middle) would. Stops on drop.
struct TerminatingProxy {
    addr: SocketAddr,
    _server: Server,
}

impl TerminatingProxy {
    fn start(upstream: SocketAddr) -> TerminatingProxy {
        let own = testkit::tls::self_signed(DOMAIN).expect("proxy certificate");
        let mut server = rustls::ServerConfig::builder_with_provider(testkit::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![own.cert], own.key)
            .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
        let connector =
            tokio_rustls::TlsConnector::from(testkit::tls::client_config(&["http/1.1"]).unwrap());
        let server = Server::start("terminating proxy", move |tcp| {
            let (acceptor, connector) = (acceptor.clone(), connector.clone());
            async move {
                let Ok(mut down) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(up_tcp) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let name = rustls::pki_types::ServerName::try_from(DOMAIN).expect("a DNS name");
                let Ok(mut up) = connector.connect(name, up_tcp).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        })
        .expect("proxy server");
        TerminatingProxy {
            addr: server.addr(),
            _server: server,
        }
    }
}

#[test]
fn a_tls_terminating_proxy_fails_the_endpoint_certificate() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    let proxy = TerminatingProxy::start(vm.addr);
    let out = Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args([
            "--url",
            &format!("https://{}", proxy.addr),
            "--allow-insecure-tls",
            "--output",
            "json",
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
        ])
        .output()
        .expect("run verigate");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(failed(&report), ["endpoint certificate"], "{report:#}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_renewal_that_keeps_the_key_passes_without_a_flag() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let mut vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    let sha = vm.renew_keeping_key("c.example.com");
    let mut args = application_args(vm.addr);
    args.push("--allow-simulated-tee".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = verify(&vm, &snap, &argv);
    assert_eq!(
        (code, failed(&report)),
        (0, Vec::<String>::new()),
        "{report:#}"
    );
    let detail = |name: &str| {
        report["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["detail"].to_string())
            .unwrap_or_default()
    };
    for name in ["manifest", "application c.example.com"] {
        let d = detail(name);
        assert!(
            d.contains("renewed") && d.contains(&sha[..16]),
            "{name}: {d}"
        );
    }
}

#[test]
fn a_new_key_inside_the_vm_fails_its_application_until_allow_key_change() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let mut vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    vm.renew("c.example.com");
    let mut args = application_args(vm.addr);
    args.push("--allow-simulated-tee".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = verify(&vm, &snap, &argv);
    // The VM attests the new certificate, so the handshake matches the manifest; what
    // differs is the key the snapshot pinned: the application and the manifest say so.
    assert_eq!(
        failed(&report),
        ["manifest", "application c.example.com"],
        "{report:#}"
    );
    assert_eq!(code, 1);
    assert!(
        report
            .to_string()
            .contains("key of `c.example.com` changed"),
        "{report:#}"
    );

    args.push("--allow-key-change".into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, report) = verify(&vm, &snap, &argv);
    assert_eq!(
        (code, failed(&report)),
        (0, Vec::<String>::new()),
        "{report:#}"
    );

    // The old name still works, and says it is deprecated.
    let last = args.len() - 1;
    args[last] = "--allow-certificate-change".into();
    let out = Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args([
            "--url",
            &vm.url(),
            "--allow-insecure-tls",
            "--output",
            "json",
            "verify",
        ])
        .args(["--snapshot", snap.to_str().unwrap()])
        .args(&args)
        .output()
        .expect("run verigate");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-certificate-change is deprecated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn verification_passes_through_haproxy_in_tcp_passthrough() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    if !testkit::require(
        testkit::haproxy::available(),
        "haproxy",
        testkit::require::install::HAPROXY,
    ) {
        return;
    }
    let vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    // The example config users copy, unchanged: TCP mode, TLS untouched.
    let config = testkit::haproxy::examples_dir().join("passthrough.cfg");
    let lb = testkit::haproxy::Haproxy::start(&config, vm.addr).expect("haproxy");
    let front = lb.front().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_verigate"))
        .args([
            "--url",
            &format!("https://{front}"),
            "--allow-insecure-tls",
            "--output",
            "json",
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &front,
            "--application",
            "a.example.com",
            "--application",
            "b.example.com",
        ])
        .output()
        .expect("run verigate");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(
        failed(&report),
        Vec::<String>::new(),
        "{report:#}\n{}",
        lb.log()
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_reboot_fails_the_reboot_check() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let mut vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    // Power-cycle the TPM under the running verigated (it reopens the TPM on the next
    // quote): resetCount goes up and PCR 10 starts from zeros again.
    vm.tpm.restart().expect("swtpm restarts");
    let (code, report) = verify(&vm, &snap, &["--allow-simulated-tee"]);
    let failed = failed(&report);
    assert!(failed.contains(&"tpm reboot".to_string()), "{report:#}");
    assert_eq!(code, 1);
}

/// `verify` with `--url https://a.example.com:PORT`: one DNS name for the application and
/// its attestation. The `--url` connection offers ALPN `verigate/1` alone, so the VM
/// answers it with its own endpoint; `--connect-to` sends both handshakes to `front`.
fn verify_one_name(vm: &Vm, snap: &Path, front: &str) -> (i32, Value) {
    let port = front.rsplit_once(':').map(|(_, p)| p).unwrap();
    let name = "a.example.com";
    let url = format!("https://{name}:{port}");
    vm.verify_json(
        &url,
        &[
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &format!("{name}:{port}:{front}"),
            "--application",
            &format!("{name}:{port}"),
        ],
    )
}

fn endpoint_detail(report: &Value) -> String {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "endpoint certificate"))
        .map(|c| c["detail"].to_string())
        .unwrap_or_default()
}

#[test]
fn one_name_serves_the_application_and_its_attestation() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    let (code, report) = verify_one_name(&vm, &snap, &vm.addr.to_string());
    assert_eq!(
        (code, failed(&report)),
        (0, Vec::<String>::new()),
        "{report:#}\n{}",
        vm.log()
    );
    assert!(
        endpoint_detail(&report).contains("reached through the routed name `a.example.com`"),
        "{report:#}"
    );
}

#[test]
fn one_name_through_haproxy_in_tcp_passthrough() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    if !testkit::require(
        testkit::haproxy::available(),
        "haproxy",
        testkit::require::install::HAPROXY,
    ) {
        return;
    }
    let vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    // The example config users copy, unchanged: it routes TCP and leaves ALPN alone.
    let config = testkit::haproxy::examples_dir().join("passthrough.cfg");
    let lb = testkit::haproxy::Haproxy::start(&config, vm.addr).expect("haproxy");
    let (code, report) = verify_one_name(&vm, &snap, &lb.front().to_string());
    assert_eq!(
        (code, failed(&report)),
        (0, Vec::<String>::new()),
        "{report:#}\n{}",
        lb.log()
    );
}

#[test]
fn a_url_the_vm_does_not_route_does_not_reach_its_own_endpoint() {
    let Some(bins) = Binaries::require(env!("CARGO_BIN_EXE_verigate"), &["curl"]) else {
        return;
    };
    let vm = start_vm(&bins);
    let snap = vm.snapshot("snap.json");
    // No SNI route takes `elsewhere.example.org`, so verigated refuses the hello: the
    // checks cannot run.
    let port = vm.addr.port();
    let out = vm.verigate_at(
        &format!("https://elsewhere.example.org:{port}"),
        &[],
        &[
            "verify",
            "--snapshot",
            snap.to_str().unwrap(),
            "--allow-simulated-tee",
            "--connect-to",
            &format!("elsewhere.example.org:{port}:{}", vm.addr),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
